//! What wraps every request: an identifier (`x-request-id`, made here when the client sent
//! none, and returned), a tracing span, a bound on the body's size, a deadline, and the
//! latency histogram. Spans and metrics name the route template, never the identifiers in
//! the path: no patient or device id reaches a log line or a metric label.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use wardline_service::Error;

use crate::error::ApiError;

/// The largest request body accepted, but for gateway forwards (which carry thousands of
/// queued messages) and device readings (limited by the payload limits, with a precise
/// error).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Records how long each request took, by method, route template and status class.
async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let status = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::histogram!("wardline_http_request_duration_seconds", "method" => method, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A deadline for requests that answer once (not for live streams).
pub fn with_deadline<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    timeout: Duration,
) -> Router<S> {
    router.layer(TimeoutLayer::with_status_code(
        StatusCode::SERVICE_UNAVAILABLE,
        timeout,
    ))
}

/// A body limit of `bytes` for the routes of `router`.
pub fn with_body_limit<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    bytes: usize,
) -> Router<S> {
    router.layer(RequestBodyLimitLayer::new(bytes))
}

/// Request id, tracing span and latency histogram for every route of `router`.
pub fn observed<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http().make_span_with(|request: &Request| {
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map(|path| path.as_str().to_owned());
                    let id = request
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        route = route.as_deref().unwrap_or("unmatched"),
                        request_id = %id,
                    )
                }),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(axum::middleware::from_fn(observe))
            .layer(axum::middleware::from_fn(errors_in_json)),
    )
}

/// The body limit and the deadline answer for themselves (413 and 503) in plain text;
/// a client of the API gets every error in the one JSON body, with its code.
async fn errors_in_json(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if json {
        return response;
    }
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError(Error::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        })
        .into_response(),
        StatusCode::SERVICE_UNAVAILABLE => ApiError(Error::Unavailable).into_response(),
        _ => response,
    }
}
