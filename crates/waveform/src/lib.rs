//! Lossless, versioned chunk format for integer waveforms (ECG ADC counts).
//!
//! A chunk is a fixed 52-byte header followed by a codec payload. The library
//! does no I/O: bytes in, bytes out.
//!
//! # Layout (format version 1, all integers little-endian)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `WLWF` |
//! | 4 | 1 | format version (1) |
//! | 5 | 1 | codec id ([`Codec`]) |
//! | 6 | 2 | flags, must be 0 |
//! | 8 | 8 | sampling rate in Hz, f64 bits |
//! | 16 | 8 | start time, i64 ms since the Unix epoch |
//! | 24 | 8 | gain in ADC units per physical unit, f64 bits |
//! | 32 | 4 | baseline, i32 ADC units |
//! | 36 | 4 | sample count, u32 |
//! | 40 | 4 | payload length in bytes, u32 |
//! | 44 | 4 | CRC-32 (IEEE) of the payload |
//! | 48 | 4 | CRC-32 (IEEE) of bytes 0..48 |
//!
//! The header has its own checksum so that [`decode_header`] can validate a
//! chunk for listings without touching the payload.
//!
//! Physical value = (sample − baseline) / gain, the WFDB convention.

mod error;
mod lms;
mod rc;

pub use error::WaveformError;

/// Magic bytes at the start of every chunk.
pub const MAGIC: [u8; 4] = *b"WLWF";
/// Format version written by this library.
pub const FORMAT_VERSION: u8 = 1;
/// Size of the fixed header that precedes the payload.
pub const HEADER_LEN: usize = 52;
/// Upper bound on samples per chunk, enforced on encode and decode so a forged
/// header cannot make the decoder allocate more than 4 MiB of samples.
/// (About 48 minutes at 360 Hz; recommended chunks are 30 s.)
pub const MAX_SAMPLES_PER_CHUNK: u32 = 1 << 20;

/// Payload encodings. Ids are stable: once written to storage an id must stay
/// decodable forever, so new codecs only ever get new ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// Samples as i32 little-endian. Used when nothing compresses better
    /// (e.g. white noise over the full i32 range), bounding the worst case.
    Raw = 0,
    /// First difference, 16-tap sign-sign LMS predictor, context-modelled
    /// adaptive binary range coding of the residual.
    LmsRange = 1,
}

impl Codec {
    /// The id stored in the chunk header.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// Maps a stored id back to a codec.
    pub fn from_id(id: u8) -> Result<Self, WaveformError> {
        match id {
            0 => Ok(Self::Raw),
            1 => Ok(Self::LmsRange),
            other => Err(WaveformError::UnknownCodec(other)),
        }
    }
}

/// Metadata supplied by the caller and stored with the samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkHeader {
    /// Samples per second; fractional rates are allowed. Must be finite and > 0.
    pub sampling_rate_hz: f64,
    /// Time of the first sample, milliseconds since the Unix epoch.
    pub start_ms: i64,
    /// ADC units per physical unit (e.g. adu/mV). Must be finite and non-zero.
    pub gain: f64,
    /// ADC value that corresponds to a physical value of zero.
    pub baseline: i32,
}

impl ChunkHeader {
    /// Converts one stored sample to physical units.
    pub fn to_physical(&self, sample: i32) -> f64 {
        (f64::from(sample) - f64::from(self.baseline)) / self.gain
    }

    fn validate(&self) -> Result<(), WaveformError> {
        if !(self.sampling_rate_hz.is_finite() && self.sampling_rate_hz > 0.0) {
            return Err(WaveformError::InvalidSamplingRate(self.sampling_rate_hz));
        }
        if !(self.gain.is_finite() && self.gain != 0.0) {
            return Err(WaveformError::InvalidGain(self.gain));
        }
        Ok(())
    }
}

/// What [`decode_header`] learns from a chunk without decoding its payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkInfo {
    pub header: ChunkHeader,
    pub version: u8,
    pub codec: Codec,
    pub sample_count: u32,
    /// Total encoded size, header included.
    pub encoded_len: usize,
}

