//! What devices write: an Observation posted alone, or a `transaction` or `batch` Bundle
//! as a Personal Health Device gateway (HL7 PHD IG) uploads it, read into Wardline's
//! readings. Pure: which device and patient a reference names, and whether the sender
//! may write for them, is the service's to decide; this says what each entry asks.
//!
//! Every refusal names the element (a FHIRPath expression from the resource or the
//! Bundle) and why, so a gateway's log tells its engineer what to fix.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};
use wardline_domain::codes::{UnitError, accepted_code, normalise};
use wardline_domain::{ObservationCode, Reading};

use crate::resources::IssueType;
use crate::waveforms::{InboundWaveform, ecg_leads};
use crate::{LOINC, UCUM};

/// Most entries in one Bundle: a gateway's day of readings fits many times over, and a
/// Bundle is answered only after its one commit.
pub const MAX_BUNDLE_ENTRIES: usize = 1000;
/// The earliest time a measurement may carry: a device whose clock was never set says
/// 1970, which is no one's vital sign.
const EARLIEST_PLAUSIBLE_SECS: i64 = 946_684_800;
/// The identifier system of a device's IEEE EUI-64, as the PHD IG writes it.
pub const EUI64_SYSTEM: &str = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680";
/// The identifier system of Wardline's own device ids.
pub const DEVICE_SYSTEM: &str = "urn:wardline:device";

/// Why an entry or a resource cannot be taken: where (a FHIRPath expression), what kind
/// of problem, and why in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{expression}: {message}")]
pub struct InboundError {
    pub expression: String,
    pub issue: IssueType,
    pub message: String,
}

pub(crate) fn invalid(expression: impl Into<String>, message: impl Into<String>) -> InboundError {
    InboundError {
        expression: expression.into(),
        issue: IssueType::Invalid,
        message: message.into(),
    }
}

pub(crate) fn required(expression: impl Into<String>, message: impl Into<String>) -> InboundError {
    InboundError {
        expression: expression.into(),
        issue: IssueType::Required,
        message: message.into(),
    }
}

pub(crate) fn value_error(
    expression: impl Into<String>,
    message: impl Into<String>,
) -> InboundError {
    InboundError {
        expression: expression.into(),
        issue: IssueType::Value,
        message: message.into(),
    }
}

pub(crate) fn not_supported(
    expression: impl Into<String>,
    message: impl Into<String>,
) -> InboundError {
    InboundError {
        expression: expression.into(),
        issue: IssueType::NotSupported,
        message: message.into(),
    }
}

/// How a Bundle's entries are taken: all or none (`transaction`), or each on its own
/// (`batch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    Transaction,
    Batch,
}

impl BundleKind {
    pub fn response_type(self) -> &'static str {
        match self {
            Self::Transaction => "transaction-response",
            Self::Batch => "batch-response",
        }
    }
}

/// One entry of a posted Bundle: where it is, what it is called inside the Bundle, and
/// what it asks.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleEntry {
    /// Its place in `Bundle.entry`, from 0.
    pub index: usize,
    /// `entry.fullUrl`, by which other entries refer to it.
    pub full_url: Option<String>,
    pub request: EntryRequest,
}

/// What an entry asks, read from its resource and `request`.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryRequest {
    /// Store an Observation.
    Observation(Box<InboundObservation>),
    /// Make sure a Device exists (a conditional create, or an update by id): Wardline
    /// never creates one from an upload (enrolment is a care team's act), so this names
    /// an enrolled device that the sender may write for.
    Device(DeviceNames),
    /// Make sure a Patient exists: names the patient the readings are for, which must be
    /// the one the devices are assigned to.
    Patient(PatientNames),
}

/// What a Device entry or reference says of the device, any of which may name an
/// enrolled one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceNames {
    /// Wardline device ids it may be: `Device/{id}`, identifier values of Wardline's or
    /// the EUI-64 system, a conditional create's identifier, the serial number.
    pub ids: Vec<String>,
    /// Serial numbers it gives.
    pub serials: Vec<String>,
}

impl DeviceNames {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.serials.is_empty()
    }
}

/// What a Patient entry says of the patient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientNames {
    /// `Patient/{id}` (an update by id, or the resource's `id`).
    pub id: Option<String>,
    /// Medical record numbers among its identifiers (type `MR`).
    pub mrns: Vec<String>,
}

