//! [`VisitStore`] on PostgreSQL.
//!
//! SQLite's single writer runs one change at a time, so a change that reads a visit's
//! status, note or room and then writes cannot be overtaken there. Here several workers
//! write at once, so each such change first locks the visit's row until it commits
//! (`FOR NO KEY UPDATE`): changes of one visit then run one after the other, while rows
//! that only refer to the visit (an order written in it) are not held up. Chat messages
//! are added under the same lock, so a visit's messages draw their keys (their `seq`)
//! and become visible in order, and a reader asking for those after the last it saw
//! never passes over one.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;
use wardline_domain::{ObservationCode, PatientId, Role, UserId};

use super::PostgresStore;
use super::audit::{append, append_if_changed};
use super::rows::*;
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::visits::*;

const VISIT_COLUMNS: &str = "v.key, v.id, p.id, p.display_name, s.id, v.created_ms, v.start_ms,
     v.duration_minutes, v.reason, v.status, v.status_changed_ms, v.status_reason, v.reminded_ms";
const VISIT_FROM: &str =
    "visit v JOIN patient p ON p.key = v.patient_key JOIN app_user s ON s.key = v.scheduled_by";

fn count(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

fn visit_from_row(
    row: &Row,
    attendees: &mut HashMap<i64, Vec<VisitAttendee>>,
    care_plan_versions: &mut HashMap<i64, Vec<u32>>,
) -> Result<Visit, StoreError> {
    let key: i64 = row.try_get(0)?;
    let status: &str = row.try_get(9)?;
    Ok(Visit {
        id: row.try_get(1)?,
        patient_id: PatientId(row.try_get(2)?),
        patient_name: row.try_get(3)?,
        scheduled_by: UserId(row.try_get(4)?),
        created: from_ms(row.try_get(5)?)?,
        start: from_ms(row.try_get(6)?)?,
        duration_minutes: count(row.try_get(7)?),
        reason: row.try_get(8)?,
        attendees: attendees.remove(&key).unwrap_or_default(),
        status: VisitStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("visit status {status:?}")))?,
        status_changed: row
            .try_get::<_, Option<i64>>(10)?
            .map(from_ms)
            .transpose()?,
        status_reason: row.try_get(11)?,
        care_plan_versions: care_plan_versions.remove(&key).unwrap_or_default(),
        reminded: row
            .try_get::<_, Option<i64>>(12)?
            .map(from_ms)
            .transpose()?,
    })
}

/// The visits matching `condition` (which may end in an `ORDER BY` and `LIMIT`), with
/// their attendees and care plan versions read for all of them at once.
async fn visits_where(
    client: &impl GenericClient,
    condition: &str,
    parameters: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Visit>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {VISIT_COLUMNS} FROM {VISIT_FROM} WHERE {condition}"
        ))
        .await?;
    let rows = client.query(&statement, parameters).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let keys = rows
        .iter()
        .map(|row| row.try_get::<_, i64>(0))
        .collect::<Result<Vec<_>, _>>()?;
    // By name in byte order, as SQLite's BINARY collation sorts them.
    let statement = client
        .prepare_cached(
            r#"SELECT a.visit_key, u.id, u.display_name, u.role FROM visit_attendee a
               JOIN app_user u ON u.key = a.user_key WHERE a.visit_key = ANY($1)
               ORDER BY a.visit_key, u.display_name COLLATE "C", u.key"#,
        )
        .await?;
    let mut attendees: HashMap<i64, Vec<VisitAttendee>> = HashMap::new();
    for row in client.query(&statement, &[&keys]).await? {
        let role: &str = row.try_get(3)?;
        attendees
            .entry(row.try_get(0)?)
            .or_default()
            .push(VisitAttendee {
                user_id: UserId(row.try_get(1)?),
                display_name: row.try_get(2)?,
                role: role
                    .parse::<Role>()
                    .map_err(|error| StoreError::Corrupt(error.to_string()))?,
            });
    }
    let statement = client
        .prepare_cached(
            "SELECT visit_key, version FROM visit_care_plan WHERE visit_key = ANY($1)
             ORDER BY visit_key, version",
        )
        .await?;
    let mut care_plan_versions: HashMap<i64, Vec<u32>> = HashMap::new();
    for row in client.query(&statement, &[&keys]).await? {
        care_plan_versions
            .entry(row.try_get(0)?)
            .or_default()
            .push(count(row.try_get(1)?));
    }
    rows.iter()
        .map(|row| visit_from_row(row, &mut attendees, &mut care_plan_versions))
        .collect()
}

