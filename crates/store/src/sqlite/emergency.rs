//! [`EmergencyAccessStore`] on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;
use wardline_domain::{PatientId, UserId};

use super::audit::append;
use super::rows::*;
use super::{SqliteStore, from_ms, to_ms};
use crate::audit::AuditEvent;
use crate::emergency::*;
use crate::error::StoreError;

const COLUMNS: &str = "e.id, u.id, u.username, p.id, e.reason, e.opened_ms, e.expires_ms,
     e.reviewed_ms, r.id, r.username, e.review_note";
const FROM: &str = "emergency_access e JOIN app_user u ON u.key = e.user_key
     JOIN patient p ON p.key = e.patient_key LEFT JOIN app_user r ON r.key = e.reviewer_key";

fn from_row(row: &Row<'_>) -> Result<EmergencyAccess, StoreError> {
    let id: String = row.get(0)?;
    let user: String = row.get(1)?;
    let patient: String = row.get(3)?;
    let reviewed: Option<i64> = row.get(7)?;
    let review = match reviewed {
        Some(reviewed) => {
            let reviewer: String = row.get(8)?;
            Some(EmergencyAccessReview {
                reviewer_id: parse_uuid(&reviewer, "user")?,
                reviewer: row.get(9)?,
                reviewed: from_ms(reviewed)?,
                note: row.get::<_, Option<String>>(10)?.unwrap_or_default(),
            })
        }
        None => None,
    };
    Ok(EmergencyAccess {
        id: parse_uuid(&id, "emergency access")?,
        user_id: parse_uuid(&user, "user")?,
        username: row.get(2)?,
        patient_id: parse_uuid(&patient, "patient")?,
        reason: row.get(4)?,
        opened: from_ms(row.get(5)?)?,
        expires: from_ms(row.get(6)?)?,
        review,
    })
}

fn by_id(connection: &Connection, id: Uuid) -> Result<Option<EmergencyAccess>, StoreError> {
    connection
        .prepare_cached(&format!("SELECT {COLUMNS} FROM {FROM} WHERE e.id = ?1"))?
        .query_row([id.to_string()], |row| Ok(from_row(row)))
        .optional()?
        .transpose()
}

#[async_trait]
impl EmergencyAccessStore for SqliteStore {
    async fn open_emergency_access(
        &self,
        access: NewEmergencyAccess,
        audit: AuditEvent,
    ) -> Result<EmergencyAccess, StoreError> {
        self.write(move |connection| {
            let user_key = key_of(connection, "app_user", &access.user_id.to_string(), "user")?;
            let patient_key = key_of(
                connection,
                "patient",
                &access.patient_id.to_string(),
                "patient",
            )?;
            connection
                .prepare_cached(
                    "INSERT INTO emergency_access (id, user_key, patient_key, reason, opened_ms, expires_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    access.id.to_string(),
                    user_key,
                    patient_key,
                    access.reason,
                    to_ms(access.opened),
                    to_ms(access.expires)
                ])
                .map_err(|error| unique_violation(error, format!("emergency access {}", access.id)))?;
            append(connection, &[audit])?;
            by_id(connection, access.id)?
                .ok_or_else(|| StoreError::Corrupt("an emergency access just stored".into()))
        })
        .await
    }

    async fn open_emergency_access_of(
        &self,
        user: UserId,
        patient: PatientId,
        now: DateTime<Utc>,
    ) -> Result<Option<EmergencyAccess>, StoreError> {
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM {FROM}
                     WHERE u.id = ?1 AND p.id = ?2 AND e.opened_ms <= ?3 AND e.expires_ms > ?3
                     ORDER BY e.expires_ms DESC LIMIT 1"
                ))?
                .query_row(
                    params![user.to_string(), patient.to_string(), to_ms(now)],
                    |row| Ok(from_row(row)),
                )
                .optional()?
                .transpose()
        })
        .await
    }

    async fn emergency_accesses(
        &self,
        unreviewed_only: bool,
        limit: u32,
    ) -> Result<Vec<EmergencyAccess>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM {FROM}
                 WHERE (?1 = 0 OR e.reviewed_ms IS NULL)
                 ORDER BY e.opened_ms DESC, e.key DESC LIMIT ?2"
            ))?;
            let rows =
                statement.query_map(params![unreviewed_only, limit], |row| Ok(from_row(row)))?;
            let mut accesses = Vec::new();
            for row in rows {
                accesses.push(row??);
            }
            Ok(accesses)
        })
        .await
    }

    async fn review_emergency_access(
        &self,
        id: Uuid,
        reviewer: UserId,
        note: String,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<EmergencyAccess, StoreError> {
        self.write(move |connection| {
            let existing = by_id(connection, id)?
                .ok_or_else(|| StoreError::not_found(format!("emergency access {id}")))?;
            if existing.review.is_some() {
                return Err(StoreError::Conflict {
                    what: format!("a review of emergency access {id}"),
                });
            }
            let reviewer_key = key_of(connection, "app_user", &reviewer.to_string(), "user")?;
            connection
                .prepare_cached(
                    "UPDATE emergency_access SET reviewed_ms = ?2, reviewer_key = ?3, review_note = ?4
                     WHERE id = ?1 AND reviewed_ms IS NULL",
                )?
                .execute(params![id.to_string(), to_ms(at), reviewer_key, note])?;
            append(connection, &[audit])?;
            by_id(connection, id)?
                .ok_or_else(|| StoreError::Corrupt("an emergency access just reviewed".into()))
        })
        .await
    }
}
