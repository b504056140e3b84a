//! [`TemplateStore`] on PostgreSQL.
//!
//! A registration numbers its model's next version from the versions there are, and
//! putting a version in force retires the one that was; both read before they write, so
//! they lock the table against each other's writes (reads go on), and two workers never
//! draw one version number or put two versions of a model in force. Such changes are an
//! administrator's, and rare.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;
use wardline_domain::UserId;

use super::PostgresStore;
use super::audit::append;
use super::rows::*;
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::templates::{MappingTemplate, NewMappingTemplate, TemplateStatus, TemplateStore};

const COLUMNS: &str = "id, model, version, device_template, fhir_template, status, created_ms, \
                       created_by, in_force_ms, retired_ms";

/// The lock the changes that read before they write take first (see the module's
/// documentation). It conflicts with itself and with every other write of the table.
const LOCK: &str = "LOCK TABLE mapping_template IN SHARE ROW EXCLUSIVE MODE";

fn template_from_row(row: &Row) -> Result<MappingTemplate, StoreError> {
    let status: &str = row.try_get(5)?;
    Ok(MappingTemplate {
        id: row.try_get(0)?,
        model: row.try_get(1)?,
        version: u32::try_from(row.try_get::<_, i32>(2)?)
            .map_err(|_| StoreError::Corrupt("a template version out of range".into()))?,
        device_template: row.try_get(3)?,
        fhir_template: row.try_get(4)?,
        status: TemplateStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("template status {status:?}")))?,
        created: from_ms(row.try_get(6)?)?,
        created_by: row.try_get::<_, Option<Uuid>>(7)?.map(UserId),
        in_force_from: row.try_get::<_, Option<i64>>(8)?.map(from_ms).transpose()?,
        retired: row.try_get::<_, Option<i64>>(9)?.map(from_ms).transpose()?,
    })
}

async fn find(client: &impl GenericClient, id: &str) -> Result<Option<MappingTemplate>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM mapping_template WHERE id = $1"
        ))
        .await?;
    client
        .query_opt(&statement, &[&id])
        .await?
        .map(|row| template_from_row(&row))
        .transpose()
}

async fn template(client: &impl GenericClient, id: &str) -> Result<MappingTemplate, StoreError> {
    find(client, id)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("mapping template {id}")))
}

/// The versions `condition` selects, newest first.
async fn templates_where(
    client: &impl GenericClient,
    condition: &str,
) -> Result<Vec<MappingTemplate>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM mapping_template WHERE {condition} ORDER BY key DESC"
        ))
        .await?;
    client
        .query(&statement, &[])
        .await?
        .iter()
        .map(template_from_row)
        .collect()
}

#[async_trait]
impl TemplateStore for PostgresStore {
    async fn add_mapping_template(
        &self,
        template: NewMappingTemplate,
        audit: AuditEvent,
    ) -> Result<MappingTemplate, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        transaction.batch_execute(LOCK).await?;
        let version: i32 = transaction
            .query_one(
                "SELECT coalesce(max(version), 0) + 1 FROM mapping_template WHERE model = $1",
                &[&template.model],
            )
            .await?
            .try_get(0)?;
        transaction
            .execute(
                "INSERT INTO mapping_template
                 (id, model, version, device_template, fhir_template, status, created_ms, created_by)
                 VALUES ($1, $2, $3, $4, $5, 'draft', $6, $7)",
                &[
                    &template.id,
                    &template.model,
                    &version,
                    &template.device_template,
                    &template.fhir_template,
                    &to_ms(template.created),
                    &template.created_by.map(|user| user.0),
                ],
            )
            .await
            .map_err(|error| unique_violation(error, format!("mapping template {}", template.id)))?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        let added = self::template(&transaction, &template.id).await?;
        transaction.commit().await?;
        Ok(added)
    }

    async fn mapping_template(&self, id: &str) -> Result<Option<MappingTemplate>, StoreError> {
        find(&self.client().await?, id).await
    }

    async fn mapping_templates(&self) -> Result<Vec<MappingTemplate>, StoreError> {
        templates_where(&self.client().await?, "true").await
    }

    async fn put_mapping_template_in_force(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<MappingTemplate, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        transaction.batch_execute(LOCK).await?;
        let chosen = template(&transaction, id).await?;
        if chosen.status == TemplateStatus::InForce {
            return Ok(chosen);
        }
        transaction
            .execute(
                "UPDATE mapping_template SET status = 'retired', retired_ms = $2
                 WHERE model = $1 AND status = 'in_force'",
                &[&chosen.model, &to_ms(at)],
            )
            .await?;
        transaction
            .execute(
                "UPDATE mapping_template SET status = 'in_force', in_force_ms = $2, retired_ms = NULL
                 WHERE id = $1",
                &[&id, &to_ms(at)],
            )
            .await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        let in_force = template(&transaction, id).await?;
        transaction.commit().await?;
        Ok(in_force)
    }

    async fn retire_mapping_template(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<MappingTemplate, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let changed = transaction
            .execute(
                "UPDATE mapping_template SET status = 'retired', retired_ms = $2
                 WHERE id = $1 AND status = 'in_force'",
                &[&id, &to_ms(at)],
            )
            .await?;
        let template = template(&transaction, id).await?;
        if changed == 0 {
            return Err(StoreError::Invalid(format!(
                "mapping template {id} is {}, not in force",
                template.status.as_str()
            )));
        }
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(template)
    }

    async fn mapping_templates_in_force(&self) -> Result<Vec<MappingTemplate>, StoreError> {
        templates_where(&self.client().await?, "status = 'in_force'").await
    }
}
