//! WFDB (PhysioNet) record reading: `.hea` headers, signal files in the storage formats
//! the ECG databases use (212, 16, 61, 80, 160; a byte offset such as the CinC
//! challenges' `.mat` files need) and MIT-format `.atr` annotation files. Pure functions
//! over text / bytes; a format not read here is refused by name, never guessed.

use crate::error::{EcgError, Result};

/// WFDB's documented default when a header leaves the gain out (or writes 0).
const DEFAULT_GAIN: f64 = 200.0;

/// One signal line of a `.hea` header.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalSpec {
    pub file: String,
    pub format: u16,
    /// Samples of this signal per frame (the format's `x` suffix; 1 when absent).
    pub samples_per_frame: u32,
    /// Bytes before the first sample in the file (the format's `+` suffix).
    pub byte_offset: u64,
    /// ADC units per physical unit.
    pub gain: f64,
    /// ADC value of 0 physical units (defaults to `adc_zero`).
    pub baseline: i32,
    pub units: String,
    pub adc_resolution: u32,
    pub adc_zero: i32,
    pub initial_value: Option<i32>,
    /// 16-bit sum of all samples, as written by WFDB.
    pub checksum: Option<i16>,
    pub block_size: u32,
    /// Lead name, e.g. `MLII`.
    pub description: String,
}

impl SignalSpec {
    /// Converts an ADC value to physical units (mV for ECG).
    pub fn to_physical(&self, adu: i32) -> f64 {
        f64::from(adu - self.baseline) / self.gain
    }
}

/// A parsed `.hea` header (single-segment records).
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub record: String,
    /// Samples per second per signal.
    pub sampling_rate: f64,
    pub samples_per_signal: Option<u64>,
    pub signals: Vec<SignalSpec>,
    /// `#` comment lines, without the `#`.
    pub comments: Vec<String>,
}

impl Header {
    /// Parses header text (LF or CRLF line endings).
    pub fn parse(text: &str) -> Result<Self> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_end_matches('\r').trim()));
        let mut comments = Vec::new();
        let (rec_line_no, rec_line) = loop {
            match lines.next() {
                None => {
                    return Err(EcgError::Header {
                        line: 0,
                        reason: "no record line".into(),
                    });
                }
                Some((_, "")) => continue,
                Some((_, l)) if l.starts_with('#') => comments.push(l[1..].trim().to_string()),
                Some(x) => break x,
            }
        };
        let herr = |line: usize, reason: &str| EcgError::Header {
            line,
            reason: reason.to_string(),
        };
        let mut f = rec_line.split_whitespace();
        let record = f
            .next()
            .ok_or_else(|| herr(rec_line_no, "empty record line"))?;
        if record.contains('/') {
            return Err(herr(rec_line_no, "multi-segment records are not supported"));
        }
        let nsig: usize = f
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| herr(rec_line_no, "bad number of signals"))?;
        // Field may be `360`, `360/1000` (counter freq) or `360/1000(0)`.
        let sampling_rate = match f.next() {
            None => 250.0,
            Some(s) => {
                let head = s.split(['/', '(']).next().unwrap_or(s);
                head.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .ok_or_else(|| herr(rec_line_no, "bad sampling frequency"))?
            }
        };
        let samples_per_signal = match f.next() {
            None => None,
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| herr(rec_line_no, "bad number of samples"))?,
            ),
        };
        let mut signals = Vec::with_capacity(nsig.min(64));
        for (no, line) in lines {
            if line.is_empty() {
                continue;
            }
            if let Some(c) = line.strip_prefix('#') {
                comments.push(c.trim().to_string());
                continue;
            }
            if signals.len() == nsig {
                continue;
            }
            signals.push(parse_signal_line(no, line)?);
        }
        if signals.len() != nsig {
            return Err(herr(
                rec_line_no,
                &format!("header announces {nsig} signals, found {}", signals.len()),
            ));
        }
        Ok(Self {
            record: record.to_string(),
            sampling_rate,
            samples_per_signal,
            signals,
            comments,
        })
    }

    /// Index of the first signal whose description equals `name` (case-insensitive).
    pub fn find_signal(&self, name: &str) -> Result<usize> {
        self.signals
            .iter()
            .position(|s| s.description.eq_ignore_ascii_case(name))
            .ok_or_else(|| EcgError::SignalNotFound(name.to_string()))
    }
}

