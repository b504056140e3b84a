//! Wardline's domain types. Nothing here does I/O: the types and rules are shared by
//! storage, ingest and the API, and every rule can be tested as a pure function.

pub mod codes;
pub mod ids;
pub mod json;
pub mod local_device;
pub mod nightscout;
pub mod observation;
pub mod payload;
pub mod people;
pub mod rhythm;
pub mod sharing;
#[cfg(feature = "openapi")]
pub mod text_schema;
pub mod topics;

pub use codes::{CodeSpec, ObservationCode, UnitError};
pub use ids::{CareTeamId, DeviceId, IdError, PatientId, UserId};
pub use observation::{DERIVED_HEART_RATE_WINDOW_MS, Observation, Reading, Signal, WaveformChunk};
pub use payload::{
    DeviceMessage, PayloadError, PayloadErrorKind, PayloadLimits, parse_device_message,
};
pub use people::{DeviceKind, Role, UnknownDeviceKind, UnknownRole};
pub use rhythm::RhythmKind;
