//! SMART Backend Services (docs/fhir.md, "System-to-system access"): administrators
//! register a hospital's system with its public keys and care teams; the system gets an
//! access token at the token endpoint with an assertion signed by its private key, and
//! bulk exports with it. The SMART configuration document says how.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_domain::{CareTeamId, UserId};
use wardline_service::Error;
use wardline_service::backend_services::{ClientRegistration, TokenRequest};
use wardline_store::BackendClient;

use super::fhir::FHIR_BASE;
use crate::error::ApiError;
use crate::extract::{Body, Caller};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_clients, register_client))
        .routes(routes!(revoke_client))
        .routes(routes!(token))
        .routes(routes!(smart_configuration))
}

/// Where clients ask for tokens, under the API's base URL.
pub(crate) const TOKEN_PATH: &str = "/api/v1/oauth/token";

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RegisterClientRequest {
    /// What the client is, for the people who manage it: 1 to 200 characters.
    name: String,
    /// Its public keys, a JSON Web Key Set: RSA (2048 bits or more, RS384) or EC P-384
    /// (ES384) keys, each with its `kid`.
    #[schema(value_type = Object)]
    jwks: Value,
    /// The care teams whose patients it may export.
    care_team_ids: Vec<CareTeamId>,
}

/// A registered backend client.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BackendClientView {
    /// The `client_id` its assertions name as `iss` and `sub`.
    id: String,
    name: String,
    /// Its public keys as registered.
    #[schema(value_type = Object)]
    jwks: Value,
    care_team_ids: Vec<CareTeamId>,
    created: DateTime<Utc>,
    created_by: Option<UserId>,
    /// When it was revoked; it gets no token from then on.
    revoked: Option<DateTime<Utc>>,
}

impl From<BackendClient> for BackendClientView {
    fn from(client: BackendClient) -> Self {
        Self {
            jwks: serde_json::from_str(&client.jwks).unwrap_or(Value::Null),
            id: client.id,
            name: client.name,
            care_team_ids: client.care_teams,
            created: client.created,
            created_by: client.created_by,
            revoked: client.revoked,
        }
    }
}

/// Registers a hospital's system for SMART Backend Services (admin): its public keys
/// and the care teams whose patients it may bulk export.
#[utoipa::path(post, path = "/api/v1/backend-clients", tag = "backend clients",
    request_body = RegisterClientRequest,
    responses((status = 201, description = "The client and its client_id", body = BackendClientView)))]
pub(crate) async fn register_client(
    State(state): State<AppState>,
    caller: Caller,
    Body(request): Body<RegisterClientRequest>,
) -> Result<(StatusCode, Json<BackendClientView>), ApiError> {
    let client = state
        .service
        .register_backend_client(
            &caller.actor(),
            ClientRegistration {
                name: request.name,
                jwks: request.jwks,
                care_teams: request.care_team_ids,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(client.into())))
}

/// Every registered backend client, revoked ones included (admin).
#[utoipa::path(get, path = "/api/v1/backend-clients", tag = "backend clients",
    responses((status = 200, description = "The clients, oldest first", body = Vec<BackendClientView>)))]
pub(crate) async fn list_clients(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<BackendClientView>>, ApiError> {
    let clients = state.service.backend_clients(&caller.actor()).await?;
    Ok(Json(clients.into_iter().map(Into::into).collect()))
}

/// Revokes a backend client (admin): its tokens end at once and it gets no more.
#[utoipa::path(delete, path = "/api/v1/backend-clients/{client_id}", tag = "backend clients",
    params(("client_id" = String, Path, description = "The client's client_id")),
    responses((status = 204, description = "Revoked")))]
pub(crate) async fn revoke_client(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .revoke_backend_client(&caller.actor(), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The form a client posts to the token endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct TokenForm {
    /// `client_credentials`.
    grant_type: String,
    /// Space-separated system scopes: `system/*.rs`, `system/Observation.rs`, …
    scope: String,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    client_assertion_type: String,
    /// A JWT the client signed with one of its registered keys (RS384 or ES384; `iss`
    /// and `sub` its client_id, `aud` this endpoint's URL, `exp` at most five minutes
    /// ahead, a `jti` never used before).
    client_assertion: String,
}

/// An access token.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenAnswer {
    access_token: String,
    /// `bearer`.
    token_type: String,
    /// Seconds it lives.
    expires_in: i64,
    /// The scopes granted.
    scope: String,
}

/// An error of the token endpoint, as OAuth 2.0 writes it.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct OAuthError {
    /// invalid_request, invalid_client, unsupported_grant_type, invalid_scope or
    /// server_error.
    error: String,
    /// What was wrong, naming the form field when one is.
    error_description: String,
    /// Wardline's stable error code.
    wardline_code: String,
}

