//! Two `wardline serve` workers on one PostgreSQL database, joined by NATS: one house
//! with two doors. Devices send to either, people log in on one and carry on at the
//! other, alarms raised from readings taken in at one are seen live at the other, and
//! when the worker that evaluates rules is killed, the other takes over from its
//! checkpoints without losing or repeating an alarm.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wardline_store::testsuite::postgres::TestDatabase;

use crate::alarms::{
    AlarmStream, Receiver, add_rule, assign_program, free_address, glucose_above, post_glucose,
    put, put_ok, wait_for, webhook,
};
use crate::durability::stream_and_kill;
use crate::evaluation::{alarms_of, opened};
use crate::support::*;

/// The NATS server the tests use (`WARDLINE_TEST_NATS`, default the local one); each
/// test keeps to subjects of its own.
fn nats_url() -> String {
    std::env::var("WARDLINE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn cluster_env(database: &TestDatabase, prefix: &str) -> Vec<(String, String)> {
    vec![
        ("WARDLINE_STORE".into(), database.url()),
        ("WARDLINE_BUS".into(), nats_url()),
        ("WARDLINE_BUS_SUBJECT_PREFIX".into(), prefix.into()),
    ]
}

/// A subject prefix no other test (or run) uses.
fn new_prefix() -> String {
    format!("wardline-test-{}", uuid::Uuid::new_v4().simple())
}

fn copy_folder(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
    }
}

/// A second worker of `first`'s installation: its own data folder with the same
/// certificates, the same keys folder, the same database and bus. The harness's
/// administrator session is `first`'s, as a person's would be behind a load balancer.
pub(crate) fn another_worker(first: &TestServer) -> TestServer {
    let data = tempfile::tempdir().expect("temp dir");
    copy_folder(
        &first.data.path().join("server").join("tls"),
        &data.path().join("server").join("tls"),
    );
    let mut env = first.env.clone();
    env.push((
        "WARDLINE_KEYS_DIR".into(),
        first.data.path().join("server-keys").display().to_string(),
    ));
    let (child, report, _) = spawn(data.path(), &env);
    let client = http_client(report.ca_path.as_deref().expect("tls on"));
    TestServer {
        data,
        child,
        report,
        admin_password: first.admin_password.clone(),
        client,
        env,
        admin_second_factor: None,
        admin_session: first.admin_session.clone(),
    }
}

/// Each alarm was opened exactly once, and there are `count` of them.
fn opened_once_each(alarms: &[Value], count: usize, whose: &str) {
    assert_eq!(alarms.len(), count, "{whose}: {alarms:#?}");
    for alarm in alarms {
        assert_eq!(opened(alarm), 1, "{whose}: {alarm:#?}");
    }
}

