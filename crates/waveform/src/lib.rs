//! Lossless, versioned chunk format for integer waveforms (ECG ADC counts).
//!
//! A chunk is a fixed header followed by a codec payload. The library does no
//! I/O: bytes in, bytes out.
//!
//! # Layout (all integers little-endian)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `WLWF` |
//! | 4 | 1 | format version (1 or 2) |
//! | 5 | 1 | codec id ([`Codec`]) |
//! | 6 | 2 | flags: 0 in version 1; in version 2 bit 0 says the scale is a factor |
//! | 8 | 8 | sampling rate in Hz, f64 bits |
//! | 16 | 8 | start time, i64 ms since the Unix epoch |
//! | 24 | 8 | scale, f64 bits: the gain in ADC units per physical unit, or (flag bit 0) the factor in physical units per ADC unit |
//! | 32 | 4 | baseline, i32 ADC units |
//! | 36 | 4 | sample count, u32 |
//! | 40 | 4 | payload length in bytes, u32 |
//! | 44 | 4 | CRC-32 (IEEE) of the payload |
//! | 48 | 8 | version 2 only: origin, f64 bits, the physical value at the baseline |
//! | 48 (v1), 56 (v2) | 4 | CRC-32 (IEEE) of every header byte before it |
//!
//! The header has its own checksum so that [`decode_header`] can validate a
//! chunk for listings without touching the payload.
//!
//! Physical value = origin + (sample − baseline) / gain, the WFDB convention
//! with an offset, or origin + (sample − baseline) × factor, FHIR
//! `SampledData`'s. Version 2 exists for the second: a factor such as 1.612
//! has no exact reciprocal, and an origin is not always a whole number of
//! ADC units, so both are kept as sent. A chunk that version 1 can say
//! (a gain, origin 0) is written as version 1, so chunks from devices are
//! byte for byte what they always were.

mod error;
mod lms;
mod rc;

pub use error::WaveformError;

/// Magic bytes at the start of every chunk.
pub const MAGIC: [u8; 4] = *b"WLWF";
/// The newest format version this library writes and reads.
pub const FORMAT_VERSION: u8 = 2;
/// Size of a version 1 header, the one chunks from devices carry.
pub const HEADER_LEN: usize = 52;
/// Size of a version 2 header (an origin before the checksum).
pub const HEADER_LEN_V2: usize = 60;
/// Version 2's flag: the scale field is a factor (physical units per ADC unit).
const FLAG_FACTOR: u16 = 1;
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

/// How a chunk's ADC units become physical units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// ADC units per physical unit (WFDB's gain, what devices send).
    Gain(f64),
    /// Physical units per ADC unit (FHIR `SampledData.factor`), kept as sent since
    /// its reciprocal is not always exact.
    Factor(f64),
}

impl Scale {
    /// ADC units per physical unit, whichever way the scale was given.
    pub fn gain(self) -> f64 {
        match self {
            Self::Gain(gain) => gain,
            Self::Factor(factor) => 1.0 / factor,
        }
    }

    /// Physical units per ADC unit, whichever way the scale was given.
    pub fn factor(self) -> f64 {
        match self {
            Self::Gain(gain) => 1.0 / gain,
            Self::Factor(factor) => factor,
        }
    }

