//! Mapping templates: a device whose JSON Wardline has never seen is read with a pair of
//! iomt-fhir templates (the language of Azure's MedTech service), so that templates
//! written for it work unmodified. The device content template finds the measurements
//! in a message; the FHIR mapping template decides each value's LOINC code and unit,
//! and so which Wardline reading it is.
//!
//! Pure: no I/O. Where iomt-fhir groups measurements into observations over a period,
//! Wardline keeps each measurement as a reading; where a template's code is not one
//! Wardline stores (steps, heart rate variability) or its value is not a number (a
//! CodeableConcept, a String), the measurement is reported as not kept, never guessed.

mod content;
mod expression;
mod fhir;
mod jsonpath;
mod problems;
mod units;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};
use wardline_domain::codes::normalise;
use wardline_domain::{ObservationCode, PayloadError, PayloadErrorKind, Reading};

pub use content::{ContentKind, DeviceTemplate, ExtractError, ExtractErrorKind, Measurement};
pub use expression::{Expression, Language, Scope};
pub use fhir::{CodeValueTemplate, Coding, Component, FhirTemplate, LOINC, UCUM, ValueTemplate};
pub use jsonpath::JsonPath;
pub use problems::Problem;
pub use units::ucum_unit;

/// A template document's largest size: real ones are a few kilobytes.
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;

/// A pair of templates, validated and compiled.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub device: DeviceTemplate,
    pub fhir: FhirTemplate,
    /// What is valid but will not give readings (a type without a FHIR mapping, a code
    /// Wardline does not store, a unit that does not fit its code).
    pub warnings: Vec<String>,
}

/// Why a pair of templates was refused: every problem, each with its place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_problems(.problems))]
pub struct TemplateError {
    pub problems: Vec<Problem>,
}

fn describe_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Which document a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    Device,
    Fhir,
}

impl Document {
    fn prefix(self) -> &'static str {
        match self {
            Self::Device => "device_template",
            Self::Fhir => "fhir_template",
        }
    }
}

