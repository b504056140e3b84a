//! Wardline's alarm runtime.
//!
//! * [`engine`]: one task that owns every patient's [`PatientMonitor`](wardline_alerting::PatientMonitor)
//!   and alarm board. It listens to the live feed (observations, derived heart rate,
//!   NEWS2, rhythm events, device contact) after commit, so it never delays a device's
//!   acknowledgement, and to a timer for device silence, escalation deadlines and snooze
//!   expiry. Every alarm change is stored, with its history events and the notifications
//!   it causes, in one durable commit *before* it is announced.
//! * [`notify`]: delivers the durable outbox at least once: signed webhooks with
//!   exponential backoff and a dead-letter state, e-mail over SMTP.
//! * [`secrets`]: seals webhook secrets at rest.

pub mod engine;
mod error;
pub mod notify;
pub mod secrets;

pub use engine::{AlarmEvent, AlarmService, AlarmSettings, CarePlanRequest, alarm_view, public_id};
pub use error::AlarmsError;
pub use notify::{SmtpSettings, sign};
pub use secrets::Sealer;
