//! FHIR writes over the API: the HL7 R4 examples that are measurements posted by the
//! devices that measured them and read back as they were sent (units converted, the
//! original kept), those that are not measurements refused with the element named; a
//! Personal Health Device gateway's transaction stored once however often it is sent,
//! and all or nothing; a batch entry by entry; and only devices, for their own patient.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::common::{Hospital, hospital};
use crate::fhir::validate;

fn example(name: &str) -> Value {
    let folder = std::env::var_os("WARDLINE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
        .join("fhir");
    let path = folder.join(name);
    let text = std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "{} is missing or unreadable ({error}); set WARDLINE_SHARED_DATA to the folder holding fhir/",
            path.display()
        )
    });
    serde_json::from_slice(&text).unwrap()
}

/// A device enrolled by the admin with the id it is known by, assigned to `patient` for
/// the last day: its secret.
async fn enrol(h: &Hospital, kind: &str, id: &str, patient: wardline_domain::PatientId) -> String {
    let (status, enrolled) = h
        .as_(
            "admin",
            Method::POST,
            "/api/v1/devices",
            Some(json!({"kind": kind, "model": "PHD", "serial": format!("SN-{id}"), "device_id": id})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{enrolled}");
    let (status, body) = h
        .as_(
            "admin",
            Method::POST,
            &format!("/api/v1/devices/{id}/assignments"),
            Some(json!({"patient_id": patient, "from": Utc::now() - Duration::days(1)})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    enrolled["secret"].as_str().unwrap().to_owned()
}

/// POST FHIR JSON as the device `(id, secret)`: status, Location and body.
async fn post(
    h: &Hospital,
    path: &str,
    device: Option<(&str, &str)>,
    body: &Value,
) -> (StatusCode, Option<String>, Value) {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", "application/fhir+json");
    if let Some((id, secret)) = device {
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        request = request.header("authorization", format!("Basic {credentials}"));
    }
    let response = tower::ServiceExt::oneshot(
        h.app.clone(),
        request.body(Body::from(body.to_string())).unwrap(),
    )
    .await
    .unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        location,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The example as the device sends it: for Ada, measured at `at` (the examples were
/// measured in 1999–2016, before any device of Ada's was hers).
fn for_ada(h: &Hospital, name: &str, at: DateTime<Utc>) -> Value {
    let mut resource = example(name);
    let members = resource.as_object_mut().unwrap();
    members.remove("effectivePeriod");
    members.insert("effectiveDateTime".into(), json!(at.to_rfc3339()));
    members.insert(
        "subject".into(),
        json!({"reference": format!("Patient/{}", h.ada)}),
    );
    resource
}

/// Ada's readings of `code` as FHIR Observations, read by her clinician.
async fn read_back(h: &Hospital, code: &str) -> Vec<Value> {
    let (status, bundle) = h
        .as_(
            "clinician",
            Method::GET,
            &format!(
                "/fhir/R4/Observation?patient=Patient/{}&code=http://loinc.org|{code}",
                h.ada
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    validate(std::slice::from_ref(&bundle));
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

/// An example's file, the device that sends it and its secret, the LOINC code it is read
/// back by, the value and UCUM unit read back, and the value and unit as sent when they
/// were converted.
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    f64,
    &'a str,
    Option<(f64, &'a str)>,
);

#[tokio::test]
async fn the_r4_examples_that_are_measurements_are_stored_and_read_back_as_sent() {
    let h = hospital().await;
    let monitor = enrol(&h, "vital_signs_monitor", "monitor-phd-1", h.ada).await;
    let scale = enrol(&h, "scale", "scale-phd-1", h.ada).await;
    let meter = enrol(&h, "glucose_meter", "meter-phd-1", h.ada).await;
    let at = (Utc::now() - Duration::minutes(30))
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
        .with_timezone(&Utc);
    let at = DateTime::<Utc>::from_timestamp(at.timestamp(), 0).unwrap();
    let cases: Vec<Case> = vec![
        (
            "observation-example-heart-rate.json",
            "monitor-phd-1",
            &monitor,
            "8867-4",
            44.0,
            "/min",
            None,
        ),
        (
            "observation-example-satO2.json",
            "monitor-phd-1",
            &monitor,
            "59408-5",
            95.0,
            "%",
            None,
        ),
        (
            "observation-example-body-temperature.json",
            "monitor-phd-1",
            &monitor,
            "8310-5",
            36.5,
            "Cel",
            None,
        ),
        (
            "observation-example-respiratory-rate.json",
            "monitor-phd-1",
            &monitor,
            "9279-1",
            26.0,
            "/min",
            None,
        ),
        (
            "observation-example-mbp.json",
            "monitor-phd-1",
            &monitor,
            "8478-0",
            80.0,
            "mm[Hg]",
            None,
        ),
        (
            "observation-example-bmi.json",
            "scale-phd-1",
            &scale,
            "39156-5",
            16.2,
            "kg/m2",
            None,
        ),
        (
            "observation-example-body-height.json",
            "scale-phd-1",
            &scale,
            "8302-2",
            169.926,
            "cm",
            Some((66.899_999_999_999_99, "[in_i]")),
        ),
        (
            "observation-example.json",
            "scale-phd-1",
            &scale,
            "29463-7",
            83.914_588_45,
            "kg",
            Some((185.0, "[lb_av]")),
        ),
        (
            "observation-example-f001-glucose.json",
            "meter-phd-1",
            &meter,
            "2339-0",
            113.498_28,
            "mg/dL",
            Some((6.3, "mmol/L")),
        ),
    ];
    for (file, device, secret, loinc, value, unit, original) in &cases {
        let resource = for_ada(&h, file, at);
        let (status, location, body) = post(
            &h,
            "/fhir/R4/Observation",
            Some((device, secret)),
            &resource,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{file}: {body}");
        let location = location.expect("Location");
        assert!(location.contains("/fhir/R4/Observation/"), "{location}");
        // Sent again after a lost answer: stored before, nothing twice.
        let (status, _, body) = post(
            &h,
            "/fhir/R4/Observation",
            Some((device, secret)),
            &resource,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{file}: {body}");

        let read = read_back(&h, loinc).await;
        assert_eq!(
            read.len(),
            1,
            "{file}: one reading, however often sent: {read:?}"
        );
        let observation = &read[0];
        assert!(
            location.contains(observation["id"].as_str().unwrap()),
            "{location}"
        );
        let quantity = &observation["valueQuantity"];
        assert!(
            (quantity["value"].as_f64().unwrap() - value).abs() < 1e-3,
            "{file}: {quantity}"
        );
        assert_eq!(quantity["code"], *unit, "{file}");
        assert_eq!(
            DateTime::parse_from_rfc3339(observation["effectiveDateTime"].as_str().unwrap())
                .unwrap(),
            at,
            "{file}"
        );
        assert_eq!(
            observation["device"]["identifier"]["value"], *device,
            "{file}"
        );
        let kept = &quantity["extension"][0]["valueQuantity"];
        match original {
            Some((value, unit)) => {
                assert_eq!(kept["value"].as_f64(), Some(*value), "{file}: {quantity}");
                assert_eq!(kept["code"], *unit, "{file}");
            }
            None => assert!(kept.is_null(), "{file}: {quantity}"),
        }
    }

    // The blood pressure panel comes back as the panel, its components as sent.
    let panel = for_ada(&h, "observation-example-bloodpressure.json", at);
    let (status, _, body) = post(
        &h,
        "/fhir/R4/Observation",
        Some(("monitor-phd-1", &monitor)),
        &panel,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let read = read_back(&h, "85354-9").await;
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0]["component"][0]["valueQuantity"]["value"], 107);
    assert_eq!(read[0]["component"][1]["valueQuantity"]["value"], 60);

    // What is not a measurement is refused, naming the element.
    for (file, status, expression) in [
        (
            "observation-example-bloodpressure-cancel.json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "Observation.status",
        ),
        (
            "observation-example-vitals-panel.json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "Observation.hasMember",
        ),
    ] {
        let resource = for_ada(&h, file, at - Duration::minutes(1));
        let (got, _, body) = post(
            &h,
            "/fhir/R4/Observation",
            Some(("monitor-phd-1", &monitor)),
            &resource,
        )
        .await;
        assert_eq!(got, status, "{file}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome", "{file}");
        assert_eq!(
            body["issue"][0]["expression"][0], expression,
            "{file}: {body}"
        );
        validate(std::slice::from_ref(&body));
    }
    // The ECG example: each lead stored as a waveform chunk and read back with the
    // samples, origin and factor as sent.
    let ecg = for_ada(&h, "observation-example-sample-data.json", at);
    let (status, location, body) = post(
        &h,
        "/fhir/R4/Observation",
        Some(("monitor-phd-1", &monitor)),
        &ecg,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let location = location.unwrap();
    let (status, _, again) = post(
        &h,
        "/fhir/R4/Observation",
        Some(("monitor-phd-1", &monitor)),
        &ecg,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a repeat stores nothing twice: {again}"
    );
    let window = format!(
        "date=ge{}&date=le{}",
        (at - Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (at + Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let (status, bundle) = h
        .as_(
            "clinician",
            Method::GET,
            &format!(
                "/fhir/R4/Observation?patient=Patient/{}&code=urn:oid:2.16.840.1.113883.6.24%7C131328&{window}",
                h.ada
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    validate(std::slice::from_ref(&bundle));
    let leads = bundle["entry"].as_array().unwrap();
    assert_eq!(leads.len(), 3, "one Observation per lead: {bundle}");
    assert!(
        location.contains(leads[0]["resource"]["id"].as_str().unwrap()),
        "{location}"
    );
    for (entry, sent) in leads.iter().zip(ecg["component"].as_array().unwrap()) {
        let resource = &entry["resource"];
        let component = &resource["component"][0];
        assert_eq!(component["code"]["coding"][0], sent["code"]["coding"][0]);
        let (back, sent) = (&component["valueSampledData"], &sent["valueSampledData"]);
        assert_eq!(back["data"], sent["data"], "identical samples");
        assert_eq!(back["factor"], 1.612);
        assert_eq!(back["origin"]["value"], sent["origin"]["value"]);
        assert_eq!(back["origin"]["code"], "mV");
        assert_eq!(back["period"], 10.0);
        let start = resource["effectivePeriod"]["start"].as_str().unwrap();
        assert_eq!(DateTime::parse_from_rfc3339(start).unwrap(), at);
    }
    // The JSON API gives the same chunk with its origin, for the live strip.
    let (status, chunks) = h
        .as_(
            "clinician",
            Method::GET,
            &format!(
                "/api/v1/patients/{}/waveforms?from={}&to={}",
                h.ada,
                (at - Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                (at + Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{chunks}");
    let chunks = chunks.as_array().unwrap();
    assert_eq!(chunks.len(), 3, "{chunks:?}");
    assert_eq!(chunks[0]["origin"], 2048.0);
    assert_eq!(chunks[0]["samples"][0], 2041);
    assert!((chunks[0]["gain"].as_f64().unwrap() - 1.0 / 1.612).abs() < 1e-12);

    // An example as published: its day is not a time to store a reading at.
    let (status, _, body) = post(
        &h,
        "/fhir/R4/Observation",
        Some(("monitor-phd-1", &monitor)),
        &example("observation-example-heart-rate.json"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["issue"][0]["expression"][0],
        "Observation.effectiveDateTime"
    );
}

const EUI64: &str = "FE-ED-AB-EE-DE-AD-BE-EF";

/// A PHD gateway's upload: the oximeter by EUI-64 (conditional create), Ada, and two
/// readings at `at` and a second later.
fn phd_transaction(h: &Hospital, at: DateTime<Utc>, pulse: f64) -> Value {
    let observation = |code: &str, value: f64, unit: &str, at: DateTime<Utc>| {
        json!({"resource": {"resourceType": "Observation", "status": "final",
                  "identifier": [{"system": "urn:ietf:rfc:3986", "value": format!("urn:phd:{EUI64}:{code}:{}", at.timestamp())}],
                  "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                  "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                  "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-0000000000a2"},
                  "device": {"reference": "urn:uuid:00000000-0000-4000-8000-0000000000a1"},
                  "effectiveDateTime": at.to_rfc3339(),
                  "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": unit}},
               "request": {"method": "POST", "url": "Observation"}})
    };
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-0000000000a1",
         "resource": {"resourceType": "Device",
                      "identifier": [{"system": "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680", "value": EUI64}]},
         "request": {"method": "POST", "url": "Device",
                     "ifNoneExist": format!("identifier=urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680|{EUI64}")}},
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-0000000000a2",
         "resource": {"resourceType": "Patient", "id": h.ada.to_string()},
         "request": {"method": "PUT", "url": format!("Patient/{}", h.ada)}},
        observation("8867-4", pulse, "/min", at),
        observation("59408-5", 97.0, "%", at + Duration::seconds(1)),
    ]})
}

/// A PHD gateway's upload carries, beside the measurements, a coincident time stamp and
/// its devices' battery levels (the PHD IG's supplementary Observations). They do not
/// fail the transaction: the time stamp is noted, a fresh battery level becomes the
/// device's status (and raises the care team's low-battery alarm, though the devices
/// were enrolled after the plan was made), an old one is noted and not kept.
#[tokio::test]
async fn a_phd_gateways_time_stamp_and_battery_levels_are_taken_for_what_they_are() {
    let h = hospital().await;
    let plan = format!("/api/v1/patients/{}/care-plan", h.ada);
    let (status, body) = h
        .as_(
            "nurse",
            Method::PUT,
            &plan,
            Some(json!({"program": "general_vitals", "reason": "at home"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = h
        .as_("clinician", Method::PUT, &plan, Some(json!({"reason": "the oximeter's battery",
            "edit": {"op": "add", "rule": {"id": "oximeter-battery", "name": "oximeter battery low",
                "priority": "low", "resolve_on_clear": true,
                "kind": {"type": "device_status", "devices": {"by": "kind", "kind": "pulse_oximeter"},
                         "condition": {"status": "low_battery", "below_percent": 20}}}}})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let gateway = enrol(&h, "gateway", "gateway-phd-3", h.ada).await;
    enrol(&h, "pulse_oximeter", EUI64, h.ada).await;
    let sender = Some(("gateway-phd-3", gateway.as_str()));
    let now = DateTime::<Utc>::from_timestamp(Utc::now().timestamp() - 5, 0).unwrap();
    let at = now - Duration::seconds(60);
    let mut bundle = phd_transaction(&h, at, 70.0);
    let mdc =
        |code: &str| json!({"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": code}]});
    let gateway_extension = json!([{"url": "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice",
        "valueReference": {"identifier": {"value": "gateway-phd-3"}}}]);
    let supplementary = |code: &str, at: DateTime<Utc>, value: Value| {
        let mut resource = json!({"resourceType": "Observation", "status": "final",
            "extension": gateway_extension, "code": mdc(code),
            "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-0000000000a2"},
            "device": {"reference": "urn:uuid:00000000-0000-4000-8000-0000000000a1"},
            "effectiveDateTime": at.to_rfc3339()});
        let (name, value) = value.as_object().unwrap().iter().next().unwrap();
        resource[name] = value.clone();
        json!({"fullUrl": format!("urn:uuid:00000000-0000-4000-8000-0000000000{code}"),
               "resource": resource, "request": {"method": "POST", "url": "Observation"}})
    };
    let entries = bundle["entry"].as_array_mut().unwrap();
    entries.push(supplementary(
        "67975",
        now,
        json!({"valueDateTime": (now - Duration::seconds(3)).to_rfc3339()}),
    ));
    entries.push(supplementary(
        "67996",
        now,
        json!({"valueQuantity": {"value": 12, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}),
    ));
    entries.push(supplementary(
        "67996",
        now - Duration::hours(2),
        json!({"valueQuantity": {"value": 95, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}),
    ));
    // The power status, as the PHD IG's bits: on battery, not on mains.
    let bit = |code: &str, display: &str, set: bool| {
        json!({"code": {"coding": [{"system": "http://hl7.org/fhir/uv/phd/CodeSystem/ASN1ToHL7",
            "code": code, "display": display}]}, "valueBoolean": set})
    };
    entries.push(supplementary(
        "67925",
        now,
        json!({"component": [bit("67925.0", "onMains", false), bit("67925.1", "onBattery", true)]}),
    ));
    // The measurements refer to the time stamp, as the PHD IG has them.
    for measurement in &mut entries[2..4] {
        measurement["resource"]["derivedFrom"] =
            json!([{"reference": "urn:uuid:00000000-0000-4000-8000-000000000067975"}]);
    }
    let (status, _, answer) = post(&h, "/fhir/R4", sender, &bundle).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let responses: Vec<(String, String)> = answer["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["response"]["status"].as_str().unwrap().to_owned(),
                entry["response"]["outcome"]["issue"][0]["diagnostics"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let statuses: Vec<&str> = responses
        .iter()
        .map(|(status, _)| status.as_str())
        .collect();
    assert_eq!(
        statuses,
        [
            "200 OK",
            "200 OK",
            "201 Created",
            "201 Created",
            "200 OK",
            "200 OK",
            "200 OK",
            "200 OK"
        ]
    );
    assert!(
        responses[7]
            .1
            .contains("a power status (onBattery): noted, not kept"),
        "{responses:?}"
    );
    assert!(
        responses[4].1.contains("coincident time stamp: noted"),
        "{responses:?}"
    );
    assert!(
        responses[5].1.contains("kept as the battery level"),
        "{responses:?}"
    );
    assert!(responses[6].1.contains("not kept"), "{responses:?}");
    assert_eq!(
        read_back(&h, "8867-4").await.len(),
        1,
        "the measurements are stored"
    );
    validate(std::slice::from_ref(&answer));

    // The fresh level, 12 %, is below the care team's 20 %: the low-battery alarm is
    // raised (the old 95 % did not clear it).
    let alarms = format!("/api/v1/patients/{}/alarms", h.ada);
    let mut raised = Value::Null;
    for _ in 0..100 {
        let (_, listed) = h.as_("nurse", Method::GET, &alarms, None).await;
        if let Some(alarm) = listed["alarms"].as_array().and_then(|alarms| {
            alarms
                .iter()
                .find(|alarm| alarm["rule_id"] == "oximeter-battery")
        }) {
            raised = alarm.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        raised["state_name"], "open",
        "the low battery raised an alarm: {raised}"
    );

    // A battery level that is not in percent is refused, naming the element.
    let mut wrong = phd_transaction(&h, at + Duration::seconds(10), 71.0);
    wrong["entry"].as_array_mut().unwrap().push(supplementary(
        "67996",
        now,
        json!({"valueQuantity": {"value": 3.1, "unit": "V", "system": "http://unitsofmeasure.org", "code": "V"}}),
    ));
    let (status, _, refused) = post(&h, "/fhir/R4", sender, &wrong).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(
        refused["issue"][0]["expression"][0],
        "Bundle.entry[4].resource.valueQuantity.code"
    );
}

#[tokio::test]
async fn a_phd_transaction_is_stored_once_and_all_or_nothing() {
    let h = hospital().await;
    let gateway = enrol(&h, "gateway", "gateway-phd-1", h.ada).await;
    enrol(&h, "pulse_oximeter", EUI64, h.ada).await;
    let sender = Some(("gateway-phd-1", gateway.as_str()));
    let at = DateTime::<Utc>::from_timestamp(Utc::now().timestamp() - 120, 0).unwrap();

    let bundle = phd_transaction(&h, at, 72.0);
    let (status, _, answer) = post(&h, "/fhir/R4", sender, &bundle).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["type"], "transaction-response");
    let statuses: Vec<&str> = answer["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["200 OK", "200 OK", "201 Created", "201 Created"]);
    assert_eq!(
        answer["entry"][0]["response"]["location"],
        format!("Device/{EUI64}")
    );
    assert_eq!(
        answer["entry"][1]["response"]["location"],
        format!("Patient/{}", h.ada)
    );
    validate(std::slice::from_ref(&answer));

    // Where the answer says the reading is, it is read: by its care team and its patient,
    // and by nobody else (to whom it does not exist).
    let location = answer["entry"][2]["response"]["location"].as_str().unwrap();
    let read = |who: &'static str, path: String| {
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("authorization", format!("Bearer {}", h.tokens[who]))
            .body(Body::empty())
            .unwrap();
        h.send(request)
    };
    for (who, expected) in [
        ("nurse", StatusCode::OK),
        ("ada", StatusCode::OK),
        ("outsider", StatusCode::NOT_FOUND),
        ("bob", StatusCode::NOT_FOUND),
    ] {
        let (status, body) = read(who, format!("/fhir/R4/{location}")).await;
        assert_eq!(status, expected, "{who}: {body}");
        if status == StatusCode::OK {
            assert_eq!(body["valueQuantity"]["value"], 72, "{body}");
            assert_eq!(
                format!("Observation/{}/_history/1", body["id"].as_str().unwrap()),
                location
            );
            validate(std::slice::from_ref(&body));
        }
    }
    let id = location.trim_end_matches("/_history/1");
    let (status, body) = read("nurse", format!("/fhir/R4/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for missing in [
        format!("{id}/_history/2"),
        format!("{id}9"),
        "Observation/dev.nothing.m1".to_owned(),
    ] {
        let (status, body) = read("nurse", format!("/fhir/R4/{missing}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }

    // The gateway heard nothing (a lost answer) and sends it again: nothing twice.
    let (status, _, again) = post(&h, "/fhir/R4", sender, &bundle).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["entry"][2]["response"]["status"], "200 OK");
    assert_eq!(
        again["entry"][2]["response"]["location"],
        answer["entry"][2]["response"]["location"]
    );
    assert_eq!(read_back(&h, "8867-4").await.len(), 1);
    assert_eq!(read_back(&h, "59408-5").await.len(), 1);

    // One impossible value refuses the whole: the other, new reading is not stored.
    let later = at + Duration::seconds(30);
    let mut bad = phd_transaction(&h, later, 72.0);
    bad["entry"][3]["resource"]["valueQuantity"]["value"] = json!(140);
    let (status, _, outcome) = post(&h, "/fhir/R4", sender, &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(
        outcome["issue"][0]["expression"][0],
        "Bundle.entry[3].resource.valueQuantity.value"
    );
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("entry 3: "),
        "{outcome}"
    );
    assert_eq!(read_back(&h, "8867-4").await.len(), 1, "all or nothing");
    validate(std::slice::from_ref(&outcome));

    // Another pulse for a time already stored is a conflict found at the commit:
    // nothing of the transaction is stored.
    let mut conflicting = phd_transaction(&h, later, 75.0);
    conflicting["entry"][2]["resource"]["effectiveDateTime"] = json!(at.to_rfc3339());
    let (status, _, outcome) = post(&h, "/fhir/R4", sender, &conflicting).await;
    assert_eq!(status, StatusCode::CONFLICT, "{outcome}");
    assert_eq!(
        outcome["issue"][0]["details"]["coding"][0]["code"],
        "seq_conflict"
    );
    assert_eq!(read_back(&h, "59408-5").await.len(), 1, "all or nothing");

    // The same as a batch: each entry on its own.
    conflicting["type"] = json!("batch");
    let (status, _, answer) = post(&h, "/fhir/R4", sender, &conflicting).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["type"], "batch-response");
    assert_eq!(answer["entry"][2]["response"]["status"], "409 Conflict");
    assert_eq!(
        answer["entry"][2]["response"]["outcome"]["issue"][0]["details"]["coding"][0]["code"],
        "seq_conflict"
    );
    assert_eq!(answer["entry"][3]["response"]["status"], "201 Created");
    assert_eq!(read_back(&h, "59408-5").await.len(), 2);
    validate(std::slice::from_ref(&answer));
}

#[tokio::test]
async fn only_devices_upload_and_only_for_their_own_patient() {
    let h = hospital().await;
    let gateway = enrol(&h, "gateway", "gateway-phd-2", h.ada).await;
    let oximeter = enrol(&h, "pulse_oximeter", EUI64, h.ada).await;
    let cgm = enrol(&h, "cgm", "cgm-phd-2", h.ada).await;
    let bobs = enrol(&h, "pulse_oximeter", "oxi-of-bob", h.bob).await;
    let at = DateTime::<Utc>::from_timestamp(Utc::now().timestamp() - 60, 0).unwrap();
    let heart_rate = |subject: String| {
        json!({"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
               "subject": {"reference": subject},
               "effectiveDateTime": at.to_rfc3339(),
               "valueQuantity": {"value": 70, "code": "/min"}})
    };
    let ada = format!("Patient/{}", h.ada);

    // No credentials, wrong ones, or a person's session: 401, asking for Basic.
    let (status, _, body) = post(&h, "/fhir/R4/Observation", None, &heart_rate(ada.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["issue"][0]["code"], "login");
    let (status, _, _) = post(
        &h,
        "/fhir/R4/Observation",
        Some((EUI64, "not-the-secret")),
        &heart_rate(ada.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = h
        .as_(
            "clinician",
            Method::POST,
            "/fhir/R4/Observation",
            Some(heart_rate(ada.clone())),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // A reading of Ada's oximeter said to be Bob's is refused, not filed under him.
    let (status, _, body) = post(
        &h,
        "/fhir/R4/Observation",
        Some((EUI64, &oximeter)),
        &heart_rate(format!("Patient/{}", h.bob)),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["issue"][0]["expression"][0], "Observation.subject");
    // A device writes for itself only.
    let mut for_another = heart_rate(ada.clone());
    for_another["device"] = json!({"reference": "Device/oxi-of-bob"});
    let (status, _, body) = post(
        &h,
        "/fhir/R4/Observation",
        Some((EUI64, &oximeter)),
        &for_another,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["issue"][0]["expression"][0], "Observation.device");
    // A CGM does not measure a heart rate.
    let (status, _, body) = post(
        &h,
        "/fhir/R4/Observation",
        Some(("cgm-phd-2", &cgm)),
        &heart_rate(ada.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["issue"][0]["expression"][0], "Observation.code");
    // A gateway names the device that measured, and only one behind it.
    let (status, _, body) = post(
        &h,
        "/fhir/R4/Observation",
        Some(("gateway-phd-2", &gateway)),
        &heart_rate(ada.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("measures nothing")
    );
    let (status, _, body) = post(
        &h,
        "/fhir/R4/Observation",
        Some(("gateway-phd-2", &gateway)),
        &for_another,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // Bob's own oximeter may write for Bob.
    let (status, _, body) = post(
        &h,
        "/fhir/R4/Observation",
        Some(("oxi-of-bob", &bobs)),
        &heart_rate(format!("Patient/{}", h.bob)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Not FHIR JSON, not JSON, not a Bundle Wardline takes: 400 naming why.
    let (status, _, body) = post(
        &h,
        "/fhir/R4",
        Some((EUI64, &oximeter)),
        &json!({"resourceType": "Bundle", "type": "searchset"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["issue"][0]["expression"][0], "Bundle.type");
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{EUI64}:{oximeter}"));
    let (status, body) = h
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/fhir/R4/Observation")
                .header("authorization", format!("Basic {credentials}"))
                .header("content-type", "application/fhir+json")
                .body(Body::from("{\"resourceType\": \"Observ"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("not JSON")
    );
}
