//! Device enrolment and HTTP ingest.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use wardline_domain::{DeviceId, DeviceKind, PatientId};
use wardline_ingest::mqtt::{errors_topic, readings_topic};
use wardline_ingest::{DeviceSecret, MessageVerdict};
use wardline_store::{Device, DeviceStatus, NewDevice};

use super::{Body, parse_id};
use crate::access::require_admin;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn list_devices(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Device>>, ApiError> {
    require_admin(&state, &caller, "devices.list", None).await?;
    Ok(Json(state.store.devices().await?))
}

#[derive(Deserialize)]
pub(crate) struct EnrolRequest {
    kind: String,
    model: String,
    serial: String,
    /// Optional; a random `dev_…` identifier otherwise.
    device_id: Option<String>,
    /// Optionally assign to a patient from now on.
    patient_id: Option<String>,
}

/// Everything a device maker needs, returned once.
#[derive(Serialize)]
pub(crate) struct EnrolledDevice {
    device: Device,
    /// Shown only now; Wardline keeps only its hash.
    secret: String,
    mqtt: MqttSettingsBody,
    http: HttpSettingsBody,
}

#[derive(Serialize)]
pub(crate) struct MqttSettingsBody {
    url: String,
    username: String,
    client_id: String,
    publish_topic: String,
    errors_topic: String,
    qos: u8,
}

#[derive(Serialize)]
pub(crate) struct HttpSettingsBody {
    url: String,
    authorization: &'static str,
}

fn bounded(field: &str, text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() || text.len() > 100 {
        return Err(ApiError::invalid(field, "1 to 100 characters"));
    }
    Ok(())
}

pub(crate) async fn enrol_device(
    State(state): State<AppState>,
    caller: Caller,
    Body(request): Body<EnrolRequest>,
) -> Result<(StatusCode, Json<EnrolledDevice>), ApiError> {
    let kind: DeviceKind = parse_id("kind", &request.kind)?;
    bounded("model", &request.model)?;
    bounded("serial", &request.serial)?;
    let device_id = match request.device_id.as_deref() {
        Some(text) => parse_id::<DeviceId>("device_id", text)?,
        None => DeviceId::random(),
    };
    let patient_id: Option<PatientId> = request
        .patient_id
        .as_deref()
        .map(|id| parse_id("patient_id", id))
        .transpose()?;
    require_admin(
        &state,
        &caller,
        "devices.enrol",
        Some(device_id.to_string()),
    )
    .await?;
    let secret =
        DeviceSecret::generate().map_err(|_| ApiError::Internal("no randomness".into()))?;
    let device = state
        .store
        .create_device(NewDevice {
            id: device_id.clone(),
            kind,
            model: request.model,
            serial: request.serial,
            secret_hash: secret.hash(),
        })
        .await?;
    if let Some(patient_id) = patient_id {
        state
            .store
            .assign_device(&device_id, patient_id, Utc::now())
            .await?;
    }
    let enrolled = EnrolledDevice {
        mqtt: MqttSettingsBody {
            url: state.settings.mqtt_url.clone(),
            username: device_id.to_string(),
            client_id: device_id.to_string(),
            publish_topic: readings_topic(&device_id),
            errors_topic: errors_topic(&device_id),
            qos: 1,
        },
        http: HttpSettingsBody {
            url: format!(
                "{}/api/v1/devices/{device_id}/readings",
                state.settings.http_url
            ),
            authorization: "Bearer <secret>",
        },
        device,
        secret: secret.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(enrolled)))
}

#[derive(Deserialize)]
pub(crate) struct AssignRequest {
    patient_id: String,
    /// From when; now if absent.
    from: Option<DateTime<Utc>>,
}

pub(crate) async fn assign_device(
    State(state): State<AppState>,
    caller: Caller,
    Path(device_id): Path<String>,
    Body(request): Body<AssignRequest>,
) -> Result<StatusCode, ApiError> {
    let device_id: DeviceId = parse_id("device_id", &device_id)?;
    let patient_id: PatientId = parse_id("patient_id", &request.patient_id)?;
    require_admin(
        &state,
        &caller,
        "devices.assign",
        Some(device_id.to_string()),
    )
    .await?;
    state
        .store
        .assign_device(
            &device_id,
            patient_id,
            request.from.unwrap_or_else(Utc::now),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn revoke_device(
    State(state): State<AppState>,
    caller: Caller,
    Path(device_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let device_id: DeviceId = parse_id("device_id", &device_id)?;
    require_admin(
        &state,
        &caller,
        "devices.revoke",
        Some(device_id.to_string()),
    )
    .await?;
    state
        .store
        .set_device_status(&device_id, DeviceStatus::Revoked)
        .await?;
    state.devices.disconnect(&device_id);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
pub(crate) struct IngestResponse {
    stored: usize,
    duplicates: usize,
}

/// A device posts one payload (a reading, a batch, or a waveform chunk) with its secret.
/// 200 comes only after the commit; a retried post reports duplicates and stores nothing.
pub(crate) async fn ingest_readings(
    State(state): State<AppState>,
    Path(device_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<IngestResponse>, ApiError> {
    let device = crate::auth::authenticated_device(&state, &device_id, &headers).await?;
    let limit = state.ingest.limits().max_bytes;
    // Reads at most `limit` bytes, however large the body claims or turns out to be.
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        let rejection = wardline_ingest::Rejection::Payload(wardline_domain::PayloadError {
            kind: wardline_domain::PayloadErrorKind::TooLarge,
            field: "$".into(),
            reason: format!("the limit is {limit} bytes"),
        });
        wardline_ingest::pipeline::count_rejection("http", &rejection);
        return Err(ApiError::PayloadTooLarge { limit });
    };
    let message = state.ingest.parse(&body).map_err(|error| {
        let rejection = wardline_ingest::Rejection::Payload(error.clone());
        wardline_ingest::pipeline::count_rejection("http", &rejection);
        ApiError::InvalidPayload(error)
    })?;
    let verdicts = state
        .ingest
        .store(&device.id, "http", vec![message])
        .await?;
    match verdicts.into_iter().next() {
        Some(MessageVerdict::Stored { new, duplicates }) => Ok(Json(IngestResponse {
            stored: new,
            duplicates,
        })),
        Some(MessageVerdict::Rejected(rejection)) => Err(rejection.into()),
        None => Err(ApiError::Internal("no verdict for a stored message".into())),
    }
}
