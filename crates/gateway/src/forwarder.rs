//! Sends the queue to the server, oldest first, and deletes what the server answered.
//!
//! One request at a time, each carrying up to `max_batch` messages from the head of the
//! queue together with the gateway's status (backlog, disk limit, clock offset). Messages
//! keep their queue order, so each device's messages reach the server in order. A
//! message is deleted once the server gave it a final verdict (stored, a duplicate of one
//! stored before, or refused for good); a `retry` verdict or a failed request leaves it
//! queued, and the request is repeated after an exponential backoff with full jitter.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::queue::QueuedMessage;
use crate::{GatewayError, Shared};

/// An HTTPS client that trusts `ca_file` (and only it), or plain HTTP without one.
pub fn http_client(ca_file: Option<&Path>) -> Result<reqwest::Client, GatewayError> {
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .pool_idle_timeout(Duration::from_secs(30));
    // Only the given CA is trusted; without one (plain HTTP on loopback) no CA is.
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)?;
        for certificate in CertificateDer::pem_slice_iter(&pem) {
            let certificate = certificate.map_err(|error| GatewayError::Tls(error.to_string()))?;
            roots
                .add(certificate)
                .map_err(|error| GatewayError::Tls(error.to_string()))?;
        }
        if roots.is_empty() {
            return Err(GatewayError::Tls(format!(
                "no certificate in {}",
                path.display()
            )));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| GatewayError::Tls(error.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let builder = builder.use_preconfigured_tls(config);
    Ok(builder.build()?)
}

#[derive(Debug, Serialize)]
struct Status {
    backlog_messages: u64,
    backlog_bytes: u64,
    oldest_queued: Option<DateTime<Utc>>,
    disk_limit_bytes: u64,
    near_disk_limit: bool,
    clock_offset_ms: Option<i64>,
    corrected_timestamps: u64,
}

#[derive(Debug, Serialize)]
struct Message<'a> {
    id: i64,
    device_id: &'a str,
    payload: std::borrow::Cow<'a, str>,
}

#[derive(Debug, Serialize)]
struct Request<'a> {
    status: Status,
    messages: Vec<Message<'a>>,
}

#[derive(Debug, Deserialize)]
struct Verdict {
    id: i64,
    outcome: String,
    code: Option<String>,
    kind: Option<String>,
    field: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LocalDevice {
    device_id: String,
    verifier: String,
}

#[derive(Debug, Deserialize)]
struct Response {
    server_time: Option<DateTime<Utc>>,
    results: Vec<Verdict>,
    /// The devices that may send to the gateway now (a server of an earlier version
    /// sends none, and the gateway keeps what it has).
    local_devices: Option<Vec<LocalDevice>>,
}

/// Why a round did not get through.
#[derive(Debug)]
enum Failure {
    /// No answer: the server or the link is down.
    Unreachable(String),
    /// The server answered with an error status.
    Refused(u16),
    /// Some messages came back `retry`.
    Partial,
}

/// A small xorshift generator for backoff jitter (no security role).
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let seed =
            Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64 ^ u64::from(std::process::id());
        Self(seed | 1)
    }

    fn below(&mut self, bound: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let fraction = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        bound.mul_f64(fraction)
    }
}

/// Runs until `shutdown`.
pub async fn run(shared: Arc<Shared>, client: reqwest::Client, shutdown: CancellationToken) {
    let url = format!(
        "{}/api/v1/gateways/{}/forward",
        shared.config.server_url.trim_end_matches('/'),
        shared.config.gateway_id
    );
    let mut jitter = Jitter::new();
    let mut failures: u32 = 0;
    let mut last_report = tokio::time::Instant::now() - shared.config.heartbeat;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let batch = match shared
            .queue
            .peek(shared.config.max_batch, shared.config.max_batch_bytes)
            .await
        {
            Ok(batch) => batch,
            Err(error) => {
                tracing::error!(%error, "cannot read the queue");
                wait(&shutdown, Duration::from_secs(1)).await;
                continue;
            }
        };
        let list_wanted = shared.device_list_wanted.swap(false, Ordering::Relaxed);
        if batch.is_empty() && last_report.elapsed() < shared.config.heartbeat && !list_wanted {
            let idle = shared
                .config
                .heartbeat
                .saturating_sub(last_report.elapsed());
            tokio::select! {
                () = shared.queued.notified() => {}
                () = tokio::time::sleep(idle) => {}
                () = shutdown.cancelled() => return,
            }
            continue;
        }
        let outcome = round(&shared, &client, &url, &batch).await;
        last_report = tokio::time::Instant::now();
        match outcome {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(
                        backlog = shared.queue.stats().messages,
                        "server reachable again; draining the queue"
                    );
                }
                failures = 0;
            }
            Err(failure) => {
                match &failure {
                    Failure::Unreachable(reason) if failures == 0 => tracing::warn!(
                        reason,
                        "server unreachable; queueing and retrying with backoff"
                    ),
                    Failure::Refused(401) => tracing::error!(
                        "the server refused the gateway's credential (401); readings stay queued"
                    ),
                    Failure::Refused(status) if failures == 0 => {
                        tracing::warn!(status, "the server refused a forward request")
                    }
                    Failure::Partial if failures == 0 => {
                        tracing::warn!("the server could not store some messages; they stay queued")
                    }
                    _ => {}
                }
                failures = failures.saturating_add(1);
                let ceiling = shared
                    .config
                    .min_backoff
                    .saturating_mul(2u32.saturating_pow(failures.min(20)))
                    .min(shared.config.max_backoff);
                let delay = jitter.below(ceiling).max(shared.config.min_backoff / 4);
                wait(&shutdown, delay).await;
            }
        }
    }
}