async fn visit_by_id(client: &impl GenericClient, id: Uuid) -> Result<Option<Visit>, StoreError> {
    Ok(visits_where(client, "v.id = $1", &[&id])
        .await?
        .into_iter()
        .next())
}

async fn existing_visit(client: &impl GenericClient, id: Uuid) -> Result<Visit, StoreError> {
    visit_by_id(client, id)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("visit {id}")))
}

/// A visit's row, locked until the transaction ends (see the module's documentation).
struct LockedVisit {
    key: i64,
    status: VisitStatus,
    patient_id: PatientId,
    patient_key: i64,
}

async fn lock_visit(
    transaction: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
) -> Result<Option<LockedVisit>, StoreError> {
    let statement = transaction
        .prepare_cached(
            "SELECT v.key, v.status, p.id, p.key FROM visit v JOIN patient p ON p.key = v.patient_key
             WHERE v.id = $1 FOR NO KEY UPDATE OF v",
        )
        .await?;
    let Some(row) = transaction.query_opt(&statement, &[&id]).await? else {
        return Ok(None);
    };
    let status: &str = row.try_get(1)?;
    Ok(Some(LockedVisit {
        key: row.try_get(0)?,
        status: VisitStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("visit status {status:?}")))?,
        patient_id: PatientId(row.try_get(2)?),
        patient_key: row.try_get(3)?,
    }))
}

async fn lock_existing_visit(
    transaction: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
) -> Result<LockedVisit, StoreError> {
    lock_visit(transaction, id)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("visit {id}")))
}

async fn visit_key(client: &impl GenericClient, id: Uuid) -> Result<i64, StoreError> {
    key_of(client, "visit", &id, &format!("visit {id}")).await
}

async fn required_user_key(client: &impl GenericClient, user: UserId) -> Result<i64, StoreError> {
    user_key(client, user)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("user {user}")))
}

async fn required_patient_key(
    client: &impl GenericClient,
    patient: PatientId,
) -> Result<i64, StoreError> {
    patient_key(client, patient)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("patient {patient}")))
}

async fn presence_of(
    client: &impl GenericClient,
    key: i64,
) -> Result<Vec<PresenceSpan>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT u.id, r.joined_ms, r.left_ms FROM visit_presence r
             JOIN app_user u ON u.key = r.user_key WHERE r.visit_key = $1 ORDER BY r.joined_ms, r.key",
        )
        .await?;
    client
        .query(&statement, &[&key])
        .await?
        .iter()
        .map(|row| {
            Ok(PresenceSpan {
                user_id: UserId(row.try_get(0)?),
                joined: from_ms(row.try_get(1)?)?,
                left: row.try_get::<_, Option<i64>>(2)?.map(from_ms).transpose()?,
            })
        })
        .collect()
}

