//! Readings as devices send them and observations as Wardline stores them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::codes::ObservationCode;
use crate::ids::{DeviceId, PatientId};

/// One measurement from a device, validated and normalised, not yet tied to a patient.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The device's own sequence number; a retried message carries the same one, which is
    /// how a retry is recognised and not stored twice.
    pub seq: i64,
    pub code: ObservationCode,
    /// In the code's canonical unit.
    pub value: f64,
    /// What the device sent, when it was in another unit.
    pub original: Option<(f64, String)>,
    pub effective: DateTime<Utc>,
}

/// A stored reading: whose it is, from which device, and when it arrived.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    pub patient_id: PatientId,
    pub device_id: DeviceId,
    pub seq: i64,
    pub code: ObservationCode,
    pub loinc: &'static str,
    pub value: f64,
    pub unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_unit: Option<String>,
    pub effective: DateTime<Utc>,
    pub received: DateTime<Utc>,
    /// True when Wardline computed the value from other data (e.g. heart rate from an
    /// ECG waveform) rather than the device measuring it. Derived observations have their
    /// own `seq` namespace per device, so they never collide with the device's readings.
    pub derived: bool,
}

impl Observation {
    pub fn from_reading(
        patient_id: PatientId,
        device_id: DeviceId,
        reading: &Reading,
        received: DateTime<Utc>,
    ) -> Self {
        let spec = reading.code.spec();
        Self {
            patient_id,
            device_id,
            seq: reading.seq,
            code: reading.code,
            loinc: spec.loinc,
            value: reading.value,
            unit: spec.canonical_unit,
            original_value: reading.original.as_ref().map(|(value, _)| *value),
            original_unit: reading.original.as_ref().map(|(_, unit)| unit.clone()),
            effective: reading.effective,
            received,
            derived: false,
        }
    }
}

/// The signal a waveform carries.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    EcgLeadI,
    EcgLeadIi,
    EcgLeadIii,
    EcgLeadV1,
    EcgLeadV2,
    EcgLeadV5,
    Pleth,
    Respiration,
}

impl Signal {
    pub const ALL: [Signal; 8] = [
        Signal::EcgLeadI,
        Signal::EcgLeadIi,
        Signal::EcgLeadIii,
        Signal::EcgLeadV1,
        Signal::EcgLeadV2,
        Signal::EcgLeadV5,
        Signal::Pleth,
        Signal::Respiration,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::EcgLeadI => "ecg-lead-i",
            Signal::EcgLeadIi => "ecg-lead-ii",
            Signal::EcgLeadIii => "ecg-lead-iii",
            Signal::EcgLeadV1 => "ecg-lead-v1",
            Signal::EcgLeadV2 => "ecg-lead-v2",
            Signal::EcgLeadV5 => "ecg-lead-v5",
            Signal::Pleth => "pleth",
            Signal::Respiration => "respiration",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Signal::ALL
            .into_iter()
            .find(|signal| signal.as_str() == text)
    }

    /// The sequence number of a chunk whose device numbers nothing (a FHIR Observation):
    /// made of its start and signal, as [`ObservationCode::seq_at`] makes a reading's, so
    /// the same chunk sent again is a retry and two leads recorded together never
    /// collide. Signals are only ever appended to [`Signal::ALL`].
    pub fn seq_at(self, start: DateTime<Utc>) -> i64 {
        let index = Signal::ALL
            .iter()
            .position(|signal| *signal == self)
            .unwrap_or(0) as i64;
        start
            .timestamp_millis()
            .saturating_mul(32)
            .saturating_add(index)
    }

    /// True for the ECG leads, the signals the rhythm analysis reads.
    pub fn is_ecg(self) -> bool {
        !matches!(self, Signal::Pleth | Signal::Respiration)
    }

    /// The physical unit of `(sample − baseline) / gain`.
    pub fn physical_unit(self) -> &'static str {
        match self {
            Signal::Pleth | Signal::Respiration => "1",
            _ => "mV",
        }
    }
}

/// A heart rate Wardline derives from an ECG is the rate of the beats in the 10 s of
/// signal before its time, one every 10 s.
pub const DERIVED_HEART_RATE_WINDOW_MS: i64 = 10_000;

/// A run of integer samples from one signal of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveformChunk {
    pub seq: i64,
    pub signal: Signal,
    pub sampling_rate_hz: f64,
    pub start: DateTime<Utc>,
    /// ADC counts per physical unit (e.g. counts per mV).
    pub gain: f64,
    /// The ADC count that means zero.
    pub baseline: i32,
    pub samples: Vec<i32>,
}

impl WaveformChunk {
    /// When the sample after the last one would have been taken.
    pub fn end(&self) -> DateTime<Utc> {
        let duration_ms = (self.samples.len() as f64 * 1000.0 / self.sampling_rate_hz).round();
        self.start + chrono::Duration::milliseconds(duration_ms as i64)
    }
}
