//! Two `wardline serve` workers on one PostgreSQL database, joined by NATS: one house
//! with two doors. Devices send to either, people log in on one and carry on at the
//! other, alarms raised from readings taken in at one are seen live at the other, and
//! when the worker that evaluates rules is killed, the other takes over from its
//! checkpoints without losing or repeating an alarm.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wardline_store::testsuite::postgres::TestDatabase;

use crate::alarms::{AlarmStream, add_rule, assign_program, glucose_above, post_glucose};
use crate::evaluation::{alarms_of, opened};
use crate::support::*;

/// The NATS server the tests use (`WARDLINE_TEST_NATS`, default the local one); each
/// test keeps to subjects of its own.
fn nats_url() -> String {
    std::env::var("WARDLINE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn cluster_env(database: &TestDatabase, prefix: &str) -> Vec<(String, String)> {
    vec![
        ("WARDLINE_STORE".into(), database.url()),
        ("WARDLINE_BUS".into(), nats_url()),
        ("WARDLINE_BUS_SUBJECT_PREFIX".into(), prefix.into()),
    ]
}

/// A subject prefix no other test (or run) uses.
fn new_prefix() -> String {
    format!("wardline-test-{}", uuid::Uuid::new_v4().simple())
}

fn copy_folder(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
    }
}

/// A second worker of `first`'s installation: its own data folder with the same
/// certificates, the same keys folder, the same database and bus. The harness's
/// administrator session is `first`'s, as a person's would be behind a load balancer.
pub(crate) fn another_worker(first: &TestServer) -> TestServer {
    let data = tempfile::tempdir().expect("temp dir");
    copy_folder(
        &first.data.path().join("server").join("tls"),
        &data.path().join("server").join("tls"),
    );
    let mut env = first.env.clone();
    env.push((
        "WARDLINE_KEYS_DIR".into(),
        first.data.path().join("server-keys").display().to_string(),
    ));
    let (child, report, _) = spawn(data.path(), &env);
    let client = http_client(report.ca_path.as_deref().expect("tls on"));
    TestServer {
        data,
        child,
        report,
        admin_password: first.admin_password.clone(),
        client,
        env,
        admin_second_factor: None,
        admin_session: first.admin_session.clone(),
    }
}

/// Each alarm was opened exactly once, and there are `count` of them.
fn opened_once_each(alarms: &[Value], count: usize, whose: &str) {
    assert_eq!(alarms.len(), count, "{whose}: {alarms:#?}");
    for alarm in alarms {
        assert_eq!(opened(alarm), 1, "{whose}: {alarm:#?}");
    }
}

