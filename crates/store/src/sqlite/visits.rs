//! [`VisitStore`] on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;
use wardline_domain::{ObservationCode, PatientId, Role, UserId};

use super::audit::{append, append_if_changed};
use super::rows::*;
use super::{SqliteStore, from_ms, to_ms};
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::visits::*;

const VISIT_COLUMNS: &str = "v.key, v.id, p.id, p.display_name, s.id, v.created_ms, v.start_ms,
     v.duration_minutes, v.reason, v.status, v.status_changed_ms, v.status_reason, v.reminded_ms";
const VISIT_FROM: &str =
    "visit v JOIN patient p ON p.key = v.patient_key JOIN app_user s ON s.key = v.scheduled_by";

fn visit_from_row(connection: &Connection, row: &Row<'_>) -> Result<Visit, StoreError> {
    let key: i64 = row.get(0)?;
    let id: String = row.get(1)?;
    let patient: String = row.get(2)?;
    let scheduled_by: String = row.get(4)?;
    let status: String = row.get(9)?;
    let attendees = connection
        .prepare_cached(
            "SELECT u.id, u.display_name, u.role FROM visit_attendee a
             JOIN app_user u ON u.key = a.user_key WHERE a.visit_key = ?1 ORDER BY u.display_name",
        )?
        .query_map([key], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?
        .map(|row| {
            let (id, display_name, role) = row?;
            Ok(VisitAttendee {
                user_id: parse_uuid(&id, "user")?,
                display_name,
                role: role
                    .parse::<Role>()
                    .map_err(|error| StoreError::Corrupt(error.to_string()))?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let care_plan_versions = connection
        .prepare_cached(
            "SELECT version FROM visit_care_plan WHERE visit_key = ?1 ORDER BY version",
        )?
        .query_map([key], |row| row.get::<_, i64>(0))?
        .map(|version| Ok(count(version?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Visit {
        id: parse_uuid(&id, "visit")?,
        patient_id: parse_uuid(&patient, "patient")?,
        patient_name: row.get(3)?,
        scheduled_by: parse_uuid(&scheduled_by, "user")?,
        created: from_ms(row.get(5)?)?,
        start: from_ms(row.get(6)?)?,
        duration_minutes: count(row.get(7)?),
        reason: row.get(8)?,
        attendees,
        status: VisitStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("visit status {status:?}")))?,
        status_changed: row.get::<_, Option<i64>>(10)?.map(from_ms).transpose()?,
        status_reason: row.get(11)?,
        care_plan_versions,
        reminded: row.get::<_, Option<i64>>(12)?.map(from_ms).transpose()?,
    })
}

fn visit_by_id(connection: &Connection, id: Uuid) -> Result<Option<Visit>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {VISIT_COLUMNS} FROM {VISIT_FROM} WHERE v.id = ?1"
    ))?;
    let mut rows = statement.query([id.to_string()])?;
    match rows.next()? {
        Some(row) => visit_from_row(connection, row).map(Some),
        None => Ok(None),
    }
}

fn existing_visit(connection: &Connection, id: Uuid) -> Result<Visit, StoreError> {
    visit_by_id(connection, id)?.ok_or_else(|| StoreError::not_found(format!("visit {id}")))
}

fn visit_key(connection: &Connection, id: Uuid) -> Result<i64, StoreError> {
    key_of(connection, "visit", &id.to_string(), "visit")
}

fn user_key(connection: &Connection, id: UserId) -> Result<i64, StoreError> {
    key_of(connection, "app_user", &id.to_string(), "user")
}

fn patient_key(connection: &Connection, id: PatientId) -> Result<i64, StoreError> {
    key_of(connection, "patient", &id.to_string(), "patient")
}

fn presence_of(connection: &Connection, key: i64) -> Result<Vec<PresenceSpan>, StoreError> {
    connection
        .prepare_cached(
            "SELECT u.id, r.joined_ms, r.left_ms FROM visit_presence r
             JOIN app_user u ON u.key = r.user_key WHERE r.visit_key = ?1 ORDER BY r.joined_ms, r.key",
        )?
        .query_map([key], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, Option<i64>>(2)?,
            ))
        })?
        .map(|row| {
            let (user, joined, left) = row?;
            Ok(PresenceSpan {
                user_id: parse_uuid(&user, "user")?,
                joined: from_ms(joined)?,
                left: left.map(from_ms).transpose()?,
            })
        })
        .collect()
}