fn parse_signal_line(no: usize, line: &str) -> Result<SignalSpec> {
    let herr = |reason: &str| EcgError::Header {
        line: no,
        reason: reason.to_string(),
    };
    let mut f = line.split_whitespace();
    let file = f
        .next()
        .ok_or_else(|| herr("empty signal line"))?
        .to_string();
    let fmt_field = f.next().ok_or_else(|| herr("missing format"))?;
    // Format may carry `x` (samples per frame), `:` (skew) and `+` (offset) suffixes, in
    // that order.
    let (fmt_field, byte_offset) = match fmt_field.split_once('+') {
        Some((rest, offset)) => (
            rest,
            offset.parse::<u64>().map_err(|_| herr("bad byte offset"))?,
        ),
        None => (fmt_field, 0),
    };
    let fmt_field = fmt_field.split(':').next().unwrap_or("");
    let (fmt_digits, samples_per_frame) = match fmt_field.split_once('x') {
        Some((format, per_frame)) => (
            format,
            per_frame
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| herr("bad samples per frame"))?,
        ),
        None => (fmt_field, 1),
    };
    let format: u16 = fmt_digits.parse().map_err(|_| herr("bad format"))?;
    let mut gain = DEFAULT_GAIN;
    let mut baseline = None;
    let mut units = String::from("mV");
    if let Some(g) = f.next() {
        let (g_main, u) = match g.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (g, None),
        };
        let (g_num, base) = match g_main.split_once('(') {
            Some((a, b)) => (a, Some(b.trim_end_matches(')'))),
            None => (g_main, None),
        };
        let gv: f64 = g_num.parse().map_err(|_| herr("bad gain"))?;
        if gv.is_finite() && gv != 0.0 {
            gain = gv;
        }
        if let Some(b) = base {
            baseline = Some(b.parse::<i32>().map_err(|_| herr("bad baseline"))?);
        }
        if let Some(u) = u {
            units = u.to_string();
        }
    }
    let mut num = |what: &str| -> Result<Option<i64>> {
        match f.next() {
            None => Ok(None),
            Some(s) => s.parse::<i64>().map(Some).map_err(|_| herr(what)),
        }
    };
    let adc_resolution = num("bad ADC resolution")?.unwrap_or(12);
    let adc_zero = num("bad ADC zero")?.unwrap_or(0);
    let initial_value = num("bad initial value")?;
    let checksum = num("bad checksum")?;
    let block_size = num("bad block size")?.unwrap_or(0);
    let description: Vec<&str> = f.collect();
    let to_i32 = |v: i64, what: &str| i32::try_from(v).map_err(|_| herr(what));
    let adc_zero = to_i32(adc_zero, "ADC zero out of range")?;
    Ok(SignalSpec {
        file,
        format,
        samples_per_frame,
        byte_offset,
        gain,
        baseline: baseline.unwrap_or(adc_zero),
        units,
        adc_resolution: u32::try_from(adc_resolution).map_err(|_| herr("bad ADC resolution"))?,
        adc_zero,
        initial_value: initial_value
            .map(|v| to_i32(v, "initial value out of range"))
            .transpose()?,
        // WFDB writes the checksum as a signed 16-bit value; wrap defensively.
        checksum: checksum.map(|v| v as i16),
        block_size: u32::try_from(block_size).map_err(|_| herr("bad block size"))?,
        description: description.join(" "),
    })
}

/// The storage formats [`decode_signal`] reads.
pub const READABLE_FORMATS: [u16; 5] = [212, 16, 61, 80, 160];

