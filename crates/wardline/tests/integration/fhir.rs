//! Real FHIR clients against the real server over TLS: Python's `fhirpy` and the SMART
//! `fhirclient` read a patient's glucose with a search and follow the server's paging to
//! the end, with the clinician's bearer token, unmodified.

use serde_json::{Value, json};

use crate::support::*;

/// Reads the patient's observations of one code with fhirpy, two per page, and prints
/// what it found as JSON: the values in order and how many requests the pages took.
const CLIENT: &str = r#"
import json, sys
from fhirpy import SyncFHIRClient

base, token, patient, code = sys.argv[1:5]
client = SyncFHIRClient(base, authorization="Bearer " + token)
search = client.resources("Observation").search(patient=patient, code=code).limit(2)
found = search.fetch_all()
first_page = search.fetch()
metadata = client.execute("metadata", method="get")
print(json.dumps({
    "values": [o["valueQuantity"]["value"] for o in found],
    "units": sorted({o["valueQuantity"]["code"] for o in found}),
    "subjects": sorted({o["subject"]["reference"] for o in found}),
    "first_page": len(first_page),
    "fhirVersion": metadata["fhirVersion"],
}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhirpy_searches_and_pages_a_patients_glucose() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let read = python_client_reads(
        &server,
        &ward,
        (100.0, 10.0),
        CLIENT,
        format!("Patient/{}", ward.patient_id),
        "fhirpy==2.3.1",
    )
    .await;
    assert_eq!(read["values"], json!([100, 110, 120, 130, 140]), "{read}");
    assert_eq!(read["first_page"], 2, "{read}");
    assert_eq!(read["units"], json!(["mg/dL"]));
    assert_eq!(
        read["subjects"],
        json!([format!("Patient/{}", ward.patient_id)])
    );
    assert_eq!(read["fhirVersion"], "4.0.1");
}

/// Five glucose readings of the ward's patient, `base` and then `step` more each, ten
/// seconds apart from the next second on (the ward's device is assigned from now on);
/// then `script` run by Python with the server's URL, the clinician's token, `patient`
/// and the glucose code, over TLS: the JSON it printed.
async fn python_client_reads(
    server: &TestServer,
    ward: &Ward,
    (base, step): (f64, f64),
    script: &str,
    patient: String,
    package: &str,
) -> Value {
    let first = chrono::Utc::now() + chrono::Duration::seconds(1);
    let readings: Vec<Value> = (0..5)
        .map(|i| {
            glucose_at(
                i,
                base + i as f64 * step,
                first + chrono::Duration::seconds(i * 10),
            )
        })
        .collect();
    server
        .device_post(&ward.device, json!({"v": 1, "readings": readings}))
        .await;
    let ca = server.data.path().join("fhir-client-ca.pem");
    std::fs::write(&ca, server.ca_pem()).expect("CA file");
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(server.url("/fhir/R4"))
        .arg(&ward.clinician.token)
        .arg(patient)
        .arg("http://loinc.org|99504-3")
        // requests reads the CA bundle from here.
        .env("REQUESTS_CA_BUNDLE", &ca)
        .output()
        .await
        .expect("python3 (scripts/test.sh installs the FHIR clients)");
    assert!(
        output.status.success(),
        "the client failed (is it installed? python3 -m pip install {package}): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from the client")
}

/// Reads the patient and their observations of one code with the SMART `fhirclient`
/// (its R4 models parse every resource, the CapabilityStatement first), two per page,
/// and prints what it found as JSON.
const SMART_CLIENT: &str = r#"
import json, sys
from fhirclient import client
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient

base, token, patient, code = sys.argv[1:5]
smart = client.FHIRClient(settings={"app_id": "wardline-test", "api_base": base})
# The token from Wardline's login, as a SMART app holds one after its launch.
smart.server.session.headers["Authorization"] = "Bearer " + token
smart.server.get_capability()
capability = smart.server.capabilityStatement
person = Patient.read(patient, smart.server)
search = Observation.where(struct={"patient": "Patient/" + patient, "code": code, "_count": "2"})
pages = list(search.perform_iter(smart.server))
found = [entry.resource for page in pages for entry in (page.entry or [])]
print(json.dumps({
    "values": [o.valueQuantity.value for o in found],
    "pages": len(pages),
    "patient": person.id,
    "fhirVersion": capability.fhirVersion,
}))
"#;

/// The SMART on FHIR Python client, as a SMART app uses it, unmodified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smart_fhirclient_reads_a_patient_and_pages_their_glucose() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let read = python_client_reads(
        &server,
        &ward,
        (90.0, 5.0),
        SMART_CLIENT,
        ward.patient_id.to_string(),
        "fhirclient==4.3.1",
    )
    .await;
    assert_eq!(read["values"], json!([90, 95, 100, 105, 110]), "{read}");
    assert_eq!(read["pages"], 3, "two a page: {read}");
    assert_eq!(read["patient"], ward.patient_id.to_string());
    assert_eq!(read["fhirVersion"], "4.0.1");
}

