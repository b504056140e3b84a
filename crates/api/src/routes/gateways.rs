//! Home gateways (docs/gateway.md).
//!
//! A gateway is an enrolled device of kind `gateway`, assigned to the patient whose home
//! it serves. It queues the messages of that patient's devices while the link is down and
//! forwards them here in batches, authenticated by its own secret. Each message keeps the
//! device's own `seq`, so a batch sent again after a lost answer stores nothing twice.
//! Every message gets its own verdict; the gateway deletes a message only once it has a
//! final one (stored, duplicate or refused), and an answer comes only after the commit.

use std::collections::{BTreeMap, HashSet};

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use wardline_domain::{DeviceId, DeviceKind, DeviceMessage};
use wardline_ingest::{MessageVerdict, Rejection};
use wardline_store::{GatewayReport, GatewayStatus};

use super::parse_id;
use crate::access::require_admin;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Most messages in one forward request.
pub(crate) const MAX_FORWARD_MESSAGES: usize = 5000;
/// Most bytes in one forward request body.
pub(crate) const MAX_FORWARD_BYTES: usize = 32 * 1024 * 1024;

/// What the gateway says about itself.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ForwardStatus {
    #[serde(default)]
    backlog_messages: u64,
    #[serde(default)]
    backlog_bytes: u64,
    oldest_queued: Option<DateTime<Utc>>,
    #[serde(default)]
    disk_limit_bytes: u64,
    #[serde(default)]
    near_disk_limit: bool,
    clock_offset_ms: Option<i64>,
    #[serde(default)]
    corrected_timestamps: u64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ForwardedMessage {
    /// The gateway's queue position, echoed back.
    id: i64,
    device_id: String,
    /// The device's payload v1, as the device sent it (JSON text).
    payload: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ForwardRequest {
    #[serde(default)]
    status: ForwardStatus,
    #[serde(default)]
    messages: Vec<ForwardedMessage>,
}

/// The verdict on one forwarded message.
#[derive(Debug, Serialize)]
pub(crate) struct ForwardResult {
    id: i64,
    /// `stored` (final), `rejected` (final: sending it again would be refused the same
    /// way) or `retry` (nothing stored; send it again later).
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stored: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicates: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

impl ForwardResult {
    fn stored(id: i64, new: usize, duplicates: usize) -> Self {
        Self {
            id,
            outcome: "stored",
            stored: Some(new),
            duplicates: Some(duplicates),
            code: None,
            kind: None,
            field: None,
            message: None,
        }
    }

    fn rejected(id: i64, error: &ApiError, kind: Option<&'static str>) -> Self {
        let field = match error {
            ApiError::InvalidPayload(payload) => Some(payload.field.clone()),
            _ => None,
        };
        Self {
            id,
            outcome: "rejected",
            stored: None,
            duplicates: None,
            code: Some(error.code()),
            kind,
            field,
            message: Some(error.to_string()),
        }
    }

    fn retry(id: i64) -> Self {
        Self {
            id,
            outcome: "retry",
            stored: None,
            duplicates: None,
            code: Some("unavailable"),
            kind: None,
            field: None,
            message: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct ForwardResponse {
    /// The server's clock when it answered (the gateway measures its offset with it).
    server_time: DateTime<Utc>,
    results: Vec<ForwardResult>,
}

fn rejection_result(id: i64, rejection: Rejection) -> ForwardResult {
    let kind = rejection.kind();
    ForwardResult::rejected(id, &ApiError::from(rejection), Some(kind))
}

/// A gateway forwards queued device messages (and reports its backlog and clock).
/// `200` comes only after every stored message is committed; an empty `messages` is a
/// heartbeat.
pub(crate) async fn forward(
    State(state): State<AppState>,
    Path(gateway_id): Path<String>,
    request: axum::extract::Request,
) -> Result<Json<ForwardResponse>, ApiError> {
    let (parts, body) = request.into_parts();
    let headers: &HeaderMap = &parts.headers;
    let remote_addr = parts
        .extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip().to_string());
    let gateway = crate::auth::authenticated_device(&state, &gateway_id, headers).await?;
    if gateway.kind != DeviceKind::Gateway {
        metrics::counter!("wardline_http_device_auth_failed_total").increment(1);
        return Err(ApiError::Unauthenticated);
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_FORWARD_BYTES).await else {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_FORWARD_BYTES,
        });
    };
    let request: ForwardRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::invalid("$", format!("not a gateway forward request: {error}"))
    })?;
    if request.messages.len() > MAX_FORWARD_MESSAGES {
        return Err(ApiError::invalid(
            "messages",
            format!("at most {MAX_FORWARD_MESSAGES} messages per request"),
        ));
    }
    let allowed: HashSet<DeviceId> = if request.messages.is_empty() {
        HashSet::new()
    } else {
        state
            .store
            .gateway_devices(&gateway.id)
            .await?
            .into_iter()
            .collect()
    };

    // Validate each message; group the valid ones by device, keeping each device's order.
    let mut results: Vec<Option<ForwardResult>> = Vec::with_capacity(request.messages.len());
    let mut by_device: BTreeMap<DeviceId, (Vec<usize>, Vec<DeviceMessage>)> = BTreeMap::new();
    for message in request.messages {
        let index = results.len();
        let device_id = match DeviceId::parse(&message.device_id) {
            Ok(device_id) if allowed.contains(&device_id) => device_id,
            _ => {
                results.push(Some(ForwardResult::rejected(
                    message.id,
                    &ApiError::Forbidden,
                    Some("not_behind_gateway"),
                )));
                continue;
            }
        };
        match state.ingest.parse(message.payload.as_bytes()) {
            Ok(parsed) => {
                let entry = by_device.entry(device_id).or_default();
                entry.0.push(index);
                entry.1.push(parsed);
                results.push(Some(ForwardResult::retry(message.id)));
            }
            Err(error) => {
                let rejection = Rejection::Payload(error);
                wardline_ingest::pipeline::count_rejection("gateway", &rejection);
                results.push(Some(rejection_result(message.id, rejection)));
            }
        }
    }
    let ids: Vec<i64> = results
        .iter()
        .map(|result| result.as_ref().map_or(0, |result| result.id))
        .collect();

    // One store call per device, all at once, so the group commit takes them together.
    let stores = by_device
        .into_iter()
        .map(|(device_id, (indexes, messages))| {
            let ingest = state.ingest.clone();
            async move {
                let verdicts = ingest.store(&device_id, "gateway", messages).await;
                (indexes, verdicts)
            }
        });
    let stored = futures_util::future::join_all(stores).await;
    let mut forwarded = 0u64;
    for (indexes, verdicts) in stored {
        match verdicts {
            Ok(verdicts) => {
                for (index, verdict) in indexes.into_iter().zip(verdicts) {
                    let id = ids.get(index).copied().unwrap_or_default();
                    let result = match verdict {
                        MessageVerdict::Stored { new, duplicates } => {
                            forwarded += 1;
                            ForwardResult::stored(id, new, duplicates)
                        }
                        MessageVerdict::Rejected(rejection) => rejection_result(id, rejection),
                    };
                    if let Some(slot) = results.get_mut(index) {
                        *slot = Some(result);
                    }
                }
            }
            Err(error) => {
                // Nothing is known about these messages: they stay `retry`.
                tracing::warn!(%error, "gateway forward: a commit failed");
            }
        }
    }

    let status = request.status;
    let report = GatewayReport {
        gateway_id: gateway.id.clone(),
        contact: Utc::now(),
        remote_addr,
        backlog_messages: status.backlog_messages,
        backlog_bytes: status.backlog_bytes,
        oldest_queued: status.oldest_queued,
        disk_limit_bytes: status.disk_limit_bytes,
        near_disk_limit: status.near_disk_limit,
        clock_offset_ms: status.clock_offset_ms,
        corrected_timestamps: status.corrected_timestamps,
        forwarded_messages: forwarded,
    };
    if status.near_disk_limit {
        tracing::warn!(gateway = %gateway.id, "a gateway's queue is near its disk limit");
    }
    if let Err(error) = state.store.record_gateway_contact(report).await {
        tracing::warn!(%error, "gateway status not recorded");
    }
    Ok(Json(ForwardResponse {
        server_time: Utc::now(),
        results: results.into_iter().flatten().collect(),
    }))
}

/// Every gateway with its last contact, backlog and clock offset (admin).
pub(crate) async fn list_gateways(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<GatewayStatus>>, ApiError> {
    require_admin(&state, &caller, "gateways.list", None).await?;
    Ok(Json(state.store.gateway_statuses().await?))
}

/// One gateway's status (admin).
pub(crate) async fn get_gateway(
    State(state): State<AppState>,
    caller: Caller,
    Path(gateway_id): Path<String>,
) -> Result<Json<GatewayStatus>, ApiError> {
    let gateway_id: DeviceId = parse_id("gateway_id", &gateway_id)?;
    require_admin(
        &state,
        &caller,
        "gateways.read",
        Some(gateway_id.to_string()),
    )
    .await?;
    state
        .store
        .gateway_statuses()
        .await?
        .into_iter()
        .find(|status| status.gateway_id == gateway_id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("gateway {gateway_id}")))
}
