//! Nothing acknowledged is lost, even to `kill -9`.

use std::collections::BTreeSet;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_readings_survive_kill_9() {
    kill_9_mid_stream_loses_nothing(TestServer::start().await).await;
}

/// A device streams over MQTT; the server is killed (`kill -9`) half-way and started
/// again on the same store: every reading it acknowledged is there.
pub(crate) async fn kill_9_mid_stream_loses_nothing(mut server: TestServer) {
    let ward = server.ward().await;
    let options = mqtt_v311(&server, &ward.device, &ward.device.secret);
    let acked = stream_and_kill(&mut server, options, &ward.device, 2000).await;
    server.restart();
    let clinician = server
        .login(&ward.clinician_username, CLINICIAN_PASSWORD)
        .await;
    let stored: BTreeSet<i64> = server
        .observations(&clinician, &ward.patient_id, "99504-3")
        .await
        .iter()
        .map(|observation| observation["seq"].as_i64().expect("seq"))
        .collect();
    let lost: Vec<i64> = acked.difference(&stored).copied().collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged readings lost after kill -9: {lost:?}",
        lost.len()
    );
    assert!(acked.len() >= 1000);
}

/// A device streams readings `0..total` over MQTT (QoS 1, 200 in flight) to `server`,
/// which is killed (`kill -9`) once 1000 are acknowledged. Returns the seqs whose
/// acknowledgement arrived.
pub(crate) async fn stream_and_kill(
    server: &mut TestServer,
    mut options: rumqttc::MqttOptions,
    device: &EnrolledDevice,
    total: i64,
) -> BTreeSet<i64> {
    options.set_inflight(200);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let publisher = {
        let client = client.clone();
        let topic = topic(device);
        tokio::spawn(async move {
            for seq in 0..total {
                let value = 60.0 + (seq % 40) as f64;
                if client
                    .publish(
                        topic.clone(),
                        QoS::AtLeastOnce,
                        false,
                        reading(seq, "99504-3", value, "mg/dL"),
                    )
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    // Publishes leave in order, so the n-th outgoing publish carries seq n; map each
    // packet id back to its seq when the PUBACK arrives. Kill the server mid-stream.
    let mut in_flight: std::collections::HashMap<u16, i64> = std::collections::HashMap::new();
    let mut next_seq = 0i64;
    let mut acked: BTreeSet<i64> = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked.len() < 1000 {
        match tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("acks in time")
        {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                in_flight.insert(pkid, next_seq);
                next_seq += 1;
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(seq) = in_flight.remove(&ack.pkid) {
                    acked.insert(seq);
                }
            }
            Ok(_) => {}
            Err(error) => panic!("connection failed before the kill: {error}"),
        }
    }
    server.kill_hard();
    publisher.abort();
    // Drain whatever acknowledgements were already on the wire before the kill.
    while let Ok(Ok(event)) =
        tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await
    {
        if let Event::Incoming(Packet::PubAck(ack)) = event
            && let Some(seq) = in_flight.remove(&ack.pkid)
        {
            acked.insert(seq);
        }
    }
    acked
}
