//! Mapping templates (docs/mapping-templates.md): an administrator registers, for a
//! device model, a pair of iomt-fhir templates, tries a version on a sample message and
//! puts it in force; that model's devices then send their own JSON.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_domain::{DeviceId, ObservationCode, PayloadError};
use wardline_service::Error;
use wardline_service::templates::{CheckedTemplate, TemplateTrial};
use wardline_store::{MappingTemplate, TemplateStatus};

use crate::error::ApiError;
use crate::extract::{Body, Caller, TemplatePath};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_template, list_templates))
        .routes(routes!(get_template))
        .routes(routes!(try_template))
        .routes(routes!(put_template_in_force))
        .routes(routes!(retire_template))
}

/// A template version.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TemplateBody {
    /// 32 hexadecimal digits.
    id: String,
    /// The device model whose messages it reads.
    model: String,
    version: u32,
    status: TemplateStatus,
    created: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_force_from: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retired: Option<DateTime<Utc>>,
    /// What of the pair gives no reading: a type without a FHIR mapping, a code Wardline
    /// does not store, a unit that does not fit its code.
    warnings: Vec<String>,
    /// The device content template, as registered.
    #[schema(value_type = Object)]
    device_template: Value,
    /// The FHIR mapping template, as registered.
    #[schema(value_type = Object)]
    fhir_template: Value,
}

fn template_body(template: MappingTemplate, warnings: Vec<String>) -> Result<TemplateBody, Error> {
    let document = |text: &str| {
        serde_json::from_str(text)
            .map_err(|error| Error::Internal(format!("a stored template is not JSON: {error}")))
    };
    Ok(TemplateBody {
        device_template: document(&template.device_template)?,
        fhir_template: document(&template.fhir_template)?,
        id: template.id,
        model: template.model,
        version: template.version,
        status: template.status,
        created: template.created,
        in_force_from: template.in_force_from,
        retired: template.retired,
        warnings,
    })
}

fn checked_body(checked: CheckedTemplate) -> Result<TemplateBody, Error> {
    template_body(checked.template, checked.warnings)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterTemplate {
    /// The device model, as devices are enrolled with it (1 to 100 characters).
    #[schema(min_length = 1, max_length = 100)]
    model: String,
    /// An iomt-fhir device content template: `CollectionContent`, or one
    /// `JsonPathContent`, `IotJsonPathContent`, `IotCentralJsonPathContent` or
    /// `CalculatedContent`.
    #[schema(value_type = Object)]
    device_template: Value,
    /// An iomt-fhir FHIR mapping template: `CollectionFhir`, or one `CodeValueFhir`.
    #[schema(value_type = Object)]
    fhir_template: Value,
}

/// Registers the next version of a device model's templates, as a draft (admin). Both
/// documents are validated: a problem is answered with `400`, naming every problem by
/// its place (`device_template.template[1].template.typeName: missing`). The answer's
/// `warnings` say what of a valid pair will give no reading.
#[utoipa::path(post, path = "/api/v1/mapping-templates", tag = "mapping templates",
    request_body = RegisterTemplate,
    responses((status = 201, description = "Registered as a draft", body = TemplateBody)))]
pub(crate) async fn register_template(
    State(state): State<AppState>,
    caller: Caller,
    Body(request): Body<RegisterTemplate>,
) -> Result<(StatusCode, Json<TemplateBody>), ApiError> {
    let device = serde_json::to_vec(&request.device_template)
        .map_err(|error| Error::Internal(error.to_string()))?;
    let fhir = serde_json::to_vec(&request.fhir_template)
        .map_err(|error| Error::Internal(error.to_string()))?;
    let checked = state
        .service
        .register_mapping_template(&caller.actor(), &request.model, &device, &fhir)
        .await?;
    Ok((StatusCode::CREATED, Json(checked_body(checked)?)))
}

/// Every version of every model, newest first (admin).
#[utoipa::path(get, path = "/api/v1/mapping-templates", tag = "mapping templates",
    responses((status = 200, description = "Versions, newest first", body = Vec<TemplateBody>)))]
pub(crate) async fn list_templates(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TemplateBody>>, ApiError> {
    let templates = state.service.mapping_templates(&caller.actor()).await?;
    Ok(Json(
        templates
            .into_iter()
            .map(checked_body)
            .collect::<Result<_, _>>()?,
    ))
}

/// One version (admin).
#[utoipa::path(get, path = "/api/v1/mapping-templates/{template_id}", tag = "mapping templates",
    params(("template_id" = String, Path, description = "The version", pattern = "^[0-9a-f]{32}$")),
    responses((status = 200, description = "The version", body = TemplateBody)))]
