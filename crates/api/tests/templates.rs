//! Mapping templates over the API: an admin registers iomt-fhir templates for a device
//! model (a bad one refused naming the problem), tries a version on a sample message,
//! and puts it in force; the model's devices then post their own JSON, stored once,
//! with a message the template cannot read refused on its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::common::Hospital;

fn shared_json(path: &str) -> Value {
    let dir = std::env::var_os("WARDLINE_SHARED_DATA").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        std::path::PathBuf::from,
    );
    let file = dir.join("mapping-templates/iomt-fhir").join(path);
    let bytes = std::fs::read(&file).unwrap_or_else(|error| {
        panic!(
            "{} could not be read ({error}); set WARDLINE_SHARED_DATA to the folder holding mapping-templates/",
            file.display()
        )
    });
    serde_json::from_slice(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes)).unwrap()
}

/// A device template for the vital-signs hub of the test: CalculatedContent with JMESPath.
fn hub_templates() -> (Value, Value) {
    let device = json!({"templateType": "CollectionContent", "template": [
        {"templateType": "CalculatedContent", "template": {
            "typeName": "vitals", "defaultExpressionLanguage": "JmesPath",
            "typeMatchExpression": "[Body][?pulse != null]",
            "deviceIdExpression": "matchedToken.serial",
            "timestampExpression": "fromUnixTimestampMs(matchedToken.ts)",
            "values": [
                {"valueName": "pulse", "valueExpression": "matchedToken.pulse", "required": true},
                {"valueName": "spo2", "valueExpression": "matchedToken.spo2", "required": false},
                {"valueName": "temp", "required": false,
                 // A function given null fails the message (as in iomt-fhir): an optional
                 // value guards its function.
                 "valueExpression": "matchedToken.temp_centi && divide(matchedToken.temp_centi, `100`)"}
            ]}}
    ]});
    let fhir = json!({"templateType": "CollectionFhir", "template": [
        {"templateType": "CodeValueFhir", "template": {"typeName": "vitals",
            "codes": [{"code": "vitals", "system": "https://example.org/hub"}],
            "components": [
                {"codes": [{"code": "8867-4", "system": "http://loinc.org"}], "value": {"valueName": "pulse", "valueType": "Quantity", "unit": "bpm"}},
                {"codes": [{"code": "59408-5", "system": "http://loinc.org"}], "value": {"valueName": "spo2", "valueType": "Quantity", "unit": "%"}},
                {"codes": [{"code": "8310-5", "system": "http://loinc.org"}], "value": {"valueName": "temp", "valueType": "Quantity", "unit": "degC"}}
            ]}}
    ]});
    (device, fhir)
}

async fn register(h: &Hospital, model: &str, device: Value, fhir: Value) -> (StatusCode, Value) {
    h.as_(
        "admin",
        Method::POST,
        "/api/v1/mapping-templates",
        Some(json!({"model": model, "device_template": device, "fhir_template": fhir})),
    )
    .await
}

