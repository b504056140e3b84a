//! [`TemplateStore`] on PostgreSQL: not ported yet; every method says so.

// Placeholders until the port: remove with the last of them.
#![allow(unused_variables, unused_imports)]

use crate::*;

use super::PostgresStore;
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::templates::TemplateStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wardline_domain::UserId;

#[async_trait]
impl TemplateStore for PostgresStore {
    async fn add_mapping_template(
        &self,
        template: NewMappingTemplate,
        audit: AuditEvent,
    ) -> Result<MappingTemplate, StoreError> {
        Err(StoreError::Unported("TemplateStore::add_mapping_template"))
    }

    async fn mapping_template(&self, id: &str) -> Result<Option<MappingTemplate>, StoreError> {
        Err(StoreError::Unported("TemplateStore::mapping_template"))
    }

    async fn mapping_templates(&self) -> Result<Vec<MappingTemplate>, StoreError> {
        Err(StoreError::Unported("TemplateStore::mapping_templates"))
    }

    async fn put_mapping_template_in_force(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<MappingTemplate, StoreError> {
        Err(StoreError::Unported(
            "TemplateStore::put_mapping_template_in_force",
        ))
    }

    async fn retire_mapping_template(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<MappingTemplate, StoreError> {
        Err(StoreError::Unported(
            "TemplateStore::retire_mapping_template",
        ))
    }

    async fn mapping_templates_in_force(&self) -> Result<Vec<MappingTemplate>, StoreError> {
        Err(StoreError::Unported(
            "TemplateStore::mapping_templates_in_force",
        ))
    }
}
