//! Ingest over HTTPS's routes in the formats Wardline did not invent, each beside native
//! format v1 in the same run, every client waiting for each answer before its next
//! request; after a `kill -9`, every acknowledged reading must be in the database.
//!
//! - Nightscout upload: uploaders post batches of sensor glucose entries (as xDrip+ does
//!   after a gap) to their patients' Nightscout sites; native devices post the same
//!   number of readings per request. Both go through the same durable ingest; the
//!   difference is what Nightscout's documents cost on top.
//! - Templated ingest: devices of a model with a mapping template in force (a
//!   CalculatedContent template with JMESPath expressions and a custom function) post
//!   one reading per request in their own JSON; native devices post one format v1
//!   reading per request. The difference is what reading a message with a template
//!   costs.
//! - FHIR: devices post `transaction` Bundles as a Personal Health Device gateway does
//!   (the Device by identifier, then one Observation per reading, each with its code,
//!   UCUM quantity, subject and device references); native devices post the same number
//!   of readings per request in format v1. A transaction is stored all or nothing.

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
use crate::setup::{device, device_of_model, fail, patient, service};

/// What a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Native,
    Nightscout,
    /// The device's own JSON, read with the template of [`templates`].
    Templated,
    /// A FHIR transaction Bundle.
    Fhir,
}

