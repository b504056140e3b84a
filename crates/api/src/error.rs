//! How an [`Error`] of the service layer is written in HTTP: its status, and the body
//! `{"error": {"code", "message", "field"?, "kind"?}}`. Internal causes are logged, never
//! sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use wardline_service::Error;

/// An error as the HTTP API answers it.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable: clients branch on it (see the error codes in the API description).
    pub code: String,
    pub message: String,
    /// The request field (or JSON path of a device payload) at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For a refused device payload, the kind of fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = self.0;
        if let Error::Internal(cause) = &error {
            tracing::error!(cause = %cause, "internal error");
        }
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                code: error.code().to_owned(),
                message: error.message(),
                field: error.field().map(str::to_owned),
                kind: error.kind().map(str::to_owned),
            },
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert("www-authenticate", HeaderValue::from_static("Bearer"));
        }
        if let Error::TooManyAttempts { retry_after_secs }
        | Error::TooManyInvitations { retry_after_secs }
        | Error::TooManyExports {
            retry_after_secs, ..
        } = &error
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            headers.insert("retry-after", value);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert("retry-after", HeaderValue::from_static("5"));
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is never read, so this connection cannot carry another
            // request; saying so keeps a client from reusing it and failing its next one.
            headers.insert("connection", HeaderValue::from_static("close"));
        }
        response
    }
}
