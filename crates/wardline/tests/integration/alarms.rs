//! Alarms end to end over real sockets: care plans changed through the API, readings
//! that open alarms seen on the SSE stream, escalation on a shortened timer, device
//! silence, a signed webhook to a receiver that is down for a while, e-mail to a real
//! SMTP server (Python's aiosmtpd), a restart that loses nothing, and a clinician off the
//! care team who can neither see nor act.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::support::*;

const GLUCOSE: &str = "99504-3";

/// An alarm stream reader: every `alarm` event's data, in order.
pub(crate) struct AlarmStream {
    events: mpsc::UnboundedReceiver<Value>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AlarmStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AlarmStream {
    pub(crate) async fn open(server: &TestServer, session: &Session) -> AlarmStream {
        // No overall timeout: the stream stays open for the whole test.
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls_client_config(&server.ca_pem()))
            .build()
            .expect("client");
        let response = client
            .get(server.url("/api/v1/alarms/stream"))
            .bearer_auth(&session.token)
            .send()
            .await
            .expect("stream request");
        assert_eq!(response.status(), 200, "alarm stream");
        let (sender, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut stream = EventStream::new(response);
            let open_for = tokio::time::Instant::now() + Duration::from_secs(3600);
            while let Some((name, data)) = stream.next_any(open_for).await {
                if name == "alarm" {
                    let _ = sender.send(data);
                }
            }
        });
        // Let the server subscribe before anything happens.
        tokio::time::sleep(Duration::from_millis(300)).await;
        AlarmStream { events, task }
    }

    /// The next event matching `wanted` within `within`; earlier ones are skipped.
    pub(crate) async fn expect(
        &mut self,
        within: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_for(within, wanted)
            .await
            .expect("the awaited alarm event did not arrive in time")
    }

    /// The first wanted event within `within`, or `None`.
    pub(crate) async fn wait_for(
        &mut self,
        within: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .ok()?
                .expect("stream open");
            if wanted(&event) {
                return Some(event);
            }
        }
    }

    /// Every event that arrives within `within`.
    async fn collect(&mut self, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut events = Vec::new();
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            events.push(event);
        }
        events
    }
}

fn is(event: &str) -> impl Fn(&Value) -> bool + '_ {
    move |value: &Value| value["event"] == json!(event)
}

pub(crate) async fn post_glucose(
    server: &TestServer,
    device: &EnrolledDevice,
    seq: i64,
    value: f64,
) {
    let response = server
        .send_readings(device, reading(seq, GLUCOSE, value, "mg/dL"))
        .await;
    assert_eq!(response.status(), 200, "reading stored");
}

pub(crate) async fn put(
    server: &TestServer,
    session: &Session,
    path: &str,
    body: Value,
) -> reqwest::Response {
    server
        .client
        .put(server.url(path))
        .bearer_auth(&session.token)
        .json(&body)
        .send()
        .await
        .expect("PUT")
}

pub(crate) async fn put_ok(
    server: &TestServer,
    session: &Session,
    path: &str,
    body: Value,
) -> Value {
    let response = put(server, session, path, body).await;
    let status = response.status();
    let text = response.text().await.expect("body");
    assert!(status.is_success(), "PUT {path}: {status} {text}");
    serde_json::from_str(&text).expect("json")
}