const RULE: &str = "cluster-high";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_act_as_one_and_the_second_takes_over_from_a_killed_first() {
    let database = TestDatabase::create().await;
    let env = cluster_env(&database, &new_prefix());
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let mut a = TestServer::start_with_env(&env).await;
    let b = another_worker(&a);
    // The first worker evaluates; the second stands by.
    assert_eq!(
        metric(&a.metrics().await, "wardline_evaluation_lease_held"),
        1.0
    );
    assert_eq!(
        metric(&b.metrics().await, "wardline_evaluation_lease_held"),
        0.0
    );

    let mut wards = Vec::new();
    for _ in 0..4 {
        wards.push(a.ward().await);
    }
    // Care plans changed at either worker go to the one engine.
    for (index, ward) in wards.iter().enumerate() {
        let at = if index % 2 == 0 { &a } else { &b };
        assign_program(at, &ward.clinician, &ward.patient_id, "diabetes").await;
        add_rule(&b, ward, glucose_above(RULE, 300.0)).await;
    }

    // Each patient's condition starts, persists, clears and starts again, each reading
    // sent to the other worker than the one before: two alarms each, seen on B's
    // streams, whichever worker took the reading in.
    let mut streams = Vec::new();
    for ward in &wards {
        streams.push(AlarmStream::open(&b, &ward.clinician).await);
    }
    for (ward, stream) in wards.iter().zip(&mut streams) {
        for (seq, value) in [(1, 350.0), (2, 360.0), (3, 200.0), (4, 355.0)] {
            let at = if seq % 2 == 1 { &a } else { &b };
            post_glucose(at, &ward.device, seq, value).await;
        }
        for event in ["opened", "resolved", "opened"] {
            stream
                .expect(Duration::from_secs(10), |seen| {
                    seen["event"] == event && seen["alarm"]["rule_id"] == RULE
                })
                .await;
        }
    }
    for ward in &wards {
        opened_once_each(&alarms_of(&b, ward, RULE).await, 2, &ward.patient_id);
    }

    // Readings taken in at A appear live on B's stream.
    let mut readings = b
        .events(
            &wards[2].clinician,
            &format!(
                "/api/v1/patients/{}/observations/stream",
                wards[2].patient_id
            ),
        )
        .await;
    post_glucose(&a, &wards[2].device, 5, 120.0).await;
    // The stream starts with the patient's recent readings; the new one follows.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let within = deadline.saturating_duration_since(Instant::now());
        let seen = readings.next("observation", within).await;
        if seen["value"] == json!(120.0) {
            break;
        }
    }

    // An alarm acknowledged at B is acknowledged by A's engine, and B's stream says so.
    let open = alarms_of(&b, &wards[0], RULE)
        .await
        .into_iter()
        .find(|alarm| alarm["state_name"] != "resolved")
        .expect("an open alarm");
    let alarm_id = open["id"].as_str().expect("alarm id");
    let acknowledged = b
        .post(
            &wards[0].clinician,
            &format!("/api/v1/alarms/{alarm_id}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(
        acknowledged.status(),
        200,
        "{:?}",
        acknowledged.text().await
    );
    streams[0]
        .expect(Duration::from_secs(10), |seen| {
            seen["event"] == "acknowledged" && seen["alarm"]["id"] == json!(alarm_id)
        })
        .await;

    // A session opened at B works at A; logging out at A ends it at B too.
    let session = b
        .login(&wards[1].clinician_username, CLINICIAN_PASSWORD)
        .await;
    let path = format!("/api/v1/patients/{}/alarms", wards[1].patient_id);
    assert_eq!(a.get(&session, &path).await.status(), 200);
    let logout = a.post(&session, "/api/v1/auth/logout", json!({})).await;
    assert_eq!(logout.status(), 204);
    assert_eq!(b.get(&session, &path).await.status(), 401);

    // Failed logins at A slow the next attempt at B: the throttle's record is shared.
    let attempt = |server: &TestServer| {
        server
            .client
            .post(server.url("/api/v1/auth/login"))
            .json(&json!({"username": wards[2].clinician_username, "password": "not the password"}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(attempt(&a).await.expect("login").status(), 401);
    }
    assert_eq!(attempt(&b).await.expect("login").status(), 429);

    // A device connected to B is disconnected when revoked at A.
    let (client, mut eventloop) =
        rumqttc::AsyncClient::new(mqtt_v311(&b, &wards[3].device, &wards[3].device.secret), 10);
    publish_qos1(
        &client,
        &wards[3].device,
        reading(50, "99504-3", 120.0, "mg/dL"),
    )
    .await;
    await_pubacks(&mut eventloop, 1).await;
    revoke_and_see_it_dropped(&a, &wards[0].admin, &wards[3].device.id, &mut eventloop).await;

    // A dies. B takes the lease, resumes from A's checkpoints and evaluates what
    // arrives meanwhile: ward 1's condition clears and starts again.
    a.kill_hard();
    let killed = Instant::now();
    post_glucose(&b, &wards[1].device, 5, 200.0).await;
    post_glucose(&b, &wards[1].device, 6, 380.0).await;
    streams[1]
        .expect(Duration::from_secs(30), |seen| {
            seen["event"] == "opened" && seen["alarm"]["rule_id"] == RULE
        })
        .await;
    let took_over = killed.elapsed();
    println!(
        "after kill -9 of the evaluating worker, an alarm opened on the other in {took_over:?}"
    );
    assert_eq!(
        metric(&b.metrics().await, "wardline_evaluation_lease_held"),
        1.0
    );

    // No alarm raised twice by the takeover's replay, none lost.
    opened_once_each(
        &alarms_of(&b, &wards[1], RULE).await,
        3,
        "ward 1 after the takeover",
    );
    for ward in [&wards[0], &wards[2], &wards[3]] {
        opened_once_each(&alarms_of(&b, ward, RULE).await, 2, &ward.patient_id);
    }
    // Commands go to the new engine: acknowledging at B works again.
    let open = alarms_of(&b, &wards[1], RULE)
        .await
        .into_iter()
        .find(|alarm| alarm["state_name"] != "resolved")
        .expect("an open alarm");
    let acknowledged = b
        .post(
            &wards[1].clinician,
            &format!(
                "/api/v1/alarms/{}/acknowledge",
                open["id"].as_str().expect("id")
            ),
            json!({}),
        )
        .await;
    assert_eq!(acknowledged.status(), 200);
}

/// A cluster of two workers on one new database and subjects of their own, the first
/// holding the evaluation lease; `extra` adds settings to both.
async fn cluster(
    database: &TestDatabase,
    nats: &str,
    extra: &[(&str, &str)],
) -> (TestServer, TestServer) {
    let mut env = cluster_env(database, &new_prefix());
    env[1].1 = nats.to_owned();
    let mut env: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    env.extend_from_slice(extra);
    let a = TestServer::start_with_env(&env).await;
    let b = another_worker(&a);
    assert_eq!(
        metric(&a.metrics().await, "wardline_evaluation_lease_held"),
        1.0
    );
    (a, b)
}

/// A ward whose care team is told of each alarm once by a webhook to its own receiver
/// (which checks the channel's signature), and whose patient has the cluster rule.
async fn watched_ward(at: &TestServer) -> (Ward, Receiver) {
    let ward = at.ward().await;
    let receiver = Receiver::default();
    let address = free_address();
    webhook(at, &ward, address, &receiver).await;
    receiver.start(address).await;
    put_ok(
        at,
        &ward.admin,
        &format!("/api/v1/care-teams/{}/escalation-policy", ward.team_id),
        json!({
            "steps": [{"after_secs": 0, "notify": [{"to": "care_team", "care_team_id": ward.team_id}]}],
            "max_rounds": 1
        }),
    )
    .await;
    assign_program(at, &ward.clinician, &ward.patient_id, "diabetes").await;
    add_rule(at, &ward, glucose_above(RULE, 300.0)).await;
    (ward, receiver)
}

/// Sends readings `seqs` over MQTT to `server` and waits for every acknowledgement.
async fn resend(server: &TestServer, device: &EnrolledDevice, seqs: &[i64]) {
    let mut options = mqtt_v311(server, device, &device.secret);
    options.set_inflight(200);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, seqs.len().max(1));
    for &seq in seqs {
        let value = 60.0 + (seq % 40) as f64;
        publish_qos1(&client, device, reading(seq, "99504-3", value, "mg/dL")).await;
    }
    await_pubacks(&mut eventloop, seqs.len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_under_load_loses_no_reading_and_its_patients_alarms_fire_once_on_the_other()
 {
    let database = TestDatabase::create().await;
    let (mut a, b) = cluster(
        &database,
        &nats_url(),
        // The test's webhook receiver listens on this machine.
        &[("WARDLINE_ALLOW_LOOPBACK_WEBHOOKS", "true")],
    )
    .await;
    let (streamed, _) = watched_ward(&a).await;
    let (before, before_receiver) = watched_ward(&a).await;
    let (after, after_receiver) = watched_ward(&a).await;
    let mut before_stream = AlarmStream::open(&b, &before.clinician).await;
    let mut after_stream = AlarmStream::open(&b, &after.clinician).await;

    // An alarm raised by A's engine, notified once.
    post_glucose(&a, &before.device, 1, 350.0).await;
    before_stream
        .expect(Duration::from_secs(10), |seen| seen["event"] == "opened")
        .await;
    wait_for(
        || before_receiver.distinct().len() == 1,
        Duration::from_secs(20),
        "the first alarm's notification",
    )
    .await;

    // A device streams to A, which is killed mid-stream.
    let total = 3000;
    let options = mqtt_v311(&a, &streamed.device, &streamed.device.secret);
    let acked = stream_and_kill(&mut a, options, &streamed.device, total).await;
    let killed = Instant::now();

    // Meanwhile the other patients' conditions change, at B.
    post_glucose(&b, &before.device, 2, 360.0).await;
    post_glucose(&b, &after.device, 1, 340.0).await;
    after_stream
        .expect(Duration::from_secs(30), |seen| seen["event"] == "opened")
        .await;
    let took_over = killed.elapsed();
    println!(
        "after kill -9 of the evaluating worker under load, the other raised an alarm in {took_over:?}"
    );
    post_glucose(&b, &before.device, 3, 200.0).await;
    before_stream
        .expect(Duration::from_secs(10), |seen| seen["event"] == "resolved")
        .await;

    // The device reconnects to B and sends again everything not acknowledged, and the
    // last hundred that were (a device cannot always tell).
    let mut again: Vec<i64> = (0..total).filter(|seq| !acked.contains(seq)).collect();
    again.extend(acked.iter().rev().take(100));
    resend(&b, &streamed.device, &again).await;
    let mut stored: Vec<i64> = b
        .observations(&streamed.clinician, &streamed.patient_id, "99504-3")
        .await
        .iter()
        .map(|observation| observation["seq"].as_i64().expect("seq"))
        .collect();
    stored.sort_unstable();
    assert_eq!(
        stored,
        (0..total).collect::<Vec<_>>(),
        "every reading stored exactly once"
    );

    // One alarm per condition, one notification per alarm.
    opened_once_each(
        &alarms_of(&b, &before, RULE).await,
        1,
        "raised before the kill",
    );
    opened_once_each(
        &alarms_of(&b, &after, RULE).await,
        1,
        "raised after the kill",
    );
    opened_once_each(
        &alarms_of(&b, &streamed, RULE).await,
        0,
        "never out of range",
    );
    wait_for(
        || after_receiver.distinct().len() == 1,
        Duration::from_secs(20),
        "the second alarm's notification",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for receiver in [&before_receiver, &after_receiver] {
        let deliveries = receiver.deliveries.lock().expect("lock").len();
        assert_eq!(deliveries, 1, "each notification delivered once");
    }
}

/// A NATS server of the test's own, on a port of its own, that the test can stop and
/// start again.
struct OwnNats {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnNats {
    fn start() -> OwnNats {
        let port = free_address().port();
        let mut nats = OwnNats { port, child: None };
        nats.restart();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let binary = [
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .into_iter()
        .find(|path| std::path::Path::new(path).is_file())
        .unwrap_or("nats-server");
        let child = std::process::Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server (installed beside the NATS service on every machine)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_nats_is_away_readings_are_stored_and_evaluated_and_the_workers_rejoin_after() {
    let mut nats = OwnNats::start();
    let database = TestDatabase::create().await;
    let (a, b) = cluster(
        &database,
        &nats.url(),
        &[("WARDLINE_ALLOW_LOOPBACK_WEBHOOKS", "true")],
    )
    .await;
    let (ward, _) = watched_ward(&a).await;
    let mut stream = AlarmStream::open(&b, &ward.clinician).await;
    post_glucose(&a, &ward.device, 1, 350.0).await;
    stream
        .expect(Duration::from_secs(10), |seen| seen["event"] == "opened")
        .await;

    nats.kill();
    // Devices are acknowledged as before (the records are in PostgreSQL), at both
    // workers, and A's engine evaluates them.
    post_glucose(&b, &ward.device, 2, 200.0).await;
    post_glucose(&a, &ward.device, 3, 210.0).await;
    let mut resolved = false;
    for _ in 0..100 {
        if alarms_of(&a, &ward, RULE).await[0]["state_name"] == "resolved" {
            resolved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        resolved,
        "A's engine evaluated the readings taken in while NATS was away"
    );
    // A command at B cannot reach the engine: refused as unavailable, not lost silently.
    let open_again = || async {
        let response = put(
            &b,
            &ward.clinician,
            &format!("/api/v1/patients/{}/care-plan", ward.patient_id),
            json!({"reason": "programme confirmed", "program": "diabetes"}),
        )
        .await;
        response.status()
    };
    assert_eq!(open_again().await, 503);

    nats.restart();
    // The workers reconnect by themselves: B's stream carries A's alarms again, and
    // commands at B reach the engine.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seq = 4;
    loop {
        post_glucose(&a, &ward.device, seq, 350.0 + seq as f64).await;
        post_glucose(&a, &ward.device, seq + 1, 200.0).await;
        seq += 2;
        let seen = stream
            .wait_for(Duration::from_secs(2), |seen| seen["event"] == "opened")
            .await;
        if seen.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B's alarm stream did not recover after NATS came back"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_again().await != 200 {
        assert!(
            Instant::now() < deadline,
            "commands at B did not recover after NATS came back"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A PostgreSQL server of the test's own (a new cluster in a temporary folder, on a port
/// of its own, trust authentication), which the test can crash and start again. Made
/// with the PostgreSQL programs installed beside the machine's own server, run as the
/// `postgres` user when the test runs as root (PostgreSQL refuses to run as root).
struct OwnPostgres {
    folder: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
    /// Serves TLS with this certificate and key (copied into its folder).
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl OwnPostgres {
    fn start() -> OwnPostgres {
        Self::start_with(None)
    }

    /// A server that also offers TLS with this certificate and key.
    fn start_with_tls(certificate: &std::path::Path, key: &std::path::Path) -> OwnPostgres {
        Self::start_with(Some((certificate, key)))
    }

    fn start_with(tls: Option<(&std::path::Path, &std::path::Path)>) -> OwnPostgres {
        let mut versions: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's programs in /usr/lib/postgresql (installed with the server)")
            .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
            .filter(|bin| bin.join("pg_ctl").is_file())
            .collect();
        versions.sort();
        let bin = versions.pop().expect("a PostgreSQL version with pg_ctl");
        let folder = tempfile::tempdir().expect("temp dir");
        let tls = tls.map(|(certificate, key)| {
            let (own_certificate, own_key) = (
                folder.path().join("server.crt"),
                folder.path().join("server.key"),
            );
            std::fs::copy(certificate, &own_certificate).expect("copy the certificate");
            std::fs::copy(key, &own_key).expect("copy the key");
            // PostgreSQL refuses a key others may read.
            std::fs::set_permissions(
                &own_key,
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .expect("key permissions");
            (own_certificate, own_key)
        });
        let postgres = Self {
            port: free_address().port(),
            folder,
            bin,
            tls,
        };
        if postgres.as_root() {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(postgres.folder.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the cluster's folder to postgres");
        }
        let data = postgres.data();
        postgres.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        postgres.up();
        postgres
    }

    fn as_root(&self) -> bool {
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| output.stdout.starts_with(b"0\n"))
    }

    fn data(&self) -> String {
        self.folder.path().join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if self.as_root() {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            std::process::Command::new(&path)
        };
        let output = command
            .args(args)
            .output()
            .expect("run a PostgreSQL program");
        assert!(output.status.success(), "{program}: {}", printed(&output));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn up(&self) {
        let mut options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.folder.path().display()
        );
        if let Some((certificate, key)) = &self.tls {
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                certificate.display(),
                key.display()
            ));
        }
        let log = self.folder.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server as a crash would (`immediate`: no checkpoint, recovery at the
    /// next start).
    fn crash(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let path = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = if self.as_root() {
            std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .output()
        } else {
            std::process::Command::new(&path).args(args).output()
        };
    }
}

/// A device's HTTPS post of a reading message, answered with its status.
async fn post_status(server: &TestServer, device: &EnrolledDevice, message: &[u8]) -> u16 {
    server
        .send_readings(device, message.to_vec())
        .await
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgresql_is_away_nothing_is_acknowledged_and_the_workers_recover_by_themselves() {
    let postgres = OwnPostgres::start();
    let prefix = new_prefix();
    let nats = nats_url();
    let url = postgres.url();
    let env = [
        ("WARDLINE_STORE", url.as_str()),
        ("WARDLINE_BUS", nats.as_str()),
        ("WARDLINE_BUS_SUBJECT_PREFIX", prefix.as_str()),
    ];
    let a = TestServer::start_with_env(&env).await;
    let b = another_worker(&a);
    let ward = a.ward().await;
    assign_program(&a, &ward.clinician, &ward.patient_id, "diabetes").await;
    add_rule(&a, &ward, glucose_above(RULE, 300.0)).await;
    post_glucose(&b, &ward.device, 1, 350.0).await;

    postgres.crash();
    // Neither worker acknowledges what it cannot store; the device keeps the message
    // and sends it again, byte for byte.
    let cleared = reading(2, "99504-3", 200.0, "mg/dL");
    let high_again = reading(3, "99504-3", 360.0, "mg/dL");
    assert_eq!(post_status(&a, &ward.device, &cleared).await, 503);
    assert_eq!(post_status(&b, &ward.device, &cleared).await, 503);

    postgres.up();
    // Both recover by themselves: the device's retry is stored (once) at either.
    let deadline = Instant::now() + Duration::from_secs(30);
    while post_status(&b, &ward.device, &cleared).await != 200 {
        assert!(
            Instant::now() < deadline,
            "B did not recover after PostgreSQL came back"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let recovered = Instant::now();
    while post_status(&a, &ward.device, &high_again).await != 200 {
        assert!(
            Instant::now() < deadline,
            "A did not recover after PostgreSQL came back"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        post_status(&a, &ward.device, &cleared).await,
        200,
        "a retry"
    );

    // One of the workers took up evaluation again, from the stored checkpoints: the
    // condition that cleared and began again is a second alarm, and nothing is doubled.
    let mut evaluated = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        // The session opened before the restart is still good: it is stored.
        evaluated = alarms_of(&b, &ward, RULE).await;
        if evaluated.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "after PostgreSQL came back, the workers stored again at once and raised the next alarm within {:?}",
        recovered.elapsed()
    );
    opened_once_each(&evaluated, 2, "across the database's restart");
    let held = metric(&a.metrics().await, "wardline_evaluation_lease_held")
        + metric(&b.metrics().await, "wardline_evaluation_lease_held");
    assert_eq!(held, 1.0, "exactly one worker evaluates");
    let seqs: Vec<i64> = b
        .observations(&ward.clinician, &ward.patient_id, "99504-3")
        .await
        .iter()
        .map(|observation| observation["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs.len(), 3, "each reading once: {seqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reaches_postgresql_over_verified_tls() {
    let hospital = crate::tls::HospitalCa::new();
    let (certificate, key) = hospital.issue("database", &["localhost"]);
    let postgres = OwnPostgres::start_with_tls(&certificate, &key);
    let url = format!("postgres://postgres@localhost:{}/postgres", postgres.port);
    let ca = hospital.ca_file().display().to_string();
    let server = TestServer::start_with_env(&[
        ("WARDLINE_STORE", url.as_str()),
        ("WARDLINE_STORE_CA_FILE", ca.as_str()),
    ])
    .await;
    let ward = server.ward().await;
    post_glucose(&server, &ward.device, 1, 120.0).await;

    // Every connection the worker holds to the database is encrypted.
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            postgres.port
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("the test's own look at the server");
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s
             JOIN pg_stat_activity a USING (pid)
             WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("connections");
    let (encrypted, all): (i64, i64) = (row.get(0), row.get(1));
    assert!(all >= 2, "the worker's pool, lease and listener: {all}");
    assert_eq!(encrypted, all, "every connection of the worker uses TLS");

    // A certificate authority that did not issue the database's certificate: the worker
    // does not start (and sends nothing in clear).
    let stranger = crate::tls::HospitalCa::new();
    let stranger_ca = stranger.ca_file().display().to_string();
    let said = crate::tls::refused_start(&[
        ("WARDLINE_STORE", url.as_str()),
        ("WARDLINE_STORE_CA_FILE", stranger_ca.as_str()),
    ]);
    assert!(said.to_lowercase().contains("certificate"), "{said}");
}

/// A video visit whose two participants reach different workers (as behind a balancer):
/// what one sends in the room (signalling, chat) reaches the other's stream on the other
/// worker, through the bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visits_participants_on_two_workers_hear_each_other() {
    let database = TestDatabase::create().await;
    let (a, b) = cluster(&database, &nats_url(), &[]).await;
    let ward = a.ward().await;
    let patient_username = a.patient_account(&ward).await;
    let patient = b.login(&patient_username, CLINICIAN_PASSWORD).await;
    let visit = a
        .post_ok(
            &ward.clinician,
            &format!("/api/v1/patients/{}/visits", ward.patient_id),
            json!({"start": chrono::Utc::now() + chrono::Duration::minutes(2), "duration_minutes": 15,
                   "reason": "check-in"}),
        )
        .await;
    let id = visit["id"].as_str().expect("visit id");
    a.post_ok(
        &ward.clinician,
        &format!("/api/v1/visits/{id}/room/enter"),
        json!(null),
    )
    .await;
    b.post_ok(
        &patient,
        &format!("/api/v1/visits/{id}/room/enter"),
        json!(null),
    )
    .await;
    let mut stream = b
        .get(&patient, &format!("/api/v1/visits/{id}/room/events"))
        .await;
    assert_eq!(stream.status(), reqwest::StatusCode::OK);
    // The stream is open at B before A speaks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = a
        .post(
            &ward.clinician,
            &format!("/api/v1/visits/{id}/room/signal"),
            json!({"kind": "offer", "to": patient.user_id, "data": {"type": "offer", "sdp": "v=0\r\n"}}),
        )
        .await;
    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    a.post_ok(
        &ward.clinician,
        &format!("/api/v1/visits/{id}/messages"),
        json!({"text": "can you see me?"}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut heard = String::new();
    while !(heard.contains("\"kind\":\"offer\"") && heard.contains("can you see me?")) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "B's stream heard only: {heard}");
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(left, stream.chunk()).await {
            heard.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(heard.contains(&ward.clinician.user_id), "{heard}");
}
