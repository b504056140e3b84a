//! What operators and tools read: liveness, metrics and this API's description.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_service::Error;

use crate::error::ApiError;
use crate::extract::Caller;
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_document))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain")),
    security(()))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Prometheus metrics (admin; a scraper reads them from the metrics listener instead).
/// No label holds a patient or device identifier.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    state
        .service
        .require_admin_read(&caller.actor(), "metrics.read", None)
        .await?;
    let render = state.metrics.as_ref().ok_or(Error::Unavailable)?;
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], render()))
}

/// This document: the OpenAPI 3.1 description of the API, generated from its code.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = Object)),
    security(()))]
pub(crate) async fn openapi_document() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi())
}