/// Where a reference points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<N> {
    /// Nothing is named (or only something Wardline does not keep, a `DeviceMetric`):
    /// for a device, the sender itself; for a subject, the devices' patient.
    Unnamed,
    /// Another entry of the same Bundle, by its `fullUrl`.
    Entry(String),
    /// Named directly.
    Named(N),
}

/// What a Personal Health Device gateway uploads beside measurements (the PHD IG's
/// supplementary Observations): not readings, but not to be refused either, since a
/// refusal would fail the gateway's whole transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Supplement {
    /// The device's clock read at the gateway's time (`PhdCoincidentTimeStampObservation`,
    /// MDC_ATTR_TIME_ABS): the gateway has already corrected the measurements' times by
    /// it, so it is noted and nothing is kept.
    CoincidentTime,
    /// The device's battery charge (MDC_ATTR_VAL_BATT_CHARGE, percent) measured at `at`.
    Battery { percent: f64, at: DateTime<Utc> },
    /// The device's power status (MDC_ATTR_POWER_STAT: on mains, on battery, charging),
    /// as the PHD IG's bits in components: which of them are set.
    PowerStatus { set: Vec<String> },
}

/// The PHD IG's code system: ISO/IEEE 11073-10101 (MDC).
pub const PHD_MDC: &str = "urn:iso:std:iso:11073:10101";
/// MDC_ATTR_TIME_ABS: a coincident time stamp of an absolute-time clock.
const MDC_ATTR_TIME_ABS: &str = "67975";
/// MDC_ATTR_VAL_BATT_CHARGE: the battery's charge, percent.
const MDC_ATTR_VAL_BATT_CHARGE: &str = "67996";
/// MDC_ATTR_POWER_STAT: the device's power status, as bits.
const MDC_ATTR_POWER_STAT: &str = "67925";
const COINCIDENT_TIME_PROFILE: &str =
    "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdCoincidentTimeStampObservation";

/// An Observation to store, as read: its readings (one, or two for a blood pressure
/// panel), an ECG's leads, or a PHD gateway's supplement instead, and what it says about
/// its device and subject.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundObservation {
    pub readings: Vec<Reading>,
    /// An ECG's leads (`valueSampledData`), each a chunk of its own.
    pub waveforms: Vec<InboundWaveform>,
    /// When this is a supplement (and `readings` is empty).
    pub supplement: Option<Supplement>,
    pub device: Target<DeviceNames>,
    pub subject: Target<String>,
    /// The FHIRPath of the resource (`Observation`, `Bundle.entry[3].resource`).
    pub path: String,
}

/// Reads a posted Bundle: its kind and every entry. One entry that cannot be read fails
/// a `transaction` whole; in a `batch` it is answered on its own, so here it comes back
/// as that entry's error.
pub fn read_bundle(
    bundle: &Value,
    now: DateTime<Utc>,
    max_future_skew: Duration,
) -> Result<(BundleKind, Vec<Result<BundleEntry, InboundError>>), InboundError> {
    let members = bundle
        .as_object()
        .ok_or_else(|| invalid("Bundle", "expected a JSON object"))?;
    match members.get("resourceType").and_then(Value::as_str) {
        Some("Bundle") => {}
        Some(other) => {
            return Err(invalid(
                "resourceType",
                format!("{other:?}: the base URL takes a transaction or batch Bundle"),
            ));
        }
        None => return Err(required("resourceType", "missing")),
    }
    let kind = match members.get("type").and_then(Value::as_str) {
        Some("transaction") => BundleKind::Transaction,
        Some("batch") => BundleKind::Batch,
        Some(other) => {
            return Err(not_supported(
                "Bundle.type",
                format!("{other:?}: Wardline takes transaction and batch Bundles"),
            ));
        }
        None => return Err(required("Bundle.type", "missing")),
    };
    let entries = match members.get("entry") {
        None => &Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(invalid("Bundle.entry", "expected an array")),
    };
    if entries.len() > MAX_BUNDLE_ENTRIES {
        return Err(value_error(
            "Bundle.entry",
            format!(
                "{} entries; at most {MAX_BUNDLE_ENTRIES} in one Bundle",
                entries.len()
            ),
        ));
    }
    let read = entries
        .iter()
        .enumerate()
        .map(|(index, entry)| read_entry(index, entry, now, max_future_skew))
        .collect();
    Ok((kind, read))
}