async fn note_of(client: &impl GenericClient, id: Uuid) -> Result<Option<VisitNote>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT n.visit_key, u.id, u.display_name, n.reason, n.findings, n.plan, n.updated_ms,
                    n.signed_ms
             FROM visit_note n JOIN visit v ON v.key = n.visit_key
             JOIN app_user u ON u.key = n.author_key
             WHERE v.id = $1",
        )
        .await?;
    let Some(row) = client.query_opt(&statement, &[&id]).await? else {
        return Ok(None);
    };
    let key: i64 = row.try_get(0)?;
    let statement = client
        .prepare_cached(
            "SELECT u.id, u.display_name, a.written_ms, a.text FROM visit_addendum a
             JOIN app_user u ON u.key = a.author_key WHERE a.visit_key = $1 ORDER BY a.key",
        )
        .await?;
    let addenda = client
        .query(&statement, &[&key])
        .await?
        .iter()
        .map(|row| {
            Ok(VisitAddendum {
                author: UserId(row.try_get(0)?),
                author_name: row.try_get(1)?,
                written: from_ms(row.try_get(2)?)?,
                text: row.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(VisitNote {
        visit_id: id,
        text: VisitNoteText {
            reason: row.try_get(3)?,
            findings: row.try_get(4)?,
            plan: row.try_get(5)?,
        },
        author: UserId(row.try_get(1)?),
        author_name: row.try_get(2)?,
        updated: from_ms(row.try_get(6)?)?,
        signed: row.try_get::<_, Option<i64>>(7)?.map(from_ms).transpose()?,
        addenda,
    }))
}

async fn existing_note(client: &impl GenericClient, id: Uuid) -> Result<VisitNote, StoreError> {
    note_of(client, id)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("note of visit {id}")))
}

const MESSAGE_COLUMNS: &str = "m.key, u.id, u.display_name, m.sent_ms, m.text";
const MESSAGE_FROM: &str = "visit_message m JOIN app_user u ON u.key = m.author_key";

fn message_from_row(row: &Row) -> Result<VisitMessage, StoreError> {
    Ok(VisitMessage {
        seq: row.try_get(0)?,
        author: UserId(row.try_get(1)?),
        author_name: row.try_get(2)?,
        sent: from_ms(row.try_get(3)?)?,
        text: row.try_get(4)?,
    })
}

const ORDER_COLUMNS: &str = "o.id, p.id, v.id, u.id, u.display_name, o.created_ms, o.medication,
     o.dose, o.frequency, o.start_date, o.stop_date, o.instructions";
const ORDER_FROM: &str = "treatment_order o JOIN patient p ON p.key = o.patient_key
     LEFT JOIN visit v ON v.key = o.visit_key JOIN app_user u ON u.key = o.ordered_by";

fn date(text: &str) -> Result<NaiveDate, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("date {text:?}")))
}

fn order_from_row(row: &Row) -> Result<TreatmentOrder, StoreError> {
    Ok(TreatmentOrder {
        id: row.try_get(0)?,
        patient_id: PatientId(row.try_get(1)?),
        visit_id: row.try_get(2)?,
        ordered_by: UserId(row.try_get(3)?),
        ordered_by_name: row.try_get(4)?,
        created: from_ms(row.try_get(5)?)?,
        medication: row.try_get(6)?,
        dose: row.try_get(7)?,
        frequency: row.try_get(8)?,
        start: date(row.try_get(9)?)?,
        stop: row.try_get::<_, Option<&str>>(10)?.map(date).transpose()?,
        instructions: row.try_get(11)?,
    })
}

const TIME_COLUMNS: &str =
    "t.id, p.id, u.id, u.display_name, t.started_ms, t.seconds, t.source, v.id, t.reason";
const TIME_FROM: &str = "monitoring_time t JOIN patient p ON p.key = t.patient_key
     JOIN app_user u ON u.key = t.user_key LEFT JOIN visit v ON v.key = t.visit_key";

fn time_from_row(row: &Row) -> Result<MonitoringTime, StoreError> {
    let source: &str = row.try_get(6)?;
    Ok(MonitoringTime {
        id: row.try_get(0)?,
        patient_id: PatientId(row.try_get(1)?),
        user_id: UserId(row.try_get(2)?),
        user_name: row.try_get(3)?,
        started: from_ms(row.try_get(4)?)?,
        seconds: row.try_get(5)?,
        source: MonitoringSource::parse(source)
            .ok_or_else(|| StoreError::Corrupt(format!("monitoring source {source:?}")))?,
        visit_id: row.try_get(7)?,
        reason: row.try_get(8)?,
    })
}

