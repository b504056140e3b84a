//! Every committed reading reaches rule evaluation and analysis: when the alarm engine is
//! slower than ingest, and across `kill -9`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::{Value, json};

use crate::support::*;

/// Assigns the diabetes programme's default rules to the ward's patient.
async fn diabetes_plan(server: &TestServer, ward: &Ward) {
    server
        .client
        .put(server.url(&format!("/api/v1/patients/{}/care-plan", ward.patient_id)))
        .bearer_auth(&ward.clinician.token)
        .json(&json!({"program": "diabetes", "reason": "type 1 diabetes on CGM"}))
        .send()
        .await
        .expect("care plan")
        .error_for_status()
        .expect("care plan assigned");
}

/// The ward patient's alarms of one rule, with their history.
pub(crate) async fn alarms_of(server: &TestServer, ward: &Ward, rule: &str) -> Vec<Value> {
    let response = server
        .get(
            &ward.clinician,
            &format!("/api/v1/patients/{}/alarms?limit=500", ward.patient_id),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    body["alarms"]
        .as_array()
        .expect("alarms")
        .iter()
        .filter(|alarm| alarm["rule_id"] == rule)
        .cloned()
        .collect()
}

/// How many times the alarm's history says it opened.
pub(crate) fn opened(alarm: &Value) -> usize {
    alarm["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|event| event["event"] == "opened")
        .count()
}

/// Load devices publish QoS 1 readings as fast as the server acknowledges them for 30 s,
/// while the alarm engine is slowed to less than that rate; a probe patient's one urgent
/// low is hidden among them. The engine falls behind, catches up, evaluates every reading
/// stored, raises the probe's alarm once, and drops nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_reading_is_evaluated_by_an_engine_slower_than_ingest() {
    // The load is paced at about 10,000 readings/s, which the 2-core machines here store
    // even while other tests run (unpaced, a busy machine stored 9,400/s and a quiet one
    // 38,000/s). 150 µs more per event keeps the engine under 6,700 events/s, so it falls
    // behind all through the load and catches up afterwards in seconds.
    let server =
        TestServer::start_with_env(&[("WARDLINE_TEST_ALARM_EVALUATION_DELAY_US", "150")]).await;
    let probe = server.ward().await;
    diabetes_plan(&server, &probe).await;
    let admin = server.admin().await;
    // The load's patient has a care plan too, so the engine evaluates the load's readings
    // against rules instead of passing them over as readings without any.
    let load_ward = server.ward().await;
    diabetes_plan(&server, &load_ward).await;
    let load_patient = load_ward.patient_id.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let mut publishers = Vec::new();
    for _ in 0..6 {
        let device = server
            .enrol(&admin, "pulse_oximeter", Some(&load_patient))
            .await;
        let mut options = mqtt_v311(&server, &device, &device.secret);
        options.set_inflight(100);
        let (client, mut eventloop) = AsyncClient::new(options, 200);
        let topic = topic(&device);
        let stop_publishing = Arc::clone(&stop);
        publishers.push(tokio::spawn(async move {
            let mut seq = 0;
            // 17 readings every 10 ms: 1,700/s from each of the six devices.
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            'load: while !stop_publishing.load(Ordering::Relaxed) {
                tick.tick().await;
                for _ in 0..17 {
                    if client
                        .publish(
                            topic.clone(),
                            QoS::AtLeastOnce,
                            false,
                            reading(seq, "59408-5", 90.0 + (seq % 9) as f64, "%"),
                        )
                        .await
                        .is_err()
                    {
                        break 'load;
                    }
                    seq += 1;
                }
            }
        }));
        let counted = Arc::clone(&acked);
        let stop_counting = Arc::clone(&stop);
        publishers.push(tokio::spawn(async move {
            loop {
                match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
                    Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Ok(_)) => {}
                    _ if stop_counting.load(Ordering::Relaxed) => break,
                    Ok(Err(error)) => panic!("load connection failed: {error}"),
                    Err(_) => {}
                }
            }
        }));
    }
    // The probe's CGM: a reading a second, one of them 45 mg/dL, half-way through.
    let started = tokio::time::Instant::now();
    let mut seq = 0;
    let mut most_behind = 0.0f64;
    while started.elapsed() < Duration::from_secs(30) {
        let value = if seq == 15 { 45.0 } else { 130.0 };
        server
            .device_post(&probe.device, glucose_at(seq, value, Utc::now()))
            .await;
        seq += 1;
        if seq % 5 == 0 {
            let text = server.metrics().await;
            let behind = metric(&text, "wardline_ingest_readings_stored_total")
                - metric(&text, "wardline_alarm_readings_evaluated_total");
            most_behind = most_behind.max(behind);
        }
        tokio::time::sleep_until(started + Duration::from_secs(seq as u64)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for publisher in publishers {
        let _ = publisher.await;
    }
    let acknowledged = acked.load(Ordering::Relaxed);
    assert!(acknowledged > 20_000, "load was {acknowledged} readings");
    assert!(
        most_behind > 5_000.0,
        "the slowed engine should have fallen behind ingest (at most {most_behind} behind; {acknowledged} load readings acknowledged in 30 s)"
    );

    let catching_up = tokio::time::Instant::now();
    let evaluated = server.evaluated_everything(Duration::from_secs(240)).await;
    eprintln!(
        "{acknowledged} load readings acknowledged in 30 s; the engine was at most {most_behind} behind and caught up {:.1} s after the load stopped",
        catching_up.elapsed().as_secs_f64()
    );
    let text = server.metrics().await;
    let stored = metric(&text, "wardline_ingest_readings_stored_total");
    assert_eq!(evaluated, stored, "every reading stored was evaluated");
    assert!(stored >= acknowledged as f64 + f64::from(seq as i32));
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        if line.contains("_dropped_total") {
            let value: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            assert_eq!(value, 0.0, "{line}");
        }
    }
    let urgent = alarms_of(&server, &probe, "urgent-low").await;
    assert_eq!(urgent.len(), 1, "the hidden urgent low raised one alarm");
    assert_eq!(opened(&urgent[0]), 1);
}