async fn get_json(server: &TestServer, session: &Session, path: &str) -> (u16, Value) {
    let response = server.get(session, path).await;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

pub(crate) async fn assign_program(
    server: &TestServer,
    session: &Session,
    patient_id: &str,
    program: &str,
) {
    let record = put_ok(
        server,
        session,
        &format!("/api/v1/patients/{patient_id}/care-plan"),
        json!({"program": program, "reason": "enrolled in remote monitoring"}),
    )
    .await;
    assert_eq!(record["plan"]["program"], json!(program));
}

/// A rule added to the patient's plan by the ward's clinician.
pub(crate) async fn add_rule(server: &TestServer, ward: &Ward, rule: Value) -> Value {
    put_ok(
        server,
        &ward.clinician,
        &format!("/api/v1/patients/{}/care-plan", ward.patient_id),
        json!({"reason": "test rule", "edit": {"op": "add", "rule": rule}}),
    )
    .await
}

pub(crate) fn glucose_above(id: &str, limit: f64) -> Value {
    json!({
        "id": id, "name": format!("glucose above {limit}"), "priority": "high",
        "resolve_on_clear": true,
        "kind": {"type": "threshold", "code": "glucose_cgm", "direction": "above",
                 "value": limit, "min_duration_secs": 0, "hysteresis": 10}
    })
}

/// A clinician who is on no care team.
async fn outsider(server: &TestServer, ward: &Ward) -> Session {
    server
        .post_ok(
            &ward.admin,
            "/api/v1/users",
            json!({"username": "outsider", "display_name": "Dr Elsewhere", "role": "clinician", "password": CLINICIAN_PASSWORD, "password_change_required": false}),
        )
        .await;
    server.login("outsider", CLINICIAN_PASSWORD).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_out_of_range_opens_an_alarm_on_the_stream_and_clearing_resolves_it() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let outsider = outsider(&server, &ward).await;
    let plan_path = format!("/api/v1/patients/{}/care-plan", ward.patient_id);

    assign_program(&server, &ward.clinician, &ward.patient_id, "diabetes").await;
    let version_2 = add_rule(&server, &ward, glucose_above("test-high", 300.0)).await;
    assert_eq!(version_2["version"], json!(2));
    assert_eq!(version_2["reason"], json!("test rule"));
    assert_eq!(version_2["old_rule"], Value::Null);
    assert_eq!(version_2["new_rule"]["id"], json!("test-high"));
    assert_eq!(version_2["author_label"], json!(ward.clinician_username));
    let (_, versions) = get_json(&server, &ward.clinician, &format!("{plan_path}/versions")).await;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
    let first_effective = versions["versions"][0]["effective"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, at_first) = get_json(
        &server,
        &ward.clinician,
        &format!("{plan_path}?at={}", first_effective.replace('+', "%2B")),
    )
    .await;
    assert_eq!(at_first["version"], json!(1), "the plan in force then");
    // Off the care team: no plan, no changes.
    assert_eq!(server.get(&outsider, &plan_path).await.status(), 403);
    let refused = put(
        &server,
        &outsider,
        &plan_path,
        json!({"reason": "x", "program": "cardiac"}),
    )
    .await;
    assert_eq!(refused.status(), 403);

    let mut stream = AlarmStream::open(&server, &ward.clinician).await;
    let mut outsider_stream = AlarmStream::open(&server, &outsider).await;
    post_glucose(&server, &ward.device, 1, 350.0).await;
    let opened = stream
        .expect(Duration::from_secs(10), |event| {
            event["event"] == json!("opened") && event["alarm"]["rule_id"] == json!("test-high")
        })
        .await;
    let alarm = &opened["alarm"];
    assert_eq!(alarm["priority"], json!("high"));
    assert_eq!(alarm["kind"], json!("physiological"));
    assert_eq!(alarm["state_name"], json!("open"));
    assert_eq!(alarm["care_plan_version"], json!(2));
    let alarm_id = alarm["id"].as_str().unwrap().to_owned();

    // The inbox has it; the alarm shows the rule set in force when it was raised.
    let (_, inbox) = get_json(&server, &ward.clinician, "/api/v1/alarms").await;
    assert!(
        inbox["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == json!(alarm_id))
    );
    let (status, detail) = get_json(
        &server,
        &ward.clinician,
        &format!("/api/v1/alarms/{alarm_id}"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(detail["care_plan"]["version"], json!(2));
    assert!(
        detail["care_plan"]["plan"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|rule| rule["id"] == json!("test-high"))
    );

    // A clinician off the care team sees nothing and cannot acknowledge; to them the
    // alarm's handle is one that does not exist.
    let (_, other_inbox) = get_json(&server, &outsider, "/api/v1/alarms").await;
    assert_eq!(other_inbox["alarms"], json!([]));
    assert_eq!(
        server
            .get(&outsider, &format!("/api/v1/alarms/{alarm_id}"))
            .await
            .status(),
        404
    );
    assert_eq!(
        server
            .get(
                &outsider,
                &format!("/api/v1/patients/{}/alarms", ward.patient_id)
            )
            .await
            .status(),
        403
    );
    let refused = server
        .post(
            &outsider,
            &format!("/api/v1/alarms/{alarm_id}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(refused.status(), 404);

    // One open alarm per condition: more readings out of range open nothing new.
    post_glucose(&server, &ward.device, 2, 360.0).await;
    // The condition clears: the alarm resolves by itself.
    post_glucose(&server, &ward.device, 3, 200.0).await;
    let resolved = stream.expect(Duration::from_secs(10), is("resolved")).await;
    assert_eq!(resolved["alarm"]["id"], json!(alarm_id));
    assert_eq!(
        resolved["alarm"]["state"]["resolution"]["by"],
        json!("condition_cleared")
    );
    let (_, history) = get_json(
        &server,
        &ward.clinician,
        &format!("/api/v1/patients/{}/alarms", ward.patient_id),
    )
    .await;
    let alarms = history["alarms"].as_array().unwrap();
    assert_eq!(alarms.len(), 1, "{history}");
    assert_eq!(alarms[0]["state_name"], json!("resolved"));
    let events: Vec<&str> = alarms[0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["event"].as_str().unwrap())
        .collect();
    assert_eq!(events.first(), Some(&"opened"));
    assert_eq!(events.last(), Some(&"resolved"));

    assert!(
        outsider_stream
            .collect(Duration::from_millis(300))
            .await
            .is_empty(),
        "the outsider's stream carries nothing of this patient"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_high_alarm_escalates_and_acknowledging_stops_it() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    // The care team assigns the programme.
    assign_program(&server, &ward.clinician, &ward.patient_id, "diabetes").await;
    put_ok(
        &server,
        &ward.admin,
        &format!("/api/v1/care-teams/{}/escalation-policy", ward.team_id),
        json!({
            "steps": [
                {"after_secs": 0, "notify": [{"to": "care_team", "care_team_id": ward.team_id}]},
                {"after_secs": 2, "notify": [{"to": "user", "user_id": ward.clinician.user_id}]}
            ],
            "repeat_after_secs": 2,
            "max_rounds": 10
        }),
    )
    .await;
    let mut stream = AlarmStream::open(&server, &ward.clinician).await;
    // Urgent low: high priority, raised on the first reading.
    post_glucose(&server, &ward.device, 1, 45.0).await;
    let opened = stream.expect(Duration::from_secs(10), is("opened")).await;
    assert_eq!(opened["alarm"]["rule_id"], json!("urgent-low"));
    let alarm_id = opened["alarm"]["id"].as_str().unwrap().to_owned();
    let first = stream.expect(Duration::from_secs(5), is("notified")).await;
    assert_eq!(first["notification"]["level"], json!(1));
    let started = Instant::now();
    let escalated = stream.expect(Duration::from_secs(10), is("notified")).await;
    assert_eq!(escalated["notification"]["level"], json!(2));
    assert_eq!(escalated["notification"]["reason"], json!("escalated"));
    assert_eq!(
        escalated["notification"]["recipients"][0]["user_id"],
        json!(ward.clinician.user_id)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "escalated only after the delay"
    );
    // Where the escalation stands, with the names of whom it notifies next.
    let status = &escalated["alarm"]["escalation_status"];
    assert_eq!(
        (&status["levels"], &status["level"], &status["round"]),
        (&json!(2), &json!(2), &json!(1)),
        "{status}"
    );
    assert_eq!(status["next"]["level"], json!(1), "{status}");
    assert_eq!(status["next"]["round"], json!(2), "{status}");
    assert_eq!(
        escalated["alarm"]["names"][&ward.team_id],
        json!(format!("Team {}", ward.patient_id))
    );

    let acknowledged = server
        .post_ok(
            &ward.clinician,
            &format!("/api/v1/alarms/{alarm_id}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(acknowledged["state_name"], json!("acknowledged"));
    assert_eq!(acknowledged["state"]["by"], json!(ward.clinician.user_id));
    stream
        .expect(Duration::from_secs(5), is("acknowledged"))
        .await;
    // Who acknowledged it, by name; the escalation stopped where it was.
    let (_, shown) = get_json(
        &server,
        &ward.clinician,
        &format!("/api/v1/alarms/{alarm_id}"),
    )
    .await;
    assert_eq!(
        shown["names"][&ward.clinician.user_id],
        json!("Dr Clinician"),
        "{shown}"
    );
    assert_eq!(shown["escalation_status"]["next"], Value::Null, "{shown}");
    assert!(
        shown["escalation_status"]["level"]
            .as_u64()
            .is_some_and(|level| level >= 1)
    );
    let later = stream.collect(Duration::from_secs(5)).await;
    assert!(
        later
            .iter()
            .all(|event| event["event"] != json!("notified")),
        "no notification after the acknowledgement: {later:?}"
    );
    let again = server
        .post(
            &ward.clinician,
            &format!("/api/v1/alarms/{alarm_id}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(again.status(), 409);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("invalid_state"));
    // Snoozes are bounded by priority; a person resolves a latching alarm with a note.
    let too_long = server
        .post(
            &ward.clinician,
            &format!("/api/v1/alarms/{alarm_id}/snooze"),
            json!({"minutes": 600}),
        )
        .await;
    assert_eq!(
        too_long.status(),
        409,
        "an acknowledged alarm has nothing to snooze"
    );
    let no_note = server
        .post(
            &ward.clinician,
            &format!("/api/v1/alarms/{alarm_id}/resolve"),
            json!({"note": " "}),
        )
        .await;
    assert_eq!(no_note.status(), 400);
    let resolved = server
        .post_ok(
            &ward.clinician,
            &format!("/api/v1/alarms/{alarm_id}/resolve"),
            json!({"note": "called the patient; treated"}),
        )
        .await;
    assert_eq!(resolved["state_name"], json!("resolved"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snoozed_alarm_comes_back_when_the_snooze_ends() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    assign_program(&server, &ward.clinician, &ward.patient_id, "diabetes").await;
    let mut stream = AlarmStream::open(&server, &ward.clinician).await;
    post_glucose(&server, &ward.device, 1, 45.0).await;
    let opened = stream.expect(Duration::from_secs(10), is("opened")).await;
    let alarm_id = opened["alarm"]["id"].as_str().unwrap().to_owned();
    let too_long = server
        .post(
            &ward.clinician,
            &format!("/api/v1/alarms/{alarm_id}/snooze"),
            json!({"minutes": 31}),
        )
        .await;
    assert_eq!(
        too_long.status(),
        400,
        "a high priority alarm snoozes 30 min at most"
    );
    let snoozed = server
        .post_ok(
            &ward.clinician,
            &format!("/api/v1/alarms/{alarm_id}/snooze"),
            json!({"seconds": 2}),
        )
        .await;
    assert_eq!(snoozed["state_name"], json!("snoozed"));
    let back = stream
        .expect(Duration::from_secs(10), is("snooze_expired"))
        .await;
    assert_eq!(back["alarm"]["state_name"], json!("open"));
    let reminder = stream.expect(Duration::from_secs(5), is("notified")).await;
    assert_eq!(reminder["notification"]["reason"], json!("snooze_expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_raises_a_technical_alarm_on_the_timer() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    assign_program(&server, &ward.clinician, &ward.patient_id, "diabetes").await;
    let mut stream = AlarmStream::open(&server, &ward.clinician).await;
    add_rule(
        &server,
        &ward,
        json!({
            "id": "test-silent", "name": "no data from the test CGM", "priority": "medium",
            "resolve_on_clear": true,
            "kind": {"type": "device_silence", "devices": {"by": "device", "device_id": ward.device.id},
                     "after_secs": 2}
        }),
    )
    .await;
    // Nothing is sent: only the timer can notice.
    let opened = stream
        .expect(Duration::from_secs(10), |event| {
            event["event"] == json!("opened") && event["alarm"]["rule_id"] == json!("test-silent")
        })
        .await;
    assert_eq!(opened["alarm"]["kind"], json!("technical"));
    assert_eq!(opened["alarm"]["priority"], json!("medium"));
    post_glucose(&server, &ward.device, 1, 110.0).await;
    let resolved = stream.expect(Duration::from_secs(10), is("resolved")).await;
    assert_eq!(resolved["alarm"]["rule_id"], json!("test-silent"));

    // A device-reported fault is a technical alarm too (the diabetes plan's cgm-fault).
    let status = |body: Value| {
        server
            .client
            .post(server.url(&format!("/api/v1/devices/{}/status", ward.device.id)))
            .bearer_auth(&ward.device.secret)
            .json(&body)
            .send()
    };
    assert_eq!(
        status(json!({"battery_percent": 140}))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        status(json!({"fault": "sensor error", "battery_percent": 80}))
            .await
            .unwrap()
            .status(),
        202
    );
    let fault = stream
        .expect(Duration::from_secs(10), |event| {
            event["event"] == json!("opened") && event["alarm"]["rule_id"] == json!("cgm-fault")
        })
        .await;
    assert_eq!(fault["alarm"]["kind"], json!("technical"));
    assert_eq!(
        status(json!({"fault": null, "battery_percent": 80}))
            .await
            .unwrap()
            .status(),
        202
    );
    let cleared = stream.expect(Duration::from_secs(10), is("resolved")).await;
    assert_eq!(cleared["alarm"]["rule_id"], json!("cgm-fault"));
    let wrong_secret = server
        .client
        .post(server.url(&format!("/api/v1/devices/{}/status", ward.device.id)))
        .bearer_auth("wds_wrong")
        .json(&json!({"fault": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_secret.status(), 401);
}

/// A webhook receiver that checks Wardline's signature and can be started late.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    secret: Arc<Mutex<Vec<u8>>>,
    pub(crate) deliveries: Arc<Mutex<Vec<Value>>>,
    bad_signatures: Arc<AtomicUsize>,
}

impl Receiver {
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> bool {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (Some(timestamp), Some(signature)) = (
            header("x-wardline-timestamp"),
            header("x-wardline-signature"),
        ) else {
            return false;
        };
        let Ok(seconds) = timestamp.parse::<i64>() else {
            return false;
        };
        if (chrono::Utc::now().timestamp() - seconds).abs() > 300 {
            return false;
        }
        let secret = self.secret.lock().expect("lock").clone();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
        let mut signed = timestamp.into_bytes();
        signed.push(b'.');
        signed.extend_from_slice(body);
        let Some(hex_signature) = signature.strip_prefix("sha256=") else {
            return false;
        };
        let Ok(tag) = hex::decode(hex_signature) else {
            return false;
        };
        ring::hmac::verify(&key, &signed, &tag).is_ok()
    }

    /// Serves on `address` from now on.
    pub(crate) async fn start(&self, address: SocketAddr) -> tokio::task::JoinHandle<()> {
        let receiver = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let receiver = receiver.clone();
                async move {
                    if !receiver.verify(&headers, &body) {
                        receiver.bad_signatures.fetch_add(1, Ordering::SeqCst);
                        return StatusCode::UNAUTHORIZED;
                    }
                    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    receiver.deliveries.lock().expect("lock").push(value);
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .expect("bind receiver");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
    }

    /// Distinct deliveries by idempotency key (receivers de-duplicate by it).
    pub(crate) fn distinct(&self) -> BTreeSet<String> {
        self.deliveries
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|d| d["idempotency_key"].as_str().map(str::to_owned))
            .collect()
    }
}

pub(crate) fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

pub(crate) async fn webhook(
    server: &TestServer,
    ward: &Ward,
    address: SocketAddr,
    receiver: &Receiver,
) -> String {
    let created = server
        .post_ok(
            &ward.admin,
            &format!("/api/v1/care-teams/{}/notification-channels", ward.team_id),
            json!({"kind": "webhook", "url": format!("http://{address}/hook")}),
        )
        .await;
    let secret = created["secret"]
        .as_str()
        .expect("secret shown once")
        .to_owned();
    *receiver.secret.lock().expect("lock") = secret.as_bytes().to_vec();
    let channel_id = created["channel"]["id"]
        .as_str()
        .expect("channel id")
        .to_owned();
    // Never shown again.
    let (_, listed) = get_json(
        server,
        &ward.admin,
        &format!("/api/v1/care-teams/{}/notification-channels", ward.team_id),
    )
    .await;
    assert!(!listed.to_string().contains(&secret));
    assert_eq!(listed["channels"][0]["minimal"], json!(true));
    channel_id
}

pub(crate) async fn wait_for(mut done: impl FnMut() -> bool, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_receiver_that_was_down_gets_every_notification_and_a_restart_loses_nothing() {
    let mut server = TestServer::start_with_env(&[
        // The test's webhook receiver listens on this machine.
        ("WARDLINE_ALLOW_LOOPBACK_WEBHOOKS", "true"),
        ("WARDLINE_NOTIFY_RETRY_BASE_MS", "200"),
        ("WARDLINE_NOTIFY_RETRY_MAX_SECONDS", "1"),
    ])
    .await;
    let ward = server.ward().await;
    let address = free_address();
    let receiver = Receiver::default();
    webhook(&server, &ward, address, &receiver).await;
    put_ok(
        &server,
        &ward.admin,
        &format!("/api/v1/care-teams/{}/escalation-policy", ward.team_id),
        json!({
            "steps": [
                {"after_secs": 0, "notify": [{"to": "care_team", "care_team_id": ward.team_id}]},
                {"after_secs": 5, "notify": [{"to": "care_team", "care_team_id": ward.team_id}]}
            ],
            "max_rounds": 1
        }),
    )
    .await;
    assign_program(&server, &ward.clinician, &ward.patient_id, "diabetes").await;
    let mut stream = AlarmStream::open(&server, &ward.clinician).await;
    post_glucose(&server, &ward.device, 1, 45.0).await;
    let opened = stream.expect(Duration::from_secs(10), is("opened")).await;
    let alarm_id = opened["alarm"]["id"].as_str().unwrap().to_owned();

    // The receiver is down: the delivery fails and is retried.
    let detail_path = format!("/api/v1/alarms/{alarm_id}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, detail) = get_json(&server, &ward.clinician, &detail_path).await;
        let delivery = &detail["deliveries"][0];
        if delivery["attempts"].as_u64().unwrap_or(0) >= 2 {
            assert_eq!(delivery["status"], json!("pending"));
            assert_eq!(delivery["last_error"], json!("connection failed"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed attempts recorded: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A crash: the open alarm, its escalation timer and the pending notification survive.
    server.kill_hard();
    drop(stream);
    server.restart();
    let clinician = server
        .login(&ward.clinician_username, CLINICIAN_PASSWORD)
        .await;
    let (_, inbox) = get_json(&server, &clinician, "/api/v1/alarms").await;
    let open: Vec<&Value> = inbox["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["id"] == json!(alarm_id))
        .collect();
    assert_eq!(open.len(), 1, "the open alarm is still there: {inbox}");
    assert_eq!(open[0]["state_name"], json!("open"));

    // The receiver comes back: it gets the first notification, then the escalation that
    // fell due after the restart, each signed.
    let _serving = receiver.start(address).await;
    wait_for(
        || receiver.distinct().len() >= 2,
        Duration::from_secs(20),
        "both notifications at the receiver",
    )
    .await;
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
    let deliveries = receiver.deliveries.lock().expect("lock").clone();
    let levels: BTreeSet<u64> = deliveries
        .iter()
        .filter_map(|d| d["level"].as_u64())
        .collect();
    assert_eq!(levels, BTreeSet::from([1, 2]));
    for delivery in &deliveries {
        assert_eq!(delivery["alarm_id"], json!(alarm_id));
        assert_eq!(delivery["patient_id"], json!(ward.patient_id));
        // Minimal content: no reading, no rule, no message.
        assert!(delivery.get("message").is_none(), "{delivery}");
        assert!(delivery.get("rule_id").is_none(), "{delivery}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, detail) = get_json(&server, &clinician, &detail_path).await;
    let statuses: Vec<&str> = detail["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"delivered"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_notifications_become_dead_letters_an_admin_can_retry() {
    let server = TestServer::start_with_env(&[
        // The test's webhook receiver listens on this machine.
        ("WARDLINE_ALLOW_LOOPBACK_WEBHOOKS", "true"),
        ("WARDLINE_NOTIFY_RETRY_BASE_MS", "100"),
        ("WARDLINE_NOTIFY_RETRY_MAX_SECONDS", "1"),
        ("WARDLINE_NOTIFY_RETRY_HORIZON_SECONDS", "2"),
    ])
    .await;
    let ward = server.ward().await;
    let address = free_address();
    let receiver = Receiver::default();
    webhook(&server, &ward, address, &receiver).await;
    assign_program(&server, &ward.clinician, &ward.patient_id, "diabetes").await;
    post_glucose(&server, &ward.device, 1, 45.0).await;
    let mut dead = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(15);
    while dead.as_array().is_none_or(Vec::is_empty) {
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (status, body) =
            get_json(&server, &ward.admin, "/api/v1/notifications/dead-letters").await;
        assert_eq!(status, 200);
        dead = body["dead_letters"].clone();
    }
    let letter = &dead[0];
    assert_eq!(letter["status"], json!("dead"));
    assert!(letter.get("payload").is_none(), "no content for the admin");
    // Not for a clinician.
    assert_eq!(
        server
            .get(&ward.clinician, "/api/v1/notifications/dead-letters")
            .await
            .status(),
        403
    );
    let _serving = receiver.start(address).await;
    let retried = server
        .post(
            &ward.admin,
            &format!("/api/v1/notifications/{}/retry", letter["id"]),
            json!({}),
        )
        .await;
    assert_eq!(retried.status(), 204);
    wait_for(
        || receiver.distinct().len() == 1,
        Duration::from_secs(10),
        "the retried dead letter",
    )
    .await;
}

/// Python's aiosmtpd on an ephemeral port, printing every message it receives.
pub(crate) struct SmtpServer {
    child: std::process::Child,
    pub(crate) output: Arc<Mutex<String>>,
    pub(crate) port: u16,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpServer {
    pub(crate) async fn start() -> SmtpServer {
        let port = free_address().port();
        let mut child = std::process::Command::new("python3")
            .args(["-u", "-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("python3 with aiosmtpd (scripts/test.sh installs it)");
        let stdout = child.stdout.take().expect("stdout");
        let output = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let mut text = sink.lock().expect("lock");
                text.push_str(&line);
                text.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "aiosmtpd exited: {status}; is it installed (python3 -m pip install aiosmtpd)?"
                );
            }
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        SmtpServer {
            child,
            output,
            port,
        }
    }

    /// A Wardline server whose e-mail goes to this SMTP server.
    pub(crate) async fn wardline(&self) -> TestServer {
        let port = self.port.to_string();
        TestServer::start_with_env(&[
            ("WARDLINE_SMTP_HOST", "127.0.0.1"),
            ("WARDLINE_SMTP_PORT", &port),
            ("WARDLINE_SMTP_STARTTLS", "false"),
            ("WARDLINE_SMTP_FROM", "alarms@wardline.test"),
        ])
        .await
    }

    /// The text of what arrived once the first message is whole (within 20 s), with the
    /// quoted-printable soft line breaks undone.
    pub(crate) async fn first_message(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.output.lock().expect("lock").replace("=\n", "");
            if text.contains("END MESSAGE") {
                return text;
            }
            assert!(Instant::now() < deadline, "no e-mail arrived: {text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_email_arrives_at_a_real_smtp_server() {
    let smtp = SmtpServer::start().await;
    let server = smtp.wardline().await;
    let ward = server.ward().await;
    server
        .post_ok(
            &ward.admin,
            &format!("/api/v1/care-teams/{}/notification-channels", ward.team_id),
            json!({"kind": "email", "recipients": ["nurse@example.org"], "minimal": true}),
        )
        .await;
    assign_program(&server, &ward.clinician, &ward.patient_id, "diabetes").await;
    post_glucose(&server, &ward.device, 1, 45.0).await;
    let text = smtp.first_message().await;
    assert!(
        text.contains("Subject: [Wardline] high priority alarm"),
        "{text}"
    );
    assert!(text.contains("nurse@example.org"), "{text}");
    assert!(text.contains("alarms@wardline.test"), "{text}");
    assert!(text.contains(&ward.patient_id), "{text}");
    assert!(!text.contains("45 mg/dL"), "minimal content: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_assigns_a_programme() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wardline"))
        .args(["admin", "--data-dir"])
        .arg(server.data.path().join("server"))
        .args([
            "set-care-plan",
            "--patient",
            &ward.patient_id,
            "--program",
            "cardiac",
        ])
        .output()
        .expect("run wardline admin");
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("care plan version 1"));
    let (status, plan) = get_json(
        &server,
        &ward.clinician,
        &format!("/api/v1/patients/{}/care-plan", ward.patient_id),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(plan["plan"]["program"], json!("cardiac"));
    assert_eq!(plan["author_label"], json!("cli"));
    let unknown = std::process::Command::new(env!("CARGO_BIN_EXE_wardline"))
        .args(["admin", "--data-dir"])
        .arg(server.data.path().join("server"))
        .args([
            "set-care-plan",
            "--patient",
            &ward.patient_id,
            "--program",
            "x",
        ])
        .output()
        .expect("run wardline admin");
    assert!(!unknown.status.success());
}
