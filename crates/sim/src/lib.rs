//! Wardline's virtual ward: simulated patients and the devices they wear, producing
//! device payloads (v1, `docs/device-protocol.md`) byte for byte as real devices would,
//! with per-device increasing `seq` and RFC 3339 times.
//!
//! The caller owns the clock. [`Ward::advance_to`] (or [`Scenario::advance_to`]) runs the
//! simulation up to a sim time and returns what devices sent meanwhile; drive it with
//! wall-clock time for a real-time demo or with a faster clock. Everything is
//! deterministic given the seed and start time, and independent of how often the clock
//! is advanced. The library does no I/O: ECG records are passed in as bytes.
//!
//! ```
//! use chrono::{DateTime, Duration, Utc};
//!
//! let start: DateTime<Utc> = "2026-03-02T06:00:00Z".parse().unwrap();
//! let mut ward = wardline_sim::Ward::standard(42, start);
//! for device in ward.devices() {
//!     // Enrol `device.key` (kind, model) and assign it to `device.patient_key`.
//!     assert!(ward.patients().any(|p| p.key == device.patient_key));
//! }
//! let sent = ward.advance_to(start + Duration::minutes(10));
//! assert!(sent.iter().any(|e| e.device_key == "cgm-ada"));
//! assert!(sent.iter().any(|e| e.device_key == "ecg-ben"));
//! ```
//!
//! Scenarios and the published models behind them:
//! - [`DiabetesScenario`]: type 1 diabetes on a CGM — Hovorka et al. 2004
//!   glucoregulatory model, Breton & Kovatchev 2008 AR(1) sensor noise, Facchinetti
//!   et al. 2014 calibration error; night-time lows from dinner over-boluses.
//! - [`CardiacScenario`]: an ECG patch — MIT-BIH record replay, or McSharry et al. 2003
//!   ECGSYN with atrial fibrillation (Stridh & Sörnmo 2001 f-waves, Cohen et al. 1983
//!   ventricular response).
//! - [`VitalsScenario`]: spot-check devices — post-surgery sepsis (Sepsis-3), COPD on
//!   SpO2 Scale 2, stable patients with circadian rhythms.

mod cardiac;
mod error;
mod glucose;
mod payload;
mod rng;
mod roster;
mod scenario;
mod vitals;
mod ward;

pub use cardiac::{AfEpisodes, CardiacScenario, EcgRecord, SyntheticEcgConfig};
pub use error::SimError;
pub use glucose::{DiabetesConfig, DiabetesScenario};
pub use payload::DeviceEmission;
pub use roster::{DeviceSpec, PatientSpec, Program};
pub use scenario::Scenario;
pub use vitals::{DeteriorationCourse, Instrument, Vitals, VitalsProfile, VitalsScenario};
pub use ward::Ward;
