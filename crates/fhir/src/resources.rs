//! Resources: Observation, Patient, Bundle, OperationOutcome, CapabilityStatement.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use wardline_domain::{DeviceId, Observation, ObservationCode, PatientId};

use crate::{FHIR_JSON, FHIR_VERSION, LOINC, UCUM};

/// The base vital-signs profile of FHIR R4.
pub const VITAL_SIGNS_PROFILE: &str = "http://hl7.org/fhir/StructureDefinition/vitalsigns";
const CATEGORY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
/// Wardline's extension on a quantity: the value and unit the device sent, when Wardline
/// converted it to the code's canonical unit (docs/fhir.md).
pub const ORIGINAL_QUANTITY_EXTENSION: &str =
    "https://wardline.health/fhir/StructureDefinition/original-quantity";

/// The observation category of a code: vital signs are those of the R4 vital-signs
/// profile; glucose is a laboratory result; the rest are exam findings.
pub fn category(code: ObservationCode) -> (&'static str, &'static str) {
    use ObservationCode as C;
    match code {
        C::HeartRate
        | C::OxygenSaturation
        | C::OxygenSaturationPulseOximetry
        | C::BodyTemperature
        | C::RespiratoryRate
        | C::SystolicBloodPressure
        | C::DiastolicBloodPressure
        | C::MeanBloodPressure
        | C::BodyWeight
        | C::BodyHeight
        | C::BodyMassIndex => ("vital-signs", "Vital Signs"),
        C::GlucoseCgm | C::GlucoseMeter | C::GlucoseBlood => ("laboratory", "Laboratory"),
        C::PeakExpiratoryFlow | C::RrInterval => ("exam", "Exam"),
    }
}

/// The profiles an observation of the code claims: the R4 vital-signs profile and, where
/// R4 has one, the code's own (heart rate, oxygen saturation, …).
pub fn profiles(code: ObservationCode) -> Vec<&'static str> {
    use ObservationCode as C;
    let specific = match code {
        C::HeartRate => Some("http://hl7.org/fhir/StructureDefinition/heartrate"),
        C::OxygenSaturation | C::OxygenSaturationPulseOximetry => {
            Some("http://hl7.org/fhir/StructureDefinition/oxygensat")
        }
        C::BodyTemperature => Some("http://hl7.org/fhir/StructureDefinition/bodytemp"),
        C::RespiratoryRate => Some("http://hl7.org/fhir/StructureDefinition/resprate"),
        C::BodyWeight => Some("http://hl7.org/fhir/StructureDefinition/bodyweight"),
        C::BodyHeight => Some("http://hl7.org/fhir/StructureDefinition/bodyheight"),
        C::BodyMassIndex => Some("http://hl7.org/fhir/StructureDefinition/bmi"),
        _ => None,
    };
    if category(code).0 != "vital-signs" {
        return Vec::new();
    }
    std::iter::once(VITAL_SIGNS_PROFILE)
        .chain(specific)
        .collect()
}

/// The codings of an observation's code: its LOINC code and, for pulse oximetry, also
/// 2708-6, which the R4 oxygen saturation profile requires beside the more precise code.
fn codings(code: ObservationCode) -> Vec<Value> {
    let spec = code.spec();
    let mut codings = Vec::new();
    if code == ObservationCode::OxygenSaturationPulseOximetry {
        let arterial = ObservationCode::OxygenSaturation.spec();
        codings.push(json!({"system": LOINC, "code": arterial.loinc, "display": arterial.display}));
    }
    codings.push(json!({"system": LOINC, "code": spec.loinc, "display": spec.display}));
    codings
}

/// A stable id for a stored reading, made of what identifies it: its device's FHIR id, a
/// `.`, `m` for a measurement or `d` for a reading Wardline derived, and its sequence
/// number (`dev.0011223344556677.m42`), so that the reading is found again by its id.
/// A device id too long for that within FHIR's 64 characters gives 32 hexadecimal digits
/// of the SHA-256 of the three instead, a reading that cannot be read by id.
pub fn observation_id(observation: &Observation) -> String {
    reading_id(&observation.device_id, observation.derived, observation.seq)
}

/// The id [`observation_id`] gives the reading of `device` with `seq`.
pub fn reading_id(device: &DeviceId, derived: bool, seq: i64) -> String {
    let kind = if derived {
        IdKind::Derived
    } else {
        IdKind::Measured
    };
    kind_id(device, kind, seq)
}

/// What an Observation id made of a device and a sequence number names, by the letter
/// before the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// `m`: a reading the device measured.
    Measured,
    /// `d`: a reading Wardline derived.
    Derived,
    /// `p`: a blood pressure panel, by its systolic reading's number.
    Panel,
    /// `w`: a waveform chunk (one lead of an ECG).
    Waveform,
}

impl IdKind {
    const ALL: [IdKind; 4] = [Self::Measured, Self::Derived, Self::Panel, Self::Waveform];

    fn letter(self) -> &'static str {
        match self {
            Self::Measured => "m",
            Self::Derived => "d",
            Self::Panel => "p",
            Self::Waveform => "w",
        }
    }
}