/// Decodes signal `signal` of `header` from `bytes`, the whole file the header names for
/// it, in the storage format the header gives: the signals stored in the same file are
/// interleaved in header order, after the header's byte offset. A format this crate does
/// not read, several samples per frame, or signals of different formats in one file
/// are refused with [`EcgError::UnsupportedFormat`] or [`EcgError::Config`].
pub fn decode_signal(header: &Header, bytes: &[u8], signal: usize) -> Result<Vec<i32>> {
    let spec = header.signals.get(signal).ok_or_else(|| {
        EcgError::Config(format!(
            "signal index {signal} out of range for {} signals",
            header.signals.len()
        ))
    })?;
    let in_file: Vec<&SignalSpec> = header
        .signals
        .iter()
        .filter(|other| other.file == spec.file)
        .collect();
    let position = header.signals[..signal]
        .iter()
        .filter(|other| other.file == spec.file)
        .count();
    if let Some(other) = in_file.iter().find(|other| {
        other.format != spec.format
            || other.byte_offset != spec.byte_offset
            || other.samples_per_frame != 1
    }) {
        return Err(EcgError::Config(format!(
            "file {} holds signals of formats {} and {} or with several samples per frame; \
             such records are not read",
            spec.file, spec.format, other.format
        )));
    }
    let offset = usize::try_from(spec.byte_offset)
        .ok()
        .filter(|offset| *offset <= bytes.len())
        .ok_or(EcgError::TruncatedSignal(bytes.len()))?;
    let bytes = &bytes[offset..];
    let n_signals = in_file.len();
    let fixed = |width: usize, sample: fn(&[u8]) -> i32| -> Result<Vec<i32>> {
        let frame = width * n_signals;
        if !bytes.len().is_multiple_of(frame) {
            return Err(EcgError::TruncatedSignal(bytes.len() % frame));
        }
        Ok(bytes
            .chunks_exact(frame)
            .map(|frame| sample(&frame[position * width..(position + 1) * width]))
            .collect())
    };
    match spec.format {
        212 => decode_format_212_signal(bytes, n_signals, position),
        // 16-bit two's complement, little-endian.
        16 => fixed(2, |b| i32::from(i16::from_le_bytes([b[0], b[1]]))),
        // 16-bit two's complement, big-endian.
        61 => fixed(2, |b| i32::from(i16::from_be_bytes([b[0], b[1]]))),
        // 8-bit offset binary.
        80 => fixed(1, |b| i32::from(b[0]) - 128),
        // 16-bit offset binary, little-endian.
        160 => fixed(2, |b| i32::from(u16::from_le_bytes([b[0], b[1]])) - 32_768),
        other => Err(EcgError::UnsupportedFormat(other)),
    }
}

/// Decodes a format-212 file holding `n_signals` interleaved signals and returns
/// one vector of ADC values per signal.
///
/// Samples are a continuous stream of 12-bit pairs, so with an odd number of
/// signals a byte triple straddles two frames; decoding the flat stream first
/// handles that for free.
pub fn decode_format_212(bytes: &[u8], n_signals: usize) -> Result<Vec<Vec<i32>>> {
    if n_signals == 0 {
        return Err(EcgError::Config("n_signals must be > 0".into()));
    }
    let mut out: Vec<Vec<i32>> = (0..n_signals)
        .map(|_| Vec::with_capacity(bytes.len() * 2 / 3 / n_signals + 1))
        .collect();
    let mut k = 0usize;
    let mut push = |v: i32| {
        out[k].push(v);
        k += 1;
        if k == n_signals {
            k = 0;
        }
    };
    let mut chunks = bytes.chunks_exact(3);
    for c in &mut chunks {
        let (s0, s1) = unpack_212(c[0], c[1], c[2]);
        push(s0);
        push(s1);
    }
    match *chunks.remainder() {
        [] => {}
        // A last lone sample occupies two bytes.
        [b0, b1] => push(sign_extend_12(u16::from(b0) | (u16::from(b1 & 0x0F) << 8))),
        ref r => return Err(EcgError::TruncatedSignal(r.len())),
    }
    // Drop a partial frame at the end: every signal must have the same length.
    let n = out.iter().map(Vec::len).min().unwrap_or(0);
    for s in &mut out {
        s.truncate(n);
    }
    Ok(out)
}

/// Decodes only one signal of a format-212 file (avoids allocating the others).
pub fn decode_format_212_signal(bytes: &[u8], n_signals: usize, signal: usize) -> Result<Vec<i32>> {
    if n_signals == 0 || signal >= n_signals {
        return Err(EcgError::Config(format!(
            "signal index {signal} out of range for {n_signals} signals"
        )));
    }
    if bytes.len() % 3 == 1 {
        return Err(EcgError::TruncatedSignal(1));
    }
    let total = bytes.len() / 3 * 2 + usize::from(bytes.len() % 3 == 2);
    let frames = total / n_signals;
    let mut out = Vec::with_capacity(frames);
    for f in 0..frames {
        let idx = f * n_signals + signal;
        let base = idx / 2 * 3;
        let v = if idx.is_multiple_of(2) {
            let lo = bytes.get(base).copied().unwrap_or(0);
            let hi = bytes.get(base + 1).copied().unwrap_or(0);
            u16::from(lo) | (u16::from(hi & 0x0F) << 8)
        } else {
            let lo = bytes.get(base + 2).copied().unwrap_or(0);
            let hi = bytes.get(base + 1).copied().unwrap_or(0);
            u16::from(lo) | (u16::from(hi >> 4) << 8)
        };
        out.push(sign_extend_12(v));
    }
    Ok(out)
}

