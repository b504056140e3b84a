//! `wardline bench ingest`: the MQTT ingest load test.
//!
//! It enrols devices in a fresh data folder, starts `wardline serve` as a separate
//! process (plaintext on loopback, so the figures measure Wardline and not TLS), and opens
//! one MQTT 3.1.1 connection per device. Each connection keeps a window of QoS 1 publishes
//! (one reading each) in flight for a fixed time and records publish→PUBACK latency. With
//! `--compare` the same load runs against another broker (e.g. the Mosquitto on these
//! machines) in the same run, and the ratio is printed; with `--postgres` the same load
//! also runs against a second server whose store is a new PostgreSQL database. After each
//! server is killed (`kill -9`) its store is opened and its rows counted: every
//! acknowledged reading must be there.
//!
//! The load generator speaks MQTT through rumqttc's packet codec directly, without
//! rumqttc's client event loop, so that one core can drive more than 100k messages/s and
//! the generator is not what is measured.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::BytesMut;
use clap::Subcommand;
use hdrhistogram::Histogram;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wardline_domain::DeviceKind;
use wardline_server::server::ListenReport;

use crate::setup::Credential;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// MQTT QoS 1 ingest: acknowledged readings/s and publish→PUBACK latency.
    Ingest {
        /// Concurrent device connections.
        #[arg(long, default_value_t = 100)]
        devices: usize,
        /// Measured seconds (after the warm-up).
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        warmup_seconds: u64,
        /// QoS 1 publishes each connection keeps in flight.
        #[arg(long, default_value_t = 64)]
        window: usize,
        /// Also run the same load against this MQTT broker (host:port), e.g. 127.0.0.1:1883.
        #[arg(long)]
        compare: Option<SocketAddr>,
        /// Keep the data folder here instead of a temporary one.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Write each connection's whole window of publishes in one socket write, so the
        /// server reads them as one burst. Not how a device sends (one reading per write);
        /// kept to compare with figures measured that way before.
        #[arg(long)]
        burst: bool,
        /// Also run the same load against a server whose store is a new database on this
        /// PostgreSQL server (a postgres:// URL of any database there, e.g.
        /// postgres://postgres@127.0.0.1:5432/postgres), made for the run and dropped after.
        #[arg(long)]
        postgres: Option<String>,
        /// With `--postgres`: run this many `wardline serve` workers on that database,
        /// joined by the bus, each taking an equal share of the devices.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// The NATS server joining the workers (with `--workers` above 1); the run uses
        /// subjects of its own.
        #[arg(long, default_value = "nats://127.0.0.1:4222")]
        bus: String,
    },
    /// Alarm latency: a device's publish of an out-of-range reading → the alarm event on
    /// a clinician's SSE stream, under paced background ingest load.
    AlarmLatency {
        /// Background device connections.
        #[arg(long, default_value_t = 100)]
        devices: usize,
        /// Background readings/s over all devices (half the rate `bench ingest` reaches).
        #[arg(long, default_value_t = 100_000)]
        rate: u64,
        /// Measured seconds (after the warm-up).
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        warmup_seconds: u64,
        /// Unacknowledged publishes a background device may have.
        #[arg(long, default_value_t = 64)]
        window: usize,
        /// Pause after each probe reading's event, ms, plus a part of the background
        /// load's 10 ms tick that steps through its phases.
        #[arg(long, default_value_t = 100)]
        pause_ms: u64,
    },
    /// Home gateway backlog drain: fill a gateway's queue, start a server, and measure
    /// how fast the gateway forwards the backlog (readings/s), then count what is stored.
    GatewayDrain {
        /// Readings in the backlog (one reading per queued message).
        #[arg(long, default_value_t = 1_000_000)]
        readings: usize,
        /// Devices behind the gateway the readings are spread over.
        #[arg(long, default_value_t = 10)]
        devices: usize,
        /// Messages per forward request.
        #[arg(long, default_value_t = 5000)]
        batch: usize,
    },
    /// Nightscout uploads: uploaders post batches of sensor glucose entries to their
    /// sites and wait for each answer; beside them, in the same run, native devices post
    /// the same batches in Wardline's format.
    Nightscout {
        /// Uploaders, and native devices.
        #[arg(long, default_value_t = 10)]
        clients: usize,
        /// Readings per request.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Measured seconds of each load (after its warm-up).
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        warmup_seconds: u64,
    },
    /// Templated ingest: devices of a model with a mapping template in force (a
    /// CalculatedContent template with JMESPath) post one reading per request in their
    /// own JSON and wait for each answer; beside them, in the same run, native devices
    /// post one format v1 reading per request.
    Templated {
        /// Devices of each kind.
        #[arg(long, default_value_t = 20)]
        devices: usize,
        /// Measured seconds of each load (after its warm-up).
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        warmup_seconds: u64,
    },
    /// FHIR uploads: devices post transaction Bundles as a PHD gateway does (their Device
    /// by identifier, then heart-rate Observations) and wait for each answer; beside them,
    /// in the same run, native devices post the same readings per request in format v1.
    Fhir {
        /// Devices of each kind.
        #[arg(long, default_value_t = 10)]
        clients: usize,
        /// Observations per Bundle (and readings per native request).
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Measured seconds of each load (after its warm-up).
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        warmup_seconds: u64,
    },
    /// FHIR bulk export: a care team's vitals (heart rate and SpO2 once a minute) written
    /// by `Group/[team]/$export` and fetched, beside the same readings of a few patients
    /// paged out by FHIR search in the same run.
    FhirExport {
        /// Patients of the care team.
        #[arg(long, default_value_t = 100)]
        patients: usize,
        /// Days of one-minute readings per patient.
        #[arg(long, default_value_t = 7)]
        days: i64,
        /// Patients whose readings the search baseline pages out.
        #[arg(long, default_value_t = 5)]
        search_patients: usize,
    },
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest {
            devices,
            seconds,
            warmup_seconds,
            window,
            compare,
            data_dir,
            burst,
            postgres,
            workers,
            bus,
        } => {
            ingest(
                devices,
                LoadShape {
                    seconds,
                    warmup_seconds,
                    window: window.clamp(1, 1000),
                    burst,
                },
                compare,
                data_dir,
                postgres.map(|server| PostgresRun {
                    server,
                    workers: workers.clamp(1, 16),
                    bus,
                }),
            )
            .await
        }
        BenchCommand::AlarmLatency {
            devices,
            rate,
            seconds,
            warmup_seconds,
            window,
            pause_ms,
        } => {
            crate::bench_alarms::alarm_latency(
                devices.max(1),
                rate.max(1),
                seconds.max(1),
                warmup_seconds,
                window.clamp(1, 1000),
                pause_ms,
            )
            .await
        }
        BenchCommand::GatewayDrain {
            readings,
            devices,
            batch,
        } => crate::bench_drain::bench_drain(readings, devices.max(1), batch.clamp(1, 5000)).await,
        BenchCommand::Nightscout {
            clients,
            batch,
            seconds,
            warmup_seconds,
        } => {
            crate::bench_http::bench_nightscout(
                clients.max(1),
                batch.clamp(1, 1000),
                seconds.max(1),
                warmup_seconds,
            )
            .await
        }
        BenchCommand::Fhir {
            clients,
            batch,
            seconds,
            warmup_seconds,
        } => {
            crate::bench_http::bench_fhir(
                clients.max(1),
                batch.clamp(1, wardline_fhir::MAX_BUNDLE_ENTRIES - 1),
                seconds.max(1),
                warmup_seconds,
            )
            .await
        }
        BenchCommand::FhirExport {
            patients,
            days,
            search_patients,
        } => {
            crate::bench_export::bench_fhir_export(
                patients.max(1),
                days.clamp(1, 3660),
                search_patients,
            )
            .await
        }
        BenchCommand::Templated {
            devices,
            seconds,
            warmup_seconds,
        } => {
            crate::bench_http::bench_templated(devices.max(1), seconds.max(1), warmup_seconds).await
        }
    }
}

