//! The device payload, version 1 (see `docs/device-protocol.md`).
//!
//! A message is one JSON object with `"v": 1` and exactly one of:
//! - a single reading: `seq`, `code`, `value`, `unit`, `time` at the top level;
//! - a batch: `readings`, an array of such readings, stored all or nothing;
//! - a waveform chunk: `waveform`, an object with `seq`, `signal`, `rate_hz`, `start`,
//!   `gain`, `baseline` and `samples`.
//!
//! Parsing goes through `serde_json::Value` rather than derived structs so that every
//! error names the exact field (`readings[3].value`) and says why, which is what a device
//! maker debugging firmware needs.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::codes::{UnitError, normalise};
use crate::observation::{Reading, Signal, WaveformChunk};
use crate::people::DeviceKind;

/// The only payload version this build reads; older versions stay readable as they are added.
pub const PAYLOAD_VERSION: u64 = 1;

/// Bounds on what one message may hold.
#[derive(Debug, Clone, Copy)]
pub struct PayloadLimits {
    pub max_bytes: usize,
    pub max_readings: usize,
    pub max_samples: usize,
    /// How far ahead of the server's clock a timestamp may be (device clocks drift).
    pub max_future_skew: Duration,
}

impl Default for PayloadLimits {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024,
            max_readings: 1000,
            max_samples: 60_000,
            max_future_skew: Duration::minutes(5),
        }
    }
}

/// What a valid message carries.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceMessage {
    Readings(Vec<Reading>),
    Waveform(WaveformChunk),
}

/// The category of a payload error, stable for metrics and protocol reason codes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadErrorKind {
    TooLarge,
    Malformed,
    UnsupportedVersion,
    MissingField,
    WrongType,
    UnknownCode,
    UnitMismatch,
    ImpossibleValue,
    BadTimestamp,
    FutureTimestamp,
    DuplicateSeq,
    /// A code or signal the sending device's kind does not measure.
    NotForDevice,
}

impl PayloadErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadErrorKind::TooLarge => "too_large",
            PayloadErrorKind::Malformed => "malformed",
            PayloadErrorKind::UnsupportedVersion => "unsupported_version",
            PayloadErrorKind::MissingField => "missing_field",
            PayloadErrorKind::WrongType => "wrong_type",
            PayloadErrorKind::UnknownCode => "unknown_code",
            PayloadErrorKind::UnitMismatch => "unit_mismatch",
            PayloadErrorKind::ImpossibleValue => "impossible_value",
            PayloadErrorKind::BadTimestamp => "bad_timestamp",
            PayloadErrorKind::FutureTimestamp => "future_timestamp",
            PayloadErrorKind::DuplicateSeq => "duplicate_seq",
            PayloadErrorKind::NotForDevice => "not_for_device",
        }
    }
}

/// Why a message was refused: which field, and why.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PayloadError {
    pub kind: PayloadErrorKind,
    /// JSON path of the offending field, `$` for the message as a whole.
    pub field: String,
    pub reason: String,
}

impl PayloadError {
    /// `field` of a message names a code or signal that a device of `kind` does not
    /// measure.
    pub fn not_for_device(field: impl Into<String>, what: &str, kind: DeviceKind) -> Self {
        let reason = match kind {
            DeviceKind::Gateway => format!(
                "a gateway sends no readings of its own ({what}); it forwards its devices' messages under their identities"
            ),
            kind => format!("{what} is not measured by a device of kind {kind}"),
        };
        Self::new(PayloadErrorKind::NotForDevice, field, reason)
    }

