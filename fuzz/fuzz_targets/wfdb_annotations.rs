//! WFDB annotations (`.atr`, MIT format) and the rhythm spans derived from them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(annotations) = wardline_ecg::wfdb::parse_annotations(bytes) {
        let end = annotations.last().map_or(0, |last| last.sample);
        let _ = wardline_ecg::wfdb::rhythm_spans(&annotations, end);
    }
});
