//! `wardline demo` starts a server with a simulated ward, stores observations from its
//! devices within seconds (accelerated time), and stops cleanly on Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use wardline_server::server::ListenReport;

use crate::support::install_crypto;

fn client(ca_path: &std::path::Path) -> reqwest::Client {
    install_crypto();
    let pem = std::fs::read(ca_path).expect("ca file");
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(certificate.expect("ca pem")).expect("add root");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("tls versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_stores_observations_quickly_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listen_file = dir.path().join("listen.json");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wardline"))
        .args([
            "demo",
            "--speed",
            "600",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen-file")
        .arg(&listen_file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start wardline demo");
    let stdout = child.stdout.take().expect("stdout");
    let (login_tx, login_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["clinician", username, "/", password] = words.as_slice() {
                let _ = login_tx.send(((*username).to_owned(), (*password).to_owned()));
            }
        }
    });
    let (username, password) = login_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the demo prints the clinician's login");
    let report: ListenReport =
        serde_json::from_slice(&std::fs::read(&listen_file).expect("listen file")).expect("report");
    let client = client(report.ca_path.as_deref().expect("tls"));
    let base = format!("https://localhost:{}", report.http.port());
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login body");
    let token = login["token"].as_str().expect("token").to_owned();
    let patients: Value = client
        .get(format!("{base}/api/v1/patients"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("patients")
        .json()
        .await
        .expect("json");
    let patients = patients
        .as_array()
        .or_else(|| patients["patients"].as_array())
        .cloned()
        .expect("patient list");
    assert_eq!(patients.len(), 6, "the clinician sees the simulated ward");

    // A video visit with Ada is about to start, and its room is open to the clinician.
    let visits: Value = client
        .get(format!("{base}/api/v1/me/visits"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("visits")
        .json()
        .await
        .expect("json");
    let visits = visits.as_array().cloned().expect("visit list");
    assert_eq!(visits.len(), 1, "{visits:?}");
    assert_eq!(visits[0]["patient_name"], "Ada Moreno", "{visits:?}");
    let start: chrono::DateTime<chrono::Utc> = visits[0]["start"]
        .as_str()
        .expect("start")
        .parse()
        .expect("time");
    let ahead = start - chrono::Utc::now();
    assert!(
        ahead > chrono::Duration::zero() && ahead <= chrono::Duration::minutes(15),
        "starts in {ahead}"
    );
    let visit_id = visits[0]["id"].as_str().expect("id");
    let entered = client
        .post(format!("{base}/api/v1/visits/{visit_id}/room/enter"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("enter");
    assert_eq!(entered.status(), reqwest::StatusCode::OK);

    // Observations arrive (CGM over MQTT for Ada, weight over HTTPS for Farid, ...).
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut seen_codes = std::collections::BTreeSet::new();
    while seen_codes.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "too few observations; codes seen: {seen_codes:?}"
        );
        for patient in &patients {
            let id = patient["id"].as_str().expect("id");
            let latest: Value = client
                .get(format!("{base}/api/v1/patients/{id}/observations/latest"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("latest")
                .json()
                .await
                .expect("json");
            let list = latest
                .as_array()
                .or_else(|| latest["observations"].as_array())
                .cloned()
                .unwrap_or_default();
            for observation in list {
                if let Some(code) = observation["code"].as_str() {
                    seen_codes.insert(code.to_owned());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The demo enrols every patient on their program's care plan, so the replayed
    // history raises alarms within the first minute.
    let mut first_alarm = None;
    while first_alarm.is_none() {
        assert!(
            Instant::now() < deadline + Duration::from_secs(20),
            "no alarm within the demo's first minute"
        );
        let inbox: Value = client
            .get(format!("{base}/api/v1/alarms?state=all"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("alarm inbox")
            .json()
            .await
            .expect("json");
        first_alarm = inbox["alarms"]
            .as_array()
            .and_then(|alarms| alarms.first())
            .cloned();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "first alarm took {:?}",
        started.elapsed()
    );

    // The demo ward, bulk exported by its clinician: every line of every file is valid
    // R4 to both validators.
    let kick_off = client
        .get(format!("{base}/fhir/R4/Patient/$export"))
        .bearer_auth(&token)
        .header("prefer", "respond-async")
        .send()
        .await
        .expect("kick-off");
    assert_eq!(kick_off.status(), reqwest::StatusCode::ACCEPTED);
    let status_url = kick_off
        .headers()
        .get("content-location")
        .and_then(|value| value.to_str().ok())
        .expect("Content-Location")
        .to_owned();
    let export_deadline = Instant::now() + Duration::from_secs(60);
    let manifest: Value = loop {
        let answer = client
            .get(&status_url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("status");
        if answer.status() == reqwest::StatusCode::OK {
            break answer.json().await.expect("manifest");
        }
        assert_eq!(answer.status(), reqwest::StatusCode::ACCEPTED);
        assert!(
            Instant::now() < export_deadline,
            "the export did not finish"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut ndjson = Vec::new();
    let mut types = std::collections::BTreeMap::new();
    for output in manifest["output"].as_array().expect("outputs") {
        let file = client
            .get(output["url"].as_str().expect("url"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("file")
            .bytes()
            .await
            .expect("body");
        *types
            .entry(output["type"].as_str().expect("type").to_owned())
            .or_insert(0) += file.iter().filter(|byte| **byte == b'\n').count();
        ndjson.extend_from_slice(&file);
    }
    assert_eq!(types.get("Patient"), Some(&6), "{types:?}");
    for resource_type in ["Device", "Observation", "CarePlan", "DetectedIssue"] {
        assert!(
            types.get(resource_type).is_some_and(|count| *count > 0),
            "{resource_type}: {types:?}"
        );
    }
    crate::support::validate_fhir_lines(&ndjson);
    // The ward's NEWS2 results are there, each naming readings of the same export.
    let resources: Vec<Value> = ndjson
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("a JSON line"))
        .collect();
    let ids: std::collections::HashSet<String> = resources
        .iter()
        .filter(|resource| resource["resourceType"] == "Observation")
        .map(|resource| {
            format!(
                "Observation/{}",
                resource["id"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let news2: Vec<&Value> = resources
        .iter()
        .filter(|resource| resource["code"]["coding"][0]["code"] == "1104051000000101")
        .collect();
    assert!(!news2.is_empty(), "no NEWS2 in the export: {types:?}");
    for result in news2 {
        let sources = result["derivedFrom"].as_array().expect("derivedFrom");
        assert!(!sources.is_empty());
        for source in sources {
            let reference = source["reference"].as_str().unwrap_or_default();
            assert!(ids.contains(reference), "{reference} is not in the export");
        }
    }

    // Ctrl-C: devices, then the server, stop; the process exits successfully.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let stop_deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < stop_deadline,
            "the demo did not stop within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "clean exit: {exit}");
    assert!(started.elapsed() < Duration::from_secs(60));
}
