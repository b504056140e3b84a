#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]
use std::path::PathBuf;

use wardline_ecg::wfdb::{Header, decode_format_212_signal, parse_annotations};

pub const RECORDS: [&str; 15] = [
    "100", "101", "103", "105", "106", "108", "114", "119", "200", "201", "202", "203", "208",
    "219", "232",
];

pub fn data_dir() -> PathBuf {
    let dir = match std::env::var_os("WARDLINE_SHARED_DATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    };
    if !dir.join("ecg/mitdb").is_dir() {
        panic!(
            "ECG test data not found: looked for {} (the shared data folder). \
             Set WARDLINE_SHARED_DATA to the folder that contains ecg/mitdb, \
             e.g. WARDLINE_SHARED_DATA=$PWD/../shared/data (from the repository root)",
            dir.join("ecg/mitdb").display()
        );
    }
    dir
}

#[derive(Debug)]
pub struct Record {
    pub name: String,
    pub header: Header,
    pub signal: Vec<i32>,
    pub lead: String,
    pub annotations: Vec<wardline_ecg::wfdb::Annotation>,
}

pub fn load(name: &str, lead: &str) -> Record {
    let dir = data_dir().join("ecg/mitdb");
    let hea = std::fs::read_to_string(dir.join(format!("{name}.hea"))).unwrap();
    let header = Header::parse(&hea).unwrap();
    let idx = header.find_signal(lead).unwrap();
    let dat = std::fs::read(dir.join(format!("{name}.dat"))).unwrap();
    let signal = decode_format_212_signal(&dat, header.signals.len(), idx).unwrap();
    let atr = std::fs::read(dir.join(format!("{name}.atr"))).unwrap();
    let annotations = parse_annotations(&atr).unwrap();
    Record {
        name: name.to_string(),
        header,
        signal,
        lead: lead.to_string(),
        annotations,
    }
}
