//! `wardline demo`: the server with a simulated ward, in one command.
//!
//! 1. A fresh data folder (a temporary one unless `--data-dir` names an empty folder).
//! 2. Accounts (admin, clinician, nurse, and a patient account for Ada), one care team
//!    holding every simulated patient, the ward's patients (`wardline_sim::Ward`), and
//!    their devices, each enrolled with its own secret, and a video visit between Ada and
//!    the clinician starting in 10 minutes. The logins are printed; device secrets are
//!    not.
//! 3. The server, in this process (`server::serve`), on the default ports if they are
//!    free, else on ephemeral ones.
//! 4. Every simulated device as a real client: MQTT 3.1.1 over TLS with its own
//!    credential (QoS 1), or HTTPS POST for the scale, thermometers and peak-flow meter,
//!    sending the ward's payloads (docs/device-protocol.md) byte for byte.
//!
//! Time: the simulation starts `--history-hours` before now and runs `--speed` times
//! faster than the wall clock until it catches up with now, then in real time. So the
//! first minute already fills the charts with recent history, and no reading is ever
//! stamped in the future (the server refuses those).
//!
//! Ctrl-C stops the devices (each disconnects cleanly), then the server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, SubsecRound, Utc};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wardline_domain::{DeviceId, DeviceKind, PatientId, Role};
use wardline_service::Actor;
use wardline_service::devices::Enrolment;
use wardline_service::people::{NewAccount, PatientDetails};
use wardline_sim::{Program, Ward};

use crate::config::{self, Config, DEFAULT_HTTP_PORT, DEFAULT_MQTT_PORT, Overrides};
use crate::server::{ListenReport, offline_service};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// How much faster than real time the simulation runs while it catches up with now.
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
    /// Data folder; must be empty or absent (default: a temporary folder, removed at exit).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Seed of the simulated ward.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How long before now the simulation starts.
    #[arg(long, default_value_t = 6.0)]
    pub history_hours: f64,
    /// MQTT listen address (default 0.0.0.0:8883 if free, else an ephemeral port).
    #[arg(long)]
    pub mqtt_listen: Option<SocketAddr>,
    /// HTTP listen address (default 0.0.0.0:8443 if free, else an ephemeral port).
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Write the bound addresses as JSON to this file once listening.
    #[arg(long)]
    pub listen_file: Option<PathBuf>,
}

/// A person's login, printed for the demo.
struct Login {
    role: &'static str,
    username: &'static str,
    password: String,
}

/// A simulated device's credential, kept in memory only.
struct DeviceCredential {
    id: String,
    secret: String,
    http: bool,
}

fn port_free(address: SocketAddr) -> bool {
    std::net::TcpListener::bind(address).is_ok()
}

fn default_listen(port: u16) -> SocketAddr {
    let preferred = SocketAddr::from(([0, 0, 0, 0], port));
    if port_free(preferred) {
        preferred
    } else {
        SocketAddr::from(([0, 0, 0, 0], 0))
    }
}

/// Devices that speak HTTP in the demo; the rest use MQTT.
fn over_http(kind: DeviceKind) -> bool {
    matches!(
        kind,
        DeviceKind::Scale | DeviceKind::Thermometer | DeviceKind::PeakFlowMeter
    )
}