/// Monitoring time whose patient, account and visit were looked up by the caller.
async fn insert_time(
    transaction: &deadpool_postgres::Transaction<'_>,
    time: &NewMonitoringTime,
    patient_key: i64,
    user_key: i64,
    visit_key: Option<i64>,
) -> Result<(), StoreError> {
    let insert = transaction
        .prepare_cached(
            "INSERT INTO monitoring_time (id, patient_key, user_key, started_ms, seconds, source,
                                          visit_key, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?;
    transaction
        .execute(
            &insert,
            &[
                &time.id,
                &patient_key,
                &user_key,
                &to_ms(time.started),
                &time.seconds,
                &time.source.as_str(),
                &visit_key,
                &time.reason,
            ],
        )
        .await
        .map_err(|error| unique_violation(error, format!("monitoring time {}", time.id)))?;
    Ok(())
}

fn not_scheduled(id: Uuid, status: VisitStatus) -> StoreError {
    StoreError::Conflict {
        what: format!("visit {id} is {}", status.as_str()),
    }
}

#[async_trait]
impl VisitStore for PostgresStore {
    async fn create_visit(&self, visit: NewVisit, audit: AuditEvent) -> Result<Visit, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let patient = required_patient_key(&transaction, visit.patient_id).await?;
        let scheduler = required_user_key(&transaction, visit.scheduled_by).await?;
        let insert = transaction
            .prepare_cached(
                "INSERT INTO visit (id, patient_key, scheduled_by, created_ms, start_ms,
                                    duration_minutes, reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING key",
            )
            .await?;
        let key: i64 = transaction
            .query_one(
                &insert,
                &[
                    &visit.id,
                    &patient,
                    &scheduler,
                    &to_ms(visit.created),
                    &to_ms(visit.start),
                    &i64::from(visit.duration_minutes),
                    &visit.reason,
                ],
            )
            .await
            .map_err(|error| unique_violation(error, format!("visit {}", visit.id)))?
            .try_get(0)?;
        let attend = transaction
            .prepare_cached(
                "INSERT INTO visit_attendee (visit_key, user_key) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        for attendee in &visit.attendees {
            let user = required_user_key(&transaction, *attendee).await?;
            transaction.execute(&attend, &[&key, &user]).await?;
        }
        append(&transaction, &self.audit_key, &[audit]).await?;
        let created = existing_visit(&transaction, visit.id).await?;
        transaction.commit().await?;
        Ok(created)
    }

    async fn visit(&self, id: Uuid) -> Result<Option<Visit>, StoreError> {
        let client = self.client().await?;
        visit_by_id(&client, id).await
    }

    async fn visits(&self, query: VisitQuery) -> Result<Vec<Visit>, StoreError> {
        let patient = query.patient.map(|patient| patient.0);
        let attendee = query.attendee.map(|attendee| attendee.0);
        let ending_after = query.ending_after.map(to_ms);
        let starting_before = query.starting_before.map(to_ms);
        let status = query.status.map(VisitStatus::as_str);
        let limit = i64::from(query.limit.max(1));
        let mut conditions = vec!["true".to_owned()];
        let mut parameters: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if let Some(patient) = &patient {
            parameters.push(patient);
            conditions.push(format!("p.id = ${}", parameters.len()));
        }
        if let Some(attendee) = &attendee {
            parameters.push(attendee);
            conditions.push(format!(
                "v.key IN (SELECT a.visit_key FROM visit_attendee a
                           JOIN app_user u ON u.key = a.user_key WHERE u.id = ${})",
                parameters.len()
            ));
        }
        if let Some(after) = &ending_after {
            parameters.push(after);
            conditions.push(format!(
                "v.start_ms + v.duration_minutes * 60000 > ${}",
                parameters.len()
            ));
        }
        if let Some(before) = &starting_before {
            parameters.push(before);
            conditions.push(format!("v.start_ms < ${}", parameters.len()));
        }
        if let Some(status) = &status {
            parameters.push(status);
            conditions.push(format!("v.status = ${}", parameters.len()));
        }
        if query.unreminded {
            conditions.push("v.reminded_ms IS NULL".to_owned());
        }
        parameters.push(&limit);
        let condition = format!(
            "{} ORDER BY v.start_ms, v.key LIMIT ${}",
            conditions.join(" AND "),
            parameters.len()
        );
        let client = self.client().await?;
        visits_where(&client, &condition, &parameters).await
    }

    async fn reschedule_visit(
        &self,
        id: Uuid,
        start: DateTime<Utc>,
        duration_minutes: u32,
        audit: AuditEvent,
    ) -> Result<Visit, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let locked = lock_existing_visit(&transaction, id).await?;
        if locked.status != VisitStatus::Scheduled {
            return Err(not_scheduled(id, locked.status));
        }
        let update = transaction
            .prepare_cached(
                "UPDATE visit SET start_ms = $2, duration_minutes = $3, reminded_ms = NULL
                 WHERE key = $1",
            )
            .await?;
        transaction
            .execute(
                &update,
                &[&locked.key, &to_ms(start), &i64::from(duration_minutes)],
            )
            .await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        let moved = existing_visit(&transaction, id).await?;
        transaction.commit().await?;
        Ok(moved)
    }

    async fn close_visit(
        &self,
        id: Uuid,
        status: VisitStatus,
        at: DateTime<Utc>,
        reason: Option<String>,
        audit: AuditEvent,
    ) -> Result<Visit, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let locked = lock_existing_visit(&transaction, id).await?;
        if locked.status != VisitStatus::Scheduled || status == VisitStatus::Scheduled {
            return Err(not_scheduled(id, locked.status));
        }
        let update = transaction
            .prepare_cached(
                "UPDATE visit SET status = $2, status_changed_ms = $3, status_reason = $4
                 WHERE key = $1",
            )
            .await?;
        transaction
            .execute(
                &update,
                &[&locked.key, &status.as_str(), &to_ms(at), &reason],
            )
            .await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        let closed = existing_visit(&transaction, id).await?;
        transaction.commit().await?;
        Ok(closed)
    }

    async fn record_presence(
        &self,
        id: Uuid,
        user: UserId,
        presence: Presence,
        at: DateTime<Utc>,
        count_time: bool,
        audit: AuditEvent,
    ) -> Result<Vec<PresenceSpan>, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // Locked, so that two joins at once (two tabs) open one stay, not two.
        let visit = lock_existing_visit(&transaction, id).await?;
        let person = required_user_key(&transaction, user).await?;
        let open = transaction
            .prepare_cached(
                "SELECT key, joined_ms FROM visit_presence
                 WHERE visit_key = $1 AND user_key = $2 AND left_ms IS NULL",
            )
            .await?;
        let open: Option<(i64, i64)> = transaction
            .query_opt(&open, &[&visit.key, &person])
            .await?
            .map(|row| Ok::<_, tokio_postgres::Error>((row.try_get(0)?, row.try_get(1)?)))
            .transpose()?;
        match (presence, open) {
            (Presence::Joined, None) => {
                let join = transaction
                    .prepare_cached(
                        "INSERT INTO visit_presence (visit_key, user_key, joined_ms)
                         VALUES ($1, $2, $3)",
                    )
                    .await?;
                transaction
                    .execute(&join, &[&visit.key, &person, &to_ms(at)])
                    .await?;
            }
            (Presence::Left, Some((span, joined_ms))) => {
                // A clock that stepped back must not make a stay end before it began.
                let left_ms = to_ms(at).max(joined_ms);
                let leave = transaction
                    .prepare_cached("UPDATE visit_presence SET left_ms = $2 WHERE key = $1")
                    .await?;
                transaction.execute(&leave, &[&span, &left_ms]).await?;
                if count_time {
                    insert_time(
                        &transaction,
                        &NewMonitoringTime {
                            id: Uuid::new_v4(),
                            patient_id: visit.patient_id,
                            user_id: user,
                            started: from_ms(joined_ms)?,
                            seconds: (left_ms - joined_ms) / 1000,
                            source: MonitoringSource::Visit,
                            visit_id: Some(id),
                            reason: None,
                        },
                        visit.patient_key,
                        person,
                        Some(visit.key),
                    )
                    .await?;
                }
            }
            (Presence::Joined, Some(_)) | (Presence::Left, None) => {}
        }
        append(&transaction, &self.audit_key, &[audit]).await?;
        let spans = presence_of(&transaction, visit.key).await?;
        transaction.commit().await?;
        Ok(spans)
    }

    async fn visit_presence(&self, id: Uuid) -> Result<Vec<PresenceSpan>, StoreError> {
        let client = self.client().await?;
        let key = visit_key(&client, id).await?;
        presence_of(&client, key).await
    }

    async fn add_visit_message(
        &self,
        id: Uuid,
        author: UserId,
        at: DateTime<Utc>,
        text: String,
        audit: AuditEvent,
    ) -> Result<VisitMessage, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // Locked, so that the visit's messages commit in the order of their keys.
        let visit = lock_existing_visit(&transaction, id).await?;
        let author = required_user_key(&transaction, author).await?;
        let insert = transaction
            .prepare_cached(
                "INSERT INTO visit_message (visit_key, author_key, sent_ms, text)
                 VALUES ($1, $2, $3, $4) RETURNING key",
            )
            .await?;
        let seq: i64 = transaction
            .query_one(&insert, &[&visit.key, &author, &to_ms(at), &text])
            .await?
            .try_get(0)?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        let read = transaction
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM} WHERE m.key = $1"
            ))
            .await?;
        let message = message_from_row(&transaction.query_one(&read, &[&seq]).await?)?;
        transaction.commit().await?;
        Ok(message)
    }

    async fn visit_messages(&self, id: Uuid, after: i64) -> Result<Vec<VisitMessage>, StoreError> {
        let client = self.client().await?;
        let key = visit_key(&client, id).await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM}
                 WHERE m.visit_key = $1 AND m.key > $2 ORDER BY m.key"
            ))
            .await?;
        client
            .query(&statement, &[&key, &after])
            .await?
            .iter()
            .map(message_from_row)
            .collect()
    }

    async fn save_visit_note(
        &self,
        id: Uuid,
        author: UserId,
        text: VisitNoteText,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<VisitNote, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // Locked, so that a signature cannot come between the check and the write.
        let visit = lock_existing_visit(&transaction, id).await?;
        let signed = transaction
            .prepare_cached("SELECT signed_ms IS NOT NULL FROM visit_note WHERE visit_key = $1")
            .await?;
        if let Some(row) = transaction.query_opt(&signed, &[&visit.key]).await?
            && row.try_get::<_, bool>(0)?
        {
            return Err(StoreError::Conflict {
                what: format!("the note of visit {id} is signed; add an addendum"),
            });
        }
        let author = required_user_key(&transaction, author).await?;
        let save = transaction
            .prepare_cached(
                "INSERT INTO visit_note (visit_key, author_key, reason, findings, plan, updated_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (visit_key) DO UPDATE SET author_key = excluded.author_key,
                   reason = excluded.reason, findings = excluded.findings, plan = excluded.plan,
                   updated_ms = excluded.updated_ms",
            )
            .await?;
        transaction
            .execute(
                &save,
                &[
                    &visit.key,
                    &author,
                    &text.reason,
                    &text.findings,
                    &text.plan,
                    &to_ms(at),
                ],
            )
            .await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        let note = existing_note(&transaction, id).await?;
        transaction.commit().await?;
        Ok(note)
    }

    async fn sign_visit_note(
        &self,
        id: Uuid,
        author: UserId,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<VisitNote, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // Locked, so that the draft checked here is the draft signed.
        let Some(visit) = lock_visit(&transaction, id).await? else {
            return Err(StoreError::not_found(format!("note of visit {id}")));
        };
        let note = existing_note(&transaction, id).await?;
        if note.signed.is_some() {
            return Err(StoreError::Conflict {
                what: format!("the note of visit {id} is signed already"),
            });
        }
        if note.author != author {
            return Err(StoreError::Conflict {
                what: format!("the note of visit {id} was written by another; its author signs it"),
            });
        }
        let sign = transaction
            .prepare_cached(
                "UPDATE visit_note SET signed_ms = $2 WHERE visit_key = $1 AND signed_ms IS NULL",
            )
            .await?;
        let changed = transaction
            .execute(&sign, &[&visit.key, &to_ms(at)])
            .await?;
        append_if_changed(&transaction, &self.audit_key, changed, &[audit]).await?;
        let signed = existing_note(&transaction, id).await?;
        transaction.commit().await?;
        Ok(signed)
    }

    async fn add_visit_addendum(
        &self,
        id: Uuid,
        author: UserId,
        at: DateTime<Utc>,
        text: String,
        audit: AuditEvent,
    ) -> Result<VisitNote, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // Locked, so that the note is signed when the addendum is added to it.
        let Some(visit) = lock_visit(&transaction, id).await? else {
            return Err(StoreError::not_found(format!("note of visit {id}")));
        };
        let note = existing_note(&transaction, id).await?;
        if note.signed.is_none() {
            return Err(StoreError::Conflict {
                what: format!("the note of visit {id} is a draft; change it instead"),
            });
        }
        let author = required_user_key(&transaction, author).await?;
        let insert = transaction
            .prepare_cached(
                "INSERT INTO visit_addendum (visit_key, author_key, written_ms, text)
                 VALUES ($1, $2, $3, $4)",
            )
            .await?;
        transaction
            .execute(&insert, &[&visit.key, &author, &to_ms(at), &text])
            .await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        let amended = existing_note(&transaction, id).await?;
        transaction.commit().await?;
        Ok(amended)
    }

    async fn visit_note(&self, id: Uuid) -> Result<Option<VisitNote>, StoreError> {
        let client = self.client().await?;
        note_of(&client, id).await
    }

    async fn link_care_plan_version(
        &self,
        id: Uuid,
        version: u32,
        audit: AuditEvent,
    ) -> Result<Visit, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let key = visit_key(&transaction, id).await?;
        let link = transaction
            .prepare_cached(
                "INSERT INTO visit_care_plan (visit_key, version) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        transaction
            .execute(&link, &[&key, &i64::from(version)])
            .await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        let linked = existing_visit(&transaction, id).await?;
        transaction.commit().await?;
        Ok(linked)
    }

    async fn queue_visit_reminder(
        &self,
        id: Uuid,
        reminder: crate::outbox::NewVisitReminder,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // Conditional: of two reminders at once, the later finds the visit reminded and
        // queues nothing.
        let remind = transaction
            .prepare_cached(
                "UPDATE visit SET reminded_ms = $2
                 WHERE id = $1 AND reminded_ms IS NULL AND status = 'scheduled'
                 RETURNING key",
            )
            .await?;
        let visit_key: Option<i64> = transaction
            .query_opt(&remind, &[&id, &to_ms(at)])
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
        if let Some(visit_key) = visit_key {
            let payload = serde_json::to_string(&reminder.payload)
                .map_err(|error| StoreError::Invalid(error.to_string()))?;
            transaction
                .execute(
                    "INSERT INTO notification (idempotency_key, visit_key, email_to, payload, status,
                                               attempts, created_ms, next_attempt_ms)
                     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6)
                     ON CONFLICT (idempotency_key) DO NOTHING",
                    &[
                        &reminder.idempotency_key,
                        &visit_key,
                        &reminder.email,
                        &payload,
                        &to_ms(at),
                        &to_ms(reminder.next_attempt),
                    ],
                )
                .await?;
        }
        let changed = u64::from(visit_key.is_some());
        let reminded = append_if_changed(&transaction, &self.audit_key, changed, &[audit]).await?;
        transaction.commit().await?;
        Ok(reminded)
    }

    async fn create_treatment_order(
        &self,
        order: NewTreatmentOrder,
        audit: AuditEvent,
    ) -> Result<TreatmentOrder, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let visit = match order.visit_id {
            Some(visit) => Some(visit_key(&transaction, visit).await?),
            None => None,
        };
        let patient = required_patient_key(&transaction, order.patient_id).await?;
        let ordered_by = required_user_key(&transaction, order.ordered_by).await?;
        let insert = transaction
            .prepare_cached(
                "INSERT INTO treatment_order (id, patient_key, visit_key, ordered_by, created_ms,
                                              medication, dose, frequency, start_date, stop_date,
                                              instructions)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .await?;
        transaction
            .execute(
                &insert,
                &[
                    &order.id,
                    &patient,
                    &visit,
                    &ordered_by,
                    &to_ms(order.created),
                    &order.medication,
                    &order.dose,
                    &order.frequency,
                    &order.start.to_string(),
                    &order.stop.map(|stop| stop.to_string()),
                    &order.instructions,
                ],
            )
            .await
            .map_err(|error| unique_violation(error, format!("treatment order {}", order.id)))?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        let read = transaction
            .prepare_cached(&format!(
                "SELECT {ORDER_COLUMNS} FROM {ORDER_FROM} WHERE o.id = $1"
            ))
            .await?;
        let created = order_from_row(&transaction.query_one(&read, &[&order.id]).await?)?;
        transaction.commit().await?;
        Ok(created)
    }

    async fn treatment_orders(
        &self,
        patient: PatientId,
    ) -> Result<Vec<TreatmentOrder>, StoreError> {
        self.read_all(
            &format!(
                "SELECT {ORDER_COLUMNS} FROM {ORDER_FROM}
                 WHERE p.id = $1 ORDER BY o.created_ms DESC, o.key DESC"
            ),
            &[&patient.0],
            order_from_row,
        )
        .await
    }

    async fn record_monitoring_time(
        &self,
        time: NewMonitoringTime,
        audit: AuditEvent,
    ) -> Result<MonitoringTime, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let visit = match time.visit_id {
            Some(visit) => Some(visit_key(&transaction, visit).await?),
            None => None,
        };
        let patient = required_patient_key(&transaction, time.patient_id).await?;
        let user = required_user_key(&transaction, time.user_id).await?;
        insert_time(&transaction, &time, patient, user, visit).await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        let read = transaction
            .prepare_cached(&format!(
                "SELECT {TIME_COLUMNS} FROM {TIME_FROM} WHERE t.id = $1"
            ))
            .await?;
        let recorded = time_from_row(&transaction.query_one(&read, &[&time.id]).await?)?;
        transaction.commit().await?;
        Ok(recorded)
    }

    async fn monitoring_time(
        &self,
        patient: PatientId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<MonitoringTime>, StoreError> {
        self.read_all(
            &format!(
                "SELECT {TIME_COLUMNS} FROM {TIME_FROM}
                 WHERE p.id = $1 AND t.started_ms >= $2 AND t.started_ms < $3
                 ORDER BY t.started_ms, t.key"
            ),
            &[&patient.0, &to_ms(from), &to_ms(to)],
            time_from_row,
        )
        .await
    }

    async fn reading_quarters(
        &self,
        patient: PatientId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ReadingQuarter>, StoreError> {
        let client = self.client().await?;
        let Some(patient) = patient_key(&client, patient).await? else {
            return Ok(Vec::new());
        };
        // Device ids and codes in byte order, as SQLite's BINARY collation sorts them.
        let statement = client
            .prepare_cached(
                r#"SELECT DISTINCT o.effective_ms / $4 AS quarter, d.id COLLATE "C" AS device,
                                   o.code COLLATE "C" AS code
                   FROM observation o JOIN device d ON d.key = o.device_key
                   WHERE o.patient_key = $1 AND o.effective_ms >= $2 AND o.effective_ms < $3
                     AND NOT o.derived
                   ORDER BY quarter, device, code"#,
            )
            .await?;
        client
            .query(
                &statement,
                &[&patient, &to_ms(from), &to_ms(to), &QUARTER_MS],
            )
            .await?
            .iter()
            .map(|row| {
                let quarter: i64 = row.try_get(0)?;
                let code: &str = row.try_get(2)?;
                Ok(ReadingQuarter {
                    start: from_ms(quarter * QUARTER_MS)?,
                    device_id: parse_device_id(row.try_get(1)?)?,
                    code: ObservationCode::from_loinc(code).ok_or_else(|| {
                        StoreError::Corrupt(format!("unknown stored code {code}"))
                    })?,
                })
            })
            .collect()
    }
}