#[derive(Debug)]
struct LoadResult {
    label: String,
    acked_measured: u64,
    acked_total: u64,
    measured_seconds: f64,
    latency_us: Histogram<u64>,
    failed_connections: usize,
    /// CPU seconds the target's processes used in the measured window (user + system),
    /// when they could be read from /proc.
    cpu_seconds: Option<f64>,
    /// CPU seconds of the PostgreSQL server's processes (`postgres`) in the same window,
    /// for a run on PostgreSQL on this machine.
    database_cpu_seconds: Option<f64>,
}

impl LoadResult {
    fn rate(&self) -> f64 {
        self.acked_measured as f64 / self.measured_seconds
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// Cores busy on average, and CPU µs per acknowledged reading.
    fn cpu(&self) -> (String, String) {
        match self.cpu_seconds {
            Some(cpu) if self.acked_measured > 0 => (
                format!("{:.2}", cpu / self.measured_seconds),
                format!("{:.1}", cpu * 1e6 / self.acked_measured as f64),
            ),
            _ => ("not read".into(), "not read".into()),
        }
    }
}

/// The clock ticks per second of /proc's CPU times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds the processes have used so far, all their threads
/// included; `None` when one cannot be read.
fn cpu_seconds(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    let ticks = clock_ticks();
    let mut total = 0.0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The fields after the command name, which is in parentheses and may hold spaces:
        // utime and stime are the 14th and 15th of the line.
        let after = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let user: f64 = fields.get(11)?.parse().ok()?;
        let system: f64 = fields.get(12)?.parse().ok()?;
        total += (user + system) / ticks;
    }
    Some(total)
}

