//! Home gateways (docs/gateway.md): their status for admins, and the forward route they
//! send their queues to.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_domain::DeviceId;
use wardline_service::Error;
use wardline_service::gateways::{ForwardRequest, ForwardResponse, MAX_FORWARD_BYTES};
use wardline_store::GatewayStatus;

use crate::error::ApiError;
use crate::extract::{Caller, DeviceCaller, GatewayPath, Remote};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_gateways))
        .routes(routes!(get_gateway))
}

/// The forward route: its own body limit, for thousands of queued messages at once.
pub(crate) fn forward_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(forward))
}

/// Every gateway with its last contact, backlog and clock offset (admin).
#[utoipa::path(get, path = "/api/v1/gateways", tag = "gateways",
    responses((status = 200, description = "Gateways", body = Vec<GatewayStatus>)))]
pub(crate) async fn list_gateways(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<GatewayStatus>>, ApiError> {
    Ok(Json(state.service.gateways(&caller.actor()).await?))
}

/// One gateway's status (admin).
#[utoipa::path(get, path = "/api/v1/gateways/{gateway_id}", tag = "gateways",
    params(("gateway_id" = DeviceId, Path, description = "The gateway")),
    responses((status = 200, description = "The gateway", body = GatewayStatus)))]
pub(crate) async fn get_gateway(
    State(state): State<AppState>,
    caller: Caller,
    GatewayPath(gateway_id): GatewayPath,
) -> Result<Json<GatewayStatus>, ApiError> {
    Ok(Json(
        state.service.gateway(&caller.actor(), &gateway_id).await?,
    ))
}

/// A gateway forwards queued device messages (and reports its backlog and clock), with
/// its own secret as the bearer token. `200` comes only after every stored message is
/// committed, with a verdict per message; an empty `messages` is a heartbeat.
#[utoipa::path(post, path = "/api/v1/gateways/{gateway_id}/forward", tag = "device protocol",
    params(("gateway_id" = DeviceId, Path, description = "The gateway")),
    request_body = ForwardRequest,
    responses((status = 200, description = "A verdict per message", body = ForwardResponse)),
    security(("device_secret" = [])))]
pub(crate) async fn forward(
    State(state): State<AppState>,
    DeviceCaller(gateway): DeviceCaller,
    Remote(remote): Remote,
    body: axum::body::Body,
) -> Result<Json<ForwardResponse>, ApiError> {
    let Ok(body) = axum::body::to_bytes(body, MAX_FORWARD_BYTES).await else {
        return Err(Error::PayloadTooLarge {
            limit: MAX_FORWARD_BYTES,
        }
        .into());
    };
    let request: ForwardRequest = serde_json::from_slice(&body)
        .map_err(|error| Error::invalid("$", format!("not a gateway forward request: {error}")))?;
    Ok(Json(
        state.service.forward(&gateway, request, remote).await?,
    ))
}
