use wardline_alerting::AlertingError;
use wardline_store::StoreError;

/// The one error type of the alarm runtime.
#[derive(Debug, thiserror::Error)]
pub enum AlarmsError {
    /// A care plan, edit or action the alerting rules refuse.
    #[error(transparent)]
    Alerting(#[from] AlertingError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0} not found")]
    NotFound(String),
    /// The alarm is not in a state that allows the action.
    #[error("{0}")]
    InvalidState(String),
    /// The alarm task has stopped (the server is shutting down), or could not store.
    #[error("the alarm service is not running")]
    Stopped,
    #[error("sealing a secret failed")]
    Crypto,
    /// The engine of another process refused a forwarded command, or none answered.
    #[error(transparent)]
    Forwarded(#[from] crate::forward::ForwardedError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