#[inline]
fn unpack_212(b0: u8, b1: u8, b2: u8) -> (i32, i32) {
    let s0 = u16::from(b0) | (u16::from(b1 & 0x0F) << 8);
    let s1 = u16::from(b2) | (u16::from(b1 >> 4) << 8);
    (sign_extend_12(s0), sign_extend_12(s1))
}

#[inline]
fn sign_extend_12(v: u16) -> i32 {
    // Shift bit 11 into the sign bit of an i16, then arithmetic-shift back.
    i32::from(((v << 4) as i16) >> 4)
}

/// WFDB's 16-bit checksum of a signal, for comparing with [`SignalSpec::checksum`].
pub fn checksum_16(samples: &[i32]) -> i16 {
    samples
        .iter()
        .fold(0i16, |acc, &s| acc.wrapping_add(s as i16))
}

/// One annotation of an MIT-format annotation file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Sample index (time) of the annotation.
    pub sample: i64,
    /// WFDB annotation code (1 = N, 5 = V, 28 = rhythm change, ...).
    pub code: u8,
    pub subtype: i16,
    pub chan: u16,
    pub num: i16,
    /// Auxiliary string (rhythm label such as `(AFIB`), trailing NULs removed.
    pub aux: Option<String>,
}

/// WFDB code of a rhythm-change annotation (`+`).
pub const RHYTHM_CHANGE: u8 = 28;

impl Annotation {
    /// The one-character mnemonic WFDB uses for this code.
    pub fn symbol(&self) -> &'static str {
        code_symbol(self.code)
    }

    /// True for QRS (beat) annotations, as scored by ANSI/AAMI EC57.
    pub fn is_beat(&self) -> bool {
        is_beat_code(self.code)
    }
}

/// True for annotation codes denoting a heartbeat.
pub fn is_beat_code(code: u8) -> bool {
    matches!(code, 1..=13 | 25 | 30 | 34 | 35 | 38 | 41)
}

/// WFDB mnemonic of an annotation code.
pub fn code_symbol(code: u8) -> &'static str {
    const TABLE: [&str; 50] = [
        " ", "N", "L", "R", "a", "V", "F", "J", "A", "S", "E", "j", "/", "Q", "~", "", "|", "",
        "s", "T", "*", "D", "\"", "=", "p", "B", "^", "t", "+", "u", "?", "!", "[", "]", "e", "n",
        "@", "x", "f", "(", ")", "r", "", "", "", "", "", "", "", "",
    ];
    TABLE.get(usize::from(code)).copied().unwrap_or("")
}