    fn new(kind: PayloadErrorKind, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            kind,
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Parses and validates one device message against the server's clock `now`.
pub fn parse_device_message(
    bytes: &[u8],
    now: DateTime<Utc>,
    limits: &PayloadLimits,
) -> Result<DeviceMessage, PayloadError> {
    if bytes.len() > limits.max_bytes {
        return Err(PayloadError::new(
            PayloadErrorKind::TooLarge,
            "$",
            format!(
                "message is {} bytes; the limit is {} bytes",
                bytes.len(),
                limits.max_bytes
            ),
        ));
    }
    let document: Value = serde_json::from_slice(bytes).map_err(|error| {
        PayloadError::new(
            PayloadErrorKind::Malformed,
            "$",
            format!("not valid JSON: {error}"),
        )
    })?;
    let Value::Object(message) = document else {
        return Err(PayloadError::new(
            PayloadErrorKind::WrongType,
            "$",
            "expected a JSON object",
        ));
    };
    let context = Context { now, limits };
    check_version(&message)?;
    let has_readings = message.contains_key("readings");
    let has_waveform = message.contains_key("waveform");
    match (has_readings, has_waveform) {
        (true, true) => Err(PayloadError::new(
            PayloadErrorKind::Malformed,
            "$",
            "a message carries either `readings` or `waveform`, not both",
        )),
        (true, false) => parse_batch(&message, &context),
        (false, true) => {
            let waveform = object_field(&message, "waveform", "waveform")?;
            parse_waveform(waveform, "waveform", &context).map(DeviceMessage::Waveform)
        }
        (false, false) => parse_reading(&message, "$", &context)
            .map(|reading| DeviceMessage::Readings(vec![reading])),
    }
}

struct Context<'a> {
    now: DateTime<Utc>,
    limits: &'a PayloadLimits,
}

fn check_version(message: &Map<String, Value>) -> Result<(), PayloadError> {
    match message.get("v") {
        None => Err(PayloadError::new(
            PayloadErrorKind::MissingField,
            "v",
            "required: the payload version, 1",
        )),
        Some(Value::Number(number)) if number.as_u64() == Some(PAYLOAD_VERSION) => Ok(()),
        Some(other) => Err(PayloadError::new(
            PayloadErrorKind::UnsupportedVersion,
            "v",
            format!(
                "payload version {other} is not supported; this server reads version {PAYLOAD_VERSION}"
            ),
        )),
    }
}

fn parse_batch(
    message: &Map<String, Value>,
    context: &Context<'_>,
) -> Result<DeviceMessage, PayloadError> {
    let Some(Value::Array(items)) = message.get("readings") else {
        return Err(PayloadError::new(
            PayloadErrorKind::WrongType,
            "readings",
            "expected an array of readings",
        ));
    };
    if items.is_empty() {
        return Err(PayloadError::new(
            PayloadErrorKind::Malformed,
            "readings",
            "the batch is empty",
        ));
    }
    if items.len() > context.limits.max_readings {
        return Err(PayloadError::new(
            PayloadErrorKind::TooLarge,
            "readings",
            format!(
                "{} readings in one message; the limit is {}",
                items.len(),
                context.limits.max_readings
            ),
        ));
    }
    let mut readings = Vec::with_capacity(items.len());
    let mut seen_seqs = std::collections::HashSet::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let path = format!("readings[{index}]");
        let Value::Object(fields) = item else {
            return Err(PayloadError::new(
                PayloadErrorKind::WrongType,
                path,
                "expected a reading object",
            ));
        };
        let reading = parse_reading(fields, &path, context)?;
        if !seen_seqs.insert(reading.seq) {
            return Err(PayloadError::new(
                PayloadErrorKind::DuplicateSeq,
                format!("{path}.seq"),
                format!("seq {} appears twice in this batch", reading.seq),
            ));
        }
        readings.push(reading);
    }
    Ok(DeviceMessage::Readings(readings))
}

