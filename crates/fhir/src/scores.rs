//! NEWS2, the score Wardline computes from a patient's latest vital signs, as an R4
//! Observation: coded in SNOMED CT as the Royal College of Physicians' NEWS2 total score,
//! category `survey` (an assessment tool's result), marked as computed and naming the
//! readings it was computed from (`derivedFrom`).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use wardline_domain::PatientId;

use crate::UCUM;
use crate::resources::instant;

pub const SNOMED: &str = "http://snomed.info/sct";
/// Royal College of Physicians National Early Warning Score 2 (NEWS2) total score.
pub const NEWS2_TOTAL: &str = "1104051000000101";
const NEWS2_DISPLAY: &str =
    "Royal College of Physicians National Early Warning Score 2 (NEWS2) total score";
const CATEGORY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const ABSENT_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
const ID_PREFIX: &str = "news2.";

/// NEWS2's seven parameters, as Wardline names them, and as a person reads them.
const PARAMETERS: [(&str, &str); 7] = [
    ("respiration_rate", "Respiration rate"),
    ("spo2", "SpO2"),
    ("air_or_oxygen", "Air or oxygen"),
    ("systolic_bp", "Systolic blood pressure"),
    ("pulse", "Pulse"),
    ("consciousness", "Consciousness"),
    ("temperature", "Temperature"),
];

/// One NEWS2 result as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct News2Facts<'a> {
    pub patient: PatientId,
    /// The effective time of the newest vital sign scored.
    pub time: DateTime<Utc>,
    pub complete: bool,
    /// The total when complete, else the least it can be.
    pub total: u8,
    /// `low`, `low-medium`, `medium` or `high` (the least, when partial).
    pub risk: &'a str,
    /// Each parameter's score, `null` where it was not measured.
    pub sub_scores: &'a Value,
    /// Names of the parameters not measured.
    pub missing: &'a [String],
    /// The FHIR ids of the readings scored.
    pub sources: Vec<String>,
}

/// The id of a patient's NEWS2 at `time`: the patient and the time in milliseconds, so
/// that the same result always has the same id and a read by id finds it.
pub fn news2_id(patient: PatientId, time: DateTime<Utc>) -> String {
    format!("{ID_PREFIX}{patient}.{}", time.timestamp_millis())
}

/// The patient and time a NEWS2 id names; `None` for an id of another shape.
pub fn news2_of_id(id: &str) -> Option<(PatientId, DateTime<Utc>)> {
    let rest = id.strip_prefix(ID_PREFIX)?;
    let (patient, millis) = rest.rsplit_once('.')?;
    let patient: PatientId = patient.parse().ok()?;
    let time = DateTime::from_timestamp_millis(millis.parse().ok()?)?;
    (news2_id(patient, time) == id).then_some((patient, time))
}

/// A NEWS2 result as an Observation. A partial score (a parameter no device measures,
/// such as consciousness, is missing) gives its least total with the comparator `>=`,
/// and each missing parameter as a component whose value is absent.
pub fn news2_observation(facts: &News2Facts<'_>) -> Value {
    let mut quantity = Map::new();
    quantity.insert("value".into(), json!(facts.total));
    if !facts.complete {
        quantity.insert("comparator".into(), json!(">="));
    }
    quantity.insert("unit".into(), json!("score"));
    quantity.insert("system".into(), json!(UCUM));
    quantity.insert("code".into(), json!("{score}"));
    let components: Vec<Value> = PARAMETERS
        .iter()
        .map(|(name, label)| {
            let code = json!({"text": format!("NEWS2 {label} score")});
            match facts.sub_scores.get(*name).and_then(Value::as_u64) {
                Some(score) if !facts.missing.iter().any(|missing| missing == name) => {
                    json!({"code": code, "valueInteger": score})
                }
                _ => json!({"code": code, "dataAbsentReason": {"coding": [{
                    "system": ABSENT_SYSTEM, "code": "not-performed", "display": "Not Performed"}],
                    "text": "not measured by any device"}}),
            }
        })
        .collect();
    let mut resource = json!({
        "resourceType": "Observation",
        "id": news2_id(facts.patient, facts.time),
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": "survey", "display": "Survey"}]}],
        "code": {"coding": [{"system": SNOMED, "code": NEWS2_TOTAL, "display": NEWS2_DISPLAY}],
                 "text": "NEWS2"},
        "subject": {"reference": format!("Patient/{}", facts.patient)},
        "effectiveDateTime": instant(facts.time),
        "valueQuantity": quantity,
        "interpretation": [{"text": risk_text(facts.risk, facts.complete)}],
        "method": {"text": "computed by Wardline from the patient's latest vital signs (RCP NEWS2, 2017; SpO2 on scale 1)"},
        "component": components,
    });
    if !facts.sources.is_empty()
        && let Some(members) = resource.as_object_mut()
    {
        members.insert(
            "derivedFrom".into(),
            Value::Array(
                facts
                    .sources
                    .iter()
                    .map(|id| json!({"reference": format!("Observation/{id}")}))
                    .collect(),
            ),
        );
    }
    resource
}

fn risk_text(risk: &str, complete: bool) -> String {
    let band = match risk {
        "low-medium" => "low-medium (a score of 3 in one parameter)",
        other => other,
    };
    if complete {
        format!("{band} clinical risk")
    } else {
        format!("at least {band} clinical risk: some parameters were not measured")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_partial_news2_says_it_is_a_least_total_and_what_is_missing() {
        let patient = PatientId::random();
        let time = DateTime::parse_from_rfc3339("2026-12-01T08:00:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        let sub_scores = json!({"respiration_rate": 3, "spo2": 0, "air_or_oxygen": null,
            "systolic_bp": 0, "pulse": 1, "consciousness": null, "temperature": 0});
        let missing = vec!["air_or_oxygen".to_owned(), "consciousness".to_owned()];
        let facts = News2Facts {
            patient,
            time,
            complete: false,
            total: 4,
            risk: "low-medium",
            sub_scores: &sub_scores,
            missing: &missing,
            sources: vec!["dev.0011223344556677.m9".into()],
        };
        let observation = news2_observation(&facts);
        assert_eq!(observation["valueQuantity"]["value"], 4);
        assert_eq!(observation["valueQuantity"]["comparator"], ">=");
        assert_eq!(observation["code"]["coding"][0]["code"], NEWS2_TOTAL);
        assert_eq!(observation["component"][0]["valueInteger"], 3);
        assert_eq!(
            observation["component"][2]["dataAbsentReason"]["coding"][0]["code"],
            "not-performed"
        );
        assert!(observation["component"][5]["valueInteger"].is_null());
        assert_eq!(
            observation["derivedFrom"][0]["reference"],
            "Observation/dev.0011223344556677.m9"
        );
        assert!(
            observation["interpretation"][0]["text"]
                .as_str()
                .unwrap()
                .starts_with("at least low-medium")
        );
        let id = observation["id"].as_str().unwrap();
        assert!(id.len() <= 64, "a FHIR id is at most 64 characters: {id}");
        assert_eq!(news2_of_id(id), Some((patient, time)));
        assert_eq!(news2_of_id("news2.not-a-patient.5"), None);
        assert_eq!(news2_of_id(&format!("news2.{patient}.05")), None);

        let complete = news2_observation(&News2Facts {
            complete: true,
            missing: &[],
            sources: Vec::new(),
            ..facts
        });
        assert!(complete["valueQuantity"].get("comparator").is_none());
        assert!(complete.get("derivedFrom").is_none());
    }
}