fn read_entry(
    index: usize,
    entry: &Value,
    now: DateTime<Utc>,
    max_future_skew: Duration,
) -> Result<BundleEntry, InboundError> {
    let at = format!("Bundle.entry[{index}]");
    let entry = entry
        .as_object()
        .ok_or_else(|| invalid(&at, "expected a JSON object"))?;
    let full_url = optional_string(entry, "fullUrl", &at)?;
    let request = entry
        .get("request")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            required(
                format!("{at}.request"),
                "every entry of a transaction or batch says what it asks",
            )
        })?;
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .ok_or_else(|| required(format!("{at}.request.method"), "missing"))?;
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| required(format!("{at}.request.url"), "missing"))?;
    let resource_path = format!("{at}.resource");
    let resource = entry
        .get("resource")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            required(
                &resource_path,
                format!("{method} {url} carries no resource"),
            )
        })?;
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| required(format!("{resource_path}.resourceType"), "missing"))?;
    let if_none_exist = request.get("ifNoneExist").and_then(Value::as_str);
    let kind = match (method, resource_type) {
        ("POST", "Observation") if url == "Observation" => {
            let observation = read_observation_at(resource, &resource_path, now, max_future_skew)?;
            EntryRequest::Observation(Box::new(observation))
        }
        ("POST" | "PUT", "Device") => {
            let mut names = device_names(resource, &resource_path)?;
            names.ids.extend(put_id(method, url, "Device"));
            if let Some(condition) = if_none_exist {
                names.ids.extend(identifier_condition(condition));
            }
            EntryRequest::Device(names)
        }
        ("POST" | "PUT", "Patient") => {
            let mut names = patient_names(resource);
            if let Some(id) = put_id(method, url, "Patient") {
                names.id = Some(id);
            }
            EntryRequest::Patient(names)
        }
        ("POST" | "PUT", "Observation") => {
            return Err(not_supported(
                format!("{at}.request"),
                format!(
                    "{method} {url}: an Observation is created with POST Observation; a stored reading is never replaced"
                ),
            ));
        }
        (method, resource_type) => {
            return Err(not_supported(
                format!("{at}.request"),
                format!(
                    "{method} {resource_type}: Wardline takes Observations, and Devices and Patients that name enrolled ones"
                ),
            ));
        }
    };
    Ok(BundleEntry {
        index,
        full_url,
        request: kind,
    })
}

/// Reads an Observation posted alone.
pub fn read_observation(
    resource: &Value,
    now: DateTime<Utc>,
    max_future_skew: Duration,
) -> Result<InboundObservation, InboundError> {
    let members = resource
        .as_object()
        .ok_or_else(|| invalid("Observation", "expected a JSON object"))?;
    match members.get("resourceType").and_then(Value::as_str) {
        Some("Observation") => {}
        Some(other) => {
            return Err(invalid(
                "resourceType",
                format!("{other:?} posted to Observation"),
            ));
        }
        None => return Err(required("resourceType", "missing")),
    }
    read_observation_at(members, "Observation", now, max_future_skew)
}

