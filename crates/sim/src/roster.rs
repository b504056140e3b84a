//! Who is on the virtual ward and which devices they wear, in the terms the server
//! needs to enrol them: a patient per program, devices with stable keys.

use std::fmt;

use serde::Serialize;
use wardline_analytics::news2::SpO2Scale;
use wardline_domain::{DeviceKind, Signal};

/// The condition program a patient is enrolled in; it selects the default rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Program {
    Diabetes,
    Cardiac,
    PostSurgery,
    Respiratory,
    General,
}

impl Program {
    pub const ALL: [Program; 5] = [
        Program::Diabetes,
        Program::Cardiac,
        Program::PostSurgery,
        Program::Respiratory,
        Program::General,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Program::Diabetes => "diabetes",
            Program::Cardiac => "cardiac",
            Program::PostSurgery => "post_surgery",
            Program::Respiratory => "respiratory",
            Program::General => "general",
        }
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A simulated patient (fictional).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatientSpec {
    /// Stable key, e.g. `ada`; device keys end with it.
    pub key: String,
    pub display_name: String,
    pub birth_year: i32,
    pub program: Program,
    /// What the scenario does, for the demo's patient list.
    pub summary: String,
    /// The NEWS2 SpO2 scale the clinician prescribes (Scale 2 only for hypercapnic
    /// respiratory failure, e.g. the COPD patient).
    pub spo2_scale: SpO2Scale,
}

/// A simulated device and the patient it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceSpec {
    /// Stable key, a valid Wardline device id (`[A-Za-z0-9_-]`, 3–64), e.g. `cgm-ada`.
    pub key: String,
    pub kind: DeviceKind,
    /// Manufacturer and model as the device reports them (fictional).
    pub model: String,
    pub patient_key: String,
    pub program: Program,
    /// LOINC codes of the readings it sends.
    pub codes: Vec<&'static str>,
    /// Waveform signals it streams.
    pub signals: Vec<Signal>,
}

impl DeviceSpec {
    pub(crate) fn new(
        key: String,
        kind: DeviceKind,
        model: &str,
        patient: &PatientSpec,
        codes: &[&'static str],
    ) -> Self {
        Self {
            key,
            kind,
            model: model.to_owned(),
            patient_key: patient.key.clone(),
            program: patient.program,
            codes: codes.to_vec(),
            signals: Vec::new(),
        }
    }
}
