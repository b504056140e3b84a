//! `wardline gateway`: the home gateway (crates/gateway, docs/gateway.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use wardline_domain::DeviceId;
use wardline_gateway::GatewayConfig;

/// Settings of `wardline gateway`. The secret comes from the environment or a file,
/// never from the command line (which other users of the machine can read).
#[derive(clap::Args, Debug)]
pub struct GatewayArgs {
    /// The Wardline server's HTTPS base URL, e.g. https://wardline.example.org:8443.
    #[arg(long, env = "WARDLINE_GATEWAY_SERVER")]
    pub server: String,
    /// CA certificate (PEM) the server's certificate must chain to: the server's
    /// data-folder `tls/ca.pem`.
    #[arg(long, env = "WARDLINE_GATEWAY_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// The gateway's device id (enrolled with kind `gateway`).
    #[arg(long, env = "WARDLINE_GATEWAY_ID")]
    pub gateway_id: String,
    /// File holding the gateway's secret (else $WARDLINE_GATEWAY_SECRET).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Where local devices send readings (loopback or a trusted home network).
    #[arg(
        long,
        default_value = "127.0.0.1:8080",
        env = "WARDLINE_GATEWAY_LISTEN"
    )]
    pub listen: SocketAddr,
    /// The durable queue (SQLite).
    #[arg(
        long,
        default_value = "wardline-gateway/queue.db",
        env = "WARDLINE_GATEWAY_QUEUE"
    )]
    pub queue: PathBuf,
    /// Most the queue may hold, in MiB; an alarm is logged at 90 %, and readings are
    /// refused (devices keep them) when it is full.
    #[arg(long, default_value_t = 1024)]
    pub disk_limit_mib: u64,
    /// Most messages per forward request.
    #[arg(long, default_value_t = 2000)]
    pub max_batch: usize,
    /// Longest wait between retries while the server is unreachable.
    #[arg(long, default_value_t = 60.0)]
    pub max_backoff_seconds: f64,
    /// How often an idle gateway reports its status to the server.
    #[arg(long, default_value_t = 30.0)]
    pub heartbeat_seconds: f64,
    /// Device timestamps further ahead of the server's clock than this are corrected.
    #[arg(long, default_value_t = 300)]
    pub max_device_skew_seconds: i64,
    /// Write the bound local address as JSON to this file once listening.
    #[arg(long)]
    pub listen_file: Option<PathBuf>,
}

fn seconds(value: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("--{what} must be a duration"))
}

pub fn config(args: &GatewayArgs) -> anyhow::Result<GatewayConfig> {
    let secret = match &args.secret_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the secret from {}", path.display()))?
            .trim()
            .to_owned(),
        None => std::env::var("WARDLINE_GATEWAY_SECRET")
            .context("give the gateway's secret in --secret-file or $WARDLINE_GATEWAY_SECRET")?,
    };
    if secret.is_empty() {
        bail!("the gateway secret is empty");
    }
    let gateway_id = DeviceId::parse(&args.gateway_id)
        .map_err(|error| anyhow::anyhow!("--gateway-id: {error}"))?;
    if args.server.starts_with("https://") && args.ca_file.is_none() {
        bail!("--ca-file is required for an https server (the server's tls/ca.pem)");
    }
    let mut config =
        GatewayConfig::new(args.server.clone(), gateway_id, secret, args.queue.clone());
    config.ca_file = args.ca_file.clone();
    config.listen = args.listen;
    config.disk_limit_bytes = args.disk_limit_mib.saturating_mul(1024 * 1024);
    config.max_batch = args.max_batch.clamp(1, 5000);
    config.max_backoff = seconds(args.max_backoff_seconds, "max-backoff-seconds")?;
    config.min_backoff = config.min_backoff.min(config.max_backoff);
    config.heartbeat = seconds(args.heartbeat_seconds, "heartbeat-seconds")?;
    config.max_device_skew = chrono::Duration::seconds(args.max_device_skew_seconds.max(0));
    Ok(config)
}

pub async fn run(args: GatewayArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
    let config = config(&args)?;
    println!(
        "wardline gateway {} for {}: devices send to http://{}/api/v1/devices/<id>/readings, queue {}",
        config.gateway_id,
        config.server_url,
        config.listen,
        config.queue_path.display()
    );
    wardline_gateway::run(config, args.listen_file, shutdown)
        .await
        .context("the gateway stopped")
}