/// An error as OAuth 2.0 writes it (RFC 6749, section 5.2), which clients of a token
/// endpoint read; made from Wardline's error, whose code is kept beside it.
fn oauth_error(error: Error) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let code = match (&error, error.field()) {
        (Error::Unauthenticated, _) => "invalid_client",
        (_, Some("grant_type")) => "unsupported_grant_type",
        (_, Some("scope")) => "invalid_scope",
        (Error::Internal(_) | Error::Unavailable, _) => "server_error",
        _ => "invalid_request",
    };
    if let Error::Internal(cause) = &error {
        tracing::error!(cause = %cause, "internal error");
    }
    let description = match error.field() {
        Some(field) => format!("{field}: {}", error.message()),
        None => error.message(),
    };
    let mut response = (
        status,
        Json(
            json!({"error": code, "error_description": description, "wardline_code": error.code()}),
        ),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// The token endpoint of SMART Backend Services (`client_credentials`, with a signed
/// assertion as the client's credential): an access token for five minutes, for the
/// scopes granted. A client not registered, revoked, or whose assertion does not verify
/// or was used before, is answered 401 `invalid_client`.
#[utoipa::path(post, path = "/api/v1/oauth/token", tag = "backend clients", security(()),
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The access token", body = TokenAnswer),
        (status = 400, description = "An OAuth error (`error`: invalid_request, unsupported_grant_type, invalid_scope; `error_description`)", body = OAuthError),
        (status = 401, description = "An OAuth error: invalid_client", body = OAuthError),
        (status = 413, description = "An OAuth error: the form is too large", body = OAuthError),
        (status = 500, description = "An OAuth error: server_error", body = OAuthError),
        (status = 503, description = "An OAuth error: server_error", body = OAuthError)))]
pub(crate) async fn token(
    State(state): State<AppState>,
    connection: axum::extract::Request,
) -> Response {
    let remote = connection
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|axum::extract::ConnectInfo(address)| address.ip().to_string());
    let form = connection
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return oauth_error(Error::invalid(
            "content-type",
            "a token request is application/x-www-form-urlencoded",
        ));
    }
    let body = match axum::body::to_bytes(connection.into_body(), 64 * 1024).await {
        Ok(body) => body,
        Err(_) => return oauth_error(Error::PayloadTooLarge { limit: 64 * 1024 }),
    };
    let mut request = TokenRequest::default();
    for (name, value) in url::form_urlencoded::parse(&body) {
        let slot = match name.as_ref() {
            "grant_type" => &mut request.grant_type,
            "scope" => &mut request.scope,
            "client_assertion_type" => &mut request.client_assertion_type,
            "client_assertion" => &mut request.client_assertion,
            _ => continue,
        };
        if slot.is_some() {
            return oauth_error(Error::invalid(name.as_ref(), "given more than once"));
        }
        *slot = Some(value.into_owned());
    }
    let endpoint = format!("{}{TOKEN_PATH}", state.settings.http_url);
    match state
        .service
        .backend_token(request, &endpoint, remote)
        .await
    {
        Ok(issued) => {
            let mut response = Json(TokenAnswer {
                access_token: issued.access_token,
                token_type: "bearer".into(),
                expires_in: issued.expires_in,
                scope: issued.scope,
            })
            .into_response();
            response
                .headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(error) => oauth_error(error),
    }
}

/// How a client authorizes with this server (SMART App Launch's configuration): the
/// token endpoint, `private_key_jwt` with RS384 or ES384, `client_credentials`, and the
/// system scopes there are. Public.
#[utoipa::path(get, path = "/fhir/R4/.well-known/smart-configuration", tag = "fhir", security(()),
    responses((status = 200, description = "The SMART configuration", body = Object)))]
pub(crate) async fn smart_configuration(State(state): State<AppState>) -> Response {
    let mut scopes = vec!["system/*.rs".to_owned(), "system/*.read".to_owned()];
    scopes.extend(
        wardline_service::bulk_export::EXPORT_TYPES
            .iter()
            .map(|name| format!("system/{name}.rs")),
    );
    let base = &state.settings.http_url;
    Json(json!({
        "issuer": format!("{base}{FHIR_BASE}"),
        "token_endpoint": format!("{base}{TOKEN_PATH}"),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": scopes,
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    }))
    .into_response()
}
