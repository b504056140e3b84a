//! [`BulkExportStore`] on PostgreSQL. Several workers claim at once: a claim takes the
//! oldest waiting job with `FOR UPDATE SKIP LOCKED`, so two workers never take the same
//! one, and every later write of a claim checks its attempt number in the same statement.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::PostgresStore;
use super::audit::append;
use super::rows::*;
use crate::audit::AuditEvent;
use crate::bulk_exports::*;
use crate::error::StoreError;

const COLUMNS: &str = "id, requester, request, created_ms, types, since_ms, patients, status,
     attempt, progress, lease_ms, outputs, error, finished_ms, expires_ms";

fn export_from_row(row: &Row) -> Result<BulkExport, StoreError> {
    let types: &str = row.try_get(4)?;
    let patients: &str = row.try_get(6)?;
    let status: &str = row.try_get(7)?;
    let outputs: &str = row.try_get(11)?;
    Ok(BulkExport {
        id: row.try_get(0)?,
        requester: row.try_get(1)?,
        request: row.try_get(2)?,
        created: from_ms(row.try_get(3)?)?,
        types: from_json(types, "bulk export types")?,
        since: row.try_get::<_, Option<i64>>(5)?.map(from_ms).transpose()?,
        patients: ids_from_json(patients, "patient")?,
        status: BulkExportStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("bulk export status {status:?}")))?,
        attempt: u32::try_from(row.try_get::<_, i64>(8)?).unwrap_or(u32::MAX),
        progress: row.try_get(9)?,
        lease_until: row
            .try_get::<_, Option<i64>>(10)?
            .map(from_ms)
            .transpose()?,
        outputs: from_json(outputs, "bulk export outputs")?,
        error: row.try_get(12)?,
        finished: row
            .try_get::<_, Option<i64>>(13)?
            .map(from_ms)
            .transpose()?,
        expires: row
            .try_get::<_, Option<i64>>(14)?
            .map(from_ms)
            .transpose()?,
    })
}

async fn export_by_id(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<BulkExport>, StoreError> {
    let statement = client
        .prepare_cached(&format!("SELECT {COLUMNS} FROM bulk_export WHERE id = $1"))
        .await?;
    client
        .query_opt(&statement, &[&id])
        .await?
        .map(|row| export_from_row(&row))
        .transpose()
}

#[async_trait]
impl BulkExportStore for PostgresStore {
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
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let insert = transaction
            .prepare_cached(
                "INSERT INTO bulk_export (id, requester, request, created_ms, types, since_ms,
                                          patients, status)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending')",
            )
            .await?;
        transaction
            .execute(
                &insert,
                &[
                    &export.id,
                    &export.requester,
                    &export.request,
                    &to_ms(export.created),
                    &types,
                    &export.since.map(to_ms),
                    &patients,
                ],
            )
            .await
            .map_err(|error| unique_violation(error, format!("bulk export {}", export.id)))?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        let created = export_by_id(&transaction, export.id)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("bulk export {}", export.id)))?;
        transaction.commit().await?;
        Ok(created)
    }

    async fn bulk_export(&self, id: Uuid) -> Result<Option<BulkExport>, StoreError> {
        let client = self.client().await?;
        export_by_id(&client, id).await
    }

    async fn open_bulk_exports_of(&self, requester: &str) -> Result<Vec<BulkExport>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM bulk_export
                 WHERE requester = $1 AND status IN ('pending', 'running') ORDER BY created_ms, key"
            ))
            .await?;
        client
            .query(&statement, &[&requester])
            .await?
            .iter()
            .map(export_from_row)
            .collect()
    }

    async fn claim_bulk_export(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<BulkExport>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "UPDATE bulk_export SET status = 'running', attempt = attempt + 1, lease_ms = $2,
                        progress = NULL
                 WHERE key = (SELECT key FROM bulk_export
                              WHERE status = 'pending' OR (status = 'running' AND lease_ms < $1)
                              ORDER BY created_ms, key LIMIT 1
                              FOR UPDATE SKIP LOCKED)
                 RETURNING {COLUMNS}"
            ))
            .await?;
        client
            .query_opt(&statement, &[&to_ms(now), &to_ms(lease_until)])
            .await?
            .map(|row| export_from_row(&row))
            .transpose()
    }

    async fn record_bulk_export_progress(
        &self,
        id: Uuid,
        attempt: u32,
        progress: String,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "UPDATE bulk_export SET progress = $3, lease_ms = $4
                 WHERE id = $1 AND attempt = $2 AND status = 'running'",
            )
            .await?;
        let changed = client
            .execute(
                &statement,
                &[&id, &i64::from(attempt), &progress, &to_ms(lease_until)],
            )
            .await?;
        Ok(changed == 1)
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
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "UPDATE bulk_export SET status = $3, outputs = $4, error = $5, finished_ms = $6,
                        expires_ms = $7, lease_ms = NULL, progress = NULL
                 WHERE id = $1 AND attempt = $2 AND status = 'running'",
            )
            .await?;
        let changed = client
            .execute(
                &statement,
                &[
                    &id,
                    &i64::from(attempt),
                    &status.as_str(),
                    &outputs,
                    &error,
                    &to_ms(at),
                    &to_ms(expires),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn cancel_bulk_export(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let statement = transaction
            .prepare_cached(
                "UPDATE bulk_export SET status = 'cancelled', finished_ms = $2, lease_ms = NULL
                 WHERE id = $1 AND status <> 'cancelled'",
            )
            .await?;
        let changed = transaction.execute(&statement, &[&id, &to_ms(at)]).await?;
        if changed == 0 {
            return Ok(false);
        }
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(true)
    }

    async fn ended_bulk_exports(&self, now: DateTime<Utc>) -> Result<Vec<Uuid>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT id FROM bulk_export
                 WHERE status = 'cancelled'
                    OR (status IN ('completed', 'failed') AND expires_ms <= $1)
                 ORDER BY key",
            )
            .await?;
        client
            .query(&statement, &[&to_ms(now)])
            .await?
            .iter()
            .map(|row| Ok(row.try_get(0)?))
            .collect()
    }

    async fn delete_bulk_export(&self, id: Uuid) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("DELETE FROM bulk_export WHERE id = $1")
            .await?;
        client.execute(&statement, &[&id]).await?;
        Ok(())
    }
}
