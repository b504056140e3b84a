//! The harness: start, kill and restart the server; log in; enrol; connect devices.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use wardline_server::server::ListenReport;

pub(crate) const CLINICIAN_PASSWORD: &str = "correct horse battery staple";
/// What the harness changes the first administrator's one-time password to.
pub(crate) const ADMIN_PASSWORD: &str = "quiet harbour lamps at dawn";

/// What a command printed, standard output then standard error.
pub(crate) fn printed(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub(crate) fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A running `wardline serve` child process.
pub(crate) struct TestServer {
    pub(crate) data: tempfile::TempDir,
    pub(crate) child: Child,
    pub(crate) report: ListenReport,
    pub(crate) admin_password: String,
    pub(crate) client: reqwest::Client,
    /// Extra environment for the server process, kept across restarts.
    pub(crate) env: Vec<(String, String)>,
    /// The administrator's second factor, once set up: its secret (base 32) as the
    /// authenticator app holds it, and the last time step whose code was used (each code
    /// is good once).
    pub(crate) admin_second_factor: Option<(String, std::sync::Mutex<u64>)>,
    /// The administrator's session from the harness's first login, which every helper
    /// uses: a new login takes a new one-time code, and there is one per 30 seconds.
    pub(crate) admin_session: Option<Session>,
}

impl TestServer {
    pub(crate) async fn start() -> TestServer {
        Self::start_with_env(&[]).await
    }

    /// Starts the server with extra environment variables (test-shortened settings),
    /// changes the first administrator's one-time password to [`ADMIN_PASSWORD`] and sets
    /// up their second factor, as their first login must.
    pub(crate) async fn start_with_env(env: &[(&str, &str)]) -> TestServer {
        let mut server = Self::start_first(env);
        let first = server.login("admin", &server.admin_password).await;
        let changed = server
            .post(
                &first,
                "/api/v1/me/password",
                json!({"current_password": server.admin_password, "new_password": ADMIN_PASSWORD}),
            )
            .await;
        assert_eq!(
            changed.status(),
            204,
            "the first administrator's password changes"
        );
        server.admin_password = ADMIN_PASSWORD.to_owned();
        let secret = server.set_up_second_factor(&first).await;
        server.admin_second_factor = Some((secret, std::sync::Mutex::new(totp_step(0))));
        server.admin_session = Some(first);
        server
    }

    /// Sets up a second factor for the session's account with the authenticator's
    /// current code: returns its secret.
    pub(crate) async fn set_up_second_factor(&self, session: &Session) -> String {
        let setup = self
            .post(session, "/api/v1/me/second-factor", json!({}))
            .await;
        assert_eq!(setup.status(), 200, "a second factor is set up");
        let setup: Value = setup.json().await.expect("setup body");
        let secret = setup["secret"].as_str().expect("secret").to_owned();
        let confirmed = self
            .post(
                session,
                "/api/v1/me/second-factor/confirm",
                json!({"one_time_code": one_time_code(&secret, totp_step(0))}),
            )
            .await;
        assert_eq!(confirmed.status(), 200, "the second factor is confirmed");
        secret
    }

    /// A code of the administrator's second factor not used before: of the current step
    /// or the next (both accepted), waiting for the clock when both are used.
    pub(crate) async fn admin_code(&self) -> String {
        let (secret, last) = self
            .admin_second_factor
            .as_ref()
            .expect("the administrator has a second factor");
        loop {
            let step = {
                let mut last = last.lock().expect("last step");
                let step = (*last + 1).max(totp_step(0));
                if step <= totp_step(1) {
                    *last = step;
                    Some(step)
                } else {
                    None
                }
            };
            match step {
                Some(step) => return one_time_code(secret, step),
                None => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }

    /// Starts the server on a new data folder and leaves the first administrator's
    /// one-time password (`admin_password`, read from the file the server names) as it is.
    pub(crate) fn start_first(env: &[(&str, &str)]) -> TestServer {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let data = tempfile::tempdir().expect("temp dir");
        let (child, report, printed) = spawn(data.path(), &env);
        let file = printed.expect("the first start names the admin's password file");
        let admin_password = std::fs::read_to_string(&file)
            .expect("the admin's password file")
            .trim_end()
            .to_owned();
        let client = http_client(report.ca_path.as_deref().expect("tls on"));
        TestServer {
            data,
            child,
            report,
            admin_password,
            client,
            env,
            admin_second_factor: None,
            admin_session: None,
        }
    }

    /// Where the server leaves the first administrator's one-time password.
    pub(crate) fn first_admin_password_file(&self) -> PathBuf {
        self.data
            .path()
            .join("server-keys")
            .join(wardline_server::server::FIRST_ADMIN_PASSWORD_FILE)
    }

    /// Kills the process without warning (SIGKILL), as a crash or power cut would.
    pub(crate) fn kill_hard(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// Starts the server again on the same data folder.
    pub(crate) fn restart(&mut self) {
        let (child, report, _) = spawn(self.data.path(), &self.env);
        self.child = child;
        self.report = report;
        self.client = http_client(self.report.ca_path.as_deref().expect("tls on"));
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.report.http.port())
    }

    pub(crate) fn mqtt_port(&self) -> u16 {
        self.report.mqtt.port()
    }

    pub(crate) fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.report.ca_path.as_ref().expect("tls on")).expect("ca file")
    }

    pub(crate) async fn login(&self, username: &str, password: &str) -> Session {
        self.login_with(json!({"username": username, "password": password}))
            .await
    }

    async fn login_with(&self, request: Value) -> Session {
        let username = request["username"].clone();
        let response = self
            .client
            .post(self.url("/api/v1/auth/login"))
            .json(&request)
            .send()
            .await
            .expect("login request");
        assert_eq!(response.status(), 200, "login as {username}");
        let body: Value = response.json().await.expect("login body");
        Session {
            token: body["token"].as_str().expect("token").to_owned(),
            user_id: body["user"]["id"].as_str().expect("user id").to_owned(),
        }
    }

    /// The administrator's session (the harness's, set up at start).
    pub(crate) async fn admin(&self) -> Session {
        match &self.admin_session {
            Some(session) => session.clone(),
            None => self.admin_login().await,
        }
    }

    /// A new session of the administrator: password and a fresh one-time code.
    pub(crate) async fn admin_login(&self) -> Session {
        let code = self.admin_code().await;
        self.login_with(
            json!({"username": "admin", "password": self.admin_password, "one_time_code": code}),
        )
        .await
    }

    pub(crate) async fn get(&self, session: &Session, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&session.token)
            .send()
            .await
            .expect("GET")
    }

    pub(crate) async fn post(
        &self,
        session: &Session,
        path: &str,
        body: Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&session.token)
            .json(&body)
            .send()
            .await
            .expect("POST")
    }

    pub(crate) async fn post_ok(&self, session: &Session, path: &str, body: Value) -> Value {
        let response = self.post(session, path, body).await;
        let status = response.status();
        let text = response.text().await.expect("body");
        assert!(status.is_success(), "POST {path}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("json")
        }
    }

    /// A ward: one care team with a clinician, a patient with a patient account, and an
    /// enrolled device assigned to the patient.
    pub(crate) async fn ward(&self) -> Ward {
        let admin = self.admin().await;
        let patient = self
            .post_ok(
                &admin,
                "/api/v1/patients",
                json!({"display_name": "Ada Patient"}),
            )
            .await;
        let patient_id = patient["id"].as_str().expect("patient id").to_owned();
        let team = self
            .post_ok(
                &admin,
                "/api/v1/care-teams",
                json!({"name": format!("Team {patient_id}")}),
            )
            .await;
        let team_id = team["id"].as_str().expect("team id").to_owned();
        let password = CLINICIAN_PASSWORD;
        let clinician = self
            .post_ok(&admin, "/api/v1/users", json!({"username": format!("clin-{}", &patient_id[..8]), "display_name": "Dr Clinician", "role": "clinician", "password": password, "password_change_required": false}))
            .await;
        let clinician_name = clinician["user"]["username"]
            .as_str()
            .expect("username")
            .to_owned();
        self.post_ok(
            &admin,
            &format!("/api/v1/care-teams/{team_id}/members"),
            json!({"user_id": clinician["user"]["id"]}),
        )
        .await;
        self.post_ok(
            &admin,
            &format!("/api/v1/care-teams/{team_id}/patients"),
            json!({"patient_id": patient_id}),
        )
        .await;
        let device = self.enrol(&admin, "cgm", Some(&patient_id)).await;
        Ward {
            clinician: self.login(&clinician_name, password).await,
            clinician_username: clinician_name,
            admin,
            patient_id,
            team_id,
            device,
        }
    }

    /// A patient account of the ward's patient, made by its administrator: its user name
    /// (its password is [`CLINICIAN_PASSWORD`]).
    pub(crate) async fn patient_account(&self, ward: &Ward) -> String {
        let account = self
            .post_ok(
                &ward.admin,
                "/api/v1/users",
                json!({"username": format!("pt-{}", &ward.patient_id[..8]), "display_name": "Ada Patient",
                       "role": "patient", "patient_id": ward.patient_id, "password": CLINICIAN_PASSWORD,
                       "password_change_required": false}),
            )
            .await;
        account["user"]["username"]
            .as_str()
            .expect("username")
            .to_owned()
    }

    pub(crate) async fn enrol(
        &self,
        admin: &Session,
        kind: &str,
        patient_id: Option<&str>,
    ) -> EnrolledDevice {
        let mut body = json!({"kind": kind, "model": "TestModel", "serial": "SN-1"});
        if let Some(patient_id) = patient_id {
            body["patient_id"] = json!(patient_id);
        }
        let enrolled = self.post_ok(admin, "/api/v1/devices", body).await;
        EnrolledDevice {
            id: enrolled["device"]["id"]
                .as_str()
                .expect("device id")
                .to_owned(),
            secret: enrolled["secret"].as_str().expect("secret").to_owned(),
        }
    }

    /// A device's HTTPS post of a reading message, as raw bytes, whatever the answer.
    pub(crate) async fn send_readings(
        &self,
        device: &EnrolledDevice,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/api/v1/devices/{}/readings", device.id)))
            .bearer_auth(&device.secret)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .expect("device POST")
    }

    /// A device's HTTPS post of a reading message (JSON); fails the test unless stored.
    pub(crate) async fn device_post(&self, device: &EnrolledDevice, body: Value) {
        let response = self
            .send_readings(device, serde_json::to_vec(&body).expect("json"))
            .await;
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, 200, "device POST: {text}");
    }

    /// Opens a Server-Sent Events stream as `session`; fails the test unless it opens.
    pub(crate) async fn events(&self, session: &Session, path: &str) -> EventStream {
        let response = self.get(session, path).await;
        assert_eq!(response.status(), 200, "{path}");
        // The server subscribes to its feeds as the response starts; give it a moment so
        // that what the test sends next is not sent before anyone listens.
        tokio::time::sleep(Duration::from_millis(200)).await;
        EventStream::new(response)
    }

    /// The Prometheus exposition, read as an admin.
    pub(crate) async fn metrics(&self) -> String {
        let admin = self.admin().await;
        let response = self.get(&admin, "/metrics").await;
        assert_eq!(response.status(), 200, "metrics for an admin");
        response.text().await.expect("metrics text")
    }

    /// Waits until the alarm engine has evaluated every observation stored, and returns
    /// that count.
    pub(crate) async fn evaluated_everything(&self, within: Duration) -> f64 {
        let deadline = Instant::now() + within;
        loop {
            let text = self.metrics().await;
            let evaluated = metric(&text, "wardline_alarm_readings_evaluated_total");
            let stored = metric(&text, "wardline_ingest_readings_stored_total")
                + metric(&text, "wardline_derived_observations_stored_total");
            if evaluated >= stored && stored > 0.0 {
                return evaluated;
            }
            assert!(
                Instant::now() < deadline,
                "the alarm engine evaluated {evaluated} of {stored} readings within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Observations of one code for a patient, as a clinician sees them.
    pub(crate) async fn observations(
        &self,
        session: &Session,
        patient_id: &str,
        code: &str,
    ) -> Vec<Value> {
        let from = "2026-01-01T00:00:00Z";
        let response = self
            .get(
                session,
                &format!(
                    "/api/v1/patients/{patient_id}/observations?code={code}&from={from}&limit=10000"
                ),
            )
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        body["observations"].as_array().expect("array").clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of every series of metric `name` in a Prometheus exposition (0 when absent).
pub(crate) fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A CGM reading taken at `at`, as a device sends it.
pub(crate) fn glucose_at(seq: i64, value: f64, at: chrono::DateTime<chrono::Utc>) -> Value {
    json!({"v": 1, "seq": seq, "code": "99504-3", "value": value, "unit": "mg/dL",
           "time": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)})
}

/// A Server-Sent Events stream being read.
pub(crate) struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    pub(crate) fn new(response: reqwest::Response) -> EventStream {
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event of any name, as (name, JSON data), or `None` when nothing arrives
    /// before `deadline` or the stream ends.
    pub(crate) async fn next_any(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let name = block
                    .lines()
                    .find_map(|line| line.strip_prefix("event: "))
                    .unwrap_or("message")
                    .to_owned();
                let data = block
                    .lines()
                    .find_map(|line| line.strip_prefix("data: "))
                    .and_then(|data| {
                        serde_json::from_str(data)
                            .ok()
                            .or_else(|| Some(Value::String(data.to_owned())))
                    });
                match data {
                    Some(data) => return Some((name, data)),
                    // A keep-alive comment.
                    None => continue,
                }
            }
            // Nothing before the deadline, an error, or the end of the stream: no event.
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event called `name` within `within`, skipping others.
    pub(crate) async fn next(&mut self, name: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.next_any(deadline).await {
                Some((event, data)) if event == name => return data,
                Some(_) => continue,
                None => panic!("no `{name}` event within {within:?}, or the stream ended"),
            }
        }
    }

    /// Every event that arrives within `window`.
    pub(crate) async fn all_within(&mut self, window: Duration) -> Vec<(String, Value)> {
        let deadline = tokio::time::Instant::now() + window;
        let mut events = Vec::new();
        while let Some(event) = self.next_any(deadline).await {
            events.push(event);
        }
        events
    }
}

/// The TOTP time step `ahead` steps from now (30-second steps since the Unix epoch).
pub(crate) fn totp_step(ahead: u64) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        / 30
        + ahead
}

/// The six-digit code of a base-32 TOTP secret for a time step (RFC 6238, SHA-1), as an
/// authenticator app computes it.
pub(crate) fn one_time_code(secret: &str, step: u64) -> String {
    totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(secret).expect("base 32"))
        .build()
        .expect("totp")
        .generate(step * 30)
        .to_string()
}

