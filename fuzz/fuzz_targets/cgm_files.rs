//! CGM exports a patient or clinic uploads: the common CSV and Dexcom Clarity's export.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wardline_analytics::cgm::{parse_common_csv, parse_dexcom_clarity, parse_timestamp};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = parse_common_csv(text);
        let _ = parse_dexcom_clarity(text);
        if let Some(line) = text.lines().next() {
            let _ = parse_timestamp(line);
        }
    }
});