fn note_of(connection: &Connection, id: Uuid) -> Result<Option<VisitNote>, StoreError> {
    let note = connection
        .prepare_cached(
            "SELECT n.visit_key, u.id, u.display_name, n.reason, n.findings, n.plan, n.updated_ms, n.signed_ms
             FROM visit_note n JOIN visit v ON v.key = n.visit_key JOIN app_user u ON u.key = n.author_key
             WHERE v.id = ?1",
        )?
        .query_row([id.to_string()], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                VisitNoteText {
                    reason: row.get(3)?,
                    findings: row.get(4)?,
                    plan: row.get(5)?,
                },
                row.get::<_, i64>(6)?,
                row.get::<_, Option<i64>>(7)?,
            ))
        })
        .optional()?;
    let Some((key, author, author_name, text, updated, signed)) = note else {
        return Ok(None);
    };
    let addenda = connection
        .prepare_cached(
            "SELECT u.id, u.display_name, a.written_ms, a.text FROM visit_addendum a
             JOIN app_user u ON u.key = a.author_key WHERE a.visit_key = ?1 ORDER BY a.key",
        )?
        .query_map([key], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?
        .map(|row| {
            let (author, author_name, written, text) = row?;
            Ok(VisitAddendum {
                author: parse_uuid(&author, "user")?,
                author_name,
                written: from_ms(written)?,
                text,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(VisitNote {
        visit_id: id,
        text,
        author: parse_uuid(&author, "user")?,
        author_name,
        updated: from_ms(updated)?,
        signed: signed.map(from_ms).transpose()?,
        addenda,
    }))
}

fn existing_note(connection: &Connection, id: Uuid) -> Result<VisitNote, StoreError> {
    note_of(connection, id)?.ok_or_else(|| StoreError::not_found(format!("note of visit {id}")))
}

fn message_from_row(row: &Row<'_>) -> Result<VisitMessage, StoreError> {
    let author: String = row.get(1)?;
    Ok(VisitMessage {
        seq: row.get(0)?,
        author: parse_uuid(&author, "user")?,
        author_name: row.get(2)?,
        sent: from_ms(row.get(3)?)?,
        text: row.get(4)?,
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

fn order_from_row(row: &Row<'_>) -> Result<TreatmentOrder, StoreError> {
    let id: String = row.get(0)?;
    let patient: String = row.get(1)?;
    let visit: Option<String> = row.get(2)?;
    let ordered_by: String = row.get(3)?;
    let start: String = row.get(9)?;
    let stop: Option<String> = row.get(10)?;
    Ok(TreatmentOrder {
        id: parse_uuid(&id, "order")?,
        patient_id: parse_uuid(&patient, "patient")?,
        visit_id: visit.map(|visit| parse_uuid(&visit, "visit")).transpose()?,
        ordered_by: parse_uuid(&ordered_by, "user")?,
        ordered_by_name: row.get(4)?,
        created: from_ms(row.get(5)?)?,
        medication: row.get(6)?,
        dose: row.get(7)?,
        frequency: row.get(8)?,
        start: date(&start)?,
        stop: stop.as_deref().map(date).transpose()?,
        instructions: row.get(11)?,
    })
}

const TIME_COLUMNS: &str =
    "t.id, p.id, u.id, u.display_name, t.started_ms, t.seconds, t.source, v.id, t.reason";
const TIME_FROM: &str = "monitoring_time t JOIN patient p ON p.key = t.patient_key
     JOIN app_user u ON u.key = t.user_key LEFT JOIN visit v ON v.key = t.visit_key";

fn time_from_row(row: &Row<'_>) -> Result<MonitoringTime, StoreError> {
    let id: String = row.get(0)?;
    let patient: String = row.get(1)?;
    let user: String = row.get(2)?;
    let source: String = row.get(6)?;
    let visit: Option<String> = row.get(7)?;
    Ok(MonitoringTime {
        id: parse_uuid(&id, "monitoring time")?,
        patient_id: parse_uuid(&patient, "patient")?,
        user_id: parse_uuid(&user, "user")?,
        user_name: row.get(3)?,
        started: from_ms(row.get(4)?)?,
        seconds: row.get(5)?,
        source: MonitoringSource::parse(&source)
            .ok_or_else(|| StoreError::Corrupt(format!("monitoring source {source:?}")))?,
        visit_id: visit.map(|visit| parse_uuid(&visit, "visit")).transpose()?,
        reason: row.get(8)?,
    })
}

fn insert_time(connection: &Connection, time: &NewMonitoringTime) -> Result<(), StoreError> {
    let visit = time
        .visit_id
        .map(|visit| visit_key(connection, visit))
        .transpose()?;
    connection
        .prepare_cached(
            "INSERT INTO monitoring_time (id, patient_key, user_key, started_ms, seconds, source, visit_key, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            time.id.to_string(),
            patient_key(connection, time.patient_id)?,
            user_key(connection, time.user_id)?,
            to_ms(time.started),
            time.seconds,
            time.source.as_str(),
            visit,
            time.reason
        ]).map_err(|error| unique_violation(error, format!("monitoring time {}", time.id)))?;
    Ok(())
}

#[async_trait]
impl VisitStore for SqliteStore {
    async fn create_visit(&self, visit: NewVisit, audit: AuditEvent) -> Result<Visit, StoreError> {
        self.write(move |connection| {
            let patient = patient_key(connection, visit.patient_id)?;
            let scheduler = user_key(connection, visit.scheduled_by)?;
            connection.execute(
                "INSERT INTO visit (id, patient_key, scheduled_by, created_ms, start_ms, duration_minutes, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    visit.id.to_string(),
                    patient,
                    scheduler,
                    to_ms(visit.created),
                    to_ms(visit.start),
                    visit.duration_minutes,
                    visit.reason
                ],
            ).map_err(|error| unique_violation(error, format!("visit {}", visit.id)))?;
            let key = connection.last_insert_rowid();
            for attendee in &visit.attendees {
                connection.execute(
                    "INSERT OR IGNORE INTO visit_attendee (visit_key, user_key) VALUES (?1, ?2)",
                    params![key, user_key(connection, *attendee)?],
                )?;
            }
            append(connection, &[audit])?;
            existing_visit(connection, visit.id)
        })
        .await
    }

    async fn visit(&self, id: Uuid) -> Result<Option<Visit>, StoreError> {
        self.read(move |connection| visit_by_id(connection, id))
            .await
    }

    async fn visits(&self, query: VisitQuery) -> Result<Vec<Visit>, StoreError> {
        self.read(move |connection| {
            let mut conditions = vec!["1 = 1".to_owned()];
            let mut values: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
            if let Some(patient) = query.patient {
                values.push(Box::new(patient.to_string()));
                conditions.push(format!("p.id = ?{}", values.len()));
            }
            if let Some(attendee) = query.attendee {
                values.push(Box::new(attendee.to_string()));
                conditions.push(format!(
                    "v.key IN (SELECT a.visit_key FROM visit_attendee a JOIN app_user u ON u.key = a.user_key WHERE u.id = ?{})",
                    values.len()
                ));
            }
            if let Some(after) = query.ending_after {
                values.push(Box::new(to_ms(after)));
                conditions.push(format!(
                    "v.start_ms + v.duration_minutes * 60000 > ?{}",
                    values.len()
                ));
            }
            if let Some(before) = query.starting_before {
                values.push(Box::new(to_ms(before)));
                conditions.push(format!("v.start_ms < ?{}", values.len()));
            }
            if let Some(status) = query.status {
                values.push(Box::new(status.as_str()));
                conditions.push(format!("v.status = ?{}", values.len()));
            }
            if query.unreminded {
                conditions.push("v.reminded_ms IS NULL".to_owned());
            }
            values.push(Box::new(i64::from(query.limit.max(1))));
            let sql = format!(
                "SELECT {VISIT_COLUMNS} FROM {VISIT_FROM} WHERE {} ORDER BY v.start_ms, v.key LIMIT ?{}",
                conditions.join(" AND "),
                values.len()
            );
            let mut statement = connection.prepare_cached(&sql)?;
            let mut rows = statement.query(rusqlite::params_from_iter(values.iter()))?;
            let mut visits = Vec::new();
            while let Some(row) = rows.next()? {
                visits.push(visit_from_row(connection, row)?);
            }
            Ok(visits)
        })
        .await
    }

    async fn reschedule_visit(
        &self,
        id: Uuid,
        start: DateTime<Utc>,
        duration_minutes: u32,
        audit: AuditEvent,
    ) -> Result<Visit, StoreError> {
        self.write(move |connection| {
            let visit = existing_visit(connection, id)?;
            if visit.status != VisitStatus::Scheduled {
                return Err(StoreError::Conflict {
                    what: format!("visit {id} is {}", visit.status.as_str()),
                });
            }
            connection.execute(
                "UPDATE visit SET start_ms = ?2, duration_minutes = ?3, reminded_ms = NULL WHERE id = ?1",
                params![id.to_string(), to_ms(start), duration_minutes],
            )?;
            append(connection, &[audit])?;
            existing_visit(connection, id)
        })
        .await
    }

    async fn close_visit(
        &self,
        id: Uuid,
        status: VisitStatus,
        at: DateTime<Utc>,
        reason: Option<String>,
        audit: AuditEvent,
    ) -> Result<Visit, StoreError> {
        self.write(move |connection| {
            let visit = existing_visit(connection, id)?;
            if visit.status != VisitStatus::Scheduled || status == VisitStatus::Scheduled {
                return Err(StoreError::Conflict {
                    what: format!("visit {id} is {}", visit.status.as_str()),
                });
            }
            connection.execute(
                "UPDATE visit SET status = ?2, status_changed_ms = ?3, status_reason = ?4 WHERE id = ?1",
                params![id.to_string(), status.as_str(), to_ms(at), reason],
            )?;
            append(connection, &[audit])?;
            existing_visit(connection, id)
        })
        .await
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
        self.write(move |connection| {
            let key = visit_key(connection, id)?;
            let person = user_key(connection, user)?;
            let open: Option<(i64, i64)> = connection
                .prepare_cached(
                    "SELECT key, joined_ms FROM visit_presence
                     WHERE visit_key = ?1 AND user_key = ?2 AND left_ms IS NULL",
                )?
                .query_row(params![key, person], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            match (presence, open) {
                (Presence::Joined, None) => {
                    connection.execute(
                        "INSERT INTO visit_presence (visit_key, user_key, joined_ms) VALUES (?1, ?2, ?3)",
                        params![key, person, to_ms(at)],
                    )?;
                }
                (Presence::Left, Some((span, joined_ms))) => {
                    // A clock that stepped back must not make a stay end before it began.
                    let left_ms = to_ms(at).max(joined_ms);
                    connection.execute(
                        "UPDATE visit_presence SET left_ms = ?2 WHERE key = ?1",
                        params![span, left_ms],
                    )?;
                    if count_time {
                        let visit = existing_visit(connection, id)?;
                        insert_time(
                            connection,
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
                        )?;
                    }
                }
                (Presence::Joined, Some(_)) | (Presence::Left, None) => {}
            }
            append(connection, &[audit])?;
            presence_of(connection, key)
        })
        .await
    }

    async fn visit_presence(&self, id: Uuid) -> Result<Vec<PresenceSpan>, StoreError> {
        self.read(move |connection| {
            let key = visit_key(connection, id)?;
            presence_of(connection, key)
        })
        .await
    }

    async fn add_visit_message(
        &self,
        id: Uuid,
        author: UserId,
        at: DateTime<Utc>,
        text: String,
        audit: AuditEvent,
    ) -> Result<VisitMessage, StoreError> {
        self.write(move |connection| {
            let key = visit_key(connection, id)?;
            connection.execute(
                "INSERT INTO visit_message (visit_key, author_key, sent_ms, text) VALUES (?1, ?2, ?3, ?4)",
                params![key, user_key(connection, author)?, to_ms(at), text],
            )?;
            let seq = connection.last_insert_rowid();
            append(connection, &[audit])?;
            connection
                .prepare_cached(
                    "SELECT m.key, u.id, u.display_name, m.sent_ms, m.text FROM visit_message m
                     JOIN app_user u ON u.key = m.author_key WHERE m.key = ?1",
                )?
                .query_row([seq], |row| Ok(message_from_row(row)))?
        })
        .await
    }

    async fn visit_messages(&self, id: Uuid, after: i64) -> Result<Vec<VisitMessage>, StoreError> {
        self.read(move |connection| {
            let key = visit_key(connection, id)?;
            connection
                .prepare_cached(
                    "SELECT m.key, u.id, u.display_name, m.sent_ms, m.text FROM visit_message m
                     JOIN app_user u ON u.key = m.author_key
                     WHERE m.visit_key = ?1 AND m.key > ?2 ORDER BY m.key",
                )?
                .query_map(params![key, after], |row| Ok(message_from_row(row)))?
                .map(|row| row?)
                .collect()
        })
        .await
    }

    async fn save_visit_note(
        &self,
        id: Uuid,
        author: UserId,
        text: VisitNoteText,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<VisitNote, StoreError> {
        self.write(move |connection| {
            let key = visit_key(connection, id)?;
            if let Some(note) = note_of(connection, id)?
                && note.signed.is_some()
            {
                return Err(StoreError::Conflict {
                    what: format!("the note of visit {id} is signed; add an addendum"),
                });
            }
            connection.execute(
                "INSERT INTO visit_note (visit_key, author_key, reason, findings, plan, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (visit_key) DO UPDATE SET author_key = excluded.author_key,
                   reason = excluded.reason, findings = excluded.findings, plan = excluded.plan,
                   updated_ms = excluded.updated_ms",
                params![
                    key,
                    user_key(connection, author)?,
                    text.reason,
                    text.findings,
                    text.plan,
                    to_ms(at)
                ],
            )?;
            append(connection, &[audit])?;
            existing_note(connection, id)
        })
        .await
    }

    async fn sign_visit_note(
        &self,
        id: Uuid,
        author: UserId,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<VisitNote, StoreError> {
        self.write(move |connection| {
            let note = existing_note(connection, id)?;
            if note.signed.is_some() {
                return Err(StoreError::Conflict {
                    what: format!("the note of visit {id} is signed already"),
                });
            }
            if note.author != author {
                return Err(StoreError::Conflict {
                    what: format!(
                        "the note of visit {id} was written by another; its author signs it"
                    ),
                });
            }
            let key = visit_key(connection, id)?;
            let changed = connection.execute(
                "UPDATE visit_note SET signed_ms = ?2 WHERE visit_key = ?1 AND signed_ms IS NULL",
                params![key, to_ms(at)],
            )?;
            append_if_changed(connection, changed, &[audit])?;
            existing_note(connection, id)
        })
        .await
    }

    async fn add_visit_addendum(
        &self,
        id: Uuid,
        author: UserId,
        at: DateTime<Utc>,
        text: String,
        audit: AuditEvent,
    ) -> Result<VisitNote, StoreError> {
        self.write(move |connection| {
            let note = existing_note(connection, id)?;
            if note.signed.is_none() {
                return Err(StoreError::Conflict {
                    what: format!("the note of visit {id} is a draft; change it instead"),
                });
            }
            connection.execute(
                "INSERT INTO visit_addendum (visit_key, author_key, written_ms, text) VALUES (?1, ?2, ?3, ?4)",
                params![visit_key(connection, id)?, user_key(connection, author)?, to_ms(at), text],
            )?;
            append(connection, &[audit])?;
            existing_note(connection, id)
        })
        .await
    }

    async fn visit_note(&self, id: Uuid) -> Result<Option<VisitNote>, StoreError> {
        self.read(move |connection| note_of(connection, id)).await
    }

    async fn link_care_plan_version(
        &self,
        id: Uuid,
        version: u32,
        audit: AuditEvent,
    ) -> Result<Visit, StoreError> {
        self.write(move |connection| {
            let key = visit_key(connection, id)?;
            connection.execute(
                "INSERT OR IGNORE INTO visit_care_plan (visit_key, version) VALUES (?1, ?2)",
                params![key, version],
            )?;
            append(connection, &[audit])?;
            existing_visit(connection, id)
        })
        .await
    }

    async fn queue_visit_reminder(
        &self,
        id: Uuid,
        reminder: crate::outbox::NewVisitReminder,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        self.write(move |connection| {
            let changed = connection.execute(
                "UPDATE visit SET reminded_ms = ?2 WHERE id = ?1 AND reminded_ms IS NULL AND status = 'scheduled'",
                params![id.to_string(), to_ms(at)],
            )?;
            if changed > 0 {
                connection.execute(
                    "INSERT INTO notification (idempotency_key, visit_key, email_to, payload, status,
                                               attempts, created_ms, next_attempt_ms)
                     VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?6)
                     ON CONFLICT (idempotency_key) DO NOTHING",
                    params![
                        reminder.idempotency_key,
                        visit_key(connection, id)?,
                        reminder.email,
                        to_json(&reminder.payload)?,
                        to_ms(at),
                        to_ms(reminder.next_attempt)
                    ],
                )?;
            }
            append_if_changed(connection, changed, &[audit])?;
            Ok(changed > 0)
        })
        .await
    }

    async fn create_treatment_order(
        &self,
        order: NewTreatmentOrder,
        audit: AuditEvent,
    ) -> Result<TreatmentOrder, StoreError> {
        self.write(move |connection| {
            let visit = order
                .visit_id
                .map(|visit| visit_key(connection, visit))
                .transpose()?;
            connection.execute(
                "INSERT INTO treatment_order (id, patient_key, visit_key, ordered_by, created_ms, medication,
                                              dose, frequency, start_date, stop_date, instructions)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    order.id.to_string(),
                    patient_key(connection, order.patient_id)?,
                    visit,
                    user_key(connection, order.ordered_by)?,
                    to_ms(order.created),
                    order.medication,
                    order.dose,
                    order.frequency,
                    order.start.to_string(),
                    order.stop.map(|stop| stop.to_string()),
                    order.instructions
                ],
            ).map_err(|error| unique_violation(error, format!("treatment order {}", order.id)))?;
            append(connection, &[audit])?;
            connection
                .prepare_cached(&format!("SELECT {ORDER_COLUMNS} FROM {ORDER_FROM} WHERE o.id = ?1"))?
                .query_row([order.id.to_string()], |row| Ok(order_from_row(row)))?
        })
        .await
    }

    async fn treatment_orders(
        &self,
        patient: PatientId,
    ) -> Result<Vec<TreatmentOrder>, StoreError> {
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {ORDER_COLUMNS} FROM {ORDER_FROM} WHERE p.id = ?1 ORDER BY o.created_ms DESC, o.key DESC"
                ))?
                .query_map([patient.to_string()], |row| Ok(order_from_row(row)))?
                .map(|row| row?)
                .collect()
        })
        .await
    }

    async fn record_monitoring_time(
        &self,
        time: NewMonitoringTime,
        audit: AuditEvent,
    ) -> Result<MonitoringTime, StoreError> {
        self.write(move |connection| {
            insert_time(connection, &time)?;
            append(connection, &[audit])?;
            connection
                .prepare_cached(&format!(
                    "SELECT {TIME_COLUMNS} FROM {TIME_FROM} WHERE t.id = ?1"
                ))?
                .query_row([time.id.to_string()], |row| Ok(time_from_row(row)))?
        })
        .await
    }

    async fn monitoring_time(
        &self,
        patient: PatientId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<MonitoringTime>, StoreError> {
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {TIME_COLUMNS} FROM {TIME_FROM}
                     WHERE p.id = ?1 AND t.started_ms >= ?2 AND t.started_ms < ?3 ORDER BY t.started_ms, t.key"
                ))?
                .query_map(params![patient.to_string(), to_ms(from), to_ms(to)], |row| {
                    Ok(time_from_row(row))
                })?
                .map(|row| row?)
                .collect()
        })
        .await
    }

    async fn reading_quarters(
        &self,
        patient: PatientId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ReadingQuarter>, StoreError> {
        self.read(move |connection| {
            let Some(patient) = patient_key_of(connection, patient)? else {
                return Ok(Vec::new());
            };
            connection
                .prepare_cached(
                    "SELECT DISTINCT o.effective_ms / ?4 AS quarter, d.id, o.code FROM observation o
                     JOIN device d ON d.key = o.device_key
                     WHERE o.patient_key = ?1 AND o.effective_ms >= ?2 AND o.effective_ms < ?3
                       AND o.derived = 0
                     ORDER BY quarter, d.id, o.code",
                )?
                .query_map(params![patient, to_ms(from), to_ms(to), QUARTER_MS], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                })?
                .map(|row| {
                    let (quarter, device, code) = row?;
                    Ok(ReadingQuarter {
                        start: from_ms(quarter * QUARTER_MS)?,
                        device_id: parse_device_id(&device)?,
                        code: ObservationCode::from_loinc(&code)
                            .ok_or_else(|| StoreError::Corrupt(format!("unknown stored code {code}")))?,
                    })
                })
                .collect()
        })
        .await
    }
}
