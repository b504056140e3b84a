//! Shared test helpers: parsing what devices sent, and finding the shared data.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use wardline_domain::{DeviceMessage, PayloadLimits, Reading, parse_device_message};
use wardline_sim::DeviceEmission;

pub fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T06:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Parses every emission with the server's own parser, at the emission's sim time,
/// and checks that each device's `seq` strictly increases.
pub fn parse_all(emissions: &[DeviceEmission]) -> Vec<(String, DateTime<Utc>, DeviceMessage)> {
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    let mut out = Vec::new();
    for e in emissions {
        let message = parse_device_message(&e.payload_bytes, e.sim_time, &PayloadLimits::default())
            .unwrap_or_else(|error| {
                panic!(
                    "{} at {}: {error}\n{}",
                    e.device_key,
                    e.sim_time,
                    String::from_utf8_lossy(&e.payload_bytes[..e.payload_bytes.len().min(400)])
                )
            });
        let seqs: Vec<i64> = match &message {
            DeviceMessage::Readings(readings) => readings.iter().map(|r| r.seq).collect(),
            DeviceMessage::Waveform(chunk) => vec![chunk.seq],
        };
        for seq in seqs {
            if let Some(previous) = last_seq.insert(e.device_key.clone(), seq) {
                assert!(
                    seq > previous,
                    "{}: seq {seq} after {previous}",
                    e.device_key
                );
            }
        }
        out.push((e.device_key.clone(), e.sim_time, message));
    }
    out
}

/// All readings of one device, in order.
pub fn readings_of(
    parsed: &[(String, DateTime<Utc>, DeviceMessage)],
    device: &str,
) -> Vec<Reading> {
    parsed
        .iter()
        .filter(|(key, _, _)| key == device)
        .flat_map(|(_, _, message)| match message {
            DeviceMessage::Readings(readings) => readings.clone(),
            DeviceMessage::Waveform(_) => Vec::new(),
        })
        .collect()
}

/// `WARDLINE_SHARED_DATA`, else `<crate>/../../../shared/data`; panics with a plain
/// message when the MIT-BIH folder is missing.
pub fn mitdb_dir() -> PathBuf {
    let data = std::env::var_os("WARDLINE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let dir = data.join("ecg/mitdb");
    if !dir.is_dir() {
        panic!(
            "MIT-BIH data not found at {}: set WARDLINE_SHARED_DATA to the folder that holds ecg/mitdb",
            dir.display()
        );
    }
    dir
}

/// The `.hea` text, `.dat` bytes and `.atr` bytes of a record.
pub fn read_record(name: &str) -> (String, Vec<u8>, Vec<u8>) {
    let dir = mitdb_dir();
    let read = |ext: &str| {
        let path = dir.join(format!("{name}.{ext}"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    };
    (
        String::from_utf8(read("hea")).unwrap(),
        read("dat"),
        read("atr"),
    )
}