const EUI64: &str = "00-1C-05-FF-FE-00-4A-21";

/// A PHD gateway's transaction: its oximeter by EUI-64 and one pulse and one saturation
/// measured at `at`.
fn phd_transaction(at: chrono::DateTime<chrono::Utc>, pulse: f64) -> Value {
    let observation = |code: &str, value: f64, unit: &str| {
        json!({"resource": {"resourceType": "Observation", "status": "final",
                  "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                  "device": {"reference": "urn:uuid:7f1c0de0-0000-4000-8000-000000000001"},
                  "effectiveDateTime": at.to_rfc3339(),
                  "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": unit}},
               "request": {"method": "POST", "url": "Observation"}})
    };
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:7f1c0de0-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Device",
                      "identifier": [{"system": "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680", "value": EUI64}]},
         "request": {"method": "POST", "url": "Device",
                     "ifNoneExist": format!("identifier=urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680|{EUI64}")}},
        observation("8867-4", pulse, "/min"),
        observation("59408-5", 97.0, "%"),
    ]})
}

/// Posts a Bundle as the gateway; the HTTP status, or `None` when the connection failed.
async fn post_bundle(
    client: &reqwest::Client,
    url: &str,
    gateway: &EnrolledDevice,
    bundle: &Value,
) -> Option<(u16, Value)> {
    let response = client
        .post(url)
        .basic_auth(&gateway.id, Some(&gateway.secret))
        .header(reqwest::header::CONTENT_TYPE, "application/fhir+json")
        .body(bundle.to_string())
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let body = response.json().await.ok()?;
    Some((status, body))
}