/// The processes named `name` (by /proc/*/comm): the baseline broker's, to measure its CPU.
fn processes_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == name)
        })
        .collect()
}

/// The PostgreSQL run of `bench ingest`: on which server, by how many workers.
struct PostgresRun {
    server: String,
    workers: usize,
    bus: String,
}

async fn ingest(
    devices: usize,
    shape: LoadShape,
    compare: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    postgres: Option<PostgresRun>,
) -> anyhow::Result<()> {
    let temporary = tempfile_dir()?;
    println!("{}", machine_description());
    let writes = if shape.burst {
        "each connection's window written in one socket write (--burst: not how devices send)"
    } else {
        "one publish per socket write, as a device sends"
    };
    println!(
        "load: {devices} devices × window {} QoS 1 publishes, one reading per message, {writes}; {} s warm-up + {} s measured",
        shape.window, shape.warmup_seconds, shape.seconds
    );
    let embedded_dir = data_dir.unwrap_or_else(|| temporary.join("data"));
    let mut runs = vec![run_server_load(devices, shape, &embedded_dir, None, &temporary).await?];
    if let Some(postgres) = postgres {
        let database = crate::setup::ScratchDatabase::create(&postgres.server).await?;
        let cluster = Cluster {
            store: database.url().to_owned(),
            workers: postgres.workers,
            bus: postgres.bus,
        };
        let measured = run_server_load(
            devices,
            shape,
            &temporary.join("data-postgres"),
            Some(&cluster),
            &temporary,
        )
        .await;
        database.drop_now().await?;
        runs.push(measured?);
    }
    let mut results: Vec<&LoadResult> = runs.iter().map(|run| &run.load).collect();
    let broker_result;
    if let Some(address) = compare {
        // The first run's devices and credentials; a broker takes any.
        // Its CPU is measured when it runs here as `mosquitto`.
        let broker = processes_named("mosquitto");
        let mut measured = load(
            &[address],
            &runs[0].credentials,
            shape,
            &format!("broker {address}"),
            &broker,
        )
        .await;
        measured.database_cpu_seconds = None;
        broker_result = measured;
        results.push(&broker_result);
    }
    println!();
    println!(
        "| target | acked readings/s | p50 ms | p99 ms | p99.9 ms | max ms | failed connections | CPU (cores) | CPU µs per reading |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for result in &results {
        let (cores, per_reading) = result.cpu();
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {cores} | {per_reading} |",
            result.label,
            result.rate(),
            result.ms(0.5),
            result.ms(0.99),
            result.ms(0.999),
            result.latency_us.max() as f64 / 1000.0,
            result.failed_connections
        );
    }
    println!();
    for other in &results[1..] {
        println!(
            "ratio {} / {}: {:.2}",
            other.label,
            results[0].label,
            other.rate() / results[0].rate()
        );
    }
    for result in &results {
        if let Some(cpu) = result.database_cpu_seconds
            && result.acked_measured > 0
        {
            println!(
                "PostgreSQL server ({}): {:.2} cores busy, {:.1} CPU µs per acknowledged reading",
                result.label,
                cpu / result.measured_seconds,
                cpu * 1e6 / result.acked_measured as f64
            );
        }
    }
    let mut missing = Vec::new();
    for run in &runs {
        println!(
            "durability ({}): {} readings acknowledged, {} rows in its database after kill -9",
            run.load.label, run.load.acked_total, run.stored
        );
        if let Some(commits) = run.commits.filter(|commits| *commits > 0.0) {
            println!(
                "group commit ({}): {commits:.0} durable commits, {:.0} readings per commit on average",
                run.load.label,
                run.load.acked_total as f64 / commits
            );
        }
        if run.stored < run.load.acked_total {
            missing.push(format!(
                "{}: {} acknowledged readings are missing from the database",
                run.load.label,
                run.load.acked_total - run.stored
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&temporary);
    if !missing.is_empty() {
        bail!("{}", missing.join("; "));
    }
    Ok(())
}

/// One server's run: what it acknowledged, and what its store held after `kill -9`.
struct ServerRun {
    load: LoadResult,
    credentials: Vec<Credential>,
    commits: Option<f64>,
    stored: u64,
}

/// Workers on one PostgreSQL database.
struct Cluster {
    store: String,
    workers: usize,
    bus: String,
}

/// Enrols `devices` in a new store (the data folder's own, or the PostgreSQL database of
/// `cluster`), starts the server (or the cluster's workers) on it, loads it, kills it and
/// counts what is stored.
async fn run_server_load(
    devices: usize,
    shape: LoadShape,
    data_dir: &std::path::Path,
    cluster: Option<&Cluster>,
    temporary: &std::path::Path,
) -> anyhow::Result<ServerRun> {
    let store = cluster.map(|cluster| cluster.store.as_str());
    let credentials = enrol(data_dir, store, devices).await?;
    let workers = cluster.map_or(1, |cluster| cluster.workers);
    let label = match cluster {
        None => "wardline on SQLite".to_owned(),
        Some(cluster) if cluster.workers > 1 => {
            format!("wardline on PostgreSQL, {} workers", cluster.workers)
        }
        Some(_) => "wardline on PostgreSQL".to_owned(),
    };
    let prefix = format!("wardline-bench-{}", std::process::id());
    let keys_dir = PathBuf::from(format!("{}-keys", data_dir.display()));
    let mut servers = Vec::with_capacity(workers);
    let mut reports = Vec::with_capacity(workers);
    for worker in 0..workers {
        // Every worker of one installation has the keys folder and the certificates of
        // the first; each its own data folder.
        let worker_dir = if worker == 0 {
            data_dir.to_owned()
        } else {
            let own = PathBuf::from(format!("{}-worker-{worker}", data_dir.display()));
            copy_folder(&data_dir.join("tls"), &own.join("tls"))?;
            own
        };
        let listen_file = temporary.join(format!("listen-{}-{worker}.json", store.is_some()));
        let keys = keys_dir.display().to_string();
        // Metrics on a listener of their own, so the commit count can be read without an
        // administrator's session.
        let mut extra: Vec<&str> = vec!["--metrics-listen", "127.0.0.1:0", "--keys-dir", &keys];
        if let Some(cluster) = cluster {
            extra.extend(["--store", &cluster.store]);
            if cluster.workers > 1 {
                extra.extend(["--bus", &cluster.bus]);
            }
        }
        let mut server = spawn_server(
            &worker_dir,
            &listen_file,
            false,
            &extra,
            &[("WARDLINE_BUS_SUBJECT_PREFIX", prefix.as_str())],
        )?;
        reports.push(wait_for_listen_file(&listen_file, &mut server)?);
        servers.push(server);
    }
    let addresses: Vec<SocketAddr> = reports.iter().map(|report| report.mqtt).collect();
    let pids: Vec<u32> = servers.iter().map(std::process::Child::id).collect();
    let mut measured = load(&addresses, &credentials, shape, &label, &pids).await;
    if cluster.is_none() {
        measured.database_cpu_seconds = None;
    }
    let mut commits = None;
    for report in &reports {
        if let Some(metrics) = report.metrics
            && let Some(count) = scrape_counter(metrics, "wardline_store_commits_total").await
        {
            *commits.get_or_insert(0.0) += count;
        }
    }
    // Stop the servers the hard way, then count what is stored.
    for server in &mut servers {
        let _ = server.kill();
        let _ = server.wait();
    }
    let stored = crate::setup::service_on(data_dir, store)
        .await?
        .store()
        .count_observations()
        .await?;
    Ok(ServerRun {
        load: measured,
        credentials,
        commits,
        stored,
    })
}

fn copy_folder(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

/// Reads one counter from the server's Prometheus endpoint (plain HTTP on loopback).
async fn scrape_counter(http: SocketAddr, name: &str) -> Option<f64> {
    let mut stream = TcpStream::connect(http).await.ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response
        .lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.split_whitespace().last())
        .and_then(|value| value.parse().ok())
}

pub(crate) fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("wardline-bench-{}", std::process::id()));
    std::fs::create_dir_all(&path)?;
    Ok(path)
}

