//! [`BulkExportStore`] on SQLite: the single writer runs one change at a time, so a claim
//! and the attempt checks are plain reads and updates inside its job.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::audit::append;
use super::rows::{from_json, parse_uuid, to_json};
use super::{SqliteStore, from_ms, to_ms};
use crate::audit::AuditEvent;
use crate::bulk_exports::*;
use crate::error::StoreError;

const COLUMNS: &str = "id, requester, request, created_ms, types, since_ms, patients, status,
     attempt, progress, lease_ms, outputs, error, finished_ms, expires_ms";

fn export_from_row(row: &Row<'_>) -> Result<BulkExport, StoreError> {
    let id: String = row.get(0)?;
    let types: String = row.get(4)?;
    let patients: String = row.get(6)?;
    let status: String = row.get(7)?;
    let outputs: String = row.get(11)?;
    Ok(BulkExport {
        id: parse_uuid(&id, "bulk export")?,
        requester: row.get(1)?,
        request: row.get(2)?,
        created: from_ms(row.get(3)?)?,
        types: from_json(&types, "bulk export types")?,
        since: row.get::<_, Option<i64>>(5)?.map(from_ms).transpose()?,
        patients: super::ids_from_json(&patients, "patient")?,
        status: BulkExportStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("bulk export status {status:?}")))?,
        attempt: u32::try_from(row.get::<_, i64>(8)?).unwrap_or(u32::MAX),
        progress: row.get(9)?,
        lease_until: row.get::<_, Option<i64>>(10)?.map(from_ms).transpose()?,
        outputs: from_json(&outputs, "bulk export outputs")?,
        error: row.get(12)?,
        finished: row.get::<_, Option<i64>>(13)?.map(from_ms).transpose()?,
        expires: row.get::<_, Option<i64>>(14)?.map(from_ms).transpose()?,
    })
}

fn export_by_id(connection: &Connection, id: Uuid) -> Result<Option<BulkExport>, StoreError> {
    let mut statement =
        connection.prepare_cached(&format!("SELECT {COLUMNS} FROM bulk_export WHERE id = ?1"))?;
    let mut rows = statement.query([id.to_string()])?;
    match rows.next()? {
        Some(row) => export_from_row(row).map(Some),
        None => Ok(None),
    }
}

/// Whether the claim `attempt` still holds the export.
fn holds(connection: &Connection, id: Uuid, attempt: u32) -> Result<bool, StoreError> {
    Ok(connection
        .prepare_cached(
            "SELECT 1 FROM bulk_export WHERE id = ?1 AND attempt = ?2 AND status = 'running'",
        )?
        .query_row(params![id.to_string(), attempt], |_| Ok(()))
        .optional()?
        .is_some())
}