/// A PHD gateway uploads transactions over TLS, four at a time; the server is killed
/// with `kill -9` mid-stream. Every transaction answered 200 is there after the restart,
/// none is half there, and sending every one again stores nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phd_transactions_answered_survive_kill_9_and_repeat_stores_nothing_twice() {
    let mut server = TestServer::start().await;
    let ward = server.ward().await;
    let gateway = server
        .enrol(&ward.admin, "gateway", Some(&ward.patient_id))
        .await;
    server
        .post_ok(
            &ward.admin,
            "/api/v1/devices",
            json!({"kind": "pulse_oximeter", "model": "PHD oximeter", "serial": "4A21",
                   "device_id": EUI64, "patient_id": ward.patient_id}),
        )
        .await;
    let url = server.url("/fhir/R4");
    // Readings a second apart from the next second on (the oximeter is assigned from now).
    let first = chrono::Utc::now() + chrono::Duration::seconds(1);
    let first = chrono::DateTime::from_timestamp(first.timestamp(), 0).expect("time");
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let senders: Vec<_> = (0..4i64)
        .map(|lane| {
            let client = server.client.clone();
            let url = url.clone();
            let gateway = gateway.clone();
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                for step in 0..200i64 {
                    let second = step * 4 + lane;
                    let bundle = phd_transaction(
                        first + chrono::Duration::seconds(second),
                        60.0 + (second % 40) as f64,
                    );
                    match post_bundle(&client, &url, &gateway, &bundle).await {
                        Some((200, _)) => acknowledged.lock().expect("lock").push(second),
                        Some((status, body)) => panic!("transaction refused: {status} {body}"),
                        None => return,
                    }
                }
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while acknowledged.lock().expect("lock").len() < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "uploads answered in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.kill_hard();
    for sender in senders {
        let _ = sender.await;
    }
    let acknowledged: Vec<i64> = acknowledged.lock().expect("lock").clone();
    server.restart();
    let clinician = server
        .login(&ward.clinician_username, CLINICIAN_PASSWORD)
        .await;
    let stored_at = |observations: Vec<Value>| -> std::collections::BTreeSet<i64> {
        observations
            .iter()
            .map(|observation| {
                let effective = observation["effective"].as_str().expect("effective");
                chrono::DateTime::parse_from_rfc3339(effective)
                    .expect("time")
                    .timestamp()
                    - first.timestamp()
            })
            .collect()
    };
    let pulses = stored_at(
        server
            .observations(&clinician, &ward.patient_id, "8867-4")
            .await,
    );
    let saturations = stored_at(
        server
            .observations(&clinician, &ward.patient_id, "59408-5")
            .await,
    );
    let lost: Vec<i64> = acknowledged
        .iter()
        .filter(|second| !pulses.contains(second) || !saturations.contains(second))
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "answered 200 and lost to kill -9: {lost:?}"
    );
    // All or nothing survived the kill too: no transaction is half there.
    assert_eq!(pulses, saturations);

    // The gateway never heard some answers: it sends every acknowledged one again (to
    // the restarted server's address).
    let client = server.client.clone();
    let url = server.url("/fhir/R4");
    for second in &acknowledged {
        let bundle = phd_transaction(
            first + chrono::Duration::seconds(*second),
            60.0 + (second % 40) as f64,
        );
        let (status, answer) = post_bundle(&client, &url, &gateway, &bundle)
            .await
            .expect("answer");
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["entry"][1]["response"]["status"], "200 OK",
            "{answer}"
        );
    }
    let again = server
        .observations(&clinician, &ward.patient_id, "8867-4")
        .await;
    assert_eq!(again.len(), pulses.len(), "nothing stored twice");
}

/// A hospital system's key pair, made as its integration engine makes one (Python's
/// `cryptography`): the private key to a file, the public key set to standard output.
const SYSTEM_KEYS: &str = r#"
import json, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
with open(sys.argv[1], "wb") as out:
    out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()))
jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
jwk.update({"kid": "engine-rs384", "alg": "RS384", "use": "sig"})
print(json.dumps({"keys": [jwk]}))
"#;

/// The system's nightly job: SMART discovery, an RS384 assertion signed with PyJWT, a
/// token, `Group/[team]/$export`, the status polled as it asks, every file fetched; then
/// the same assertion again. Prints what it got as JSON.
const SYSTEM_EXPORT: &str = r#"
import json, sys, time, uuid
import jwt, requests

base, client_id, key_file, group = sys.argv[1:5]
configuration = requests.get(base + "/.well-known/smart-configuration").json()
endpoint = configuration["token_endpoint"]
with open(key_file, "rb") as key:
    private_key = key.read()
assertion = jwt.encode(
    {"iss": client_id, "sub": client_id, "aud": endpoint, "exp": int(time.time()) + 300,
     "jti": str(uuid.uuid4())},
    private_key, algorithm="RS384", headers={"kid": "engine-rs384"})
