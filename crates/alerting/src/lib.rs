//! Wardline's alerting core.
//!
//! * [`care_plan`]: monitoring programmes with default rules, and the versioned history
//!   of a patient's plan.
//! * [`rule`]: what a rule watches (thresholds, rates, forecasts, NEWS2, ECG rhythm,
//!   device silence and status) and how urgent it is (IEC 60601-1-8 priorities).
//! * [`monitor`]: the per-patient evaluator turning inputs into raise/clear signals.
//! * [`alarm`] and [`escalation`]: the alarm lifecycle and who is notified when.
//! * [`burden`]: replays CGM data to compare the alarm burden of naive thresholds with
//!   a care plan's.
//!
//! Nothing here reads a clock, a file or the network: time is always an argument, so
//! the same code runs live, in replays and in tests.

pub mod alarm;
pub mod burden;
pub mod care_plan;
pub mod codes;
mod error;
pub mod escalation;
pub mod monitor;
pub mod rule;

pub use alarm::{Alarm, AlarmBoard, AlarmId, AlarmState, AlarmUpdate, Resolution};
pub use care_plan::{
    CarePlan, CarePlanChange, CarePlanHistory, CarePlanVersion, PatientBaseline, Program, RuleEdit,
    default_rules, new_programme_defaults,
};
pub use error::{AlertingError, Result};
pub use escalation::{
    EscalationPolicy, EscalationStatus, EscalationStep, NextEscalationStep, Notification,
    NotificationReason, Recipient, due_notifications, escalation_status, next_deadline,
};
pub use monitor::{
    AlarmSignal, ConditionKey, DeviceStatusReport, ForecastInput, ForecastPoint, ObservedValue,
    PatientMonitor, RhythmObservation,
};
pub use rule::{AlarmKind, Direction, Priority, Rule, RuleId, RuleKind};
