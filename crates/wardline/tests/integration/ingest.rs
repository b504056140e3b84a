//! Readings in over MQTT and HTTP, out through the API.

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PubAckReason};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_readings_are_stored_once_and_read_back() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let (client, mut eventloop) =
        AsyncClient::new(mqtt_v311(&server, &ward.device, &ward.device.secret), 100);
    publish_qos1(&client, &ward.device, reading(1, "99504-3", 112.0, "mg/dL")).await;
    let second = reading(2, "99504-3", 6.0, "mmol/L");
    publish_qos1(&client, &ward.device, second.clone()).await;
    // A retry: the same message published again, as after a lost PUBACK.
    publish_qos1(&client, &ward.device, second.clone()).await;
    await_pubacks(&mut eventloop, 3).await;

    let observations = server
        .observations(&ward.clinician, &ward.patient_id, "99504-3")
        .await;
    assert_eq!(
        observations.len(),
        2,
        "the retried reading is stored once: {observations:?}"
    );
    assert_eq!(observations[0]["value"], json!(112.0));
    let converted = observations[1]["value"].as_f64().unwrap();
    assert!(
        (converted - 108.09).abs() < 0.01,
        "6 mmol/L is stored as mg/dL: {converted}"
    );
    assert_eq!(observations[1]["original_unit"], json!("mmol/L"));
    assert_eq!(observations[1]["unit"], json!("mg/dL"));
    assert_eq!(observations[1]["device_id"], json!(ward.device.id));

    let latest: Value = server
        .get(
            &ward.clinician,
            &format!("/api/v1/patients/{}/observations/latest", ward.patient_id),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(latest.as_array().unwrap().len(), 1);

    // The same reading re-posted over HTTP is a duplicate too.
    let response = server.send_readings(&ward.device, second).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"stored": 0, "duplicates": 1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_batches_are_stored_after_commit_and_counted() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let monitor = server
        .enrol(&ward.admin, "vital_signs_monitor", Some(&ward.patient_id))
        .await;
    let now = chrono::Utc::now();
    let batch = json!({"v": 1, "readings": [
        {"seq": 10, "code": "8480-6", "value": 128, "unit": "mm[Hg]", "time": now.to_rfc3339()},
        {"seq": 11, "code": "8462-4", "value": 84, "unit": "mm[Hg]", "time": now.to_rfc3339()},
        {"seq": 12, "code": "8310-5", "value": 99.5, "unit": "[degF]", "time": now.to_rfc3339()},
    ]});
    let post = |body: Value| {
        server
            .client
            .post(server.url(&format!("/api/v1/devices/{}/readings", monitor.id)))
            .bearer_auth(&monitor.secret)
            .json(&body)
            .send()
    };
    let first: Value = post(batch.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(first, json!({"stored": 3, "duplicates": 0}));
    let again: Value = post(batch).await.unwrap().json().await.unwrap();
    assert_eq!(again, json!({"stored": 0, "duplicates": 3}));
    let temperatures = server
        .observations(&ward.clinician, &ward.patient_id, "8310-5")
        .await;
    assert!(
        (temperatures[0]["value"].as_f64().unwrap() - 37.5).abs() < 1e-9,
        "°F is stored as °C"
    );

    let wrong_secret = server
        .client
        .post(server.url(&format!("/api/v1/devices/{}/readings", ward.device.id)))
        .bearer_auth("wds_not-the-secret")
        .body(reading(99, "8867-4", 70.0, "/min"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_secret.status(), 401);
}

/// Each kind of bad input, and the field and reason the device is told.
fn bad_payloads() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let now = chrono::Utc::now();
    let future = now + chrono::Duration::hours(2);
    vec![
        ("malformed JSON", b"{\"v\":1,\"seq\":".to_vec(), "$"),
        (
            "unknown code",
            json!({"v":1,"seq":1,"code":"12345-6","value":1,"unit":"/min","time":now})
                .to_string()
                .into_bytes(),
            "code",
        ),
        (
            "SpO2 140 %",
            json!({"v":1,"seq":1,"code":"59408-5","value":140,"unit":"%","time":now})
                .to_string()
                .into_bytes(),
            "value",
        ),
        (
            "negative heart rate",
            json!({"v":1,"seq":1,"code":"8867-4","value":-20,"unit":"/min","time":now})
                .to_string()
                .into_bytes(),
            "value",
        ),
        (
            "unit that does not fit",
            json!({"v":1,"seq":1,"code":"8867-4","value":70,"unit":"mg/dL","time":now})
                .to_string()
                .into_bytes(),
            "unit",
        ),
        (
            "far-future time",
            json!({"v":1,"seq":1,"code":"8867-4","value":70,"unit":"/min","time":future})
                .to_string()
                .into_bytes(),
            "time",
        ),
        (
            "oversized payload",
            {
                let mut big =
                    json!({"v":1,"seq":1,"code":"8867-4","value":70,"unit":"/min","time":now})
                        .to_string()
                        .into_bytes();
                big.pop();
                big.extend_from_slice(
                    format!(",\"pad\":\"{}\"}}", "x".repeat(300 * 1024)).as_bytes(),
                );
                big
            },
            "$",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_refusals_name_the_field_and_the_connection_carries_on() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let (client, mut eventloop) =
        rumqttc::v5::AsyncClient::new(mqtt_v5(&server, &ward.device, &ward.device.secret), 100);
    let cases = bad_payloads();
    for (_, payload, _) in &cases {
        client
            .publish(
                topic(&ward.device),
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                false,
                payload.clone(),
            )
            .await
            .unwrap();
    }
    // After all the bad ones, a good one on the same connection.
    client
        .publish(
            topic(&ward.device),
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            reading(50, "99504-3", 112.0, "mg/dL"),
        )
        .await
        .unwrap();
    let mut acks = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acks.len() < cases.len() + 1 {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("acks in time")
            .expect("connection");
        if let rumqttc::v5::Event::Incoming(Packet5::PubAck(ack)) = event {
            acks.push(ack);
        }
    }
    for ((name, _, field), ack) in cases.iter().zip(&acks) {
        assert_eq!(ack.reason, PubAckReason::PayloadFormatInvalid, "{name}");
        let reason = ack
            .properties
            .as_ref()
            .and_then(|properties| properties.reason_string.clone())
            .unwrap_or_default();
        assert!(
            reason.starts_with(&format!("{field}:")),
            "{name}: reason {reason:?} should name {field}"
        );
    }
    assert_eq!(
        acks.last().unwrap().reason,
        PubAckReason::Success,
        "the connection still works"
    );
    let glucose = server
        .observations(&ward.clinician, &ward.patient_id, "99504-3")
        .await;
    assert_eq!(glucose.len(), 1, "only the valid reading was stored");

    let anonymous = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401, "metrics are for admins");
    let metrics = server
        .get(&server.admin().await, "/metrics")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("wardline_ingest_messages_rejected_total"),
        "refusals are counted"
    );
    assert!(
        !metrics.contains(&ward.device.id),
        "no device ids in metric labels"
    );
    assert!(
        !metrics.contains(&ward.patient_id),
        "no patient ids in metric labels"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt311_refusals_arrive_on_the_errors_topic() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let (client, mut eventloop) =
        AsyncClient::new(mqtt_v311(&server, &ward.device, &ward.device.secret), 100);
    client
        .subscribe(
            format!("wardline/v1/devices/{}/errors", ward.device.id),
            QoS::AtMostOnce,
        )
        .await
        .unwrap();
    let now = chrono::Utc::now();
    client
        .publish(
            topic(&ward.device),
            QoS::AtLeastOnce,
            false,
            json!({"v":1,"seq":1,"code":"59408-5","value":140,"unit":"%","time":now}).to_string(),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let error = loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("error in time")
            .expect("connection");
        if let Event::Incoming(Packet::Publish(publish)) = event {
            break serde_json::from_slice::<Value>(&publish.payload).unwrap();
        }
    };
    assert_eq!(error["field"], json!("value"));
    assert_eq!(error["kind"], json!("impossible_value"));
    assert!(
        error["reason"].as_str().unwrap().contains("0–100"),
        "{error}"
    );
}

/// A device not assigned to a patient may be assigned later: MQTT 3.1.1, which cannot
/// say "not stored" in a PUBACK, sends none, so the device keeps the reading (it resends
/// it on reconnecting); the reason goes to the errors topic, and the connection carries
/// on, acknowledging what it stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt311_does_not_acknowledge_a_reading_it_could_not_store_for_now() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let device = server.enrol(&ward.admin, "pulse_oximeter", None).await;
    let mut options = mqtt_v311(&server, &device, &device.secret);
    options.set_clean_session(false);
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    client
        .subscribe(
            format!("wardline/v1/devices/{}/errors", device.id),
            QoS::AtMostOnce,
        )
        .await
        .unwrap();
    client
        .publish(
            topic(&device),
            QoS::AtLeastOnce,
            false,
            reading(1, "59408-5", 97.0, "%"),
        )
        .await
        .unwrap();
    let mut published = Vec::new();
    let mut acked = Vec::new();
    let mut errors = Vec::new();
    // Until the refusal's reason arrives, and 2 s more for a PUBACK that must not come.
    let mut quiet_until = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let until = quiet_until.unwrap_or(deadline);
        match tokio::time::timeout_at(until, eventloop.poll()).await {
            Err(_) if quiet_until.is_some() => break,
            Err(_) => panic!("no refusal on the errors topic in time"),
            Ok(event) => match event.expect("connection") {
                Event::Outgoing(rumqttc::Outgoing::Publish(pkid)) => published.push(pkid),
                Event::Incoming(Packet::PubAck(ack)) => acked.push(ack.pkid),
                Event::Incoming(Packet::Publish(publish)) => {
                    errors.push(serde_json::from_slice::<Value>(&publish.payload).unwrap());
                    quiet_until = Some(tokio::time::Instant::now() + Duration::from_secs(2));
                }
                _ => {}
            },
        }
    }
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["kind"], json!("not_assigned"), "{}", errors[0]);
    assert!(acked.is_empty(), "a reading not stored was acknowledged");

    // Assigned from now on, the device's next reading is stored and acknowledged; the
    // first one, taken before the assignment, still is not.
    let assigned = server
        .client
        .post(server.url(&format!("/api/v1/devices/{}/assignments", device.id)))
        .bearer_auth(&ward.admin.token)
        .json(&json!({"patient_id": ward.patient_id}))
        .send()
        .await
        .unwrap();
    assert!(assigned.status().is_success(), "{}", assigned.status());
    tokio::time::sleep(Duration::from_millis(50)).await;
    client
        .publish(
            topic(&device),
            QoS::AtLeastOnce,
            false,
            reading(2, "59408-5", 96.0, "%"),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acked.is_empty() {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("the stored reading's PUBACK in time")
            .expect("connection");
        match event {
            Event::Outgoing(rumqttc::Outgoing::Publish(pkid)) => published.push(pkid),
            Event::Incoming(Packet::PubAck(ack)) => acked.push(ack.pkid),
            _ => {}
        }
    }
    assert_eq!(published.len(), 2, "{published:?}");
    assert_eq!(
        acked,
        [published[1]],
        "only the stored reading is acknowledged"
    );
    let stored = server
        .observations(&ward.clinician, &ward.patient_id, "59408-5")
        .await;
    assert_eq!(stored.len(), 1);
}