pub async fn run(args: DemoArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    if !(args.speed.is_finite() && args.speed >= 1.0) {
        bail!("--speed must be at least 1");
    }
    if !(args.history_hours.is_finite() && (0.0..=24.0 * 14.0).contains(&args.history_hours)) {
        bail!("--history-hours must be between 0 and 336");
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();

    let (_temporary, data_dir) = match &args.data_dir {
        Some(path) => {
            let exists = path
                .try_exists()
                .with_context(|| format!("checking {}", path.display()))?;
            if exists
                && std::fs::read_dir(path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .next()
                    .is_some()
            {
                bail!(
                    "{} is not empty: the demo needs a fresh data folder",
                    path.display()
                );
            }
            (None, path.clone())
        }
        None => {
            let temporary = tempfile::Builder::new()
                .prefix("wardline-demo-")
                .tempdir()
                .context("creating a temporary data folder")?;
            let path = temporary.path().join("data");
            (Some(temporary), path)
        }
    };
    let environment: std::collections::BTreeMap<String, String> = std::env::vars()
        .filter(|(name, _)| name.starts_with("WARDLINE_") || name == "RUST_LOG")
        .collect();
    let second_factor_chosen = environment.contains_key("WARDLINE_SECOND_FACTOR_ROLES");
    let mut config = config::load(
        None,
        &environment,
        &Overrides {
            data_dir: Some(data_dir.clone()),
            keys_dir: None,
            // The demo is one machine with nothing else to run, whatever WARDLINE_STORE says.
            store: Some("embedded".into()),
            bus: Some("none".into()),
            mqtt_listen: Some(
                args.mqtt_listen
                    .unwrap_or_else(|| default_listen(DEFAULT_MQTT_PORT)),
            ),
            http_listen: Some(
                args.http_listen
                    .unwrap_or_else(|| default_listen(DEFAULT_HTTP_PORT)),
            ),
            metrics_listen: None,
            plaintext: false,
            hostnames: Vec::new(),
        },
    )?;
    // The demo's administrator is whoever runs it, to look around for a few minutes: no
    // authenticator app is asked for unless WARDLINE_SECOND_FACTOR_ROLES says otherwise.
    if !second_factor_chosen {
        config.second_factor_roles.clear();
    }
    let second_factor_off = config.second_factor_roles.is_empty();

    let now = Utc::now().trunc_subsecs(0);
    let sim_start = now - chrono::Duration::seconds((args.history_hours * 3600.0).round() as i64);
    let mut ward = Ward::standard(args.seed, sim_start);
    let (logins, devices) = populate(&config, &ward, sim_start).await?;

    // The server, in this process.
    let listen_file = args
        .listen_file
        .clone()
        .unwrap_or_else(|| data_dir.join("listen.json"));
    let _ = std::fs::remove_file(&listen_file);
    let server_stop = CancellationToken::new();
    let mut server = tokio::spawn(crate::server::serve(
        config,
        Some(listen_file.clone()),
        server_stop.clone(),
    ));
    let report = loop {
        if let Ok(text) = std::fs::read(&listen_file)
            && let Ok(report) = serde_json::from_slice::<ListenReport>(&text)
        {
            break report;
        }
        if server.is_finished() {
            return match (&mut server).await {
                Ok(Err(error)) => Err(error.context("the server did not start")),
                _ => Err(anyhow::anyhow!("the server did not start")),
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ca_path = report
        .ca_path
        .clone()
        .context("the demo server runs with TLS")?;
    let web = format!("https://localhost:{}", report.http.port());
    println!();
    println!(
        "Wardline demo: {} simulated patients, {} devices",
        ward.patients().count(),
        devices.len()
    );
    println!("  web app   {web}/");
    println!("  API       {web}/api/v1/openapi.json");
    println!("  MQTT      mqtts://localhost:{}", report.mqtt.port());
    println!(
        "  CA        {}  (trust it in the browser, or pass --cacert to curl)",
        ca_path.display()
    );
    println!("  logins (generated for this run):");
    for login in &logins {
        println!(
            "    {:<10} {} / {}",
            login.role, login.username, login.password
        );
    }
    if second_factor_off {
        println!(
            "  second factor: not required in the demo (a real server requires one for administrators)"
        );
    }
    println!(
        "  time      the ward starts {} h ago and runs x{} until it reaches now, then in real time",
        args.history_hours, args.speed
    );
    println!("  care plans: see below; Ctrl-C stops everything");
    for (_, patient, plan) in care_plans(&ward, sim_start) {
        println!(
            "    {patient:<14} {:?} care plan, {} rules",
            plan.program,
            plan.rules.len()
        );
    }
    println!();

    // The devices.
    let tls = Arc::new(client_tls(&ca_path)?);
    let http = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let device_stop = CancellationToken::new();
    let sent = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let mut routes: HashMap<String, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut device_tasks = Vec::new();
    for device in devices {
        let (sender, receiver) = mpsc::channel::<Vec<u8>>(256);
        routes.insert(device.id.clone(), sender);
        let stop = device_stop.clone();
        let acked = Arc::clone(&acked);
        device_tasks.push(if device.http {
            let url = format!("{web}/api/v1/devices/{}/readings", device.id);
            tokio::spawn(http_device(
                http.clone(),
                url,
                device.secret,
                receiver,
                stop,
                acked,
            ))
        } else {
            let options = mqtt_options(&device, report.mqtt.port(), Arc::clone(&tls));
            tokio::spawn(mqtt_device(device.id, options, receiver, stop, acked))
        });
    }

    // The clock: sim time = start + elapsed × speed, until it reaches the wall clock.
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut caught_up = false;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'running: loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let accelerated = sim_start
            + chrono::Duration::milliseconds(
                (started.elapsed().as_secs_f64() * args.speed * 1000.0) as i64,
            );
        let wall = Utc::now();
        let sim_now = accelerated.min(wall);
        if !caught_up && accelerated >= wall {
            caught_up = true;
            println!("simulation reached the present; running in real time from now on");
        }
        for emission in ward.advance_to(sim_now) {
            let Some(route) = routes.get(&emission.device_key) else {
                continue;
            };
            sent.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                result = route.send(emission.payload_bytes) => {
                    if result.is_err() {
                        tracing::warn!(device = %emission.device_key, "a simulated device stopped");
                    }
                }
                () = shutdown.cancelled() => break 'running,
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(10) {
            last_progress = Instant::now();
            println!(
                "sim time {}: {} messages sent, {} acknowledged",
                sim_now.format("%Y-%m-%d %H:%M"),
                sent.load(Ordering::Relaxed),
                acked.load(Ordering::Relaxed)
            );
        }
    }

    println!("stopping the simulated devices…");
    drop(routes);
    device_stop.cancel();
    for task in device_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    }
    println!("stopping the server…");
    server_stop.cancel();
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(result)) => result?,
        Ok(Err(error)) => bail!("the server task failed: {error}"),
        Err(_) => bail!("the server did not stop within 10 s"),
    }
    println!(
        "stopped: {} messages sent, {} acknowledged",
        sent.load(Ordering::Relaxed),
        acked.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Creates the accounts, the care team, the ward's patients and their devices, through
/// the service as the command line.
async fn populate(
    config: &Config,
    ward: &Ward,
    sim_start: DateTime<Utc>,
) -> anyhow::Result<(Vec<Login>, Vec<DeviceCredential>)> {
    let service = offline_service(config).await?;
    let cli = Actor::CommandLine;
    let fail = |error: wardline_service::Error| anyhow::anyhow!("{}", error.message());
    let mut patient_ids: HashMap<String, PatientId> = HashMap::new();
    for patient in ward.patients() {
        let created = service
            .create_patient(
                &cli,
                PatientDetails {
                    display_name: patient.display_name.clone(),
                    birth_date: chrono::NaiveDate::from_ymd_opt(patient.birth_year, 7, 1),
                    mrn: Some(format!("DEMO-{}", patient.key.to_uppercase())),
                },
            )
            .await
            .map_err(fail)?;
        patient_ids.insert(patient.key.clone(), created.id);
    }
    let team = service
        .create_care_team(&cli, "Virtual ward (demo)")
        .await
        .map_err(fail)?;
    for patient in patient_ids.values() {
        service
            .add_care_team_patient(&cli, team.id, *patient)
            .await
            .map_err(fail)?;
    }
    let ada = ward
        .patients()
        .find(|patient| patient.program == Program::Diabetes)
        .and_then(|patient| patient_ids.get(&patient.key).copied());
    let accounts: [(&'static str, &'static str, &str, Role, Option<PatientId>); 4] = [
        ("admin", "admin", "Administrator", Role::Admin, None),
        (
            "clinician",
            "dr.grey",
            "Dr Meredith Grey",
            Role::Clinician,
            None,
        ),
        ("nurse", "nurse.joy", "Nurse Joy Okafor", Role::Nurse, None),
        ("patient", "ada", "Ada Moreno", Role::Patient, ada),
    ];
    let mut logins = Vec::new();
    let mut clinician = None;
    for (role_label, username, display_name, role, patient_id) in accounts {
        if role == Role::Patient && patient_id.is_none() {
            continue;
        }
        let created = service
            .create_user(
                &cli,
                NewAccount {
                    username: username.into(),
                    display_name: display_name.into(),
                    role,
                    password: None,
                    patient_id,
                    // The demo's people are the one at the terminal, who is shown these
                    // passwords to try each role.
                    password_change_required: Some(false),
                },
            )
            .await
            .map_err(fail)?;
        if matches!(role, Role::Clinician | Role::Nurse) {
            service
                .add_care_team_member(&cli, team.id, created.user.id)
                .await
                .map_err(fail)?;
        }
        if role == Role::Clinician {
            clinician = Some(created.user.id);
        }
        logins.push(Login {
            role: role_label,
            username,
            password: created
                .generated_password
                .context("a generated password for a demo account")?,
        });
    }
    // A video visit between Ada and Dr Grey about to start, so that a newcomer can try
    // one between two browser windows (its room opens 15 minutes before the start).
    if let (Some(ada), Some(clinician)) = (ada, clinician) {
        service
            .schedule_visit(
                &cli,
                ada,
                wardline_service::visits::VisitRequest {
                    start: (Utc::now() + chrono::Duration::minutes(10)).trunc_subsecs(0),
                    duration_minutes: 30,
                    reason: "Check-in on the first week with the CGM".into(),
                    attendees: vec![clinician],
                },
            )
            .await
            .map_err(fail)?;
    }
    let mut devices = Vec::new();
    for device in ward.devices() {
        let id = DeviceId::parse(&device.key).map_err(|error| anyhow::anyhow!("{error}"))?;
        let patient = patient_ids
            .get(&device.patient_key)
            .copied()
            .with_context(|| {
                format!(
                    "no patient {} for device {}",
                    device.patient_key, device.key
                )
            })?;
        let enrolled = service
            .enrol_device(
                &cli,
                Enrolment {
                    kind: device.kind,
                    model: device.model.clone(),
                    serial: format!("SIM-{}", device.key.to_uppercase()),
                    device_id: Some(id.clone()),
                    patient_id: None,
                },
            )
            .await
            .map_err(fail)?;
        // From before the simulation starts, so that the history is accepted.
        service
            .assign_device(
                &cli,
                &id,
                patient,
                Some(sim_start - chrono::Duration::hours(1)),
            )
            .await
            .map_err(fail)?;
        devices.push(DeviceCredential {
            id: id.to_string(),
            secret: enrolled.secret.expose().to_owned(),
            http: over_http(device.kind),
        });
    }
    for (key, _, plan) in care_plans(ward, sim_start) {
        let Some(patient_id) = patient_ids.get(&key).copied() else {
            continue;
        };
        service
            .assign_care_plan(
                &cli,
                patient_id,
                plan,
                "default rules of the patient's program (demo enrolment)",
            )
            .await
            .map_err(fail)?;
    }
    Ok((logins, devices))
}

/// The care plan each simulated patient gets, by patient key and name: the default rules
/// of their program, in force from the start of the simulated history so that the
/// replayed readings are evaluated and the first alarms fire within the first minute.
fn care_plans(
    ward: &Ward,
    effective_from: DateTime<Utc>,
) -> Vec<(String, String, wardline_alerting::CarePlan)> {
    ward.patients()
        .map(|patient| {
            let program = match patient.program {
                Program::Diabetes => wardline_alerting::Program::Diabetes,
                Program::Cardiac => wardline_alerting::Program::Cardiac,
                Program::PostSurgery => wardline_alerting::Program::PostSurgery,
                Program::Respiratory => wardline_alerting::Program::Respiratory,
                Program::General => wardline_alerting::Program::GeneralVitals,
            };
            // The plan's patient id is replaced by the stored one when plans are stored.
            let plan = wardline_alerting::CarePlan::from_program(
                PatientId::random(),
                program,
                &wardline_alerting::PatientBaseline::default(),
                effective_from,
            );
            (patient.key.clone(), patient.display_name.clone(), plan)
        })
        .collect()
}

fn client_tls(ca_path: &Path) -> anyhow::Result<rustls::ClientConfig> {
    let pem = std::fs::read(ca_path).with_context(|| format!("reading {}", ca_path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        roots.add(certificate?)?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

fn mqtt_options(
    device: &DeviceCredential,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
) -> MqttOptions {
    let mut options = MqttOptions::new(device.id.clone(), "localhost", port);
    options
        .set_credentials(device.id.clone(), device.secret.clone())
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024)
        .set_inflight(100)
        .set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
    options
}

/// One device over MQTT: publishes each payload at QoS 1 and counts the PUBACKs.
async fn mqtt_device(
    device_id: String,
    options: MqttOptions,
    mut payloads: mpsc::Receiver<Vec<u8>>,
    stop: CancellationToken,
    acked: Arc<AtomicU64>,
) {
    let topic = format!("wardline/v1/devices/{device_id}/readings");
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let poll_stop = stop.clone();
    let poller = tokio::spawn(async move {
        let mut reported = false;
        loop {
            tokio::select! {
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Incoming(Packet::Disconnect)) => break,
                    Ok(_) => {}
                    Err(error) => {
                        if poll_stop.is_cancelled() {
                            break;
                        }
                        if !reported {
                            tracing::warn!(%error, "a simulated device lost its MQTT connection; reconnecting");
                            reported = true;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                () = tokio::time::sleep(Duration::from_secs(3)), if poll_stop.is_cancelled() => break,
            }
        }
    });
    loop {
        let payload = tokio::select! {
            payload = payloads.recv() => payload,
            () = stop.cancelled() => None,
        };
        let Some(payload) = payload else { break };
        if client
            .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), poller).await;
}

/// One device over HTTPS: posts each payload, retrying the same bytes (same `seq`) until
/// the server answers.
async fn http_device(
    client: reqwest::Client,
    url: String,
    secret: String,
    mut payloads: mpsc::Receiver<Vec<u8>>,
    stop: CancellationToken,
    acked: Arc<AtomicU64>,
) {
    loop {
        let payload = tokio::select! {
            payload = payloads.recv() => payload,
            () = stop.cancelled() => None,
        };
        let Some(payload) = payload else { break };
        loop {
            let response = client
                .post(&url)
                .bearer_auth(&secret)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(payload.clone())
                .send()
                .await;
            match response {
                Ok(response) if response.status().is_success() => {
                    acked.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(response) if response.status().is_client_error() => {
                    tracing::warn!(status = %response.status(), "a simulated reading was refused");
                    break;
                }
                _ => {}
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}
