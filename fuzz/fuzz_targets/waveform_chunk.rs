//! A waveform chunk (ECG and other signals) as a device uploads it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wardline_waveform::{decode, decode_header, encode_with};

fuzz_target!(|bytes: &[u8]| {
    let _ = decode_header(bytes);
    if let Ok(chunk) = decode(bytes) {
        // What the decoder accepts, the encoder writes again and the decoder reads back
        // sample for sample: stored chunks can be re-encoded (migrations) without loss.
        let again = encode_with(&chunk.header, &chunk.samples, chunk.codec)
            .expect("a decoded chunk encodes again");
        let back = decode(&again).expect("a re-encoded chunk decodes");
        assert_eq!(
            back.samples, chunk.samples,
            "samples changed on re-encoding"
        );
        assert_eq!(back.header, chunk.header, "header changed on re-encoding");
    }
});
