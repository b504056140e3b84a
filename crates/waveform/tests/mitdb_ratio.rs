//! Compression target on real ECG: the average over both channels of the
//! shared MIT-BIH records must stay at or below 4.0 bits/sample with the
//! recommended 30 s chunks (every stored byte counted, header included).

// Test helpers outside #[test] fns may unwrap: a failure here is a test failure.
#![allow(clippy::unwrap_used)]

use crate::support;

use support::mitdb;
use wardline_waveform::{ChunkHeader, decode, encode};

const CHUNK_SECONDS: f64 = 30.0;
const TARGET_BITS_PER_SAMPLE: f64 = 4.0;

#[test]
fn mitdb_average_is_at_most_four_bits_per_sample() {
    let dir = mitdb::mitdb_dir();
    let records = mitdb::load_all(&dir).unwrap_or_else(|e| {
        panic!(
            "MIT-BIH data missing or unreadable at {} ({e}); set WARDLINE_SHARED_DATA to the folder holding ecg/mitdb",
            dir.display()
        )
    });
    assert!(
        !records.is_empty(),
        "no MIT-BIH records (*.hea) in {}",
        dir.display()
    );

    let (mut bytes, mut samples, mut chunks) = (0usize, 0usize, 0usize);
    for r in &records {
        let (bytes_before, samples_before) = (bytes, samples);
        let chunk_len = (CHUNK_SECONDS * r.sampling_rate_hz).round() as usize;
        for (sig, gain, baseline) in &r.channels {
            let header = ChunkHeader::with_gain(r.sampling_rate_hz, 0, *gain, *baseline);
            for chunk in sig.chunks(chunk_len) {
                let encoded = encode(&header, chunk).unwrap();
                bytes += encoded.len();
                samples += chunk.len();
                chunks += 1;
                // Spot-check losslessness without doubling the run time.
                if chunks % 7 == 0 {
                    assert_eq!(decode(&encoded).unwrap().samples, chunk);
                }
            }
        }
        let rec_bps = (bytes - bytes_before) as f64 * 8.0 / (samples - samples_before) as f64;
        println!("{}: {rec_bps:.3} bits/sample", r.name);
    }
    let bps = bytes as f64 * 8.0 / samples as f64;
    println!(
        "MIT-BIH: {} records, {samples} samples, {bps:.3} bits/sample",
        records.len()
    );
    assert!(
        bps <= TARGET_BITS_PER_SAMPLE,
        "average {bps:.3} bits/sample exceeds the {TARGET_BITS_PER_SAMPLE} target"
    );
}
