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

/// `wardline bench gateway-drain`: fills a gateway queue with `readings` single-reading
/// messages from `devices` devices, starts `wardline serve` (TLS, as in production),
/// runs the gateway in this process against it, and times the drain to an empty queue.
/// Then the server is killed and the stored observations counted: all must be there.
pub async fn bench_drain(readings: usize, devices: usize, batch: usize) -> anyhow::Result<()> {
    use std::process::{Command, Stdio};
    use std::time::Instant;

    use wardline_domain::DeviceKind;
    use wardline_gateway::queue::{NewMessage, Queue};
    use wardline_ingest::DeviceSecret;
    use wardline_store::{NewDevice, NewPatient, Store};

    let temporary = crate::bench::tempfile_dir()?;
    let data_dir = temporary.join("data");
    let queue_path = temporary.join("gateway-queue.db");

    // Enrol a patient, the gateway and the devices behind it.
    let store = crate::server::open_store(&data_dir).await?;
    let patient = store
        .create_patient(NewPatient {
            display_name: "Drain Test".into(),
            birth_date: None,
            mrn: None,
        })
        .await?;
    let since = chrono::Utc::now() - chrono::Duration::days(2);
    let gateway_id =
        DeviceId::parse("bench-gateway").map_err(|error| anyhow::anyhow!("{error}"))?;
    let gateway_secret = DeviceSecret::generate().map_err(|_| anyhow::anyhow!("no randomness"))?;
    let mut device_ids = Vec::with_capacity(devices);
    for (index, kind) in std::iter::once((usize::MAX, DeviceKind::Gateway))
        .chain((0..devices).map(|index| (index, DeviceKind::PulseOximeter)))
    {
        let (id, secret) = if kind == DeviceKind::Gateway {
            (gateway_id.clone(), gateway_secret.clone())
        } else {
            let id = DeviceId::parse(&format!("drain-{index:04}"))
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            device_ids.push(id.to_string());
            (
                id,
                DeviceSecret::generate().map_err(|_| anyhow::anyhow!("no randomness"))?,
            )
        };
        store
            .create_device(NewDevice {
                id: id.clone(),
                kind,
                model: "bench".into(),
                serial: id.to_string(),
                secret_hash: secret.hash(),
            })
            .await?;
        store.assign_device(&id, patient.id, since).await?;
    }
    drop(store);

    // Fill the queue: readings 10 ms apart, ending an hour ago.
    let fill_started = Instant::now();
    {
        let queue = Queue::open(&queue_path, u64::MAX / 2)?;
        let start = chrono::Utc::now()
            - chrono::Duration::hours(1)
            - chrono::Duration::milliseconds(readings as i64 * 10);
        let received = chrono::Utc::now();
        let mut chunk = Vec::with_capacity(50_000);
        for index in 0..readings {
            let device = &device_ids[index % devices];
            let seq = index / devices;
            let time = (start + chrono::Duration::milliseconds(index as i64 * 10))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            chunk.push(NewMessage {
                device_id: device.clone(),
                payload: format!(
                    "{{\"v\":1,\"seq\":{seq},\"code\":\"59408-5\",\"value\":{},\"unit\":\"%\",\"time\":\"{time}\"}}",
                    90 + index % 10
                )
                .into_bytes(),
                received,
                corrected_ms: None,
            });
            if chunk.len() == chunk.capacity() {
                queue.enqueue_bulk(std::mem::take(&mut chunk)).await?;
                chunk.reserve(50_000);
            }
        }
        if !chunk.is_empty() {
            queue.enqueue_bulk(chunk).await?;
        }
        anyhow::ensure!(
            queue.stats().messages == readings as u64,
            "the queue holds {} messages, not {readings}",
            queue.stats().messages
        );
    }
    let fill_seconds = fill_started.elapsed().as_secs_f64();

    // The server, as a separate process with TLS.
    let listen_file = temporary.join("listen.json");
    let mut server = Command::new(std::env::current_exe()?)
        .args([
            "serve",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data_dir)
        .arg("--listen-file")
        .arg(&listen_file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting wardline serve")?;
    let report = crate::bench::wait_for_listen_file(&listen_file, &mut server)?;
    let ca_file = report.ca_path.clone().context("the server runs with TLS")?;

    // The gateway, in this process.
    let mut config = GatewayConfig::new(
        format!("https://localhost:{}", report.http.port()),
        gateway_id,
        gateway_secret.expose().to_owned(),
        queue_path.clone(),
    );
    config.ca_file = Some(ca_file);
    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.max_batch = batch;
    config.max_batch_bytes = 16 * 1024 * 1024;
    config.disk_limit_bytes = u64::MAX / 2;
    let gateway_listen = temporary.join("gateway.json");
    let shutdown = CancellationToken::new();
    println!("{}", crate::bench::machine_description());
    println!(
        "backlog: {readings} readings from {devices} devices, one per message, queued in {fill_seconds:.1} s; {batch} messages per forward request; server over TLS on loopback"
    );
    let started = Instant::now();
    let gateway = tokio::spawn(wardline_gateway::run(
        config,
        Some(gateway_listen.clone()),
        shutdown.clone(),
    ));
    let local = loop {
        if let Ok(text) = std::fs::read(&gateway_listen)
            && let Ok(report) =
                serde_json::from_slice::<wardline_gateway::GatewayListenReport>(&text)
        {
            break report.listen;
        }
        if gateway.is_finished() {
            bail!("the gateway stopped early");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let client = wardline_gateway::forwarder::http_client(None)?;
    let mut last_print = Instant::now();
    loop {
        let status: serde_json::Value = client
            .get(format!("http://{local}/status"))
            .send()
            .await?
            .json()
            .await?;
        let queued = status["queued_messages"].as_u64().unwrap_or(u64::MAX);
        if queued == 0 {
            break;
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            last_print = Instant::now();
            println!(
                "  {:.0} s: {queued} still queued",
                started.elapsed().as_secs_f64()
            );
        }
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("the backlog did not drain within an hour");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    let _ = gateway.await;
    let _ = server.kill();
    let _ = server.wait();
    let store = crate::server::open_store(&data_dir).await?;
    let stored = store.count_observations().await?;
    drop(store);
    println!();
    println!(
        "| readings | batch | drain seconds | readings/s | stored after kill -9 of the server |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {readings} | {batch} | {seconds:.1} | {:.0} | {stored} |",
        readings as f64 / seconds
    );
    let _ = std::fs::remove_dir_all(&temporary);
    anyhow::ensure!(
        stored == readings as u64,
        "{stored} observations stored for {readings} readings"
    );
    Ok(())
}
