//! [`AlarmStore`] on SQLite. Care plans, alarms and policies are stored as the JSON of
//! the alerting crate's types, with the columns that queries need beside them; reading
//! one back decodes it into that type or reports it `Undecodable`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;
use wardline_alerting::{Alarm, EscalationPolicy, EscalationStatus};
use wardline_domain::{CareTeamId, PatientId, UserId};

use super::audit::append;
use super::events::save_checkpoint;
use super::rows::*;
use super::{SqliteStore, from_ms, to_ms, writer};
use crate::alarms::*;
use crate::audit::AuditEvent;
use crate::error::StoreError;

const VERSION_COLUMNS: &str = "p.id, v.version, v.effective_ms, u.id, v.author_label, v.reason, v.plan, v.old_rule, v.new_rule";
const VERSION_FROM: &str = "care_plan_version v JOIN patient p ON p.key = v.patient_key LEFT JOIN app_user u ON u.key = v.author_key";

fn version_from_row(row: &Row<'_>) -> Result<CarePlanVersionRecord, StoreError> {
    let patient: String = row.get(0)?;
    let author: Option<String> = row.get(3)?;
    let plan: String = row.get(6)?;
    let old_rule: Option<String> = row.get(7)?;
    let new_rule: Option<String> = row.get(8)?;
    Ok(CarePlanVersionRecord {
        patient_id: parse_uuid(&patient, "patient")?,
        version: count(row.get(1)?),
        effective: from_ms(row.get(2)?)?,
        author: author
            .map(|id| parse_uuid::<UserId>(&id, "user"))
            .transpose()?,
        author_label: row.get(4)?,
        reason: row.get(5)?,
        plan: from_json(&plan, "care plan")?,
        old_rule: old_rule.map(|t| from_json(&t, "rule")).transpose()?,
        new_rule: new_rule.map(|t| from_json(&t, "rule")).transpose()?,
    })
}

const ALARM_COLUMNS: &str = "a.public_id, a.updated_ms, a.next_deadline_ms, a.alarm";
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

fn alarm_from_row(row: &Row<'_>) -> Result<AlarmRecord, StoreError> {
    let text: String = row.get(3)?;
    let mut value: Value = from_json(&text, "alarm")?;
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
        // Alarms stored before the status was kept: only the next deadline is known.
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
        public_id: row.get(0)?,
        alarm,
        escalation,
        updated: from_ms(row.get(1)?)?,
    })
}

fn save_change(connection: &Connection, change: &AlarmChange) -> Result<(), StoreError> {
    let record = &change.alarm;
    let alarm = &record.alarm;
    let patient_key = key_of(
        connection,
        "patient",
        &alarm.condition.patient_id.to_string(),
        "patient",
    )?;
    let kind = match alarm.kind {
        wardline_alerting::AlarmKind::Physiological => "physiological",
        wardline_alerting::AlarmKind::Technical => "technical",
    };
    // A resolved alarm is final: nothing turns it back into an unresolved one.
    let written = connection
        .prepare_cached(
            "INSERT INTO alarm (public_id, alarm_id, patient_key, rule_id, priority, kind, state,
                raised_ms, updated_ms, next_deadline_ms, alarm)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (alarm_id) DO UPDATE SET
                state = excluded.state, priority = excluded.priority,
                updated_ms = excluded.updated_ms, next_deadline_ms = excluded.next_deadline_ms,
                alarm = excluded.alarm
             WHERE alarm.state <> 'resolved' OR excluded.state = 'resolved'",
        )?
        .execute(params![
            record.public_id,
            alarm.id.0,
            patient_key,
            alarm.rule_id.0,
            alarm.priority.as_str(),
            kind,
            alarm.state.name(),
            to_ms(alarm.raised_at),
            to_ms(record.updated),
            record.next_deadline().map(to_ms),
            alarm_json(record)?,
        ])
        .map_err(|error| {
            unique_violation(
                error,
                format!(
                    "an unresolved alarm of rule {} for this patient",
                    alarm.rule_id.0
                ),
            )
        })?;
    if written == 0 {
        return Err(crate::alarms::reopened(alarm));
    }
    let alarm_key: i64 = connection
        .prepare_cached("SELECT key FROM alarm WHERE alarm_id = ?1")?
        .query_row([&alarm.id.0], |row| row.get(0))?;
    for event in &change.events {
        let actor_key: Option<i64> = match event.actor {
            Some(user) => connection
                .prepare_cached("SELECT key FROM app_user WHERE id = ?1")?
                .query_row([user.to_string()], |row| row.get(0))
                .optional()?,
            None => None,
        };
        connection
            .prepare_cached(
                "INSERT INTO alarm_event (alarm_key, time_ms, event, actor_key, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                alarm_key,
                to_ms(event.time),
                event.event.as_str(),
                actor_key,
                event.detail.as_ref().map(to_json).transpose()?,
            ])?;
    }
    for notification in &change.notifications {
        let channel_key = key_of(
            connection,
            "notification_channel",
            &notification.channel_id,
            "notification channel",
        )?;
        connection
            .prepare_cached(
                "INSERT INTO notification (idempotency_key, channel_key, alarm_key, payload,
                    status, attempts, created_ms, next_attempt_ms, last_error)
                 SELECT ?1, ?2, ?3, ?4,
                        CASE WHEN removed_ms IS NULL THEN 'pending' ELSE 'cancelled' END,
                        0, ?5, ?6,
                        CASE WHEN removed_ms IS NULL THEN NULL ELSE 'channel removed' END
                 FROM notification_channel WHERE key = ?2
                 ON CONFLICT (idempotency_key) DO NOTHING",
            )?
            .execute(params![
                notification.idempotency_key,
                channel_key,
                alarm_key,
                to_json(&notification.payload)?,
                to_ms(record.updated),
                to_ms(notification.next_attempt),
            ])?;
    }
    Ok(())
}

