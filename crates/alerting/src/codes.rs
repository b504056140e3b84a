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
        ObservationCode::SystolicBloodPressure | ObservationCode::DiastolicBloodPressure => {
            Some(K::BloodPressureCuff)
        }
        ObservationCode::BodyWeight => Some(K::Scale),
        ObservationCode::PeakExpiratoryFlow => Some(K::PeakFlowMeter),
        ObservationCode::RrInterval => Some(K::Ecg),
        // Heart rate, SpO2 and respiration come from ECGs, oximeters and wearables alike.
        _ => None,
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
