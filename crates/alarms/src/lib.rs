//! Wardline's alarm runtime.
//!
//! * [`engine`]: one task that owns every patient's [`PatientMonitor`](wardline_alerting::PatientMonitor)
//!   and alarm board. It reads the committed event log (observations, derived heart rate,
//!   NEWS2, rhythm events, device reports and contact) from its own stored cursor, so it
//!   never delays a device's acknowledgement and never loses an input, and a timer for
//!   device silence, escalation deadlines and snooze expiry. Every alarm change is
//!   stored, with its history events, the notifications it causes and the engine's
//!   cursor, in one durable commit *before* it is announced.
//! * [`notify`]: delivers the durable outbox at least once: signed webhooks with
//!   exponential backoff and a dead-letter state, e-mail over SMTP.
//! * [`forward`]: commands for the engine when it runs in another worker.
//! * [`secrets`]: seals webhook secrets at rest.
//! * [`clock`]: where the runtime reads the time.

pub mod clock;
pub mod engine;
mod error;
pub mod forward;
pub mod notify;
pub mod secrets;

pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{
    AlarmAction, AlarmEvent, AlarmService, AlarmSettings, CarePlanAuthor, CarePlanRequest,
    RunningEngine,
};
pub use error::AlarmsError;
pub use notify::{SmtpSettings, send_plain_email, sign};
pub use secrets::Sealer;
