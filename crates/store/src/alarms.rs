//! Care plans, the evaluator's checkpoints and alarms, as the alerting crate's own types.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wardline_alerting::{Alarm, CarePlan, EscalationPolicy, EscalationStatus, Rule};
use wardline_domain::{CareTeamId, PatientId, UserId};

use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::events::EventCursor;
use crate::outbox::NewNotification;

/// One version of a patient's care plan and the change that made it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarePlanVersionRecord {
    pub patient_id: PatientId,
    pub version: u32,
    pub effective: DateTime<Utc>,
    /// `None` for a change made from the command line.
    pub author: Option<UserId>,
    pub author_label: String,
    pub reason: String,
    /// The whole plan of this version.
    pub plan: CarePlan,
    pub old_rule: Option<Rule>,
    pub new_rule: Option<Rule>,
}

/// An alarm as stored: the alarm itself and where its escalation stood when it last
/// changed (a policy may change later; the status is rewritten with the alarm's next
/// change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmRecord {
    /// URL-safe handle used by the API.
    pub public_id: String,
    pub alarm: Alarm,
    pub escalation: EscalationStatus,
    pub updated: DateTime<Utc>,
}

impl AlarmRecord {
    pub fn patient_id(&self) -> PatientId {
        self.alarm.condition.patient_id
    }

    /// When the next escalation step is due, for an alarm that escalates.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.escalation.next.as_ref().map(|next| next.due_at)
    }
}

/// What happened to an alarm, in its history.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmEventKind {
    Opened,
    Reoccurred,
    Acknowledged,
    Snoozed,
    SnoozeExpired,
    ConditionCleared,
    Resolved,
    Notified,
}

impl AlarmEventKind {
    pub const ALL: [AlarmEventKind; 8] = [
        AlarmEventKind::Opened,
        AlarmEventKind::Reoccurred,
        AlarmEventKind::Acknowledged,
        AlarmEventKind::Snoozed,
        AlarmEventKind::SnoozeExpired,
        AlarmEventKind::ConditionCleared,
        AlarmEventKind::Resolved,
        AlarmEventKind::Notified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmEventKind::Opened => "opened",
            AlarmEventKind::Reoccurred => "reoccurred",
            AlarmEventKind::Acknowledged => "acknowledged",
            AlarmEventKind::Snoozed => "snoozed",
            AlarmEventKind::SnoozeExpired => "snooze_expired",
            AlarmEventKind::ConditionCleared => "condition_cleared",
            AlarmEventKind::Resolved => "resolved",
            AlarmEventKind::Notified => "notified",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// Something that happened to an alarm, to append to its history.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlarmEvent {
    pub time: DateTime<Utc>,
    pub event: AlarmEventKind,
    pub actor: Option<UserId>,
    pub detail: Option<Value>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmEventRecord {
    pub sequence: i64,
    pub public_id: String,
    pub time: DateTime<Utc>,
    pub event: AlarmEventKind,
    pub actor: Option<UserId>,
    pub detail: Option<Value>,
}

/// An alarm's new state with its history events and notifications, stored together.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmChange {
    pub alarm: AlarmRecord,
    pub events: Vec<NewAlarmEvent>,
    pub notifications: Vec<NewNotification>,
}

/// How far rule evaluation has got in the event log, stored with the alarm changes it
/// caused.
///
/// Two positions are kept. `applied` moves with every commit of alarm changes: every
/// change caused by events up to it is stored. `resume` moves every few seconds, with the
/// evaluators' state: a restarted engine reads again from there, replays the events up to
/// `applied` into its evaluators without acting on what they signal (those alarm changes
/// are stored already), and evaluates from `applied` on as usual. So no committed reading
/// is evaluated never or acted on twice, and an alarm's commit does not carry the rule
/// state of its patient.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationCheckpoint {
    pub consumer: String,
    pub applied: EventCursor,
    pub resume: Option<ResumePoint>,
    pub saved: DateTime<Utc>,
}

/// Where a restarted rule evaluation resumes reading, and the state of each evaluator
/// that changed since the last resume point, as of there.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumePoint {
    pub cursor: EventCursor,
    /// Serialised by the alerting crate.
    pub monitors: Vec<(PatientId, Value)>,
}

/// The name under which a consumer's `applied` position is stored beside its resume
/// cursor (which [`crate::EventLog::checkpoint`] reads under the consumer's own name).
pub fn applied_marker(consumer: &str) -> String {
    format!("{consumer}.applied")
}

#[derive(Debug, Clone, Default)]
pub struct AlarmQuery {
    /// Only these patients; empty matches nothing.
    pub patients: Vec<PatientId>,
    /// Only alarms in these states (`open`, `acknowledged`, `snoozed`, `resolved`);
    /// empty for all.
    pub states: Vec<String>,
    pub raised_from: Option<DateTime<Utc>>,
    pub raised_to: Option<DateTime<Utc>>,
    pub limit: u32,
}

#[async_trait]
pub trait AlarmStore: Send + Sync {
    /// Appends a version with its audit entry; `Conflict` when the patient already has
    /// this version number.
    async fn append_care_plan_version(
        &self,
        record: CarePlanVersionRecord,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;
    /// Every version of the patient's plan, oldest first.
    async fn care_plan_versions(
        &self,
        patient: PatientId,
    ) -> Result<Vec<CarePlanVersionRecord>, StoreError>;
    /// The newest version of every patient's plan.
    async fn current_care_plans(&self) -> Result<Vec<CarePlanVersionRecord>, StoreError>;

    /// The evaluators' state as last checkpointed, per patient.
    async fn monitor_states(&self) -> Result<Vec<(PatientId, Value)>, StoreError>;
    /// Stores alarm states with their events and notifications, the evaluation
    /// progress when given, and the audit entries of the people whose actions made the
    /// changes, in one durable commit. `Conflict` for a second unresolved alarm of one
    /// rule for one patient.
    async fn save_alarm_changes(
        &self,
        changes: Vec<AlarmChange>,
        checkpoint: Option<EvaluationCheckpoint>,
        audit: Vec<AuditEvent>,
    ) -> Result<(), StoreError>;
    async fn alarm_by_public_id(&self, public_id: &str) -> Result<Option<AlarmRecord>, StoreError>;
    /// Every alarm not resolved, oldest first.
    async fn unresolved_alarms(&self) -> Result<Vec<AlarmRecord>, StoreError>;
    /// Alarms of the given patients, newest first.
    async fn alarms(&self, query: AlarmQuery) -> Result<Vec<AlarmRecord>, StoreError>;
    /// The history of one alarm, oldest first.
    async fn alarm_events(&self, public_id: &str) -> Result<Vec<AlarmEventRecord>, StoreError>;

    /// A care team's escalation policy, replacing the one it had.
    async fn set_escalation_policy(
        &self,
        team: CareTeamId,
        policy: EscalationPolicy,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;
    async fn escalation_policies(&self) -> Result<Vec<(CareTeamId, EscalationPolicy)>, StoreError>;
}

/// Why a change that would turn a resolved alarm back into an unresolved one is refused:
/// a new episode needs an alarm of its own (its id came from a clock behind the one that
/// raised the first).
pub(crate) fn reopened(alarm: &Alarm) -> StoreError {
    StoreError::Conflict {
        what: format!(
            "alarm {} was resolved; an unresolved alarm under its id",
            alarm.id
        ),
    }
}