async fn wait(shutdown: &CancellationToken, delay: Duration) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = shutdown.cancelled() => {}
    }
}

async fn round(
    shared: &Shared,
    client: &reqwest::Client,
    url: &str,
    batch: &[QueuedMessage],
) -> Result<(), Failure> {
    let stats = shared.queue.stats();
    let oldest = batch.first().map(|message| message.received);
    let request = Request {
        status: Status {
            backlog_messages: stats.messages,
            backlog_bytes: stats.bytes,
            oldest_queued: oldest,
            disk_limit_bytes: stats.limit_bytes,
            near_disk_limit: stats.near_full(),
            clock_offset_ms: shared.clock.offset_ms(),
            corrected_timestamps: shared.counters.corrected.load(Ordering::Relaxed),
        },
        messages: batch
            .iter()
            .map(|message| Message {
                id: message.id,
                device_id: &message.device_id,
                payload: String::from_utf8_lossy(&message.payload),
            })
            .collect(),
    };
    let body =
        serde_json::to_vec(&request).map_err(|error| Failure::Unreachable(error.to_string()))?;
    let sent = Utc::now();
    let response = client
        .post(url)
        .bearer_auth(&shared.config.secret)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            shared.counters.link_up.store(false, Ordering::Relaxed);
            return Err(Failure::Unreachable(without_url(&error)));
        }
    };
    let received = Utc::now();
    if let Some(date) = response
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| DateTime::parse_from_rfc2822(text).ok())
    {
        shared
            .clock
            .record(date.with_timezone(&Utc), sent, received, 1000.0);
    }
    let status = response.status();
    if !status.is_success() {
        shared.counters.link_up.store(true, Ordering::Relaxed);
        return Err(Failure::Refused(status.as_u16()));
    }
    let answer: Response = match response.json().await {
        Ok(answer) => answer,
        Err(error) => {
            shared.counters.link_up.store(false, Ordering::Relaxed);
            return Err(Failure::Unreachable(without_url(&error)));
        }
    };
    let received = Utc::now();
    shared.counters.link_up.store(true, Ordering::Relaxed);
    shared.counters.last_contact_ms.store(
        u64::try_from(received.timestamp_millis()).unwrap_or(0),
        Ordering::Relaxed,
    );
    if let Some(server_time) = answer.server_time {
        shared.clock.record(server_time, sent, received, 0.0);
    }
    if let Some(devices) = &answer.local_devices {
        let devices: Vec<(String, String)> = devices
            .iter()
            .map(|device| (device.device_id.clone(), device.verifier.clone()))
            .collect();
        if let Err(error) = shared.local_devices.replace(&devices) {
            // The old list stays in force; the next answer brings the list again.
            tracing::error!(%error, "cannot keep the server's list of local devices");
        }
    }
    let sent_ids: std::collections::HashSet<i64> = batch.iter().map(|message| message.id).collect();
    let mut done = Vec::with_capacity(answer.results.len());
    let mut retry = false;
    for verdict in answer.results {
        if !sent_ids.contains(&verdict.id) {
            continue;
        }
        match verdict.outcome.as_str() {
            "stored" => {
                shared.counters.forwarded.fetch_add(1, Ordering::Relaxed);
                done.push(verdict.id);
            }
            "rejected" => {
                shared
                    .counters
                    .rejected_by_server
                    .fetch_add(1, Ordering::Relaxed);
                // Only the category: the server's message may quote a health value.
                tracing::warn!(
                    queue_id = verdict.id,
                    code = verdict.code.as_deref().unwrap_or(""),
                    kind = verdict.kind.as_deref().unwrap_or(""),
                    field = verdict.field.as_deref().unwrap_or(""),
                    "the server refused a message for good; it is dropped from the queue"
                );
                done.push(verdict.id);
            }
            _ => retry = true,
        }
    }
    if let Err(error) = shared.queue.delete(done).await {
        // Not deleted means sent again later: the server recognises the duplicates.
        tracing::error!(%error, "cannot delete forwarded messages from the queue");
    }
    crate::listener::check_disk_limit(shared);
    if retry { Err(Failure::Partial) } else { Ok(()) }
}

/// A reqwest error's text without the URL (which names the gateway, harmless, but keep
/// logs short).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<server>");
    }
    text
}
