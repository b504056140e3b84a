//! Nightscout upload: uploaders post batches of sensor glucose entries (as xDrip+ does
//! after a gap) to their patients' Nightscout sites, each waiting for the answer before
//! its next batch; beside them, in the same run, the same number of native devices post
//! the same number of readings per request in Wardline's own format (`readings` batches
//! over HTTP). Both go through the same durable ingest; the difference is what
//! Nightscout's documents cost on top. After a `kill -9`, every acknowledged reading must
//! be in the database.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use wardline_domain::DeviceKind;
use wardline_service::Actor;

use crate::bench::{machine_description, tempfile_dir, wait_for_listen_file};
use crate::setup::{device, fail, patient, service};

/// One client's endpoint and credential.
#[derive(Debug, Clone)]
struct Client {
    /// The path posted to.
    path: String,
    /// `(header name, value)` of the credential.
    credential: (&'static str, String),
    nightscout: bool,
}

#[derive(Debug, Default)]
struct Totals {
    readings_measured: u64,
    readings_total: u64,
    requests_measured: u64,
    failed: u64,
}

pub(crate) async fn bench_nightscout(
    clients: usize,
    batch: usize,
    seconds: u64,
    warmup_seconds: u64,
) -> anyhow::Result<()> {
    let temporary = tempfile_dir()?;
    let data_dir = temporary.join("data");
    let (nightscout, native) = set_up(&data_dir, clients).await?;
    let listen_file = temporary.join("listen.json");
    let mut server = crate::bench::spawn_server(&data_dir, &listen_file, false, &[])?;
    let report = wait_for_listen_file(&listen_file, &mut server)?;
    let base = format!("http://{}", report.http);
    println!("{}", machine_description());
    println!(
        "load: {clients} clients per kind, each posting {batch} sensor glucose readings per request and waiting for the answer; {warmup_seconds} s warm-up + {seconds} s measured, one kind after the other"
    );
    let mut rows = Vec::new();
    let mut acknowledged = 0;
    for (label, group) in [
        ("native v1 batches (HTTP)", &native),
        ("Nightscout entries", &nightscout),
    ] {
        let (totals, latency) = run_load(&base, group, batch, seconds, warmup_seconds).await?;
        acknowledged += totals.readings_total;
        rows.push((label, totals, latency));
    }
    let _ = server.kill();
    let _ = server.wait();
    let stored = count_stored(&data_dir).await?;
    println!();
    println!("| load | readings/s | requests/s | p50 ms | p99 ms | max ms | failed requests |");
    println!("|---|---|---|---|---|---|---|");
    for (label, totals, latency) in &rows {
        println!(
            "| {label} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
            totals.readings_measured as f64 / seconds as f64,
            totals.requests_measured as f64 / seconds as f64,
            latency.value_at_quantile(0.5) as f64 / 1000.0,
            latency.value_at_quantile(0.99) as f64 / 1000.0,
            latency.max() as f64 / 1000.0,
            totals.failed
        );
    }
    if let [(_, native, _), (_, nightscout, _)] = rows.as_slice()
        && native.readings_measured > 0
    {
        println!();
        println!(
            "ratio Nightscout / native: {:.2}",
            nightscout.readings_measured as f64 / native.readings_measured as f64
        );
    }
    println!();
    println!(
        "durability: {acknowledged} readings acknowledged, {stored} in the database after kill -9"
    );
    let _ = std::fs::remove_dir_all(&temporary);
    if stored < acknowledged {
        bail!(
            "{} acknowledged readings are missing from the database",
            acknowledged - stored
        );
    }
    Ok(())
}

/// A patient per client of each kind: a Nightscout site for the one, a CGM for the other.
async fn set_up(data_dir: &Path, clients: usize) -> anyhow::Result<(Vec<Client>, Vec<Client>)> {
    let service = service(data_dir).await?;
    let mut nightscout = Vec::with_capacity(clients);
    let mut native = Vec::with_capacity(clients);
    // Readings go back years (each request's batch lies before the previous one).
    let since = chrono::Utc::now() - chrono::Duration::days(3650);
    for index in 0..clients {
        let patient_id = patient(&service, &format!("Nightscout bench {index}")).await?;
        let site = service
            .enable_nightscout(&Actor::CommandLine, patient_id)
            .await
            .map_err(fail)?;
        let hash: String = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            site.secret.expose().as_bytes(),
        )
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
        nightscout.push(Client {
            path: format!("/ns/{}/api/v1/entries", site.site.id),
            credential: ("api-secret", hash),
            nightscout: true,
        });
        let other = patient(&service, &format!("Native bench {index}")).await?;
        let credential = device(
            &service,
            &format!("cgm-bench-{index}"),
            DeviceKind::Cgm,
            other,
            since,
        )
        .await?;
        native.push(Client {
            path: format!("/api/v1/devices/{}/readings", credential.device_id),
            credential: ("authorization", format!("Bearer {}", credential.secret)),
            nightscout: false,
        });
    }
    Ok((nightscout, native))
}