/// `{device's FHIR id}.{letter}{seq}`, or, when that is longer than FHIR allows, 32
/// hexadecimal digits of a hash (which cannot be read by id).
pub fn kind_id(device: &DeviceId, kind: IdKind, seq: i64) -> String {
    let readable = format!("{}.{}{seq}", device_fhir_id(device), kind.letter());
    if readable.len() <= MAX_ID_LEN {
        return readable;
    }
    // Kept as they were first given, so that a long device's ids do not change.
    match kind {
        IdKind::Measured | IdKind::Derived => short_hash(&format!(
            "{device}\u{1f}{}\u{1f}{seq}",
            if kind == IdKind::Derived {
                "derived"
            } else {
                "device"
            },
        )),
        IdKind::Panel => short_hash(&format!(
            "{}\u{1f}panel",
            kind_id(device, IdKind::Measured, seq)
        )),
        IdKind::Waveform => short_hash(&format!("{device}\u{1f}waveform\u{1f}{seq}")),
    }
}

/// The longest FHIR id.
const MAX_ID_LEN: usize = 64;

/// What an id [`kind_id`] gave names: the device (Wardline's id), the kind and the
/// sequence number; `None` for an id of another shape.
pub fn id_parts(id: &str) -> Option<(DeviceId, IdKind, i64)> {
    let (device, named) = id.rsplit_once('.')?;
    let kind = IdKind::ALL
        .into_iter()
        .find(|kind| named.get(..1) == Some(kind.letter()))?;
    let seq: i64 = named.get(1..)?.parse().ok()?;
    let device = DeviceId::parse(&device_id_of(device)).ok()?;
    // Only the id this one is given: `m007` is not `m7`.
    (kind_id(&device, kind, seq) == id).then_some((device, kind, seq))
}

/// What identifies the reading an [`observation_id`] names: its device (Wardline's id),
/// whether it is derived, and its sequence number; `None` for an id of another shape.
pub fn reading_of_id(id: &str) -> Option<(DeviceId, bool, i64)> {
    match id_parts(id)? {
        (device, IdKind::Measured, seq) => Some((device, false, seq)),
        (device, IdKind::Derived, seq) => Some((device, true, seq)),
        _ => None,
    }
}

/// 32 hexadecimal digits of the SHA-256 of `text`: a valid FHIR id, the same every time.
pub(crate) fn short_hash(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    hex::encode(&digest.as_ref()[..16])
}

pub(crate) fn instant(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// FHIR decimals keep what was stored: a whole number without a fraction.
fn decimal(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// A stored reading as an R4 Observation.
pub fn observation(observation: &Observation) -> Value {
    let code = observation.code;
    let spec = code.spec();
    let (category_code, category_display) = category(code);
    let mut quantity = json!({
        "value": decimal(observation.value),
        "unit": spec.canonical_unit,
        "system": UCUM,
        "code": spec.canonical_unit,
    });
    if let (Some(value), Some(unit)) = (observation.original_value, &observation.original_unit)
        && let Some(members) = quantity.as_object_mut()
    {
        members.insert(
            "extension".into(),
            json!([{"url": ORIGINAL_QUANTITY_EXTENSION, "valueQuantity": {
                "value": decimal(value), "unit": unit, "system": UCUM, "code": unit}}]),
        );
    }
    let mut resource = Map::new();
    resource.insert("resourceType".into(), json!("Observation"));
    resource.insert("id".into(), json!(observation_id(observation)));
    let profiles = profiles(code);
    if !profiles.is_empty() {
        resource.insert("meta".into(), json!({"profile": profiles}));
    }
    resource.insert(
        "identifier".into(),
        json!([{"system": "urn:wardline:reading", "value": format!("{}/{}/{}", observation.device_id,
            if observation.derived { "derived" } else { "device" }, observation.seq)}]),
    );
    resource.insert("status".into(), json!("final"));
    resource.insert(
        "category".into(),
        json!([{"coding": [{"system": CATEGORY_SYSTEM, "code": category_code, "display": category_display}],
                "text": category_display}]),
    );
    resource.insert(
        "code".into(),
        json!({"coding": codings(code), "text": spec.display}),
    );
    resource.insert(
        "subject".into(),
        json!({"reference": format!("Patient/{}", observation.patient_id)}),
    );
    resource.insert(
        "effectiveDateTime".into(),
        json!(instant(observation.effective)),
    );
    resource.insert("issued".into(), json!(instant(observation.received)));
    resource.insert("valueQuantity".into(), quantity);
    resource.insert(
        "device".into(),
        json!({"reference": format!("Device/{}", device_fhir_id(&observation.device_id)),
               "identifier": {"system": "urn:wardline:device", "value": observation.device_id.as_str()},
               "display": observation.device_id.as_str()}),
    );
    if observation.derived {
        // Computed by Wardline from other data (heart rate from an ECG waveform), not
        // measured as such.
        resource.insert(
            "method".into(),
            json!({"text": "derived by Wardline from the device's other data"}),
        );
    }
    Value::Object(resource)
}

/// Names what a derived reading was computed from (`derivedFrom`): for a heart rate, the
/// ECG chunks (`Observation/{id}`) its beats were counted in. Nothing when `sources` is
/// empty (the chunks are no longer kept, or the reader may not see them).
pub fn with_derived_from(resource: &mut Value, sources: &[String]) {
    if sources.is_empty() {
        return;
    }
    if let Some(members) = resource.as_object_mut() {
        members.insert(
            "derivedFrom".into(),
            Value::Array(
                sources
                    .iter()
                    .map(|id| json!({"reference": format!("Observation/{id}")}))
                    .collect(),
            ),
        );
    }
}

/// A systolic reading and the diastolic of the same device and time as one R4 blood
/// pressure panel (85354-9), as the R4 `bp` profile has it. A systolic reading without
/// its diastolic gives the panel with the diastolic component absent, saying so.
pub fn blood_pressure_panel(systolic: &Observation, diastolic: Option<&Observation>) -> Value {
    let mut panel = observation(systolic);
    let component = |code: ObservationCode, reading: Option<&Observation>| {
        let spec = code.spec();
        let mut component = Map::new();
        component.insert(
            "code".into(),
            json!({"coding": codings(code), "text": spec.display}),
        );
        match reading {
            Some(reading) => {
                component.insert(
                    "valueQuantity".into(),
                    json!({"value": decimal(reading.value), "unit": spec.canonical_unit,
                           "system": UCUM, "code": spec.canonical_unit}),
                );
            }
            None => {
                component.insert(
                    "dataAbsentReason".into(),
                    json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                        "code": "unknown", "display": "Unknown"}],
                        "text": "the device sent no diastolic pressure at this time"}),
                );
            }
        }
        Value::Object(component)
    };
    let id = kind_id(&systolic.device_id, IdKind::Panel, systolic.seq);
    if let Some(members) = panel.as_object_mut() {
        members.insert("id".into(), json!(id));
        members.insert(
            "meta".into(),
            json!({"profile": [VITAL_SIGNS_PROFILE, "http://hl7.org/fhir/StructureDefinition/bp"]}),
        );
        members.insert(
            "code".into(),
            json!({"coding": [{"system": LOINC, "code": "85354-9",
                "display": "Blood pressure panel with all children optional"}],
                "text": "Blood pressure"}),
        );
        members.remove("valueQuantity");
        members.insert(
            "component".into(),
            json!([
                component(ObservationCode::SystolicBloodPressure, Some(systolic)),
                component(ObservationCode::DiastolicBloodPressure, diastolic),
            ]),
        );
    }
    panel
}

