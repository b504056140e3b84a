//! The one table from errors to HTTP: every failure an API client can see has a stable
//! code, a status and a message. Internal causes are logged, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use wardline_domain::PayloadError;
use wardline_ingest::Rejection;
use wardline_store::StoreError;

/// Every error the API returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidRequest {
        field: Option<String>,
        message: String,
    },
    #[error(transparent)]
    InvalidPayload(PayloadError),
    #[error("authentication required")]
    Unauthenticated,
    #[error("wrong username or password")]
    BadLogin,
    #[error("not allowed")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0}")]
    DeviceNotAssigned(String),
    /// The resource is not in a state that allows the action (acknowledging a resolved
    /// alarm, a care plan version written concurrently).
    #[error("{0}")]
    InvalidState(String),
    #[error("payload is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("too many failed logins from this address; try again in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("service temporarily unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal(String),
}

/// `(status, stable code)` for each error: the table clients can rely on.
pub const ERROR_TABLE: &[(&str, u16, &str)] = &[
    (
        "invalid_request",
        400,
        "the request is malformed; `field` names the culprit",
    ),
    (
        "invalid_payload",
        400,
        "a device payload failed validation; `field` and `kind` say where and why",
    ),
    (
        "unauthenticated",
        401,
        "no valid session or device credential",
    ),
    ("bad_login", 401, "wrong username or password"),
    (
        "forbidden",
        403,
        "authenticated, but not allowed to do this (for example, not on the patient's care team)",
    ),
    ("not_found", 404, "no such resource"),
    ("conflict", 409, "the resource already exists"),
    (
        "device_not_assigned",
        409,
        "the device has no patient at the reading's time; nothing was stored",
    ),
    (
        "invalid_state",
        409,
        "the resource's state does not allow this (for example, acknowledging a resolved alarm)",
    ),
    ("payload_too_large", 413, "the body exceeds the size limit"),
    (
        "too_many_attempts",
        429,
        "too many failed logins for this username from this address; `Retry-After` says when to try again",
    ),
    (
        "unavailable",
        503,
        "storage is unavailable; nothing was stored, retry later",
    ),
    (
        "internal",
        500,
        "an unexpected failure; nothing was acknowledged",
    ),
];

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest { .. } => "invalid_request",
            ApiError::InvalidPayload(_) => "invalid_payload",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::BadLogin => "bad_login",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::DeviceNotAssigned(_) => "device_not_assigned",
            ApiError::InvalidState(_) => "invalid_state",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::TooManyAttempts { .. } => "too_many_attempts",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        let code = self.code();
        ERROR_TABLE
            .iter()
            .find(|(name, _, _)| *name == code)
            .and_then(|(_, status, _)| StatusCode::from_u16(*status).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { what } => ApiError::NotFound(what),
            StoreError::Conflict { what } => ApiError::Conflict(what),
            StoreError::Invalid(message) => ApiError::InvalidRequest {
                field: None,
                message,
            },
            StoreError::Closed | StoreError::CommitFailed(_) => {
                tracing::error!(%error, "storage unavailable");
                ApiError::Unavailable
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<wardline_alarms::AlarmsError> for ApiError {
    fn from(error: wardline_alarms::AlarmsError) -> Self {
        use wardline_alarms::AlarmsError as E;
        use wardline_alerting::AlertingError as A;
        match error {
            E::Alerting(A::IllegalTransition { .. } | A::UnknownAlarm(_)) => {
                ApiError::InvalidState(error.to_string())
            }
            E::Alerting(other) => ApiError::InvalidRequest {
                field: None,
                message: other.to_string(),
            },
            E::Store(StoreError::Conflict { what }) => {
                ApiError::InvalidState(format!("{what} was written concurrently; retry"))
            }
            E::Store(store) => store.into(),
            E::Invalid(message) => ApiError::InvalidRequest {
                field: None,
                message,
            },
            E::NotFound(what) => ApiError::NotFound(what),
            E::Stopped => ApiError::Unavailable,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::Payload(error) => ApiError::InvalidPayload(error),
            Rejection::NotAssigned { .. } => ApiError::DeviceNotAssigned(rejection.to_string()),
            Rejection::Revoked(_) | Rejection::UnknownDevice(_) => ApiError::Unauthenticated,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(cause = %cause, "internal error");
        }
        let status = self.status();
        let (field, kind) = match &self {
            ApiError::InvalidRequest { field, .. } => (field.as_deref(), None),
            ApiError::InvalidPayload(error) => {
                (Some(error.field.as_str()), Some(error.kind.as_str()))
            }
            _ => (None, None),
        };
        let message = match &self {
            ApiError::InvalidPayload(error) => error.reason.clone(),
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message,
                field,
                kind,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let ApiError::TooManyAttempts { retry_after_secs } = &self
            && let Ok(value) = axum::http::HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert("retry-after", value);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("5"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_in_the_table() {
        let samples = [
            ApiError::invalid("x", "y"),
            ApiError::Unauthenticated,
            ApiError::BadLogin,
            ApiError::Forbidden,
            ApiError::NotFound("p".into()),
            ApiError::Conflict("c".into()),
            ApiError::DeviceNotAssigned("d".into()),
            ApiError::InvalidState("s".into()),
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::TooManyAttempts {
                retry_after_secs: 1,
            },
            ApiError::Unavailable,
            ApiError::Internal("boom".into()),
        ];
        for error in samples {
            assert!(
                ERROR_TABLE.iter().any(|(code, _, _)| *code == error.code()),
                "{}",
                error.code()
            );
        }
        assert_eq!(ApiError::Forbidden.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            ApiError::PayloadTooLarge { limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
