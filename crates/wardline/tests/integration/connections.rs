//! Slow HTTP clients cannot hold the server: headers that do not arrive end the
//! connection, the caps on connections in total and per address close the rest unread,
//! and devices still get in over MQTT while HTTP is full.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::AsyncClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::support::{
    TestServer, await_pubacks, metric, mqtt_v311, publish_qos1, reading, tls_client_config,
};

/// A TLS connection to the HTTP listener from a chosen loopback address.
async fn connect_from(
    server: &TestServer,
    from: Ipv4Addr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    let tcp = socket
        .connect(SocketAddr::from((
            [127, 0, 0, 1],
            server.report.http.port(),
        )))
        .await?;
    let connector = TlsConnector::from(Arc::new(tls_client_config(&server.ca_pem())));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// Starts a request and never finishes its headers.
async fn slow_client(server: &TestServer, from: Ipv4Addr) -> TlsStream<TcpStream> {
    never_finish(connect_from(server, from).await.expect("admitted")).await
}

async fn never_finish(mut stream: TlsStream<TcpStream>) -> TlsStream<TcpStream> {
    stream
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1")
        .await
        .expect("partial headers");
    stream.flush().await.expect("flush");
    stream
}

/// Whether the server closed the connection (after an error response or none) within
/// `within`.
async fn closed_within(stream: &mut TlsStream<TcpStream>, within: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_http_clients_are_cut_off_and_devices_still_get_in() {
    let server = TestServer::start_with_env(&[
        ("WARDLINE_HTTP_HEADER_READ_TIMEOUT_SECONDS", "3"),
        ("WARDLINE_HTTP_MAX_CONNECTIONS", "12"),
        ("WARDLINE_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "6"),
    ])
    .await;
    let ward = server.ward().await;
    let admin = server.admin().await;

    // Slow clients fill one address's share (the harness's own client holds pooled
    // connections from 127.0.0.1, so they come from other loopback addresses)...
    let mut slow = Vec::new();
    for _ in 0..6 {
        slow.push(slow_client(&server, Ipv4Addr::new(127, 0, 0, 2)).await);
    }
    assert!(
        connect_from(&server, Ipv4Addr::new(127, 0, 0, 2))
            .await
            .is_err(),
        "a seventh connection from one address is closed unread"
    );
    // ...and then the server's, from the next addresses, until one is refused.
    let fresh = Ipv4Addr::new(127, 0, 0, 3);
    while let Ok(stream) = connect_from(&server, fresh).await {
        slow.push(never_finish(stream).await);
        assert!(slow.len() <= 12, "the total cap of 12 holds");
    }
    assert!(
        slow.len() > 6,
        "the server's cap is reached below the second address's"
    );

    // HTTP is full; a device still delivers over MQTT and hears its PUBACK.
    let (client, mut eventloop) =
        AsyncClient::new(mqtt_v311(&server, &ward.device, &ward.device.secret), 10);
    publish_qos1(&client, &ward.device, reading(1, "99504-3", 112.0, "mg/dL")).await;
    assert_eq!(await_pubacks(&mut eventloop, 1).await.len(), 1);

    // Headers that do not arrive in 3 s end their connections, and HTTP serves again.
    for stream in &mut slow {
        assert!(
            closed_within(stream, Duration::from_secs(8)).await,
            "a connection whose headers never finish is closed"
        );
    }
    drop(slow);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        if let Ok(response) = server
            .client
            .get(server.url("/metrics"))
            .bearer_auth(&admin.token)
            .send()
            .await
            && response.status() == 200
        {
            break response.text().await.expect("metrics");
        }
        assert!(tokio::time::Instant::now() < deadline, "HTTP serves again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        metric(
            &text,
            "wardline_http_connections_refused_total{cap=\"address\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &text,
            "wardline_http_connections_refused_total{cap=\"total\"}"
        ) >= 1.0
    );
}

/// The process's peak resident memory, in KiB (Linux).
fn peak_resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Resident memory the server may reach under the flood below: every login runs Argon2id
/// (19 MiB) in one of a fixed number of slots, and the throttle refuses the rest early.
const LOGIN_FLOOD_BOUND_KIB: u64 = 400 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_keeps_the_servers_memory_bounded() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let pid = server.child.id();
    let mut logins = tokio::task::JoinSet::new();
    for n in 0..300 {
        let client = server.client.clone();
        let url = server.url("/api/v1/auth/login");
        logins.spawn(async move {
            client
                .post(url)
                .json(&serde_json::json!({"username": format!("flood{n}"), "password": "x".repeat(64)}))
                .send()
                .await
                // Beyond the connections one address may hold, a connection is closed
                // unread: no status (0).
                .map_or(0, |response| response.status().as_u16())
        });
    }
    let mut statuses = std::collections::BTreeMap::new();
    while let Some(joined) = logins.join_next().await {
        let status = joined.expect("task");
        *statuses.entry(status).or_insert(0) += 1;
    }
    let peak = peak_resident_kib(pid);
    println!(
        "login flood: answers {statuses:?}, peak resident memory {} MiB",
        peak / 1024
    );
    assert!(
        statuses
            .keys()
            .all(|status| [0, 401, 429, 503].contains(status)),
        "closed unread, wrong password, throttled or busy: {statuses:?}"
    );
    assert!(
        peak < LOGIN_FLOOD_BOUND_KIB,
        "peak resident memory {} MiB",
        peak / 1024
    );
    // The server still serves the people already logged in.
    assert_eq!(server.get(&admin, "/api/v1/users").await.status(), 200);
}

/// Over HTTP/2 a body over the limit is answered like over HTTP/1.1, with 413 and the
/// API's error, and a refused credential with 401, not with a stream reset that the
/// client reports instead of the answer. curl (with nghttp2) is the client: it is one
/// that reports such a reset as "Stream error in the HTTP/2 framing layer".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_body_over_http2_gets_its_answer_not_a_reset() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let folder = tempfile::tempdir().expect("temp dir");
    let oversized = folder.path().join("oversized.json");
    std::fs::write(&oversized, vec![b' '; 3 * 1024 * 1024]).expect("body file");
    let ca = server.report.ca_path.clone().expect("tls on");
    let readings = format!("/api/v1/devices/{}/readings", ward.device.id);
    let cases = [
        ("/api/v1/auth/login", None, 413, "payload_too_large"),
        (
            readings.as_str(),
            Some(ward.device.secret.as_str()),
            413,
            "payload_too_large",
        ),
        (readings.as_str(), Some("wds_wrong"), 401, "unauthenticated"),
    ];
    for (path, secret, status, code) in cases {
        let mut curl = std::process::Command::new("curl");
        curl.args(["--silent", "--show-error", "--http2", "--request", "POST"])
            .arg("--cacert")
            .arg(&ca)
            .args(["--header", "Content-Type: application/json"])
            .arg("--data-binary")
            .arg(format!("@{}", oversized.display()))
            .args(["--write-out", "\n%{http_code} %{http_version}"]);
        if let Some(secret) = secret {
            curl.args(["--header", &format!("Authorization: Bearer {secret}")]);
        }
        curl.arg(server.url(path));
        let output = tokio::task::spawn_blocking(move || curl.output())
            .await
            .expect("curl ran")
            .expect("curl runs (Debian's curl)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{path}: curl failed: {stderr} {stdout}"
        );
        let (body, last) = stdout.rsplit_once('\n').expect("the status line");
        assert_eq!(last, format!("{status} 2"), "{path}: {stdout}");
        let body: serde_json::Value = serde_json::from_str(body).expect("a JSON error");
        assert_eq!(body["error"]["code"], code, "{path}");
    }
}

