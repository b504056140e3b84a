//! `wardline bench gateway-drain`: the home gateway's drain of a large backlog.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use wardline_domain::DeviceId;
use wardline_gateway::GatewayConfig;

/// `wardline bench gateway-drain`: fills a gateway queue with `readings` single-reading
/// messages from `devices` devices, starts `wardline serve` (TLS, as in production),
/// runs the gateway in this process against it, and times the drain to an empty queue.
/// Then the server is killed and the stored observations counted: all must be there.
pub(crate) async fn bench_drain(
    readings: usize,
    devices: usize,
    batch: usize,
) -> anyhow::Result<()> {
    use std::time::Instant;

    use wardline_domain::DeviceKind;
    use wardline_gateway::queue::{NewMessage, Queue};

    let temporary = crate::bench::tempfile_dir()?;
    let data_dir = temporary.join("data");
    let queue_path = temporary.join("gateway-queue.db");

    // Enrol a patient, the gateway and the devices behind it.
    let service = crate::setup::service(&data_dir).await?;
    let patient = crate::setup::patient(&service, "Drain Test").await?;
    let since = chrono::Utc::now() - chrono::Duration::days(2);
    let gateway = crate::setup::device(
        &service,
        "bench-gateway",
        DeviceKind::Gateway,
        patient,
        since,
    )
    .await?;
    let gateway_id =
        DeviceId::parse(&gateway.device_id).map_err(|error| anyhow::anyhow!("{error}"))?;
    let mut device_ids = Vec::with_capacity(devices);
    for index in 0..devices {
        let device = crate::setup::device(
            &service,
            &format!("drain-{index:04}"),
            DeviceKind::PulseOximeter,
            patient,
            since,
        )
        .await?;
        device_ids.push(device.device_id);
    }
    drop(service);

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
    let mut server = crate::bench::spawn_server(&data_dir, &listen_file, true, &[], &[])?;
    let report = crate::bench::wait_for_listen_file(&listen_file, &mut server)?;
    let ca_file = report.ca_path.clone().context("the server runs with TLS")?;

    // The gateway, in this process.
    let mut config = GatewayConfig::new(
        format!("https://localhost:{}", report.http.port()),
        gateway_id,
        gateway.secret.clone(),
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
    let service = crate::setup::service(&data_dir).await?;
    let stored = service.store().count_observations().await?;
    drop(service);
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
