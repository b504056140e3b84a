//! Observation codes inside care plans.
//!
//! The domain's `ObservationCode` serialises (as its snake_case name) but does not
//! deserialise, and care plans are read back from JSON, so rules carry it through
//! this module. LOINC codes are accepted on input too, since that is what
//! integrators and FHIR resources use.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use wardline_domain::ObservationCode;
use wardline_domain::codes::CATALOGUE;

pub(crate) fn serialize<S: Serializer>(code: &ObservationCode, s: S) -> Result<S::Ok, S::Error> {
    code.serialize(s)
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ObservationCode, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown observation code {text:?}: expected a Wardline code name or its LOINC code"
        ))
    })
}

/// A code from its serialised name (`glucose_cgm`) or its LOINC code (`99504-3`).
pub fn parse(text: &str) -> Option<ObservationCode> {
    ObservationCode::from_loinc(text).or_else(|| {
        CATALOGUE
            .iter()
            .map(|spec| spec.code)
            .find(|code| name(*code).as_deref() == Some(text))
    })
}

/// The serialised name of a code, as the domain writes it.
pub fn name(code: ObservationCode) -> Option<String> {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(name)) => Some(name),
        _ => None,
    }
}

/// Whether a reading of `observed` answers a rule written for `rule_code`.
///
/// SpO2 arrives under two LOINC codes (2708-6 is what the FHIR vital-signs profile
/// requires, 59408-5 is what oximeters say); a clinician's "SpO2 below 92 %" means both.
/// Glucose sources are deliberately *not* merged: a finger-stick is a spot check and a
/// CGM a stream, and their rules differ in duration and meaning.
pub fn same_quantity(rule_code: ObservationCode, observed: ObservationCode) -> bool {
    use ObservationCode::{OxygenSaturation, OxygenSaturationPulseOximetry};
    rule_code == observed
        || matches!(
            (rule_code, observed),
            (OxygenSaturation, OxygenSaturationPulseOximetry)
                | (OxygenSaturationPulseOximetry, OxygenSaturation)
        )
}

/// The kind of device a code's readings usually come from, where that is unambiguous;
/// used to match device-silence rules when nobody registered the device's kind.
pub fn usual_device_kind(code: ObservationCode) -> Option<wardline_domain::DeviceKind> {
    use wardline_domain::DeviceKind as K;
    match code {
        ObservationCode::GlucoseCgm => Some(K::Cgm),
        ObservationCode::GlucoseMeter => Some(K::GlucoseMeter),
        ObservationCode::BodyTemperature => Some(K::Thermometer),
        ObservationCode::SystolicBloodPressure
        | ObservationCode::DiastolicBloodPressure
        | ObservationCode::MeanBloodPressure => Some(K::BloodPressureCuff),
        ObservationCode::BodyWeight | ObservationCode::BodyMassIndex => Some(K::Scale),
        ObservationCode::PeakExpiratoryFlow => Some(K::PeakFlowMeter),
        ObservationCode::RrInterval => Some(K::Ecg),
        // Heart rate, SpO2 and respiration come from ECGs, oximeters and wearables alike.
        _ => None,
    }
}

/// The values an alarm limit on a code may take, in its canonical unit: narrower than
/// what the code can measure, wide enough for any patient a clinician would set a limit
/// for. Outside them a limit is a slip (an urgent low of 10 mg/dL, which no CGM reports)
/// or an alarm that could never sound (a high of 450 mg/dL, above the 400 mg/dL a CGM
/// reads at most). They follow the alarm-limit ranges of bedside monitors and CGM
/// apps.
pub fn alarm_limits(code: ObservationCode) -> (f64, f64) {
    use ObservationCode as C;
    match code {
        C::HeartRate => (20.0, 250.0),
        C::OxygenSaturation | C::OxygenSaturationPulseOximetry => (50.0, 100.0),
        C::BodyTemperature => (30.0, 43.0),
        C::RespiratoryRate => (3.0, 60.0),
        C::SystolicBloodPressure => (50.0, 260.0),
        C::DiastolicBloodPressure => (20.0, 160.0),
        // CGMs and meters report 40 to 400 mg/dL (2.2 to 22.2 mmol/L).
        C::GlucoseCgm | C::GlucoseMeter => (40.0, 400.0),
        C::GlucoseBlood => (40.0, 600.0),
        C::BodyWeight => (1.0, 650.0),
        C::PeakExpiratoryFlow => (30.0, 900.0),
        C::RrInterval => (200.0, 3000.0),
        C::MeanBloodPressure => (30.0, 200.0),
        C::BodyHeight => (40.0, 250.0),
        C::BodyMassIndex => (10.0, 80.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_by_name_and_loinc() {
        for spec in CATALOGUE {
            let name = name(spec.code).unwrap();
            assert_eq!(parse(&name), Some(spec.code));
            assert_eq!(parse(spec.loinc), Some(spec.code));
        }
        assert_eq!(parse("nonsense"), None);
    }
}
