//! The local listener devices send to: the same `POST /api/v1/devices/{id}/readings`
//! as the server's, answered `200` only once the message is durably queued.
//!
//! A device sends its local credential for this gateway as `Authorization: Bearer` (never
//! its secret: see `wardline_domain::local_device`). The gateway checks it against the
//! verifier the server gave it for that device ([`crate::local_devices`]), so a stranger
//! on the home network cannot have readings queued in a patient's name; the server still
//! decides, per message, whether this gateway may speak for the device.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::json;
use wardline_domain::DeviceId;

use crate::clock::check_message;
use crate::queue::NewMessage;
use crate::{GatewayError, Shared};

pub fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/status", get(status))
        .route("/api/v1/devices/{device_id}/readings", post(readings))
        .with_state(shared)
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// How often an unknown device may make the gateway ask the server for its list.
const DEVICE_LIST_ASK_INTERVAL_MS: u64 = 5_000;

async fn readings(
    State(shared): State<Arc<Shared>>,
    Path(device_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Ok(device_id) = DeviceId::parse(&device_id) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "not a device id".into(),
        );
    };
    let secret = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let admitted =
        secret.is_some_and(|credential| shared.local_devices.admits(&device_id, credential));
    if !admitted {
        shared
            .counters
            .refused_devices
            .fetch_add(1, Ordering::Relaxed);
        ask_for_device_list(&shared);
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "send the device's local credential for this gateway as Authorization: Bearer; a device assigned only now is known at the gateway's next contact with the server: keep the reading and retry".into(),
        );
    }
    let limit = shared.config.limits.max_bytes;
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the limit is {limit} bytes"),
        );
    };
    let checked = match check_message(
        &body,
        shared.clock.server_now(),
        shared.config.max_device_skew,
        &shared.config.limits,
    ) {
        Ok(checked) => checked,
        Err(payload_error) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {
                    "code": "invalid_payload",
                    "kind": payload_error.kind.as_str(),
                    "field": payload_error.field,
                    "message": payload_error.to_string(),
                }})),
            )
                .into_response();
        }
    };
    if let Some(shift) = checked.corrected_ms {
        shared.counters.corrected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            device = %device_id,
            ahead_ms = shift,
            "a device clock runs ahead of the server's; its timestamps were moved back"
        );
    }
    let queued = shared
        .queue
        .enqueue(NewMessage {
            device_id: device_id.to_string(),
            payload: checked.payload,
            received: Utc::now(),
            corrected_ms: checked.corrected_ms,
        })
        .await;
    check_disk_limit(&shared);
    match queued {
        Ok(id) => {
            shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
            shared.queued.notify_one();
            let mut body = json!({"queued": 1, "id": id});
            if let Some(shift) = checked.corrected_ms {
                body["corrected_ms"] = json!(shift);
            }
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(GatewayError::QueueFull { used, limit }) => error(
            StatusCode::INSUFFICIENT_STORAGE,
            "queue_full",
            format!(
                "the gateway's queue is full ({used} of {limit} bytes); keep the reading and retry later"
            ),
        ),
        Err(other) => {
            tracing::error!(error = %other, "a message could not be queued");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "not queued; retry later".into(),
            )
        }
    }
}

/// Warns once when the queue crosses 90 % of its disk limit, and again after it has
/// dropped below 80 % and crosses once more.
pub(crate) fn check_disk_limit(shared: &Shared) {
    let stats = shared.queue.stats();
    metrics::gauge!("wardline_gateway_queue_bytes").set(stats.bytes as f64);
    if stats.near_full() {
        if !shared
            .counters
            .near_full_warned
            .swap(true, Ordering::Relaxed)
        {
            tracing::error!(
                used_bytes = stats.bytes,
                limit_bytes = stats.limit_bytes,
                messages = stats.messages,
                "ALARM: the gateway's queue is above 90% of its disk limit; new readings will be refused when it is full"
            );
        }
    } else if (stats.bytes as f64) < stats.limit_bytes as f64 * 0.8 {
        shared
            .counters
            .near_full_warned
            .store(false, Ordering::Relaxed);
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let stats = shared.queue.stats();
    let counters = &shared.counters;
    let last_contact = match counters.last_contact_ms.load(Ordering::Relaxed) {
        0 => None,
        ms => chrono::DateTime::<Utc>::from_timestamp_millis(i64::try_from(ms).unwrap_or(0)),
    };
    Json(json!({
        "gateway_id": shared.config.gateway_id,
        "queued_messages": stats.messages,
        "queued_bytes": stats.bytes,
        "disk_limit_bytes": stats.limit_bytes,
        "near_disk_limit": stats.near_full(),
        "link_up": counters.link_up.load(Ordering::Relaxed),
        "last_contact": last_contact,
        "clock_offset_ms": shared.clock.offset_ms(),
        "accepted": counters.accepted.load(Ordering::Relaxed),
        "forwarded": counters.forwarded.load(Ordering::Relaxed),
        "rejected_by_server": counters.rejected_by_server.load(Ordering::Relaxed),
        "refused_devices": counters.refused_devices.load(Ordering::Relaxed),
        "local_devices": shared.local_devices.len(),
        "corrected_timestamps": counters.corrected.load(Ordering::Relaxed),
    }))
}

/// Wakes the forwarder for a contact with the server, which brings the device list, at
/// most every [`DEVICE_LIST_ASK_INTERVAL_MS`].
fn ask_for_device_list(shared: &Shared) {
    let now = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
    let last = shared.device_list_asked_ms.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= DEVICE_LIST_ASK_INTERVAL_MS
        && shared
            .device_list_asked_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        shared.device_list_wanted.store(true, Ordering::Relaxed);
        shared.queued.notify_one();
    }
}
