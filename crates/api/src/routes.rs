//! The route table.

mod alarms;
mod analytics;
mod clinical;
mod devices;
mod gateways;
mod people;

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::routing::{delete, get, post};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// Every route. The OpenAPI document in [`crate::openapi`] describes exactly these.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(crate::openapi::document))
        .route("/api/v1/auth/login", post(people::login))
        .route("/api/v1/auth/logout", post(people::logout))
        .route("/api/v1/me", get(people::me))
        .route(
            "/api/v1/users",
            get(people::list_users).post(people::create_user),
        )
        .route(
            "/api/v1/users/{user_id}/disable",
            post(people::disable_user),
        )
        .route(
            "/api/v1/care-teams",
            get(people::list_care_teams).post(people::create_care_team),
        )
        .route(
            "/api/v1/care-teams/{team_id}/members",
            post(people::add_care_team_member),
        )
        .route(
            "/api/v1/care-teams/{team_id}/patients",
            post(people::add_care_team_patient),
        )
        .route("/api/v1/audit", get(people::audit_log))
        .route(
            "/api/v1/patients",
            get(clinical::list_patients).post(clinical::create_patient),
        )
        .route("/api/v1/patients/{patient_id}", get(clinical::get_patient))
        .route(
            "/api/v1/patients/{patient_id}/devices",
            get(clinical::patient_devices),
        )
        .route(
            "/api/v1/patients/{patient_id}/observations",
            get(clinical::observations),
        )
        .route(
            "/api/v1/patients/{patient_id}/observations/summary",
            get(clinical::observation_summary),
        )
        .route(
            "/api/v1/patients/{patient_id}/observations/latest",
            get(clinical::latest_observations),
        )
        .route(
            "/api/v1/patients/{patient_id}/care-teams",
            get(people::patient_care_teams),
        )
        .route(
            "/api/v1/patients/{patient_id}/access-log",
            get(people::patient_access_log),
        )
        .route("/api/v1/observations/stream", get(clinical::ward_stream))
        .route(
            "/api/v1/patients/{patient_id}/observations/stream",
            get(clinical::observation_stream),
        )
        .route(
            "/api/v1/patients/{patient_id}/waveforms",
            get(clinical::waveforms),
        )
        .route(
            "/api/v1/patients/{patient_id}/reports/cgm",
            get(analytics::cgm_report),
        )
        .route(
            "/api/v1/patients/{patient_id}/rhythm-events",
            get(analytics::rhythm_events),
        )
        .route(
            "/api/v1/patients/{patient_id}/news2",
            get(analytics::news2_scores),
        )
        .route(
            "/api/v1/patients/{patient_id}/news2/latest",
            get(analytics::latest_news2),
        )
        .route(
            "/api/v1/devices",
            get(devices::list_devices).post(devices::enrol_device),
        )
        .route(
            "/api/v1/devices/{device_id}/assignments",
            post(devices::assign_device),
        )
        .route(
            "/api/v1/devices/{device_id}/revoke",
            post(devices::revoke_device),
        )
        .route(
            "/api/v1/devices/{device_id}/readings",
            post(devices::ingest_readings),
        )
        .route("/api/v1/gateways", get(gateways::list_gateways))
        .route("/api/v1/gateways/{gateway_id}", get(gateways::get_gateway))
        .route(
            "/api/v1/gateways/{gateway_id}/forward",
            post(gateways::forward),
        )
        .route(
            "/api/v1/patients/{patient_id}/care-plan",
            get(alarms::get_care_plan).put(alarms::put_care_plan),
        )
        .route(
            "/api/v1/patients/{patient_id}/care-plan/versions",
            get(alarms::care_plan_versions),
        )
        .route(
            "/api/v1/patients/{patient_id}/alarms",
            get(alarms::patient_alarms),
        )
        .route("/api/v1/alarms", get(alarms::inbox))
        .route("/api/v1/alarms/stream", get(alarms::stream))
        .route("/api/v1/alarms/{alarm_id}", get(alarms::get_alarm))
        .route(
            "/api/v1/alarms/{alarm_id}/acknowledge",
            post(alarms::acknowledge),
        )
        .route("/api/v1/alarms/{alarm_id}/resolve", post(alarms::resolve))
        .route("/api/v1/alarms/{alarm_id}/snooze", post(alarms::snooze))
        .route(
            "/api/v1/care-teams/{team_id}/escalation-policy",
            get(alarms::get_escalation_policy).put(alarms::put_escalation_policy),
        )
        .route(
            "/api/v1/care-teams/{team_id}/notification-channels",
            get(alarms::list_channels).post(alarms::create_channel),
        )
        .route(
            "/api/v1/care-teams/{team_id}/notification-channels/{channel_id}",
            delete(alarms::remove_channel),
        )
        .route(
            "/api/v1/devices/{device_id}/status",
            post(alarms::device_status),
        )
        .route(
            "/api/v1/notifications/dead-letters",
            get(alarms::dead_letters),
        )
        .route(
            "/api/v1/notifications/{notification_id}/retry",
            post(alarms::retry_dead_letter),
        )
        .merge(wardline_web::router())
        .fallback(|| async { ApiError::NotFound("route".into()) })
        .with_state(state)
}

async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> String {
    (state.metrics)()
}

/// `Json` whose rejections speak the API's error format.
pub(crate) struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::MissingJsonContentType(_) => {
                    ApiError::invalid("content-type", "expected application/json")
                }
                other => ApiError::InvalidRequest {
                    field: None,
                    message: other.body_text(),
                },
            }),
        }
    }
}

/// `Query` whose rejections speak the API's error format.
pub(crate) struct Params<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(ApiError::InvalidRequest {
                field: None,
                message: match rejection {
                    QueryRejection::FailedToDeserializeQueryString(error) => error.body_text(),
                    other => other.body_text(),
                },
            }),
        }
    }
}

/// The accounts with these ids, each read once; unknown ids are left out. For naming the
/// few people a page mentions without reading every account.
pub(crate) async fn users_by_id(
    state: &AppState,
    ids: impl IntoIterator<Item = wardline_domain::UserId>,
) -> Result<std::collections::HashMap<wardline_domain::UserId, wardline_store::User>, ApiError> {
    let mut users = std::collections::HashMap::new();
    for id in ids.into_iter().collect::<std::collections::HashSet<_>>() {
        if let Some(user) = state.store.user(id).await? {
            users.insert(id, user);
        }
    }
    Ok(users)
}

/// An optional RFC 3339 time from a query parameter.
pub(crate) fn optional_time(
    field: &str,
    text: Option<&str>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    text.map(|text| {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|time| time.with_timezone(&chrono::Utc))
            .map_err(|_| {
                ApiError::invalid(
                    field,
                    "expected an RFC 3339 timestamp, e.g. 2026-11-24T08:00:00Z",
                )
            })
    })
    .transpose()
}

pub(crate) fn parse_id<T: std::str::FromStr>(field: &str, text: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|error: T::Err| ApiError::invalid(field, error.to_string()))
}