const RULE: &str = "cluster-high";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_act_as_one_and_the_second_takes_over_from_a_killed_first() {
    let database = TestDatabase::create().await;
    let env = cluster_env(&database, &new_prefix());
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let mut a = TestServer::start_with_env(&env).await;
    let b = another_worker(&a);
    // The first worker evaluates; the second stands by.
    assert_eq!(
        metric(&a.metrics().await, "wardline_evaluation_lease_held"),
        1.0
    );
    assert_eq!(
        metric(&b.metrics().await, "wardline_evaluation_lease_held"),
        0.0
    );

    let mut wards = Vec::new();
    for _ in 0..4 {
        wards.push(a.ward().await);
    }
    // Care plans changed at either worker go to the one engine.
    for (index, ward) in wards.iter().enumerate() {
        let at = if index % 2 == 0 { &a } else { &b };
        assign_program(at, &ward.clinician, &ward.patient_id, "diabetes").await;
        add_rule(&b, ward, glucose_above(RULE, 300.0)).await;
    }

    // Each patient's condition starts, persists, clears and starts again, each reading
    // sent to the other worker than the one before: two alarms each, seen on B's
    // streams, whichever worker took the reading in.
    let mut streams = Vec::new();
    for ward in &wards {
        streams.push(AlarmStream::open(&b, &ward.clinician).await);
    }
    for (ward, stream) in wards.iter().zip(&mut streams) {
        for (seq, value) in [(1, 350.0), (2, 360.0), (3, 200.0), (4, 355.0)] {
            let at = if seq % 2 == 1 { &a } else { &b };
            post_glucose(at, &ward.device, seq, value).await;
        }
        for event in ["opened", "resolved", "opened"] {
            stream
                .expect(Duration::from_secs(10), |seen| {
                    seen["event"] == event && seen["alarm"]["rule_id"] == RULE
                })
                .await;
        }
    }
    for ward in &wards {
        opened_once_each(&alarms_of(&b, ward, RULE).await, 2, &ward.patient_id);
    }

    // Readings taken in at A appear live on B's stream.
    let mut readings = b
        .events(
            &wards[2].clinician,
            &format!(
                "/api/v1/patients/{}/observations/stream",
                wards[2].patient_id
            ),
        )
        .await;
    post_glucose(&a, &wards[2].device, 5, 120.0).await;
    // The stream starts with the patient's recent readings; the new one follows.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let within = deadline.saturating_duration_since(Instant::now());
        let seen = readings.next("observation", within).await;
        if seen["value"] == json!(120.0) {
            break;
        }
    }

    // An alarm acknowledged at B is acknowledged by A's engine, and B's stream says so.
    let open = alarms_of(&b, &wards[0], RULE)
        .await
        .into_iter()
        .find(|alarm| alarm["state"]["status"] != "resolved")
        .expect("an open alarm");
    let alarm_id = open["id"].as_str().expect("alarm id");
    let acknowledged = b
        .post(
            &wards[0].clinician,
            &format!("/api/v1/alarms/{alarm_id}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(
        acknowledged.status(),
        200,
        "{:?}",
        acknowledged.text().await
    );
    streams[0]
        .expect(Duration::from_secs(10), |seen| {
            seen["event"] == "acknowledged" && seen["alarm"]["id"] == json!(alarm_id)
        })
        .await;

    // A session opened at B works at A; logging out at A ends it at B too.
    let session = b
        .login(&wards[1].clinician_username, CLINICIAN_PASSWORD)
        .await;
    let path = format!("/api/v1/patients/{}/alarms", wards[1].patient_id);
    assert_eq!(a.get(&session, &path).await.status(), 200);
    let logout = a.post(&session, "/api/v1/auth/logout", json!({})).await;
    assert_eq!(logout.status(), 204);
    assert_eq!(b.get(&session, &path).await.status(), 401);

    // A device connected to B is disconnected when revoked at A.
    let (client, mut eventloop) =
        rumqttc::AsyncClient::new(mqtt_v311(&b, &wards[3].device, &wards[3].device.secret), 10);
    publish_qos1(
        &client,
        &wards[3].device,
        reading(50, "99504-3", 120.0, "mg/dL"),
    )
    .await;
    await_pubacks(&mut eventloop, 1).await;
    revoke_and_see_it_dropped(&a, &wards[0].admin, &wards[3].device.id, &mut eventloop).await;

    // A dies. B takes the lease, resumes from A's checkpoints and evaluates what
    // arrives meanwhile: ward 1's condition clears and starts again.
    a.kill_hard();
    let killed = Instant::now();
    post_glucose(&b, &wards[1].device, 5, 200.0).await;
    post_glucose(&b, &wards[1].device, 6, 380.0).await;
    streams[1]
        .expect(Duration::from_secs(30), |seen| {
            seen["event"] == "opened" && seen["alarm"]["rule_id"] == RULE
        })
        .await;
    let took_over = killed.elapsed();
    println!(
        "after kill -9 of the evaluating worker, an alarm opened on the other in {took_over:?}"
    );
    assert_eq!(
        metric(&b.metrics().await, "wardline_evaluation_lease_held"),
        1.0
    );

    // No alarm raised twice by the takeover's replay, none lost.
    opened_once_each(
        &alarms_of(&b, &wards[1], RULE).await,
        3,
        "ward 1 after the takeover",
    );
    for ward in [&wards[0], &wards[2], &wards[3]] {
        opened_once_each(&alarms_of(&b, ward, RULE).await, 2, &ward.patient_id);
    }
    // Commands go to the new engine: acknowledging at B works again.
    let open = alarms_of(&b, &wards[1], RULE)
        .await
        .into_iter()
        .find(|alarm| alarm["state"]["status"] != "resolved")
        .expect("an open alarm");
    let acknowledged = b
        .post(
            &wards[1].clinician,
            &format!(
                "/api/v1/alarms/{}/acknowledge",
                open["id"].as_str().expect("id")
            ),
            json!({}),
        )
        .await;
    assert_eq!(acknowledged.status(), 200);
}
