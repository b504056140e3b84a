//! `wardline bench fhir-export`: a ward's vitals taken out through FHIR bulk export, beside
//! the same readings paged out through FHIR search in the same run (what a client does
//! without bulk export). The data is loaded first through the service layer (one minute
//! apart, heart rate and SpO2, for every patient), and is not what is measured.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use wardline_domain::{DeviceKind, ObservationCode, PatientId, Reading, Role};
use wardline_service::people::NewAccount;
use wardline_service::{Actor, Wardline};

use crate::bench::{machine_description, spawn_server, tempfile_dir, wait_for_listen_file};
use crate::setup::{device, fail, patient, service};

const USERNAME: &str = "bench-clinician";
const PASSWORD: &str = "a bench clinician's long password";
/// Readings stored per call while loading.
const LOAD_BATCH: usize = 1000;

/// What was loaded: the ward's care team and its patients.
struct Ward {
    team: String,
    patients: Vec<PatientId>,
    readings: u64,
}

async fn load_ward(data_dir: &std::path::Path, patients: usize, days: i64) -> anyhow::Result<Ward> {
    let service: Wardline = service(data_dir).await?;
    let cli = Actor::CommandLine;
    let team = service
        .create_care_team(&cli, "Bench ward")
        .await
        .map_err(fail)?;
    let clinician = service
        .create_user(
            &cli,
            NewAccount {
                username: USERNAME.into(),
                display_name: "Bench Clinician".into(),
                role: Role::Clinician,
                password: Some(PASSWORD.into()),
                patient_id: None,
                password_change_required: Some(false),
            },
        )
        .await
        .map_err(fail)?
        .user;
    service
        .add_care_team_member(&cli, team.id, clinician.id)
        .await
        .map_err(fail)?;
    let minutes = days * 24 * 60;
    let first = chrono::Utc::now() - chrono::Duration::minutes(minutes + 5);
    let mut ids = Vec::with_capacity(patients);
    let mut readings = 0_u64;
    for index in 0..patients {
        let patient_id = patient(&service, &format!("Bench patient {index}")).await?;
        service
            .add_care_team_patient(&cli, team.id, patient_id)
            .await
            .map_err(fail)?;
        let credential = device(
            &service,
            &format!("export-bench-{index:04}"),
            DeviceKind::PulseOximeter,
            patient_id,
            first - chrono::Duration::minutes(1),
        )
        .await?;
        let device_id = wardline_domain::DeviceId::parse(&credential.device_id)
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let mut batch = Vec::with_capacity(LOAD_BATCH);
        for minute in 0..minutes {
            let effective = first + chrono::Duration::minutes(minute);
            let wobble = (minute % 17) as f64;
            for (offset, code, value) in [
                (0, ObservationCode::HeartRate, 62.0 + wobble),
                (
                    1,
                    ObservationCode::OxygenSaturationPulseOximetry,
                    95.0 + wobble / 8.0,
                ),
            ] {
                batch.push(Reading {
                    seq: minute * 2 + offset,
                    code,
                    value,
                    original: None,
                    effective,
                });
            }
            if batch.len() >= LOAD_BATCH || minute + 1 == minutes {
                readings += batch.len() as u64;
                service
                    .ingest()
                    .store_readings(&device_id, "bench", std::mem::take(&mut batch))
                    .await?;
            }
        }
        ids.push(patient_id);
    }
    Ok(Ward {
        team: team.id.to_string(),
        patients: ids,
        readings,
    })
}

/// The server's peak resident memory so far, in MiB (Linux's `VmHWM`).
fn peak_memory_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub(crate) async fn bench_fhir_export(
    patients: usize,
    days: i64,
    search_patients: usize,
) -> anyhow::Result<()> {
    let temporary = tempfile_dir()?;
    let data_dir = temporary.join("data");
    println!("{}", machine_description());
    println!(
        "load: {patients} patients of one care team, each with heart rate and SpO2 once a minute for {days} days; one clinician's client"
    );
    let loading = Instant::now();
    let ward = load_ward(&data_dir, patients, days).await?;
    println!(
        "loaded {} readings in {:.0} s (through the service layer; not measured)",
        ward.readings,
        loading.elapsed().as_secs_f64()
    );
    let listen_file = temporary.join("listen.json");
    let mut server = Server(spawn_server(&data_dir, &listen_file, false, &[], &[])?);
    let result = measure(&mut server.0, &listen_file, &ward, search_patients).await;
    drop(server);
    let _ = std::fs::remove_dir_all(&temporary);
    result
}

