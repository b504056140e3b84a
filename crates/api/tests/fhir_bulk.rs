//! FHIR Bulk Data export over the API: the kick-off, the status URL polled until the
//! manifest, the NDJSON files (every line through both independent validators), `_since`,
//! who may export whose records, cancelling, and the limits. The worker that writes an
//! export is the service's own, called here where the server would run it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wardline_service::ServiceSettings;
use wardline_service::bulk_export::BulkExportSettings;

use crate::common::{Hospital, hospital_with};
use crate::fhir::{ada_device, ada_vitals, validate};

/// Lines per file: small, so that a patient's readings fill several.
const LINES_PER_FILE: u64 = 25;

fn settings(folder: &std::path::Path) -> ServiceSettings {
    ServiceSettings {
        bulk_exports: BulkExportSettings {
            directory: Some(folder.to_path_buf()),
            retention: chrono::Duration::hours(1),
            lines_per_file: LINES_PER_FILE,
            // Small pages, so that an export pages through leads recorded together.
            ecg_chunks_per_page: 3,
        },
        ..ServiceSettings::default()
    }
}

/// A request as `who` (a key of `tokens`): status, headers, body bytes.
async fn request(
    h: &Hospital,
    who: &str,
    method: Method,
    path: &str,
    prefer: bool,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(token) = h.tokens.get(who) {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    if prefer {
        builder = builder
            .header("prefer", "respond-async")
            .header("accept", "application/fhir+json");
    }
    let response = h
        .app
        .clone()
        .oneshot(builder.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes.to_vec())
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

/// The path of a URL the server wrote with its base.
fn local(url: &str) -> String {
    url[url.find("/fhir/R4").unwrap()..].to_owned()
}

/// Kicks off an export as `who`: its status path.
async fn kick_off(h: &Hospital, who: &str, path: &str) -> String {
    let (status, headers, body) = request(h, who, Method::GET, path, true).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{}", json_of(&body));
    assert_eq!(json_of(&body)["resourceType"], "OperationOutcome");
    local(headers["content-location"].to_str().unwrap())
}

/// Runs the waiting exports, as a worker does, and reads the manifest.
async fn finished(h: &Hospital, who: &str, status_path: &str) -> (Value, HeaderMap) {
    while h.service.run_one_bulk_export().await.unwrap() {}
    let (status, headers, body) = request(h, who, Method::GET, status_path, false).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    (json_of(&body), headers)
}

/// Every file of a manifest, as `who`: the resources of each type, in order.
async fn download(h: &Hospital, who: &str, manifest: &Value) -> Vec<Value> {
    let mut resources = Vec::new();
    for output in manifest["output"].as_array().unwrap() {
        let (status, headers, body) = request(
            h,
            who,
            Method::GET,
            &local(output["url"].as_str().unwrap()),
            false,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(headers["content-type"], "application/fhir+ndjson");
        let text = String::from_utf8(body).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len() as u64, output["count"].as_u64().unwrap());
        assert!(text.ends_with('\n'), "every line ends");
        for line in &lines {
            assert_eq!(line["resourceType"], output["type"], "{line}");
        }
        resources.extend(lines);
    }
    resources
}

fn of_type<'a>(resources: &'a [Value], resource_type: &str) -> Vec<&'a Value> {
    resources
        .iter()
        .filter(|resource| resource["resourceType"] == resource_type)
        .collect()
}

