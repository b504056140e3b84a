//! Home gateways (docs/gateway.md).
//!
//! A gateway is an enrolled device of kind `gateway`, assigned to the patient whose home
//! it serves. It queues the messages of that patient's devices while the link is down and
//! forwards them here in batches, authenticated by its own secret. Each message keeps the
//! device's own `seq`, so a batch sent again after a lost answer stores nothing twice.
//! Every message gets its own verdict; the gateway deletes a message only once it has a
//! final one (stored, duplicate or refused), and an answer comes only after the commit.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use wardline_domain::{DeviceId, DeviceKind, DeviceMessage};
use wardline_store::{Device, GatewayReport, GatewayStatus};

use crate::Wardline;
use crate::actor::Actor;
use crate::error::Error;
use crate::ingest::{MessageVerdict, Rejection, count_rejection};

/// Most messages in one forward request.
pub const MAX_FORWARD_MESSAGES: usize = 5000;
/// Most bytes in one forward request body.
pub const MAX_FORWARD_BYTES: usize = 32 * 1024 * 1024;

/// What the gateway says about itself.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Default, Deserialize)]
pub struct ForwardStatus {
    #[serde(default)]
    pub backlog_messages: u64,
    #[serde(default)]
    pub backlog_bytes: u64,
    pub oldest_queued: Option<DateTime<Utc>>,
    #[serde(default)]
    pub disk_limit_bytes: u64,
    #[serde(default)]
    pub near_disk_limit: bool,
    pub clock_offset_ms: Option<i64>,
    #[serde(default)]
    pub corrected_timestamps: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Deserialize)]
pub struct ForwardedMessage {
    /// The gateway's queue position, echoed back.
    pub id: i64,
    pub device_id: String,
    /// The device's payload v1, as the device sent it (JSON text).
    pub payload: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Deserialize)]
pub struct ForwardRequest {
    #[serde(default)]
    pub status: ForwardStatus,
    #[serde(default)]
    pub messages: Vec<ForwardedMessage>,
}