/// Parses an MIT-format annotation file (e.g. `.atr`).
pub fn parse_annotations(bytes: &[u8]) -> Result<Vec<Annotation>> {
    const SKIP: u8 = 59;
    const NUM: u8 = 60;
    const SUB: u8 = 61;
    const CHN: u8 = 62;
    const AUX: u8 = 63;
    let word_at = |pos: usize| -> Option<u16> {
        let b = bytes.get(pos..pos + 2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    };
    let mut out: Vec<Annotation> = Vec::new();
    let mut pos = 0usize;
    let mut time: i64 = 0;
    // NUM and CHN carry over to later annotations (WFDB semantics).
    let mut cur_num: i16 = 0;
    let mut cur_chan: u16 = 0;
    loop {
        let Some(w) = word_at(pos) else {
            // Some files end without the 0 word; accept a clean end of data.
            if pos >= bytes.len() {
                break;
            }
            return Err(EcgError::Annotation {
                offset: pos,
                reason: "odd trailing byte",
            });
        };
        let code = (w >> 10) as u8;
        let arg = w & 0x03FF;
        pos += 2;
        match code {
            0 if arg == 0 => break,
            SKIP => {
                let (Some(hi), Some(lo)) = (word_at(pos), word_at(pos + 2)) else {
                    return Err(EcgError::Annotation {
                        offset: pos,
                        reason: "truncated SKIP",
                    });
                };
                pos += 4;
                let inc = ((u32::from(hi) << 16) | u32::from(lo)) as i32;
                time += i64::from(inc);
            }
            NUM | SUB | CHN | AUX => {
                let Some(last) = out.last_mut() else {
                    return Err(EcgError::Annotation {
                        offset: pos - 2,
                        reason: "modifier before any annotation",
                    });
                };
                // 10-bit fields are signed for NUM and SUB.
                let signed = ((arg << 6) as i16) >> 6;
                match code {
                    NUM => {
                        last.num = signed;
                        cur_num = signed;
                    }
                    SUB => last.subtype = signed,
                    CHN => {
                        last.chan = arg;
                        cur_chan = arg;
                    }
                    _ => {
                        let len = usize::from(arg);
                        let Some(raw) = bytes.get(pos..pos + len) else {
                            return Err(EcgError::Annotation {
                                offset: pos,
                                reason: "truncated AUX string",
                            });
                        };
                        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                        last.aux = Some(String::from_utf8_lossy(&raw[..end]).into_owned());
                        pos += len + (len & 1);
                    }
                }
            }
            _ => {
                time += i64::from(arg);
                out.push(Annotation {
                    sample: time,
                    code,
                    subtype: 0,
                    chan: cur_chan,
                    num: cur_num,
                    aux: None,
                });
            }
        }
    }
    Ok(out)
}

/// A rhythm interval from `+` annotations: `[start, end)` in samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RhythmSpan {
    pub label: String,
    pub start: i64,
    pub end: i64,
}

/// Turns rhythm-change annotations into spans; the last one runs to `record_end`.
pub fn rhythm_spans(annotations: &[Annotation], record_end: i64) -> Vec<RhythmSpan> {
    let changes: Vec<(&str, i64)> = annotations
        .iter()
        .filter(|a| a.code == RHYTHM_CHANGE)
        .filter_map(|a| a.aux.as_deref().map(|s| (s, a.sample)))
        .filter(|(s, _)| s.starts_with('('))
        .collect();
    changes
        .iter()
        .enumerate()
        .map(|(i, &(label, start))| RhythmSpan {
            label: label.to_string(),
            start,
            end: changes.get(i + 1).map_or(record_end, |n| n.1).max(start),
        })
        .collect()
}