    fn value(self) -> f64 {
        match self {
            Self::Gain(value) | Self::Factor(value) => value,
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
    /// ADC units to physical units. Must be finite and non-zero.
    pub scale: Scale,
    /// ADC value that corresponds to the origin.
    pub baseline: i32,
    /// The physical value at the baseline. Must be finite; 0 for what devices send.
    pub origin: f64,
}

impl ChunkHeader {
    /// A device's chunk: a gain and a baseline that means zero.
    pub const fn with_gain(sampling_rate_hz: f64, start_ms: i64, gain: f64, baseline: i32) -> Self {
        Self {
            sampling_rate_hz,
            start_ms,
            scale: Scale::Gain(gain),
            baseline,
            origin: 0.0,
        }
    }

    /// ADC units per physical unit.
    pub fn gain(&self) -> f64 {
        self.scale.gain()
    }

    /// Converts one stored sample to physical units.
    pub fn to_physical(&self, sample: i32) -> f64 {
        let steps = f64::from(sample) - f64::from(self.baseline);
        let scaled = match self.scale {
            Scale::Gain(gain) => steps / gain,
            Scale::Factor(factor) => steps * factor,
        };
        self.origin + scaled
    }

    /// The format version that says this header: 1 unless it needs version 2's
    /// factor or origin.
    fn version(&self) -> u8 {
        if matches!(self.scale, Scale::Gain(_)) && self.origin == 0.0 {
            1
        } else {
            2
        }
    }

    fn validate(&self) -> Result<(), WaveformError> {
        if !(self.sampling_rate_hz.is_finite() && self.sampling_rate_hz > 0.0) {
            return Err(WaveformError::InvalidSamplingRate(self.sampling_rate_hz));
        }
        let scale = self.scale.value();
        if !(scale.is_finite() && scale != 0.0) {
            return Err(WaveformError::InvalidGain(scale));
        }
        if !self.origin.is_finite() {
            return Err(WaveformError::InvalidOrigin(self.origin));
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
    if compressed.len() > header_len(header.version()) + samples.len() * 4 {
        return encode_with(header, samples, Codec::Raw);
    }
    Ok(compressed)
}

/// The header's length in a format version.
fn header_len(version: u8) -> usize {
    if version == 1 {
        HEADER_LEN
    } else {
        HEADER_LEN_V2
    }
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

    let version = header.version();
    let len = header_len(version);
    let mut out = vec![0u8; len];
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
    let payload_len = u32::try_from(out.len() - len)
        .map_err(|_| WaveformError::CorruptPayload("payload exceeds 4 GiB"))?;
    let payload_crc = crc32fast::hash(&out[len..]);
    let flags = match header.scale {
        Scale::Factor(_) => FLAG_FACTOR,
        Scale::Gain(_) => 0,
    };

    let h = &mut out[..len];
    h[0..4].copy_from_slice(&MAGIC);
    h[4] = version;
    h[5] = codec.id();
    h[6..8].copy_from_slice(&flags.to_le_bytes());
    h[8..16].copy_from_slice(&header.sampling_rate_hz.to_bits().to_le_bytes());
    h[16..24].copy_from_slice(&header.start_ms.to_le_bytes());
    h[24..32].copy_from_slice(&header.scale.value().to_bits().to_le_bytes());
    h[32..36].copy_from_slice(&header.baseline.to_le_bytes());
    h[36..40].copy_from_slice(&count.to_le_bytes());
    h[40..44].copy_from_slice(&payload_len.to_le_bytes());
    h[44..48].copy_from_slice(&payload_crc.to_le_bytes());
    if version == 2 {
        h[48..56].copy_from_slice(&header.origin.to_bits().to_le_bytes());
    }
    let header_crc = crc32fast::hash(&h[..len - 4]);
    h[len - 4..].copy_from_slice(&header_crc.to_le_bytes());
    Ok(out)
}

/// Reads fixed-size fields from a header.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut b = [0u8; N];
        b.copy_from_slice(&self.0[at..at + N]);
        b
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.bytes(at))
    }
    fn f64(&self, at: usize) -> f64 {
        f64::from_bits(u64::from_le_bytes(self.bytes(at)))
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
    if fixed[0..4] != MAGIC {
        return Err(WaveformError::BadMagic);
    }
    // Versions are checked before the CRC so a future layout is reported as
    // such rather than as corruption.
    let version = fixed[4];
    if !(1..=FORMAT_VERSION).contains(&version) {
        return Err(WaveformError::UnsupportedVersion(version));
    }
    let len = header_len(version);
    let Some(fixed) = bytes.get(..len) else {
        return Err(WaveformError::Truncated {
            needed: len,
            available: bytes.len(),
        });
    };
    let f = Fields(fixed);
    let stored = f.u32(len - 4);
    let computed = crc32fast::hash(&fixed[..len - 4]);
    if stored != computed {
        return Err(WaveformError::HeaderChecksum { stored, computed });
    }
    let codec = Codec::from_id(fixed[5])?;
    let flags = u16::from_le_bytes(f.bytes(6));
    let known_flags = if version == 1 { 0 } else { FLAG_FACTOR };
    if flags & !known_flags != 0 {
        return Err(WaveformError::ReservedFlags(flags));
    }
    let scale = f.f64(24);
    let header = ChunkHeader {
        sampling_rate_hz: f.f64(8),
        start_ms: i64::from_le_bytes(f.bytes(16)),
        scale: if flags & FLAG_FACTOR == 0 {
            Scale::Gain(scale)
        } else {
            Scale::Factor(scale)
        },
        baseline: i32::from_le_bytes(f.bytes(32)),
        origin: if version == 1 { 0.0 } else { f.f64(48) },
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
        .and_then(|p| p.checked_add(len))
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
        version,
        codec,
        sample_count,
        encoded_len,
    })
}

/// Decodes a whole chunk, verifying both checksums. The returned samples are
/// bit-identical to those given to [`encode`].
pub fn decode(bytes: &[u8]) -> Result<DecodedChunk, WaveformError> {
    let info = decode_header(bytes)?;
    let len = header_len(info.version);
    let payload = &bytes[len..info.encoded_len];
    let stored = Fields(&bytes[..len]).u32(44);
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
        ChunkHeader::with_gain(360.0, 1_700_000_000_000, 200.0, 1024)
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
        h.scale = Scale::Gain(0.0);
        assert!(matches!(
            encode(&h, &[]),
            Err(WaveformError::InvalidGain(_))
        ));
        let mut h = hdr();
        h.scale = Scale::Factor(f64::INFINITY);
        assert!(matches!(
            encode(&h, &[]),
            Err(WaveformError::InvalidGain(_))
        ));
        let mut h = hdr();
        h.origin = f64::NAN;
        assert!(matches!(
            encode(&h, &[]),
            Err(WaveformError::InvalidOrigin(_))
        ));
    }

