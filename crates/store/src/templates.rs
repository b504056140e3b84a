//! Mapping templates: for a device model whose messages are not Wardline's own format, the
//! pair of iomt-fhir templates (device content and FHIR mapping) that reads them. Each
//! registration of a model is a new version; at most one version of a model is in force,
//! and a version is tried before it is put in force. The documents are kept as they were
//! sent, so a version reads the same tomorrow as it did when it was checked.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wardline_domain::UserId;

use crate::audit::AuditEvent;
use crate::error::StoreError;

/// Where a version stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateStatus {
    /// Registered and checked; not yet reading messages.
    Draft,
    /// Reading every message of its model.
    InForce,
    /// Was in force, and is no more.
    Retired,
}

impl TemplateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::InForce => "in_force",
            Self::Retired => "retired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Draft, Self::InForce, Self::Retired]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// A version to register.
#[derive(Debug, Clone)]
pub struct NewMappingTemplate {
    /// 32 lower-case hexadecimal digits.
    pub id: String,
    pub model: String,
    pub device_template: String,
    pub fhir_template: String,
    pub created: DateTime<Utc>,
    pub created_by: Option<UserId>,
}

/// A registered version.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingTemplate {
    pub id: String,
    pub model: String,
    /// 1 for a model's first registration, then one more each time.
    pub version: u32,
    pub device_template: String,
    pub fhir_template: String,
    pub status: TemplateStatus,
    pub created: DateTime<Utc>,
    pub created_by: Option<UserId>,
    /// When it was last put in force, and when it was retired.
    pub in_force_from: Option<DateTime<Utc>>,
    pub retired: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// Registers the next version of the template's model, as a draft, in one commit
    /// with the audit entry.
    async fn add_mapping_template(
        &self,
        template: NewMappingTemplate,
        audit: AuditEvent,
    ) -> Result<MappingTemplate, StoreError>;
    async fn mapping_template(&self, id: &str) -> Result<Option<MappingTemplate>, StoreError>;
    /// Every version, of every model, newest first.
    async fn mapping_templates(&self) -> Result<Vec<MappingTemplate>, StoreError>;
    /// Puts the version in force and retires the one of its model that was, in one
    /// commit with the audit entry. `NotFound` for an unknown id; a retired version may
    /// be put back in force (a roll-back).
    async fn put_mapping_template_in_force(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<MappingTemplate, StoreError>;
    /// Retires the version (its model's messages are read as Wardline's own format
    /// again), in one commit with the audit entry. `Conflict` unless it is in force.
    async fn retire_mapping_template(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<MappingTemplate, StoreError>;
    /// The versions in force, one per model at most.
    async fn mapping_templates_in_force(&self) -> Result<Vec<MappingTemplate>, StoreError>;
}