/// The verdict on one forwarded message.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct ForwardResult {
    pub id: i64,
    /// `stored` (final), `rejected` (final: sending it again would be refused the same
    /// way) or `retry` (nothing stored; send it again later).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
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

    fn rejected(id: i64, error: &Error, kind: Option<&'static str>) -> Self {
        Self {
            id,
            outcome: "rejected",
            stored: None,
            duplicates: None,
            code: Some(error.code()),
            kind,
            field: match error {
                Error::InvalidPayload(payload) => Some(payload.field.clone()),
                _ => None,
            },
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

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct ForwardResponse {
    /// The server's clock when it answered (the gateway measures its offset with it).
    pub server_time: DateTime<Utc>,
    pub results: Vec<ForwardResult>,
    /// The devices the gateway may take readings from now, each with what the gateway
    /// checks the device's credential against (see `wardline_domain::local_device`). The
    /// gateway replaces its list with this one; absent when it could not be read this
    /// time, and the gateway keeps the one it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_devices: Option<Vec<LocalDevice>>,
}

/// A device a gateway may take readings from, and the verifier of its secret.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct LocalDevice {
    pub device_id: DeviceId,
    /// Hex of the SHA-256 of the device's local credential for this gateway.
    pub verifier: String,
}

fn rejection_result(id: i64, rejection: Rejection) -> ForwardResult {
    let kind = rejection.kind();
    ForwardResult::rejected(id, &Error::from(rejection), Some(kind))
}

impl Wardline {
    /// Stores what a gateway forwards (and what it reports of its backlog and clock).
    /// Answers only after every stored message is committed; no message is a heartbeat.
    pub async fn forward(
        &self,
        gateway: &Device,
        request: ForwardRequest,
        remote_addr: Option<String>,
    ) -> Result<ForwardResponse, Error> {
        if gateway.kind != DeviceKind::Gateway {
            metrics::counter!("wardline_http_device_auth_failed_total").increment(1);
            return Err(Error::Unauthenticated);
        }
        if request.messages.len() > MAX_FORWARD_MESSAGES {
            return Err(Error::invalid(
                "messages",
                format!("at most {MAX_FORWARD_MESSAGES} messages per request"),
            ));
        }
        let behind: Vec<DeviceId> = self.store.gateway_devices(&gateway.id).await?;
        let allowed: HashSet<DeviceId> = behind.iter().cloned().collect();

        // Validate each message; group the valid ones by device, keeping each device's order.
        let mut results: Vec<Option<ForwardResult>> = Vec::with_capacity(request.messages.len());
        let mut by_device: BTreeMap<DeviceId, (Vec<usize>, Vec<DeviceMessage>)> = BTreeMap::new();
        let mut devices: HashMap<DeviceId, Option<wardline_store::Device>> = HashMap::new();
        for message in request.messages {
            let index = results.len();
            let device_id = match DeviceId::parse(&message.device_id) {
                Ok(device_id) if allowed.contains(&device_id) => device_id,
                _ => {
                    results.push(Some(ForwardResult::rejected(
                        message.id,
                        &Error::Forbidden,
                        Some("not_behind_gateway"),
                    )));
                    continue;
                }
            };
            // A device of a model with a mapping template in force sends its own JSON;
            // its record (and model) is read once per request.
            let device = if self.ingest.has_templates() {
                if !devices.contains_key(&device_id) {
                    let record = self.store.device(&device_id).await?;
                    devices.insert(device_id.clone(), record);
                }
                devices.get(&device_id).and_then(Option::as_ref)
            } else {
                None
            };
            let parsed = match device {
                Some(device) => self.ingest.parse_from(device, message.payload.as_bytes()),
                None => self.ingest.parse(message.payload.as_bytes()),
            };
            match parsed {
                Ok(parsed) => {
                    let entry = by_device.entry(device_id).or_default();
                    entry.0.push(index);
                    entry.1.push(parsed);
                    results.push(Some(ForwardResult::retry(message.id)));
                }
                Err(error) => {
                    let rejection = Rejection::Payload(error);
                    count_rejection("gateway", &rejection);
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
                let ingest = self.ingest.clone();
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
            contact: self.now(),
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
        if let Err(error) = self.store.record_gateway_contact(report).await {
            tracing::warn!(%error, "gateway status not recorded");
        }
        let mut local_devices = Some(Vec::with_capacity(behind.len()));
        for device_id in behind {
            // The messages are committed already: a list that cannot be read now is
            // sent with the next answer, and this one still tells the gateway what was
            // stored. A revoked device is not behind any gateway.
            let credentials = match self.store.device_credentials(&device_id).await {
                Ok(credentials) => credentials,
                Err(error) => {
                    tracing::warn!(%error, "gateway forward: the local device list could not be read");
                    local_devices = None;
                    break;
                }
            };
            if let Some(credentials) = credentials
                && credentials.device.status != wardline_store::DeviceStatus::Revoked
            {
                let verifier = wardline_domain::local_device::verifier_from_hash(
                    &gateway.id,
                    &credentials.secret_hash,
                );
                if let Some(list) = local_devices.as_mut() {
                    list.push(LocalDevice {
                        device_id,
                        verifier: hex::encode(verifier),
                    });
                }
            }
        }
        Ok(ForwardResponse {
            server_time: self.now(),
            results: results.into_iter().flatten().collect(),
            local_devices,
        })
    }

    /// Every gateway with its last contact, backlog and clock offset (admin).
    pub async fn gateways(&self, actor: &Actor) -> Result<Vec<GatewayStatus>, Error> {
        self.require_admin_read(actor, "gateways.list", None)
            .await?;
        Ok(self.store.gateway_statuses().await?)
    }

    /// One gateway's status (admin).
    pub async fn gateway(
        &self,
        actor: &Actor,
        gateway_id: &DeviceId,
    ) -> Result<GatewayStatus, Error> {
        self.require_admin_read(actor, "gateways.read", Some(gateway_id.to_string()))
            .await?;
        self.store
            .gateway_statuses()
            .await?
            .into_iter()
            .find(|status| &status.gateway_id == gateway_id)
            .ok_or_else(|| Error::NotFound(format!("gateway {gateway_id}")))
    }
}

impl From<Rejection> for Error {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::Payload(error) => Error::InvalidPayload(error),
            Rejection::NotAssigned { .. } => Error::DeviceNotAssigned(rejection.to_string()),
            Rejection::SeqConflict { .. } => Error::SeqConflict(rejection.to_string()),
            Rejection::Revoked(_) | Rejection::UnknownDevice(_) => Error::Unauthenticated,
        }
    }
}
