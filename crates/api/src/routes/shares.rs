//! A patient's shares with specialists outside their care teams. The rules are the
//! service's (`wardline_service::sharing`); reads through a share go through the same
//! patient routes as everyone's, cut to the share by the one access check.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_domain::sharing::ShareCategory;
use wardline_service::sharing::ShareRequest;
use wardline_store::Share;

use crate::error::ApiError;
use crate::extract::{Body, Caller, SharePath};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_share, own_shares))
        .routes(routes!(revoke_share))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CreateShare {
    /// The specialist's Wardline user name.
    #[schema(min_length = 3, max_length = 64)]
    grantee_username: String,
    /// What the specialist may see.
    #[schema(min_items = 1)]
    categories: Vec<ShareCategory>,
    /// The data measured in the last so many days, and from then on while the share
    /// lasts. Give this, or `data_from` and `data_to`.
    #[schema(minimum = 1, maximum = 3650)]
    data_last_days: Option<i64>,
    /// The start of a fixed window of data (with `data_to`).
    data_from: Option<DateTime<Utc>>,
    /// The end of a fixed window of data (with `data_from`).
    data_to: Option<DateTime<Utc>>,
    /// Days until the share ends (default 30; at most the server's `access.max_share_days`).
    #[schema(minimum = 1, maximum = 365)]
    expires_in_days: Option<i64>,
    /// A note for the specialist.
    #[schema(schema_with = wardline_domain::text_schema::trimmed_text_between::<0, 500>)]
    message: Option<String>,
}

/// Shares part of the caller's own record (patients) with a specialist: categories of
/// data, a window of time the data was measured in, and an expiry. Reads through it are
/// audited with the share's id and appear in the patient's access log.
#[utoipa::path(post, path = "/api/v1/me/shares", tag = "sharing",
    request_body = CreateShare,
    responses((status = 201, description = "The share, live until `expires`", body = Share)))]
pub(crate) async fn create_share(
    State(state): State<AppState>,
    caller: Caller,
    Body(request): Body<CreateShare>,
) -> Result<(StatusCode, Json<Share>), ApiError> {
    let data_range = match (request.data_from, request.data_to) {
        (Some(from), Some(to)) => Some((from, to)),
        (None, None) => None,
        _ => {
            return Err(wardline_service::Error::invalid(
                "data_from",
                "data_from and data_to go together",
            )
            .into());
        }
    };
    let share = state
        .service
        .create_share(
            &caller.actor(),
            ShareRequest {
                grantee_username: request.grantee_username,
                categories: request.categories,
                data_last_days: request.data_last_days,
                data_range,
                expires_in_days: request.expires_in_days,
                message: request.message,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(share)))
}

/// Every share of the caller's own record (patients), newest first: live, expired and
/// revoked.
#[utoipa::path(get, path = "/api/v1/me/shares", tag = "sharing",
    responses((status = 200, description = "The shares", body = Vec<Share>)))]
pub(crate) async fn own_shares(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Share>>, ApiError> {
    Ok(Json(state.service.own_shares(&caller.actor()).await?))
}

/// Ends one of the caller's shares at once (patients).
#[utoipa::path(post, path = "/api/v1/me/shares/{share_id}/revoke", tag = "sharing",
    params(("share_id" = uuid::Uuid, Path, description = "The share")),
    responses((status = 204, description = "Revoked")))]
pub(crate) async fn revoke_share(
    State(state): State<AppState>,
    caller: Caller,
    SharePath(share_id): SharePath,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .revoke_share(&caller.actor(), share_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