#[tokio::test]
async fn a_care_team_exports_its_patients_and_every_line_validates() {
    let folder = tempfile::tempdir().unwrap();
    let h = hospital_with(settings(folder.path())).await;
    // Ada: 60 heart rates and an SpO2, a monitoring plan, and an alarm.
    ada_vitals(&h, 60).await;
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
    let now = chrono::Utc::now();
    let (cgm, secret) = h.ada_cgm_since(now - chrono::Duration::minutes(10)).await;
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/api/v1/devices/{cgm}/readings"),
            Some(&secret),
            Some(
                json!({"v": 1, "seq": 1, "code": "99504-3", "value": 45, "unit": "mg/dL",
                        "time": now - chrono::Duration::minutes(2)}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut alarms = Value::Null;
    for _ in 0..100 {
        let (_, listed) = h
            .as_(
                "nurse",
                Method::GET,
                &format!("/api/v1/patients/{}/alarms", h.ada),
                None,
            )
            .await;
        alarms = listed["alarms"].clone();
        if alarms.as_array().is_some_and(|listed| !listed.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        !alarms.as_array().unwrap().is_empty(),
        "the low raised an alarm"
    );
    // Bob is on no team of the clinician's: his readings must not be in her export.
    let (status, enrolled) = h
        .as_(
            "admin",
            Method::POST,
            "/api/v1/devices",
            Some(json!({"kind": "thermometer", "model": "T", "serial": "bob-1", "patient_id": h.bob})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{enrolled}");
    let (status, body) = h
        .call(
            Method::POST,
            &format!(
                "/api/v1/devices/{}/readings",
                enrolled["device"]["id"].as_str().unwrap()
            ),
            enrolled["secret"].as_str(),
            Some(
                json!({"v": 1, "seq": 1, "code": "8310-5", "value": 37.2, "unit": "Cel",
                        "time": chrono::Utc::now()}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The CapabilityStatement names the three kick-offs.
    let (_, _, metadata) = request(&h, "anonymous", Method::GET, "/fhir/R4/metadata", false).await;
    let metadata = json_of(&metadata);
    let operation = |value: &Value| {
        value["operation"][0]["definition"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(
        operation(&metadata["rest"][0]).as_deref(),
        Some("http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export")
    );
    let resources = metadata["rest"][0]["resource"].as_array().unwrap();
    let of = |name: &str| {
        resources
            .iter()
            .find(|resource| resource["type"] == name)
            .unwrap()
    };
    assert!(
        operation(of("Patient"))
            .unwrap()
            .ends_with("/patient-export")
    );
    assert!(operation(of("Group")).unwrap().ends_with("/group-export"));

    // An export is asynchronous, and says so when not asked that way.
    let group = format!("/fhir/R4/Group/{}/$export", h.team);
    let (status, _, body) = request(&h, "clinician", Method::GET, &group, false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&body)["issue"][0]["expression"][0], "Prefer");

    let status_path = kick_off(&h, "clinician", &group).await;
    // Before a worker has it: under way, with a progress and when to ask again.
    let (status, headers, _) = request(&h, "clinician", Method::GET, &status_path, false).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers["x-progress"], "waiting for a worker");
    assert_eq!(headers["retry-after"], "2");
    // Someone else, even of the same team, is not told it exists.
    let (status, _, _) = request(&h, "nurse", Method::GET, &status_path, false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (manifest, headers) = finished(&h, "clinician", &status_path).await;
    assert!(headers.contains_key("expires"));
    assert_eq!(manifest["requiresAccessToken"], true);
    assert!(manifest["request"].as_str().unwrap().ends_with(&group));
    let transaction_time =
        chrono::DateTime::parse_from_rfc3339(manifest["transactionTime"].as_str().unwrap())
            .unwrap();
    assert!(transaction_time <= chrono::Utc::now());
    let types: Vec<&str> = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|output| output["type"].as_str().unwrap())
        .collect();
    // 61 vitals and the glucose fill three files of 25.
    assert_eq!(
        types,
        [
            "Patient",
            "Device",
            "Observation",
            "Observation",
            "Observation",
            "CarePlan",
            "DetectedIssue"
        ]
    );
    let resources = download(&h, "clinician", &manifest).await;
    validate(&resources);
    let patients = of_type(&resources, "Patient");
    assert_eq!(patients.len(), 1);
    assert_eq!(patients[0]["id"], h.ada.to_string());
    assert_eq!(
        of_type(&resources, "Device").len(),
        2,
        "the oximeter and the CGM"
    );
    let observations = of_type(&resources, "Observation");
    assert_eq!(observations.len(), 62);
    let ada = format!("Patient/{}", h.ada);
    assert!(
        observations
            .iter()
            .all(|observation| observation["subject"]["reference"] == ada.as_str()),
        "only Ada's readings"
    );
    let mut ids: Vec<&str> = observations
        .iter()
        .map(|observation| observation["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 62, "each reading once");
    let plans = of_type(&resources, "CarePlan");
    assert_eq!(plans[0]["title"], "Diabetes monitoring plan");
    let issues = of_type(&resources, "DetectedIssue");
    assert_eq!(issues.len(), alarms.as_array().unwrap().len());
    assert_eq!(issues[0]["patient"]["reference"], ada.as_str());

    // Another person may not fetch the files; and once the clinician has left the care
    // team, neither may she.
    let first_file = local(manifest["output"][0]["url"].as_str().unwrap());
    let (status, _, _) = request(&h, "nurse", Method::GET, &first_file, false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, me) = h.as_("clinician", Method::GET, "/api/v1/me", None).await;
    let clinician: wardline_domain::UserId = me["id"].as_str().unwrap().parse().unwrap();
    h.service
        .remove_care_team_member(
            &wardline_service::Actor::CommandLine,
            h.team.parse().unwrap(),
            clinician,
        )
        .await
        .unwrap();
    let (status, _, body) = request(&h, "clinician", Method::GET, &first_file, false).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{}", json_of(&body));
    let (_, audit) = h
        .as_(
            "admin",
            Method::GET,
            &format!("/api/v1/audit?patient_id={}&limit=200", h.ada),
            None,
        )
        .await;
    let actions: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["action"].as_str().unwrap(),
                entry["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(actions.contains(&("fhir.export", "allowed")), "{actions:?}");
    assert!(
        actions.contains(&("fhir.export.download", "allowed")),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("fhir.export.download", "denied")),
        "{actions:?}"
    );
}

#[tokio::test]
async fn since_gives_only_what_arrived_after_and_records_stay_with_their_readers() {
    let folder = tempfile::tempdir().unwrap();
    let h = hospital_with(settings(folder.path())).await;
    ada_vitals(&h, 10).await;
    let first = kick_off(
        &h,
        "clinician",
        "/fhir/R4/Patient/$export?_type=Observation",
    )
    .await;
    let (manifest, _) = finished(&h, "clinician", &first).await;
    assert_eq!(download(&h, "clinician", &manifest).await.len(), 11);
    let since = manifest["transactionTime"].as_str().unwrap().to_owned();

    // Three more readings arrive after that export was asked for.
    let (cgm, secret) = h.ada_cgm().await;
    let now = chrono::Utc::now();
    for seq in 0..3_i64 {
        let (status, body) = h
            .call(
                Method::POST,
                &format!("/api/v1/devices/{cgm}/readings"),
                Some(&secret),
                Some(
                    json!({"v": 1, "seq": seq, "code": "99504-3", "value": 110 + seq,
                            "unit": "mg/dL", "time": now + chrono::Duration::milliseconds(seq)}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("_type", "Observation,Patient,Device")
        .append_pair("_since", &since)
        .finish();
    let second = kick_off(&h, "clinician", &format!("/fhir/R4/$export?{query}")).await;
    let (manifest, _) = finished(&h, "clinician", &second).await;
    let resources = download(&h, "clinician", &manifest).await;
    validate(&resources);
    let observations = of_type(&resources, "Observation");
    let values: Vec<f64> = observations
        .iter()
        .map(|observation| observation["valueQuantity"]["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, [110.0, 111.0, 112.0], "only what arrived since");
    assert!(
        of_type(&resources, "Patient").is_empty(),
        "Ada was there before"
    );
    let devices = of_type(&resources, "Device");
    assert_eq!(devices.len(), 1, "only the CGM enrolled since: {devices:?}");

    // Ada exports her own record, and only hers.
    let own = kick_off(&h, "ada", "/fhir/R4/Patient/$export?_type=Patient").await;
    let (manifest, _) = finished(&h, "ada", &own).await;
    let resources = download(&h, "ada", &manifest).await;
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0]["id"], h.ada.to_string());

    // A clinician of another team cannot export Ada's team; one on no team exports
    // nobody; a specialist reads shared records by search, not by export.
    let group = format!("/fhir/R4/Group/{}/$export", h.team);
    let (status, _, _) = request(&h, "outsider", Method::GET, &group, true).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = request(
        &h,
        "clinician",
        Method::GET,
        &format!(
            "/fhir/R4/Group/{}/$export",
            wardline_domain::CareTeamId::random()
        ),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let nobody = kick_off(&h, "outsider", "/fhir/R4/Patient/$export").await;
    let (manifest, _) = finished(&h, "outsider", &nobody).await;
    assert_eq!(manifest["output"], json!([]));
    let (status, _, body) = request(
        &h,
        "specialist",
        Method::GET,
        "/fhir/R4/Patient/$export",
        true,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{}", json_of(&body));
    let (status, _, _) = request(&h, "anonymous", Method::GET, "/fhir/R4/$export", true).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // What cannot be honoured is refused by name.
    for (query, parameter) in [
        ("_type=Observation,Medication", "_type"),
        ("_typeFilter=Observation%3Fcode%3D8867-4", "_typeFilter"),
        ("_since=yesterday", "_since"),
        ("_outputFormat=text/csv", "_outputFormat"),
    ] {
        let (status, _, body) = request(
            &h,
            "clinician",
            Method::GET,
            &format!("/fhir/R4/Patient/$export?{query}"),
            true,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(
            json_of(&body)["issue"][0]["expression"][0],
            parameter,
            "{query}"
        );
    }
}

#[tokio::test]
async fn exports_are_limited_cancelled_and_their_files_removed() {
    let folder = tempfile::tempdir().unwrap();
    let h = hospital_with(settings(folder.path())).await;
    ada_vitals(&h, 5).await;
    let mut under_way = Vec::new();
    for _ in 0..wardline_service::bulk_export::MAX_OPEN_EXPORTS {
        under_way.push(kick_off(&h, "nurse", "/fhir/R4/Patient/$export").await);
    }
    let (status, headers, body) =
        request(&h, "nurse", Method::GET, "/fhir/R4/Patient/$export", true).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{}", json_of(&body));
    assert!(headers.contains_key("retry-after"));
    // Others are not held up by the nurse's exports.
    kick_off(&h, "clinician", "/fhir/R4/Patient/$export?_type=Patient").await;

    // Cancelled before a worker took it: gone, and never written.
    let (status, _, _) = request(&h, "nurse", Method::DELETE, &under_way[0], false).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _, _) = request(&h, "nurse", Method::GET, &under_way[0], false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = request(&h, "nurse", Method::DELETE, &under_way[0], false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Only its requester cancels an export.
    let (status, _, _) = request(&h, "clinician", Method::DELETE, &under_way[1], false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Finished, then deleted: its files leave the disk.
    let (manifest, _) = finished(&h, "nurse", &under_way[1]).await;
    let id = under_way[1].rsplit('/').next().unwrap().to_owned();
    let on_disk = folder.path().join(&id);
    assert!(on_disk.is_dir());
    assert!(!manifest["output"].as_array().unwrap().is_empty());
    let (status, _, _) = request(&h, "nurse", Method::DELETE, &under_way[1], false).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        !on_disk.try_exists().unwrap(),
        "a deleted export's files are removed"
    );
    let (status, _, _) = request(
        &h,
        "nurse",
        Method::GET,
        &local(manifest["output"][0]["url"].as_str().unwrap()),
        false,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A cancelled export's slot is free again.
    kick_off(&h, "nurse", "/fhir/R4/Patient/$export").await;
    // An export id that is not one, and a file that is not in the manifest, are not found.
    let (status, _, _) = request(
        &h,
        "nurse",
        Method::GET,
        "/fhir/R4/$export-status/not-an-id",
        false,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = request(
        &h,
        "nurse",
        Method::GET,
        &format!(
            "/fhir/R4/$export-file/{}/..%2Fwardline.db",
            under_way[2].rsplit('/').next().unwrap()
        ),
        false,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_ecg_is_exported_chunk_by_chunk_with_every_sample() {
    let folder = tempfile::tempdir().unwrap();
    let h = hospital_with(settings(folder.path())).await;
    // Two ECG devices on Ada: the first records leads I and II and respiration, the
    // second lead II too, every chunk of them beginning at the same instants, so that
    // the export's pages of three chunks end among chunks of one instant.
    let first = chrono::Utc::now() - chrono::Duration::minutes(5);
    let mut sent: std::collections::HashMap<String, Vec<i64>> = Default::default();
    for (device_index, signals) in [
        (0, vec!["ecg-lead-i", "ecg-lead-ii", "respiration"]),
        (1, vec!["ecg-lead-ii"]),
    ] {
        let (device, secret) = ada_device(&h, "ecg", first).await;
        let mut seq = 0;
        for chunk in 0..4_i64 {
            let start = first + chrono::Duration::seconds(2 * chunk);
            for signal in &signals {
                let samples: Vec<i64> = (0..500)
                    .map(|i| 1024 + ((i * 7 + chunk * 13 + device_index * 5) % 400) - 200)
                    .collect();
                seq += 1;
                let (status, body) = h
                    .call(
                        Method::POST,
                        &format!("/api/v1/devices/{device}/readings"),
                        Some(&secret),
                        Some(json!({"v": 1, "waveform": {"seq": seq, "signal": signal, "rate_hz": 250,
                            "start": start, "gain": 200, "baseline": 1024, "samples": samples}})),
                    )
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
                sent.insert(format!("{device}/{signal}/{chunk}"), samples);
            }
        }
    }
    let status_path = kick_off(
        &h,
        "clinician",
        "/fhir/R4/Patient/$export?_type=Observation",
    )
    .await;
    let (manifest, _) = finished(&h, "clinician", &status_path).await;
    let resources = download(&h, "clinician", &manifest).await;
    validate(&resources);
    let ecg: Vec<&Value> = resources
        .iter()
        .filter(|resource| resource["code"]["coding"][0]["code"] == "131328")
        .collect();
    // Four chunks of lead I, eight of lead II (two devices); respiration is no ECG lead.
    assert_eq!(ecg.len(), 12, "every lead chunk once");
    let mut ids: Vec<&str> = ecg.iter().map(|o| o["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 12, "none twice");
    for observation in &ecg {
        let sampled = &observation["component"][0]["valueSampledData"];
        let data: Vec<i64> = sampled["data"]
            .as_str()
            .unwrap()
            .split(' ')
            .map(|sample| sample.parse().unwrap())
            .collect();
        // Stored and exported exactly: the samples counted from the ADC's zero.
        let restored: Vec<i64> = data.iter().map(|sample| sample + 1024).collect();
        assert!(
            sent.values().any(|samples| *samples == restored),
            "the samples of {} are not one chunk sent",
            observation["id"]
        );
    }
}