    #[test]
    fn physical_value_uses_wfdb_convention() {
        assert_eq!(hdr().to_physical(1224), 1.0);
    }

    #[test]
    fn a_factor_and_an_origin_are_kept_as_sent_in_version_2() {
        // FHIR's R4 ECG example: origin 2048, factor 1.612, whose reciprocal does not
        // come back to 1.612 for every such decimal.
        let header = ChunkHeader {
            sampling_rate_hz: 100.0,
            start_ms: 1_424_334_635_000,
            scale: Scale::Factor(1.612),
            baseline: 0,
            origin: 2048.0,
        };
        let bytes = encode(&header, &[2041, 2043, 2037]).unwrap();
        let info = decode_header(&bytes).unwrap();
        assert_eq!(info.version, 2);
        assert_eq!(info.header, header);
        let chunk = decode(&bytes).unwrap();
        assert_eq!(chunk.samples, [2041, 2043, 2037]);
        assert_eq!(chunk.header.scale, Scale::Factor(1.612));
        assert!((chunk.header.to_physical(2041) - (2048.0 + 2041.0 * 1.612)).abs() < 1e-9);

        // An origin alone needs version 2 too; a gain and origin 0 stay version 1.
        let offset = ChunkHeader {
            origin: -0.5,
            ..hdr()
        };
        assert_eq!(
            decode_header(&encode(&offset, &[1]).unwrap())
                .unwrap()
                .version,
            2
        );
        assert_eq!(
            decode_header(&encode(&hdr(), &[1]).unwrap())
                .unwrap()
                .version,
            1
        );
        assert_eq!(
            encode(&hdr(), &[1]).unwrap().len() + 8,
            encode(&offset, &[1]).unwrap().len()
        );
    }

    #[test]
    fn version_1_knows_no_flags_and_version_2_only_the_factor() {
        let mut bytes = encode(&hdr(), &[1, 2]).unwrap();
        bytes[6] = 1;
        let crc = crc32fast::hash(&bytes[..48]);
        bytes[48..52].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_header(&bytes), Err(WaveformError::ReservedFlags(1)));

        let factor = ChunkHeader {
            scale: Scale::Factor(0.005),
            ..hdr()
        };
        let mut bytes = encode(&factor, &[1, 2]).unwrap();
        bytes[6] = 3;
        let crc = crc32fast::hash(&bytes[..56]);
        bytes[56..60].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_header(&bytes), Err(WaveformError::ReservedFlags(3)));
    }
}