/// `kill -9` while a low is 7 of its 15 minutes old: after the restart the alarm comes
/// with the reading that completes the 15 minutes (not 15 minutes after the restart), and
/// only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_half_way_through_a_duration_raises_the_alarm_once_at_the_right_reading() {
    let mut server = TestServer::start().await;
    let ward = server.ward().await;
    diabetes_plan(&server, &ward).await;
    let t0 = Utc::now() - chrono::Duration::minutes(40);
    let at = |minute: i64| t0 + chrono::Duration::minutes(minute);
    // A CGM assigned from before the readings' times.
    let cgm = server.enrol(&ward.admin, "cgm", None).await;
    server
        .post_ok(
            &ward.admin,
            &format!("/api/v1/devices/{}/assignments", cgm.id),
            json!({"patient_id": ward.patient_id, "from": (t0 - chrono::Duration::hours(1)).to_rfc3339()}),
        )
        .await;
    let ward = Ward {
        device: cgm,
        ..ward
    };
    for minute in 0..=7 {
        server
            .device_post(&ward.device, glucose_at(minute, 65.0, at(minute)))
            .await;
    }
    server.evaluated_everything(Duration::from_secs(30)).await;
    server.kill_hard();
    server.restart();
    let ward = Ward {
        clinician: server
            .login(&ward.clinician_username, CLINICIAN_PASSWORD)
            .await,
        ..ward
    };
    for minute in 8..=14 {
        server
            .device_post(&ward.device, glucose_at(minute, 64.0, at(minute)))
            .await;
    }
    server.evaluated_everything(Duration::from_secs(30)).await;
    assert!(
        alarms_of(&server, &ward, "low").await.is_empty(),
        "14 minutes low: not yet an alarm"
    );
    server
        .device_post(&ward.device, glucose_at(15, 63.0, at(15)))
        .await;
    server.evaluated_everything(Duration::from_secs(30)).await;
    let low = alarms_of(&server, &ward, "low").await;
    assert_eq!(low.len(), 1, "the 15th minute completes the low: {low:?}");
    for minute in 16..=20 {
        server
            .device_post(&ward.device, glucose_at(minute, 62.0, at(minute)))
            .await;
    }
    server.evaluated_everything(Duration::from_secs(30)).await;
    let low = alarms_of(&server, &ward, "low").await;
    assert_eq!(low.len(), 1);
    assert_eq!(opened(&low[0]), 1, "raised once: {}", low[0]["events"]);
}