/// A device's FHIR id: its Wardline id with `_` written as `.` (FHIR ids allow letters,
/// digits, `-` and `.`; Wardline's `[A-Za-z0-9_-]`, so the mapping is one to one).
pub fn device_fhir_id(device: &DeviceId) -> String {
    device.as_str().replace('_', ".")
}

/// The Wardline device id a FHIR `Device` id stands for.
pub fn device_id_of(fhir_id: &str) -> String {
    fhir_id.replace('.', "_")
}

/// What the FHIR Device shows of an enrolled device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    pub id: DeviceId,
    /// Its kind, in Wardline's words (`pulse_oximeter`).
    pub kind: &'static str,
    pub model: String,
    pub serial: String,
    pub active: bool,
    /// The patient it is assigned to now.
    pub patient: Option<PatientId>,
}

/// An enrolled device as an R4 Device.
pub fn device(facts: &DeviceFacts) -> Value {
    let mut resource = Map::new();
    resource.insert("resourceType".into(), json!("Device"));
    resource.insert("id".into(), json!(device_fhir_id(&facts.id)));
    resource.insert(
        "identifier".into(),
        json!([{"system": "urn:wardline:device", "value": facts.id.as_str()}]),
    );
    resource.insert(
        "status".into(),
        json!(if facts.active { "active" } else { "inactive" }),
    );
    resource.insert("serialNumber".into(), json!(facts.serial));
    resource.insert("modelNumber".into(), json!(facts.model));
    resource.insert("type".into(), json!({"text": facts.kind.replace('_', " ")}));
    if let Some(patient) = facts.patient {
        resource.insert(
            "patient".into(),
            json!({"reference": format!("Patient/{patient}")}),
        );
    }
    Value::Object(resource)
}

/// What the FHIR Patient shows of a patient record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientFacts {
    pub id: PatientId,
    pub display_name: String,
    pub birth_date: Option<NaiveDate>,
    pub mrn: Option<String>,
}

/// A patient record as an R4 Patient.
pub fn patient(facts: &PatientFacts) -> Value {
    let mut resource = Map::new();
    resource.insert("resourceType".into(), json!("Patient"));
    resource.insert("id".into(), json!(facts.id.to_string()));
    if let Some(mrn) = &facts.mrn {
        resource.insert(
            "identifier".into(),
            json!([{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                "code": "MR", "display": "Medical record number"}], "text": "Medical record number"},
                "value": mrn}]),
        );
    }
    resource.insert("active".into(), json!(true));
    resource.insert(
        "name".into(),
        json!([{"use": "usual", "text": facts.display_name}]),
    );
    if let Some(birth) = facts.birth_date {
        resource.insert(
            "birthDate".into(),
            json!(birth.format("%Y-%m-%d").to_string()),
        );
    }
    Value::Object(resource)
}

