//! Wardline's home gateway (`wardline gateway`; docs/gateway.md).
//!
//! Devices at home send their readings to the gateway on the local network (HTTP, the
//! same request they would send the server). The gateway validates each message,
//! writes it to its durable queue ([`queue`]) and only then acknowledges it. A forwarder
//! ([`forwarder`]) sends the queue, oldest first, to the server over TLS with the
//! gateway's own credential, in batches, and deletes only what the server has answered.
//! While the server is unreachable the queue grows (up to a disk limit, with a warning
//! when it nears it); when it is back the backlog drains at full speed. Device `seq`
//! numbers make every resend harmless.

pub mod clock;
mod error;
pub mod forwarder;
pub mod listener;
pub mod local_devices;
pub mod queue;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use wardline_domain::{DeviceId, PayloadLimits};

pub use error::GatewayError;

use crate::clock::ClockOffset;
use crate::local_devices::LocalDevices;
use crate::queue::Queue;

/// Everything `wardline gateway` is told.
#[derive(Clone)]
pub struct GatewayConfig {
    /// The server's base URL, e.g. `https://wardline.example.org:8443`.
    pub server_url: String,
    /// The CA certificate the server's certificate must chain to (PEM).
    pub ca_file: Option<PathBuf>,
    pub gateway_id: DeviceId,
    /// The gateway's own secret. Never logged.
    pub secret: String,
    /// Where local devices send to.
    pub listen: SocketAddr,
    pub queue_path: PathBuf,
    /// Most bytes the queue may hold (payloads plus per-message overhead).
    pub disk_limit_bytes: u64,
    /// Most messages per forward request.
    pub max_batch: usize,
    /// Most payload bytes per forward request.
    pub max_batch_bytes: usize,
    /// First retry delay, doubled on each failure (with full jitter) up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// How often an idle gateway reports to the server.
    pub heartbeat: Duration,
    /// A device timestamp further ahead of the server's clock than this is corrected.
    pub max_device_skew: chrono::Duration,
    pub limits: PayloadLimits,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("server_url", &self.server_url)
            .field("ca_file", &self.ca_file)
            .field("gateway_id", &self.gateway_id)
            .field("secret", &"..")
            .field("listen", &self.listen)
            .field("queue_path", &self.queue_path)
            .field("disk_limit_bytes", &self.disk_limit_bytes)
            .finish_non_exhaustive()
    }
}

impl GatewayConfig {
    /// Defaults for everything but the server, the credential and the queue path.
    pub fn new(
        server_url: String,
        gateway_id: DeviceId,
        secret: String,
        queue_path: PathBuf,
    ) -> Self {
        Self {
            server_url,
            ca_file: None,
            gateway_id,
            secret,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            queue_path,
            disk_limit_bytes: 1 << 30,
            max_batch: 2000,
            max_batch_bytes: 8 * 1024 * 1024,
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(60),
            heartbeat: Duration::from_secs(30),
            max_device_skew: chrono::Duration::minutes(5),
            limits: PayloadLimits::default(),
        }
    }
}

/// Counters the listener, the forwarder and the status page share.
#[derive(Debug, Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub corrected: AtomicU64,
    pub forwarded: AtomicU64,
    pub rejected_by_server: AtomicU64,
    /// Local requests refused for a missing, wrong or unknown device secret.
    pub refused_devices: AtomicU64,
    pub link_up: AtomicBool,
    pub last_contact_ms: AtomicU64,
    pub near_full_warned: AtomicBool,
}

/// State shared by the gateway's tasks.
#[derive(Debug)]
pub struct Shared {
    pub config: GatewayConfig,
    pub queue: Queue,
    /// The devices that may send here, as the server last listed them.
    pub local_devices: LocalDevices,
    pub clock: ClockOffset,
    pub counters: Counters,
    /// Woken when a message is queued, or the device list is wanted.
    pub queued: tokio::sync::Notify,
    /// A device the gateway does not know tried to send: ask the server for the list
    /// now instead of at the next heartbeat (at most every few seconds).
    pub device_list_wanted: AtomicBool,
    pub device_list_asked_ms: AtomicU64,
}

/// Where the list of local devices is kept: beside the queue.
pub fn local_devices_path(queue_path: &std::path::Path) -> PathBuf {
    queue_path.with_extension("local-devices.json")
}

/// What the gateway reports locally (`GET /status`) and writes to the listen file.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct GatewayListenReport {
    pub listen: SocketAddr,
}

/// Runs the gateway until `shutdown` is cancelled.
pub async fn run(
    config: GatewayConfig,
    listen_file: Option<PathBuf>,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    let queue = Queue::open(&config.queue_path, config.disk_limit_bytes)?;
    let local_devices = LocalDevices::load(&local_devices_path(&config.queue_path))?;
    let client = forwarder::http_client(config.ca_file.as_deref())?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let listen = listener.local_addr()?;
    let shared = Arc::new(Shared {
        config,
        queue,
        local_devices,
        clock: ClockOffset::default(),
        counters: Counters::default(),
        queued: tokio::sync::Notify::new(),
        device_list_wanted: AtomicBool::new(false),
        device_list_asked_ms: AtomicU64::new(0),
    });
    let stats = shared.queue.stats();
    tracing::info!(
        %listen,
        local_devices = shared.local_devices.len(),
        queued = stats.messages,
        queue_bytes = stats.bytes,
        limit_bytes = stats.limit_bytes,
        "gateway started"
    );
    if let Some(path) = listen_file {
        let temporary = path.with_extension("tmp");
        let report = serde_json::to_vec(&GatewayListenReport { listen })
            .map_err(|error| GatewayError::Config(error.to_string()))?;
        std::fs::write(&temporary, report)?;
        std::fs::rename(&temporary, &path)?;
    }
    let forwarding = tokio::spawn(forwarder::run(
        Arc::clone(&shared),
        client,
        shutdown.clone(),
    ));
    let app = listener::router(Arc::clone(&shared));
    let serving = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    shutdown.cancel();
    let _ = forwarding.await;
    serving?;
    tracing::info!("gateway stopped");
    Ok(())
}