/// Reads are compressed for a client that accepts it (curl, an independent client,
/// decodes them): the web app and the API's JSON. Writes, whose answers may hold a
/// secret next to text the client sent, are not; nor are event streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_compressed_and_writes_and_streams_are_not() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let ca = server.report.ca_path.clone().expect("tls on");
    let curl = |method: &'static str, path: String, token: Option<String>, body: Option<String>| {
        let ca = ca.clone();
        let url = server.url(&path);
        async move {
            let mut curl = std::process::Command::new("curl");
            curl.args([
                "--silent",
                "--show-error",
                "--compressed",
                "--max-time",
                "3",
            ])
            .args(["--dump-header", "-", "--request", method])
            .arg("--cacert")
            .arg(&ca);
            if let Some(token) = token {
                curl.args(["--header", &format!("Authorization: Bearer {token}")]);
            }
            if let Some(body) = body {
                curl.args([
                    "--header",
                    "Content-Type: application/json",
                    "--data",
                    &body,
                ]);
            }
            curl.arg(url);
            let output = tokio::task::spawn_blocking(move || curl.output())
                .await
                .expect("curl ran")
                .expect("curl runs (Debian's curl)");
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            let encoding = head.lines().find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("content-encoding:")
                    .map(|value| value.trim().to_owned())
            });
            (encoding, body.to_owned())
        }
    };
    let token = Some(ward.clinician.token.clone());
    let (encoding, body) = curl("GET", "/api/v1/openapi.json".into(), None, None).await;
    assert!(
        matches!(encoding.as_deref(), Some("br" | "gzip")),
        "the API document: {encoding:?}"
    );
    let document: serde_json::Value = serde_json::from_str(&body).expect("decoded JSON");
    assert!(document["paths"].is_object());
    let (encoding, body) = curl("GET", "/login".into(), None, None).await;
    assert!(encoding.is_some(), "the web app's page");
    assert!(body.contains("<html"), "decoded: {body}");
    let (encoding, body) = curl(
        "GET",
        format!("/api/v1/patients/{}", ward.patient_id),
        token.clone(),
        None,
    )
    .await;
    assert!(encoding.is_some(), "a patient's data: {body}");
    serde_json::from_str::<serde_json::Value>(&body).expect("decoded JSON");

    let (encoding, body) = curl(
        "POST",
        "/api/v1/auth/login".into(),
        None,
        Some(format!(
            r#"{{"username":"{}","password":"{}"}}"#,
            ward.clinician_username,
            crate::support::CLINICIAN_PASSWORD
        )),
    )
    .await;
    assert_eq!(encoding, None, "a login's answer holds a token: {body}");
    assert!(body.contains("token"), "{body}");
    let (encoding, _) = curl("GET", "/api/v1/alarms/stream".into(), token, None).await;
    assert_eq!(encoding, None, "an event stream is sent as it happens");
}
