//! NEWS2 from the latest vital signs.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use wardline_analytics::news2::{News2, News2Observations, SpO2Scale, score_news2};
use wardline_domain::{Observation, ObservationCode, PatientId};
use wardline_store::News2Record;

/// The codes whose arrival recomputes NEWS2.
pub const NEWS2_INPUTS: [ObservationCode; 6] = [
    ObservationCode::RespiratoryRate,
    ObservationCode::OxygenSaturationPulseOximetry,
    ObservationCode::OxygenSaturation,
    ObservationCode::SystolicBloodPressure,
    ObservationCode::HeartRate,
    ObservationCode::BodyTemperature,
];

/// A measured value as a whole number for NEWS2's integer bands; `None` if it cannot
/// be one (the domain's ranges make that impossible for stored values).
fn whole(value: f64) -> Option<u16> {
    let rounded = value.round();
    (rounded >= 0.0 && rounded <= f64::from(u16::MAX)).then_some(rounded as u16)
}

/// Scores NEWS2 from the latest observations (newest per code), at `at`.
///
/// Consciousness and supplemental oxygen are not measured by any device, so they are
/// missing and the result is partial: a minimum total and risk, naming what is missing,
/// never a total that could be wrong. SpO2 is scored on Scale 1: Scale 2 must be
/// prescribed by a clinician, and Wardline has no such prescription yet. `None` when no
/// NEWS2 parameter is present or a value is outside NEWS2's accepted ranges (counted,
/// not logged: the value is health data).
pub fn news2_from_latest(
    patient_id: PatientId,
    at: DateTime<Utc>,
    latest: &[Observation],
) -> Option<News2Record> {
    let find = |code: ObservationCode| latest.iter().find(|observation| observation.code == code);
    let spo2 = [
        find(ObservationCode::OxygenSaturationPulseOximetry),
        find(ObservationCode::OxygenSaturation),
    ]
    .into_iter()
    .flatten()
    .max_by_key(|observation| observation.effective);
    let used: Vec<(&str, &Observation)> = [
        ("respiration_rate", find(ObservationCode::RespiratoryRate)),
        ("spo2", spo2),
        ("systolic_bp", find(ObservationCode::SystolicBloodPressure)),
        ("pulse", find(ObservationCode::HeartRate)),
        ("temperature", find(ObservationCode::BodyTemperature)),
    ]
    .into_iter()
    .filter_map(|(name, observation)| observation.map(|observation| (name, observation)))
    .collect();
    if used.is_empty() {
        return None;
    }
    let value = |name: &str| {
        used.iter()
            .find(|(used_name, _)| *used_name == name)
            .map(|(_, observation)| observation.value)
    };
    let observations = News2Observations {
        respiration_rate: value("respiration_rate").and_then(whole),
        spo2_percent: value("spo2").and_then(whole),
        spo2_scale: SpO2Scale::Scale1,
        inspired_air: None,
        systolic_bp_mmhg: value("systolic_bp").and_then(whole),
        pulse_per_min: value("pulse").and_then(whole),
        consciousness: None,
        temperature_c: value("temperature").map(|celsius| (celsius * 10.0).round() / 10.0),
    };
    let score = match score_news2(&observations) {
        Ok(score) => score,
        Err(_) => {
            metrics::counter!("wardline_news2_skipped_total", "reason" => "out_of_range")
                .increment(1);
            return None;
        }
    };
    let mut inputs = serde_json::Map::new();
    for (name, observation) in &used {
        inputs.insert(
            (*name).to_owned(),
            json!({
                "loinc": observation.loinc,
                "value": observation.value,
                "unit": observation.unit,
                "effective": observation.effective,
                "derived": observation.derived,
                // Which reading it was, for FHIR's derivedFrom.
                "device": observation.device_id,
                "seq": observation.seq,
            }),
        );
    }
    let as_name = |parameter: &wardline_analytics::news2::News2Parameter| {
        serde_json::to_value(parameter)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let risk_name = |risk: wardline_analytics::news2::ClinicalRisk| {
        serde_json::to_value(risk)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    Some(match score {
        News2::Complete(score) => News2Record {
            patient_id,
            time: at,
            complete: true,
            total: score.total,
            risk: risk_name(score.risk),
            any_parameter_3: score.any_parameter_3,
            missing: Vec::new(),
            sub_scores: serde_json::to_value(score.sub_scores).unwrap_or(Value::Null),
            inputs: Value::Object(inputs),
            computed: None,
        },
        News2::Partial(partial) => News2Record {
            patient_id,
            time: at,
            complete: false,
            total: partial.minimum_total,
            risk: risk_name(partial.minimum_risk),
            any_parameter_3: partial.any_parameter_3,
            missing: partial.missing.iter().map(as_name).collect(),
            sub_scores: serde_json::to_value(partial.sub_scores).unwrap_or(Value::Null),
            inputs: Value::Object(inputs),
            computed: None,
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use wardline_domain::DeviceId;

    fn observation(code: ObservationCode, value: f64, minute: i64) -> Observation {
        let spec = code.spec();
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap() + Duration::minutes(minute);
        Observation {
            patient_id: PatientId::random(),
            device_id: DeviceId::parse("dev-001").unwrap(),
            seq: minute,
            code,
            loinc: spec.loinc,
            value,
            unit: spec.canonical_unit,
            original_value: None,
            original_unit: None,
            effective: at,
            received: at,
            derived: false,
        }
    }

    #[test]
    fn device_vitals_give_a_partial_score_naming_what_is_missing() {
        let latest = vec![
            observation(ObservationCode::RespiratoryRate, 22.0, 1),
            observation(ObservationCode::OxygenSaturationPulseOximetry, 95.0, 2),
            observation(ObservationCode::OxygenSaturation, 91.0, 0),
            observation(ObservationCode::SystolicBloodPressure, 105.0, 1),
            observation(ObservationCode::HeartRate, 112.0, 1),
            observation(ObservationCode::BodyTemperature, 38.04, 1),
        ];
        let at = latest[1].effective;
        let record = news2_from_latest(PatientId::random(), at, &latest).unwrap();
        assert!(!record.complete);
        assert_eq!(record.missing, vec!["air_or_oxygen", "consciousness"]);
        // RR 22 -> 2, SpO2 95 (the newer of the two) -> 1, SBP 105 -> 1, HR 112 -> 2,
        // 38.0 C -> 0: at least 6, so at least medium.
        assert_eq!(record.total, 6);
        assert_eq!(record.risk, "medium");
        assert_eq!(record.sub_scores["consciousness"], Value::Null);
        assert_eq!(record.inputs["spo2"]["loinc"], json!("59408-5"));
    }

    #[test]
    fn nothing_to_score_and_impossible_scores_give_nothing() {
        let at = Utc::now();
        assert!(news2_from_latest(PatientId::random(), at, &[]).is_none());
        let glucose = vec![observation(ObservationCode::GlucoseCgm, 100.0, 0)];
        assert!(news2_from_latest(PatientId::random(), at, &glucose).is_none());
        // 0 breaths/min is a possible device value but outside NEWS2's accepted range.
        let apnoea = vec![observation(ObservationCode::RespiratoryRate, 0.0, 0)];
        assert!(news2_from_latest(PatientId::random(), at, &apnoea).is_none());
    }
}