async fn enrol(h: &Hospital, kind: &str, model: &str, serial: &str) -> (String, String) {
    let (status, enrolled) = h
        .as_(
            "admin",
            Method::POST,
            "/api/v1/devices",
            Some(json!({"kind": kind, "model": model, "serial": serial, "patient_id": h.ada})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{enrolled}");
    (
        enrolled["device"]["id"].as_str().unwrap().to_owned(),
        enrolled["secret"].as_str().unwrap().to_owned(),
    )
}

async fn post(h: &Hospital, device: &str, secret: &str, body: &Value) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/devices/{device}/readings"))
        .header("authorization", format!("Bearer {secret}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    h.send(request).await
}

/// Ada's observations of a LOINC code, as `who` reads them.
async fn observations(h: &Hospital, who: &str, loinc: &str) -> Vec<Value> {
    let path = format!("/api/v1/patients/{}/observations?code={loinc}", h.ada);
    let (status, body) = h.as_(who, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["observations"]
        .as_array()
        .or_else(|| body.as_array())
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn a_bad_template_is_refused_naming_every_problem() {
    let h = crate::common::hospital().await;
    let (status, body) = register(
        &h,
        "Heart 1",
        shared_json("test-input/data_CollectionContentTemplateInvalid.json"),
        shared_json("test-input/data_CollectionFhirTemplateValid.json"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");
    assert_eq!(
        body["error"]["field"],
        "device_template.template[0].template.deviceIdExpression"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("3 problems"), "{message}");
    assert!(
        message.contains("device_template.template[1].template.typeMatchExpression: missing"),
        "{message}"
    );
    // A JMESPath function that does not exist is found now, not when a device sends.
    let (mut device, fhir) = hub_templates();
    device["template"][0]["template"]["values"][0]["valueExpression"] =
        json!("plus(matchedToken.pulse, `1`)");
    let (status, body) = register(&h, "Hub", device, fhir).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"]["field"],
        "device_template.template[0].template.values[0].valueExpression"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no function plus()")
    );
    let (_, list) = h
        .as_("admin", Method::GET, "/api/v1/mapping-templates", None)
        .await;
    assert_eq!(list, json!([]), "nothing refused is registered");
}

#[tokio::test]
async fn an_iot_hub_template_reads_a_device_that_sends_its_own_json() {
    let h = crate::common::hospital().await;
    let (device_id, secret) = enrol(&h, "pulse_oximeter", "IoT heart monitor", "hm-1").await;
    let own_json = json!({"heartrate": "72"});
    // Before a template is in force, the device's JSON is not format v1.
    let (status, body) = post(&h, &device_id, &secret, &own_json).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, registered) = register(
        &h,
        "IoT heart monitor",
        shared_json("test-input/data_IotJsonPathContentTemplateValid.json"),
        shared_json("test-input/data_CollectionFhirTemplateValid.json"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    assert_eq!(
        (
            registered["version"].as_u64(),
            registered["status"].as_str()
        ),
        (Some(1), Some("draft"))
    );
    // The shared mapping also maps types this device template never gives.
    let warnings = registered["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .unwrap()
            .starts_with("steps: a FHIR mapping for a type")),
        "{warnings:?}"
    );
    let id = registered["id"].as_str().unwrap().to_owned();

    // A draft is tried, and reads nothing yet.
    let (status, trial) = h
        .as_(
            "admin",
            Method::POST,
            &format!("/api/v1/mapping-templates/{id}/trial"),
            Some(json!({"payload": own_json, "device_id": device_id})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{trial}");
    assert_eq!(trial["readings"][0]["code"], "heart_rate");
    assert_eq!(trial["readings"][0]["value"], 72.0);
    assert!(
        trial["readings"][0]["description"]
            .as_str()
            .unwrap()
            .starts_with("Heart rate 72 /min at "),
        "{trial}"
    );
    assert_eq!(trial["device_checked"], true);
    let (status, _) = post(&h, &device_id, &secret, &own_json).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a draft is not in force");

    let (status, in_force) = h
        .as_(
            "admin",
            Method::POST,
            &format!("/api/v1/mapping-templates/{id}/in-force"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{in_force}");
    assert_eq!(in_force["status"], "in_force");
    let (status, stored) = post(&h, &device_id, &secret, &own_json).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored, json!({"stored": 1, "duplicates": 0}));

    let found = observations(&h, "clinician", "8867-4").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["value"], 72.0);
    assert_eq!(found[0]["device_id"], device_id.as_str());

    // Retiring it makes the model's messages format v1 again.
    let (status, retired) = h
        .as_(
            "admin",
            Method::POST,
            &format!("/api/v1/mapping-templates/{id}/retire"),
            None,
        )
        .await;
    assert_eq!(
        (status, retired["status"].as_str()),
        (StatusCode::OK, Some("retired"))
    );
    let (status, _) = post(&h, &device_id, &secret, &own_json).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, again) = h
        .as_(
            "admin",
            Method::POST,
            &format!("/api/v1/mapping-templates/{id}/retire"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
}

#[tokio::test]
async fn a_jmespath_template_stores_once_and_refuses_only_what_it_cannot_read() {
    let h = crate::common::hospital().await;
    let (device_id, secret) = enrol(&h, "vital_signs_monitor", "Hub 9", "hub-serial-9").await;
    let (device, fhir) = hub_templates();
    let (status, registered) = register(&h, "Hub 9", device, fhir).await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    assert_eq!(registered["warnings"], json!([]));
    let id = registered["id"].as_str().unwrap().to_owned();
    let (status, _) = h
        .as_(
            "admin",
            Method::POST,
            &format!("/api/v1/mapping-templates/{id}/in-force"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let now_ms = chrono::Utc::now().timestamp_millis();
    let message = json!({"serial": "hub-serial-9", "ts": now_ms, "pulse": 88, "spo2": "97", "temp_centi": 3712});
    let (status, stored) = post(&h, &device_id, &secret, &message).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored, json!({"stored": 3, "duplicates": 0}));
    // The same message again (a retry) stores nothing twice.
    let (status, again) = post(&h, &device_id, &secret, &message).await;
    assert_eq!(
        (status, again),
        (StatusCode::OK, json!({"stored": 0, "duplicates": 3}))
    );

    // A message the template cannot read is refused, saying why...
    let (status, refused) = post(
        &h,
        &device_id,
        &secret,
        &json!({"serial": "hub-serial-9", "battery": 80}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("matches none of the template's 1 type match expressions"),
        "{refused}"
    );
    // ...as is one naming another device, or an impossible value...
    let (status, refused) = post(
        &h,
        &device_id,
        &secret,
        &json!({"serial": "someone-else", "ts": now_ms, "pulse": 70}),
    )
    .await;
    assert_eq!(
        (status, refused["error"]["kind"].as_str()),
        (StatusCode::BAD_REQUEST, Some("not_for_device")),
        "{refused}"
    );
    let (status, refused) = post(
        &h,
        &device_id,
        &secret,
        &json!({"serial": "hub-serial-9", "ts": now_ms + 1000, "pulse": 900}),
    )
    .await;
    assert_eq!(
        (status, refused["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("vitals.pulse")),
        "{refused}"
    );
    // ...and the device's next good message is stored as ever.
    let later = json!({"serial": "hub-serial-9", "ts": now_ms + 60_000, "pulse": 90});
    let (status, stored) = post(&h, &device_id, &secret, &later).await;
    assert_eq!(
        (status, stored),
        (StatusCode::OK, json!({"stored": 1, "duplicates": 0}))
    );

    let found = observations(&h, "nurse", "8310-5").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["value"], 37.12);

    // A second version replaces the first; both are listed, newest first.
    let (device, fhir) = hub_templates();
    let (_, second) = register(&h, "Hub 9", device, fhir).await;
    assert_eq!(second["version"], 2);
    let second_id = second["id"].as_str().unwrap();
    h.as_(
        "admin",
        Method::POST,
        &format!("/api/v1/mapping-templates/{second_id}/in-force"),
        None,
    )
    .await;
    let (_, list) = h
        .as_("admin", Method::GET, "/api/v1/mapping-templates", None)
        .await;
    let states: Vec<(u64, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["version"].as_u64().unwrap(),
                t["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(states, [(2, "in_force"), (1, "retired")]);
    let (_, audit) = h
        .as_("admin", Method::GET, "/api/v1/audit?limit=200", None)
        .await;
    let actions: Vec<&str> = audit
        .as_array()
        .or_else(|| audit["events"].as_array())
        .unwrap()
        .iter()
        .filter_map(|event| event["action"].as_str())
        .filter(|action| action.starts_with("templates."))
        .collect();
    for expected in ["templates.register", "templates.in_force", "templates.list"] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
}

#[tokio::test]
async fn a_trial_says_why_a_message_would_be_refused() {
    let h = crate::common::hospital().await;
    let (_, registered) = register(
        &h,
        "Cuff",
        shared_json("test-input/data_Documentation_CalculatedFunction_BloodPressure_Template.json"),
        shared_json("test-input/data_CodeValueFhirTemplate_Quantity.json"),
    )
    .await;
    let id = registered["id"].as_str().unwrap();
    assert!(
        registered["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("not a unit of Heart rate")),
        "{registered}"
    );
    let payload =
        shared_json("test-input/data_Documentation_CalculatedFunction_BloodPressure_Payload.json");
    let (status, trial) = h
        .as_(
            "admin",
            Method::POST,
            &format!("/api/v1/mapping-templates/{id}/trial"),
            Some(json!({"payload": payload["Body"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{trial}");
    assert_eq!(trial["readings"], json!([]));
    assert_eq!(trial["refused"]["field"], "bloodpressure.diastolic");
    assert_eq!(trial["refused"]["kind"], "unit_mismatch");
    assert_eq!(trial["device_checked"], false);
    let (status, _) = h
        .as_(
            "admin",
            Method::POST,
            "/api/v1/mapping-templates/00000000000000000000000000000000/trial",
            Some(json!({"payload": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
