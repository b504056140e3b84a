//! [`AlarmStore`] on SQLite (schema version 4).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;
use wardline_domain::{CareTeamId, PatientId, UserId};

use super::{SqliteStore, from_ms, to_ms};
use crate::alarms::*;
use crate::error::StoreError;

fn parse_uuid<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} id {text:?} is not a UUID")))
}

fn json(text: &str, what: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt(format!("{what} is not JSON")))
}

fn text(value: &Value) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::Invalid(error.to_string()))
}

fn key(connection: &Connection, table: &str, id: &str, what: &str) -> Result<i64, StoreError> {
    connection
        .prepare_cached(&format!("SELECT key FROM {table} WHERE id = ?1"))?
        .query_row([id], |row| row.get(0))
        .optional()?
        .ok_or_else(|| StoreError::not_found(format!("{what} {id}")))
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(failure, _)
        if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

fn count(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

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
        plan: json(&plan, "care plan")?,
        old_rule: old_rule.map(|t| json(&t, "rule")).transpose()?,
        new_rule: new_rule.map(|t| json(&t, "rule")).transpose()?,
    })
}

const ALARM_COLUMNS: &str = "a.public_id, a.alarm_id, p.id, a.rule_id, a.priority, a.kind, a.state, a.raised_ms, a.updated_ms, a.next_deadline_ms, a.alarm";
const ALARM_FROM: &str = "alarm a JOIN patient p ON p.key = a.patient_key";

fn alarm_from_row(row: &Row<'_>) -> Result<AlarmRecord, StoreError> {
    let patient: String = row.get(2)?;
    let alarm: String = row.get(10)?;
    Ok(AlarmRecord {
        public_id: row.get(0)?,
        alarm_id: row.get(1)?,
        patient_id: parse_uuid(&patient, "patient")?,
        rule_id: row.get(3)?,
        priority: row.get(4)?,
        kind: row.get(5)?,
        state: row.get(6)?,
        raised: from_ms(row.get(7)?)?,
        updated: from_ms(row.get(8)?)?,
        next_deadline: row.get::<_, Option<i64>>(9)?.map(from_ms).transpose()?,
        alarm: json(&alarm, "alarm")?,
    })
}

const CHANNEL_COLUMNS: &str =
    "c.id, t.id, c.kind, c.target, c.sealed_secret, c.minimal, c.created_ms";
const CHANNEL_FROM: &str = "notification_channel c JOIN care_team t ON t.key = c.team_key";

fn channel_from_row(row: &Row<'_>, offset: usize) -> Result<NotificationChannel, StoreError> {
    let team: String = row.get(offset + 1)?;
    Ok(NotificationChannel {
        id: row.get(offset)?,
        team_id: parse_uuid::<CareTeamId>(&team, "care team")?,
        kind: row.get(offset + 2)?,
        target: row.get(offset + 3)?,
        sealed_secret: row.get(offset + 4)?,
        minimal: row.get(offset + 5)?,
        created: from_ms(row.get(offset + 6)?)?,
    })
}

const NOTIFICATION_COLUMNS: &str = "n.key, n.idempotency_key, a.public_id, p.id, n.payload, n.status, n.attempts, n.created_ms, n.next_attempt_ms, n.last_attempt_ms, n.delivered_ms, n.last_error, c.id, t.id, c.kind, c.target, c.sealed_secret, c.minimal, c.created_ms";
const NOTIFICATION_FROM: &str = "notification n
    JOIN alarm a ON a.key = n.alarm_key
    JOIN patient p ON p.key = a.patient_key
    JOIN notification_channel c ON c.key = n.channel_key
    JOIN care_team t ON t.key = c.team_key";

fn notification_from_row(row: &Row<'_>) -> Result<NotificationRecord, StoreError> {
    let patient: String = row.get(3)?;
    let payload: String = row.get(4)?;
    Ok(NotificationRecord {
        key: row.get(0)?,
        idempotency_key: row.get(1)?,
        alarm_public_id: row.get(2)?,
        patient_id: parse_uuid(&patient, "patient")?,
        payload: json(&payload, "notification")?,
        status: row.get(5)?,
        attempts: count(row.get(6)?),
        created: from_ms(row.get(7)?)?,
        next_attempt: from_ms(row.get(8)?)?,
        last_attempt: row.get::<_, Option<i64>>(9)?.map(from_ms).transpose()?,
        delivered: row.get::<_, Option<i64>>(10)?.map(from_ms).transpose()?,
        last_error: row.get(11)?,
        channel: channel_from_row(row, 12)?,
    })
}

