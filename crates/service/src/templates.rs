//! Mapping templates: an administrator registers, for a device model, the pair of
//! iomt-fhir templates that reads its messages, tries a version on a sample message,
//! and puts it in force; from then on that model's messages (over MQTT or HTTPS) are
//! read with it instead of format v1. Every step is audited.

use chrono::{DateTime, Utc};
use wardline_domain::{DeviceId, ObservationCode, PayloadError};
use wardline_mapping::{Mapping, TemplateError};
use wardline_store::{MappingTemplate, NewMappingTemplate, StoreError};

use crate::actor::Actor;
use crate::error::Error;
use crate::{Wardline, bounded};

/// A registered version and what of it will give no reading.
#[derive(Debug, Clone)]
pub struct CheckedTemplate {
    pub template: MappingTemplate,
    pub warnings: Vec<String>,
}

/// One reading a trial message gives.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialReading {
    pub type_name: String,
    pub value_name: String,
    pub code: ObservationCode,
    pub value: f64,
    pub original: Option<(f64, String)>,
    pub effective: DateTime<Utc>,
    /// "Heart rate 72 /min at 2026-12-06T10:00:00Z".
    pub description: String,
}

/// What a version would make of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateTrial {
    pub readings: Vec<TrialReading>,
    /// Measurements or values that give no reading, each with why.
    pub not_kept: Vec<String>,
    /// Why the message would be refused, if it would be.
    pub refused: Option<PayloadError>,
    /// Whether the measurements' device was checked against a device (only when a
    /// device was named for the trial).
    pub device_checked: bool,
}

/// The largest sample message a trial takes: a device message's limit is smaller.
const MAX_TRIAL_BYTES: usize = 1024 * 1024;

fn refused(error: TemplateError) -> Error {
    Error::InvalidRequest {
        field: error.problems.first().map(|problem| problem.field.clone()),
        message: format!(
            "the templates are not valid ({} problem{}): {error}",
            error.problems.len(),
            if error.problems.len() == 1 { "" } else { "s" }
        ),
    }
}

fn compile_stored(template: &MappingTemplate) -> Result<Mapping, Error> {
    Mapping::from_documents(
        template.device_template.as_bytes(),
        template.fhir_template.as_bytes(),
    )
    .map_err(|error| {
        Error::Internal(format!(
            "stored mapping template {} no longer compiles: {error}",
            template.id
        ))
    })
}

/// A version's text as it is kept: without a byte-order mark, which is not part of JSON.
fn kept_text(field: &str, bytes: &[u8]) -> Result<String, Error> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::invalid(field, "not UTF-8 text"))
}

impl Wardline {
    /// Loads the versions in force into ingest: at start, before devices connect.
    pub async fn load_mapping_templates(&self) -> Result<usize, Error> {
        let in_force = self.store.mapping_templates_in_force().await?;
        self.ingest.set_templates_in_force(&in_force);
        Ok(in_force.len())
    }

    /// Reloads the versions in force when they differ from those ingest holds (put in
    /// force or retired by another process, such as the command line): `true` when
    /// they changed.
    pub async fn refresh_mapping_templates(&self) -> Result<bool, Error> {
        let in_force = self.store.mapping_templates_in_force().await?;
        if self.ingest.holds_templates(&in_force) {
            return Ok(false);
        }
        self.ingest.set_templates_in_force(&in_force);
        Ok(true)
    }

    /// Registers the next version of a model's templates, as a draft (admin). Refused,
    /// with every problem named by its place, unless both documents are valid.
    pub async fn register_mapping_template(
        &self,
        actor: &Actor,
        model: &str,
        device_template: &[u8],
        fhir_template: &[u8],
    ) -> Result<CheckedTemplate, Error> {
        let model = bounded("model", model, 100)?;
        let allowed = self
            .require_admin(
                actor,
                "templates.register",
                None,
                Some(format!("model {model}")),
            )
            .await?;
        let mapping = Mapping::from_documents(device_template, fhir_template).map_err(refused)?;
        let id = random_id()?;
        let template = self
            .store
            .add_mapping_template(
                NewMappingTemplate {
                    id,
                    model,
                    device_template: kept_text("device_template", device_template)?,
                    fhir_template: kept_text("fhir_template", fhir_template)?,
                    created: self.now(),
                    created_by: actor.user().map(|user| user.id),
                },
                allowed.audit,
            )
            .await?;
        Ok(CheckedTemplate {
            template,
            warnings: mapping.warnings,
        })
    }

    /// Every version of every model, newest first (admin).
    pub async fn mapping_templates(&self, actor: &Actor) -> Result<Vec<CheckedTemplate>, Error> {
        self.require_admin_read(actor, "templates.list", None)
            .await?;
        self.store
            .mapping_templates()
            .await?
            .into_iter()
            .map(|template| {
                let warnings = compile_stored(&template)?.warnings;
                Ok(CheckedTemplate { template, warnings })
            })
            .collect()
    }