fn join(path: &str, field: &str) -> String {
    if path == "$" {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn parse_reading(
    fields: &Map<String, Value>,
    path: &str,
    context: &Context<'_>,
) -> Result<Reading, PayloadError> {
    let seq = seq_field(fields, path)?;
    let code = string_field(fields, path, "code")?;
    let unit = string_field(fields, path, "unit")?;
    let value = number_field(fields, path, "value")?;
    let effective = time_field(fields, path, "time", context)?;
    let normalised = normalise(code, value, unit).map_err(|error| {
        let (kind, field) = match &error {
            UnitError::UnknownCode(_) => (PayloadErrorKind::UnknownCode, "code"),
            UnitError::UnitMismatch { .. } => (PayloadErrorKind::UnitMismatch, "unit"),
            UnitError::NotFinite { .. } | UnitError::Impossible { .. } => {
                (PayloadErrorKind::ImpossibleValue, "value")
            }
        };
        PayloadError::new(kind, join(path, field), error.to_string())
    })?;
    Ok(Reading {
        seq,
        code: normalised.code,
        value: normalised.value,
        original: normalised.original,
        effective,
    })
}

fn parse_waveform(
    fields: &Map<String, Value>,
    path: &str,
    context: &Context<'_>,
) -> Result<WaveformChunk, PayloadError> {
    let seq = seq_field(fields, path)?;
    let signal_name = string_field(fields, path, "signal")?;
    let signal = Signal::parse(signal_name).ok_or_else(|| {
        PayloadError::new(
            PayloadErrorKind::UnknownCode,
            join(path, "signal"),
            format!(
                "unknown signal {signal_name:?}; expected one of {}",
                Signal::ALL.map(Signal::as_str).join(", ")
            ),
        )
    })?;
    let rate = number_field(fields, path, "rate_hz")?;
    if !(1.0..=10_000.0).contains(&rate) {
        return Err(PayloadError::new(
            PayloadErrorKind::ImpossibleValue,
            join(path, "rate_hz"),
            format!("{rate} Hz is outside 1–10000 Hz"),
        ));
    }
    let start = time_field(fields, path, "start", context)?;
    let gain = number_field(fields, path, "gain")?;
    if !(gain.is_finite() && gain > 0.0) {
        return Err(PayloadError::new(
            PayloadErrorKind::ImpossibleValue,
            join(path, "gain"),
            "gain must be a positive number of counts per unit",
        ));
    }
    let baseline = integer_field(fields, path, "baseline")?;
    let samples_path = join(path, "samples");
    let Some(Value::Array(raw_samples)) = fields.get("samples") else {
        return Err(PayloadError::new(
            PayloadErrorKind::WrongType,
            samples_path,
            "expected an array of integer samples",
        ));
    };
    if raw_samples.is_empty() || raw_samples.len() > context.limits.max_samples {
        return Err(PayloadError::new(
            PayloadErrorKind::TooLarge,
            samples_path,
            format!(
                "{} samples; a chunk holds 1 to {}",
                raw_samples.len(),
                context.limits.max_samples
            ),
        ));
    }
    let mut samples = Vec::with_capacity(raw_samples.len());
    for (index, raw) in raw_samples.iter().enumerate() {
        let sample = raw
            .as_i64()
            .and_then(|wide| i32::try_from(wide).ok())
            .ok_or_else(|| {
                PayloadError::new(
                    PayloadErrorKind::WrongType,
                    format!("{samples_path}[{index}]"),
                    "expected a 32-bit integer ADC count",
                )
            })?;
        samples.push(sample);
    }
    let chunk = WaveformChunk {
        seq,
        signal,
        sampling_rate_hz: rate,
        start,
        gain,
        baseline,
        samples,
    };
    if chunk.end() > context.now + context.limits.max_future_skew {
        return Err(PayloadError::new(
            PayloadErrorKind::FutureTimestamp,
            join(path, "start"),
            "the chunk ends in the future beyond the allowed clock skew",
        ));
    }
    Ok(chunk)
}

fn object_field<'a>(
    fields: &'a Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<&'a Map<String, Value>, PayloadError> {
    match fields.get(name) {
        Some(Value::Object(object)) => Ok(object),
        Some(_) => Err(PayloadError::new(
            PayloadErrorKind::WrongType,
            path,
            "expected an object",
        )),
        None => Err(missing(path.to_owned())),
    }
}

fn missing(field: String) -> PayloadError {
    PayloadError::new(PayloadErrorKind::MissingField, field, "required")
}

fn seq_field(fields: &Map<String, Value>, path: &str) -> Result<i64, PayloadError> {
    let field = join(path, "seq");
    match fields.get("seq") {
        None => Err(missing(field)),
        Some(value) => value.as_i64().filter(|seq| *seq >= 0).ok_or_else(|| {
            PayloadError::new(
                PayloadErrorKind::WrongType,
                field,
                "expected a whole number from 0 to 9223372036854775807",
            )
        }),
    }
}

fn string_field<'a>(
    fields: &'a Map<String, Value>,
    path: &str,
    name: &str,
) -> Result<&'a str, PayloadError> {
    match fields.get(name) {
        None => Err(missing(join(path, name))),
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(PayloadError::new(
            PayloadErrorKind::WrongType,
            join(path, name),
            "expected a string",
        )),
    }
}