form = {"grant_type": "client_credentials", "scope": "system/*.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion}
answer = requests.post(endpoint, data=form)
answer.raise_for_status()
token = answer.json()["access_token"]
bearer = {"Authorization": "Bearer " + token}
kick_off = requests.get(base + "/Group/" + group + "/$export",
                        headers={**bearer, "Accept": "application/fhir+json", "Prefer": "respond-async"})
assert kick_off.status_code == 202, kick_off.text
status_url = kick_off.headers["Content-Location"]
polls = 0
while True:
    status = requests.get(status_url, headers=bearer)
    if status.status_code == 200:
        break
    assert status.status_code == 202, status.text
    polls += 1
    assert polls < 120, "the export did not finish"
    time.sleep(min(float(status.headers.get("Retry-After", "1")), 1.0))
manifest = status.json()
found = {}
for output in manifest["output"]:
    file = requests.get(output["url"], headers={**bearer, "Accept": "application/fhir+ndjson"})
    file.raise_for_status()
    for line in file.text.splitlines():
        resource = json.loads(line)
        found.setdefault(resource["resourceType"], []).append(resource)
replay = requests.post(endpoint, data=form)
print(json.dumps({
    "types": {name: len(resources) for name, resources in found.items()},
    "glucose": sorted(o["valueQuantity"]["value"] for o in found.get("Observation", [])),
    "requires_token": manifest["requiresAccessToken"],
    "replay": [replay.status_code, replay.json().get("error")],
}))
"#;

/// A hospital system registered for SMART Backend Services exports its care team over
/// TLS with Python's PyJWT and requests, as an integration engine does, unmodified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hospital_system_bulk_exports_its_care_team_with_a_signed_assertion() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let first = chrono::Utc::now() + chrono::Duration::seconds(1);
    let readings: Vec<Value> = (0..4)
        .map(|i| {
            glucose_at(
                i,
                100.0 + i as f64,
                first + chrono::Duration::seconds(i * 10),
            )
        })
        .collect();
    server
        .device_post(&ward.device, json!({"v": 1, "readings": readings}))
        .await;
    let ca = server.data.path().join("system-ca.pem");
    std::fs::write(&ca, server.ca_pem()).expect("CA file");
    let key_file = server.data.path().join("system-key.pem");
    let python = |script: &str, args: &[&str]| {
        let mut command = tokio::process::Command::new("python3");
        command
            .arg("-c")
            .arg(script)
            .args(args)
            .env("REQUESTS_CA_BUNDLE", &ca);
        command
    };
    let keys = python(SYSTEM_KEYS, &[key_file.to_str().expect("path")])
        .output()
        .await
        .expect("python3");
    assert!(
        keys.status.success(),
        "making the key failed (python3 -m pip install 'PyJWT[crypto]'): {}",
        String::from_utf8_lossy(&keys.stderr)
    );
    let jwks: Value = serde_json::from_slice(&keys.stdout).expect("a key set");
    let client = server
        .post_ok(
            &ward.admin,
            "/api/v1/backend-clients",
            json!({"name": "Nightly export", "jwks": jwks, "care_team_ids": [ward.team_id]}),
        )
        .await;
    let client_id = client["id"].as_str().expect("client id").to_owned();
    let output = python(
        SYSTEM_EXPORT,
        &[
            &server.url("/fhir/R4"),
            &client_id,
            key_file.to_str().expect("path"),
            &ward.team_id,
        ],
    )
    .output()
    .await
    .expect("python3");
    assert!(
        output.status.success(),
        "the system's export failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: Value = serde_json::from_slice(&output.stdout).expect("JSON from the system");
    assert_eq!(got["types"]["Patient"], 1, "{got}");
    assert_eq!(got["types"]["Device"], 1, "{got}");
    assert_eq!(got["glucose"], json!([100, 101, 102, 103]), "{got}");
    assert_eq!(got["requires_token"], true);
    assert_eq!(
        got["replay"],
        json!([401, "invalid_client"]),
        "a replayed assertion"
    );
}
