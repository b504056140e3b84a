//! A device model read with a mapping template: the real server, an MQTT 5 client (a
//! device that knows nothing of Wardline's format), iomt-fhir's own IoT Hub template pair
//! from the shared data, and a restart after `kill -9` with the template still in force.

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PubAck, PubAckReason};
use serde_json::{Value, json};

use crate::support::*;

fn shared_template(name: &str) -> Value {
    let dir = std::env::var_os("WARDLINE_SHARED_DATA").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        std::path::PathBuf::from,
    );
    let file = dir
        .join("mapping-templates/iomt-fhir/test-input")
        .join(name);
    let bytes = std::fs::read(&file).unwrap_or_else(|error| {
        panic!(
            "{} could not be read ({error}); set WARDLINE_SHARED_DATA to the folder holding mapping-templates/",
            file.display()
        )
    });
    serde_json::from_slice(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes)).expect("json")
}

/// Publishes one message at QoS 1 and waits for its PUBACK: one reading per write, as a
/// device does.
async fn publish_and_wait(
    client: &rumqttc::v5::AsyncClient,
    eventloop: &mut rumqttc::v5::EventLoop,
    topic: &str,
    payload: Value,
) -> PubAck {
    client
        .publish(
            topic,
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            payload.to_string(),
        )
        .await
        .expect("queue the publish");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("PUBACK in time")
            .expect("mqtt connection");
        if let rumqttc::v5::Event::Incoming(Packet5::PubAck(ack)) = event {
            return ack;
        }
    }
}

fn reason(ack: &PubAck) -> String {
    ack.properties
        .as_ref()
        .and_then(|properties| properties.reason_string.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iot_hub_device_publishes_its_own_json_over_mqtt_and_the_template_survives_a_restart() {
    let mut server = TestServer::start().await;
    let ward = server.ward().await;
    let enrolled = server
        .post_ok(
            &ward.admin,
            "/api/v1/devices",
            json!({"kind": "pulse_oximeter", "model": "IoT heart monitor", "serial": "hm-7", "patient_id": ward.patient_id}),
        )
        .await;
    let device = EnrolledDevice {
        id: enrolled["device"]["id"].as_str().expect("id").to_owned(),
        secret: enrolled["secret"].as_str().expect("secret").to_owned(),
    };
    let registered = server
        .post_ok(
            &ward.admin,
            "/api/v1/mapping-templates",
            json!({
                "model": "IoT heart monitor",
                "device_template": shared_template("data_IotJsonPathContentTemplateValid.json"),
                "fhir_template": shared_template("data_CodeValueFhirTemplate_SampledData.json"),
            }),
        )
        .await;
    let id = registered["id"].as_str().expect("template id").to_owned();
    server
        .post_ok(
            &ward.admin,
            &format!("/api/v1/mapping-templates/{id}/in-force"),
            json!({}),
        )
        .await;

    let topic = topic(&device);
    {
        let (client, mut eventloop) =
            rumqttc::v5::AsyncClient::new(mqtt_v5(&server, &device, &device.secret), 10);
        let stored =
            publish_and_wait(&client, &mut eventloop, &topic, json!({"heartrate": "72"})).await;
        assert_eq!(stored.reason, PubAckReason::Success, "{}", reason(&stored));
        // A message the template cannot read is refused, naming why; the connection
        // carries on.
        let refused =
            publish_and_wait(&client, &mut eventloop, &topic, json!({"battery": 40})).await;
        assert_eq!(refused.reason, PubAckReason::PayloadFormatInvalid);
        assert!(
            reason(&refused).starts_with("$: the message matches none of the template's"),
            "{}",
            reason(&refused)
        );
        let impossible =
            publish_and_wait(&client, &mut eventloop, &topic, json!({"heartrate": "abc"})).await;
        assert_eq!(impossible.reason, PubAckReason::PayloadFormatInvalid);
        assert!(
            reason(&impossible).starts_with("heartrate.hr: \"abc\" is not a number"),
            "{}",
            reason(&impossible)
        );
        let next =
            publish_and_wait(&client, &mut eventloop, &topic, json!({"heartrate": 75})).await;
        assert_eq!(next.reason, PubAckReason::Success, "{}", reason(&next));
    }

    // kill -9, then start again: the template is still in force for the first message.
    server.kill_hard();
    server.restart();
    let (client, mut eventloop) =
        rumqttc::v5::AsyncClient::new(mqtt_v5(&server, &device, &device.secret), 10);
    let after = publish_and_wait(&client, &mut eventloop, &topic, json!({"heartrate": 80})).await;
    assert_eq!(after.reason, PubAckReason::Success, "{}", reason(&after));

    let clinician = server
        .login(&ward.clinician_username, CLINICIAN_PASSWORD)
        .await;
    let heart_rates: Vec<f64> = server
        .observations(&clinician, &ward.patient_id, "8867-4")
        .await
        .iter()
        .map(|observation| observation["value"].as_f64().expect("value"))
        .collect();
    assert_eq!(heart_rates, [72.0, 75.0, 80.0]);
}