fn number_field(fields: &Map<String, Value>, path: &str, name: &str) -> Result<f64, PayloadError> {
    match fields.get(name) {
        None => Err(missing(join(path, name))),
        Some(Value::Number(number)) => number.as_f64().ok_or_else(|| {
            PayloadError::new(
                PayloadErrorKind::WrongType,
                join(path, name),
                "expected a number",
            )
        }),
        Some(_) => Err(PayloadError::new(
            PayloadErrorKind::WrongType,
            join(path, name),
            "expected a number",
        )),
    }
}

fn integer_field(fields: &Map<String, Value>, path: &str, name: &str) -> Result<i32, PayloadError> {
    match fields.get(name) {
        None => Err(missing(join(path, name))),
        Some(value) => value
            .as_i64()
            .and_then(|wide| i32::try_from(wide).ok())
            .ok_or_else(|| {
                PayloadError::new(
                    PayloadErrorKind::WrongType,
                    join(path, name),
                    "expected a 32-bit integer",
                )
            }),
    }
}

/// Earliest timestamp accepted; anything before is a device whose clock was never set.
const EARLIEST_PLAUSIBLE: i64 = 946_684_800; // 2000-01-01T00:00:00Z

fn time_field(
    fields: &Map<String, Value>,
    path: &str,
    name: &str,
    context: &Context<'_>,
) -> Result<DateTime<Utc>, PayloadError> {
    let field = join(path, name);
    let text = string_field(fields, path, name)?;
    let time = DateTime::parse_from_rfc3339(text)
        .map_err(|error| {
            PayloadError::new(
                PayloadErrorKind::BadTimestamp,
                field.clone(),
                format!("{text:?} is not an RFC 3339 timestamp with a zone ({error})"),
            )
        })?
        .with_timezone(&Utc);
    if time.timestamp() < EARLIEST_PLAUSIBLE {
        return Err(PayloadError::new(
            PayloadErrorKind::BadTimestamp,
            field,
            format!("{text} is before 2000-01-01; is the device clock set?"),
        ));
    }
    if time > context.now + context.limits.max_future_skew {
        return Err(PayloadError::new(
            PayloadErrorKind::FutureTimestamp,
            field,
            format!(
                "{text} is more than {} s ahead of the server clock",
                context.limits.max_future_skew.num_seconds()
            ),
        ));
    }
    Ok(time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::ObservationCode;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn parse(text: &str) -> Result<DeviceMessage, PayloadError> {
        parse_device_message(text.as_bytes(), now(), &PayloadLimits::default())
    }

    #[test]
    fn single_reading() {
        let message = parse(
            r#"{"v":1,"seq":7,"code":"99504-3","value":6.1,"unit":"mmol/L","time":"2026-11-24T11:55:00Z"}"#,
        )
        .unwrap();
        let DeviceMessage::Readings(readings) = message else {
            panic!("expected readings")
        };
        assert_eq!(readings.len(), 1);
        assert_eq!(readings[0].seq, 7);
        assert_eq!(readings[0].code, ObservationCode::GlucoseCgm);
        assert!((readings[0].value - 109.895).abs() < 0.01);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#"{"v":1,"readings":[{"seq":1,"code":"59408-5","value":97,"unit":"%","time":"2026-11-24T11:00:00Z"},{"seq":2,"code":"59408-5","value":140,"unit":"%","time":"2026-11-24T11:00:00Z"}]}"#,
                "readings[1].value",
                PayloadErrorKind::ImpossibleValue,
            ),
            (
                r#"{"v":1,"seq":1,"code":"8867-4","value":-3,"unit":"/min","time":"2026-11-24T11:00:00Z"}"#,
                "value",
                PayloadErrorKind::ImpossibleValue,
            ),
            (
                r#"{"v":1,"seq":1,"code":"0000-0","value":3,"unit":"/min","time":"2026-11-24T11:00:00Z"}"#,
                "code",
                PayloadErrorKind::UnknownCode,
            ),
            (
                r#"{"v":1,"seq":1,"code":"8867-4","value":3,"unit":"mg/dL","time":"2026-11-24T11:00:00Z"}"#,
                "unit",
                PayloadErrorKind::UnitMismatch,
            ),
            (
                r#"{"v":1,"seq":1,"code":"8867-4","value":60,"unit":"/min","time":"2027-01-01T00:00:00Z"}"#,
                "time",
                PayloadErrorKind::FutureTimestamp,
            ),
            (
                r#"{"v":1,"seq":1,"code":"8867-4","value":60,"unit":"/min","time":"yesterday"}"#,
                "time",
                PayloadErrorKind::BadTimestamp,
            ),
            (
                r#"{"v":1,"seq":-1,"code":"8867-4","value":60,"unit":"/min","time":"2026-11-24T11:00:00Z"}"#,
                "seq",
                PayloadErrorKind::WrongType,
            ),
            (
                r#"{"v":1,"code":"8867-4","value":60,"unit":"/min","time":"2026-11-24T11:00:00Z"}"#,
                "seq",
                PayloadErrorKind::MissingField,
            ),
            (
                r#"{"v":2,"seq":1}"#,
                "v",
                PayloadErrorKind::UnsupportedVersion,
            ),
            (r#"{"v":1,"seq":1,"#, "$", PayloadErrorKind::Malformed),
            (r#"[1,2]"#, "$", PayloadErrorKind::WrongType),
            (
                r#"{"v":1,"readings":[{"seq":1,"code":"8867-4","value":60,"unit":"/min","time":"2026-11-24T11:00:00Z"},{"seq":1,"code":"8867-4","value":61,"unit":"/min","time":"2026-11-24T11:01:00Z"}]}"#,
                "readings[1].seq",
                PayloadErrorKind::DuplicateSeq,
            ),
        ];
        for (text, field, kind) in cases {
            let error = parse(text).unwrap_err();
            assert_eq!(error.field, field, "{text}: {error}");
            assert_eq!(error.kind, kind, "{text}: {error}");
        }
    }

    #[test]
    fn oversized_messages_are_refused_before_parsing() {
        let limits = PayloadLimits {
            max_bytes: 64,
            ..PayloadLimits::default()
        };
        let error = parse_device_message(&[b' '; 65], now(), &limits).unwrap_err();
        assert_eq!(error.kind, PayloadErrorKind::TooLarge);
    }

    #[test]
    fn waveform_chunk() {
        let message = parse(
            r#"{"v":1,"waveform":{"seq":3,"signal":"ecg-lead-ii","rate_hz":360,"start":"2026-11-24T11:59:00Z","gain":200,"baseline":1024,"samples":[1024,1030,-5]}}"#,
        )
        .unwrap();
        let DeviceMessage::Waveform(chunk) = message else {
            panic!("expected a waveform")
        };
        assert_eq!(chunk.samples, vec![1024, 1030, -5]);
        assert_eq!(chunk.signal, Signal::EcgLeadIi);
        let bad_sample = parse(
            r#"{"v":1,"waveform":{"seq":3,"signal":"ecg-lead-ii","rate_hz":360,"start":"2026-11-24T11:59:00Z","gain":200,"baseline":0,"samples":[1, 2.5]}}"#,
        )
        .unwrap_err();
        assert_eq!(bad_sample.field, "waveform.samples[1]");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_device_message(&bytes, now(), &PayloadLimits::default());
        }
    }
}
