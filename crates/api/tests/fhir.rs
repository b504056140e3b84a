//! FHIR R4 over the API: the CapabilityStatement, a patient's vital signs searched and
//! paged as Observations, the same access check as Wardline's own API, errors as
//! OperationOutcomes; and every resource returned is checked by two independent
//! validators: the Python `fhir.resources` R4 models (in the virtual environment
//! `scripts/test.sh` makes) and Medplum's, which also checks the profiles a resource
//! claims (installed by `scripts/test.sh` in `scripts/fhir-profiles`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::{Hospital, hospital};

/// GET as `who` (a key of `tokens`, or anyone else for no token): status, content type
/// and body.
async fn fhir(h: &Hospital, who: &str, path: &str) -> (StatusCode, String, Value) {
    let mut request = Request::builder().method(Method::GET).uri(path);
    if let Some(token) = h.tokens.get(who) {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = h
        .app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The path and query of a link the server wrote with its base URL.
fn local(link: &str) -> String {
    let at = link.find("/fhir/R4").unwrap();
    link[at..].to_owned()
}

/// Every resource through the independent validator; panics naming what it refused.
pub(crate) fn validate(resources: &[Value]) {
    let python = std::env::var_os("WARDLINE_FHIR_VALIDATOR_PYTHON").map_or_else(
        || {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/fhir-validator/bin/python")
        },
        std::path::PathBuf::from,
    );
    assert!(
        python.try_exists().unwrap_or(false),
        "the FHIR validator is missing at {}: run scripts/test.sh, which makes it (python3 -m venv target/fhir-validator && target/fhir-validator/bin/pip install 'fhir.resources==6.5.0' 'pydantic<2'), or set WARDLINE_FHIR_VALIDATOR_PYTHON",
        python.display()
    );
    let mut python = std::process::Command::new(&python);
    python.arg(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts/fhir-resources-validate.py"),
    );
    run_validator("fhir.resources", python, resources);
    validate_profiles(resources);
}

/// Feeds `resources` to a validator, one JSON line each, and panics with what it printed
/// unless it exits with success.
fn run_validator(name: &str, mut command: std::process::Command, resources: &[Value]) {
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{name} does not start: {error}"));
    {
        let mut stdin = child.stdin.take().unwrap();
        for resource in resources {
            writeln!(stdin, "{resource}").unwrap();
        }
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{name} refused: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every resource, and every resource in a Bundle, through a second independent
/// validator, Medplum's, against the R4 base definition and each profile it claims (the
/// vital-signs profiles); panics naming what it refused.
fn validate_profiles(resources: &[Value]) {
    let folder =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fhir-profiles");
    assert!(
        folder
            .join("node_modules/@medplum/core")
            .try_exists()
            .unwrap_or(false),
        "Medplum's FHIR validator is missing: run scripts/test.sh, which installs it (npm ci --prefix scripts/fhir-profiles)"
    );
    let mut node = std::process::Command::new("node");
    node.arg(folder.join("validate.mjs")).current_dir(&folder);
    run_validator("Medplum's validator", node, resources);
}

/// A device of `kind` enrolled and assigned to Ada from a minute before `first`:
/// `(device id, secret)`.
pub(crate) async fn ada_device(
    h: &Hospital,
    kind: &str,
    first: chrono::DateTime<chrono::Utc>,
) -> (String, String) {
    let (status, enrolled) = h
        .as_(
            "admin",
            Method::POST,
            "/api/v1/devices",
            Some(json!({"kind": kind, "model": "Test", "serial": format!("fhir-{kind}")})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{enrolled}");
    let device = enrolled["device"]["id"].as_str().unwrap().to_owned();
    let (status, body) = h
        .as_(
            "admin",
            Method::POST,
            &format!("/api/v1/devices/{device}/assignments"),
            Some(json!({"patient_id": h.ada, "from": first - chrono::Duration::minutes(1)})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    (device, enrolled["secret"].as_str().unwrap().to_owned())
}

/// Ada's pulse oximeter sends heart rates, one a minute up to a minute ago, and an SpO2.
pub(crate) async fn ada_vitals(h: &Hospital, count: i64) -> chrono::DateTime<chrono::Utc> {
    let first = chrono::Utc::now() - chrono::Duration::minutes(count + 1);
    let (device, secret) = ada_device(h, "pulse_oximeter", first).await;
    let mut readings: Vec<Value> = (0..count)
        .map(|minute| {
            json!({"seq": minute, "code": "8867-4", "value": 60 + minute, "unit": "/min",
                   "time": (first + chrono::Duration::minutes(minute)).to_rfc3339()})
        })
        .collect();
    readings.push(
        json!({"seq": 1000, "code": "59408-5", "value": 96.5, "unit": "%",
                         "time": first.to_rfc3339()}),
    );
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/devices/{device}/readings"))
        .header("authorization", format!("Bearer {secret}"))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"v": 1, "readings": readings}).to_string(),
        ))
        .unwrap();
    let (status, body) = h.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    first
}

#[tokio::test]
async fn the_capability_statement_is_public_and_names_what_is_searched() {
    let h = hospital().await;
    let (status, content_type, body) = fhir(&h, "anonymous", "/fhir/R4/metadata").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/fhir+json");
    assert_eq!(body["resourceType"], "CapabilityStatement");
    assert_eq!(body["fhirVersion"], "4.0.1");
    let resources: Vec<&str> = body["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|resource| resource["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        resources,
        [
            "Patient",
            "Device",
            "Observation",
            "CareTeam",
            "CarePlan",
            "DetectedIssue",
            "AuditEvent",
            "MedicationRequest",
            "Group"
        ]
    );
    // The writes crates/api/tests/fhir_uploads.rs exercises, and nothing else.
    let interactions = |value: &Value| -> Vec<String> {
        value["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|interaction| interaction["code"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(interactions(&body["rest"][0]), ["transaction", "batch"]);
    assert_eq!(
        interactions(&body["rest"][0]["resource"][0]),
        ["read", "search-type"]
    );
    assert_eq!(
        interactions(&body["rest"][0]["resource"][1]),
        ["read", "search-type"]
    );
    assert_eq!(
        interactions(&body["rest"][0]["resource"][2]),
        ["read", "vread", "search-type", "create"]
    );
    assert_eq!(
        interactions(&body["rest"][0]["resource"][3]),
        ["read", "search-type"]
    );
    validate(&[body]);
}

/// The treatment orders written for a patient (in a video visit or not) are
/// MedicationRequests of the patient, for those who may read the patient, valid R4.
#[tokio::test]
async fn treatment_orders_are_medication_requests_of_their_patient() {
    let h = hospital().await;
    for (medication, stop) in [("amlodipine", None), ("ramipril", Some("2026-01-31"))] {
        let (status, order) = h
            .as_(
                "clinician",
                Method::POST,
                &format!("/api/v1/patients/{}/treatment-orders", h.ada),
                Some(serde_json::json!({"medication": medication, "dose": "5 mg", "frequency": "once a day",
                    "start": "2026-01-01", "stop": stop, "instructions": "In the morning, with water."})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
    }
    let path = format!("/fhir/R4/MedicationRequest?patient=Patient/{}", h.ada);
    let (status, content_type, bundle) = fhir(&h, "nurse", &path).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(content_type, "application/fhir+json");
    let resources: Vec<Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["resource"].clone())
        .collect();
    assert_eq!(resources.len(), 2, "{bundle}");
    // Newest first; the one that stopped in January is completed.
    assert_eq!(
        resources[0]["medicationCodeableConcept"]["text"],
        "ramipril"
    );
    assert_eq!(resources[0]["status"], "completed");
    assert_eq!(resources[1]["status"], "active");
    for resource in &resources {
        assert_eq!(resource["intent"], "order");
        assert_eq!(
            resource["subject"]["reference"],
            format!("Patient/{}", h.ada)
        );
        assert_eq!(
            resource["dosageInstruction"][0]["patientInstruction"],
            "In the morning, with water."
        );
    }
    validate(&resources);
    validate(&[bundle]);
    for (who, expected) in [
        ("ada", StatusCode::OK),
        ("bob", StatusCode::FORBIDDEN),
        ("outsider", StatusCode::FORBIDDEN),
    ] {
        let (status, _, body) = fhir(&h, who, &path).await;
        assert_eq!(status, expected, "{who}: {body}");
        if status != StatusCode::OK {
            assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
        }
    }
    let (status, _, body) = fhir(&h, "nurse", "/fhir/R4/MedicationRequest?code=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
}

/// The entries of a searchset Bundle.
fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|entry| entry["resource"].clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Follows a search's `next` links to the end: every resource, and every Bundle.
async fn all_pages(h: &Hospital, who: &str, first: &str) -> (Vec<Value>, Vec<Value>) {
    let mut resources = Vec::new();
    let mut bundles = Vec::new();
    let mut path = Some(first.to_owned());
    while let Some(here) = path.take() {
        let (status, _, bundle) = fhir(h, who, &here).await;
        assert_eq!(status, StatusCode::OK, "{here}: {bundle}");
        resources.extend(entries(&bundle));
        path = bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|link| link["relation"] == "next")
            .map(|link| local(link["url"].as_str().unwrap()));
        bundles.push(bundle);
        assert!(bundles.len() < 50, "the next links never end");
    }
    (resources, bundles)
}

/// Ada's care team, her monitoring plan, the alarms it raised and the audit trail come
/// as CareTeam, CarePlan, DetectedIssue and AuditEvent: through the one access check,
/// paged where they grow, and valid R4.
#[tokio::test]
async fn care_teams_plans_alarms_and_the_audit_trail_are_fhir_resources() {
    let h = hospital().await;
    let plan_path = format!("/api/v1/patients/{}/care-plan", h.ada);
    let (status, body) = h
        .as_(
            "nurse",
            Method::PUT,
            &plan_path,
            Some(json!({"program": "diabetes", "reason": "type 1 diabetes"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The care team: its name and members by name and role.
    let (status, _, teams) = fhir(
        &h,
        "ada",
        &format!("/fhir/R4/CareTeam?patient=Patient/{}", h.ada),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{teams}");
    let team = &entries(&teams)[0];
    assert_eq!(team["name"], "Ward 7");
    assert_eq!(team["identifier"][0]["value"], h.team);
    // Read again by its id, by those who may read Ada's record and nobody else.
    let team_path = format!("/fhir/R4/CareTeam/{}", team["id"].as_str().unwrap());
    for (who, expected) in [
        ("ada", StatusCode::OK),
        ("nurse", StatusCode::OK),
        ("outsider", StatusCode::NOT_FOUND),
    ] {
        let (status, _, read) = fhir(&h, who, &team_path).await;
        assert_eq!(status, expected, "{who}: {read}");
        if expected == StatusCode::OK {
            assert_eq!(&read, team, "{who}");
        }
    }
    // The same team of another patient is another CareTeam; a team not looking after
    // Ada is not hers.
    let bobs = wardline_fhir::care_team_id(h.team.parse().unwrap(), h.bob);
    assert_ne!(format!("/fhir/R4/CareTeam/{bobs}"), team_path);
    let strangers = wardline_fhir::care_team_id(wardline_domain::CareTeamId::random(), h.ada);
    let (status, _, _) = fhir(&h, "nurse", &format!("/fhir/R4/CareTeam/{strangers}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let mut members: Vec<(String, String)> = team["participant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| {
            (
                member["member"]["display"].as_str().unwrap().to_owned(),
                member["role"][0]["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    members.sort();
    assert_eq!(
        members,
        [
            ("CLINICIAN".to_owned(), "clinician".to_owned()),
            ("NURSE".to_owned(), "nurse".to_owned())
        ]
    );

    // The plan: one per patient, each rule an activity in words.
    let (status, _, plans) = fhir(
        &h,
        "clinician",
        &format!("/fhir/R4/CarePlan?subject={}", h.ada),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{plans}");
    let plan = &entries(&plans)[0];
    assert_eq!(plan["id"], h.ada.to_string());
    assert_eq!(plan["title"], "Diabetes monitoring plan");
    assert_eq!(plan["meta"]["versionId"], "1");
    assert_eq!(plan["note"][0]["text"], "Version 1: type 1 diabetes");
    let activities = plan["activity"].as_array().unwrap();
    let urgent_low = activities
        .iter()
        .find(|activity| activity["detail"]["code"]["coding"][0]["code"] == "urgent-low")
        .expect("the diabetes programme watches for urgent lows");
    let words = urgent_low["detail"]["description"].as_str().unwrap();
    assert!(
        words.contains("below 54 mg/dL") && words.contains("high priority"),
        "{words}"
    );
    // Bob has no plan: his own search finds none.
    let (status, _, none) = fhir(&h, "bob", &format!("/fhir/R4/CarePlan?patient={}", h.bob)).await;
    assert_eq!(status, StatusCode::OK, "{none}");
    assert_eq!(none["total"], 0);

    // A second rule on the same limit side: each low of 45 mg/dL is beyond two limits
    // at once (urgent low, and below 60), so alarms are raised in pairs.
    let (status, body) = h
        .as_(
            "clinician",
            Method::PUT,
            &plan_path,
            Some(json!({"reason": "lows at night", "edit": {"op": "add", "rule": {
                "id": "below-60", "name": "below 60", "priority": "medium", "resolve_on_clear": true,
                "kind": {"type": "threshold", "code": "99504-3", "direction": "below", "value": 60,
                         "min_duration_secs": 0, "hysteresis": 5}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Three lows, each followed by a normal reading: below 60 clears and is raised
    // again each time, while the urgent low latches until a person resolves it (and its
    // first alarm is raised with the first below 60, at the same instant).
    let now = chrono::Utc::now();
    let (device, secret) = h.ada_cgm_since(now - chrono::Duration::minutes(10)).await;
    for (seq, value) in [(1, 45), (2, 120), (3, 45), (4, 120), (5, 45), (6, 120)] {
        let (status, body) = h
            .call(
                Method::POST,
                &format!("/api/v1/devices/{device}/readings"),
                Some(&secret),
                Some(
                    json!({"v": 1, "seq": seq, "code": "99504-3", "value": value, "unit": "mg/dL",
                    "time": now - chrono::Duration::minutes(8 - seq)}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let search = format!("/fhir/R4/DetectedIssue?patient=Patient/{}", h.ada);
    let mut raised = Vec::new();
    for _ in 0..100 {
        let (_, _, bundle) = fhir(&h, "nurse", &search).await;
        raised = entries(&bundle);
        if raised.len() >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(raised.len(), 4, "the lows raised alarms: {raised:?}");
    let urgent = raised
        .iter()
        .find(|issue| {
            issue["code"]["coding"][0]["code"] == "urgent-low"
                && issue["extension"][0]["valueCode"] == "open"
        })
        .expect("an urgent low");
    assert_eq!(urgent["status"], "preliminary");
    assert_eq!(urgent["severity"], "high");
    assert_eq!(urgent["patient"]["reference"], format!("Patient/{}", h.ada));
    // The nurse acknowledges it: a mitigation by her name.
    let id = urgent["id"].as_str().unwrap().to_owned();
    let (status, body) = h
        .as_(
            "nurse",
            Method::POST,
            &format!("/api/v1/alarms/{id}/acknowledge"),
            None,
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    // Paged one at a time, the pages hold every alarm once, ties in time included.
    let (paged, bundles) = all_pages(&h, "nurse", &format!("{search}&_count=1")).await;
    let ids: Vec<&str> = paged
        .iter()
        .map(|issue| issue["id"].as_str().unwrap())
        .collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no alarm twice: {ids:?}");
    let (_, _, whole) = fhir(&h, "nurse", &search).await;
    assert_eq!(paged.len(), entries(&whole).len(), "none skipped");
    let acknowledged = paged
        .iter()
        .find(|issue| issue["id"] == id.as_str())
        .unwrap();
    assert_eq!(acknowledged["extension"][0]["valueCode"], "acknowledged");
    assert_eq!(
        acknowledged["mitigation"][0]["action"]["text"],
        "acknowledged"
    );
    assert_eq!(acknowledged["mitigation"][0]["author"]["display"], "NURSE");
    let (status, _, later) = fhir(&h, "nurse", &format!("{search}&identified=gt2100-01-01")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(later["total"], 0, "nothing raised after 2100");
    let (status, _, bad) = fhir(&h, "nurse", &format!("{search}&_page=12")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(bad["issue"][0]["expression"][0], "_page");

    // Outsiders are refused, as everywhere.
    for path in [
        format!("/fhir/R4/CareTeam?patient={}", h.ada),
        format!("/fhir/R4/CarePlan?patient={}", h.ada),
        search.clone(),
    ] {
        let (status, _, body) = fhir(&h, "outsider", &path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        let (status, _, body) = fhir(&h, "bob", &path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    let (status, _, body) = fhir(&h, "nurse", "/fhir/R4/CareTeam?code=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["issue"][0]["code"], "not-supported");

    // The audit trail: administrators only; each read of Ada's record is in it.
    let audit = format!("/fhir/R4/AuditEvent?patient=Patient/{}&_count=5", h.ada);
    let (status, _, refused) = fhir(&h, "clinician", &audit).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let (events, audit_bundles) = all_pages(&h, "admin", &audit).await;
    assert!(audit_bundles.len() > 1, "more than five entries: paged");
    let sequences: Vec<i64> = events
        .iter()
        .map(|event| event["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        sequences.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first, none twice: {sequences:?}"
    );
    assert!(
        events
            .iter()
            .all(|event| event["entity"][0]["what"]["reference"] == format!("Patient/{}", h.ada))
    );
    let subtype = |event: &Value| event["subtype"][0]["code"].as_str().unwrap().to_owned();
    let refusal = events
        .iter()
        .find(|event| subtype(event) == "alarms.read" && event["outcome"] == "0")
        .expect("the nurse's reads of the alarms");
    assert_eq!(refusal["action"], "R");
    assert_eq!(
        refusal["agent"][0]["who"]["display"], "nurse",
        "by account name"
    );
    assert!(
        events.iter().any(|event| event["outcome"] == "4"),
        "the outsiders' refusals are there too"
    );

    // Each is read by its id too, through the same check.
    let (status, _, read_plan) = fhir(&h, "ada", &format!("/fhir/R4/CarePlan/{}", h.ada)).await;
    assert_eq!(status, StatusCode::OK, "{read_plan}");
    // The version in force now: the one with the rule the clinician added.
    assert_eq!(read_plan["id"], plan["id"]);
    assert_eq!(read_plan["meta"]["versionId"], "2");
    assert!(
        read_plan["activity"]
            .as_array()
            .unwrap()
            .iter()
            .any(|activity| activity["detail"]["code"]["coding"][0]["code"] == "below-60"),
        "{read_plan}"
    );
    let (status, _, body) = fhir(&h, "bob", &format!("/fhir/R4/CarePlan/{}", h.ada)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, read_issue) = fhir(&h, "nurse", &format!("/fhir/R4/DetectedIssue/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{read_issue}");
    assert_eq!(read_issue["id"], id.as_str());
    assert_eq!(read_issue["mitigation"][0]["author"]["display"], "NURSE");
    let (status, _, body) = fhir(&h, "outsider", &format!("/fhir/R4/DetectedIssue/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let newest = events[0]["id"].as_str().unwrap().to_owned();
    let (status, _, read_event) = fhir(&h, "admin", &format!("/fhir/R4/AuditEvent/{newest}")).await;
    assert_eq!(status, StatusCode::OK, "{read_event}");
    assert_eq!(read_event, events[0]);
    let (status, _, body) = fhir(&h, "clinician", &format!("/fhir/R4/AuditEvent/{newest}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, body) = fhir(&h, "admin", "/fhir/R4/AuditEvent/not-a-place").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let mut everything = vec![teams, plans, read_plan, read_issue, read_event];
    everything.extend(paged);
    everything.extend(bundles);
    everything.extend(events);
    everything.extend(audit_bundles);
    validate(&everything);
}

/// Ada's ECG patch records two leads and respiration in 2-second chunks: the ECG comes
/// as Observations with `valueSampledData`, one per chunk of one lead, paged in the
/// order recorded (leads that began together included), every sample as sent.
#[tokio::test]
async fn the_ecg_comes_as_sampled_data_one_observation_per_chunk() {
    let h = hospital().await;
    let first = chrono::Utc::now() - chrono::Duration::minutes(5);
    let (device, secret) = ada_device(&h, "ecg", first).await;
    let mut sent: std::collections::HashMap<(String, String), Vec<i64>> = Default::default();
    let mut seq = 0;
    for chunk in 0..5_i64 {
        let start = first + chrono::Duration::seconds(2 * chunk);
        for (signal, phase) in [
            ("ecg-lead-i", 0.0),
            ("ecg-lead-ii", 1.0),
            ("respiration", 2.0),
        ] {
            let samples: Vec<i64> = (0..500)
                .map(|i| 1024 + (300.0 * ((i as f64 + phase) / 20.0).sin()) as i64 + chunk)
                .collect();
            seq += 1;
            let (status, body) = h
                .call(
                    Method::POST,
                    &format!("/api/v1/devices/{device}/readings"),
                    Some(&secret),
                    Some(
                        json!({"v": 1, "waveform": {"seq": seq, "signal": signal, "rate_hz": 250,
                        "start": start, "gain": 200, "baseline": 1024, "samples": samples}}),
                    ),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            sent.insert(
                (signal.to_owned(), start.format("%H:%M:%S").to_string()),
                samples,
            );
        }
    }
    let span = |from: chrono::DateTime<chrono::Utc>, minutes: i64| {
        format!(
            "date=ge{}&date=lt{}",
            from.format("%Y-%m-%dT%H:%M:%SZ"),
            (from + chrono::Duration::minutes(minutes)).format("%Y-%m-%dT%H:%M:%SZ")
        )
    };
    let search = format!(
        "/fhir/R4/Observation?patient={}&code=urn:oid:2.16.840.1.113883.6.24%7C131328&{}",
        h.ada,
        span(first - chrono::Duration::minutes(1), 30)
    );
    let (ecg, bundles) = all_pages(&h, "clinician", &format!("{search}&_count=3")).await;
    assert_eq!(bundles.len(), 4, "ten chunks, three a page");
    assert_eq!(
        ecg.len(),
        10,
        "two leads of five chunks, and no respiration"
    );
    let mut starts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for observation in &ecg {
        assert!(seen.insert(observation["id"].clone()), "no chunk twice");
        assert_eq!(observation["code"]["coding"][0]["code"], "131328");
        let component = &observation["component"][0];
        let signal = component["code"]["text"].as_str().unwrap().to_owned();
        let lead = component["code"]["coding"][0]["code"].as_str().unwrap();
        assert_eq!(
            lead,
            if signal == "ecg-lead-i" {
                "131329"
            } else {
                "131330"
            }
        );
        let start: chrono::DateTime<chrono::Utc> = observation["effectivePeriod"]["start"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        starts.push(start);
        let sampled = &component["valueSampledData"];
        assert_eq!(sampled["period"], 4.0);
        assert_eq!(sampled["factor"], 0.005);
        assert_eq!(sampled["origin"]["value"], 0);
        assert_eq!(sampled["origin"]["code"], "mV");
        // The data are the samples counted from the baseline: adding it back gives
        // exactly what the patch sent.
        let samples: Vec<i64> = sampled["data"]
            .as_str()
            .unwrap()
            .split(' ')
            .map(|step| step.parse::<i64>().unwrap() + 1024)
            .collect();
        assert_eq!(
            &samples,
            &sent[&(signal, start.format("%H:%M:%S").to_string())],
        );
    }
    assert!(
        starts.windows(2).all(|pair| pair[0] <= pair[1]),
        "in the order recorded"
    );
    validate(&ecg);
    validate(&bundles);

    // A heart rate Wardline derived 10 s after the first chunk names the chunks of both
    // leads it was counted in (the ten seconds before it), and not the respiration.
    let at = first + chrono::Duration::seconds(10);
    h.service
        .store()
        .record_analysis(wardline_store::AnalysisResults {
            derived: vec![wardline_store::NewDerivedObservation {
                patient_id: h.ada,
                device_id: wardline_domain::DeviceId::parse(&device).unwrap(),
                seq: at.timestamp_millis(),
                code: wardline_domain::ObservationCode::HeartRate,
                value: 72.0,
                effective: at,
                received: at,
            }],
            recorded: at,
            ..Default::default()
        })
        .await
        .unwrap();
    let chunk_ids: std::collections::HashSet<String> = ecg
        .iter()
        .map(|observation| format!("Observation/{}", observation["id"].as_str().unwrap()))
        .collect();
    let (status, rates) = h
        .as_(
            "clinician",
            Method::GET,
            &format!(
                "/fhir/R4/Observation?patient={}&code=http://loinc.org%7C8867-4",
                h.ada
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rates}");
    validate(std::slice::from_ref(&rates));
    let rate = &rates["entry"][0]["resource"];
    let sources: std::collections::HashSet<String> = rate["derivedFrom"]
        .as_array()
        .unwrap_or_else(|| panic!("no derivedFrom: {rate}"))
        .iter()
        .map(|source| source["reference"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        sources, chunk_ids,
        "every lead chunk of the ten seconds, only those"
    );
    let (status, read) = h
        .as_(
            "clinician",
            Method::GET,
            &format!("/fhir/R4/Observation/{}", rate["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["derivedFrom"], rate["derivedFrom"]);
    // Each chunk it names, like every chunk a search gives, is read again by its id;
    // not by an outsider, and a respiration chunk is not served as FHIR.
    for observation in &ecg {
        let id = observation["id"].as_str().unwrap();
        let (status, _, chunk) = fhir(&h, "clinician", &format!("/fhir/R4/Observation/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{chunk}");
        assert_eq!(&chunk, observation);
        let (status, _, _) = fhir(&h, "outsider", &format!("/fhir/R4/Observation/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let respiration = format!(
        "{}.w3",
        wardline_fhir::device_fhir_id(&wardline_domain::DeviceId::parse(&device).unwrap())
    );
    let (status, _, body) = fhir(
        &h,
        "clinician",
        &format!("/fhir/R4/Observation/{respiration}"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // What an ECG search needs, and what it cannot do, is named.
    for (query, parameter) in [
        (
            format!(
                "patient={}&code=urn:oid:2.16.840.1.113883.6.24|131328",
                h.ada
            ),
            "date",
        ),
        (
            format!(
                "patient={}&code=urn:oid:2.16.840.1.113883.6.24|131328&{}",
                h.ada,
                span(first, 61)
            ),
            "date",
        ),
        (
            format!(
                "{}&_summary=count",
                &search[search.find('?').unwrap() + 1..]
            ),
            "_summary",
        ),
        (
            format!(
                "patient={}&code=urn:oid:2.16.840.1.113883.6.24|150456",
                h.ada
            ),
            "code",
        ),
    ] {
        let path = format!("/fhir/R4/Observation?{}", query.replace('|', "%7C"));
        let (status, _, body) = fhir(&h, "clinician", &path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["issue"][0]["expression"][0], parameter, "{body}");
    }
    for who in ["outsider", "bob"] {
        let (status, _, body) = fhir(&h, who, &search).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {body}");
    }
}

/// A search by category alone (what SMART apps ask for: `category=vital-signs`) gives
/// every reading of the category's codes in time order, paged across codes without a
/// reading twice or one skipped, readings of two codes at the same instant included.
#[tokio::test]
async fn a_category_search_pages_through_every_code_of_the_category() {
    let h = hospital().await;
    // Seven heart rates a minute apart, and an SpO2 at the time of the first.
    let first = ada_vitals(&h, 7).await;
    let search = format!(
        "/fhir/R4/Observation?patient=Patient/{}&category=http://terminology.hl7.org/CodeSystem/observation-category%7Cvital-signs",
        h.ada
    );
    let (all, bundles) = all_pages(&h, "nurse", &format!("{search}&_count=3")).await;
    assert_eq!(bundles.len(), 3, "eight readings, three a page");
    assert_eq!(all.len(), 8);
    let mut ids: Vec<&str> = all.iter().map(|o| o["id"].as_str().unwrap()).collect();
    let times: Vec<&str> = all
        .iter()
        .map(|o| o["effectiveDateTime"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");
    let codes: std::collections::BTreeSet<&str> = all
        .iter()
        .map(|o| {
            o["code"]["coding"].as_array().unwrap().last().unwrap()["code"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(codes, ["59408-5", "8867-4"].into());
    let first_time: chrono::DateTime<chrono::Utc> = times[0].parse().unwrap();
    assert_eq!(
        first_time.timestamp_millis(),
        first.timestamp_millis(),
        "the two readings of the first minute lead"
    );
    assert_eq!(times[0], times[1], "two codes at one instant");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 8, "none twice");
    // One a page, the page ends between the two readings of one instant: the same list.
    let (one_by_one, _) = all_pages(&h, "nurse", &format!("{search}&_count=1")).await;
    assert_eq!(one_by_one, all);
    // Newest first, the same readings the other way round.
    let (newest, _) = all_pages(&h, "nurse", &format!("{search}&_count=5&_sort=-date")).await;
    let newest_times: Vec<&str> = newest
        .iter()
        .map(|o| o["effectiveDateTime"].as_str().unwrap())
        .collect();
    let mut reversed = times.clone();
    reversed.reverse();
    assert_eq!(newest_times, reversed);
    // A category with nothing in it, and the people who may not look.
    let (status, _, laboratory) = fhir(
        &h,
        "nurse",
        &format!("/fhir/R4/Observation?patient={}&category=laboratory", h.ada),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{laboratory}");
    assert_eq!(laboratory["total"], 0);
    for who in ["bob", "outsider"] {
        let (status, _, body) = fhir(&h, who, &search).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {body}");
    }
    let (status, _, body) = fhir(&h, "nurse", &format!("{search}&_page=8867-4:x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["issue"][0]["expression"][0], "_page");
    validate(&all);
    validate(&bundles);
}

#[tokio::test]
async fn a_care_team_pages_through_a_patients_heart_rates_as_vital_sign_observations() {
    let h = hospital().await;
    let first = ada_vitals(&h, 5).await;
    let search = format!(
        "/fhir/R4/Observation?patient=Patient/{}&code=http://loinc.org%7C8867-4&_count=2",
        h.ada
    );
    let mut path = search.clone();
    let mut values = Vec::new();
    let mut resources = Vec::new();
    let mut pages = 0;
    loop {
        let (status, content_type, bundle) = fhir(&h, "clinician", &path).await;
        assert_eq!(status, StatusCode::OK, "{bundle}");
        assert_eq!(content_type, "application/fhir+json");
        assert_eq!(bundle["type"], "searchset");
        pages += 1;
        for entry in bundle["entry"].as_array().unwrap() {
            let observation = &entry["resource"];
            values.push(observation["valueQuantity"]["value"].as_f64().unwrap());
            assert_eq!(
                observation["subject"]["reference"],
                format!("Patient/{}", h.ada)
            );
            assert_eq!(
                observation["category"][0]["coding"][0]["code"],
                "vital-signs"
            );
            assert_eq!(
                observation["valueQuantity"]["system"],
                "http://unitsofmeasure.org"
            );
            assert!(
                entry["fullUrl"]
                    .as_str()
                    .unwrap()
                    .ends_with(observation["id"].as_str().unwrap())
            );
            resources.push(observation.clone());
        }
        resources.push(bundle.clone());
        let next = bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|link| link["relation"] == "next")
            .map(|link| local(link["url"].as_str().unwrap()));
        match next {
            Some(next) => path = next,
            None => {
                assert!(bundle["total"].is_number(), "the last page has a total");
                break;
            }
        }
    }
    assert_eq!(
        values,
        [60.0, 61.0, 62.0, 63.0, 64.0],
        "every reading once, oldest first"
    );
    assert_eq!(pages, 3);

    // A date range, and pulse oximetry carrying 2708-6 beside 59408-5.
    let since = (first + chrono::Duration::minutes(3)).to_rfc3339();
    let (_, _, recent) = fhir(
        &h,
        "nurse",
        &format!("{search}&date=ge{}", since.replace('+', "%2B")),
    )
    .await;
    let recent: Vec<f64> = recent["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            entry["resource"]["valueQuantity"]["value"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(recent, [63.0, 64.0]);

    // Newest first, paged toward the past; and how many, without the readings.
    let mut path = format!("{search}&_sort=-date");
    let mut newest_first = Vec::new();
    loop {
        let (status, _, bundle) = fhir(&h, "clinician", &path).await;
        assert_eq!(status, StatusCode::OK, "{bundle}");
        newest_first.extend(bundle["entry"].as_array().unwrap().iter().map(|entry| {
            entry["resource"]["valueQuantity"]["value"]
                .as_f64()
                .unwrap()
        }));
        resources.push(bundle.clone());
        match bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|link| link["relation"] == "next")
        {
            Some(next) => path = local(next["url"].as_str().unwrap()),
            None => break,
        }
    }
    assert_eq!(newest_first, [64.0, 63.0, 62.0, 61.0, 60.0]);
    let (status, _, count) = fhir(&h, "clinician", &format!("{search}&_summary=count")).await;
    assert_eq!(status, StatusCode::OK, "{count}");
    assert_eq!(count["total"], 5);
    assert!(
        count["entry"].as_array().is_none_or(Vec::is_empty),
        "{count}"
    );
    let (_, _, counted) = fhir(
        &h,
        "clinician",
        &format!(
            "{search}&_summary=count&date=ge{}",
            since.replace('+', "%2B")
        ),
    )
    .await;
    assert_eq!(counted["total"], 2);
    resources.push(count.clone());
    let (status, _, _) = fhir(&h, "outsider", &format!("{search}&_summary=count")).await;
    assert!(
        matches!(status.as_u16(), 403 | 404),
        "{status}: a count is a read"
    );

    // The device that measured them, beside the readings, and read on its own.
    let (status, _, with_devices) = fhir(
        &h,
        "clinician",
        &format!("{search}&_count=10&_include=Observation:device"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{with_devices}");
    let entries = with_devices["entry"].as_array().unwrap();
    let included: Vec<&Value> = entries
        .iter()
        .filter(|entry| entry["search"]["mode"] == "include")
        .map(|entry| &entry["resource"])
        .collect();
    assert_eq!(included.len(), 1, "one device measured them all");
    let device = included[0];
    assert_eq!(device["resourceType"], "Device");
    assert_eq!(device["serialNumber"], "fhir-pulse_oximeter");
    assert_eq!(device["patient"]["reference"], format!("Patient/{}", h.ada));
    assert_eq!(
        with_devices["total"], 5,
        "included resources are not matches"
    );
    let reference = format!("Device/{}", device["id"].as_str().unwrap());
    assert!(
        entries
            .iter()
            .filter(|entry| entry["search"]["mode"] == "match")
            .all(|entry| entry["resource"]["device"]["reference"] == reference.as_str()),
        "each reading refers to the included device"
    );
    resources.push(with_devices.clone());
    let (status, _, read) = fhir(&h, "nurse", &format!("/fhir/R4/{reference}")).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(&read, device);
    resources.push(read);
    let (status, _, _) = fhir(&h, "outsider", &format!("/fhir/R4/{reference}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not told the device exists");
    let (status, _, _) = fhir(&h, "anonymous", &format!("/fhir/R4/{reference}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Searched by the patient: the devices ever hers, naming her while they are hers.
    let devices_of_ada = format!("/fhir/R4/Device?patient=Patient/{}", h.ada);
    let (status, _, found) = fhir(&h, "nurse", &devices_of_ada).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["entry"].as_array().unwrap().len(), 1);
    assert_eq!(&found["entry"][0]["resource"], device);
    resources.push(found);
    let (status, _, _) = fhir(&h, "outsider", &devices_of_ada).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Given to Bob: still among Ada's devices, but saying nothing of Bob to her readers.
    let wardline_id = wardline_fhir::device_id_of(device["id"].as_str().unwrap());
    let (status, body) = h
        .as_(
            "admin",
            Method::POST,
            &format!("/api/v1/devices/{wardline_id}/assignments"),
            Some(json!({"patient_id": h.bob, "from": chrono::Utc::now()})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, _, found) = fhir(&h, "ada", &devices_of_ada).await;
    let given_away = &found["entry"][0]["resource"];
    assert_eq!(given_away["id"], device["id"]);
    assert!(given_away.get("patient").is_none(), "{given_away}");
    let (_, _, with_devices) = fhir(
        &h,
        "clinician",
        &format!("{search}&_count=10&_include=Observation:device"),
    )
    .await;
    let included = with_devices["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["search"]["mode"] == "include")
        .unwrap();
    assert!(included["resource"].get("patient").is_none());
    resources.push(found.clone());

    let (_, _, oximetry) = fhir(
        &h,
        "ada",
        &format!("/fhir/R4/Observation?subject={}&code=59408-5", h.ada),
    )
    .await;
    let spo2 = &oximetry["entry"][0]["resource"];
    assert_eq!(spo2["code"]["coding"][0]["code"], "2708-6");
    assert_eq!(spo2["code"]["coding"][1]["code"], "59408-5");
    assert_eq!(spo2["valueQuantity"]["value"], 96.5);
    resources.push(oximetry.clone());

    let (status, _, patient) = fhir(&h, "clinician", &format!("/fhir/R4/Patient/{}", h.ada)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patient["name"][0]["text"], "Ada");
    resources.push(patient);
    validate(&resources);
}

#[tokio::test]
async fn fhir_reads_go_through_the_one_access_check_and_errors_are_operation_outcomes() {
    let h = hospital().await;
    ada_vitals(&h, 2).await;
    let search = format!("/fhir/R4/Observation?patient={}&code=8867-4", h.ada);
    let mut outcomes = Vec::new();
    for (who, expected, issue) in [
        ("outsider", StatusCode::FORBIDDEN, "forbidden"),
        ("bob", StatusCode::FORBIDDEN, "forbidden"),
        ("specialist", StatusCode::FORBIDDEN, "forbidden"),
        ("anonymous", StatusCode::UNAUTHORIZED, "login"),
    ] {
        let (status, content_type, body) = fhir(&h, who, &search).await;
        assert_eq!(
            (status, content_type.as_str()),
            (expected, "application/fhir+json"),
            "{who}: {body}"
        );
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert_eq!(body["issue"][0]["code"], issue, "{who}");
        outcomes.push(body);
    }
    let (status, _, own) = fhir(&h, "ada", &search).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(own["entry"].as_array().unwrap().len(), 2);

    // What cannot be honoured is refused, naming the parameter.
    for (query, parameter, issue) in [
        (format!("patient={}", h.ada), "code", "invalid"),
        ("code=8867-4".to_owned(), "patient", "invalid"),
        (
            format!("patient={}&code=8867-4&_sort=value-quantity", h.ada),
            "_sort",
            "not-supported",
        ),
        (
            format!("patient={}&code=8867-4&value-quantity=gt100", h.ada),
            "value-quantity",
            "not-supported",
        ),
        (
            format!("patient={}&code=8867-4&date=ge2026-13", h.ada),
            "date",
            "invalid",
        ),
        (
            format!("patient={}&code=8867-4&_page=nonsense", h.ada),
            "_page",
            "invalid",
        ),
    ] {
        let (status, _, body) =
            fhir(&h, "clinician", &format!("/fhir/R4/Observation?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(
            body["issue"][0]["expression"],
            json!([parameter]),
            "{query}: {body}"
        );
        assert_eq!(body["issue"][0]["code"], issue, "{query}");
        outcomes.push(body);
    }
    // A patient search by someone who may not read her finds nothing; a read says no.
    let (status, _, found) = fhir(&h, "outsider", &format!("/fhir/R4/Patient?_id={}", h.ada)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            found["total"].as_u64(),
            found["entry"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    let (status, _, _) = fhir(&h, "outsider", &format!("/fhir/R4/Patient/{}", h.ada)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, malformed) = fhir(&h, "clinician", "/fhir/R4/Patient?_id=").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed["issue"][0]["expression"], json!(["_id"]));
    outcomes.push(malformed);
    let (status, _, missing) = fhir(&h, "clinician", "/fhir/R4/Patient/not-a-patient").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    outcomes.push(missing);
    outcomes.push(found);
    validate(&outcomes);

    // Every refusal is in the audit trail, as on Wardline's own API.
    let (_, audit) = h
        .as_(
            "admin",
            Method::GET,
            &format!("/api/v1/audit?patient_id={}&limit=100", h.ada),
            None,
        )
        .await;
    let denied = audit
        .as_array()
        .or_else(|| audit["events"].as_array())
        .unwrap()
        .iter()
        .filter(|event| event["outcome"] == "denied")
        .count();
    assert!(denied >= 4, "{audit}");
}

#[tokio::test]
async fn blood_pressure_comes_as_panels_of_systolic_and_diastolic() {
    let h = hospital().await;
    let (status, enrolled) = h
        .as_(
            "admin",
            Method::POST,
            "/api/v1/devices",
            Some(json!({"kind": "blood_pressure_cuff", "model": "Cuff", "serial": "bp-1", "patient_id": h.ada})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{enrolled}");
    let device = enrolled["device"]["id"].as_str().unwrap();
    let secret = enrolled["secret"].as_str().unwrap();
    let at = |seconds: i64| (chrono::Utc::now() + chrono::Duration::seconds(seconds)).to_rfc3339();
    // Two measurements with both values, and a third whose diastolic did not come.
    let (first, second, third) = (at(1), at(2), at(3));
    let readings = json!({"v": 1, "readings": [
        {"seq": 1, "code": "8480-6", "value": 128, "unit": "mm[Hg]", "time": first},
        {"seq": 2, "code": "8462-4", "value": 84, "unit": "mm[Hg]", "time": first},
        {"seq": 3, "code": "8480-6", "value": 17.2, "unit": "kPa", "time": second},
        {"seq": 4, "code": "8462-4", "value": 79, "unit": "mm[Hg]", "time": second},
        {"seq": 5, "code": "8480-6", "value": 131, "unit": "mm[Hg]", "time": third},
    ]});
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/devices/{device}/readings"))
        .header("authorization", format!("Bearer {secret}"))
        .header("content-type", "application/json")
        .body(Body::from(readings.to_string()))
        .unwrap();
    let (status, body) = h.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, _, bundle) = fhir(
        &h,
        "clinician",
        &format!(
            "/fhir/R4/Observation?patient={}&code=http://loinc.org%7C85354-9&category=vital-signs",
            h.ada
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let panels: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| &entry["resource"])
        .collect();
    assert_eq!(panels.len(), 3);
    let pair = |panel: &Value| {
        (
            panel["component"][0]["valueQuantity"]["value"].as_f64(),
            panel["component"][1]["valueQuantity"]["value"].as_f64(),
        )
    };
    assert_eq!(pair(panels[0]), (Some(128.0), Some(84.0)));
    // 17.2 kPa, stored in mm[Hg] (129.0 after conversion), with its diastolic.
    let converted = pair(panels[1]).0.unwrap();
    assert!((converted - 129.01).abs() < 0.01, "{converted}");
    assert_eq!(pair(panels[1]).1, Some(79.0));
    assert_eq!(pair(panels[2]), (Some(131.0), None));
    assert_eq!(
        panels[2]["component"][1]["dataAbsentReason"]["coding"][0]["code"],
        "unknown"
    );
    for panel in &panels {
        assert_eq!(panel["code"]["coding"][0]["code"], "85354-9");
        assert!(
            panel["meta"]["profile"]
                .as_array()
                .unwrap()
                .contains(&json!("http://hl7.org/fhir/StructureDefinition/bp"))
        );
    }
    // Each panel is read again by its id, as the search gave it; not by an outsider.
    for panel in &panels {
        let id = panel["id"].as_str().unwrap();
        assert!(id.contains(".p"), "{id}");
        let (status, _, read) = fhir(&h, "clinician", &format!("/fhir/R4/Observation/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{read}");
        assert_eq!(&read, *panel);
        let (status, _, _) = fhir(&h, "outsider", &format!("/fhir/R4/Observation/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // $lastn gives the newest panels, newest first, by their code or among the vital
    // signs (beside the newest systolic and diastolic readings themselves).
    let lastn = |query: String| {
        let h = &h;
        async move {
            let (status, _, bundle) = fhir(
                h,
                "clinician",
                &format!("/fhir/R4/Observation/$lastn?patient={}&{query}", h.ada),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{bundle}");
            validate(std::slice::from_ref(&bundle));
            bundle["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|entry| entry["resource"].clone())
                .collect::<Vec<Value>>()
        }
    };
    let newest = lastn("code=http://loinc.org%7C85354-9".into()).await;
    assert_eq!(newest.len(), 1);
    assert_eq!(&newest[0], panels[2]);
    let two = lastn("code=85354-9&max=2".into()).await;
    assert_eq!(two, [panels[2].clone(), panels[1].clone()]);
    let vitals = lastn("category=vital-signs".into()).await;
    let codes: Vec<&str> = vitals
        .iter()
        .map(|resource| {
            resource["code"]["coding"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()["code"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(codes, ["8462-4", "8480-6", "85354-9"]);
    assert_eq!(&vitals[2], panels[2]);

    // A panel of a reading that is not there is not there.
    let diastolic_panel = panels[0]["id"].as_str().unwrap().replace(".p", ".p9");
    let (status, _, _) = fhir(
        &h,
        "clinician",
        &format!("/fhir/R4/Observation/{diastolic_panel}"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let mut resources: Vec<Value> = panels.into_iter().cloned().collect();
    resources.push(bundle);
    validate(&resources);
}

#[tokio::test]
async fn lastn_gives_the_newest_of_each_code() {
    let h = hospital().await;
    ada_vitals(&h, 3).await;
    let (status, _, bundle) = fhir(
        &h,
        "nurse",
        &format!(
            "/fhir/R4/Observation/$lastn?patient=Patient/{}&category=vital-signs",
            h.ada
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let newest: Vec<(String, f64)> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let resource = &entry["resource"];
            let codes = resource["code"]["coding"].as_array().unwrap();
            (
                codes.last().unwrap()["code"].as_str().unwrap().to_owned(),
                resource["valueQuantity"]["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        newest,
        [("59408-5".to_owned(), 96.5), ("8867-4".to_owned(), 62.0)]
    );
    let (_, _, heart) = fhir(
        &h,
        "ada",
        &format!(
            "/fhir/R4/Observation/$lastn?patient={}&code=8867-4&max=1",
            h.ada
        ),
    )
    .await;
    assert_eq!(heart["entry"].as_array().unwrap().len(), 1);
    let (_, _, laboratory) = fhir(
        &h,
        "ada",
        &format!(
            "/fhir/R4/Observation/$lastn?patient={}&category=laboratory",
            h.ada
        ),
    )
    .await;
    assert_eq!(laboratory["total"], 0);
    // The newest two of each code, newest first.
    let (status, _, two) = fhir(
        &h,
        "clinician",
        &format!("/fhir/R4/Observation/$lastn?patient={}&max=2", h.ada),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{two}");
    let values: Vec<f64> = two["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            entry["resource"]["valueQuantity"]["value"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(values, [96.5, 62.0, 61.0]);
    let (status, _, refused) = fhir(
        &h,
        "clinician",
        &format!("/fhir/R4/Observation/$lastn?patient={}&max=101", h.ada),
    )
    .await;
    assert_eq!(
        (status, refused["issue"][0]["expression"][0].as_str()),
        (StatusCode::BAD_REQUEST, Some("max"))
    );
    let (status, _, _) = fhir(
        &h,
        "outsider",
        &format!("/fhir/R4/Observation/$lastn?patient={}", h.ada),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    validate(&[bundle, heart, laboratory, two, refused]);
}

#[tokio::test]
async fn news2_results_are_observations_that_name_the_readings_they_scored() {
    let h = hospital().await;
    let first = ada_vitals(&h, 5).await;
    let (_, _, rates) = fhir(
        &h,
        "clinician",
        &format!(
            "/fhir/R4/Observation?patient={}&code=http://loinc.org%7C8867-4",
            h.ada
        ),
    )
    .await;
    let scored: Vec<String> = rates["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["resource"]["id"].as_str().unwrap().to_owned())
        .collect();
    // Three results, a minute apart, each scoring the heart rate of its minute.
    let mut news2 = Vec::new();
    for minute in 0..3_i64 {
        let (device, derived, seq) =
            wardline_fhir::reading_of_id(&scored[minute as usize]).unwrap();
        news2.push(wardline_store::News2Record {
            patient_id: h.ada,
            time: first + chrono::Duration::minutes(minute),
            complete: false,
            total: u8::try_from(minute).unwrap() + 1,
            risk: "low".into(),
            any_parameter_3: false,
            missing: vec!["consciousness".into(), "air_or_oxygen".into()],
            sub_scores: json!({"respiration_rate": null, "spo2": 0, "air_or_oxygen": null,
                "systolic_bp": null, "pulse": minute, "consciousness": null, "temperature": null}),
            inputs: json!({"pulse": {"loinc": "8867-4", "value": 60 + minute, "unit": "/min",
                "effective": first + chrono::Duration::minutes(minute), "derived": derived,
                "device": device, "seq": seq}}),
            computed: None,
        });
    }
    h.service
        .store()
        .record_analysis(wardline_store::AnalysisResults {
            news2,
            recorded: first,
            ..Default::default()
        })
        .await
        .unwrap();

    let search = format!(
        "/fhir/R4/Observation?patient={}&code=http://snomed.info/sct%7C1104051000000101&_count=2",
        h.ada
    );
    let (results, bundles) = all_pages(&h, "clinician", &search).await;
    assert_eq!(bundles.len(), 2, "three results, two a page");
    assert_eq!(results.len(), 3);
    validate(&results);
    validate(&bundles);
    for (minute, result) in results.iter().enumerate() {
        assert_eq!(
            result["code"]["coding"][0]["system"],
            "http://snomed.info/sct"
        );
        assert_eq!(result["category"][0]["coding"][0]["code"], "survey");
        assert_eq!(result["valueQuantity"]["value"], minute + 1);
        assert_eq!(
            result["valueQuantity"]["comparator"], ">=",
            "partial: a least total"
        );
        assert_eq!(
            result["derivedFrom"][0]["reference"],
            format!("Observation/{}", scored[minute])
        );
        // What it names is there to read.
        let (status, _, reading) = fhir(
            &h,
            "clinician",
            &format!(
                "/fhir/R4/{}",
                result["derivedFrom"][0]["reference"].as_str().unwrap()
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{reading}");
        assert_eq!(reading["valueQuantity"]["value"], 60 + minute);
    }
    // Read by id, and by category; not by those who may not read Ada's record.
    let id = results[1]["id"].as_str().unwrap();
    let (status, _, read) = fhir(&h, "clinician", &format!("/fhir/R4/Observation/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read, results[1]);
    let (status, _, survey) = fhir(
        &h,
        "clinician",
        &format!("/fhir/R4/Observation?patient={}&category=survey", h.ada),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{survey}");
    assert_eq!(survey["entry"].as_array().unwrap().len(), 3);
    let (status, _, refused) = fhir(&h, "outsider", &format!("/fhir/R4/Observation/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{refused}");
    // $lastn: the newest results, newest first, by their code, among every category
    // (after the LOINC codes), or as the survey category.
    let lastn = |query: &str| format!("/fhir/R4/Observation/$lastn?patient={}{query}", h.ada);
    let (status, _, newest) = fhir(
        &h,
        "clinician",
        &lastn("&code=http://snomed.info/sct%7C1104051000000101&max=2"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{newest}");
    validate(std::slice::from_ref(&newest));
    assert_eq!(newest["entry"][0]["resource"], results[2]);
    assert_eq!(newest["entry"][1]["resource"], results[1]);
    assert!(newest["entry"].get(2).is_none());
    let (_, _, everything) = fhir(&h, "clinician", &lastn("")).await;
    let entries = everything["entry"].as_array().unwrap();
    assert_eq!(entries.last().unwrap()["resource"], results[2]);
    let (_, _, survey) = fhir(&h, "clinician", &lastn("&category=survey")).await;
    assert_eq!(survey["entry"].as_array().unwrap().len(), 1);
    let (status, _, refused) = fhir(&h, "outsider", &search).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    // A search NEWS2 cannot serve is refused naming the parameter.
    for (extra, parameter) in [("&_sort=-date", "_sort"), ("&_summary=count", "_summary")] {
        let (status, _, outcome) = fhir(&h, "clinician", &format!("{search}{extra}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{outcome}");
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .unwrap_or_default()
                .contains(parameter)
                || outcome["issue"][0]["expression"][0] == parameter,
            "{outcome}"
        );
    }
}