impl ChunkInfo {
    /// Duration covered by the chunk in milliseconds (sample count / rate).
    pub fn duration_ms(&self) -> f64 {
        f64::from(self.sample_count) * 1000.0 / self.header.sampling_rate_hz
    }
}

/// A fully decoded chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedChunk {
    pub header: ChunkHeader,
    pub codec: Codec,
    pub samples: Vec<i32>,
}

impl DecodedChunk {
    /// All samples converted to physical units.
    pub fn physical(&self) -> Vec<f64> {
        self.samples
            .iter()
            .map(|&s| self.header.to_physical(s))
            .collect()
    }
}

/// Encodes with the best codec: [`Codec::LmsRange`], falling back to
/// [`Codec::Raw`] if that would be smaller.
pub fn encode(header: &ChunkHeader, samples: &[i32]) -> Result<Vec<u8>, WaveformError> {
    let compressed = encode_with(header, samples, Codec::LmsRange)?;
    if compressed.len() > HEADER_LEN + samples.len() * 4 {
        return encode_with(header, samples, Codec::Raw);
    }
    Ok(compressed)
}

/// Encodes with a specific codec (for tests, benchmarks and migrations).
pub fn encode_with(
    header: &ChunkHeader,
    samples: &[i32],
    codec: Codec,
) -> Result<Vec<u8>, WaveformError> {
    header.validate()?;
    let count = u32::try_from(samples.len())
        .ok()
        .filter(|&n| n <= MAX_SAMPLES_PER_CHUNK)
        .ok_or(WaveformError::TooManySamples {
            count: samples.len() as u64,
            max: MAX_SAMPLES_PER_CHUNK,
        })?;

    let mut out = vec![0u8; HEADER_LEN];
    out = match codec {
        Codec::Raw => {
            out.reserve(samples.len() * 4);
            for s in samples {
                out.extend_from_slice(&s.to_le_bytes());
            }
            out
        }
        Codec::LmsRange => lms::encode(samples, out),
    };
    let payload_len = u32::try_from(out.len() - HEADER_LEN)
        .map_err(|_| WaveformError::CorruptPayload("payload exceeds 4 GiB"))?;
    let payload_crc = crc32fast::hash(&out[HEADER_LEN..]);

    let h = &mut out[..HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    h[4] = FORMAT_VERSION;
    h[5] = codec.id();
    h[6..8].copy_from_slice(&0u16.to_le_bytes());
    h[8..16].copy_from_slice(&header.sampling_rate_hz.to_bits().to_le_bytes());
    h[16..24].copy_from_slice(&header.start_ms.to_le_bytes());
    h[24..32].copy_from_slice(&header.gain.to_bits().to_le_bytes());
    h[32..36].copy_from_slice(&header.baseline.to_le_bytes());
    h[36..40].copy_from_slice(&count.to_le_bytes());
    h[40..44].copy_from_slice(&payload_len.to_le_bytes());
    h[44..48].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&h[..48]);
    h[48..52].copy_from_slice(&header_crc.to_le_bytes());
    Ok(out)
}

/// Reads fixed-size fields from a header already known to be HEADER_LEN long.
struct Fields<'a>(&'a [u8; HEADER_LEN]);

impl Fields<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut b = [0u8; N];
        b.copy_from_slice(&self.0[at..at + N]);
        b
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.bytes(at))
    }
}