fn save_change(connection: &Connection, change: &AlarmChange) -> Result<(), StoreError> {
    let alarm = &change.alarm;
    let patient_key = key(
        connection,
        "patient",
        &alarm.patient_id.to_string(),
        "patient",
    )?;
    let body = text(&alarm.alarm)?;
    connection
        .prepare_cached(
            "INSERT INTO alarm (public_id, alarm_id, patient_key, rule_id, priority, kind, state,
                raised_ms, updated_ms, next_deadline_ms, alarm)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (alarm_id) DO UPDATE SET
                state = excluded.state, priority = excluded.priority,
                updated_ms = excluded.updated_ms, next_deadline_ms = excluded.next_deadline_ms,
                alarm = excluded.alarm",
        )?
        .execute(params![
            alarm.public_id,
            alarm.alarm_id,
            patient_key,
            alarm.rule_id,
            alarm.priority,
            alarm.kind,
            alarm.state,
            to_ms(alarm.raised),
            to_ms(alarm.updated),
            alarm.next_deadline.map(to_ms),
            body,
        ])
        .map_err(|error| {
            if is_unique_violation(&error) {
                StoreError::Conflict {
                    what: format!(
                        "an unresolved alarm of rule {} for this patient",
                        alarm.rule_id
                    ),
                }
            } else {
                StoreError::Sqlite(error)
            }
        })?;
    let alarm_key: i64 = connection
        .prepare_cached("SELECT key FROM alarm WHERE alarm_id = ?1")?
        .query_row([&alarm.alarm_id], |row| row.get(0))?;
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
                event.event,
                actor_key,
                event.detail.as_ref().map(text).transpose()?,
            ])?;
    }
    for notification in &change.notifications {
        let channel_key = key(
            connection,
            "notification_channel",
            &notification.channel_id,
            "notification channel",
        )?;
        connection
            .prepare_cached(
                "INSERT INTO notification (idempotency_key, channel_key, alarm_key, payload,
                    status, attempts, created_ms, next_attempt_ms)
                 VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?6)
                 ON CONFLICT (idempotency_key) DO NOTHING",
            )?
            .execute(params![
                notification.idempotency_key,
                channel_key,
                alarm_key,
                text(&notification.payload)?,
                to_ms(alarm.updated),
                to_ms(notification.next_attempt),
            ])?;
    }
    Ok(())
}

