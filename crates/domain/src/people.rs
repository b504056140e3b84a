//! Who uses Wardline.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Clinician, Role::Nurse, Role::Patient];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Clinician => "clinician",
            Role::Nurse => "nurse",
            Role::Patient => "patient",
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
#[error("unknown role {0:?}: expected admin, clinician, nurse or patient")]
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
    Gateway,
}

impl DeviceKind {
    pub const ALL: [DeviceKind; 10] = [
        DeviceKind::Cgm,
        DeviceKind::GlucoseMeter,
        DeviceKind::Ecg,
        DeviceKind::PulseOximeter,
        DeviceKind::Thermometer,
        DeviceKind::BloodPressureCuff,
        DeviceKind::Scale,
        DeviceKind::PeakFlowMeter,
        DeviceKind::Wearable,
        DeviceKind::Gateway,
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
            DeviceKind::Gateway => "gateway",
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