/// Starts `wardline serve` on the data folder as its own process, on loopback ports the
/// system picks, with TLS or plaintext, writing its addresses to `listen_file`
/// ([`wait_for_listen_file`] reads them).
pub(crate) fn spawn_server(
    data_dir: &std::path::Path,
    listen_file: &std::path::Path,
    tls: bool,
    extra: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<std::process::Child> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("serve");
    if !tls {
        command.arg("--plaintext");
    }
    command
        .args([
            "--mqtt-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen-file")
        .arg(listen_file)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .spawn()
        .context("starting wardline serve")
}

pub(crate) fn machine_description() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("machine: {cpus} cores, {model}")
}

async fn enrol(
    data_dir: &std::path::Path,
    store: Option<&str>,
    devices: usize,
) -> anyhow::Result<Vec<Credential>> {
    let service = crate::setup::service_on(data_dir, store).await?;
    let patient = crate::setup::patient(&service, "Load Test").await?;
    let since = chrono::Utc::now() - chrono::Duration::days(1);
    let mut credentials = Vec::with_capacity(devices);
    for index in 0..devices {
        credentials.push(
            crate::setup::device(
                &service,
                &format!("bench-{index:05}"),
                DeviceKind::PulseOximeter,
                patient,
                since,
            )
            .await?,
        );
    }
    Ok(credentials)
}

