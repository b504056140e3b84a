//! [`AlarmStore`] on PostgreSQL. Care plans, alarms and policies are stored as the JSON
//! of the alerting crate's types, with the columns that queries need beside them, as on
//! SQLite; the rules SQLite kept by having one writer are kept here by the database's
//! constraints and row locks (see [`save_change`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;
use wardline_alerting::{Alarm, AlarmKind, EscalationPolicy, EscalationStatus};
use wardline_domain::{CareTeamId, PatientId, UserId};

use super::PostgresStore;
use super::audit::append;
use super::events::save_checkpoint;
use super::rows::{from_json, from_ms, key_of, to_json, to_ms, unique_violation, user_key};
use crate::alarms::{
    AlarmChange, AlarmEventKind, AlarmEventRecord, AlarmQuery, AlarmRecord, AlarmStore,
    CarePlanVersionRecord, EvaluationCheckpoint, applied_marker,
};
use crate::audit::AuditEvent;
use crate::error::StoreError;

type Transaction<'a> = deadpool_postgres::Transaction<'a>;

/// A stored count as the `u32` the types carry; a negative one reads as 0.
fn count(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

const VERSION_COLUMNS: &str = "p.id, v.version, v.effective_ms, u.id, v.author_label, v.reason, \
                               v.plan, v.old_rule, v.new_rule";
const VERSION_FROM: &str = "care_plan_version v JOIN patient p ON p.key = v.patient_key \
                            LEFT JOIN app_user u ON u.key = v.author_key";

fn version_from_row(row: &Row) -> Result<CarePlanVersionRecord, StoreError> {
    Ok(CarePlanVersionRecord {
        patient_id: PatientId(row.try_get(0)?),
        version: count(row.try_get(1)?),
        effective: from_ms(row.try_get(2)?)?,
        author: row.try_get::<_, Option<Uuid>>(3)?.map(UserId),
        author_label: row.try_get(4)?,
        reason: row.try_get(5)?,
        plan: from_json(row.try_get(6)?, "care plan")?,
        old_rule: row
            .try_get::<_, Option<&str>>(7)?
            .map(|text| from_json(text, "rule"))
            .transpose()?,
        new_rule: row
            .try_get::<_, Option<&str>>(8)?
            .map(|text| from_json(text, "rule"))
            .transpose()?,
    })
}

const ALARM_COLUMNS: &str = "a.public_id, a.updated_ms, a.alarm";
const ALARM_FROM: &str = "alarm a JOIN patient p ON p.key = a.patient_key";

/// The stored form: the alarm's JSON with its escalation status beside its own fields.
fn alarm_json(record: &AlarmRecord) -> Result<String, StoreError> {
    let mut value = serde_json::to_value(&record.alarm)
        .map_err(|error| StoreError::Invalid(error.to_string()))?;
    if let Value::Object(map) = &mut value {
        map.insert(
            "escalation_status".into(),
            serde_json::to_value(&record.escalation)
                .map_err(|error| StoreError::Invalid(error.to_string()))?,
        );
    }
    to_json(&value)
}

fn alarm_from_row(row: &Row) -> Result<AlarmRecord, StoreError> {
    let mut value: Value = from_json(row.try_get(2)?, "alarm")?;
    let escalation = match value
        .as_object_mut()
        .and_then(|map| map.remove("escalation_status"))
    {
        Some(status) => serde_json::from_value::<EscalationStatus>(status).map_err(|error| {
            StoreError::Undecodable {
                what: "alarm escalation status".into(),
                reason: error.to_string(),
            }
        })?,
        // An alarm written as SQLite's older versions wrote it, without its status: read
        // as SQLite reads it.
        None => EscalationStatus {
            levels: 0,
            rounds: 0,
            level: None,
            round: None,
            next: None,
        },
    };
    let alarm: Alarm = serde_json::from_value(value).map_err(|error| StoreError::Undecodable {
        what: "alarm".into(),
        reason: error.to_string(),
    })?;
    Ok(AlarmRecord {
        public_id: row.try_get(0)?,
        alarm,
        escalation,
        updated: from_ms(row.try_get(1)?)?,
    })
}

/// Stores one alarm's new state, its history events and its notifications.
///
/// The upsert holds the alarm's row lock until commit, so the changes of one alarm
/// commit one after the other and its events are numbered in that order. A second
/// unresolved alarm of one rule for one patient, written by whichever worker, meets the
/// partial unique index and is a `Conflict`.
async fn save_change(
    transaction: &Transaction<'_>,
    change: &AlarmChange,
) -> Result<(), StoreError> {
    let record = &change.alarm;
    let alarm = &record.alarm;
    let patient = alarm.condition.patient_id;
    let patient_key = key_of(
        transaction,
        "patient",
        &patient.0,
        &format!("patient {patient}"),
    )
    .await?;
    let kind = match alarm.kind {
        AlarmKind::Physiological => "physiological",
        AlarmKind::Technical => "technical",
    };
    let upsert = transaction
        .prepare_cached(
            "INSERT INTO alarm (public_id, alarm_id, patient_key, rule_id, priority, kind, state,
                raised_ms, updated_ms, next_deadline_ms, alarm)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (alarm_id) DO UPDATE SET
                state = excluded.state, priority = excluded.priority,
                updated_ms = excluded.updated_ms, next_deadline_ms = excluded.next_deadline_ms,
                alarm = excluded.alarm
             WHERE alarm.state <> 'resolved' OR excluded.state = 'resolved'
             RETURNING key",
        )
        .await?;
    // A resolved alarm is final: nothing turns it back into an unresolved one.
    let alarm_key: i64 = transaction
        .query_opt(
            &upsert,
            &[
                &record.public_id,
                &alarm.id.0,
                &patient_key,
                &alarm.rule_id.0,
                &alarm.priority.as_str(),
                &kind,
                &alarm.state.name(),
                &to_ms(alarm.raised_at),
                &to_ms(record.updated),
                &record.next_deadline().map(to_ms),
                &alarm_json(record)?,
            ],
        )
        .await
        .map_err(|error| {
            unique_violation(
                error,
                format!(
                    "an unresolved alarm of rule {} for this patient",
                    alarm.rule_id.0
                ),
            )
        })?
        .ok_or_else(|| crate::alarms::reopened(alarm))?
        .try_get(0)?;
    let insert_event = transaction
        .prepare_cached(
            "INSERT INTO alarm_event (alarm_key, time_ms, event, actor_key, detail)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .await?;
    for event in &change.events {
        let actor_key = match event.actor {
            Some(user) => user_key(transaction, user).await?,
            None => None,
        };
        transaction
            .execute(
                &insert_event,
                &[
                    &alarm_key,
                    &to_ms(event.time),
                    &event.event.as_str(),
                    &actor_key,
                    &event.detail.as_ref().map(to_json).transpose()?,
                ],
            )
            .await?;
    }
    // A channel's row is read under a share lock: a removal of the channel waits for this
    // commit and then cancels what it stored, or this waits for the removal and stores
    // the notification cancelled; never a pending delivery through a removed channel.
    let channel = transaction
        .prepare_cached(
            "SELECT key, removed_ms IS NOT NULL FROM notification_channel WHERE id = $1
             FOR SHARE",
        )
        .await?;
    let insert_notification = transaction
        .prepare_cached(
            "INSERT INTO notification (idempotency_key, channel_key, alarm_key, payload,
                status, attempts, created_ms, next_attempt_ms, last_error)
             VALUES ($1, $2, $3, $4,
                     CASE WHEN $5 THEN 'cancelled' ELSE 'pending' END,
                     0, $6, $7,
                     CASE WHEN $5 THEN 'channel removed' END)
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .await?;
    for notification in &change.notifications {
        let row = transaction
            .query_opt(&channel, &[&notification.channel_id])
            .await?
            .ok_or_else(|| {
                StoreError::not_found(format!("notification channel {}", notification.channel_id))
            })?;
        let channel_key: i64 = row.try_get(0)?;
        let removed: bool = row.try_get(1)?;
        transaction
            .execute(
                &insert_notification,
                &[
                    &notification.idempotency_key,
                    &channel_key,
                    &alarm_key,
                    &to_json(&notification.payload)?,
                    &removed,
                    &to_ms(record.updated),
                    &to_ms(notification.next_attempt),
                ],
            )
            .await?;
    }
    Ok(())
}

async fn save_monitor_states(
    transaction: &Transaction<'_>,
    states: &[(PatientId, Value)],
    saved_ms: i64,
) -> Result<(), StoreError> {
    let upsert = transaction
        .prepare_cached(
            "INSERT INTO monitor_state (patient_key, saved_ms, state)
             SELECT key, $2, $3 FROM patient WHERE id = $1
             ON CONFLICT (patient_key) DO UPDATE SET
                saved_ms = excluded.saved_ms, state = excluded.state",
        )
        .await?;
    for (patient, state) in states {
        transaction
            .execute(&upsert, &[&patient.0, &saved_ms, &to_json(state)?])
            .await?;
    }
    Ok(())
}

#[async_trait]
impl AlarmStore for PostgresStore {
    async fn append_care_plan_version(
        &self,
        record: CarePlanVersionRecord,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let patient = record.patient_id;
        let patient_key = key_of(
            &transaction,
            "patient",
            &patient.0,
            &format!("patient {patient}"),
        )
        .await?;
        let author_key = match record.author {
            Some(user) => {
                Some(key_of(&transaction, "app_user", &user.0, &format!("user {user}")).await?)
            }
            None => None,
        };
        // Two workers appending the same version meet the primary key: one is a Conflict.
        transaction
            .execute(
                "INSERT INTO care_plan_version (patient_key, version, effective_ms, author_key,
                    author_label, reason, plan, old_rule, new_rule)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &patient_key,
                    &i64::from(record.version),
                    &to_ms(record.effective),
                    &author_key,
                    &record.author_label,
                    &record.reason,
                    &to_json(&record.plan)?,
                    &record.old_rule.as_ref().map(to_json).transpose()?,
                    &record.new_rule.as_ref().map(to_json).transpose()?,
                ],
            )
            .await
            .map_err(|error| {
                unique_violation(error, format!("care plan version {}", record.version))
            })?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn care_plan_versions(
        &self,
        patient: PatientId,
    ) -> Result<Vec<CarePlanVersionRecord>, StoreError> {
        self.read_all(
            &format!(
                "SELECT {VERSION_COLUMNS} FROM {VERSION_FROM} WHERE p.id = $1 ORDER BY v.version"
            ),
            &[&patient.0],
            version_from_row,
        )
        .await
    }

    async fn current_care_plans(&self) -> Result<Vec<CarePlanVersionRecord>, StoreError> {
        self.read_all(
            &format!(
                "SELECT DISTINCT ON (v.patient_key) {VERSION_COLUMNS} FROM {VERSION_FROM}
                 ORDER BY v.patient_key, v.version DESC"
            ),
            &[],
            version_from_row,
        )
        .await
    }

    async fn monitor_states(&self) -> Result<Vec<(PatientId, Value)>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT p.id, m.state FROM monitor_state m JOIN patient p ON p.key = m.patient_key",
            )
            .await?;
        client
            .query(&statement, &[])
            .await?
            .iter()
            .map(|row| {
                Ok((
                    PatientId(row.try_get(0)?),
                    from_json(row.try_get(1)?, "monitor state")?,
                ))
            })
            .collect()
    }

    async fn save_alarm_changes(
        &self,
        changes: Vec<AlarmChange>,
        checkpoint: Option<EvaluationCheckpoint>,
        audit: Vec<AuditEvent>,
    ) -> Result<(), StoreError> {
        if changes.is_empty() && checkpoint.is_none() && audit.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        self.fence.check(&transaction).await?;
        // The alarms already stored are locked in one order first, so that two commits
        // changing the same alarms in different orders wait for each other instead of
        // deadlocking; the changes are then applied in the order given.
        if changes.len() > 1 {
            let alarm_ids: Vec<&str> = changes
                .iter()
                .map(|change| change.alarm.alarm.id.0.as_str())
                .collect();
            let lock = transaction
                .prepare_cached(
                    "SELECT key FROM alarm WHERE alarm_id = ANY($1) ORDER BY alarm_id FOR UPDATE",
                )
                .await?;
            transaction.query(&lock, &[&alarm_ids]).await?;
        }
        for change in &changes {
            save_change(&transaction, change).await?;
        }
        if let Some(checkpoint) = &checkpoint {
            let saved_ms = to_ms(checkpoint.saved);
            if let Some(resume) = &checkpoint.resume {
                save_monitor_states(&transaction, &resume.monitors, saved_ms).await?;
                save_checkpoint(&transaction, &checkpoint.consumer, &resume.cursor, saved_ms)
                    .await?;
            }
            save_checkpoint(
                &transaction,
                &applied_marker(&checkpoint.consumer),
                &checkpoint.applied,
                saved_ms,
            )
            .await?;
        }
        append(&transaction, &self.audit_key, &audit).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn alarm_by_public_id(&self, public_id: &str) -> Result<Option<AlarmRecord>, StoreError> {
        self.read_optional(
            &format!("SELECT {ALARM_COLUMNS} FROM {ALARM_FROM} WHERE a.public_id = $1"),
            &[&public_id],
            alarm_from_row,
        )
        .await
    }

    async fn unresolved_alarms(&self) -> Result<Vec<AlarmRecord>, StoreError> {
        self.read_all(
            &format!(
                "SELECT {ALARM_COLUMNS} FROM {ALARM_FROM} WHERE a.state <> 'resolved'
                 ORDER BY a.raised_ms, a.key"
            ),
            &[],
            alarm_from_row,
        )
        .await
    }

    async fn alarms(&self, query: AlarmQuery) -> Result<Vec<AlarmRecord>, StoreError> {
        if query.patients.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {ALARM_COLUMNS} FROM {ALARM_FROM}
                 WHERE p.id = ANY($1)
                   AND (cardinality($2::text[]) = 0 OR a.state = ANY($2))
                   AND ($3::bigint IS NULL OR a.raised_ms >= $3)
                   AND ($4::bigint IS NULL OR a.raised_ms < $4)
                 ORDER BY a.raised_ms DESC, a.key DESC LIMIT $5"
            ))
            .await?;
        let patients: Vec<Uuid> = query.patients.iter().map(|patient| patient.0).collect();
        client
            .query(
                &statement,
                &[
                    &patients,
                    &query.states,
                    &query.raised_from.map(to_ms),
                    &query.raised_to.map(to_ms),
                    &i64::from(query.limit.max(1)),
                ],
            )
            .await?
            .iter()
            .map(alarm_from_row)
            .collect()
    }

    async fn alarm_events(&self, public_id: &str) -> Result<Vec<AlarmEventRecord>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT e.key, a.public_id, e.time_ms, e.event, u.id, e.detail
                 FROM alarm_event e JOIN alarm a ON a.key = e.alarm_key
                 LEFT JOIN app_user u ON u.key = e.actor_key
                 WHERE a.public_id = $1 ORDER BY e.key",
            )
            .await?;
        client
            .query(&statement, &[&public_id])
            .await?
            .iter()
            .map(|row| {
                let event: &str = row.try_get(3)?;
                Ok(AlarmEventRecord {
                    sequence: row.try_get(0)?,
                    public_id: row.try_get(1)?,
                    time: from_ms(row.try_get(2)?)?,
                    event: AlarmEventKind::parse(event)
                        .ok_or_else(|| StoreError::Corrupt(format!("alarm event {event:?}")))?,
                    actor: row.try_get::<_, Option<Uuid>>(4)?.map(UserId),
                    detail: row
                        .try_get::<_, Option<&str>>(5)?
                        .map(|text| from_json(text, "alarm event"))
                        .transpose()?,
                })
            })
            .collect()
    }

    async fn set_escalation_policy(
        &self,
        team: CareTeamId,
        policy: EscalationPolicy,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let team_key = key_of(
            &transaction,
            "care_team",
            &team.0,
            &format!("care team {team}"),
        )
        .await?;
        transaction
            .execute(
                "INSERT INTO escalation_policy (team_key, policy, updated_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (team_key) DO UPDATE SET
                    policy = excluded.policy, updated_ms = excluded.updated_ms",
                &[&team_key, &to_json(&policy)?, &to_ms(at)],
            )
            .await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn escalation_policies(&self) -> Result<Vec<(CareTeamId, EscalationPolicy)>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT t.id, e.policy FROM escalation_policy e
                 JOIN care_team t ON t.key = e.team_key",
            )
            .await?;
        client
            .query(&statement, &[])
            .await?
            .iter()
            .map(|row| {
                Ok((
                    CareTeamId(row.try_get(0)?),
                    from_json(row.try_get(1)?, "escalation policy")?,
                ))
            })
            .collect()
    }
}
