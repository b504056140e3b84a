//! `wardline bench alarm-latency`: from a device's publish of an out-of-range reading to
//! the alarm event arriving on a clinician's SSE stream, under background ingest load.
//!
//! The server runs as its own process (plaintext on loopback). Background devices publish
//! QoS 1 readings at a paced total rate for a patient without a care plan; one probe
//! device, a CGM of a patient on the diabetes programme with an added "glucose above 300,
//! no duration, resolves on clear" rule, publishes 350 mg/dL, waits for the `opened`
//! event on `GET /api/v1/alarms/stream`, then 150 mg/dL and waits for `resolved`, over
//! and over. Latency = the publish's write to the socket → the SSE event's arrival.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::BytesMut;
use hdrhistogram::Histogram;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use wardline_alerting::rule::ThresholdRule;
use wardline_alerting::{CarePlan, Direction, PatientBaseline, Priority, Program, Rule, RuleKind};
use wardline_domain::{DeviceKind, ObservationCode, Role};
use wardline_service::Actor;
use wardline_service::people::NewAccount;

use crate::bench::{machine_description, tempfile_dir, wait_for_listen_file};
use crate::setup::fail;

const PASSWORD: &str = "bench clinician password 1";

/// How often a background device publishes what it owes.
const LOAD_TICK: Duration = Duration::from_millis(10);

struct Setup {
    load: Vec<(String, String)>,
    probe: (String, String),
    probe_patient: String,
}

async fn setup(data_dir: &std::path::Path, devices: usize) -> anyhow::Result<Setup> {
    let service = crate::setup::service(data_dir).await?;
    let cli = Actor::CommandLine;
    let since = chrono::Utc::now() - chrono::Duration::days(1);
    let load_patient = crate::setup::patient(&service, "Load").await?;
    let probe_patient = crate::setup::patient(&service, "Probe").await?;
    let mut load = Vec::with_capacity(devices);
    for index in 0..devices {
        let credential = crate::setup::device(
            &service,
            &format!("load-{index:05}"),
            DeviceKind::PulseOximeter,
            load_patient,
            since,
        )
        .await?;
        load.push((credential.device_id, credential.secret));
    }
    let probe =
        crate::setup::device(&service, "probe-cgm", DeviceKind::Cgm, probe_patient, since).await?;
    let clinician = service
        .create_user(
            &cli,
            NewAccount {
                username: "bench-clinician".into(),
                display_name: "Bench Clinician".into(),
                role: Role::Clinician,
                password: Some(PASSWORD.into()),
                patient_id: None,
                password_change_required: None,
            },
        )
        .await
        .map_err(fail)?;
    let team = service
        .create_care_team(&cli, "Bench Team")
        .await
        .map_err(fail)?;
    service
        .add_care_team_member(&cli, team.id, clinician.user.id)
        .await
        .map_err(fail)?;
    service
        .add_care_team_patient(&cli, team.id, probe_patient)
        .await
        .map_err(fail)?;
    let mut plan = CarePlan::from_program(
        probe_patient,
        Program::Diabetes,
        &PatientBaseline::default(),
        chrono::Utc::now(),
    );
    plan.rules.push(Rule::new(
        "bench-high",
        "glucose above 300",
        Priority::High,
        true,
        RuleKind::Threshold(ThresholdRule {
            code: ObservationCode::GlucoseCgm,
            direction: Direction::Above,
            value: 300.0,
            min_duration_secs: 0,
            hysteresis: 10.0,
        }),
    ));
    service
        .assign_care_plan(&cli, probe_patient, plan, "alarm latency benchmark")
        .await
        .map_err(fail)?;
    Ok(Setup {
        load,
        probe: (probe.device_id, probe.secret),
        probe_patient: probe_patient.to_string(),
    })
}

