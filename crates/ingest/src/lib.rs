//! How readings get in: device credentials, payload validation, storing with an
//! acknowledgement only after commit, the MQTT endpoint devices connect to, and the
//! live feed of what was just stored.

pub mod credentials;
pub mod derived;
pub mod ecg_stream;
pub mod live;
pub mod mqtt;
pub mod pipeline;

pub use credentials::{DeviceAuthError, DeviceSecret, authenticate_device};
pub use derived::{AnalysisHandle, AnalysisSettings, spawn_analysis};
pub use live::{DeviceContact, LiveFeed};
pub use pipeline::{IngestService, MessageVerdict, Rejection};
