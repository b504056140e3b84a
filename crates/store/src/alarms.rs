//! Care plans, alarms and notifications (schema version 4). A supertrait of
//! [`crate::Store`], so every backend provides it and the alarm runtime and the API reach
//! it through the one store.
//!
//! The store does not know the alerting crate's types: care plans, alarms and escalation
//! policies are kept as their JSON, with the columns queries need beside them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use wardline_domain::{CareTeamId, PatientId, UserId};

use crate::error::StoreError;

/// One version of a patient's care plan and the change that made it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CarePlanVersionRecord {
    pub patient_id: PatientId,
    pub version: u32,
    pub effective: DateTime<Utc>,
    /// `None` for a change made from the command line.
    pub author: Option<UserId>,
    pub author_label: String,
    pub reason: String,
    /// The whole plan of this version.
    pub plan: Value,
    pub old_rule: Option<Value>,
    pub new_rule: Option<Value>,
}

/// An alarm's current state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmRecord {
    /// URL-safe handle used by the API.
    pub public_id: String,
    /// The alerting crate's deterministic id (patient/rule/raised-ms).
    pub alarm_id: String,
    pub patient_id: PatientId,
    pub rule_id: String,
    pub priority: String,
    pub kind: String,
    pub state: String,
    pub raised: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// When the next escalation step is due, for an alarm that escalates.
    pub next_deadline: Option<DateTime<Utc>>,
    /// The alarm itself, as JSON.
    pub alarm: Value,
}

/// Something that happened to an alarm, to append to its history.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlarmEvent {
    pub time: DateTime<Utc>,
    /// `opened`, `reoccurred`, `acknowledged`, `snoozed`, `snooze_expired`,
    /// `condition_cleared`, `resolved`, `notified`.
    pub event: String,
    pub actor: Option<UserId>,
    pub detail: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmEventRecord {
    pub sequence: i64,
    pub public_id: String,
    pub time: DateTime<Utc>,
    pub event: String,
    pub actor: Option<UserId>,
    pub detail: Option<Value>,
}

/// A notification to deliver once the change holding it is committed.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    /// Unique; sent to receivers so that they can drop a repeated delivery.
    pub idempotency_key: String,
    pub channel_id: String,
    pub payload: Value,
    pub next_attempt: DateTime<Utc>,
}

/// An alarm's new state with its history events and notifications, stored together.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmChange {
    pub alarm: AlarmRecord,
    pub events: Vec<NewAlarmEvent>,
    pub notifications: Vec<NewNotification>,
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationChannel {
    pub id: String,
    pub team_id: CareTeamId,
    /// `webhook` or `email`.
    pub kind: String,
    /// The webhook URL, or comma-separated e-mail addresses.
    pub target: String,
    /// A webhook's signing secret, sealed by the caller; never serialised.
    #[serde(skip)]
    pub sealed_secret: Option<Vec<u8>>,
    /// Send only "alarm X for patient Y, open Wardline", no values.
    pub minimal: bool,
    pub created: DateTime<Utc>,
}

/// One entry of the outbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationRecord {
    pub key: i64,
    pub idempotency_key: String,
    pub channel: NotificationChannel,
    pub alarm_public_id: String,
    pub patient_id: PatientId,
    pub payload: Value,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    pub attempts: u32,
    pub created: DateTime<Utc>,
    pub next_attempt: DateTime<Utc>,
    pub last_attempt: Option<DateTime<Utc>>,
    pub delivered: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    Delivered,
    Retry {
        next_attempt: DateTime<Utc>,
        error: String,
    },
    /// Given up (the retry horizon passed): a dead letter for an admin to look at.
    Dead {
        error: String,
    },
}

#[derive(Debug, Clone, Default)]
pub struct NotificationQuery {
    pub alarm_public_id: Option<String>,
    pub status: Option<String>,
    pub limit: u32,
}

#[async_trait]
pub trait AlarmStore: Send + Sync {
    // Care plans.
    /// Appends a version; `Conflict` when the patient already has this version number.
    async fn append_care_plan_version(
        &self,
        record: CarePlanVersionRecord,
    ) -> Result<(), StoreError>;
    /// Every version of the patient's plan, oldest first.
    async fn care_plan_versions(
        &self,
        patient: PatientId,
    ) -> Result<Vec<CarePlanVersionRecord>, StoreError>;
    /// The newest version of every patient's plan.
    async fn current_care_plans(&self) -> Result<Vec<CarePlanVersionRecord>, StoreError>;

    // Evaluator state.
    async fn save_monitor_states(
        &self,
        states: Vec<(PatientId, DateTime<Utc>, Value)>,
    ) -> Result<(), StoreError>;
    async fn monitor_states(&self) -> Result<Vec<(PatientId, Value)>, StoreError>;

    // Alarms.
    /// Stores alarm states with their events and notifications in one durable commit.
    async fn save_alarm_changes(&self, changes: Vec<AlarmChange>) -> Result<(), StoreError>;
    async fn alarm_by_public_id(&self, public_id: &str) -> Result<Option<AlarmRecord>, StoreError>;
    /// Every alarm not resolved, oldest first.
    async fn unresolved_alarms(&self) -> Result<Vec<AlarmRecord>, StoreError>;
    /// Alarms of the given patients, newest first.
    async fn alarms(&self, query: AlarmQuery) -> Result<Vec<AlarmRecord>, StoreError>;
    /// The history of one alarm, oldest first.
    async fn alarm_events(&self, public_id: &str) -> Result<Vec<AlarmEventRecord>, StoreError>;
    /// The care teams looking after a patient.
    async fn care_teams_of_patient(
        &self,
        patient: PatientId,
    ) -> Result<Vec<CareTeamId>, StoreError>;

    // Escalation and channels, per care team.
    async fn set_escalation_policy(
        &self,
        team: CareTeamId,
        policy: Value,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn escalation_policies(&self) -> Result<Vec<(CareTeamId, Value)>, StoreError>;
    async fn create_notification_channel(
        &self,
        channel: NotificationChannel,
    ) -> Result<(), StoreError>;
    /// Stops using a channel (its past deliveries stay); `false` if there was none.
    async fn remove_notification_channel(
        &self,
        team: CareTeamId,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Channels in use, of one team or of all.
    async fn notification_channels(
        &self,
        team: Option<CareTeamId>,
    ) -> Result<Vec<NotificationChannel>, StoreError>;

    // The outbox.
    /// Pending notifications due at `now`, oldest first.
    async fn due_outbox(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>, StoreError>;
    /// When the next pending notification is due.
    async fn next_outbox_attempt(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    async fn record_delivery(
        &self,
        key: i64,
        at: DateTime<Utc>,
        outcome: DeliveryOutcome,
    ) -> Result<(), StoreError>;
    /// Notifications, newest first.
    async fn notifications(
        &self,
        query: NotificationQuery,
    ) -> Result<Vec<NotificationRecord>, StoreError>;
    /// Puts a dead letter back in the outbox, due at `at`; `false` if it is not dead.
    async fn retry_notification(&self, key: i64, at: DateTime<Utc>) -> Result<bool, StoreError>;
}
