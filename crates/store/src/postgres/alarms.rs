//! [`AlarmStore`] on PostgreSQL: not ported yet; every method says so.

// Placeholders until the port: remove with the last of them.
#![allow(unused_variables, unused_imports)]

use crate::*;

use super::PostgresStore;
use crate::alarms::AlarmStore;
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::events::EventCursor;
use crate::outbox::NewNotification;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wardline_alerting::{Alarm, CarePlan, EscalationPolicy, EscalationStatus, Rule};
use wardline_domain::{CareTeamId, PatientId, UserId};

#[async_trait]
impl AlarmStore for PostgresStore {
    async fn append_care_plan_version(
        &self,
        record: CarePlanVersionRecord,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unported("AlarmStore::append_care_plan_version"))
    }

    async fn care_plan_versions(
        &self,
        patient: PatientId,
    ) -> Result<Vec<CarePlanVersionRecord>, StoreError> {
        Err(StoreError::Unported("AlarmStore::care_plan_versions"))
    }

    async fn current_care_plans(&self) -> Result<Vec<CarePlanVersionRecord>, StoreError> {
        Err(StoreError::Unported("AlarmStore::current_care_plans"))
    }

    async fn monitor_states(&self) -> Result<Vec<(PatientId, Value)>, StoreError> {
        Err(StoreError::Unported("AlarmStore::monitor_states"))
    }

    async fn save_alarm_changes(
        &self,
        changes: Vec<AlarmChange>,
        checkpoint: Option<EvaluationCheckpoint>,
        audit: Vec<AuditEvent>,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unported("AlarmStore::save_alarm_changes"))
    }

    async fn alarm_by_public_id(&self, public_id: &str) -> Result<Option<AlarmRecord>, StoreError> {
        Err(StoreError::Unported("AlarmStore::alarm_by_public_id"))
    }

    async fn unresolved_alarms(&self) -> Result<Vec<AlarmRecord>, StoreError> {
        Err(StoreError::Unported("AlarmStore::unresolved_alarms"))
    }

    async fn alarms(&self, query: AlarmQuery) -> Result<Vec<AlarmRecord>, StoreError> {
        Err(StoreError::Unported("AlarmStore::alarms"))
    }

    async fn alarm_events(&self, public_id: &str) -> Result<Vec<AlarmEventRecord>, StoreError> {
        Err(StoreError::Unported("AlarmStore::alarm_events"))
    }

    async fn set_escalation_policy(
        &self,
        team: CareTeamId,
        policy: EscalationPolicy,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unported("AlarmStore::set_escalation_policy"))
    }

    async fn escalation_policies(&self) -> Result<Vec<(CareTeamId, EscalationPolicy)>, StoreError> {
        Err(StoreError::Unported("AlarmStore::escalation_policies"))
    }
}
