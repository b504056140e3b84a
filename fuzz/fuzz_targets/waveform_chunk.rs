//! A waveform chunk (ECG and other signals) as a device uploads it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wardline_waveform::{HEADER_LEN, HEADER_LEN_V2, decode, decode_header, encode_with};

fuzz_target!(|bytes: &[u8]| {
    check(bytes);
    // Most inputs fail the header's and the payload's checksums, which a device's bytes
    // can carry just as easily: the same input again with its payload length and both
    // checksums made right reaches the codecs behind them.
    // The header's length is the version's (byte 4): 1 and anything else as version 1,
    // 2 with its origin.
    let len = if bytes.get(4) == Some(&2) {
        HEADER_LEN_V2
    } else {
        HEADER_LEN
    };
    if bytes.len() >= len {
        let mut sealed = bytes.to_vec();
        let payload_len = u32::try_from(sealed.len() - len).unwrap_or(u32::MAX);
        sealed[40..44].copy_from_slice(&payload_len.to_le_bytes());
        let payload_crc = crc32fast::hash(&sealed[len..]);
        sealed[44..48].copy_from_slice(&payload_crc.to_le_bytes());
        let header_crc = crc32fast::hash(&sealed[..len - 4]);
        sealed[len - 4..len].copy_from_slice(&header_crc.to_le_bytes());
        check(&sealed);
    }
});

fn check(bytes: &[u8]) {
    let _ = decode_header(bytes);
    if let Ok(chunk) = decode(bytes) {
        // What the decoder accepts, the encoder writes again and the decoder reads back
        // sample for sample: stored chunks can be re-encoded (migrations) without loss.
        let again = encode_with(&chunk.header, &chunk.samples, chunk.codec)
            .expect("a decoded chunk encodes again");
        let back = decode(&again).expect("a re-encoded chunk decodes");
        assert_eq!(back.samples, chunk.samples, "samples changed on re-encoding");
        assert_eq!(back.header, chunk.header, "header changed on re-encoding");
    }
}