#[async_trait]
impl BulkExportStore for SqliteStore {
    async fn create_bulk_export(
        &self,
        export: NewBulkExport,
        audit: AuditEvent,
    ) -> Result<BulkExport, StoreError> {
        let types = to_json(&export.types)?;
        let patients = to_json(
            &export
                .patients
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        )?;
        self.write(move |connection| {
            connection
                .execute(
                    "INSERT INTO bulk_export (id, requester, request, created_ms, types, since_ms,
                                              patients, status)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending')",
                    params![
                        export.id.to_string(),
                        export.requester,
                        export.request,
                        to_ms(export.created),
                        types,
                        export.since.map(to_ms),
                        patients
                    ],
                )
                .map_err(|error| {
                    super::rows::unique_violation(error, format!("bulk export {}", export.id))
                })?;
            append(connection, &[audit])?;
            export_by_id(connection, export.id)?
                .ok_or_else(|| StoreError::not_found(format!("bulk export {}", export.id)))
        })
        .await
    }

    async fn bulk_export(&self, id: Uuid) -> Result<Option<BulkExport>, StoreError> {
        self.read(move |connection| export_by_id(connection, id))
            .await
    }

    async fn open_bulk_exports_of(&self, requester: &str) -> Result<Vec<BulkExport>, StoreError> {
        let requester = requester.to_owned();
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM bulk_export
                 WHERE requester = ?1 AND status IN ('pending', 'running') ORDER BY created_ms, key"
            ))?;
            let mut rows = statement.query([requester])?;
            let mut exports = Vec::new();
            while let Some(row) = rows.next()? {
                exports.push(export_from_row(row)?);
            }
            Ok(exports)
        })
        .await
    }

    async fn claim_bulk_export(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<BulkExport>, StoreError> {
        self.write(move |connection| {
            let waiting: Option<String> = connection
                .prepare_cached(
                    "SELECT id FROM bulk_export
                     WHERE status = 'pending' OR (status = 'running' AND lease_ms < ?1)
                     ORDER BY created_ms, key LIMIT 1",
                )?
                .query_row([to_ms(now)], |row| row.get(0))
                .optional()?;
            let Some(id) = waiting else {
                return Ok(None);
            };
            connection.execute(
                "UPDATE bulk_export SET status = 'running', attempt = attempt + 1, lease_ms = ?2,
                        progress = NULL
                 WHERE id = ?1",
                params![id, to_ms(lease_until)],
            )?;
            export_by_id(connection, parse_uuid(&id, "bulk export")?)
        })
        .await
    }

    async fn record_bulk_export_progress(
        &self,
        id: Uuid,
        attempt: u32,
        progress: String,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.write(move |connection| {
            if !holds(connection, id, attempt)? {
                return Ok(false);
            }
            connection.execute(
                "UPDATE bulk_export SET progress = ?2, lease_ms = ?3 WHERE id = ?1",
                params![id.to_string(), progress, to_ms(lease_until)],
            )?;
            Ok(true)
        })
        .await
    }

    async fn finish_bulk_export(
        &self,
        id: Uuid,
        attempt: u32,
        end: BulkExportEnd,
        at: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (status, outputs, error) = match &end {
            BulkExportEnd::Completed(outputs) => {
                (BulkExportStatus::Completed, to_json(outputs)?, None)
            }
            BulkExportEnd::Failed(reason) => (
                BulkExportStatus::Failed,
                "[]".to_owned(),
                Some(reason.clone()),
            ),
        };
        self.write(move |connection| {
            if !holds(connection, id, attempt)? {
                return Ok(false);
            }
            connection.execute(
                "UPDATE bulk_export SET status = ?2, outputs = ?3, error = ?4, finished_ms = ?5,
                        expires_ms = ?6, lease_ms = NULL, progress = NULL
                 WHERE id = ?1",
                params![
                    id.to_string(),
                    status.as_str(),
                    outputs,
                    error,
                    to_ms(at),
                    to_ms(expires)
                ],
            )?;
            Ok(true)
        })
        .await
    }

    async fn cancel_bulk_export(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        self.write(move |connection| {
            let changed = connection.execute(
                "UPDATE bulk_export SET status = 'cancelled', finished_ms = ?2, lease_ms = NULL
                 WHERE id = ?1 AND status <> 'cancelled'",
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

    async fn ended_bulk_exports(&self, now: DateTime<Utc>) -> Result<Vec<Uuid>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT id FROM bulk_export
                 WHERE status = 'cancelled'
                    OR (status IN ('completed', 'failed') AND expires_ms <= ?1)
                 ORDER BY key",
            )?;
            let ids = statement
                .query_map([to_ms(now)], |row| row.get::<_, String>(0))?
                .map(|id| parse_uuid(&id?, "bulk export"))
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(ids)
        })
        .await
    }

    async fn delete_bulk_export(&self, id: Uuid) -> Result<(), StoreError> {
        self.write(move |connection| {
            connection.execute("DELETE FROM bulk_export WHERE id = ?1", [id.to_string()])?;
            Ok(())
        })
        .await
    }
}