/// What a treatment order says, for its MedicationRequest.
#[derive(Debug, Clone, PartialEq)]
pub struct MedicationOrderFacts {
    pub id: String,
    pub patient: PatientId,
    pub requester_name: String,
    pub authored: DateTime<Utc>,
    pub medication: String,
    /// As the clinician wrote it ("5 mg").
    pub dose: String,
    /// As the clinician wrote it ("once a day").
    pub frequency: String,
    pub start: NaiveDate,
    pub stop: Option<NaiveDate>,
    /// For the patient, in plain words.
    pub instructions: String,
}

/// A treatment order as an R4 MedicationRequest: an order (`intent`), active until the
/// day after its stop date (`completed` from then, judged on `today`), its medication,
/// dose and frequency as the clinician wrote them (free text: Wardline does not code
/// medications), the days it runs as the dosage's bounds, and the patient's instructions.
pub fn medication_request(facts: &MedicationOrderFacts, today: NaiveDate) -> Value {
    let status = match facts.stop {
        Some(stop) if stop < today => "completed",
        _ => "active",
    };
    let mut bounds = Map::new();
    bounds.insert(
        "start".into(),
        json!(facts.start.format("%Y-%m-%d").to_string()),
    );
    if let Some(stop) = facts.stop {
        bounds.insert("end".into(), json!(stop.format("%Y-%m-%d").to_string()));
    }
    let mut dosage = Map::new();
    dosage.insert(
        "text".into(),
        json!(format!("{}, {}", facts.dose, facts.frequency)),
    );
    if !facts.instructions.is_empty() {
        dosage.insert("patientInstruction".into(), json!(facts.instructions));
    }
    dosage.insert("timing".into(), json!({"repeat": {"boundsPeriod": bounds}}));
    json!({
        "resourceType": "MedicationRequest",
        "id": facts.id,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"text": facts.medication},
        "subject": {"reference": format!("Patient/{}", facts.patient)},
        "authoredOn": instant(facts.authored),
        "requester": {"display": facts.requester_name},
        "dosageInstruction": [Value::Object(dosage)],
    })
}

/// A `searchset` Bundle of `resources` (each with its full URL), with `self` and `next`
/// links.
pub fn searchset(
    base: &str,
    resources: Vec<Value>,
    self_link: &str,
    next_link: Option<&str>,
) -> Value {
    searchset_with(base, resources, Vec::new(), self_link, next_link)
}

/// [`searchset`] with `included` resources beside the matches (`_include`), marked as
/// such and not counted in the total.
pub fn searchset_with(
    base: &str,
    resources: Vec<Value>,
    included: Vec<Value>,
    self_link: &str,
    next_link: Option<&str>,
) -> Value {
    let entry = |resource: Value, mode: &str| {
        let full_url = format!(
            "{base}/{}/{}",
            resource["resourceType"].as_str().unwrap_or_default(),
            resource["id"].as_str().unwrap_or_default()
        );
        json!({"fullUrl": full_url, "resource": resource, "search": {"mode": mode}})
    };
    let matches = resources.len();
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|resource| entry(resource, "match"))
        .chain(
            included
                .into_iter()
                .map(|resource| entry(resource, "include")),
        )
        .collect();
    let mut links = vec![json!({"relation": "self", "url": self_link})];
    if let Some(next) = next_link {
        links.push(json!({"relation": "next", "url": next}));
    }
    let mut bundle = Map::new();
    bundle.insert("resourceType".into(), json!("Bundle"));
    bundle.insert("type".into(), json!("searchset"));
    if next_link.is_none() {
        // Only a search that fits one page knows its total without counting.
        bundle.insert("total".into(), json!(matches));
    }
    bundle.insert("link".into(), Value::Array(links));
    bundle.insert("entry".into(), Value::Array(entries));
    Value::Object(bundle)
}

/// The issue types of an OperationOutcome (a subset of R4's issue-type value set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    Required,
    Value,
    NotSupported,
    NotFound,
    Forbidden,
    Login,
    Processing,
    Exception,
    Throttled,
}

impl IssueType {
    pub fn code(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Required => "required",
            Self::Value => "value",
            Self::NotSupported => "not-supported",
            Self::NotFound => "not-found",
            Self::Forbidden => "forbidden",
            Self::Login => "login",
            Self::Processing => "processing",
            Self::Exception => "exception",
            Self::Throttled => "throttled",
        }
    }
}

/// An OperationOutcome with one error: what went wrong, where (a FHIRPath expression
/// or a search parameter), and Wardline's stable error code.
pub fn operation_outcome(
    issue: IssueType,
    diagnostics: &str,
    expression: Option<&str>,
    wardline_code: &str,
) -> Value {
    let mut entry = Map::new();
    entry.insert("severity".into(), json!("error"));
    entry.insert("code".into(), json!(issue.code()));
    entry.insert(
        "details".into(),
        json!({"coding": [{"system": "urn:wardline:error", "code": wardline_code}]}),
    );
    entry.insert("diagnostics".into(), json!(diagnostics));
    if let Some(expression) = expression {
        entry.insert("expression".into(), json!([expression]));
    }
    json!({"resourceType": "OperationOutcome", "issue": [Value::Object(entry)]})
}

/// An OperationOutcome that only informs (what became of an accepted request).
pub fn operation_outcome_information(diagnostics: &str) -> Value {
    json!({"resourceType": "OperationOutcome", "issue": [{
        "severity": "information", "code": "informational", "diagnostics": diagnostics}]})
}