/// One client's endpoint and credential.
#[derive(Debug, Clone)]
struct Client {
    /// The path posted to.
    path: String,
    /// `(header name, value)` of the credential.
    credential: (&'static str, String),
    format: Format,
    /// The device's serial number, which a templated message names.
    serial: String,
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
    let load = format!(
        "load: {clients} clients per kind, each posting {batch} sensor glucose readings per request and waiting for the answer; {warmup_seconds} s warm-up + {seconds} s measured, one kind after the other"
    );
    compare(
        Format::Nightscout,
        clients,
        batch,
        seconds,
        warmup_seconds,
        &load,
        (
            "native v1 batches (HTTP)",
            "Nightscout entries",
            "Nightscout",
        ),
    )
    .await
}

pub(crate) async fn bench_fhir(
    clients: usize,
    batch: usize,
    seconds: u64,
    warmup_seconds: u64,
) -> anyhow::Result<()> {
    let load = format!(
        "load: {clients} devices per kind, each posting {batch} heart-rate readings per request (a FHIR transaction Bundle of {batch} Observations and its Device entry, or a format v1 batch) and waiting for the answer; {warmup_seconds} s warm-up + {seconds} s measured, one kind after the other"
    );
    compare(
        Format::Fhir,
        clients,
        batch,
        seconds,
        warmup_seconds,
        &load,
        (
            "native v1 batches (HTTP)",
            "FHIR transaction Bundles (Observations)",
            "FHIR",
        ),
    )
    .await
}

pub(crate) async fn bench_templated(
    clients: usize,
    seconds: u64,
    warmup_seconds: u64,
) -> anyhow::Result<()> {
    let load = format!(
        "load: {clients} devices per kind, each posting one heart-rate reading per request (its own JSON, or format v1) and waiting for the answer; {warmup_seconds} s warm-up + {seconds} s measured, one kind after the other"
    );
    compare(
        Format::Templated,
        clients,
        1,
        seconds,
        warmup_seconds,
        &load,
        (
            "native v1, one reading per request (HTTP)",
            "templated (CalculatedContent, JMESPath), one reading per request",
            "templated",
        ),
    )
    .await?;
    reading_cost()
}

/// What reading one message costs on one core, in this process, without the network or
/// the commit: a format v1 reading beside the same reading in the templated model's
/// JSON, mapped by its template (the work a templated message adds to a request).
fn reading_cost() -> anyhow::Result<()> {
    const MESSAGES: u32 = 200_000;
    let (device, fhir) = templates();
    let mapping = wardline_mapping::Mapping::compile(&device, &fhir)
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let now = chrono::Utc::now();
    let limits = wardline_domain::PayloadLimits::default();
    let time = now - chrono::Duration::minutes(1);
    let own = json!({"serial": "s-1", "ts": time.timestamp_millis(), "pulse": 72}).to_string();
    let context = wardline_mapping::ApplyContext {
        now,
        max_future_skew: limits.max_future_skew,
        max_readings: limits.max_readings,
        message_bytes: own.len() + 512,
    };
    let native = json!({"v": 1, "seq": 1, "code": "8867-4", "value": 72, "unit": "/min",
                        "time": time.to_rfc3339()})
    .to_string();
    let started = Instant::now();
    for _ in 0..MESSAGES {
        wardline_domain::parse_device_message(native.as_bytes(), now, &limits)
            .map_err(|error| anyhow::anyhow!("{error}"))?;
    }
    let native_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(MESSAGES);
    let started = Instant::now();
    for _ in 0..MESSAGES {
        // As ingest does it: parse the JSON, wrap it as an IoT Hub event, map it.
        let body: Value = serde_json::from_str(&own)?;
        let message = wardline_mapping::envelope(body, "dev_bench", now);
        let mapped = mapping
            .apply(&message, &["dev_bench", "s-1"], &context)
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        if mapped.readings.len() != 1 {
            bail!("the template gave {} readings", mapped.readings.len());
        }
    }
    let templated_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(MESSAGES);
    println!();
    println!(
        "reading one message in this process, one core, {MESSAGES} times: format v1 {native_us:.2} µs, templated {templated_us:.2} µs (ratio {:.1})",
        templated_us / native_us
    );
    Ok(())
}

/// Runs the native load, then `format`'s, on one server, and prints both.
async fn compare(
    format: Format,
    clients: usize,
    batch: usize,
    seconds: u64,
    warmup_seconds: u64,
    load: &str,
    (native_label, other_label, other_name): (&str, &str, &str),
) -> anyhow::Result<()> {
    let temporary = tempfile_dir()?;
    let data_dir = temporary.join("data");
    let (other, native) = set_up(&data_dir, clients, format).await?;
    let listen_file = temporary.join("listen.json");
    let mut server = crate::bench::spawn_server(&data_dir, &listen_file, false, &[], &[])?;
    let report = wait_for_listen_file(&listen_file, &mut server)?;
    let base = format!("http://{}", report.http);
    println!("{}", machine_description());
    println!("{load}");
    let mut rows = Vec::new();
    let mut acknowledged = 0;
    for (label, group) in [(native_label, &native), (other_label, &other)] {
        let glucose = format == Format::Nightscout;
        let (totals, latency) =
            run_load(&base, group, batch, seconds, warmup_seconds, glucose).await?;
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
    if let [(_, native, _), (_, other, _)] = rows.as_slice()
        && native.readings_measured > 0
    {
        println!();
        println!(
            "ratio {other_name} / native: {:.2}",
            other.readings_measured as f64 / native.readings_measured as f64
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

/// The bench's device model, read with a CalculatedContent template whose expressions
/// are JMESPath, one of them a custom function (its time is a Unix time in ms).
pub(crate) const TEMPLATED_MODEL: &str = "bench-templated";

/// The device and FHIR templates of [`TEMPLATED_MODEL`].
pub(crate) fn templates() -> (Value, Value) {
    let device = json!({"templateType": "CollectionContent", "template": [
        {"templateType": "CalculatedContent", "template": {
            "typeName": "pulse", "defaultExpressionLanguage": "JmesPath",
            "typeMatchExpression": "[Body][?pulse != null]",
            "deviceIdExpression": "matchedToken.serial",
            "timestampExpression": "fromUnixTimestampMs(matchedToken.ts)",
            "values": [{"valueName": "pulse", "valueExpression": "matchedToken.pulse", "required": true}]}}
    ]});
    let fhir = json!({"templateType": "CollectionFhir", "template": [
        {"templateType": "CodeValueFhir", "template": {"typeName": "pulse",
            "codes": [{"code": "8867-4", "system": "http://loinc.org", "display": "Heart rate"}],
            "value": {"valueName": "pulse", "valueType": "Quantity", "unit": "count/min"}}}
    ]});
    (device, fhir)
}

/// A patient per client of each kind: a Nightscout site or a device of the templated
/// model for the one, a native device for the other.
async fn set_up(
    data_dir: &Path,
    clients: usize,
    format: Format,
) -> anyhow::Result<(Vec<Client>, Vec<Client>)> {
    let service = service(data_dir).await?;
    let mut others = Vec::with_capacity(clients);
    let mut native = Vec::with_capacity(clients);
    // Readings go back years (each request's readings lie before the previous one's).
    let since = chrono::Utc::now() - chrono::Duration::days(3650);
    if format == Format::Templated {
        let (device, fhir) = templates();
        let registered = service
            .register_mapping_template(
                &Actor::CommandLine,
                TEMPLATED_MODEL,
                device.to_string().as_bytes(),
                fhir.to_string().as_bytes(),
            )
            .await
            .map_err(fail)?;
        service
            .put_mapping_template_in_force(&Actor::CommandLine, &registered.template.id)
            .await
            .map_err(fail)?;
    }
    let native_kind = match format {
        Format::Templated | Format::Fhir => DeviceKind::PulseOximeter,
        _ => DeviceKind::Cgm,
    };
    for index in 0..clients {
        let other = patient(&service, &format!("Native bench {index}")).await?;
        let serial = format!("native-bench-{index}");
        let credential = device(&service, &serial, native_kind, other, since).await?;
        native.push(Client {
            path: format!("/api/v1/devices/{}/readings", credential.device_id),
            credential: ("authorization", format!("Bearer {}", credential.secret)),
            format: Format::Native,
            serial,
        });
        if format == Format::Fhir {
            let patient_id = patient(&service, &format!("FHIR bench {index}")).await?;
            let serial = format!("fhir-bench-{index}");
            let credential = device(
                &service,
                &serial,
                DeviceKind::PulseOximeter,
                patient_id,
                since,
            )
            .await?;
            let basic = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{}:{}", credential.device_id, credential.secret),
            );
            others.push(Client {
                path: "/fhir/R4".into(),
                credential: ("authorization", format!("Basic {basic}")),
                format,
                serial: credential.device_id.to_string(),
            });
            continue;
        }
        if format == Format::Templated {
            let patient_id = patient(&service, &format!("Templated bench {index}")).await?;
            let serial = format!("templated-bench-{index}");
            let credential = device_of_model(
                &service,
                &serial,
                DeviceKind::PulseOximeter,
                TEMPLATED_MODEL,
                patient_id,
                since,
            )
            .await?;
            others.push(Client {
                path: format!("/api/v1/devices/{}/readings", credential.device_id),
                credential: ("authorization", format!("Bearer {}", credential.secret)),
                format,
                serial,
            });
            continue;
        }
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
        others.push(Client {
            path: format!("/ns/{}/api/v1/entries", site.site.id),
            credential: ("api-secret", hash),
            format,
            serial: site.site.id,
        });
    }
    Ok((others, native))
}

async fn run_load(
    base: &str,
    clients: &[Client],
    batch: usize,
    seconds: u64,
    warmup_seconds: u64,
    glucose: bool,
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
                let body = body(&client, batch, newest, &mut seq, glucose);
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

/// One request's body: `batch` readings, newest first, 5 minutes apart: sensor glucose
/// for Nightscout and its native comparison, heart rate for the templated model and its.
fn body(client: &Client, batch: usize, newest_ms: i64, seq: &mut i64, glucose: bool) -> String {
    let readings: Vec<Value> = (0..batch as i64)
        .map(|index| {
            let date = newest_ms - index * 300_000;
            let (code, unit, value) = if glucose {
                ("99504-3", "mg/dL", 90 + (date / 300_000).rem_euclid(120))
            } else {
                ("8867-4", "/min", 60 + (date / 300_000).rem_euclid(40))
            };
            let time = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(date)
                .map(|time| time.to_rfc3339())
                .unwrap_or_default();
            match client.format {
                Format::Fhir => json!({"resource": {"resourceType": "Observation", "status": "final",
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": "Heart rate"}]},
                    "device": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000001"},
                    "effectiveDateTime": time,
                    "valueQuantity": {"value": value, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": unit}},
                    "request": {"method": "POST", "url": "Observation"}}),
                Format::Nightscout => json!({"type": "sgv", "sgv": value, "date": date,
                    "direction": "Flat", "noise": 1, "device": "xDrip-DexcomG6"}),
                Format::Templated => json!({"serial": client.serial, "ts": date, "pulse": value}),
                Format::Native => {
                    *seq += 1;
                    json!({"seq": *seq, "code": code, "value": value, "unit": unit, "time": time})
                }
            }
        })
        .collect();
    match (client.format, readings.as_slice()) {
        (Format::Nightscout, _) => Value::Array(readings).to_string(),
        (Format::Fhir, _) => {
            let mut entries = vec![json!({
                "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
                "resource": {"resourceType": "Device",
                             "identifier": [{"system": "urn:wardline:device", "value": client.serial}]},
                "request": {"method": "POST", "url": "Device",
                            "ifNoneExist": format!("identifier=urn:wardline:device|{}", client.serial)}})];
            entries.extend(readings);
            json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}).to_string()
        }
        (Format::Templated, [one]) => one.to_string(),
        (Format::Native, [one]) => {
            let mut single = one.clone();
            single["v"] = json!(1);
            single.to_string()
        }
        _ => json!({"v": 1, "readings": readings}).to_string(),
    }
}

async fn count_stored(data_dir: &Path) -> anyhow::Result<u64> {
    let service = service(data_dir).await?;
    Ok(service.store().count_observations().await?)
}