fn read_observation_at(
    resource: &Map<String, Value>,
    path: &str,
    now: DateTime<Utc>,
    max_future_skew: Duration,
) -> Result<InboundObservation, InboundError> {
    match resource.get("status").and_then(Value::as_str) {
        Some("final") => {}
        Some(status @ ("amended" | "corrected")) => {
            return Err(value_error(
                format!("{path}.status"),
                format!(
                    "{status:?}: Wardline keeps what the device measured; a stored reading is not corrected by upload"
                ),
            ));
        }
        Some(status) => {
            return Err(value_error(
                format!("{path}.status"),
                format!("{status:?} is not a measurement; only final observations are stored"),
            ));
        }
        None => return Err(required(format!("{path}.status"), "missing")),
    }
    if resource.contains_key("dataAbsentReason") {
        return Err(value_error(
            format!("{path}.dataAbsentReason"),
            "the observation says its value is absent; there is nothing to store",
        ));
    }
    let effective = effective_time(resource, path, now, max_future_skew)?;
    let code = resource
        .get("code")
        .ok_or_else(|| required(format!("{path}.code"), "missing"))?;
    if let Some(supplement) = supplement(resource, code, path, effective)? {
        return Ok(InboundObservation {
            readings: Vec::new(),
            waveforms: Vec::new(),
            supplement: Some(supplement),
            device: device_target(resource.get("device"), &format!("{path}.device"))?,
            subject: subject_target(resource.get("subject"), &format!("{path}.subject"))?,
            path: path.to_owned(),
        });
    }
    let mut waveforms = Vec::new();
    let readings = if resource.contains_key("valueSampledData")
        || sampled_component(resource).is_some()
    {
        waveforms = ecg_leads(resource, path, effective, now + max_future_skew)?;
        Vec::new()
    } else if has_loinc(code, crate::search::BLOOD_PRESSURE_PANEL) {
        blood_pressure(resource, path, effective)?
    } else if let Some(quantity) = resource.get("valueQuantity") {
        let code = reading_code(code, &format!("{path}.code"))?;
        vec![quantity_reading(
            code,
            quantity,
            &format!("{path}.valueQuantity"),
            effective,
        )?]
    } else if resource.contains_key("hasMember") {
        return Err(value_error(
            format!("{path}.hasMember"),
            "a panel that only references its members; post the members themselves",
        ));
    } else if let Some(name) = resource.keys().find(|key| key.starts_with("value")) {
        return Err(not_supported(
            format!("{path}.{name}"),
            "Wardline's readings are quantities (valueQuantity)",
        ));
    } else if resource.contains_key("component") {
        return Err(not_supported(
            format!("{path}.component"),
            "components are taken for the blood pressure panel (85354-9) and for an ECG's leads (valueSampledData) only",
        ));
    } else {
        return Err(required(format!("{path}.value[x]"), "no value"));
    };
    Ok(InboundObservation {
        readings,
        waveforms,
        supplement: None,
        device: device_target(resource.get("device"), &format!("{path}.device"))?,
        subject: subject_target(resource.get("subject"), &format!("{path}.subject"))?,
        path: path.to_owned(),
    })
}

