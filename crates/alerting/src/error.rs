use serde::Serialize;

/// The one error type of the crate.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
pub enum AlertingError {
    /// A rule, care plan or escalation policy that cannot be evaluated safely.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was checked (a rule id, "escalation policy", ...).
        what: String,
        /// What is wrong, in words a clinician or integrator can act on.
        reason: String,
    },
    /// A care plan edit that does not fit the plan it is applied to.
    #[error("care plan change refused: {0}")]
    CarePlanChange(String),
    /// An input that belongs to another patient than the monitor's.
    #[error("input for patient {got} sent to the monitor of patient {expected}")]
    WrongPatient {
        /// The monitor's patient.
        expected: String,
        /// The input's patient.
        got: String,
    },
    /// An alarm cannot go from its current state through this action.
    #[error("alarm {alarm}: cannot {action} an alarm that is {state}")]
    IllegalTransition {
        /// Alarm id.
        alarm: String,
        /// What was attempted.
        action: &'static str,
        /// The state it is in.
        state: &'static str,
    },
    /// A snooze longer than the priority allows.
    #[error(
        "snooze of {requested_secs} s refused: at most {max_secs} s for a {priority} priority alarm"
    )]
    SnoozeTooLong {
        /// Requested duration.
        requested_secs: i64,
        /// Longest allowed.
        max_secs: i64,
        /// The alarm's priority.
        priority: &'static str,
    },
    /// No alarm with this id is open.
    #[error("no open alarm {0}")]
    UnknownAlarm(String),
    /// An analytics computation (CGM episodes, forecasts) failed during a replay.
    #[error("analytics: {0}")]
    Analytics(#[from] wardline_analytics::AnalyticsError),
}

pub type Result<T, E = AlertingError> = std::result::Result<T, E>;