/// An ECG patch streams sinus rhythm; the server is killed with `kill -9` half-way and
/// restarted while the patch goes on. The analysis resumes the stream from the stored
/// signal: no pause, AF or other event is invented, and heart rate goes on every 10 s
/// without a gap or a double.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecg_stream_resumes_after_kill_9_without_a_spurious_event() {
    use wardline_sim::{CardiacScenario, Scenario, SyntheticEcgConfig};

    let mut server = TestServer::start().await;
    let ward = server.ward().await;
    let start = Utc::now() - chrono::Duration::minutes(10);
    let patch = server.enrol(&ward.admin, "ecg", None).await;
    server
        .post_ok(
            &ward.admin,
            &format!("/api/v1/devices/{}/assignments", patch.id),
            json!({"patient_id": ward.patient_id, "from": (start - chrono::Duration::hours(1)).to_rfc3339()}),
        )
        .await;
    let config = SyntheticEcgConfig {
        af_episodes: None,
        ..SyntheticEcgConfig::default()
    };
    let mut scenario = CardiacScenario::synthetic(
        CardiacScenario::standard_patient("ben", "Ben"),
        &patch.id,
        config,
        3,
        start,
    );
    let emissions = scenario.advance_to(start + chrono::Duration::minutes(6));
    let chunks: Vec<Vec<u8>> = emissions
        .into_iter()
        .map(|emission| emission.payload_bytes)
        .filter(|payload| String::from_utf8_lossy(payload).contains("\"waveform\""))
        .collect();
    assert_eq!(chunks.len(), 36, "six minutes of 10-s chunks");
    for chunk in chunks[..18].iter().cloned() {
        send_chunk(&server, &patch, chunk).await;
    }
    // Let the analysis get through what was sent before the crash.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while derived_rates(&server, &ward.clinician, &ward.patient_id)
        .await
        .len()
        < 16
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "heart rates derived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.kill_hard();
    server.restart();
    let clinician = server
        .login(&ward.clinician_username, CLINICIAN_PASSWORD)
        .await;
    for chunk in chunks[18..].iter().cloned() {
        send_chunk(&server, &patch, chunk).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let derived = loop {
        let derived = derived_rates(&server, &clinician, &ward.patient_id).await;
        if derived.len() >= 34 {
            break derived;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "heart rates after the restart: {}",
            derived.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // One rate per 10 s, every 10 s, from the first settled window to the last.
    let mut times: Vec<chrono::DateTime<Utc>> = derived
        .iter()
        .map(|text| {
            chrono::DateTime::parse_from_rfc3339(text)
                .expect("time")
                .with_timezone(&Utc)
        })
        .collect();
    times.sort();
    for pair in times.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_milliseconds(),
            10_000,
            "rates every 10 s without gap or double: {times:?}"
        );
    }
    let events = server
        .get(
            &clinician,
            &format!(
                "/api/v1/patients/{}/rhythm-events?from={}",
                ward.patient_id,
                (start - chrono::Duration::minutes(1))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        )
        .await
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(
        events.as_array().map(Vec::len),
        Some(0),
        "sinus rhythm throughout: no event: {events}"
    );
}

async fn send_chunk(server: &TestServer, device: &EnrolledDevice, payload: Vec<u8>) {
    let response = server.send_readings(device, payload).await;
    assert_eq!(response.status(), 200, "chunk stored");
}

/// The times of the heart rates derived from the patient's ECG.
async fn derived_rates(server: &TestServer, session: &Session, patient: &str) -> Vec<String> {
    server
        .observations(session, patient, "8867-4")
        .await
        .into_iter()
        .filter(|observation| observation["derived"] == true)
        .map(|observation| observation["effective"].as_str().unwrap_or("").to_owned())
        .collect()
}