pub(crate) async fn get_template(
    State(state): State<AppState>,
    caller: Caller,
    TemplatePath(id): TemplatePath,
) -> Result<Json<TemplateBody>, ApiError> {
    let checked = state.service.mapping_template(&caller.actor(), &id).await?;
    Ok(Json(checked_body(checked)?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrialRequest {
    /// A message as the device would send it.
    #[schema(value_type = Object)]
    payload: Value,
    /// The device that would send it: the measurements must then name it, as they must
    /// when it sends. Without one, the device a message names is not checked.
    #[serde(default)]
    device_id: Option<DeviceId>,
}

/// A reading a trial message gives.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TrialReadingBody {
    /// "Heart rate 72 /min at 2026-12-06T10:00:00+00:00".
    description: String,
    /// The device template's type and value it came from.
    type_name: String,
    value_name: String,
    code: ObservationCode,
    loinc: &'static str,
    value: f64,
    unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_unit: Option<String>,
    effective: DateTime<Utc>,
}

/// What a version would make of a message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TrialBody {
    readings: Vec<TrialReadingBody>,
    /// What gives no reading, and why.
    not_kept: Vec<String>,
    /// Why the message would be refused (the device would hear this).
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<PayloadError>,
    /// Whether the device a message names was checked (only when a device was given).
    device_checked: bool,
}

fn trial_body(trial: TemplateTrial) -> TrialBody {
    TrialBody {
        readings: trial
            .readings
            .into_iter()
            .map(|reading| {
                let spec = reading.code.spec();
                TrialReadingBody {
                    description: reading.description,
                    type_name: reading.type_name,
                    value_name: reading.value_name,
                    code: reading.code,
                    loinc: spec.loinc,
                    value: reading.value,
                    unit: spec.canonical_unit,
                    original_value: reading.original.as_ref().map(|(value, _)| *value),
                    original_unit: reading.original.map(|(_, unit)| unit),
                    effective: reading.effective,
                }
            })
            .collect(),
        not_kept: trial.not_kept,
        refused: trial.refused,
        device_checked: trial.device_checked,
    }
}

/// Tries a version on a sample message, storing nothing (admin): "this payload would
/// give: Heart rate 72 /min at …", or why it would be refused.
#[utoipa::path(post, path = "/api/v1/mapping-templates/{template_id}/trial", tag = "mapping templates",
    params(("template_id" = String, Path, description = "The version", pattern = "^[0-9a-f]{32}$")),
    request_body = TrialRequest,
    responses((status = 200, description = "What the message would give", body = TrialBody)))]
pub(crate) async fn try_template(
    State(state): State<AppState>,
    caller: Caller,
    TemplatePath(id): TemplatePath,
    Body(request): Body<TrialRequest>,
) -> Result<Json<TrialBody>, ApiError> {
    let payload =
        serde_json::to_vec(&request.payload).map_err(|error| Error::Internal(error.to_string()))?;
    let trial = state
        .service
        .try_mapping_template(&caller.actor(), &id, &payload, request.device_id.as_ref())
        .await?;
    Ok(Json(trial_body(trial)))
}

/// Puts a version in force for its model, retiring the one that was (admin): the next
/// message of every device of the model is read with it.
#[utoipa::path(post, path = "/api/v1/mapping-templates/{template_id}/in-force", tag = "mapping templates",
    params(("template_id" = String, Path, description = "The version", pattern = "^[0-9a-f]{32}$")),
    responses((status = 200, description = "In force", body = TemplateBody)))]
pub(crate) async fn put_template_in_force(
    State(state): State<AppState>,
    caller: Caller,
    TemplatePath(id): TemplatePath,
) -> Result<Json<TemplateBody>, ApiError> {
    let checked = state
        .service
        .put_mapping_template_in_force(&caller.actor(), &id)
        .await?;
    Ok(Json(checked_body(checked)?))
}

/// Takes a version out of force (admin): the model's devices are read as format v1
/// again. `409` unless it is in force.
#[utoipa::path(post, path = "/api/v1/mapping-templates/{template_id}/retire", tag = "mapping templates",
    params(("template_id" = String, Path, description = "The version", pattern = "^[0-9a-f]{32}$")),
    responses((status = 200, description = "Retired", body = TemplateBody)))]
pub(crate) async fn retire_template(
    State(state): State<AppState>,
    caller: Caller,
    TemplatePath(id): TemplatePath,
) -> Result<Json<TemplateBody>, ApiError> {
    let checked = state
        .service
        .retire_mapping_template(&caller.actor(), &id)
        .await?;
    Ok(Json(checked_body(checked)?))
}