/// The server under test, stopped however the run ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn measure(
    server: &mut std::process::Child,
    listen_file: &std::path::Path,
    ward: &Ward,
    search_patients: usize,
) -> anyhow::Result<()> {
    let report = wait_for_listen_file(listen_file, server)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let base = format!("http://{}", report.http);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": USERNAME, "password": PASSWORD}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = login["token"]
        .as_str()
        .context("the login answered no token")?
        .to_owned();
    let bearer = format!("Bearer {token}");

    // Baseline: a client pages the readings of the first patients out by search, 1,000
    // a page, one code after the other, following the next links.
    let searched_patients = search_patients.min(ward.patients.len());
    let started = Instant::now();
    let mut searched = 0_u64;
    for patient_id in ward.patients.iter().take(searched_patients) {
        for code in ["8867-4", "59408-5"] {
            let mut next = Some(format!(
                "{base}/fhir/R4/Observation?patient=Patient/{patient_id}&code={code}&_count=1000"
            ));
            while let Some(url) = next.take() {
                let bundle: Value = http
                    .get(&url)
                    .header("authorization", &bearer)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                searched += bundle["entry"]
                    .as_array()
                    .map_or(0, |entries| entries.len()) as u64;
                next = bundle["link"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|link| link["relation"] == "next")
                    .and_then(|link| link["url"].as_str())
                    .map(str::to_owned);
            }
        }
    }
    let search_seconds = started.elapsed().as_secs_f64();
    let memory_before = peak_memory_mib(server.id());

    // Bulk export of the whole ward: kick-off, status polled every half second (the
    // server asks for two; polling faster only sharpens the measured end), then every
    // file fetched one after the other.
    let started = Instant::now();
    let kick_off = http
        .get(format!(
            "{base}/fhir/R4/Group/{}/$export?_type=Observation",
            ward.team
        ))
        .header("authorization", &bearer)
        .header("prefer", "respond-async")
        .header("accept", "application/fhir+json")
        .send()
        .await?;
    if kick_off.status() != reqwest::StatusCode::ACCEPTED {
        bail!(
            "the kick-off answered {}: {}",
            kick_off.status(),
            kick_off.text().await?
        );
    }
    let status_url = kick_off
        .headers()
        .get("content-location")
        .and_then(|value| value.to_str().ok())
        .context("no Content-Location")?
        .to_owned();
    let manifest: Value = loop {
        let answer = http
            .get(&status_url)
            .header("authorization", &bearer)
            .send()
            .await?;
        match answer.status() {
            reqwest::StatusCode::OK => break answer.json().await?,
            reqwest::StatusCode::ACCEPTED => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => bail!(
                "the export's status answered {other}: {}",
                answer.text().await?
            ),
        }
    };
    let written_seconds = started.elapsed().as_secs_f64();
    let memory_after = peak_memory_mib(server.id());
    let started = Instant::now();
    let mut lines = 0_u64;
    let mut bytes = 0_u64;
    let outputs = manifest["output"].as_array().cloned().unwrap_or_default();
    for output in &outputs {
        let url = output["url"].as_str().context("a file without a URL")?;
        let mut response = http
            .get(url)
            .header("authorization", &bearer)
            .send()
            .await?
            .error_for_status()?;
        while let Some(chunk) = response.chunk().await? {
            bytes += chunk.len() as u64;
            lines += chunk.iter().filter(|byte| **byte == b'\n').count() as u64;
        }
    }
    let download_seconds = started.elapsed().as_secs_f64();
    let listed: u64 = outputs
        .iter()
        .filter_map(|output| output["count"].as_u64())
        .sum();
    if lines != listed || lines != ward.readings {
        bail!(
            "the export held {lines} lines, its manifest listed {listed}, {} readings were loaded",
            ward.readings
        );
    }
    let rate = |count: u64, seconds: f64| count as f64 / seconds.max(1e-9);
    println!();
    println!(
        "| way out | resources | seconds | resources/s |\n|---|---|---|---|\n| FHIR search, 1,000 a page ({searched_patients} patients; baseline) | {searched} | {search_seconds:.1} | {:.0} |\n| bulk export written (kick-off to manifest, {} files) | {lines} | {written_seconds:.1} | {:.0} |\n| bulk export fetched (every file, one after the other; {:.0} MiB) | {lines} | {download_seconds:.1} | {:.0} |\n| bulk export, kick-off to last byte | {lines} | {:.1} | {:.0} |",
        rate(searched, search_seconds),
        outputs.len(),
        rate(lines, written_seconds),
        bytes as f64 / 1_048_576.0,
        rate(lines, download_seconds),
        written_seconds + download_seconds,
        rate(lines, written_seconds + download_seconds),
    );
    if let (Some(before), Some(after)) = (memory_before, memory_after) {
        println!(
            "server peak resident memory: {before:.0} MiB before the export, {after:.0} MiB after it"
        );
    }
    Ok(())
}