/// Parses one template document's text (a UTF-8 byte-order mark is allowed, as
/// Windows editors write it).
pub fn parse_document(bytes: &[u8], document: Document) -> Result<Value, TemplateError> {
    let refuse = |reason: String| TemplateError {
        problems: vec![Problem {
            field: document.prefix().into(),
            reason,
        }],
    };
    if bytes.len() > MAX_TEMPLATE_BYTES {
        return Err(refuse(format!(
            "{} bytes; a template is at most {MAX_TEMPLATE_BYTES}",
            bytes.len()
        )));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    serde_json::from_slice(bytes).map_err(|error| refuse(format!("not JSON: {error}")))
}

/// Validates one device content template document alone.
pub fn device_template(document: &Value) -> Result<DeviceTemplate, TemplateError> {
    let mut problems = problems::Problems::default();
    let template = DeviceTemplate::from_json(document, &mut problems);
    finish(template, problems, Document::Device)
}

/// Validates one FHIR mapping template document alone.
pub fn fhir_template(document: &Value) -> Result<FhirTemplate, TemplateError> {
    let mut problems = problems::Problems::default();
    let template = FhirTemplate::from_json(document, &mut problems);
    finish(template, problems, Document::Fhir)
}

fn finish<T>(
    template: T,
    problems: problems::Problems,
    document: Document,
) -> Result<T, TemplateError> {
    let problems = problems.into_vec();
    if problems.is_empty() {
        Ok(template)
    } else {
        Err(TemplateError {
            problems: problems
                .into_iter()
                .map(|problem| Problem {
                    field: format!("{}.{}", document.prefix(), problem.field),
                    reason: problem.reason,
                })
                .collect(),
        })
    }
}

impl Mapping {
    /// Validates both documents (every problem of both is reported) and works out what
    /// of them gives no reading.
    pub fn compile(device: &Value, fhir: &Value) -> Result<Self, TemplateError> {
        let device = device_template(device);
        let fhir = fhir_template(fhir);
        let (device, fhir) = match (device, fhir) {
            (Ok(device), Ok(fhir)) => (device, fhir),
            (device, fhir) => {
                let mut problems = Vec::new();
                if let Err(error) = device {
                    problems.extend(error.problems);
                }
                if let Err(error) = fhir {
                    problems.extend(error.problems);
                }
                return Err(TemplateError { problems });
            }
        };
        let warnings = warnings(&device, &fhir);
        Ok(Self {
            device,
            fhir,
            warnings,
        })
    }

    /// Reads both documents from their text and compiles them; the problems of both are
    /// reported together, as [`Mapping::compile`] does.
    pub fn from_documents(device: &[u8], fhir: &[u8]) -> Result<Self, TemplateError> {
        match (
            parse_document(device, Document::Device),
            parse_document(fhir, Document::Fhir),
        ) {
            (Ok(device), Ok(fhir)) => Self::compile(&device, &fhir),
            (device, fhir) => Err(TemplateError {
                problems: [device.err(), fhir.err()]
                    .into_iter()
                    .flatten()
                    .flat_map(|error| error.problems)
                    .collect(),
            }),
        }
    }

    /// Maps one message (iomt-fhir's event: `Body`, `Properties`, `SystemProperties`).
    /// `device_ids` are the names the sending device is known by: a measurement
    /// naming another device is refused, since a device sends only its own readings.
    /// Refused as a whole when any measurement cannot be read or a value is not
    /// possible, so that a message is stored entirely or not at all.
    pub fn apply(
        &self,
        message: &Value,
        device_ids: &[&str],
        context: &ApplyContext,
    ) -> Result<Mapped, PayloadError> {
        let measurements = self
            .device
            .extract(message, context.message_bytes, context.max_readings)
            .map_err(|error| PayloadError {
                kind: match error.kind {
                    ExtractErrorKind::Missing => PayloadErrorKind::MissingField,
                    ExtractErrorKind::BadTimestamp => PayloadErrorKind::BadTimestamp,
                    ExtractErrorKind::Expression => PayloadErrorKind::WrongType,
                    ExtractErrorKind::TooMany => PayloadErrorKind::TooLarge,
                },
                field: error.field,
                reason: error.reason,
            })?;
        if measurements.is_empty() {
            return Err(PayloadError {
                kind: PayloadErrorKind::Malformed,
                field: "$".into(),
                reason: format!(
                    "the message matches none of the template's {} type match expressions ({})",
                    self.device.templates.len(),
                    self.device
                        .templates
                        .iter()
                        .map(|template| format!(
                            "{}: {}",
                            template.type_name,
                            template.type_match.text()
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            });
        }
        let mut mapped = Mapped::default();
        for measurement in measurements {
            let field = |value_name: &str| format!("{}.{value_name}", measurement.type_name);
            if !device_ids.is_empty() && !device_ids.contains(&measurement.device_id.as_str()) {
                return Err(PayloadError {
                    kind: PayloadErrorKind::NotForDevice,
                    field: format!("{}.deviceIdExpression", measurement.type_name),
                    reason: format!(
                        "the message names device {:?}; it was sent by {}, and a device sends only its own readings",
                        measurement.device_id,
                        device_ids
                            .iter()
                            .map(|id| format!("{id:?}"))
                            .collect::<Vec<_>>()
                            .join(" / ")
                    ),
                });
            }
            check_time(&measurement, context)?;
            let Some(template) = self.fhir.for_type(&measurement.type_name) else {
                mapped.not_kept.push(NotKept {
                    type_name: measurement.type_name.clone(),
                    value_name: None,
                    reason: "the FHIR mapping has no template of this type".into(),
                });
                continue;
            };
            let mut slots: Vec<(&[Coding], &ValueTemplate)> = Vec::new();
            if let Some(value) = &template.value {
                slots.push((&template.codes, value));
            }
            for component in &template.components {
                slots.push((&component.codes, &component.value));
            }
            if slots.is_empty() {
                mapped.not_kept.push(NotKept {
                    type_name: measurement.type_name.clone(),
                    value_name: None,
                    reason: "its FHIR mapping records no value".into(),
                });
            }
            for (codes, value_template) in slots {
                let value_name = value_template.value_name();
                let Some((_, value)) = measurement
                    .values
                    .iter()
                    .find(|(name, _)| name == value_name)
                else {
                    // An optional value the message does not have.
                    continue;
                };
                let code = match reading_code(codes, value_template) {
                    Ok(code) => code,
                    Err(reason) => {
                        mapped.not_kept.push(NotKept {
                            type_name: measurement.type_name.clone(),
                            value_name: Some(value_name.to_owned()),
                            reason,
                        });
                        continue;
                    }
                };
                let spec = code.spec();
                let number = wardline_domain::json::number(value).ok_or_else(|| PayloadError {
                    kind: PayloadErrorKind::WrongType,
                    field: field(value_name),
                    reason: format!("{value} is not a number"),
                })?;
                let unit = value_template
                    .stated_unit()
                    .map(ucum_unit)
                    .ok_or_else(|| PayloadError {
                        kind: PayloadErrorKind::UnitMismatch,
                        field: field(value_name),
                        reason: format!(
                            "the FHIR mapping states no unit for {} ({}); Wardline does not guess one",
                            spec.display, spec.loinc
                        ),
                    })?;
                let normalised =
                    normalise(spec.loinc, number, unit).map_err(|error| PayloadError {
                        kind: match error {
                            wardline_domain::UnitError::UnitMismatch { .. } => {
                                PayloadErrorKind::UnitMismatch
                            }
                            wardline_domain::UnitError::UnknownCode(_) => {
                                PayloadErrorKind::UnknownCode
                            }
                            _ => PayloadErrorKind::ImpossibleValue,
                        },
                        field: field(value_name),
                        reason: error.to_string(),
                    })?;
                let seq = normalised.code.seq_at(measurement.occurrence);
                let reading = Reading {
                    seq,
                    code: normalised.code,
                    value: normalised.value,
                    original: normalised.original,
                    effective: measurement.occurrence,
                };
                if let Some(earlier) = mapped
                    .readings
                    .iter()
                    .find(|earlier| earlier.reading.seq == seq)
                {
                    if earlier.reading != reading {
                        return Err(PayloadError {
                            kind: PayloadErrorKind::DuplicateSeq,
                            field: field(value_name),
                            reason: format!(
                                "two different values of {} at {} in one message",
                                spec.display, measurement.occurrence
                            ),
                        });
                    }
                    continue;
                }
                mapped.readings.push(MappedReading {
                    type_name: measurement.type_name.clone(),
                    value_name: value_name.to_owned(),
                    reading,
                });
            }
        }
        Ok(mapped)
    }
}

/// What the server's clock and limits allow.
#[derive(Debug, Clone, Copy)]
pub struct ApplyContext {
    pub now: DateTime<Utc>,
    pub max_future_skew: Duration,
    pub max_readings: usize,
    /// The message's size in bytes (its payload's, as received): it bounds what
    /// CalculatedContent templates may read of it.
    pub message_bytes: usize,
}

/// What a message gives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapped {
    pub readings: Vec<MappedReading>,
    pub not_kept: Vec<NotKept>,
}

/// A reading, with the type and value of the templates it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedReading {
    pub type_name: String,
    pub value_name: String,
    pub reading: Reading,
}

/// A measurement (or one of its values) that gives no reading, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotKept {
    pub type_name: String,
    pub value_name: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for NotKept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value_name {
            Some(value) => write!(f, "{}.{value}: {}", self.type_name, self.reason),
            None => write!(f, "{}: {}", self.type_name, self.reason),
        }
    }
}