/// The review's reproduction (seq 1 = 97, then seq 1 = 60; there an oximeter's SpO2, here
/// the ward's CGM). The second is not a retry and must not be dropped as one: HTTP
/// answers 409 `seq_conflict`, MQTT 5 a negative PUBACK naming the seq, and the 97 stays
/// the only reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_seq_with_another_value_is_refused_not_counted_as_a_duplicate() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let post = |body: Vec<u8>| {
        server
            .client
            .post(server.url(&format!("/api/v1/devices/{}/readings", ward.device.id)))
            .bearer_auth(&ward.device.secret)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let first = reading(1, "99504-3", 97.0, "mg/dL");
    let response = post(first.clone()).await.unwrap();
    assert_eq!(response.status(), 200);
    let retry = post(first).await.unwrap();
    assert_eq!(retry.status(), 200, "a retry of the same reading is fine");
    let response = post(reading(1, "99504-3", 60.0, "mg/dL")).await.unwrap();
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("seq_conflict"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("seq: 1 "),
        "{body}"
    );

    let (client, mut eventloop) =
        rumqttc::v5::AsyncClient::new(mqtt_v5(&server, &ward.device, &ward.device.secret), 10);
    client
        .publish(
            topic(&ward.device),
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            reading(1, "99504-3", 55.0, "mg/dL"),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let ack = loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("PUBACK in time")
            .expect("connection");
        if let rumqttc::v5::Event::Incoming(Packet5::PubAck(ack)) = event {
            break ack;
        }
    };
    assert_eq!(ack.reason, PubAckReason::ImplementationSpecificError);
    let reason = ack
        .properties
        .and_then(|properties| properties.reason_string)
        .unwrap_or_default();
    assert!(reason.starts_with("seq: 1 "), "{reason}");
    let stored = server
        .observations(&ward.clinician, &ward.patient_id, "99504-3")
        .await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["value"], json!(97.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refusals_name_the_field() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    for (name, payload, field) in bad_payloads() {
        let response = server.send_readings(&ward.device, payload).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        if name == "oversized payload" {
            assert_eq!(status, 413, "{name}");
            assert_eq!(body["error"]["code"], json!("payload_too_large"));
        } else {
            assert_eq!(status, 400, "{name}: {body}");
            assert_eq!(body["error"]["code"], json!("invalid_payload"), "{name}");
            assert_eq!(body["error"]["field"], json!(field), "{name}: {body}");
            assert!(!body["error"]["message"].as_str().unwrap().is_empty());
        }
    }
    assert!(
        server
            .observations(&ward.clinician, &ward.patient_id, "8867-4")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waveform_chunks_round_trip_losslessly() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let patch = server
        .enrol(&ward.admin, "ecg", Some(&ward.patient_id))
        .await;
    let samples: Vec<i32> = (0..3600)
        .map(|i| 1024 + ((i as f64 / 12.0).sin() * 300.0) as i32)
        .collect();
    // Readings count only from the moment the device was assigned to the patient.
    let start = chrono::Utc::now();
    let chunk = json!({"v": 1, "waveform": {"seq": 1, "signal": "ecg-lead-ii", "rate_hz": 360, "start": start.to_rfc3339(),
        "gain": 200, "baseline": 1024, "samples": samples}});
    let response = server
        .client
        .post(server.url(&format!("/api/v1/devices/{}/readings", patch.id)))
        .bearer_auth(&patch.secret)
        .json(&chunk)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(status, 200, "{}", response.text().await.unwrap());
    let from = (start - chrono::Duration::seconds(1)).to_rfc3339();
    let to = (start + chrono::Duration::seconds(30)).to_rfc3339();
    let url = reqwest::Url::parse_with_params(
        &server.url(&format!("/api/v1/patients/{}/waveforms", ward.patient_id)),
        &[
            ("signal", "ecg-lead-ii"),
            ("from", from.as_str()),
            ("to", to.as_str()),
        ],
    )
    .unwrap();
    let chunks: Value = server
        .client
        .get(url)
        .bearer_auth(&ward.clinician.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored: Vec<i32> = chunks[0]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_i64().unwrap() as i32)
        .collect();
    assert_eq!(stored, samples);
    assert_eq!(chunks[0]["gain"], json!(200.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_delivers_new_observations() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let mut stream = server
        .events(
            &ward.clinician,
            &format!("/api/v1/patients/{}/observations/stream", ward.patient_id),
        )
        .await;
    let response = server
        .send_readings(&ward.device, reading(7, "99504-3", 88.0, "mg/dL"))
        .await;
    assert_eq!(response.status(), 200);
    let observation = stream.next("observation", Duration::from_secs(10)).await;
    assert_eq!(observation["value"], json!(88.0));
    assert_eq!(observation["patient_id"], json!(ward.patient_id));
}

/// The ward stream carries every patient of the caller's care teams on one connection,
/// and nothing of anyone else's patients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ward_stream_carries_my_patients_and_no_one_elses() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let other_ward = server.ward().await;
    // A second patient in the first ward's care team.
    let second = server
        .post_ok(
            &ward.admin,
            "/api/v1/patients",
            json!({"display_name": "Second Patient"}),
        )
        .await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    server
        .post_ok(
            &ward.admin,
            &format!("/api/v1/care-teams/{}/patients", ward.team_id),
            json!({"patient_id": second_id}),
        )
        .await;
    let second_device = server
        .enrol(&ward.admin, "pulse_oximeter", Some(&second_id))
        .await;
    let mut stream = server
        .events(&ward.clinician, "/api/v1/observations/stream")
        .await;
    let time = chrono::Utc::now().to_rfc3339();
    let post = |device, seq, code: &str, value: f64, unit: &str| {
        server.device_post(
            device,
            json!({"v": 1, "seq": seq, "code": code, "value": value, "unit": unit, "time": time}),
        )
    };
    post(&other_ward.device, 1, "99504-3", 99.0, "mg/dL").await;
    post(&ward.device, 1, "99504-3", 141.0, "mg/dL").await;
    post(&second_device, 1, "59408-5", 93.0, "%").await;
    let events = stream.all_within(Duration::from_secs(3)).await;
    let observed: Vec<(String, f64)> = events
        .iter()
        .filter(|(name, _)| name == "observation")
        .map(|(_, data)| {
            (
                data["patient_id"].as_str().unwrap().to_owned(),
                data["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert!(
        observed.contains(&(ward.patient_id.clone(), 141.0)),
        "{observed:?}"
    );
    assert!(
        observed.contains(&(second_id.clone(), 93.0)),
        "{observed:?}"
    );
    assert!(
        observed
            .iter()
            .all(|(patient, _)| *patient != other_ward.patient_id),
        "another team's patient leaked into the ward stream: {observed:?}"
    );
    // The NEWS2 recomputed from the second patient's SpO2 comes on the same connection.
    assert!(
        events
            .iter()
            .any(|(name, data)| name == "news2" && data["patient_id"] == json!(second_id)),
        "{events:?}"
    );
    // Opening it audits a read of each of the caller's patients.
    let audit: Value = server
        .get(
            &ward.admin,
            &format!(
                "/api/v1/audit?user_id={}&action=observations.stream_ward",
                ward.clinician.user_id
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    let mut audited: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["patient_id"].as_str().unwrap())
        .collect();
    audited.sort_unstable();
    let mut expected = vec![ward.patient_id.as_str(), second_id.as_str()];
    expected.sort_unstable();
    assert_eq!(audited, expected);
}

/// The README's example: Mosquitto's own command-line client, over TLS, both versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_publishes_over_tls_as_the_readme_shows() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    // As in the README: a pulse oximeter sending SpO2.
    let oximeter = server
        .enrol(&ward.admin, "pulse_oximeter", Some(&ward.patient_id))
        .await;
    let ca_path = server.report.ca_path.clone().expect("tls on");
    for (seq, version) in [(1, "mqttv311"), (2, "mqttv5")] {
        let payload = String::from_utf8(reading(seq, "59408-5", 98.0 - seq as f64, "%")).unwrap();
        let output = tokio::process::Command::new("mosquitto_pub")
            .arg("--cafile")
            .arg(&ca_path)
            .args([
                "-h",
                "localhost",
                "-p",
                &server.mqtt_port().to_string(),
                "-V",
                version,
            ])
            .args([
                "-i",
                &oximeter.id,
                "-u",
                &oximeter.id,
                "-P",
                &oximeter.secret,
                "-q",
                "1",
            ])
            .args(["-t", &topic(&oximeter), "-m", &payload])
            .output()
            .await
            .expect("mosquitto_pub is installed (Debian package mosquitto-clients)");
        assert!(
            output.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stored = server
        .observations(&ward.clinician, &ward.patient_id, "59408-5")
        .await;
    let values: Vec<f64> = stored
        .iter()
        .map(|observation| observation["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, vec![97.0, 96.0]);
}
