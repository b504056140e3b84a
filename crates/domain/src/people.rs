//! Who uses Wardline.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::codes::ObservationCode;
use crate::observation::Signal;

/// What a person does in Wardline; access to patient data follows from it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages users, devices and care teams; reads clinical data only when also on the care team.
    Admin,
    Clinician,
    Nurse,
    /// Sees only their own record.
    Patient,
    /// A clinician outside the patient's care teams (a consultant a state away): sees
    /// nothing by default, and only what a patient shared with them, while it lasts.
    Specialist,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Clinician,
        Role::Nurse,
        Role::Patient,
        Role::Specialist,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Clinician => "clinician",
            Role::Nurse => "nurse",
            Role::Patient => "patient",
            Role::Specialist => "specialist",
        }
    }

    /// Whether this role may be a member of a care team.
    pub fn joins_care_teams(self) -> bool {
        matches!(self, Role::Clinician | Role::Nurse | Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected admin, clinician, nurse, patient or specialist")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| UnknownRole(text.to_owned()))
    }
}

/// What kind of device sends readings; it decides nothing about access, only how a
/// device is described to the care team.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Cgm,
    GlucoseMeter,
    Ecg,
    PulseOximeter,
    Thermometer,
    BloodPressureCuff,
    Scale,
    PeakFlowMeter,
    Wearable,
    /// A multi-parameter monitor (a bedside or hospital-at-home vital-signs monitor, a
    /// vital-signs patch): all the vital signs NEWS2 uses, from one device.
    VitalSignsMonitor,
    Gateway,
    /// The apps of people with diabetes (xDrip+, AndroidAPS, Loop, Trio) uploading
    /// through Wardline's Nightscout-compatible API: sensor and meter glucose.
    NightscoutUploader,
}

impl DeviceKind {
    pub const ALL: [DeviceKind; 12] = [
        DeviceKind::Cgm,
        DeviceKind::GlucoseMeter,
        DeviceKind::Ecg,
        DeviceKind::PulseOximeter,
        DeviceKind::Thermometer,
        DeviceKind::BloodPressureCuff,
        DeviceKind::Scale,
        DeviceKind::PeakFlowMeter,
        DeviceKind::Wearable,
        DeviceKind::VitalSignsMonitor,
        DeviceKind::Gateway,
        DeviceKind::NightscoutUploader,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Cgm => "cgm",
            DeviceKind::GlucoseMeter => "glucose_meter",
            DeviceKind::Ecg => "ecg",
            DeviceKind::PulseOximeter => "pulse_oximeter",
            DeviceKind::Thermometer => "thermometer",
            DeviceKind::BloodPressureCuff => "blood_pressure_cuff",
            DeviceKind::Scale => "scale",
            DeviceKind::PeakFlowMeter => "peak_flow_meter",
            DeviceKind::Wearable => "wearable",
            DeviceKind::VitalSignsMonitor => "vital_signs_monitor",
            DeviceKind::Gateway => "gateway",
            DeviceKind::NightscoutUploader => "nightscout_uploader",
        }
    }

    /// Whether a device of this kind measures `code`. A reading a device cannot take (a
    /// glucose from an ECG patch) is a misconfigured or impersonating sender, and stored it
    /// would raise or silence the wrong alarms. ECG patches and wearables also derive
    /// respiration and skin temperature; oximeters a respiratory rate from the
    /// plethysmogram; cuffs a pulse. A gateway measures nothing: it only forwards its
    /// devices' messages, under their own identities.
    pub fn measures(self, code: ObservationCode) -> bool {
        use ObservationCode as C;
        match self {
            DeviceKind::Cgm => matches!(code, C::GlucoseCgm),
            DeviceKind::NightscoutUploader => matches!(code, C::GlucoseCgm | C::GlucoseMeter),
            DeviceKind::GlucoseMeter => matches!(code, C::GlucoseMeter | C::GlucoseBlood),
            DeviceKind::Ecg => matches!(
                code,
                C::HeartRate | C::RrInterval | C::RespiratoryRate | C::BodyTemperature
            ),
            DeviceKind::PulseOximeter => matches!(
                code,
                C::OxygenSaturationPulseOximetry
                    | C::OxygenSaturation
                    | C::HeartRate
                    | C::RespiratoryRate
            ),
            DeviceKind::Thermometer => matches!(code, C::BodyTemperature),
            DeviceKind::BloodPressureCuff => matches!(
                code,
                C::SystolicBloodPressure
                    | C::DiastolicBloodPressure
                    | C::MeanBloodPressure
                    | C::HeartRate
            ),
            // A scale that knows its user's height reports the BMI it computes, and the
            // height it was given.
            DeviceKind::Scale => matches!(code, C::BodyWeight | C::BodyHeight | C::BodyMassIndex),
            DeviceKind::PeakFlowMeter => matches!(code, C::PeakExpiratoryFlow),
            DeviceKind::Wearable => matches!(
                code,
                C::HeartRate
                    | C::RrInterval
                    | C::OxygenSaturationPulseOximetry
                    | C::RespiratoryRate
                    | C::BodyTemperature
            ),
            DeviceKind::VitalSignsMonitor => matches!(
                code,
                C::HeartRate
                    | C::RrInterval
                    | C::OxygenSaturationPulseOximetry
                    | C::OxygenSaturation
                    | C::RespiratoryRate
                    | C::SystolicBloodPressure
                    | C::DiastolicBloodPressure
                    | C::MeanBloodPressure
                    | C::BodyTemperature
            ),
            DeviceKind::Gateway => false,
        }
    }

    /// Whether a device of this kind records the waveform `signal`.
    pub fn records(self, signal: Signal) -> bool {
        match self {
            DeviceKind::Ecg => signal.is_ecg() || signal == Signal::Respiration,
            DeviceKind::PulseOximeter => signal == Signal::Pleth,
            DeviceKind::Wearable => signal.is_ecg() || signal == Signal::Pleth,
            DeviceKind::VitalSignsMonitor => true,
            _ => false,
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device kind {0:?}")]
pub struct UnknownDeviceKind(pub String);

impl FromStr for DeviceKind {
    type Err = UnknownDeviceKind;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        DeviceKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownDeviceKind(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_measuring_kind_measures_something_and_a_gateway_nothing() {
        for kind in DeviceKind::ALL {
            let measured = crate::codes::CATALOGUE
                .iter()
                .filter(|spec| kind.measures(spec.code))
                .count();
            if kind == DeviceKind::Gateway {
                assert_eq!(measured, 0);
                assert!(!Signal::ALL.iter().any(|signal| kind.records(*signal)));
            } else {
                assert!(measured > 0, "{kind} measures nothing");
            }
        }
        assert!(!DeviceKind::Ecg.measures(ObservationCode::GlucoseCgm));
        assert!(!DeviceKind::Cgm.records(Signal::EcgLeadIi));
        assert!(DeviceKind::Ecg.records(Signal::EcgLeadIi));
    }
}