async fn run_load(
    base: &str,
    clients: &[Client],
    batch: usize,
    seconds: u64,
    warmup_seconds: u64,
) -> anyhow::Result<(Totals, Histogram<u64>)> {
    // reqwest is built without a TLS provider of its own (the plaintext loopback here
    // needs none, but the client still asks for one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients.len())
        .timeout(Duration::from_secs(30))
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let measure_from = Instant::now() + Duration::from_secs(warmup_seconds);
    let measure_until = measure_from + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for client in clients {
        let (http, stop, url) = (
            http.clone(),
            Arc::clone(&stop),
            format!("{base}{}", client.path),
        );
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut totals = Totals::default();
            let mut latency = crate::bench::new_histogram();
            // Each request's readings lie 5 minutes apart, before the previous request's.
            let mut newest = chrono::Utc::now().timestamp_millis() / 1000 * 1000 - 60_000;
            let mut seq = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let body = body(&client, batch, newest, &mut seq);
                newest -= batch as i64 * 300_000;
                let sent = Instant::now();
                let answer = http
                    .post(&url)
                    .header(client.credential.0, &client.credential.1)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let done = Instant::now();
                match answer {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        totals.readings_total += batch as u64;
                        if sent >= measure_from && done <= measure_until {
                            totals.readings_measured += batch as u64;
                            totals.requests_measured += 1;
                            let _ =
                                latency.record(done.duration_since(sent).as_micros().max(1) as u64);
                        }
                    }
                    _ => totals.failed += 1,
                }
            }
            (totals, latency)
        }));
    }
    tokio::time::sleep_until(measure_until.into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut totals = Totals::default();
    let mut latency = crate::bench::new_histogram();
    for task in tasks {
        let (client, histogram) = task.await.context("a client task failed")?;
        totals.readings_measured += client.readings_measured;
        totals.readings_total += client.readings_total;
        totals.requests_measured += client.requests_measured;
        totals.failed += client.failed;
        let _ = latency.add(&histogram);
    }
    Ok((totals, latency))
}

/// One request's body: `batch` sensor glucose readings, newest first, 5 minutes apart.
fn body(client: &Client, batch: usize, newest_ms: i64, seq: &mut i64) -> String {
    let readings: Vec<Value> = (0..batch as i64)
        .map(|index| {
            let date = newest_ms - index * 300_000;
            let value = 90 + (date / 300_000).rem_euclid(120);
            if client.nightscout {
                json!({"type": "sgv", "sgv": value, "date": date, "direction": "Flat",
                       "noise": 1, "device": "xDrip-DexcomG6"})
            } else {
                *seq += 1;
                json!({"seq": *seq, "code": "99504-3", "value": value, "unit": "mg/dL",
                       "time": chrono::DateTime::<chrono::Utc>::from_timestamp_millis(date)
                           .map(|time| time.to_rfc3339()).unwrap_or_default()})
            }
        })
        .collect();
    if client.nightscout {
        Value::Array(readings).to_string()
    } else {
        json!({"v": 1, "readings": readings}).to_string()
    }
}

async fn count_stored(data_dir: &Path) -> anyhow::Result<u64> {
    let service = service(data_dir).await?;
    Ok(service.store().count_observations().await?)
}