/// A PHD gateway's supplementary Observation: a coincident time stamp (by its profile
/// or its code), or a battery level in percent.
fn supplement(
    resource: &Map<String, Value>,
    code: &Value,
    path: &str,
    effective: DateTime<Utc>,
) -> Result<Option<Supplement>, InboundError> {
    let mdc = |wanted: &str| {
        codings(code).any(|(system, value)| system == Some(PHD_MDC) && value == wanted)
    };
    let claims_coincident_time = resource
        .get("meta")
        .and_then(|meta| meta.get("profile"))
        .and_then(Value::as_array)
        .is_some_and(|profiles| {
            profiles
                .iter()
                .any(|profile| profile == COINCIDENT_TIME_PROFILE)
        });
    if claims_coincident_time || mdc(MDC_ATTR_TIME_ABS) {
        return Ok(Some(Supplement::CoincidentTime));
    }
    if mdc(MDC_ATTR_POWER_STAT) {
        // Each bit a component (ASN1ToHL7 `67925.n`) with a boolean: the set ones, named.
        let set = resource
            .get("component")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|component| component.get("valueBoolean") == Some(&Value::Bool(true)))
            .filter_map(|component| {
                let coding = component.get("code")?.get("coding")?.as_array()?.first()?;
                coding
                    .get("display")
                    .or_else(|| coding.get("code"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
        return Ok(Some(Supplement::PowerStatus { set }));
    }
    if !mdc(MDC_ATTR_VAL_BATT_CHARGE) {
        return Ok(None);
    }
    let expression = format!("{path}.valueQuantity");
    let quantity = resource
        .get("valueQuantity")
        .ok_or_else(|| required(&expression, "a battery level is a quantity in percent"))?;
    let unit = quantity
        .get("code")
        .or_else(|| quantity.get("unit"))
        .and_then(Value::as_str);
    if unit != Some("%") {
        return Err(value_error(
            format!("{expression}.code"),
            "a battery level is in percent (%)",
        ));
    }
    let percent = quantity
        .get("value")
        .and_then(Value::as_f64)
        .filter(|percent| (0.0..=100.0).contains(percent))
        .ok_or_else(|| value_error(format!("{expression}.value"), "0 to 100 percent"))?;
    Ok(Some(Supplement::Battery {
        percent,
        at: effective,
    }))
}

/// The first component carrying a waveform.
fn sampled_component(resource: &Map<String, Value>) -> Option<usize> {
    resource
        .get("component")?
        .as_array()?
        .iter()
        .position(|component| component.get("valueSampledData").is_some())
}

/// The measurement's time: `effectiveDateTime` or `effectiveInstant` to the second with
/// its zone, or the start of `effectivePeriod`. A day or a month is not a time a reading
/// can be stored at, and inventing the hour would put it beside the wrong readings.
fn effective_time(
    resource: &Map<String, Value>,
    path: &str,
    now: DateTime<Utc>,
    max_future_skew: Duration,
) -> Result<DateTime<Utc>, InboundError> {
    let (field, text) = if let Some(value) = resource.get("effectiveDateTime") {
        ("effectiveDateTime", value)
    } else if let Some(value) = resource.get("effectiveInstant") {
        ("effectiveInstant", value)
    } else if let Some(period) = resource.get("effectivePeriod") {
        let start = period
            .get("start")
            .ok_or_else(|| required(format!("{path}.effectivePeriod.start"), "missing"))?;
        ("effectivePeriod.start", start)
    } else {
        return Err(required(
            format!("{path}.effective[x]"),
            "a measurement needs its time",
        ));
    };
    let expression = format!("{path}.{field}");
    let text = text
        .as_str()
        .ok_or_else(|| invalid(&expression, "expected a string"))?;
    let time = DateTime::parse_from_rfc3339(text)
        .map_err(|_| {
            value_error(
                &expression,
                format!(
                    "{text:?} is not a time to the second with its zone (YYYY-MM-DDThh:mm:ss+zz:zz); a reading is stored at the moment it was measured"
                ),
            )
        })?
        .with_timezone(&Utc);
    if time.timestamp() < EARLIEST_PLAUSIBLE_SECS {
        return Err(value_error(
            &expression,
            format!("{text} is before 2000-01-01; is the device clock set?"),
        ));
    }
    if time > now + max_future_skew {
        return Err(value_error(
            &expression,
            format!(
                "{text} is more than {} s ahead of the server clock",
                max_future_skew.num_seconds()
            ),
        ));
    }
    Ok(time)
}

fn codings(concept: &Value) -> impl Iterator<Item = (Option<&str>, &str)> {
    concept
        .get("coding")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|coding| {
            let code = coding.get("code").and_then(Value::as_str)?;
            Some((coding.get("system").and_then(Value::as_str), code))
        })
}

fn has_loinc(concept: &Value, code: &str) -> bool {
    codings(concept).any(|(system, value)| system == Some(LOINC) && value == code)
}

/// The Wardline code of a concept: pulse oximetry when 59408-5 is among its LOINC codes
/// (the R4 profile puts 2708-6 beside it), else its first LOINC code Wardline stores
/// (molar glucose codes included: their values are converted).
fn reading_code(concept: &Value, expression: &str) -> Result<String, InboundError> {
    let loinc: Vec<&str> = codings(concept)
        .filter(|(system, _)| *system == Some(LOINC))
        .map(|(_, code)| code)
        .collect();
    let pulse = ObservationCode::OxygenSaturationPulseOximetry.loinc();
    if loinc.contains(&pulse) {
        return Ok(pulse.to_owned());
    }
    if let Some(code) = loinc.iter().find(|code| accepted_code(code).is_some()) {
        return Ok((*code).to_owned());
    }
    let listed: Vec<String> = codings(concept)
        .map(|(system, code)| match system {
            Some(system) => format!("{system}|{code}"),
            None => code.to_owned(),
        })
        .collect();
    Err(not_supported(
        format!("{expression}.coding"),
        if listed.is_empty() {
            "no coding: Wardline stores readings by their LOINC code".to_owned()
        } else {
            format!(
                "none of its codes ({}) is a LOINC code Wardline stores",
                listed.join(", ")
            )
        },
    ))
}

/// One reading from a Quantity: its UCUM code (or, without one, its unit) converted to
/// the code's canonical unit, the value as sent kept when it was converted.
fn quantity_reading(
    loinc: String,
    quantity: &Value,
    expression: &str,
    effective: DateTime<Utc>,
) -> Result<Reading, InboundError> {
    let quantity = quantity
        .as_object()
        .ok_or_else(|| invalid(expression, "expected a Quantity object"))?;
    if let Some(comparator) = quantity.get("comparator") {
        return Err(value_error(
            format!("{expression}.comparator"),
            format!("{comparator}: a reading is an exact value, not a bound"),
        ));
    }
    let value = match quantity.get("value") {
        Some(Value::Number(number)) => number
            .as_f64()
            .ok_or_else(|| invalid(format!("{expression}.value"), "not a number"))?,
        Some(_) => return Err(invalid(format!("{expression}.value"), "expected a number")),
        None => return Err(required(format!("{expression}.value"), "missing")),
    };
    match quantity.get("system").and_then(Value::as_str) {
        None | Some(UCUM) => {}
        Some(system) => {
            return Err(value_error(
                format!("{expression}.system"),
                format!("{system:?}: units are UCUM ({UCUM})"),
            ));
        }
    }
    let (unit_field, unit) = match (
        quantity.get("code").and_then(Value::as_str),
        quantity.get("unit").and_then(Value::as_str),
    ) {
        (Some(code), _) => ("code", code),
        (None, Some(unit)) => ("unit", unit),
        (None, None) => {
            return Err(required(
                format!("{expression}.code"),
                "a quantity needs its UCUM unit",
            ));
        }
    };
    let normalised = normalise(&loinc, value, unit).map_err(|error| match error {
        UnitError::UnitMismatch { .. } => {
            value_error(format!("{expression}.{unit_field}"), error.to_string())
        }
        other => value_error(format!("{expression}.value"), other.to_string()),
    })?;
    Ok(Reading {
        seq: normalised.code.seq_at(effective),
        code: normalised.code,
        value: normalised.value,
        original: normalised.original,
        effective,
    })
}

/// The blood pressure panel's readings: its systolic and, unless the device sent none
/// (`dataAbsentReason`), its diastolic component.
fn blood_pressure(
    resource: &Map<String, Value>,
    path: &str,
    effective: DateTime<Utc>,
) -> Result<Vec<Reading>, InboundError> {
    let components = resource
        .get("component")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            required(
                format!("{path}.component"),
                "a blood pressure panel carries its systolic and diastolic components",
            )
        })?;
    let mut readings = Vec::new();
    for wanted in [
        ObservationCode::SystolicBloodPressure,
        ObservationCode::DiastolicBloodPressure,
    ] {
        let found = components.iter().enumerate().find(|(_, component)| {
            component
                .get("code")
                .is_some_and(|code| has_loinc(code, wanted.loinc()))
        });
        let Some((index, component)) = found else {
            if wanted == ObservationCode::SystolicBloodPressure {
                return Err(required(
                    format!("{path}.component"),
                    "no systolic component (8480-6)",
                ));
            }
            continue;
        };
        let at = format!("{path}.component[{index}]");
        match component.get("valueQuantity") {
            Some(quantity) => readings.push(quantity_reading(
                wanted.loinc().to_owned(),
                quantity,
                &format!("{at}.valueQuantity"),
                effective,
            )?),
            None if component.get("dataAbsentReason").is_some()
                && wanted == ObservationCode::DiastolicBloodPressure => {}
            None => {
                return Err(required(
                    format!("{at}.valueQuantity"),
                    "a component without its value (or dataAbsentReason)",
                ));
            }
        }
    }
    Ok(readings)
}

