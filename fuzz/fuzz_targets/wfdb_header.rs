//! A WFDB record header (`.hea`), as record import reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Ok(header) = wardline_ecg::wfdb::Header::parse(text) {
            let _ = header.find_signal("MLII");
        }
    }
});