/// The CapabilityStatement: exactly what this server supports, nothing more.
pub fn capability_statement(base: &str, software_version: &str, date: DateTime<Utc>) -> Value {
    let mut statement = resources_statement(base, software_version, date);
    add_bulk_export(&mut statement);
    statement
}

/// FHIR Bulk Data Access's three kick-offs, in the CapabilityStatement.
fn add_bulk_export(statement: &mut Value) {
    let operation = |definition: &str, documentation: &str| {
        json!([{"name": "export",
                "definition": format!("http://hl7.org/fhir/uv/bulkdata/OperationDefinition/{definition}"),
                "documentation": documentation}])
    };
    let rest = &mut statement["rest"][0];
    if let Some(services) = rest["security"]["service"].as_array_mut() {
        services.push(json!({
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}],
            "text": "SMART Backend Services (client_credentials with a signed JWT, RS384 or ES384; .well-known/smart-configuration) for a registered system's bulk export"
        }));
    }
    rest["operation"] = operation(
        "export",
        "Bulk export (asynchronous, Prefer: respond-async) of every patient the requester may \
         export: a patient their own record, a care team member their teams' patients. _type \
         (Patient, Device, Observation, CarePlan, DetectedIssue), _since, _outputFormat \
         application/fhir+ndjson; the files are fetched with the requester's token until the \
         status answer's Expires.",
    );
    if let Some(resources) = rest["resource"].as_array_mut() {
        for resource in resources.iter_mut() {
            if resource["type"] == "Patient" {
                resource["operation"] = operation(
                    "patient-export",
                    "Bulk export of every patient the requester may export, as $export.",
                );
            }
        }
        resources.push(json!({
            "type": "Group",
            "profile": "http://hl7.org/fhir/StructureDefinition/Group",
            "documentation": "A care team, by its id, for its bulk export only (its members export its patients).",
            "operation": operation(
                "group-export",
                "Bulk export of the care team's patients, for its members.",
            ),
        }));
    }
}

