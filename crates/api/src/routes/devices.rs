//! Devices: enrolment by admins, and what devices themselves send over HTTPS.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_domain::topics::{errors_topic, readings_topic};
use wardline_domain::{DeviceId, DeviceKind, PatientId, PayloadError, PayloadErrorKind};
use wardline_service::device_certificates::IssuedDeviceCertificate;
use wardline_service::devices::{DeviceStatusReport, Enrolment};
use wardline_service::ingest::count_rejection;
use wardline_service::{Error, MessageVerdict, Rejection};
use wardline_store::Device;

use crate::error::ApiError;
use crate::extract::{Body, Caller, DeviceCaller, Id};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices, enrol_device))
        .routes(routes!(assign_device))
        .routes(routes!(revoke_device))
        .routes(routes!(issue_device_certificate))
        .routes(routes!(device_status))
}

/// Device readings: limited by the payload limits (with a precise error), not by the
/// API's body limit.
pub(crate) fn ingest_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ingest_readings))
}

/// Every device (admin).
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices",
    responses((status = 200, description = "Devices by id", body = Vec<Device>)))]
pub(crate) async fn list_devices(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Device>>, ApiError> {
    Ok(Json(state.service.list_devices(&caller.actor()).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct EnrolRequest {
    kind: DeviceKind,
    #[schema(schema_with = crate::schemas::trimmed_text::<100>)]
    model: String,
    #[schema(schema_with = crate::schemas::trimmed_text::<100>)]
    serial: String,
    /// 3 to 64 characters from `[A-Za-z0-9_-]`; a random `dev_…` identifier when absent.
    device_id: Option<DeviceId>,
    /// Assign to this patient from now on, in the same commit; refused, and nothing
    /// created, when there is no such patient.
    patient_id: Option<PatientId>,
}

/// Everything a device maker needs, returned once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EnrolledDevice {
    device: Device,
    /// Shown only now; Wardline keeps only its hash.
    secret: String,
    mqtt: MqttSettingsBody,
    http: HttpSettingsBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MqttSettingsBody {
    url: String,
    username: String,
    client_id: String,
    publish_topic: String,
    errors_topic: String,
    qos: u8,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HttpSettingsBody {
    url: String,
    authorization: &'static str,
}

/// Enrols a device (admin): its credential, shown once, and how it connects.
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices",
    request_body = EnrolRequest,
    responses((status = 201, description = "The device, its secret and connection settings", body = EnrolledDevice)))]
pub(crate) async fn enrol_device(
    State(state): State<AppState>,
    caller: Caller,
    Body(request): Body<EnrolRequest>,
) -> Result<(StatusCode, Json<EnrolledDevice>), ApiError> {
    let enrolled = state
        .service
        .enrol_device(
            &caller.actor(),
            Enrolment {
                kind: request.kind,
                model: request.model,
                serial: request.serial,
                device_id: request.device_id,
                patient_id: request.patient_id,
            },
        )
        .await?;
    let device_id = enrolled.device.id.clone();
    Ok((
        StatusCode::CREATED,
        Json(EnrolledDevice {
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
            secret: enrolled.secret.expose().to_owned(),
            device: enrolled.device,
        }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct AssignRequest {
    patient_id: PatientId,
    /// From when; now if absent.
    from: Option<DateTime<Utc>>,
}

/// Assigns a device to a patient from a time on (admin).
#[utoipa::path(post, path = "/api/v1/devices/{device_id}/assignments", tag = "devices",
    params(("device_id" = DeviceId, Path, description = "The device")),
    request_body = AssignRequest,
    responses((status = 204, description = "Assigned")))]
pub(crate) async fn assign_device(
    State(state): State<AppState>,
    caller: Caller,
    Id(device_id): Id<DeviceId>,
    Body(request): Body<AssignRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .assign_device(
            &caller.actor(),
            &device_id,
            request.patient_id,
            request.from,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes a device's credential (admin); its live connections end at once.
#[utoipa::path(post, path = "/api/v1/devices/{device_id}/revoke", tag = "devices",
    params(("device_id" = DeviceId, Path, description = "The device")),
    responses((status = 204, description = "Revoked")))]
pub(crate) async fn revoke_device(
    State(state): State<AppState>,
    caller: Caller,
    Id(device_id): Id<DeviceId>,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .revoke_device(&caller.actor(), &device_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CertificateRequest {
    /// The device's PKCS #10 certificate signing request, PEM, signed with the key the
    /// device keeps. Only its public key is used: the certificate's names, usage and
    /// validity are Wardline's.
    #[schema(min_length = 1, max_length = 16384)]
    certificate_signing_request: String,
}

/// Issues a certificate to a device from its certificate signing request (admin): the
/// device may then connect over mutual TLS (MQTT and HTTPS) with it instead of its
/// secret. Revoking the device refuses every certificate it holds at once.
#[utoipa::path(post, path = "/api/v1/devices/{device_id}/certificate", tag = "devices",
    params(("device_id" = DeviceId, Path, description = "The device")),
    request_body = CertificateRequest,
    responses((status = 201, description = "The certificate and the CA it chains to", body = IssuedDeviceCertificate)))]
pub(crate) async fn issue_device_certificate(
    State(state): State<AppState>,
    caller: Caller,
    Id(device_id): Id<DeviceId>,
    Body(request): Body<CertificateRequest>,
) -> Result<(StatusCode, Json<IssuedDeviceCertificate>), ApiError> {
    let issued = state
        .service
        .issue_device_certificate(
            &caller.actor(),
            &device_id,
            &request.certificate_signing_request,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IngestResponse {
    /// Readings (or the chunk) newly stored.
    stored: usize,
    /// Readings stored before (a retry): acknowledged, not stored again.
    duplicates: usize,
}

/// A device posts one payload (a reading, a batch, or a waveform chunk, format v1 of
/// docs/device-protocol.md; or its own JSON, when a mapping template is in force for its
/// model) with its secret as the bearer token. `200` comes only after
/// the commit; a retried post reports duplicates and stores nothing.
#[utoipa::path(post, path = "/api/v1/devices/{device_id}/readings", tag = "device protocol",
    params(("device_id" = DeviceId, Path, description = "The device")),
    request_body(content = String, description = "Device payload v1 (JSON)", content_type = "application/json"),
    responses((status = 200, description = "Durably stored", body = IngestResponse)),
    security(("device_secret" = [])))]
pub(crate) async fn ingest_readings(
    State(state): State<AppState>,
    DeviceCaller(device): DeviceCaller,
    body: axum::body::Body,
) -> Result<Json<IngestResponse>, ApiError> {
    let ingest = state.service.ingest();
    let limit = ingest.limits().max_bytes;
    // Reads at most `limit` bytes, however large the body claims or turns out to be.
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        count_rejection(
            "http",
            &Rejection::Payload(PayloadError {
                kind: PayloadErrorKind::TooLarge,
                field: "$".into(),
                reason: format!("the limit is {limit} bytes"),
            }),
        );
        return Err(Error::PayloadTooLarge { limit }.into());
    };
    let message = ingest.parse_from(&device, &body).map_err(|error| {
        count_rejection("http", &Rejection::Payload(error.clone()));
        Error::InvalidPayload(error)
    })?;
    let verdicts = ingest.store(&device.id, "http", vec![message]).await?;
    match verdicts.into_iter().next() {
        Some(MessageVerdict::Stored { new, duplicates }) => Ok(Json(IngestResponse {
            stored: new,
            duplicates,
        })),
        Some(MessageVerdict::Rejected(rejection)) => Err(Error::from(rejection).into()),
        None => Err(Error::Internal("no verdict for a stored message".into()).into()),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceStatusRequest {
    /// Remaining battery, 0 to 100 %.
    #[schema(minimum = 0, maximum = 100)]
    battery_percent: Option<f64>,
    /// The device's fault, 1 to 200 bytes without control characters, or null when it
    /// reports none.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    fault: Option<String>,
}

/// A device reports its battery and faults (device credential), for the technical alarms
/// of its patient's care plan. Stored, then evaluated; `202` once stored.
#[utoipa::path(post, path = "/api/v1/devices/{device_id}/status", tag = "device protocol",
    params(("device_id" = DeviceId, Path, description = "The device")),
    request_body = DeviceStatusRequest,
    responses((status = 202, description = "Stored; alarm rules will evaluate it")),
    security(("device_secret" = [])))]
pub(crate) async fn device_status(
    State(state): State<AppState>,
    DeviceCaller(device): DeviceCaller,
    Body(request): Body<DeviceStatusRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .report_device_status(
            &device,
            DeviceStatusReport {
                battery_percent: request.battery_percent,
                fault: request.fault,
            },
        )
        .await?;
    Ok(StatusCode::ACCEPTED)
}