#[async_trait]
impl AlarmStore for SqliteStore {
    async fn append_care_plan_version(
        &self,
        record: CarePlanVersionRecord,
    ) -> Result<(), StoreError> {
        self.write(move |connection| {
            let patient_key = key(
                connection,
                "patient",
                &record.patient_id.to_string(),
                "patient",
            )?;
            let author_key: Option<i64> = match record.author {
                Some(user) => Some(key(connection, "app_user", &user.to_string(), "user")?),
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
                    text(&record.plan)?,
                    record.old_rule.as_ref().map(text).transpose()?,
                    record.new_rule.as_ref().map(text).transpose()?,
                ])
                .map_err(|error| {
                    if is_unique_violation(&error) {
                        StoreError::Conflict {
                            what: format!("care plan version {}", record.version),
                        }
                    } else {
                        StoreError::Sqlite(error)
                    }
                })?;
            Ok(())
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
            let mut rows = statement.query([patient.to_string()])?;
            let mut versions = Vec::new();
            while let Some(row) = rows.next()? {
                versions.push(version_from_row(row)?);
            }
            Ok(versions)
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
            let mut rows = statement.query([])?;
            let mut versions = Vec::new();
            while let Some(row) = rows.next()? {
                versions.push(version_from_row(row)?);
            }
            Ok(versions)
        })
        .await
    }

    async fn save_monitor_states(
        &self,
        states: Vec<(PatientId, DateTime<Utc>, Value)>,
    ) -> Result<(), StoreError> {
        if states.is_empty() {
            return Ok(());
        }
        self.write(move |connection| {
            for (patient, at, state) in &states {
                connection
                    .prepare_cached(
                        "INSERT INTO monitor_state (patient_key, saved_ms, state)
                         SELECT key, ?2, ?3 FROM patient WHERE id = ?1
                         ON CONFLICT (patient_key) DO UPDATE SET
                            saved_ms = excluded.saved_ms, state = excluded.state",
                    )?
                    .execute(params![patient.to_string(), to_ms(*at), text(state)?])?;
            }
            Ok(())
        })
        .await
    }

    async fn monitor_states(&self) -> Result<Vec<(PatientId, Value)>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT p.id, m.state FROM monitor_state m JOIN patient p ON p.key = m.patient_key",
            )?;
            let mut rows = statement.query([])?;
            let mut states = Vec::new();
            while let Some(row) = rows.next()? {
                let patient: String = row.get(0)?;
                let state: String = row.get(1)?;
                states.push((
                    parse_uuid(&patient, "patient")?,
                    json(&state, "monitor state")?,
                ));
            }
            Ok(states)
        })
        .await
    }

    async fn save_alarm_changes(&self, changes: Vec<AlarmChange>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.write(move |connection| {
            for change in &changes {
                save_change(connection, change)?;
            }
            Ok(())
        })
        .await
    }

    async fn alarm_by_public_id(&self, public_id: &str) -> Result<Option<AlarmRecord>, StoreError> {
        let public_id = public_id.to_owned();
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {ALARM_COLUMNS} FROM {ALARM_FROM} WHERE a.public_id = ?1"
            ))?;
            let mut rows = statement.query([public_id])?;
            match rows.next()? {
                Some(row) => Ok(Some(alarm_from_row(row)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn unresolved_alarms(&self) -> Result<Vec<AlarmRecord>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {ALARM_COLUMNS} FROM {ALARM_FROM} WHERE a.state <> 'resolved' ORDER BY a.raised_ms"
            ))?;
            let mut rows = statement.query([])?;
            let mut alarms = Vec::new();
            while let Some(row) = rows.next()? {
                alarms.push(alarm_from_row(row)?);
            }
            Ok(alarms)
        })
        .await
    }

    async fn alarms(&self, query: AlarmQuery) -> Result<Vec<AlarmRecord>, StoreError> {
        if query.patients.is_empty() {
            return Ok(Vec::new());
        }
        self.read(move |connection| {
            let patients: Vec<String> = query.patients.iter().map(ToString::to_string).collect();
            let patient_list = serde_json::to_string(&patients)
                .map_err(|error| StoreError::Invalid(error.to_string()))?;
            let state_list = serde_json::to_string(&query.states)
                .map_err(|error| StoreError::Invalid(error.to_string()))?;
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {ALARM_COLUMNS} FROM {ALARM_FROM}
                 WHERE p.id IN (SELECT value FROM json_each(?1))
                   AND (?2 = '[]' OR a.state IN (SELECT value FROM json_each(?2)))
                   AND (?3 IS NULL OR a.raised_ms >= ?3)
                   AND (?4 IS NULL OR a.raised_ms < ?4)
                 ORDER BY a.raised_ms DESC LIMIT ?5"
            ))?;
            let mut rows = statement.query(params![
                patient_list,
                state_list,
                query.raised_from.map(to_ms),
                query.raised_to.map(to_ms),
                i64::from(query.limit.max(1)),
            ])?;
            let mut alarms = Vec::new();
            while let Some(row) = rows.next()? {
                alarms.push(alarm_from_row(row)?);
            }
            Ok(alarms)
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
                let actor: Option<String> = row.get(4)?;
                let detail: Option<String> = row.get(5)?;
                events.push(AlarmEventRecord {
                    sequence: row.get(0)?,
                    public_id: row.get(1)?,
                    time: from_ms(row.get(2)?)?,
                    event: row.get(3)?,
                    actor: actor
                        .map(|id| parse_uuid::<UserId>(&id, "user"))
                        .transpose()?,
                    detail: detail.map(|t| json(&t, "alarm event")).transpose()?,
                });
            }
            Ok(events)
        })
        .await
    }

    async fn care_teams_of_patient(
        &self,
        patient: PatientId,
    ) -> Result<Vec<CareTeamId>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT t.id FROM care_team_patient c
                 JOIN care_team t ON t.key = c.team_key
                 JOIN patient p ON p.key = c.patient_key
                 WHERE p.id = ?1 ORDER BY t.id",
            )?;
            let rows = statement.query_map([patient.to_string()], |row| row.get::<_, String>(0))?;
            rows.map(|id| parse_uuid(&id?, "care team")).collect()
        })
        .await
    }

    async fn set_escalation_policy(
        &self,
        team: CareTeamId,
        policy: Value,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write(move |connection| {
            let team_key = key(connection, "care_team", &team.to_string(), "care team")?;
            connection
                .prepare_cached(
                    "INSERT INTO escalation_policy (team_key, policy, updated_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (team_key) DO UPDATE SET
                        policy = excluded.policy, updated_ms = excluded.updated_ms",
                )?
                .execute(params![team_key, text(&policy)?, to_ms(at)])?;
            Ok(())
        })
        .await
    }

    async fn escalation_policies(&self) -> Result<Vec<(CareTeamId, Value)>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT t.id, e.policy FROM escalation_policy e JOIN care_team t ON t.key = e.team_key",
            )?;
            let mut rows = statement.query([])?;
            let mut policies = Vec::new();
            while let Some(row) = rows.next()? {
                let team: String = row.get(0)?;
                let policy: String = row.get(1)?;
                policies.push((
                    parse_uuid(&team, "care team")?,
                    json(&policy, "escalation policy")?,
                ));
            }
            Ok(policies)
        })
        .await
    }

    async fn create_notification_channel(
        &self,
        channel: NotificationChannel,
    ) -> Result<(), StoreError> {
        self.write(move |connection| {
            let team_key = key(
                connection,
                "care_team",
                &channel.team_id.to_string(),
                "care team",
            )?;
            connection
                .prepare_cached(
                    "INSERT INTO notification_channel (id, team_key, kind, target, sealed_secret,
                        minimal, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    channel.id,
                    team_key,
                    channel.kind,
                    channel.target,
                    channel.sealed_secret,
                    channel.minimal,
                    to_ms(channel.created),
                ])
                .map_err(|error| {
                    if is_unique_violation(&error) {
                        StoreError::Conflict {
                            what: format!("notification channel {}", channel.id),
                        }
                    } else {
                        StoreError::Sqlite(error)
                    }
                })?;
            Ok(())
        })
        .await
    }

    async fn remove_notification_channel(
        &self,
        team: CareTeamId,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |connection| {
            let changed = connection
                .prepare_cached(
                    "UPDATE notification_channel SET removed_ms = ?3
                     WHERE id = ?1 AND removed_ms IS NULL
                       AND team_key = (SELECT key FROM care_team WHERE id = ?2)",
                )?
                .execute(params![id, team.to_string(), to_ms(at)])?;
            Ok(changed > 0)
        })
        .await
    }

    async fn notification_channels(
        &self,
        team: Option<CareTeamId>,
    ) -> Result<Vec<NotificationChannel>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {CHANNEL_COLUMNS} FROM {CHANNEL_FROM}
                 WHERE c.removed_ms IS NULL AND (?1 IS NULL OR t.id = ?1) ORDER BY c.key"
            ))?;
            let mut rows = statement.query([team.map(|team| team.to_string())])?;
            let mut channels = Vec::new();
            while let Some(row) = rows.next()? {
                channels.push(channel_from_row(row, 0)?);
            }
            Ok(channels)
        })
        .await
    }

    async fn due_outbox(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM {NOTIFICATION_FROM}
                 WHERE n.status = 'pending' AND n.next_attempt_ms <= ?1
                 ORDER BY n.next_attempt_ms, n.key LIMIT ?2"
            ))?;
            let mut rows = statement.query(params![to_ms(now), i64::from(limit.max(1))])?;
            let mut due = Vec::new();
            while let Some(row) = rows.next()? {
                due.push(notification_from_row(row)?);
            }
            Ok(due)
        })
        .await
    }

    async fn next_outbox_attempt(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(move |connection| {
            let next: Option<i64> = connection
                .prepare_cached(
                    "SELECT min(next_attempt_ms) FROM notification WHERE status = 'pending'",
                )?
                .query_row([], |row| row.get(0))?;
            next.map(from_ms).transpose()
        })
        .await
    }

    async fn record_delivery(
        &self,
        key: i64,
        at: DateTime<Utc>,
        outcome: DeliveryOutcome,
    ) -> Result<(), StoreError> {
        self.write(move |connection| {
            let at = to_ms(at);
            let mut statement = connection.prepare_cached(
                "UPDATE notification SET status = ?2, attempts = attempts + 1,
                    last_attempt_ms = ?3, delivered_ms = ?4, next_attempt_ms = ?5, last_error = ?6
                 WHERE key = ?1 AND status = 'pending'",
            )?;
            match outcome {
                DeliveryOutcome::Delivered => statement.execute(params![
                    key,
                    "delivered",
                    at,
                    Some(at),
                    at,
                    None::<String>
                ])?,
                DeliveryOutcome::Retry {
                    next_attempt,
                    error,
                } => statement.execute(params![
                    key,
                    "pending",
                    at,
                    None::<i64>,
                    to_ms(next_attempt),
                    Some(error)
                ])?,
                DeliveryOutcome::Dead { error } => {
                    statement.execute(params![key, "dead", at, None::<i64>, at, Some(error)])?
                }
            };
            Ok(())
        })
        .await
    }

    async fn notifications(
        &self,
        query: NotificationQuery,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM {NOTIFICATION_FROM}
                 WHERE (?1 IS NULL OR a.public_id = ?1) AND (?2 IS NULL OR n.status = ?2)
                 ORDER BY n.key DESC LIMIT ?3"
            ))?;
            let mut rows = statement.query(params![
                query.alarm_public_id,
                query.status,
                i64::from(query.limit.max(1)),
            ])?;
            let mut found = Vec::new();
            while let Some(row) = rows.next()? {
                found.push(notification_from_row(row)?);
            }
            Ok(found)
        })
        .await
    }

    async fn retry_notification(&self, key: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.write(move |connection| {
            let changed = connection
                .prepare_cached(
                    "UPDATE notification SET status = 'pending', next_attempt_ms = ?2, created_ms = ?2
                     WHERE key = ?1 AND status = 'dead'",
                )?
                .execute(params![key, to_ms(at)])?;
            Ok(changed > 0)
        })
        .await
    }
}
