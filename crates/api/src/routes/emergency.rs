//! Emergency ("break-the-glass") access: opened by a clinician or nurse for a patient
//! outside their care teams, reviewed by an administrator. The rules are the service's
//! (`wardline_service::emergency`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_domain::PatientId;
use wardline_store::EmergencyAccess;

use crate::error::ApiError;
use crate::extract::{Body, Caller, EmergencyAccessPath, Id, Params};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open_emergency_access, my_emergency_access))
        .routes(routes!(list_emergency_accesses))
        .routes(routes!(review_emergency_access))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct EmergencyAccessRequest {
    /// Why the patient's data is needed now, for the reviewer.
    #[schema(schema_with = wardline_domain::text_schema::trimmed_text_between::<10, 500>)]
    reason: String,
}

/// Opens emergency read access to a patient outside the caller's care teams (clinicians
/// and nurses), for a limited time (`access.emergency_minutes`, 60 by default). Reads
/// under it are audited as emergency access, changes stay with the care team, and an
/// administrator reviews every one.
#[utoipa::path(post, path = "/api/v1/patients/{patient_id}/emergency-access", tag = "emergency access",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    request_body = EmergencyAccessRequest,
    responses((status = 201, description = "The access, open until `expires`", body = EmergencyAccess)))]
pub(crate) async fn open_emergency_access(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Body(request): Body<EmergencyAccessRequest>,
) -> Result<(StatusCode, Json<EmergencyAccess>), ApiError> {
    let access = state
        .service
        .open_emergency_access(&caller.actor(), patient_id, &request.reason)
        .await?;
    Ok((StatusCode::CREATED, Json(access)))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MyEmergencyAccess {
    /// The caller's emergency access to the patient that is open now, if any.
    access: Option<EmergencyAccess>,
}

/// The caller's own emergency access to a patient, if one is open now.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/emergency-access", tag = "emergency access",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    responses((status = 200, description = "The open access, or none", body = MyEmergencyAccess)))]
pub(crate) async fn my_emergency_access(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
) -> Result<Json<MyEmergencyAccess>, ApiError> {
    let access = state
        .service
        .my_emergency_access(&caller.actor(), patient_id)
        .await?;
    Ok(Json(MyEmergencyAccess { access }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EmergencyAccessParams {
    /// Only those no administrator has reviewed yet.
    unreviewed: Option<bool>,
    /// At most this many: 1 to 1000 (default 100).
    limit: Option<u32>,
}

/// Emergency accesses, newest first (admin): the review list.
#[utoipa::path(get, path = "/api/v1/emergency-access", tag = "emergency access",
    params(EmergencyAccessParams),
    responses((status = 200, description = "Emergency accesses", body = Vec<EmergencyAccess>)))]
pub(crate) async fn list_emergency_accesses(
    State(state): State<AppState>,
    caller: Caller,
    Params(params): Params<EmergencyAccessParams>,
) -> Result<Json<Vec<EmergencyAccess>>, ApiError> {
    Ok(Json(
        state
            .service
            .emergency_accesses(
                &caller.actor(),
                params.unreviewed.unwrap_or(false),
                params.limit.unwrap_or(100),
            )
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct EmergencyAccessReviewRequest {
    /// What the reviewer checked and found.
    #[schema(schema_with = crate::schemas::trimmed_text::<1000>)]
    note: String,
}

/// Records an administrator's review of an emergency access. A review is final.
#[utoipa::path(post, path = "/api/v1/emergency-access/{access_id}/review", tag = "emergency access",
    params(("access_id" = uuid::Uuid, Path, description = "The emergency access")),
    request_body = EmergencyAccessReviewRequest,
    responses((status = 200, description = "The access with its review", body = EmergencyAccess)))]
pub(crate) async fn review_emergency_access(
    State(state): State<AppState>,
    caller: Caller,
    EmergencyAccessPath(access_id): EmergencyAccessPath,
    Body(request): Body<EmergencyAccessReviewRequest>,
) -> Result<Json<EmergencyAccess>, ApiError> {
    Ok(Json(
        state
            .service
            .review_emergency_access(&caller.actor(), access_id, &request.note)
            .await?,
    ))
}
