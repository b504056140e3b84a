//! A real FHIR client against the real server over TLS: Python's `fhirpy` reads a
//! patient's glucose with a search and follows the server's paging to the end, with the
//! clinician's bearer token, unmodified.

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
    // The ward's device is assigned from now on: its readings are of the next seconds.
    let first = chrono::Utc::now() + chrono::Duration::seconds(1);
    let readings: Vec<Value> = (0..5)
        .map(|i| {
            glucose_at(
                i,
                100.0 + i as f64 * 10.0,
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
        .arg(CLIENT)
        .arg(server.url("/fhir/R4"))
        .arg(&ward.clinician.token)
        .arg(format!("Patient/{}", ward.patient_id))
        .arg("http://loinc.org|99504-3")
        // requests reads the CA bundle from here.
        .env("REQUESTS_CA_BUNDLE", &ca)
        .output()
        .await
        .expect("python3 with fhirpy (scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "fhirpy failed (is it installed? python3 -m pip install fhirpy==2.3.1): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: Value = serde_json::from_slice(&output.stdout).expect("JSON from the client");
    assert_eq!(read["values"], json!([100, 110, 120, 130, 140]), "{read}");
    assert_eq!(read["first_page"], 2, "{read}");
    assert_eq!(read["units"], json!(["mg/dL"]));
    assert_eq!(
        read["subjects"],
        json!([format!("Patient/{}", ward.patient_id)])
    );
    assert_eq!(read["fhirVersion"], "4.0.1");
}