pub(crate) fn wait_for_listen_file(
    path: &std::path::Path,
    server: &mut std::process::Child,
) -> anyhow::Result<ListenReport> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read(path) {
            return Ok(serde_json::from_slice(&text)?);
        }
        if let Some(status) = server.try_wait()? {
            bail!("wardline serve exited: {status}");
        }
        if Instant::now() > deadline {
            bail!("wardline serve did not start within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How the devices send.
#[derive(Debug, Clone, Copy)]
struct LoadShape {
    seconds: u64,
    warmup_seconds: u64,
    window: usize,
    burst: bool,
}

/// Runs the devices against `addresses` (device i at address i mod their number); the
/// CPU of `pids` is read at the start and the end of the measured window.
async fn load(
    addresses: &[SocketAddr],
    credentials: &[Credential],
    shape: LoadShape,
    label: &str,
    pids: &[u32],
) -> LoadResult {
    let LoadShape {
        seconds,
        warmup_seconds,
        window,
        burst,
    } = shape;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let measure_from = started + Duration::from_secs(warmup_seconds);
    let measure_until = measure_from + Duration::from_secs(seconds);
    let mut tasks = Vec::with_capacity(credentials.len());
    for (index, credential) in credentials.iter().enumerate() {
        let credential = credential.clone();
        let address = addresses[index % addresses.len()];
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            device_load(
                address,
                credential,
                window,
                burst,
                stop,
                measure_from,
                measure_until,
            )
            .await
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_before = cpu_seconds(pids);
    // The database server's connections are open after the warm-up; one that ends in the
    // window leaves the figure unread rather than wrong.
    let database = processes_named("postgres");
    let database_before = cpu_seconds(&database);
    tokio::time::sleep_until(measure_until.into()).await;
    let cpu_after = cpu_seconds(pids);
    let database_after = cpu_seconds(&database);
    stop.store(true, Ordering::Relaxed);
    let mut result = LoadResult {
        label: label.to_owned(),
        acked_measured: 0,
        acked_total: 0,
        measured_seconds: seconds as f64,
        latency_us: new_histogram(),
        failed_connections: 0,
        cpu_seconds: cpu_before
            .zip(cpu_after)
            .map(|(before, after)| after - before),
        database_cpu_seconds: database_before
            .zip(database_after)
            .map(|(before, after)| after - before),
    };
    for task in tasks {
        match task.await {
            Ok(Ok(device)) => {
                result.acked_measured += device.acked_measured;
                result.acked_total += device.acked_total;
                let _ = result.latency_us.add(&device.latency_us);
            }
            Ok(Err(error)) => {
                result.failed_connections += 1;
                eprintln!("{label}: a device connection failed: {error:#}");
            }
            Err(_) => result.failed_connections += 1,
        }
    }
    result
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

struct DeviceResult {
    acked_measured: u64,
    acked_total: u64,
    latency_us: Histogram<u64>,
}

async fn device_load(
    address: SocketAddr,
    credential: Credential,
    window: usize,
    burst: bool,
    stop: Arc<AtomicBool>,
    measure_from: Instant,
    measure_until: Instant,
) -> anyhow::Result<DeviceResult> {
    let mut stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut connect = v4::Connect::new(credential.device_id.clone());
    connect.keep_alive = 60;
    connect.set_login(credential.device_id.clone(), credential.secret.clone());
    connect
        .write(&mut out)
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    stream.write_all(&out).await?;
    out.clear();
    let mut incoming = BytesMut::with_capacity(64 * 1024);
    loop {
        match v4::Packet::read(&mut incoming, 1 << 20) {
            Ok(v4::Packet::ConnAck(ack)) if ack.code == v4::ConnectReturnCode::Success => break,
            Ok(v4::Packet::ConnAck(ack)) => bail!("connection refused: {:?}", ack.code),
            Ok(_) => continue,
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                if stream.read_buf(&mut incoming).await? == 0 {
                    bail!("closed before CONNACK");
                }
            }
            Err(error) => bail!("{error}"),
        }
    }
    let topic = format!("wardline/v1/devices/{}/readings", credential.device_id);
    let mut sent_at: Vec<Option<Instant>> = vec![None; 65_536];
    let mut next_pkid: u16 = 1;
    let mut in_flight = 0usize;
    let mut seq: i64 = 0;
    let mut histogram = new_histogram();
    let mut acked_measured = 0u64;
    let mut acked_total = 0u64;
    let mut time_text = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut time_refreshed = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping && in_flight == 0 {
            break;
        }
        if !stopping && in_flight < window {
            if time_refreshed.elapsed() > Duration::from_millis(100) {
                time_text = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                time_refreshed = Instant::now();
            }
            let now = Instant::now();
            while in_flight < window {
                let payload = format!(
                    "{{\"v\":1,\"seq\":{seq},\"code\":\"59408-5\",\"value\":{},\"unit\":\"%\",\"time\":\"{time_text}\"}}",
                    90 + seq % 10
                );
                seq += 1;
                let mut publish =
                    v4::Publish::new(topic.as_str(), QoS::AtLeastOnce, payload.into_bytes());
                publish.pkid = next_pkid;
                sent_at[usize::from(next_pkid)] = Some(now);
                next_pkid = next_pkid.checked_add(1).unwrap_or(1);
                publish
                    .write(&mut out)
                    .map_err(|error| anyhow::anyhow!("{error}"))?;
                in_flight += 1;
                if !burst {
                    // One reading per write, as a device sends it.
                    stream.write_all(&out).await?;
                    out.clear();
                }
            }
            if !out.is_empty() {
                stream.write_all(&out).await?;
                out.clear();
            }
        }
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read_buf(&mut incoming)).await;
        match read {
            Ok(Ok(0)) => bail!("connection closed by the server"),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(error.into()),
            Err(_) => bail!("no PUBACK for 10 s"),
        }
        loop {
            match v4::Packet::read(&mut incoming, 1 << 20) {
                Ok(v4::Packet::PubAck(ack)) => {
                    let now = Instant::now();
                    if let Some(sent) = sent_at[usize::from(ack.pkid)].take() {
                        in_flight -= 1;
                        acked_total += 1;
                        if sent >= measure_from && now <= measure_until {
                            acked_measured += 1;
                            let _ = histogram
                                .record(now.duration_since(sent).as_micros().max(1) as u64);
                        }
                    }
                }
                Ok(_) => {}
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => break,
                Err(error) => bail!("{error}"),
            }
        }
    }
    let _ = v4::Disconnect.write(&mut out);
    let _ = stream.write_all(&out).await;
    Ok(DeviceResult {
        acked_measured,
        acked_total,
        latency_us: histogram,
    })
}
