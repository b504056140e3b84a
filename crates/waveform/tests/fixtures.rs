//! Frozen chunks: every format version and codec ever written must keep
//! decoding to exactly the samples it was made from.
//!
//! The files were generated once from [`synthetic_v1`] with
//! `WARDLINE_REGEN_FIXTURES=1 cargo test -p wardline-waveform --test waveform fixtures::`,
//! which writes only missing files: add a new file for a new version/codec,
//! never replace an existing one.

// Test helpers outside #[test] fns may unwrap: a failure here is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use wardline_waveform::{ChunkHeader, Codec, Scale, decode, decode_header, encode_with};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

const V1_HEADER: ChunkHeader = ChunkHeader::with_gain(359.5, 1_767_225_600_000, 200.0, 1024);

/// Version 2: a factor and an origin as FHIR `SampledData` gives them.
const V2_HEADER: ChunkHeader = ChunkHeader {
    sampling_rate_hz: 100.0,
    start_ms: 1_424_334_635_000,
    scale: Scale::Factor(1.612),
    baseline: 0,
    origin: 2048.0,
};

/// Deterministic ECG-like signal in integer arithmetic only (no libm, so the
/// same on every platform): baseline wander, a QRS-like spike every 0.8 s,
/// LCG noise, then the i32 extremes to pin the overflow paths.
fn synthetic_v1() -> Vec<i32> {
    let mut lcg: u32 = 0x5EED_1234;
    let mut out: Vec<i32> = (0..1080i32)
        .map(|n| {
            lcg = lcg.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (lcg >> 29) as i32 - 4;
            let wander = (n % 720 - 360).abs() / 12 - 15;
            let phase = n % 288;
            let qrs = match phase {
                100..=109 => (phase - 100) * 30,
                110..=119 => (119 - phase) * 30 - 40,
                _ => 0,
            };
            1024 + wander + qrs + noise
        })
        .collect();
    out.extend([i32::MIN, i32::MAX, 0, -1, i32::MIN + 1, i32::MAX - 1]);
    out
}

fn read_expected(name: &str) -> Vec<i32> {
    let text = std::fs::read_to_string(fixture_dir().join(name)).unwrap();
    text.lines().map(|l| l.trim().parse().unwrap()).collect()
}

fn check(file: &str, codec: Codec) {
    let bytes = std::fs::read(fixture_dir().join(file)).unwrap();
    let info = decode_header(&bytes).unwrap();
    let (version, header) = if file.starts_with("chunk-v1") {
        (1, V1_HEADER)
    } else {
        (2, V2_HEADER)
    };
    assert_eq!(info.version, version);
    assert_eq!(info.codec, codec);
    assert_eq!(info.header, header);
    let chunk = decode(&bytes).unwrap();
    assert_eq!(chunk.samples, read_expected("synthetic-v1.txt"), "{file}");
    assert_eq!(chunk.samples.len() as u32, info.sample_count);
}

#[test]
fn v1_raw_decodes() {
    check("chunk-v1-codec0-raw.bin", Codec::Raw);
}

#[test]
fn v1_lms_range_decodes() {
    check("chunk-v1-codec1-lmsrange.bin", Codec::LmsRange);
}

#[test]
fn v2_raw_decodes() {
    check("chunk-v2-codec0-raw.bin", Codec::Raw);
}

#[test]
fn v2_lms_range_decodes() {
    check("chunk-v2-codec1-lmsrange.bin", Codec::LmsRange);
}

/// The expected-samples file must come from the generator; and today's
/// encoder should still produce the pinned bytes (if this alone fails, the
/// encoder changed its output: fine only if old files still decode above).
#[test]
fn generator_and_encoder_are_stable() {
    let samples = synthetic_v1();
    let files = [
        ("chunk-v1-codec0-raw.bin", V1_HEADER, Codec::Raw),
        ("chunk-v1-codec1-lmsrange.bin", V1_HEADER, Codec::LmsRange),
        ("chunk-v2-codec0-raw.bin", V2_HEADER, Codec::Raw),
        ("chunk-v2-codec1-lmsrange.bin", V2_HEADER, Codec::LmsRange),
    ];
    if std::env::var_os("WARDLINE_REGEN_FIXTURES").is_some() {
        // Only missing files are written: pinned bytes are never overwritten.
        let missing = |f: &str| !fixture_dir().join(f).try_exists().unwrap();
        if missing("synthetic-v1.txt") {
            let text: String = samples.iter().map(|s| format!("{s}\n")).collect();
            std::fs::write(fixture_dir().join("synthetic-v1.txt"), text).unwrap();
        }
        for (file, header, codec) in files {
            if missing(file) {
                let bytes = encode_with(&header, &samples, codec).unwrap();
                std::fs::write(fixture_dir().join(file), bytes).unwrap();
            }
        }
    }
    assert_eq!(samples, read_expected("synthetic-v1.txt"));
    for (file, header, codec) in files {
        let pinned = std::fs::read(fixture_dir().join(file)).unwrap();
        assert_eq!(
            encode_with(&header, &samples, codec).unwrap(),
            pinned,
            "{file}"
        );
    }
}
