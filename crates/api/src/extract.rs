//! Extractors whose refusals speak the API's error format: the session of the person
//! calling, a device's credential, JSON bodies, query strings and typed path identifiers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use wardline_domain::{CareTeamId, DeviceId, PatientId, UserId};
use wardline_service::{Actor, Error, Person, SessionUse};

use crate::error::ApiError;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "wardline_session";
/// The header the web app sends with every request. A request that changes state and
/// is authenticated by the session cookie (not by a bearer token) must carry it: a form
/// or link from another site cannot set a custom header, so this backs up the cookie's
/// `SameSite=Strict` against cross-site request forgery.
pub const CSRF_HEADER: &str = "x-wardline-request";
/// The header a screen sends when it refreshes itself (a poll on a timer) rather than
/// acting for its person: such a request does not keep the session from ending for
/// idleness.
pub const REFRESH_HEADER: &str = "x-wardline-refresh";

/// The token from `Authorization: Bearer` or, for the web app, the session cookie.
pub fn presented_token(parts: &Parts) -> Option<String> {
    if let Some(token) = bearer(parts) {
        return Some(token);
    }
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

fn bearer(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.strip_prefix("Bearer "))
        .map(|token| token.trim().to_owned())
}

pub fn remote_addr(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
}

/// The person calling, authenticated by their session.
#[derive(Debug, Clone)]
pub struct Caller(pub Person);

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor::Person(self.0.clone())
    }
}

/// The token and how the request uses its session, after the cross-site request
/// forgery check.
fn session_request(parts: &Parts) -> Result<(String, SessionUse), ApiError> {
    let token = presented_token(parts).ok_or(Error::Unauthenticated)?;
    let by_bearer = bearer(parts).is_some();
    if !by_bearer && !parts.method.is_safe() && !parts.headers.contains_key(CSRF_HEADER) {
        return Err(Error::CsrfHeaderMissing {
            field: CSRF_HEADER.into(),
            message: "a request that changes state with the session cookie must send `X-Wardline-Request: 1`".into(),
        }
        .into());
    }
    // Only a read can be a refresh: a change is always someone acting. A live stream is
    // never activity: a browser's EventSource cannot send the refresh header, and it
    // reconnects by itself (after a network blip or a server restart), so an
    // unattended screen would otherwise keep its session alive.
    let streaming = parts
        .headers
        .get(axum::http::header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"))
        || parts.uri.path().ends_with("/stream");
    let used =
        if parts.method.is_safe() && (streaming || parts.headers.contains_key(REFRESH_HEADER)) {
            SessionUse::Refresh
        } else {
            SessionUse::Action
        };
    Ok((token, used))
}

/// The session's person, for any operation or (`for_account`) for what an account may
/// do while it must change its password.
async fn session_person(
    parts: &Parts,
    state: &AppState,
    for_account: bool,
) -> Result<Person, ApiError> {
    let (token, used) = session_request(parts)?;
    let service = &state.service;
    let remote = remote_addr(parts);
    Ok(if for_account {
        service
            .authenticate_for_account(&token, remote, used)
            .await?
    } else {
        service.authenticate(&token, remote, used).await?
    })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        session_person(parts, state, false).await.map(Caller)
    }
}

/// Who asks for a bulk export: a backend client with its access token (SMART Backend
/// Services), or a person with their session.
#[derive(Debug, Clone)]
pub struct ExportCaller(pub Actor);

impl ExportCaller {
    pub fn actor(&self) -> Actor {
        self.0.clone()
    }
}

impl FromRequestParts<AppState> for ExportCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(token) = bearer(parts)
            && token.starts_with(wardline_service::backend_services::CLIENT_TOKEN_PREFIX)
        {
            return Ok(ExportCaller(
                state
                    .service
                    .authenticate_backend_client(&token, remote_addr(parts))
                    .await?,
            ));
        }
        session_person(parts, state, false)
            .await
            .map(|person| ExportCaller(Actor::Person(person)))
    }
}

/// The person calling, for what an account may do while it must change its password
/// (change it, read its own account, log out).
#[derive(Debug, Clone)]
pub struct AccountCaller(pub Person);

impl FromRequestParts<AppState> for AccountCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        session_person(parts, state, true).await.map(AccountCaller)
    }
}

/// The client certificate a TLS connection presented (checked against the device CA by
/// the TLS layer), by the SHA-256 of its DER: the server puts it in each request's
/// extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCertificate(pub [u8; 32]);

/// A device presenting its secret as `Authorization: Bearer`, or a client certificate
/// over TLS, for every route a device calls, identified by the path's `{device_id}` or
/// `{gateway_id}`. A secret, when sent, decides.
#[derive(Debug, Clone)]
pub struct DeviceCaller(pub wardline_store::Device);

impl FromRequestParts<AppState> for DeviceCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let params = path_params(parts, state).await?;
        let device_id = params
            .get("device_id")
            .or_else(|| params.get("gateway_id"))
            .ok_or(Error::Unauthenticated)?;
        let device = match (bearer(parts), parts.extensions.get::<ClientCertificate>()) {
            (Some(secret), _) => {
                state
                    .service
                    .authenticate_device(device_id, secret.as_bytes())
                    .await?
            }
            (None, Some(ClientCertificate(fingerprint))) => {
                state
                    .service
                    .authenticate_device_by_certificate(device_id, *fingerprint)
                    .await?
            }
            (None, None) => return Err(Error::Unauthenticated.into()),
        };
        Ok(DeviceCaller(device))
    }
}