fn reference_text<'a>(
    reference: &'a Value,
    expression: &str,
) -> Result<Option<&'a str>, InboundError> {
    match reference.get("reference") {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(invalid(
            format!("{expression}.reference"),
            "expected a string",
        )),
    }
}

fn device_target(
    reference: Option<&Value>,
    expression: &str,
) -> Result<Target<DeviceNames>, InboundError> {
    let Some(reference) = reference else {
        return Ok(Target::Unnamed);
    };
    if let Some(text) = reference_text(reference, expression)? {
        if text.starts_with("urn:uuid:") || text.starts_with("urn:oid:") {
            return Ok(Target::Entry(text.to_owned()));
        }
        if let Some(id) = text.strip_prefix("Device/") {
            // Wardline's own id, or its FHIR id (`_` written as `.`).
            let mut ids = vec![id.to_owned()];
            let wardline = crate::device_id_of(id);
            if wardline != id {
                ids.push(wardline);
            }
            return Ok(Target::Named(DeviceNames {
                ids,
                serials: Vec::new(),
            }));
        }
        if let Some(condition) = text.strip_prefix("Device?") {
            let ids: Vec<String> = identifier_condition(condition).into_iter().collect();
            if ids.is_empty() {
                return Err(not_supported(
                    format!("{expression}.reference"),
                    format!(
                        "{text:?}: a conditional reference names the device by identifier=system|value"
                    ),
                ));
            }
            return Ok(Target::Named(DeviceNames {
                ids,
                serials: Vec::new(),
            }));
        }
        if text.starts_with("DeviceMetric/") {
            // A channel of the device that sent it: the sender.
            return Ok(Target::Unnamed);
        }
        return Err(value_error(
            format!("{expression}.reference"),
            format!("{text:?} is not a Device"),
        ));
    }
    if let Some(identifier) = reference.get("identifier") {
        let ids: Vec<String> = identifier_value(identifier).into_iter().collect();
        if ids.is_empty() {
            return Err(required(
                format!("{expression}.identifier.value"),
                "missing",
            ));
        }
        return Ok(Target::Named(DeviceNames {
            ids,
            serials: Vec::new(),
        }));
    }
    // Only a display: nothing that names a device.
    Ok(Target::Unnamed)
}

