//! Lossless round trips and robustness against hostile input.

// Test helpers outside #[test] fns may unwrap: a failure here is a test failure.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use wardline_waveform::{
    ChunkHeader, Codec, HEADER_LEN, HEADER_LEN_V2, MAX_SAMPLES_PER_CHUNK, Scale, WaveformError,
    decode, decode_header, encode, encode_with,
};

fn header() -> ChunkHeader {
    ChunkHeader::with_gain(360.0, 1_700_000_000_000, 200.0, 1024)
}

fn all_codecs() -> [Codec; 2] {
    [Codec::Raw, Codec::LmsRange]
}

/// Signals shaped like the real thing (small steps) mixed with extremes, since
/// the predictor's overflow paths only show up next to i32::MIN/MAX.
fn signal() -> impl Strategy<Value = Vec<i32>> {
    let sample = prop_oneof![
        4 => -2048i32..2048,
        2 => any::<i32>(),
        1 => Just(i32::MIN),
        1 => Just(i32::MAX),
        1 => Just(0),
    ];
    let walk =
        (any::<i32>(), prop::collection::vec(-40i32..40, 0..3000)).prop_map(|(start, steps)| {
            let mut v = start;
            steps
                .into_iter()
                .map(|s| {
                    v = v.saturating_add(s);
                    v
                })
                .collect()
        });
    prop_oneof![prop::collection::vec(sample, 0..2000), walk]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip_is_bit_exact(samples in signal(), rate in 0.001f64..100_000.0, start in any::<i64>(), baseline in any::<i32>(), factor in prop::option::of(1e-6f64..1e6), origin in prop_oneof![Just(0.0), -1e6f64..1e6]) {
        // A gain with origin 0 is version 1; a factor or an origin, version 2.
        let h = ChunkHeader {
            sampling_rate_hz: rate,
            start_ms: start,
            scale: factor.map_or(Scale::Gain(123.456), Scale::Factor),
            baseline,
            origin,
        };
        for codec in all_codecs() {
            let bytes = encode_with(&h, &samples, codec).unwrap();
            let back = decode(&bytes).unwrap();
            prop_assert_eq!(&back.samples, &samples);
            prop_assert_eq!(back.header, h);
            prop_assert_eq!(back.codec, codec);
        }
        let best = encode(&h, &samples).unwrap();
        prop_assert!(best.len() <= HEADER_LEN_V2 + samples.len() * 4);
        prop_assert_eq!(decode(&best).unwrap().samples, samples);
    }

    #[test]
    fn corrupted_chunks_never_panic(samples in signal(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = encode(&header(), &samples).unwrap();
        for (pos, x) in flips {
            let i = pos % bytes.len();
            bytes[i] ^= x.max(1);
        }
        // Any outcome but a panic is fine; a mutation that survives must still decode.
        let _ = decode(&bytes);
    }

    #[test]
    fn forged_payload_with_valid_checksums_never_panics(payload in prop::collection::vec(any::<u8>(), 0..4000), count in 0u32..5000) {
        // A hostile writer can make both CRCs match; the codec itself must cope.
        let bytes = forge(Codec::LmsRange, count, &payload);
        match decode(&bytes) {
            Ok(chunk) => prop_assert_eq!(chunk.samples.len(), count as usize),
            Err(WaveformError::CorruptPayload(_)) => {}
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }
}

/// Builds a chunk with arbitrary codec, count and payload but valid checksums.
fn forge(codec: Codec, count: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = encode_with(&header(), &[], codec).unwrap();
    bytes.truncate(HEADER_LEN);
    bytes[36..40].copy_from_slice(&count.to_le_bytes());
    bytes[40..44].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes[44..48].copy_from_slice(&crc32(payload).to_le_bytes());
    let hc = crc32(&bytes[..48]);
    bytes[48..52].copy_from_slice(&hc.to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Bitwise CRC-32 (IEEE), independent of the crate's implementation.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn edge_signals_round_trip() {
    let cases: Vec<Vec<i32>> = vec![
        vec![],
        vec![0],
        vec![i32::MIN],
        vec![i32::MAX],
        vec![i32::MIN, i32::MAX, i32::MIN, i32::MAX],
        vec![i32::MAX; 500],
        (0..5000)
            .map(|i| if i % 2 == 0 { i32::MIN } else { i32::MAX })
            .collect(),
        (0..5000)
            .map(|i: i32| i.wrapping_mul(0x1E37_79B9))
            .collect(),
    ];
    for samples in cases {
        for codec in all_codecs() {
            let bytes = encode_with(&header(), &samples, codec).unwrap();
            assert_eq!(decode(&bytes).unwrap().samples, samples, "{codec:?}");
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    let samples: Vec<i32> = (0..600).map(|i| ((i * 37) % 200) - 100).collect();
    for codec in all_codecs() {
        let bytes = encode_with(&header(), &samples, codec).unwrap();
        for len in 0..bytes.len() {
            assert!(
                decode(&bytes[..len]).is_err(),
                "{codec:?} truncated to {len}"
            );
            assert!(decode_header(&bytes[..len]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(WaveformError::TrailingBytes(1)));
    }
}

#[test]
fn sample_count_is_capped() {
    let too_many = vec![0i32; MAX_SAMPLES_PER_CHUNK as usize + 1];
    assert!(matches!(
        encode(&header(), &too_many),
        Err(WaveformError::TooManySamples { .. })
    ));
    // A forged count above the cap is refused before anything is allocated.
    let bytes = forge(Codec::LmsRange, u32::MAX, &[0; 8]);
    assert!(matches!(
        decode_header(&bytes),
        Err(WaveformError::TooManySamples { .. })
    ));
    // At the cap, a tiny payload cannot make the decoder run past its input.
    let bytes = forge(Codec::LmsRange, MAX_SAMPLES_PER_CHUNK, &[0xFF; 16]);
    assert!(decode(&bytes).is_err());
}

#[test]
fn header_errors_are_specific() {
    let bytes = encode(&header(), &[1, 2, 3]).unwrap();

    let mut b = bytes.clone();
    b[0] = b'X';
    assert_eq!(decode(&b), Err(WaveformError::BadMagic));

    let mut b = bytes.clone();
    b[4] = 3;
    assert_eq!(decode(&b), Err(WaveformError::UnsupportedVersion(3)));
    b[4] = 0;
    assert_eq!(decode(&b), Err(WaveformError::UnsupportedVersion(0)));

    // A version 2 header cut short of its origin and checksum.
    let v2 = encode(
        &ChunkHeader {
            origin: 1.5,
            ..header()
        },
        &[1, 2, 3],
    )
    .unwrap();
    assert_eq!(
        decode(&v2[..56]),
        Err(WaveformError::Truncated {
            needed: HEADER_LEN_V2,
            available: 56
        })
    );

    let mut b = bytes.clone();
    b[20] ^= 1;
    assert!(matches!(
        decode(&b),
        Err(WaveformError::HeaderChecksum { .. })
    ));

    let mut b = bytes.clone();
    let last = b.len() - 1;
    b[last] ^= 1;
    assert!(matches!(
        decode(&b),
        Err(WaveformError::PayloadChecksum { .. })
    ));
    // Listings do not read the payload, so they still succeed.
    assert!(decode_header(&b).is_ok());

    let mut b = forge(Codec::LmsRange, 3, &bytes[HEADER_LEN..]);
    b[5] = 9;
    let hc = crc32(&b[..48]);
    b[48..52].copy_from_slice(&hc.to_le_bytes());
    assert_eq!(decode(&b), Err(WaveformError::UnknownCodec(9)));
}

#[test]
fn raw_fallback_bounds_expansion() {
    let noise: Vec<i32> = (0..4096u32)
        .map(|i| i.wrapping_mul(2_654_435_761).rotate_left(13) as i32)
        .collect();
    let bytes = encode(&header(), &noise).unwrap();
    assert!(bytes.len() <= HEADER_LEN + noise.len() * 4);
    assert_eq!(decode(&bytes).unwrap().samples, noise);
}
