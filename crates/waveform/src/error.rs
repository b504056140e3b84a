use thiserror::Error;

/// Everything that can go wrong while encoding or decoding a chunk.
///
/// Decoding never panics: a truncated, forged or corrupted chunk maps to one
/// of these variants.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum WaveformError {
    #[error("chunk holds {count} samples, more than the maximum of {max}")]
    TooManySamples { count: u64, max: u32 },

    #[error("sampling rate must be finite and positive, got {0}")]
    InvalidSamplingRate(f64),

    #[error("gain or factor must be finite and non-zero, got {0}")]
    InvalidGain(f64),

    #[error("origin must be finite, got {0}")]
    InvalidOrigin(f64),

    #[error("chunk truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },

    #[error("not a waveform chunk (bad magic bytes)")]
    BadMagic,

    #[error("unsupported chunk format version {0}")]
    UnsupportedVersion(u8),

    #[error("unknown codec id {0}")]
    UnknownCodec(u8),

    #[error("reserved header flags set: {0:#06x}")]
    ReservedFlags(u16),

    #[error("header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderChecksum { stored: u32, computed: u32 },

    #[error("payload checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    PayloadChecksum { stored: u32, computed: u32 },

    #[error("{0} unexpected bytes after the chunk payload")]
    TrailingBytes(usize),

    #[error("corrupt payload: {0}")]
    CorruptPayload(&'static str),
}