#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) token: String,
    pub(crate) user_id: String,
}

#[derive(Clone)]
pub(crate) struct EnrolledDevice {
    pub(crate) id: String,
    pub(crate) secret: String,
}

pub(crate) struct Ward {
    pub(crate) admin: Session,
    pub(crate) clinician: Session,
    pub(crate) clinician_username: String,
    pub(crate) patient_id: String,
    pub(crate) team_id: String,
    pub(crate) device: EnrolledDevice,
}

/// Starts the process; also returns the file the first start names for the admin's
/// one-time password.
pub(crate) fn spawn(
    data_dir: &Path,
    env: &[(String, String)],
) -> (Child, ListenReport, Option<PathBuf>) {
    let listen_file: PathBuf = data_dir.join(format!("listen-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&listen_file);
    let mut child = Command::new(env!("CARGO_BIN_EXE_wardline"))
        .args([
            "serve",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir.join("server"))
        .arg("--listen-file")
        .arg(&listen_file)
        // Warnings only, unless a run asks for more to find out why a test failed.
        .env(
            "RUST_LOG",
            std::env::var("WARDLINE_TEST_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .envs(
            env.iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start wardline");
    let stdout = child.stdout.take().expect("stdout");
    let (password_tx, password_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("one-time password is in ").nth(1)
                && let Some(path) = rest.split(" (readable").next()
            {
                let _ = password_tx.send(PathBuf::from(path));
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let report: ListenReport = loop {
        if let Ok(text) = std::fs::read(&listen_file) {
            break serde_json::from_slice(&text).expect("listen report");
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("wardline exited early: {status}");
        }
        assert!(Instant::now() < deadline, "wardline did not start in 30 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    let password = password_rx.recv_timeout(Duration::from_millis(500)).ok();
    (child, report, password)
}

pub(crate) fn tls_client_config(ca_pem: &[u8]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(certificate.expect("ca pem")).expect("add root");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

pub(crate) fn http_client(ca_path: &Path) -> reqwest::Client {
    install_crypto();
    let ca = std::fs::read(ca_path).expect("ca file");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_client_config(&ca))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// MQTT 3.1.1 options for a device over TLS.
pub(crate) fn mqtt_v311(
    server: &TestServer,
    device: &EnrolledDevice,
    secret: &str,
) -> rumqttc::MqttOptions {
    let mut options = rumqttc::MqttOptions::new(device.id.clone(), "localhost", server.mqtt_port());
    options
        .set_credentials(device.id.clone(), secret)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024)
        .set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
            Arc::new(tls_client_config(&server.ca_pem())),
        )));
    options
}

/// MQTT 5 options for a device over TLS.
pub(crate) fn mqtt_v5(
    server: &TestServer,
    device: &EnrolledDevice,
    secret: &str,
) -> rumqttc::v5::MqttOptions {
    let mut options =
        rumqttc::v5::MqttOptions::new(device.id.clone(), "localhost", server.mqtt_port());
    options
        .set_credentials(device.id.clone(), secret)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(Some(2 * 1024 * 1024))
        .set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
            Arc::new(tls_client_config(&server.ca_pem())),
        )));
    options
}

pub(crate) fn topic(device: &EnrolledDevice) -> String {
    format!("wardline/v1/devices/{}/readings", device.id)
}

/// A valid single-reading payload for now.
/// Publishes a reading at QoS 1 on the device's own topic (MQTT 3.1.1); the PUBACK is
/// awaited on the event loop.
pub(crate) async fn publish_qos1(
    client: &rumqttc::AsyncClient,
    device: &EnrolledDevice,
    payload: Vec<u8>,
) {
    client
        .publish(topic(device), rumqttc::QoS::AtLeastOnce, false, payload)
        .await
        .expect("queue the publish");
}

pub(crate) fn reading(seq: i64, code: &str, value: f64, unit: &str) -> Vec<u8> {
    json!({"v": 1, "seq": seq, "code": code, "value": value, "unit": unit, "time": chrono::Utc::now().to_rfc3339()})
        .to_string()
        .into_bytes()
}

/// Revokes a device as `admin`, then polls its connected MQTT 3.1.1 event loop until the
/// server drops the connection (within 10 s).
pub(crate) async fn revoke_and_see_it_dropped(
    server: &TestServer,
    admin: &Session,
    device_id: &str,
    eventloop: &mut rumqttc::EventLoop,
) {
    let revoke = server
        .post(
            admin,
            &format!("/api/v1/devices/{device_id}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(revoke.status(), 204);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // Events flow until the server drops the connection.
    while tokio::time::timeout_at(deadline, eventloop.poll())
        .await
        .expect("dropped in time")
        .is_ok()
    {}
}

/// Polls an MQTT 3.1.1 event loop until `count` PUBACKs arrived; returns the acked
/// packet ids in order.
pub(crate) async fn await_pubacks(eventloop: &mut rumqttc::EventLoop, count: usize) -> Vec<u16> {
    let mut acked = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acked.len() < count {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("PUBACKs in time")
            .expect("mqtt connection");
        if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(ack)) = event {
            acked.push(ack.pkid);
        }
    }
    acked
}

/// Opens a server's database as someone holding its key would: the tests that tamper
/// with it play an insider with the database key but not the audit key.
pub(crate) fn open_database(database: &Path, keys: &Path) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(database).expect("open database");
    let key = std::fs::read_to_string(keys.join("database.key")).expect("database key");
    let key = wardline_store::sqlite::DatabaseKey::from_hex(&key).expect("a database key");
    wardline_store::sqlite::encryption::key_connection(&connection, &key).expect("give the key");
    connection
}

/// FHIR resources, one JSON document per line, through both independent validators
/// `scripts/test.sh` installs: the R4 models of Python's `fhir.resources` and Medplum's
/// validator (which also judges the profiles a resource claims). Panics with what a
/// validator refused.
pub(crate) fn validate_fhir_lines(ndjson: &[u8]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join("target/fhir-validator/bin/python");
    assert!(
        python.try_exists().unwrap_or(false),
        "the FHIR validator is missing at {}: run scripts/test.sh, which makes it",
        python.display()
    );
    let profiles = root.join("scripts/fhir-profiles");
    let mut node = std::process::Command::new("node");
    node.arg(profiles.join("validate.mjs"))
        .current_dir(&profiles);
    let mut fhir_resources = std::process::Command::new(&python);
    fhir_resources.arg(root.join("scripts/fhir-resources-validate.py"));
    for (name, mut command) in [
        ("fhir.resources", fhir_resources),
        ("Medplum's validator", node),
    ] {
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("{name} does not start: {error}"));
        let mut stdin = child.stdin.take().expect("stdin");
        let input = ndjson.to_vec();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
        let output = child.wait_with_output().expect("validator output");
        let _ = writer.join();
        assert!(
            output.status.success(),
            "{name} refused: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
