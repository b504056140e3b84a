//! [`TemplateStore`] on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::audit::append;
use super::rows::*;
use super::{SqliteStore, from_ms, to_ms};
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::templates::*;

const COLUMNS: &str = "id, model, version, device_template, fhir_template, status, created_ms, created_by, in_force_ms, retired_ms";

fn template_from_row(row: &Row<'_>) -> Result<MappingTemplate, StoreError> {
    let status: String = row.get(5)?;
    let created_by: Option<String> = row.get(7)?;
    Ok(MappingTemplate {
        id: row.get(0)?,
        model: row.get(1)?,
        version: u32::try_from(row.get::<_, i64>(2)?)
            .map_err(|_| StoreError::Corrupt("a template version out of range".into()))?,
        device_template: row.get(3)?,
        fhir_template: row.get(4)?,
        status: TemplateStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("template status {status:?}")))?,
        created: from_ms(row.get(6)?)?,
        created_by: created_by
            .map(|user| parse_uuid(&user, "user"))
            .transpose()?,
        in_force_from: row.get::<_, Option<i64>>(8)?.map(from_ms).transpose()?,
        retired: row.get::<_, Option<i64>>(9)?.map(from_ms).transpose()?,
    })
}

fn templates_where(
    connection: &Connection,
    condition: &str,
    value: &dyn rusqlite::ToSql,
) -> Result<Vec<MappingTemplate>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM mapping_template WHERE {condition} ORDER BY key DESC"
    ))?;
    let rows = statement.query_map([value], |row| Ok(template_from_row(row)))?;
    rows.map(|row| row?).collect()
}

fn template(connection: &Connection, id: &str) -> Result<MappingTemplate, StoreError> {
    templates_where(connection, "id = ?1", &id)?
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::not_found(format!("mapping template {id}")))
}

#[async_trait]
impl TemplateStore for SqliteStore {
    async fn add_mapping_template(
        &self,
        template: NewMappingTemplate,
        audit: AuditEvent,
    ) -> Result<MappingTemplate, StoreError> {
        self.write(move |connection| {
            let version: i64 = connection
                .prepare_cached(
                    "SELECT coalesce(max(version), 0) + 1 FROM mapping_template WHERE model = ?1",
                )?
                .query_row([&template.model], |row| row.get(0))?;
            connection
                .prepare_cached(
                    "INSERT INTO mapping_template
                     (id, model, version, device_template, fhir_template, status, created_ms, created_by)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'draft', ?6, ?7)",
                )?
                .execute(params![
                    template.id,
                    template.model,
                    version,
                    template.device_template,
                    template.fhir_template,
                    to_ms(template.created),
                    template.created_by.map(|user| user.to_string()),
                ])
                .map_err(|error| unique_violation(error, format!("mapping template {}", template.id)))?;
            append(connection, &[audit])?;
            self::template(connection, &template.id)
        })
        .await
    }

    async fn mapping_template(&self, id: &str) -> Result<Option<MappingTemplate>, StoreError> {
        let id = id.to_owned();
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM mapping_template WHERE id = ?1"
                ))?
                .query_row([&id], |row| Ok(template_from_row(row)))
                .optional()?
                .transpose()
        })
        .await
    }

    async fn mapping_templates(&self) -> Result<Vec<MappingTemplate>, StoreError> {
        self.read(|connection| templates_where(connection, "1 = ?1", &1))
            .await
    }

    async fn put_mapping_template_in_force(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<MappingTemplate, StoreError> {
        let id = id.to_owned();
        self.write(move |connection| {
            let chosen = template(connection, &id)?;
            if chosen.status == TemplateStatus::InForce {
                return Ok(chosen);
            }
            connection
                .prepare_cached(
                    "UPDATE mapping_template SET status = 'retired', retired_ms = ?2
                     WHERE model = ?1 AND status = 'in_force'",
                )?
                .execute(params![chosen.model, to_ms(at)])?;
            connection
                .prepare_cached(
                    "UPDATE mapping_template SET status = 'in_force', in_force_ms = ?2, retired_ms = NULL
                     WHERE id = ?1",
                )?
                .execute(params![id, to_ms(at)])?;
            append(connection, &[audit])?;
            template(connection, &id)
        })
        .await
    }

    async fn retire_mapping_template(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<MappingTemplate, StoreError> {
        let id = id.to_owned();
        self.write(move |connection| {
            let changed = connection
                .prepare_cached(
                    "UPDATE mapping_template SET status = 'retired', retired_ms = ?2
                     WHERE id = ?1 AND status = 'in_force'",
                )?
                .execute(params![id, to_ms(at)])?;
            let template = template(connection, &id)?;
            if changed == 0 {
                return Err(StoreError::Invalid(format!(
                    "mapping template {id} is {}, not in force",
                    template.status.as_str()
                )));
            }
            append(connection, &[audit])?;
            Ok(template)
        })
        .await
    }

    async fn mapping_templates_in_force(&self) -> Result<Vec<MappingTemplate>, StoreError> {
        self.read(|connection| templates_where(connection, "status = ?1", &"in_force"))
            .await
    }
}
