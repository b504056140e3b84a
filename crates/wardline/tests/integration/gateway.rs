//! The home gateway keeps readings through an outage and a crash of its own.
//!
//! A real server, a real `wardline gateway` process, and between them a loopback TCP
//! proxy this test can cut. Two devices post readings to the gateway the whole time,
//! each retrying a reading (same `seq`) until the gateway acknowledges it. The link is
//! cut, the gateway is killed with SIGKILL and restarted during the outage, the link
//! returns, and every reading must be on the server exactly once, in order per device.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// A loopback TCP proxy that can be cut: open connections are dropped and new ones
/// refused until it is restored.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (accept_up, accept_connections) = (Arc::clone(&up), Arc::clone(&connections));
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !accept_up.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                accept_connections.lock().expect("lock").push(task);
            }
        });
        Proxy {
            port,
            up,
            connections,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.connections.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

struct Gateway {
    child: Child,
    listen: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(
    server: &TestServer,
    proxy_port: u16,
    gateway: &EnrolledDevice,
    dir: &Path,
) -> Gateway {
    let listen_file: PathBuf = dir.join("gateway-listen.json");
    let _ = std::fs::remove_file(&listen_file);
    let mut child = Command::new(env!("CARGO_BIN_EXE_wardline"))
        .arg("gateway")
        .arg("--server")
        .arg(format!("https://localhost:{proxy_port}"))
        .arg("--ca-file")
        .arg(server.report.ca_path.as_ref().expect("tls on"))
        .args(["--gateway-id", &gateway.id, "--listen", "127.0.0.1:0"])
        .arg("--queue")
        .arg(dir.join("queue.db"))
        .arg("--listen-file")
        .arg(&listen_file)
        .args([
            "--max-backoff-seconds",
            "0.5",
            "--heartbeat-seconds",
            "0.5",
            "--max-batch",
            "50",
        ])
        .env("WARDLINE_GATEWAY_SECRET", &gateway.secret)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the gateway");
    let deadline = Instant::now() + Duration::from_secs(20);
    let listen = loop {
        if let Ok(text) = std::fs::read(&listen_file)
            && let Ok(report) = serde_json::from_slice::<Value>(&text)
        {
            break report["listen"].as_str().expect("listen").to_owned();
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the gateway exited: {status}");
        }
        assert!(Instant::now() < deadline, "the gateway did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    Gateway { child, listen }
}

/// What a device sends a gateway instead of its secret.
fn local_credential(gateway: &EnrolledDevice, secret: &str) -> String {
    let gateway = wardline_domain::DeviceId::parse(&gateway.id).expect("gateway id");
    wardline_domain::local_device::local_credential(
        &gateway,
        &wardline_domain::local_device::secret_hash(secret.as_bytes()),
    )
}

/// A device behind the gateway: posts readings `0..` in order with its local credential,
/// each until acknowledged (a gateway that does not know the device yet answers 401, and
/// the device tries again, as a real one would).
fn device_sender(
    device: &EnrolledDevice,
    gateway: &EnrolledDevice,
    code: &'static str,
    unit: &'static str,
    gateway_address: Arc<Mutex<String>>,
    sent: Arc<AtomicI64>,
    stop_at: Arc<AtomicI64>,
) -> tokio::task::JoinHandle<()> {
    // After the devices' enrolment (readings before an assignment are refused), 100 ms
    // apart, so never far enough ahead to be refused as from the future.
    let base = chrono::Utc::now();
    let device_id = device.id.clone();
    let secret = local_credential(gateway, &device.secret);
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let mut seq = 0i64;
        while seq < stop_at.load(Ordering::SeqCst) {
            let payload = json!({"v": 1, "seq": seq, "code": code, "value": 90 + seq % 10,
                "unit": unit, "time": (base + chrono::Duration::milliseconds(100 * seq)).to_rfc3339()});
            let address = gateway_address.lock().expect("lock").clone();
            let response = client
                .post(format!(
                    "http://{address}/api/v1/devices/{device_id}/readings"
                ))
                .bearer_auth(&secret)
                .json(&payload)
                .send()
                .await;
            match response {
                Ok(response) if response.status() == 200 => {
                    seq += 1;
                    sent.store(seq, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok(response) if response.status() == 401 => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(response) => panic!("the gateway refused a reading: {}", response.status()),
                // The gateway is down (killed): retry the same reading.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
}

async fn wait_for_sent(counter: &AtomicI64, at_least: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter.load(Ordering::SeqCst) < at_least {
        assert!(Instant::now() < deadline, "devices stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_keeps_every_reading_through_an_outage_and_a_kill_9() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let oximeter = server
        .enrol(&ward.admin, "pulse_oximeter", Some(&ward.patient_id))
        .await;
    let gateway_device = server
        .enrol(&ward.admin, "gateway", Some(&ward.patient_id))
        .await;
    let proxy = Proxy::start(server.report.http.port()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut gateway = start_gateway(&server, proxy.port, &gateway_device, dir.path());
    let address = Arc::new(Mutex::new(gateway.listen.clone()));

    let total = 300i64;
    let stop_at = Arc::new(AtomicI64::new(total));
    let cgm_sent = Arc::new(AtomicI64::new(0));
    let oxi_sent = Arc::new(AtomicI64::new(0));
    let senders = [
        device_sender(
            &ward.device,
            &gateway_device,
            "99504-3",
            "mg/dL",
            Arc::clone(&address),
            Arc::clone(&cgm_sent),
            Arc::clone(&stop_at),
        ),
        device_sender(
            &oximeter,
            &gateway_device,
            "59408-5",
            "%",
            Arc::clone(&address),
            Arc::clone(&oxi_sent),
            Arc::clone(&stop_at),
        ),
    ];

    // Readings flow.
    wait_for_sent(&cgm_sent, 50).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while server
        .observations(&ward.clinician, &ward.patient_id, "99504-3")
        .await
        .len()
        < 20
    {
        assert!(Instant::now() < deadline, "nothing reached the server");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The link is cut; readings keep arriving at the gateway.
    proxy.cut();
    let at_cut = cgm_sent.load(Ordering::SeqCst);
    wait_for_sent(&cgm_sent, at_cut + 100).await;

    // The gateway dies hard in the middle of the outage and comes back.
    gateway.child.kill().expect("kill -9");
    gateway.child.wait().expect("reap");
    let restarted = start_gateway(&server, proxy.port, &gateway_device, dir.path());
    *address.lock().expect("lock") = restarted.listen.clone();
    gateway = restarted;
    let at_restart = cgm_sent.load(Ordering::SeqCst);
    wait_for_sent(&cgm_sent, at_restart + 80).await;
    let status: Value = reqwest::get(format!("http://{}/status", gateway.listen))
        .await
        .expect("gateway status")
        .json()
        .await
        .expect("json");
    assert!(
        status["queued_messages"].as_u64().unwrap_or(0) > 50,
        "the backlog is kept on the gateway: {status}"
    );
    assert_eq!(status["link_up"], json!(false), "{status}");

    // The link returns; devices finish; everything drains.
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.restore();
    for sender in senders {
        sender.await.expect("device task");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for (device, code) in [(&ward.device, "99504-3"), (&oximeter, "59408-5")] {
        let observations = loop {
            let observations = server
                .observations(&ward.clinician, &ward.patient_id, code)
                .await;
            if observations.len() >= total as usize || Instant::now() > deadline {
                break observations;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let seqs: Vec<i64> = observations
            .iter()
            .filter(|o| o["device_id"] == json!(device.id))
            .map(|o| o["seq"].as_i64().expect("seq"))
            .collect();
        let unique: BTreeSet<i64> = seqs.iter().copied().collect();
        assert_eq!(
            seqs.len(),
            total as usize,
            "{code}: exactly once ({} stored)",
            seqs.len()
        );
        assert_eq!(unique, (0..total).collect(), "{code}: every reading");
        // In order: stored (received) in the order the device sent them.
        let mut by_seq: Vec<(i64, String)> = observations
            .iter()
            .map(|o| {
                (
                    o["seq"].as_i64().expect("seq"),
                    o["received"].as_str().expect("received").to_owned(),
                )
            })
            .collect();
        by_seq.sort();
        let received: Vec<chrono::DateTime<chrono::Utc>> = by_seq
            .iter()
            .map(|(_, text)| text.parse().expect("time"))
            .collect();
        assert!(
            received.windows(2).all(|pair| pair[0] <= pair[1]),
            "{code}: stored in the order sent"
        );
    }

    // The server shows the gateway's last contact and its (now empty) backlog.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = server.get(&ward.admin, "/api/v1/gateways").await;
        assert_eq!(response.status(), 200);
        let gateways: Value = response.json().await.expect("json");
        let entry = gateways
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|g| g["gateway_id"] == json!(gateway_device.id))
            })
            .cloned()
            .expect("the gateway is listed");
        if entry["backlog_messages"] == json!(0) && !entry["last_contact"].is_null() {
            assert!(entry["clock_offset_ms"].as_i64().is_some(), "{entry}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backlog not reported drained: {entry}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(gateway);
}

/// Only the devices the server lists for the gateway, each with its local credential,
/// have readings queued: a stranger on the home network, a wrong credential, the
/// device's secret itself and another patient's device are refused, and nothing of
/// theirs reaches the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_on_the_home_network_cannot_queue_readings() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let gateway_device = server
        .enrol(&ward.admin, "gateway", Some(&ward.patient_id))
        .await;
    // A device of nobody's: enrolled, assigned to no patient, so behind no gateway.
    let elsewhere = server.enrol(&ward.admin, "pulse_oximeter", None).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = start_gateway(
        &server,
        server.report.http.port(),
        &gateway_device,
        dir.path(),
    );
    let client = reqwest::Client::new();
    let post = |device_id: &str, secret: Option<&str>, seq: i64| {
        let mut request = client
            .post(format!(
                "http://{}/api/v1/devices/{device_id}/readings",
                gateway.listen
            ))
            .json(&json!({"v": 1, "seq": seq, "code": "99504-3", "value": 111,
                "unit": "mg/dL", "time": chrono::Utc::now().to_rfc3339()}));
        if let Some(secret) = secret {
            request = request.bearer_auth(secret);
        }
        request.send()
    };
    // The gateway learns its devices at its first contact; the right device gets in.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = post(
            &ward.device.id,
            Some(&local_credential(&gateway_device, &ward.device.secret)),
            1,
        )
        .await
        .expect("gateway answers")
        .status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 401);
        assert!(
            Instant::now() < deadline,
            "the gateway never learnt its device"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let guessed = local_credential(&gateway_device, "wds_guessed");
    let elsewheres = local_credential(&gateway_device, &elsewhere.secret);
    let refused = [
        (ward.device.id.as_str(), None, "no credential"),
        (
            ward.device.id.as_str(),
            Some(guessed.as_str()),
            "a wrong credential",
        ),
        (
            ward.device.id.as_str(),
            Some(ward.device.secret.as_str()),
            "the device's secret itself",
        ),
        (
            ward.device.id.as_str(),
            Some(gateway_device.secret.as_str()),
            "the gateway's own secret",
        ),
        (
            elsewhere.id.as_str(),
            Some(elsewheres.as_str()),
            "a device not behind this gateway",
        ),
    ];
    for (seq, (device_id, secret, what)) in (2..).zip(refused) {
        let response = post(device_id, secret, seq).await.expect("gateway answers");
        assert_eq!(response.status(), 401, "{what}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "unauthenticated", "{what}");
    }
    let status: Value = reqwest::get(format!("http://{}/status", gateway.listen))
        .await
        .expect("gateway status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["accepted"], json!(1), "{status}");
    assert!(
        status["refused_devices"].as_u64().unwrap_or(0) >= 4,
        "{status}"
    );
    // Only the one reading reaches the patient's record.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stored = server
            .observations(&ward.clinician, &ward.patient_id, "99504-3")
            .await;
        if !stored.is_empty() {
            assert_eq!(stored.len(), 1, "{stored:?}");
            assert_eq!(stored[0]["seq"], json!(1));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the admitted reading never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