    pub async fn mapping_template(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<CheckedTemplate, Error> {
        self.require_admin_read(actor, "templates.read", Some(format!("template {id}")))
            .await?;
        let template = self.stored_template(id).await?;
        let warnings = compile_stored(&template)?.warnings;
        Ok(CheckedTemplate { template, warnings })
    }

    async fn stored_template(&self, id: &str) -> Result<MappingTemplate, Error> {
        self.store
            .mapping_template(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("mapping template {id}")))
    }

    /// What a version would make of `payload` (admin), without storing anything. With
    /// a device, the measurements must name it, as they must when it sends.
    pub async fn try_mapping_template(
        &self,
        actor: &Actor,
        id: &str,
        payload: &[u8],
        device_id: Option<&DeviceId>,
    ) -> Result<TemplateTrial, Error> {
        self.require_admin_read(actor, "templates.try", Some(format!("template {id}")))
            .await?;
        if payload.len() > MAX_TRIAL_BYTES {
            return Err(Error::PayloadTooLarge {
                limit: MAX_TRIAL_BYTES,
            });
        }
        let template = self.stored_template(id).await?;
        let mapping = compile_stored(&template)?;
        let device = match device_id {
            Some(device_id) => Some(
                self.store
                    .device(device_id)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("device {device_id}")))?,
            ),
            None => None,
        };
        let (sender, names): (&str, Vec<&str>) = match &device {
            Some(device) => (
                device.id.as_str(),
                vec![device.id.as_str(), device.serial.as_str()],
            ),
            None => ("trial-device", Vec::new()),
        };
        let now = self.now();
        Ok(
            match self.ingest.map(&mapping, sender, &names, payload, now) {
                Ok(mapped) => TemplateTrial {
                    readings: mapped
                        .readings
                        .into_iter()
                        .map(|mapped| {
                            let spec = mapped.reading.code.spec();
                            TrialReading {
                                description: format!(
                                    "{} {} {} at {}",
                                    spec.display,
                                    mapped.reading.value,
                                    spec.canonical_unit,
                                    mapped.reading.effective.to_rfc3339()
                                ),
                                type_name: mapped.type_name,
                                value_name: mapped.value_name,
                                code: mapped.reading.code,
                                value: mapped.reading.value,
                                original: mapped.reading.original,
                                effective: mapped.reading.effective,
                            }
                        })
                        .collect(),
                    not_kept: mapped.not_kept.iter().map(ToString::to_string).collect(),
                    refused: None,
                    device_checked: device.is_some(),
                },
                Err(error) => TemplateTrial {
                    readings: Vec::new(),
                    not_kept: Vec::new(),
                    refused: Some(error),
                    device_checked: device.is_some(),
                },
            },
        )
    }

    /// The version `id` and the admin's permission to change it, its audit entry naming
    /// the model and version.
    async fn template_change(
        &self,
        actor: &Actor,
        id: &str,
        action: &'static str,
    ) -> Result<(MappingTemplate, crate::access::Allowed), Error> {
        let template = self.stored_template(id).await?;
        let detail = format!("model {} version {}", template.model, template.version);
        let allowed = self
            .require_admin(actor, action, None, Some(detail))
            .await?;
        Ok((template, allowed))
    }

    /// Puts a version in force for its model, retiring the one that was (admin). Takes
    /// effect for the next message.
    pub async fn put_mapping_template_in_force(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<CheckedTemplate, Error> {
        let (template, allowed) = self
            .template_change(actor, id, "templates.in_force")
            .await?;
        let warnings = compile_stored(&template)?.warnings;
        let template = self
            .store
            .put_mapping_template_in_force(id, self.now(), allowed.audit)
            .await?;
        self.load_mapping_templates().await?;
        Ok(CheckedTemplate { template, warnings })
    }

    /// Takes a version out of force (admin): its model's messages are format v1 again.
    pub async fn retire_mapping_template(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<CheckedTemplate, Error> {
        let (template, allowed) = self.template_change(actor, id, "templates.retire").await?;
        let warnings = compile_stored(&template)?.warnings;
        let template = self
            .store
            .retire_mapping_template(id, self.now(), allowed.audit)
            .await
            .map_err(|error| match error {
                StoreError::Invalid(message) => Error::InvalidState(message),
                other => other.into(),
            })?;
        self.load_mapping_templates().await?;
        Ok(CheckedTemplate { template, warnings })
    }
}

/// 128 random bits as 32 hexadecimal digits.
fn random_id() -> Result<String, Error> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Internal("no randomness for a template id".into()))?;
    Ok(hex::encode(bytes))
}