/// Validates the header (magic, version, codec, header CRC, field ranges,
/// length) without reading the payload. Cheap enough for listings.
pub fn decode_header(bytes: &[u8]) -> Result<ChunkInfo, WaveformError> {
    let Some(fixed) = bytes.first_chunk::<HEADER_LEN>() else {
        return Err(WaveformError::Truncated {
            needed: HEADER_LEN,
            available: bytes.len(),
        });
    };
    let f = Fields(fixed);
    if f.bytes::<4>(0) != MAGIC {
        return Err(WaveformError::BadMagic);
    }
    // Versions are checked before the CRC so a future layout is reported as
    // such rather than as corruption.
    if fixed[4] != FORMAT_VERSION {
        return Err(WaveformError::UnsupportedVersion(fixed[4]));
    }
    let stored = f.u32(48);
    let computed = crc32fast::hash(&fixed[..48]);
    if stored != computed {
        return Err(WaveformError::HeaderChecksum { stored, computed });
    }
    let codec = Codec::from_id(fixed[5])?;
    let flags = u16::from_le_bytes(f.bytes(6));
    if flags != 0 {
        return Err(WaveformError::ReservedFlags(flags));
    }
    let header = ChunkHeader {
        sampling_rate_hz: f64::from_bits(u64::from_le_bytes(f.bytes(8))),
        start_ms: i64::from_le_bytes(f.bytes(16)),
        gain: f64::from_bits(u64::from_le_bytes(f.bytes(24))),
        baseline: i32::from_le_bytes(f.bytes(32)),
    };
    header.validate()?;
    let sample_count = f.u32(36);
    if sample_count > MAX_SAMPLES_PER_CHUNK {
        return Err(WaveformError::TooManySamples {
            count: u64::from(sample_count),
            max: MAX_SAMPLES_PER_CHUNK,
        });
    }
    let encoded_len = usize::try_from(f.u32(40))
        .ok()
        .and_then(|p| p.checked_add(HEADER_LEN))
        .ok_or(WaveformError::CorruptPayload("payload length overflows"))?;
    if bytes.len() < encoded_len {
        return Err(WaveformError::Truncated {
            needed: encoded_len,
            available: bytes.len(),
        });
    }
    if bytes.len() > encoded_len {
        return Err(WaveformError::TrailingBytes(bytes.len() - encoded_len));
    }
    Ok(ChunkInfo {
        header,
        version: fixed[4],
        codec,
        sample_count,
        encoded_len,
    })
}

/// Decodes a whole chunk, verifying both checksums. The returned samples are
/// bit-identical to those given to [`encode`].
pub fn decode(bytes: &[u8]) -> Result<DecodedChunk, WaveformError> {
    let info = decode_header(bytes)?;
    let payload = &bytes[HEADER_LEN..info.encoded_len];
    let fixed = bytes
        .first_chunk::<HEADER_LEN>()
        .ok_or(WaveformError::CorruptPayload("header vanished"))?;
    let stored = Fields(fixed).u32(44);
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(WaveformError::PayloadChecksum { stored, computed });
    }
    let count = info.sample_count as usize;
    let samples = match info.codec {
        Codec::Raw => {
            if payload.len() != count * 4 {
                return Err(WaveformError::CorruptPayload(
                    "raw payload length does not match sample count",
                ));
            }
            payload
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        }
        Codec::LmsRange => lms::decode(payload, count)?,
    };
    Ok(DecodedChunk {
        header: info.header,
        codec: info.codec,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr() -> ChunkHeader {
        ChunkHeader {
            sampling_rate_hz: 360.0,
            start_ms: 1_700_000_000_000,
            gain: 200.0,
            baseline: 1024,
        }
    }

    #[test]
    fn header_only_listing() {
        let bytes = encode(&hdr(), &[1, 2, 3]).unwrap();
        let info = decode_header(&bytes).unwrap();
        assert_eq!(info.sample_count, 3);
        assert_eq!(info.header, hdr());
        assert_eq!(info.encoded_len, bytes.len());
    }

    #[test]
    fn rejects_invalid_metadata() {
        let mut h = hdr();
        h.sampling_rate_hz = f64::NAN;
        assert!(matches!(
            encode(&h, &[]),
            Err(WaveformError::InvalidSamplingRate(_))
        ));
        let mut h = hdr();
        h.gain = 0.0;
        assert!(matches!(
            encode(&h, &[]),
            Err(WaveformError::InvalidGain(_))
        ));
    }

    #[test]
    fn physical_value_uses_wfdb_convention() {
        assert_eq!(hdr().to_physical(1224), 1.0);
    }
}