/// `Json` whose rejections speak the API's error format.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::MissingJsonContentType(_) => {
                    Error::invalid("content-type", "expected application/json")
                }
                JsonRejection::BytesRejection(_) => Error::PayloadTooLarge {
                    limit: crate::layers::MAX_BODY_BYTES,
                },
                JsonRejection::JsonDataError(error) => {
                    // "Failed to deserialize …: {path}: {reason}": name the field.
                    let text = error.body_text();
                    let detail = text
                        .split_once("target type: ")
                        .map_or(text.as_str(), |(_, detail)| detail);
                    match detail.split_once(": ") {
                        Some((path, reason)) if !path.contains(' ') => {
                            Error::invalid(path, reason.to_owned())
                        }
                        _ => Error::InvalidRequest {
                            field: None,
                            message: text.clone(),
                        },
                    }
                }
                other => Error::InvalidRequest {
                    field: None,
                    message: other.body_text(),
                },
            }
            .into()),
        }
    }
}

/// `Query` whose rejections speak the API's error format.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(Error::InvalidRequest {
                field: None,
                message: match rejection {
                    QueryRejection::FailedToDeserializeQueryString(error) => error.body_text(),
                    other => other.body_text(),
                },
            }
            .into()),
        }
    }
}

async fn path_params(
    parts: &mut Parts,
    state: &AppState,
) -> Result<HashMap<String, String>, ApiError> {
    Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map(|Path(params)| params)
        .map_err(|rejection| {
            ApiError(Error::InvalidRequest {
                field: None,
                message: rejection.body_text(),
            })
        })
}

/// An identifier named in the path, parsed into its type; a malformed one is refused
/// naming the parameter.
pub trait PathId: FromStr<Err: std::fmt::Display> + Send {
    const NAME: &'static str;
}

impl PathId for PatientId {
    const NAME: &'static str = "patient_id";
}
impl PathId for UserId {
    const NAME: &'static str = "user_id";
}
impl PathId for CareTeamId {
    const NAME: &'static str = "team_id";
}
impl PathId for DeviceId {
    const NAME: &'static str = "device_id";
}

/// The path's identifier of type `T` (e.g. `Id<PatientId>` reads `{patient_id}`).
#[derive(Debug, Clone, Copy)]
pub struct Id<T>(pub T);

impl<T: PathId> FromRequestParts<AppState> for Id<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let params = path_params(parts, state).await?;
        let text = params
            .get(T::NAME)
            .ok_or_else(|| Error::Internal(format!("route has no {{{}}}", T::NAME)))?;
        text.parse::<T>()
            .map(Id)
            .map_err(|error| Error::invalid(T::NAME, error.to_string()).into())
    }
}

/// The path parameter `name` as text (alarm and channel handles).
pub async fn path_text(
    parts: &mut Parts,
    state: &AppState,
    name: &str,
) -> Result<String, ApiError> {
    path_params(parts, state)
        .await?
        .remove(name)
        .ok_or_else(|| ApiError(Error::Internal(format!("route has no {{{name}}}"))))
}

/// A query string's parameters in order, repeated ones included (Nightscout's `find[…]`,
/// FHIR's repeatable `date`), for the protocols whose parameters are not one struct.
pub fn query_pairs(uri: &axum::http::Uri) -> Result<Vec<(String, String)>, Error> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|query| query.0)
        .map_err(|error| Error::invalid("query", format!("the query string is malformed: {error}")))
}

/// An optional RFC 3339 time from a query parameter.
pub fn optional_time(
    field: &str,
    text: Option<&str>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Error> {
    text.map(|text| {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|time| time.with_timezone(&chrono::Utc))
            .map_err(|_| {
                Error::invalid(
                    field,
                    "expected an RFC 3339 timestamp, e.g. 2026-11-24T08:00:00Z",
                )
            })
    })
    .transpose()
}

pub fn parse<T: FromStr>(field: &str, text: &str) -> Result<T, Error>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|error: T::Err| Error::invalid(field, error.to_string()))
}

macro_rules! path_extractor {
    ($(#[$doc:meta])* $name:ident($inner:ty) from $param:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub $inner);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, Self::Rejection> {
                let text = path_text(parts, state, $param).await?;
                Ok($name(parse($param, &text)?))
            }
        }
    };
}

path_extractor!(
    /// `{alarm_id}`: an alarm's public handle.
    AlarmPath(String) from "alarm_id"
);
path_extractor!(
    /// `{channel_id}`: a notification channel.
    ChannelPath(String) from "channel_id"
);
path_extractor!(
    /// `{template_id}`: a mapping template version.
    TemplatePath(String) from "template_id"
);
path_extractor!(
    /// `{notification_id}`: an outbox entry.
    NotificationPath(i64) from "notification_id"
);
path_extractor!(
    /// `{access_id}`: an emergency access.
    EmergencyAccessPath(uuid::Uuid) from "access_id"
);
path_extractor!(
    /// `{share_id}`: a patient's share.
    SharePath(uuid::Uuid) from "share_id"
);
path_extractor!(
    /// `{visit_id}`: a telehealth visit.
    VisitPath(uuid::Uuid) from "visit_id"
);
path_extractor!(
    /// `{gateway_id}`: a gateway device.
    GatewayPath(DeviceId) from "gateway_id"
);

/// The client's address, when the connection has one (not in in-process tests).
#[derive(Debug, Clone)]
pub struct Remote(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Remote {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Remote(remote_addr(parts)))
    }
}