/// Parses a one-value-per-line numeric CSV (e.g. HeartPy's excerpts). Blank
/// lines are skipped; a non-numeric first line is taken as a header.
pub fn parse_single_column_csv(text: &str) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let field = line.split(',').next().unwrap_or("").trim();
        if field.is_empty() {
            continue;
        }
        match field.parse::<f64>() {
            Ok(v) if v.is_finite() => out.push(v),
            _ if i == 0 => {}
            _ => {
                return Err(EcgError::Csv {
                    line: i + 1,
                    reason: format!("not a number: {field:?}"),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sign_extension() {
        assert_eq!(sign_extend_12(0x7FF), 2047);
        assert_eq!(sign_extend_12(0x800), -2048);
        assert_eq!(sign_extend_12(0xFFF), -1);
    }

    #[test]
    fn pack_roundtrip() {
        let (s0, s1) = (-5i32, 1000i32);
        let b0 = (s0 & 0xFF) as u8;
        let b1 = ((((s1 >> 8) & 0x0F) << 4) | ((s0 >> 8) & 0x0F)) as u8;
        let b2 = (s1 & 0xFF) as u8;
        let d = decode_format_212(&[b0, b1, b2], 2).unwrap();
        assert_eq!(d, vec![vec![-5], vec![1000]]);
        assert_eq!(
            decode_format_212_signal(&[b0, b1, b2], 2, 1).unwrap(),
            vec![1000]
        );
    }

    #[test]
    fn header_gain_with_units() {
        let h = Header::parse("v 1 250 10\nv.dat 212 2281/mV 0 0 -26 -9286 0 II\n#x\n").unwrap();
        assert_eq!(h.signals[0].gain, 2281.0);
        assert_eq!(h.signals[0].adc_resolution, 0);
        assert_eq!(h.find_signal("ii").unwrap(), 0);
        assert_eq!(h.comments, vec!["x".to_string()]);
    }

    fn header(signals: &str) -> Header {
        Header::parse(&format!("r 2 250 2\n{signals}")).unwrap()
    }

    #[test]
    fn each_format_is_read_as_its_header_says() {
        // Two frames of two signals: (1, -2), (300, -400).
        let sixteen = [1u8, 0, 0xFE, 0xFF, 0x2C, 0x01, 0x70, 0xFE];
        let two = header("r.dat 16 200 16 0 0 0 0 I\nr.dat 16 200 16 0 0 0 0 II\n");
        assert_eq!(decode_signal(&two, &sixteen, 0).unwrap(), vec![1, 300]);
        assert_eq!(decode_signal(&two, &sixteen, 1).unwrap(), vec![-2, -400]);
        let big_endian = [0u8, 1, 0xFF, 0xFE, 0x01, 0x2C, 0xFE, 0x70];
        let two = header("r.dat 61\nr.dat 61\n");
        assert_eq!(decode_signal(&two, &big_endian, 1).unwrap(), vec![-2, -400]);
        let two = header("r.dat 80\nr.dat 80\n");
        assert_eq!(
            decode_signal(&two, &[129, 126, 128, 0], 1).unwrap(),
            vec![-2, -128]
        );
        let two = header("r.dat 160\nr.dat 160\n");
        assert_eq!(
            decode_signal(&two, &[1, 0x80, 0xFE, 0x7F, 0, 0, 0, 0], 0).unwrap(),
            vec![1, -32_768]
        );
        // A CinC `.mat` file: format 16 after a 24-byte header.
        let mut mat = vec![9u8; 24];
        mat.extend_from_slice(&[0x2C, 0x01, 0x70, 0xFE]);
        let one =
            Header::parse("A00001 1 300 2\nA00001.mat 16+24 1000/mV 16 0 -127 0 0 ECG\n").unwrap();
        assert_eq!(one.signals[0].byte_offset, 24);
        assert_eq!(decode_signal(&one, &mat, 0).unwrap(), vec![300, -400]);
        // Signals in files of their own are each read alone.
        let apart = header("a.dat 16\nb.dat 80\n");
        assert_eq!(decode_signal(&apart, &[5, 0, 7, 0], 0).unwrap(), vec![5, 7]);
        assert_eq!(decode_signal(&apart, &[130, 120], 1).unwrap(), vec![2, -8]);
    }

    #[test]
    fn a_format_not_read_is_refused_not_guessed() {
        let first_differences = header("r.dat 8\nr.dat 8\n");
        assert_eq!(
            decode_signal(&first_differences, &[0; 8], 0),
            Err(EcgError::UnsupportedFormat(8))
        );
        let mixed = header("r.dat 16\nr.dat 80\n");
        assert!(matches!(
            decode_signal(&mixed, &[0; 6], 0),
            Err(EcgError::Config(_))
        ));
        let multi_frequency = header("r.dat 16x2\nr.dat 16\n");
        assert_eq!(multi_frequency.signals[0].samples_per_frame, 2);
        assert!(matches!(
            decode_signal(&multi_frequency, &[0; 12], 1),
            Err(EcgError::Config(_))
        ));
        let odd = header("r.dat 16\nr.dat 16\n");
        assert!(matches!(
            decode_signal(&odd, &[0; 6], 0),
            Err(EcgError::TruncatedSignal(2))
        ));
        let beyond = Header::parse("r 1 250 2\nr.dat 16+100\n").unwrap();
        assert!(decode_signal(&beyond, &[0; 8], 0).is_err());
        assert!(Header::parse("r 1 250\nr.dat 16+x\n").is_err());
        assert!(Header::parse("r 1 250\nr.dat 16x0\n").is_err());
    }

    #[test]
    fn malformed_inputs_do_not_panic() {
        assert!(Header::parse("").is_err());
        assert!(Header::parse("r 2 360\nr.dat 212\n").is_err());
        assert!(parse_annotations(&[0xFF, 0xFF]).is_err());
        assert!(parse_annotations(&[0x00, 0xFC, 0x01]).is_err());
        assert!(decode_format_212(&[1], 2).is_err());
    }
}