fn subject_target(
    reference: Option<&Value>,
    expression: &str,
) -> Result<Target<String>, InboundError> {
    let Some(reference) = reference else {
        return Ok(Target::Unnamed);
    };
    match reference_text(reference, expression)? {
        Some(text) if text.starts_with("urn:uuid:") || text.starts_with("urn:oid:") => {
            Ok(Target::Entry(text.to_owned()))
        }
        Some(text) => match text.strip_prefix("Patient/") {
            Some(id) => Ok(Target::Named(id.to_owned())),
            None => Err(value_error(
                format!("{expression}.reference"),
                format!("{text:?}: a reading's subject is a Patient"),
            )),
        },
        None => Err(required(
            format!("{expression}.reference"),
            "the subject names the patient by reference (Patient/{id})",
        )),
    }
}

/// The id in `PUT Device/{id}`.
fn put_id(method: &str, url: &str, resource_type: &str) -> Option<String> {
    if method != "PUT" {
        return None;
    }
    let id = url.strip_prefix(resource_type)?.strip_prefix('/')?;
    (!id.is_empty() && !id.contains(['?', '/'])).then(|| id.to_owned())
}

/// The value of `identifier=system|value` (or `identifier=value`) in a condition.
fn identifier_condition(condition: &str) -> Option<String> {
    condition.split('&').find_map(|pair| {
        let value = pair.strip_prefix("identifier=")?;
        let value = value.rsplit_once('|').map_or(value, |(_, value)| value);
        let value = percent_decode(value);
        (!value.is_empty()).then_some(value)
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match (bytes.get(index), bytes.get(index + 1..index + 3)) {
            (Some(b'%'), Some(hex)) => match std::str::from_utf8(hex)
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                Some(byte) => {
                    out.push(byte);
                    index += 3;
                }
                None => {
                    out.push(b'%');
                    index += 1;
                }
            },
            (Some(byte), _) => {
                out.push(*byte);
                index += 1;
            }
            (None, _) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn identifier_value(identifier: &Value) -> Option<String> {
    identifier
        .get("value")
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

fn device_names(resource: &Map<String, Value>, path: &str) -> Result<DeviceNames, InboundError> {
    let mut names = DeviceNames::default();
    if let Some(id) = resource.get("id").and_then(Value::as_str) {
        names.ids.push(id.to_owned());
    }
    match resource.get("identifier") {
        None => {}
        Some(Value::Array(identifiers)) => {
            names
                .ids
                .extend(identifiers.iter().filter_map(identifier_value));
        }
        Some(_) => return Err(invalid(format!("{path}.identifier"), "expected an array")),
    }
    if let Some(serial) = resource.get("serialNumber").and_then(Value::as_str) {
        names.serials.push(serial.to_owned());
    }
    Ok(names)
}

fn patient_names(resource: &Map<String, Value>) -> PatientNames {
    let mrns = resource
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|identifier| {
            identifier
                .get("type")
                .is_some_and(|kind| codings(kind).any(|(_, code)| code == "MR"))
        })
        .filter_map(identifier_value)
        .collect();
    PatientNames {
        id: resource
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        mrns,
    }
}

fn optional_string(
    members: &Map<String, Value>,
    field: &str,
    at: &str,
) -> Result<Option<String>, InboundError> {
    match members.get(field) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(invalid(format!("{at}.{field}"), "expected a string")),
    }
}
