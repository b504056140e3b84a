//! [`ShareStore`] on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;
use wardline_domain::sharing::ShareCategory;
use wardline_domain::{PatientId, UserId};

use super::audit::append;
use super::rows::*;
use super::{SqliteStore, from_ms, to_ms};
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::shares::*;

const COLUMNS: &str = "s.id, p.id, g.id, g.display_name, c.id, s.created_ms, s.categories,
     s.data_from_ms, s.data_to_ms, s.expires_ms, s.message, s.revoked_ms";
const FROM: &str = "share s JOIN patient p ON p.key = s.patient_key
     JOIN app_user g ON g.key = s.grantee_key JOIN app_user c ON c.key = s.consented_by";

fn from_row(row: &Row<'_>) -> Result<Share, StoreError> {
    let id: String = row.get(0)?;
    let patient: String = row.get(1)?;
    let grantee: String = row.get(2)?;
    let consented_by: String = row.get(4)?;
    let categories: String = row.get(6)?;
    let categories = categories
        .split(',')
        .map(|name| {
            ShareCategory::parse(name)
                .ok_or_else(|| StoreError::Corrupt(format!("share category {name:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Share {
        id: parse_uuid(&id, "share")?,
        patient_id: parse_uuid(&patient, "patient")?,
        grantee_id: parse_uuid(&grantee, "user")?,
        grantee_name: row.get(3)?,
        consented_by: parse_uuid(&consented_by, "user")?,
        created: from_ms(row.get(5)?)?,
        categories,
        data_from: from_ms(row.get(7)?)?,
        data_to: from_ms(row.get(8)?)?,
        expires: from_ms(row.get(9)?)?,
        message: row.get(10)?,
        revoked: row.get::<_, Option<i64>>(11)?.map(from_ms).transpose()?,
    })
}

fn by_id(connection: &Connection, id: Uuid) -> Result<Option<Share>, StoreError> {
    connection
        .prepare_cached(&format!("SELECT {COLUMNS} FROM {FROM} WHERE s.id = ?1"))?
        .query_row([id.to_string()], |row| Ok(from_row(row)))
        .optional()?
        .transpose()
}

#[async_trait]
impl ShareStore for SqliteStore {
    async fn create_share(&self, share: NewShare, audit: AuditEvent) -> Result<Share, StoreError> {
        self.write(move |connection| {
            let patient_key = key_of(connection, "patient", &share.patient_id.to_string(), "patient")?;
            let grantee_key = key_of(connection, "app_user", &share.grantee_id.to_string(), "user")?;
            let consented_key =
                key_of(connection, "app_user", &share.consented_by.to_string(), "user")?;
            let categories = share
                .categories
                .iter()
                .map(|category| category.as_str())
                .collect::<Vec<_>>()
                .join(",");
            connection
                .prepare_cached(
                    "INSERT INTO share (id, patient_key, grantee_key, consented_by, created_ms, categories,
                                        data_from_ms, data_to_ms, expires_ms, message)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?
                .execute(params![
                    share.id.to_string(),
                    patient_key,
                    grantee_key,
                    consented_key,
                    to_ms(share.created),
                    categories,
                    to_ms(share.data_from),
                    to_ms(share.data_to),
                    to_ms(share.expires),
                    share.message
                ])?;
            append(connection, &[audit])?;
            by_id(connection, share.id)?
                .ok_or_else(|| StoreError::Corrupt("a share just stored is not there".into()))
        })
        .await
    }

    async fn share(&self, id: Uuid) -> Result<Option<Share>, StoreError> {
        self.read(move |connection| by_id(connection, id)).await
    }

    async fn shares_of_patient(&self, patient: PatientId) -> Result<Vec<Share>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE p.id = ?1 ORDER BY s.created_ms DESC, s.key DESC"
            ))?;
            let rows = statement.query_map([patient.to_string()], |row| Ok(from_row(row)))?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn live_shares(
        &self,
        grantee: UserId,
        patient: PatientId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Share>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM {FROM}
                 WHERE g.id = ?1 AND p.id = ?2 AND s.revoked_ms IS NULL AND s.expires_ms > ?3
                 ORDER BY s.created_ms DESC, s.key DESC"
            ))?;
            let rows = statement.query_map(
                params![grantee.to_string(), patient.to_string(), to_ms(now)],
                |row| Ok(from_row(row)),
            )?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn patients_sharing_with(
        &self,
        grantee: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<PatientId>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT DISTINCT p.id FROM share s JOIN patient p ON p.key = s.patient_key
                 JOIN app_user g ON g.key = s.grantee_key
                 WHERE g.id = ?1 AND s.revoked_ms IS NULL AND s.expires_ms > ?2 ORDER BY p.id",
            )?;
            let rows = statement.query_map(params![grantee.to_string(), to_ms(now)], |row| {
                row.get::<_, String>(0)
            })?;
            rows.map(|row| parse_uuid(&row?, "patient")).collect()
        })
        .await
    }

    async fn revoke_share(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        self.write(move |connection| {
            if by_id(connection, id)?.is_none() {
                return Err(StoreError::not_found(format!("share {id}")));
            }
            let changed = connection.execute(
                "UPDATE share SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
                params![id.to_string(), to_ms(at)],
            )?;
            if changed == 0 {
                return Ok(false);
            }
            append(connection, &[audit])?;
            Ok(true)
        })
        .await
    }
}