async fn mqtt_connect(address: SocketAddr, id: &str, secret: &str) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let mut out = BytesMut::new();
    let mut connect = v4::Connect::new(id.to_owned());
    connect.keep_alive = 60;
    connect.set_login(id.to_owned(), secret.to_owned());
    connect
        .write(&mut out)
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    stream.write_all(&out).await?;
    let mut incoming = BytesMut::with_capacity(4096);
    loop {
        match v4::Packet::read(&mut incoming, 1 << 20) {
            Ok(v4::Packet::ConnAck(ack)) if ack.code == v4::ConnectReturnCode::Success => {
                return Ok(stream);
            }
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
}

fn reading(seq: i64, code: &str, value: f64, unit: &str) -> Vec<u8> {
    format!(
        "{{\"v\":1,\"seq\":{seq},\"code\":\"{code}\",\"value\":{value},\"unit\":\"{unit}\",\"time\":\"{}\"}}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
    .into_bytes()
}

/// One background device: `per_second` QoS 1 readings, paced every 10 ms from its own
/// `phase` within that tick, at most `window` unacknowledged.
#[allow(clippy::too_many_arguments)]
async fn paced_device(
    address: SocketAddr,
    id: String,
    secret: String,
    phase: Duration,
    per_second: f64,
    window: usize,
    stop: Arc<AtomicBool>,
    measuring: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let stream = mqtt_connect(address, &id, &secret).await?;
    let (mut reader, mut writer) = stream.into_split();
    let in_flight = Arc::new(AtomicU64::new(0));
    let reading_task = {
        let in_flight = Arc::clone(&in_flight);
        let acked = Arc::clone(&acked);
        let measuring = Arc::clone(&measuring);
        tokio::spawn(async move {
            let mut incoming = BytesMut::with_capacity(64 * 1024);
            loop {
                match reader.read_buf(&mut incoming).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                loop {
                    match v4::Packet::read(&mut incoming, 1 << 20) {
                        Ok(v4::Packet::PubAck(_)) => {
                            in_flight.fetch_sub(1, Ordering::Relaxed);
                            if measuring.load(Ordering::Relaxed) {
                                acked.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
        })
    };
    let topic = format!("wardline/v1/devices/{id}/readings");
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut seq: i64 = 0;
    let mut pkid: u16 = 1;
    let mut owed = 0.0f64;
    let tick = LOAD_TICK;
    let mut next = tokio::time::Instant::now() + phase;
    while !stop.load(Ordering::Relaxed) {
        next += tick;
        tokio::time::sleep_until(next).await;
        owed += per_second * tick.as_secs_f64();
        while owed >= 1.0 && (in_flight.load(Ordering::Relaxed) as usize) < window {
            owed -= 1.0;
            let mut publish = v4::Publish::new(
                topic.as_str(),
                QoS::AtLeastOnce,
                reading(seq, "59408-5", f64::from(90 + (seq % 10) as i32), "%"),
            );
            seq += 1;
            publish.pkid = pkid;
            pkid = pkid.checked_add(1).unwrap_or(1);
            publish
                .write(&mut out)
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            in_flight.fetch_add(1, Ordering::Relaxed);
            // One reading per write, as a device sends it.
            writer.write_all(&out).await?;
            out.clear();
        }
        // Readings the window could not take are not owed later: the load stays paced.
        owed = owed.min(1.0);
    }
    reading_task.abort();
    Ok(())
}

/// Alarm events (name, rule, patient) of an SSE stream with their arrival times.
async fn alarm_events(
    http: SocketAddr,
    token: String,
) -> anyhow::Result<mpsc::UnboundedReceiver<(String, String, String, Instant)>> {
    let client = reqwest::Client::builder().build()?;
    let mut response = client
        .get(format!("http://{http}/api/v1/alarms/stream"))
        .bearer_auth(token)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("alarm stream: HTTP {}", response.status());
    }
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            let arrived = Instant::now();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let data: String = block
                    .lines()
                    .filter_map(|line| line.strip_prefix("data: "))
                    .collect();
                if let Ok(event) = serde_json::from_str::<Value>(&data) {
                    let text = |value: &Value| value.as_str().unwrap_or("").to_owned();
                    let _ = sender.send((
                        text(&event["event"]),
                        text(&event["alarm"]["rule_id"]),
                        text(&event["patient_id"]),
                        arrived,
                    ));
                }
            }
        }
    });
    Ok(receiver)
}

pub(crate) async fn alarm_latency(
    devices: usize,
    rate: u64,
    seconds: u64,
    warmup_seconds: u64,
    window: usize,
    pause_ms: u64,
) -> anyhow::Result<()> {
    let temporary = tempfile_dir()?.join("alarm-latency");
    let data_dir = temporary.join("data");
    let setup = setup(&data_dir, devices).await?;
    let listen_file = temporary.join("listen.json");
    let mut server = crate::bench::spawn_server(&data_dir, &listen_file, false, &[], &[])?;
    let result = measure(
        &setup,
        &listen_file,
        &mut server,
        devices,
        rate,
        seconds,
        warmup_seconds,
        window,
        pause_ms,
    )
    .await;
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&temporary);
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    setup: &Setup,
    listen_file: &std::path::Path,
    server: &mut std::process::Child,
    devices: usize,
    rate: u64,
    seconds: u64,
    warmup_seconds: u64,
    window: usize,
    pause_ms: u64,
) -> anyhow::Result<()> {
    let report = wait_for_listen_file(listen_file, server)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    println!("{}", machine_description());
    println!(
        "background: {devices} devices, {rate} QoS 1 readings/s paced (window {window}); probe: one CGM, 350 then 150 mg/dL, {pause_ms} to {} ms apart (every phase of the load's 10 ms tick); {warmup_seconds} s warm-up + {seconds} s measured",
        pause_ms + 10
    );
    let client = reqwest::Client::new();
    let login: Value = client
        .post(format!("http://{}/api/v1/auth/login", report.http))
        .json(&json!({"username": "bench-clinician", "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"]
        .as_str()
        .context("login returned no token")?
        .to_owned();
    let mut events = alarm_events(report.http, token).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let per_device = rate as f64 / devices.max(1) as f64;
    let mut load = Vec::new();
    for (index, (id, secret)) in setup.load.iter().enumerate() {
        // Independent devices do not send in step: their ticks are spread evenly over
        // the 10 ms, as the phases of real devices' clocks are. (Devices all sending at
        // the same instant would make every 10 ms one burst of readings that the
        // storage writer commits in one large group, which measures the burst.)
        let phase = LOAD_TICK.mul_f64(index as f64 / devices.max(1) as f64);
        load.push(tokio::spawn(paced_device(
            report.mqtt,
            id.clone(),
            secret.clone(),
            phase,
            per_device,
            window,
            Arc::clone(&stop),
            Arc::clone(&measuring),
            Arc::clone(&acked),
        )));
    }
    tokio::time::sleep(Duration::from_secs(warmup_seconds)).await;

    let (probe_id, probe_secret) = &setup.probe;
    let probe = mqtt_connect(report.mqtt, probe_id, probe_secret).await?;
    let (mut probe_reader, mut probe_writer) = probe.into_split();
    let drain = tokio::spawn(async move {
        let mut sink = vec![0u8; 4096];
        while let Ok(n) = probe_reader.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    });
    let topic = format!("wardline/v1/devices/{probe_id}/readings");
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram bounds")?;
    let mut resolution = histogram.clone();
    let mut missed = 0u64;
    let mut seq: i64 = 0;
    let mut pkid: u16 = 1;
    let mut phase = 0.0f64;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    while Instant::now() < until {
        for (value, wanted) in [(350.0, "opened"), (150.0, "resolved")] {
            let mut out = BytesMut::new();
            let mut publish = v4::Publish::new(
                topic.as_str(),
                QoS::AtLeastOnce,
                reading(seq, "99504-3", value, "mg/dL"),
            );
            seq += 1;
            publish.pkid = pkid;
            pkid = pkid.checked_add(1).unwrap_or(1);
            publish
                .write(&mut out)
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            let sent = Instant::now();
            probe_writer.write_all(&out).await?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            loop {
                match tokio::time::timeout_at(deadline, events.recv()).await {
                    Ok(Some((event, rule, patient, arrived)))
                        if event == wanted
                            && rule == "bench-high"
                            && patient == setup.probe_patient =>
                    {
                        let micros = arrived.duration_since(sent).as_micros().max(1);
                        let micros = u64::try_from(micros).unwrap_or(u64::MAX);
                        if wanted == "opened" {
                            let _ = histogram.record(micros);
                        } else {
                            let _ = resolution.record(micros);
                        }
                        break;
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => bail!("the alarm stream ended"),
                    Err(_) => {
                        missed += 1;
                        break;
                    }
                }
            }
            // The background devices publish on a 10 ms tick. A pause that is a whole
            // number of ticks would lock the probe to one phase of that tick, and the
            // median would then measure where that phase happens to fall (0.5 to 3.5 ms
            // apart for 47, 50 and 53 ms on one machine), not the server. Each pause adds
            // a further fraction of a tick in golden-ratio steps, so that the probes
            // sample every phase evenly, and a rerun samples the same ones.
            phase = (phase + 0.618_033_988_75) % 1.0;
            let offset = Duration::from_secs_f64(LOAD_TICK.as_secs_f64() * phase);
            tokio::time::sleep(Duration::from_millis(pause_ms) + offset).await;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    measuring.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    drain.abort();
    let mut failed = 0;
    for task in load {
        if !matches!(task.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    let resolved_ms = |quantile: f64| resolution.value_at_quantile(quantile) as f64 / 1000.0;
    println!();
    println!(
        "| background acked readings/s | alarms measured | p50 ms | p99 ms | max ms | missed (no event in 5 s) | failed load connections |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {:.0} | {} | {:.2} | {:.2} | {:.2} | {missed} | {failed} |",
        acked.load(Ordering::Relaxed) as f64 / elapsed,
        histogram.len(),
        ms(0.5),
        ms(0.99),
        histogram.max() as f64 / 1000.0,
    );
    println!();
    println!(
        "resolution (from the in-range reading to its `resolved` event): {} measured, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        resolution.len(),
        resolved_ms(0.5),
        resolved_ms(0.99),
        resolution.max() as f64 / 1000.0,
    );
    if histogram.is_empty() {
        bail!("no alarm event arrived");
    }
    Ok(())
}