/// The CapabilityStatement's reads, searches and writes.
fn resources_statement(base: &str, software_version: &str, date: DateTime<Utc>) -> Value {
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": instant(date),
        "publisher": "Wardline",
        "kind": "instance",
        "software": {"name": "Wardline", "version": software_version},
        "implementation": {"description": "Wardline remote patient monitoring", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_JSON, "json"],
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "rest": [{
            "mode": "server",
            "documentation": "Reads: a person's bearer token (POST /api/v1/auth/login) authorises as it does on Wardline's own API: a patient reads their own record, a clinician or nurse their care teams' patients; every read is audited. Writes: an enrolled device (or a gateway, for the devices behind it) with HTTP Basic credentials (device id and secret) posts Observations, alone or in a transaction or batch Bundle; each is stored for the patient its device was assigned to when it was measured, answered after the durable commit, and a repeat stores nothing twice.",
            "security": {
                "cors": false,
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "OAuth"}],
                             "text": "Bearer tokens from Wardline's login (reads)"},
                            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "Basic"}],
                             "text": "A device's id and secret (writes)"}]
            },
            "interaction": [
                {"code": "transaction", "documentation": "All or nothing: Observations, and Device and Patient entries that name an enrolled device the sender may write for and its patient (conditional create by identifier, or update by id; nothing is created). A PHD gateway's coincident time stamp is noted and its devices' battery levels (MDC 67996, %) kept as their status when fresh."},
                {"code": "batch", "documentation": "The same entries, each taken or refused on its own."}
            ],
            "resource": [
                {
                    "type": "Patient",
                    "profile": "http://hl7.org/fhir/StructureDefinition/Patient",
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "searchParam": [{"name": "_id", "type": "token", "documentation": "The patient's id; the search returns it only to those who may read it."}]
                },
                {
                    "type": "Device",
                    "profile": "http://hl7.org/fhir/StructureDefinition/Device",
                    "documentation": "An enrolled device: its id is Wardline's with '_' written as '.'; read by those who may read the patient it is (or was last) assigned to; searched by a patient it was ever assigned to, naming the patient while it is still theirs.",
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "searchParam": [
                        {"name": "patient", "type": "reference", "documentation": "Required: Patient/[id] or [id]."},
                        {"name": "subject", "type": "reference", "documentation": "The same as patient."}
                    ]
                },
                {
                    "type": "Observation",
                    "profile": "http://hl7.org/fhir/StructureDefinition/Observation",
                    "supportedProfile": [
                        VITAL_SIGNS_PROFILE,
                        "http://hl7.org/fhir/StructureDefinition/heartrate",
                        "http://hl7.org/fhir/StructureDefinition/oxygensat",
                        "http://hl7.org/fhir/StructureDefinition/bodytemp",
                        "http://hl7.org/fhir/StructureDefinition/resprate",
                        "http://hl7.org/fhir/StructureDefinition/bodyweight",
                        "http://hl7.org/fhir/StructureDefinition/bodyheight",
                        "http://hl7.org/fhir/StructureDefinition/bmi",
                        "http://hl7.org/fhir/StructureDefinition/bp"
                    ],
                    "interaction": [
                        {"code": "read", "documentation": "By the id a search or an upload gives (made of the device, m, d, p for a blood pressure panel or w for an ECG chunk, and the sequence number; news2.{patient}.{ms} for NEWS2); what the caller may not see is not found."},
                        {"code": "vread", "documentation": "Version 1 only: a stored reading has one version."},
                        {"code": "search-type"},
                        {"code": "create", "documentation": "By a device: a final measurement with a LOINC code Wardline stores and a UCUM quantity (or the blood pressure panel), or an ECG whose leads (MDC codes) are valueSampledData, each kept as a waveform chunk with its samples, factor and origin as sent; its time to the second; 201 when new, 200 when stored before."}
                    ],
                    "searchInclude": ["Observation:device"],
                    "operation": [{"name": "lastn", "definition": "http://hl7.org/fhir/OperationDefinition/Observation-lastn",
                        "documentation": "The newest observations of each code of one patient, newest first (patient required; category, code; max 1 to 100, 1 by default); blood pressure also as its newest panels (85354-9), by that code or among the vital signs; NEWS2 results (http://snomed.info/sct|1104051000000101), by that code, the survey category or none, after the LOINC codes."}],
                    "searchParam": [
                        {"name": "patient", "type": "reference", "documentation": "Required: Patient/[id] or [id]."},
                        {"name": "subject", "type": "reference", "documentation": "The same as patient."},
                        {"name": "code", "type": "token", "documentation": "One LOINC code (or, without it, a category: every reading of the category's codes in time order, paged across them), http://loinc.org|[code] or [code]; 85354-9 gives blood pressure as panels of systolic and diastolic; urn:oid:2.16.840.1.113883.6.24|131328 (MDC_ECG_ELEC_POTL) gives the ECG as valueSampledData, one Observation per stored chunk of one lead, in the order recorded, between two dates at most an hour apart (up to 100 chunks a page; not with _sort or _summary); http://snomed.info/sct|1104051000000101 gives the NEWS2 results Wardline computed, oldest first, each naming the readings it scored (derivedFrom; not with _sort, _summary or _include)."},
                        {"name": "category", "type": "token", "documentation": "vital-signs, laboratory, exam, procedure (the ECG) or survey (NEWS2)."},
                        {"name": "date", "type": "date", "documentation": "Repeatable, with the prefixes eq, ge, gt, le and lt; without one, from 2000 until now."},
                        {"name": "_count", "type": "number", "documentation": "1 to 1000 per page (100 when absent); the next link pages on, oldest first."},
                        {"name": "_sort", "type": "string", "documentation": "date (oldest first) or -date (newest first); the next link pages on in that order."},
                        {"name": "_summary", "type": "token", "documentation": "count: the number of matches as total, without resources."}
                    ]
                },
                {
                    "type": "CareTeam",
                    "profile": "http://hl7.org/fhir/StructureDefinition/CareTeam",
                    "documentation": "The care teams that look after a patient: their names, and their active members by name and role. Each is one team of one patient (its id names both; the team's own id is its identifier).",
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "searchParam": [
                        {"name": "patient", "type": "reference", "documentation": "Required: Patient/[id] or [id]."},
                        {"name": "subject", "type": "reference", "documentation": "The same as patient."}
                    ]
                },
                {
                    "type": "CarePlan",
                    "profile": "http://hl7.org/fhir/StructureDefinition/CarePlan",
                    "documentation": "The monitoring plan in force for a patient: one per patient (its id is the patient's, its version meta.versionId), each alarm rule an activity whose code is the rule's id in https://wardline.health/fhir/CodeSystem/care-plan-rule.",
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "searchParam": [
                        {"name": "patient", "type": "reference", "documentation": "Required: Patient/[id] or [id]."},
                        {"name": "subject", "type": "reference", "documentation": "The same as patient."}
                    ]
                },
                {
                    "type": "DetectedIssue",
                    "profile": "http://hl7.org/fhir/StructureDefinition/DetectedIssue",
                    "documentation": "An alarm: preliminary until resolved (its state in the extension https://wardline.health/fhir/StructureDefinition/alarm-state), the rule that raised it as its code, its priority as severity, and acknowledgements, snoozes and the resolution as mitigations.",
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "searchParam": [
                        {"name": "patient", "type": "reference", "documentation": "Required: Patient/[id] or [id]."},
                        {"name": "subject", "type": "reference", "documentation": "The same as patient."},
                        {"name": "identified", "type": "date", "documentation": "When the alarm was raised; repeatable, with the prefixes eq, ge, gt, le and lt."},
                        {"name": "_count", "type": "number", "documentation": "1 to 100 per page (100 when absent); newest first, the next link pages on."}
                    ]
                },
                {
                    "type": "AuditEvent",
                    "profile": "http://hl7.org/fhir/StructureDefinition/AuditEvent",
                    "documentation": "The audit trail, newest first, for administrators only: every read of a patient's data and every refusal, with who, when, from where and the outcome.",
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "searchParam": [
                        {"name": "patient", "type": "reference", "documentation": "Only the entries about this patient: Patient/[id] or [id]."},
                        {"name": "_count", "type": "number", "documentation": "1 to 1000 per page (100 when absent); the next link pages on."}
                    ]
                },
                {
                    "type": "MedicationRequest",
                    "profile": "http://hl7.org/fhir/StructureDefinition/MedicationRequest",
                    "documentation": "A treatment order a clinician of the patient's care team wrote (in a video visit or not): medication, dose and frequency as written (not coded), the days it runs, the patient's instructions.",
                    "interaction": [{"code": "search-type"}],
                    "searchParam": [
                        {"name": "patient", "type": "reference", "documentation": "Required: Patient/[id] or [id]; every order of the patient, newest first."},
                        {"name": "subject", "type": "reference", "documentation": "The same as patient."}
                    ]
                }
            ]
        }]
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use wardline_domain::DeviceId;

    fn reading(code: ObservationCode, value: f64, original: Option<(f64, &str)>) -> Observation {
        let spec = code.spec();
        Observation {
            patient_id: PatientId::random(),
            device_id: DeviceId::parse("dev_0011223344556677").unwrap(),
            seq: 7,
            code,
            loinc: spec.loinc,
            value,
            unit: spec.canonical_unit,
            original_value: original.map(|(value, _)| value),
            original_unit: original.map(|(_, unit)| unit.to_owned()),
            effective: DateTime::parse_from_rfc3339("2026-12-01T08:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            received: DateTime::parse_from_rfc3339("2026-12-01T08:00:01.250Z")
                .unwrap()
                .with_timezone(&Utc),
            derived: false,
        }
    }

    #[test]
    fn a_treatment_order_is_an_active_medication_request_until_after_its_stop() {
        let day = |d| NaiveDate::from_ymd_opt(2026, 12, d).unwrap();
        let facts = MedicationOrderFacts {
            id: "6c1d2f0e-0000-4000-8000-000000000001".into(),
            patient: PatientId::random(),
            requester_name: "Dr Grey".into(),
            authored: DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
                .unwrap()
                .to_utc(),
            medication: "amlodipine".into(),
            dose: "5 mg".into(),
            frequency: "once a day".into(),
            start: day(8),
            stop: Some(day(20)),
            instructions: "In the morning.".into(),
        };
        let request = medication_request(&facts, day(20));
        assert_eq!(request["status"], "active");
        assert_eq!(request["intent"], "order");
        assert_eq!(request["dosageInstruction"][0]["text"], "5 mg, once a day");
        assert_eq!(
            request["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["end"],
            "2026-12-20"
        );
        assert_eq!(medication_request(&facts, day(21))["status"], "completed");
        let open_ended = MedicationOrderFacts {
            stop: None,
            instructions: String::new(),
            ..facts
        };
        let request = medication_request(&open_ended, day(31));
        assert_eq!(request["status"], "active");
        assert!(
            request["dosageInstruction"][0]
                .get("patientInstruction")
                .is_none()
        );
    }

    #[test]
    fn a_device_id_and_its_fhir_id_map_one_to_one() {
        for id in ["dev_0011223344556677", "FE-ED-AB-EE-DE-AD-BE-EF", "a_b-c_d"] {
            let device = DeviceId::parse(id).unwrap();
            let fhir_id = device_fhir_id(&device);
            assert!(
                fhir_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
                "{fhir_id} is a FHIR id"
            );
            assert_eq!(device_id_of(&fhir_id), id);
        }
        let resource = device(&DeviceFacts {
            id: DeviceId::parse("dev_01").unwrap(),
            kind: "pulse_oximeter",
            model: "Oxi".into(),
            serial: "SN-1".into(),
            active: false,
            patient: None,
        });
        assert_eq!(resource["id"], "dev.01");
        assert_eq!(resource["status"], "inactive");
        assert_eq!(resource["type"]["text"], "pulse oximeter");
        assert!(resource.get("patient").is_none());
    }

    #[test]
    fn a_heart_rate_claims_the_vital_signs_and_heart_rate_profiles() {
        let resource = observation(&reading(ObservationCode::HeartRate, 72.0, None));
        assert_eq!(
            resource["meta"]["profile"],
            json!([
                VITAL_SIGNS_PROFILE,
                "http://hl7.org/fhir/StructureDefinition/heartrate"
            ])
        );
        assert_eq!(resource["category"][0]["coding"][0]["code"], "vital-signs");
        assert_eq!(
            resource["code"]["coding"][0],
            json!({"system": LOINC, "code": "8867-4", "display": "Heart rate"})
        );
        assert_eq!(
            resource["valueQuantity"],
            json!({"value": 72, "unit": "/min", "system": UCUM, "code": "/min"})
        );
        assert_eq!(resource["effectiveDateTime"], "2026-12-01T08:00:00Z");
        assert_eq!(resource["issued"], "2026-12-01T08:00:01.250Z");
        // The id names the reading, and leads back to it.
        let id = resource["id"].as_str().unwrap();
        assert_eq!(id, "dev.0011223344556677.m7");
        assert_eq!(
            reading_of_id(id),
            Some((DeviceId::parse("dev_0011223344556677").unwrap(), false, 7))
        );
    }

    #[test]
    fn reading_ids_lead_back_to_their_reading_and_nothing_else() {
        let device = DeviceId::parse("FE-ED-AB-EE-DE-AD-BE-EF").unwrap();
        for (derived, seq) in [(false, 0), (true, 7), (false, i64::MAX)] {
            let id = reading_id(&device, derived, seq);
            assert!(id.len() <= 64, "{id}");
            assert_eq!(reading_of_id(&id), Some((device.clone(), derived, seq)));
        }
        for other in [
            "", "m7", "dev.m", "dev.x7", "dev.m007", "dev.m+7", "dev.m7.", "Patient",
        ] {
            assert_eq!(reading_of_id(other), None, "{other}");
        }
        // A device id too long for a readable id within 64 characters: a hash, which
        // names no reading to read.
        let long = DeviceId::parse(&"d".repeat(62)).unwrap();
        let id = reading_id(&long, false, 1);
        assert_eq!(id.len(), 32);
        assert_eq!(reading_of_id(&id), None);
    }

    #[test]
    fn every_kind_of_id_is_read_back_and_no_other() {
        let device = DeviceId::parse("dev_0011223344556677").unwrap();
        for kind in IdKind::ALL {
            let id = kind_id(&device, kind, 42);
            assert_eq!(id_parts(&id), Some((device.clone(), kind, 42)), "{id}");
        }
        assert_eq!(
            kind_id(&device, IdKind::Panel, 42),
            "dev.0011223344556677.p42"
        );
        assert_eq!(
            kind_id(&device, IdKind::Waveform, 7),
            "dev.0011223344556677.w7"
        );
        assert_eq!(id_parts("dev.0011223344556677.x42"), None);
        assert_eq!(id_parts("dev.0011223344556677.w042"), None);
        assert_eq!(reading_of_id("dev.0011223344556677.p42"), None);
        // Too long a device for a readable id: a hash, not read back.
        let long = DeviceId::parse(&"d".repeat(62)).unwrap();
        let hashed = kind_id(&long, IdKind::Waveform, 1);
        assert_eq!(hashed.len(), 32);
        assert_eq!(id_parts(&hashed), None);
    }

    #[test]
    fn pulse_oximetry_carries_2708_6_and_a_converted_value_its_original() {
        let resource = observation(&reading(
            ObservationCode::OxygenSaturationPulseOximetry,
            97.0,
            None,
        ));
        let codes: Vec<&str> = resource["code"]["coding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["2708-6", "59408-5"]);
        let glucose = observation(&reading(
            ObservationCode::GlucoseMeter,
            108.09,
            Some((6.0, "mmol/L")),
        ));
        assert_eq!(glucose["category"][0]["coding"][0]["code"], "laboratory");
        assert!(glucose.get("meta").is_none(), "glucose is not a vital sign");
        assert_eq!(
            glucose["valueQuantity"]["extension"][0]["url"],
            ORIGINAL_QUANTITY_EXTENSION
        );
        assert_eq!(
            glucose["valueQuantity"]["extension"][0]["valueQuantity"]["value"],
            6
        );
        assert_eq!(
            glucose["valueQuantity"]["extension"][0]["valueQuantity"]["code"],
            "mmol/L"
        );
    }

    #[test]
    fn the_same_reading_has_the_same_id_and_another_reading_another() {
        let one = reading(ObservationCode::HeartRate, 72.0, None);
        let mut derived = one.clone();
        derived.derived = true;
        let mut next = one.clone();
        next.seq = 8;
        assert_eq!(observation_id(&one), observation_id(&one.clone()));
        assert_ne!(observation_id(&one), observation_id(&derived));
        assert_ne!(observation_id(&one), observation_id(&next));
    }

    #[test]
    fn blood_pressure_is_a_panel_with_both_components() {
        let systolic = reading(ObservationCode::SystolicBloodPressure, 124.0, None);
        let mut diastolic = reading(ObservationCode::DiastolicBloodPressure, 81.0, None);
        diastolic.seq = 8;
        let panel = blood_pressure_panel(&systolic, Some(&diastolic));
        assert_eq!(panel["code"]["coding"][0]["code"], "85354-9");
        assert!(panel.get("valueQuantity").is_none());
        assert_eq!(panel["component"][0]["code"]["coding"][0]["code"], "8480-6");
        assert_eq!(panel["component"][0]["valueQuantity"]["value"], 124);
        assert_eq!(panel["component"][1]["code"]["coding"][0]["code"], "8462-4");
        assert_eq!(panel["component"][1]["valueQuantity"]["value"], 81);
        assert_ne!(panel["id"], observation(&systolic)["id"]);
        let alone = blood_pressure_panel(&systolic, None);
        assert_eq!(
            alone["component"][1]["dataAbsentReason"]["coding"][0]["code"],
            "unknown"
        );
    }

    #[test]
    fn a_bundle_counts_only_a_single_page_and_links_the_next() {
        let resources = vec![observation(&reading(
            ObservationCode::HeartRate,
            72.0,
            None,
        ))];
        let last = searchset(
            "https://h/fhir/R4",
            resources.clone(),
            "https://h/fhir/R4/Observation?x",
            None,
        );
        assert_eq!(last["total"], 1);
        assert!(
            last["entry"][0]["fullUrl"]
                .as_str()
                .unwrap()
                .starts_with("https://h/fhir/R4/Observation/")
        );
        let paged = searchset("https://h/fhir/R4", resources, "s", Some("n"));
        assert!(paged.get("total").is_none());
        assert_eq!(paged["link"][1], json!({"relation": "next", "url": "n"}));
    }
}