fn save_monitor_states(
    connection: &Connection,
    states: &[(PatientId, Value)],
    saved_ms: i64,
) -> Result<(), StoreError> {
    let mut upsert = connection.prepare_cached(
        "INSERT INTO monitor_state (patient_key, saved_ms, state)
         SELECT key, ?2, ?3 FROM patient WHERE id = ?1
         ON CONFLICT (patient_key) DO UPDATE SET
            saved_ms = excluded.saved_ms, state = excluded.state",
    )?;
    for (patient, state) in states {
        upsert.execute(params![patient.to_string(), saved_ms, to_json(state)?])?;
    }
    Ok(())
}

#[async_trait]
impl AlarmStore for SqliteStore {
    async fn append_care_plan_version(
        &self,
        record: CarePlanVersionRecord,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        self.write(move |connection| {
            let patient_key = key_of(
                connection,
                "patient",
                &record.patient_id.to_string(),
                "patient",
            )?;
            let author_key: Option<i64> = match record.author {
                Some(user) => Some(key_of(connection, "app_user", &user.to_string(), "user")?),
                None => None,
            };
            connection
                .prepare_cached(
                    "INSERT INTO care_plan_version (patient_key, version, effective_ms, author_key,
                        author_label, reason, plan, old_rule, new_rule)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    patient_key,
                    i64::from(record.version),
                    to_ms(record.effective),
                    author_key,
                    record.author_label,
                    record.reason,
                    to_json(&record.plan)?,
                    record.old_rule.as_ref().map(to_json).transpose()?,
                    record.new_rule.as_ref().map(to_json).transpose()?,
                ])
                .map_err(|error| {
                    unique_violation(error, format!("care plan version {}", record.version))
                })?;
            append(connection, &[audit])
        })
        .await
    }

    async fn care_plan_versions(
        &self,
        patient: PatientId,
    ) -> Result<Vec<CarePlanVersionRecord>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM {VERSION_FROM} WHERE p.id = ?1 ORDER BY v.version"
            ))?;
            let rows =
                statement.query_map([patient.to_string()], |row| Ok(version_from_row(row)))?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn current_care_plans(&self) -> Result<Vec<CarePlanVersionRecord>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM {VERSION_FROM}
                 WHERE v.version = (SELECT max(version) FROM care_plan_version w
                                    WHERE w.patient_key = v.patient_key)"
            ))?;
            let rows = statement.query_map([], |row| Ok(version_from_row(row)))?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn monitor_states(&self) -> Result<Vec<(PatientId, Value)>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT p.id, m.state FROM monitor_state m JOIN patient p ON p.key = m.patient_key",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?;
            rows.map(|row| {
                let (patient, state) = row?;
                Ok((
                    parse_uuid(&patient, "patient")?,
                    from_json(&state, "monitor state")?,
                ))
            })
            .collect()
        })
        .await
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
        let announces_alarms = !changes.is_empty();
        let operation = move |connection: &writer::Writing<'_>| {
            for change in &changes {
                save_change(connection, change)?;
            }
            if let Some(checkpoint) = &checkpoint {
                let saved_ms = to_ms(checkpoint.saved);
                if let Some(resume) = &checkpoint.resume {
                    save_monitor_states(connection, &resume.monitors, saved_ms)?;
                    save_checkpoint(connection, &checkpoint.consumer, &resume.cursor, saved_ms)?;
                }
                save_checkpoint(
                    connection,
                    &applied_marker(&checkpoint.consumer),
                    &checkpoint.applied,
                    saved_ms,
                )?;
            }
            append(connection, &audit)
        };
        // A raised or resolved alarm is on its way to a care team: it does not queue
        // behind readings. (The engine awaits each of these writes before the next, so
        // its own writes keep their order.)
        if announces_alarms {
            self.write_urgent(operation).await
        } else {
            self.write(operation).await
        }
    }

    async fn alarm_by_public_id(&self, public_id: &str) -> Result<Option<AlarmRecord>, StoreError> {
        let public_id = public_id.to_owned();
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {ALARM_COLUMNS} FROM {ALARM_FROM} WHERE a.public_id = ?1"
                ))?
                .query_row([public_id], |row| Ok(alarm_from_row(row)))
                .optional()?
                .transpose()
        })
        .await
    }

    async fn unresolved_alarms(&self) -> Result<Vec<AlarmRecord>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {ALARM_COLUMNS} FROM {ALARM_FROM} WHERE a.state <> 'resolved' ORDER BY a.raised_ms"
            ))?;
            let rows = statement.query_map([], |row| Ok(alarm_from_row(row)))?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn alarms(&self, query: AlarmQuery) -> Result<Vec<AlarmRecord>, StoreError> {
        if query.patients.is_empty() {
            return Ok(Vec::new());
        }
        self.read(move |connection| {
            let patients: Vec<String> = query.patients.iter().map(ToString::to_string).collect();
            let patient_list = to_json(&patients)?;
            let state_list = to_json(&query.states)?;
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {ALARM_COLUMNS} FROM {ALARM_FROM}
                 WHERE p.id IN (SELECT value FROM json_each(?1))
                   AND (?2 = '[]' OR a.state IN (SELECT value FROM json_each(?2)))
                   AND (?3 IS NULL OR a.raised_ms >= ?3)
                   AND (?4 IS NULL OR a.raised_ms < ?4)
                 ORDER BY a.raised_ms DESC, a.key DESC LIMIT ?5"
            ))?;
            let rows = statement.query_map(
                params![
                    patient_list,
                    state_list,
                    query.raised_from.map(to_ms),
                    query.raised_to.map(to_ms),
                    i64::from(query.limit.max(1)),
                ],
                |row| Ok(alarm_from_row(row)),
            )?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn alarm_events(&self, public_id: &str) -> Result<Vec<AlarmEventRecord>, StoreError> {
        let public_id = public_id.to_owned();
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT e.key, a.public_id, e.time_ms, e.event, u.id, e.detail
                 FROM alarm_event e JOIN alarm a ON a.key = e.alarm_key
                 LEFT JOIN app_user u ON u.key = e.actor_key
                 WHERE a.public_id = ?1 ORDER BY e.key",
            )?;
            let mut rows = statement.query([public_id])?;
            let mut events = Vec::new();
            while let Some(row) = rows.next()? {
                let event: String = row.get(3)?;
                let actor: Option<String> = row.get(4)?;
                let detail: Option<String> = row.get(5)?;
                events.push(AlarmEventRecord {
                    sequence: row.get(0)?,
                    public_id: row.get(1)?,
                    time: from_ms(row.get(2)?)?,
                    event: AlarmEventKind::parse(&event)
                        .ok_or_else(|| StoreError::Corrupt(format!("alarm event {event:?}")))?,
                    actor: actor
                        .map(|id| parse_uuid::<UserId>(&id, "user"))
                        .transpose()?,
                    detail: detail.map(|t| from_json(&t, "alarm event")).transpose()?,
                });
            }
            Ok(events)
        })
        .await
    }

    async fn set_escalation_policy(
        &self,
        team: CareTeamId,
        policy: EscalationPolicy,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        self.write(move |connection| {
            let team_key = key_of(connection, "care_team", &team.to_string(), "care team")?;
            connection
                .prepare_cached(
                    "INSERT INTO escalation_policy (team_key, policy, updated_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (team_key) DO UPDATE SET
                        policy = excluded.policy, updated_ms = excluded.updated_ms",
                )?
                .execute(params![team_key, to_json(&policy)?, to_ms(at)])?;
            append(connection, &[audit])
        })
        .await
    }

    async fn escalation_policies(&self) -> Result<Vec<(CareTeamId, EscalationPolicy)>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT t.id, e.policy FROM escalation_policy e JOIN care_team t ON t.key = e.team_key",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?;
            rows.map(|row| {
                let (team, policy) = row?;
                Ok((
                    parse_uuid(&team, "care team")?,
                    from_json(&policy, "escalation policy")?,
                ))
            })
            .collect()
        })
        .await
    }
}