/// The earliest time a measurement may carry: a device whose clock was never set says
/// 1970, which is no one's vital sign.
const EARLIEST_PLAUSIBLE_SECS: i64 = 946_684_800;

fn check_time(measurement: &Measurement, context: &ApplyContext) -> Result<(), PayloadError> {
    let field = format!("{}.timestampExpression", measurement.type_name);
    if measurement.occurrence.timestamp() < EARLIEST_PLAUSIBLE_SECS {
        return Err(PayloadError {
            kind: PayloadErrorKind::BadTimestamp,
            field,
            reason: format!(
                "{} is before 2000-01-01; is the device clock set?",
                measurement.occurrence
            ),
        });
    }
    if measurement.occurrence > context.now + context.max_future_skew {
        return Err(PayloadError {
            kind: PayloadErrorKind::FutureTimestamp,
            field,
            reason: format!(
                "{} is more than {} s ahead of the server clock",
                measurement.occurrence,
                context.max_future_skew.num_seconds()
            ),
        });
    }
    Ok(())
}

/// The Wardline code of a value: the first LOINC coding Wardline stores. `Err` says why
/// the value gives no reading.
fn reading_code(codes: &[Coding], value: &ValueTemplate) -> Result<ObservationCode, String> {
    if matches!(
        value,
        ValueTemplate::String { .. } | ValueTemplate::CodeableConcept { .. }
    ) {
        return Err(format!(
            "a {} value; Wardline's readings are numbers",
            value.type_label()
        ));
    }
    codes
        .iter()
        .filter(|coding| coding.system.as_deref() == Some(LOINC))
        .find_map(|coding| ObservationCode::from_loinc(&coding.code))
        .ok_or_else(|| {
            let listed = codes
                .iter()
                .map(|coding| match &coding.system {
                    Some(system) => format!("{system}|{}", coding.code),
                    None => coding.code.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("none of its codes ({listed}) is a LOINC code Wardline stores")
        })
}

/// What of a valid pair will give no reading, for the one registering it.
fn warnings(device: &DeviceTemplate, fhir: &FhirTemplate) -> Vec<String> {
    let mut warnings = Vec::new();
    if device.templates.is_empty() {
        warnings.push("the device template has no templates: every message will be refused".into());
    }
    let mut types: Vec<&str> = Vec::new();
    for template in &device.templates {
        if !types.contains(&template.type_name.as_str()) {
            types.push(&template.type_name);
        }
    }
    for type_name in &types {
        let Some(mapping) = fhir.for_type(type_name) else {
            warnings.push(format!(
                "{type_name}: no FHIR mapping of this type; its measurements are not kept"
            ));
            continue;
        };
        let produced: Vec<&str> = device
            .templates
            .iter()
            .filter(|template| template.type_name == *type_name)
            .flat_map(|template| template.values.iter().map(|value| value.name.as_str()))
            .collect();
        let mut slots: Vec<(&[Coding], &ValueTemplate)> = Vec::new();
        if let Some(value) = &mapping.value {
            slots.push((&mapping.codes, value));
        }
        for component in &mapping.components {
            slots.push((&component.codes, &component.value));
        }
        if slots.is_empty() {
            warnings.push(format!(
                "{type_name}: its FHIR mapping records no value; not kept"
            ));
        }
        for (codes, value) in slots {
            let name = value.value_name();
            if !produced.contains(&name) {
                warnings.push(format!(
                    "{type_name}.{name}: the device template extracts no value of this name"
                ));
                continue;
            }
            match reading_code(codes, value) {
                Err(reason) => warnings.push(format!("{type_name}.{name}: {reason}; not kept")),
                Ok(code) => {
                    let spec = code.spec();
                    match value.stated_unit() {
                        None => warnings.push(format!(
                            "{type_name}.{name}: no unit for {} ({}); messages giving it will be refused",
                            spec.display, spec.loinc
                        )),
                        Some(unit) => {
                            let ucum = ucum_unit(unit);
                            if !spec.accepted_units.iter().any(|accepted| accepted.ucum == ucum) {
                                warnings.push(format!(
                                    "{type_name}.{name}: {unit:?} is not a unit of {} ({}), which takes {}; messages giving it will be refused",
                                    spec.display,
                                    spec.loinc,
                                    spec.accepted_units
                                        .iter()
                                        .map(|accepted| accepted.ucum)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    for mapping in &fhir.templates {
        if !types.contains(&mapping.type_name.as_str()) {
            warnings.push(format!(
                "{}: a FHIR mapping for a type no device template gives",
                mapping.type_name
            ));
        }
    }
    warnings
}

/// The message a device's payload becomes, as Azure IoT Hub would hand it on: the
/// payload is the `Body`; the hub's properties name the device and, when the device
/// did not time the message itself, the time Wardline received it.
pub fn envelope(payload: Value, device_id: &str, received: DateTime<Utc>) -> Value {
    let received = received.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut properties = Map::new();
    properties.insert(
        "iothub-creation-time-utc".into(),
        Value::String(received.clone()),
    );
    let mut system = Map::new();
    system.insert(
        "iothub-connection-device-id".into(),
        Value::String(device_id.to_owned()),
    );
    system.insert("iothub-enqueuedtime".into(), Value::String(received));
    let mut message = Map::new();
    message.insert("Body".into(), payload);
    message.insert("Properties".into(), Value::Object(properties));
    message.insert("SystemProperties".into(), Value::Object(system));
    Value::Object(message)
}
