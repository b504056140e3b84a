//! Commands for the engine of another process, and what they answer.
//!
//! Among several workers on one database, one runs the engine (see
//! [`AlarmService`](crate::AlarmService)); a person's care plan change or alarm action
//! taken on another worker is carried there and answered by the engine itself, so the
//! engine stays the one writer of alarm state. The commands, answers and announcements
//! are plain data (JSON on the wire); how they travel is the [`Forwarder`]'s business.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wardline_domain::{PatientId, UserId};
use wardline_store::{AlarmEventKind, AlarmRecord, AuditEvent, CarePlanVersionRecord, StoreError};

use crate::engine::{AlarmAction, AlarmEvent, CarePlanAuthor, CarePlanRequest};
use crate::error::AlarmsError;

/// A command for the engine, as it travels.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ForwardedCommand {
    CarePlan {
        patient: PatientId,
        request: CarePlanRequest,
        author: CarePlanAuthor,
    },
    /// The alarm by its public handle: the engine's worker reads it as it is stored.
    Act {
        alarm: String,
        by: UserId,
        action: AlarmAction,
        audit: AuditEvent,
    },
    Reload,
    /// A device was enrolled for, or assigned to, the patient.
    DevicesChanged {
        patient: PatientId,
    },
}

/// The engine's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", content = "value", rename_all = "snake_case")]
pub enum ForwardedReply {
    CarePlan(Box<CarePlanVersionRecord>),
    Alarm(Box<AlarmRecord>),
    Done,
}

/// How a forwarded command failed, in the classes the service layer answers people
/// with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ForwardedError {
    pub kind: ForwardedErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ForwardedErrorKind {
    /// The alarm's state (or a concurrent change) does not allow it.
    InvalidState,
    /// The request is refused; `field` names what is wrong when it is known.
    InvalidRequest {
        field: Option<String>,
    },
    NotFound,
    /// No engine answered, or its database is away: try again later.
    Unavailable,
    Internal,
}

impl From<&AlarmsError> for ForwardedError {
    fn from(error: &AlarmsError) -> Self {
        use wardline_alerting::AlertingError as A;
        let kind = match error {
            AlarmsError::Alerting(A::IllegalTransition { .. } | A::UnknownAlarm(_))
            | AlarmsError::InvalidState(_)
            | AlarmsError::Store(StoreError::Conflict { .. }) => ForwardedErrorKind::InvalidState,
            AlarmsError::Alerting(_) => ForwardedErrorKind::InvalidRequest { field: None },
            AlarmsError::Invalid { field, .. } => ForwardedErrorKind::InvalidRequest {
                field: Some((*field).to_owned()),
            },
            AlarmsError::NotFound(_) => ForwardedErrorKind::NotFound,
            AlarmsError::Stopped | AlarmsError::Store(StoreError::Unavailable(_)) => {
                ForwardedErrorKind::Unavailable
            }
            AlarmsError::Forwarded(forwarded) => forwarded.kind.clone(),
            _ => ForwardedErrorKind::Internal,
        };
        let message = match error {
            AlarmsError::Invalid { message, .. } => message.clone(),
            AlarmsError::NotFound(what) => what.clone(),
            AlarmsError::Store(StoreError::Conflict { what }) => {
                format!("{what} was written concurrently; retry")
            }
            other => other.to_string(),
        };
        Self { kind, message }
    }
}

/// Carries commands to the process running the engine and brings back its answer.
#[async_trait]
pub trait Forwarder: Send + Sync {
    /// [`AlarmsError::Forwarded`] with the engine's refusal, or
    /// [`ForwardedErrorKind::Unavailable`] when no engine answered in time.
    async fn forward(&self, command: ForwardedCommand) -> Result<ForwardedReply, AlarmsError>;
}

/// An alarm stream event as it travels between processes (with the alarm as stored,
/// which the stream shows).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnnouncedAlarmEvent {
    pub event: AlarmEventKind,
    pub patient_id: PatientId,
    pub at: DateTime<Utc>,
    pub record: Option<AlarmRecord>,
    pub notification: Option<Value>,
}

impl From<&AlarmEvent> for AnnouncedAlarmEvent {
    fn from(event: &AlarmEvent) -> Self {
        Self {
            event: event.event,
            patient_id: event.patient_id,
            at: event.at,
            record: event.record.clone(),
            notification: event.notification.clone(),
        }
    }
}

impl From<AnnouncedAlarmEvent> for AlarmEvent {
    fn from(event: AnnouncedAlarmEvent) -> Self {
        Self {
            event: event.event,
            patient_id: event.patient_id,
            at: event.at,
            record: event.record,
            notification: event.notification,
            relayed: true,
        }
    }
}
