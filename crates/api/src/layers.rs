//! What wraps every request: an identifier (`x-request-id`, made here when the client sent
//! none, and returned), a tracing span, a bound on the body's size, a deadline, and the
//! latency histogram. Spans and metrics name the route template, never the identifiers in
//! the path: no patient or device id reaches a log line or a metric label.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, StatusCode, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http_body::{Frame, SizeHint};
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

/// How much of a refused HTTP/2 body is read and dropped so that its answer arrives intact
/// (see [`drain_refused_bodies`]), and for how long at most.
const DRAIN_BYTES: usize = 4 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(3);
/// At most this many refused bodies are drained at once; beyond, the stream is reset,
/// so that many slow refused uploads cannot hold the server's time.
const DRAINS_AT_ONCE: usize = 16;
static DRAINS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(DRAINS_AT_ONCE);

/// A request body that the middleware can take back after the inner service is done
/// with it, to read what the service left unread.
struct SharedBody(Arc<Mutex<Option<Body>>>);

impl HttpBody for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let Ok(mut slot) = self.0.lock() else {
            return Poll::Ready(None);
        };
        match slot.as_mut() {
            Some(body) => Pin::new(body).poll_frame(context),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0
            .lock()
            .map(|slot| slot.as_ref().is_none_or(HttpBody::is_end_stream))
            .unwrap_or(true)
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .lock()
            .ok()
            .and_then(|slot| slot.as_ref().map(HttpBody::size_hint))
            .unwrap_or_default()
    }
}

/// Over HTTP/2, a request refused (413 for its size, 401 for a wrong credential, ...)
/// before the server read all of its body is answered while the client is still sending;
/// the server then resets the stream (with `NO_ERROR`, as RFC 9113 allows), and some
/// clients (curl among them) report the reset instead of the answer. So the rest of a
/// refused request's body, up to [`DRAIN_BYTES`] and for at most [`DRAIN_TIME`], is read
/// and dropped before the answer goes out: the client finishes sending and reads why it
/// was refused. A larger or slower body, or one beyond [`DRAINS_AT_ONCE`] being drained,
/// still ends in the reset.
pub async fn drain_refused_bodies(request: Request, next: Next) -> Response {
    if request.version() != Version::HTTP_2 {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let slot = Arc::new(Mutex::new(Some(body)));
    let shared = Body::new(SharedBody(Arc::clone(&slot)));
    let response = next.run(Request::from_parts(parts, shared)).await;
    if response.status().is_success() {
        return response;
    }
    let rest = slot.lock().ok().and_then(|mut slot| slot.take());
    if let (Some(rest), Ok(_permit)) = (rest, DRAINS.try_acquire()) {
        let mut data = rest.into_data_stream();
        let mut read = 0usize;
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            while let Some(Ok(chunk)) = data.next().await {
                read = read.saturating_add(chunk.len());
                if read > DRAIN_BYTES {
                    break;
                }
            }
        })
        .await;
    }
    response
}

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
            .layer(axum::middleware::from_fn(errors_in_json))
            .layer(axum::middleware::from_fn(drain_refused_bodies)),
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
