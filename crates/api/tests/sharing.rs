//! A patient's share with a specialist, through the real router: exactly the shared
//! categories, measured within the shared window, while the share lasts; nothing of
//! anyone else; every read audited with the share.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use wardline_domain::Role;
use wardline_service::ServiceSettings;

use crate::common::{Hospital, hospital_with_clock};

/// A hospital whose service clock the test moves, with sessions that neither idle out
/// nor expire while it does.
async fn hospital_and_clock() -> (Hospital, Arc<wardline_alarms::ManualClock>) {
    let clock = Arc::new(wardline_alarms::ManualClock::new(Utc::now()));
    let settings = ServiceSettings {
        session_idle_timeout: None,
        session_lifetime: Duration::days(365),
        ..ServiceSettings::default()
    };
    let mut h = hospital_with_clock(settings, clock.clone()).await;
    for name in ["dr.okafor", "dr.second"] {
        h.add_account(name, Role::Specialist).await;
        let token = h.login(name).await;
        h.tokens.insert(
            if name == "dr.okafor" {
                "okafor"
            } else {
                "second"
            },
            token,
        );
    }
    (h, clock)
}

/// A CGM of Ada's since 40 days ago, with readings at the given days before now.
async fn ada_glucose(h: &Hospital, days_ago: &[i64]) {
    let (device, secret) = h.ada_cgm_since(Utc::now() - Duration::days(40)).await;
    for (seq, days) in days_ago.iter().enumerate() {
        let (status, body) = h
            .call(
                Method::POST,
                &format!("/api/v1/devices/{device}/readings"),
                Some(&secret),
                Some(json!({"v": 1, "seq": seq, "code": "99504-3", "value": 100 + seq, "unit": "mg/dL",
                            "time": Utc::now() - Duration::days(*days)})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

fn window(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    format!(
        "from={}&to={}",
        from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

async fn status(h: &Hospital, who: &str, path: &str) -> StatusCode {
    h.as_(who, Method::GET, path, None).await.0
}

async fn share(h: &Hospital, body: Value) -> Value {
    created(h, body).await["share"].clone()
}

/// A share Ada makes, as created (with a link's token and passcode).
async fn created(h: &Hospital, body: Value) -> Value {
    let (status, created) = h
        .as_("ada", Method::POST, "/api/v1/me/shares", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

/// A link Ada made, opened with its own passcode, answers `share_link_closed` saying
/// `why`.
async fn closed_saying(h: &Hospital, link: &Value, why: &str) {
    let (status_code, error) = open_link(
        h,
        link["link_token"].as_str().unwrap(),
        link["passcode"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status_code, StatusCode::GONE, "{error}");
    assert_eq!(error["error"]["code"], "share_link_closed");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains(why), "{message}");
}

/// Ada acts on one of her shares (`revoke`, `accept`): the answer's status.
async fn on_share(h: &Hospital, share: &Value, verb: &str) -> StatusCode {
    let path = format!("/api/v1/me/shares/{}/{verb}", share["id"].as_str().unwrap());
    h.as_("ada", Method::POST, &path, None).await.0
}

async fn open_link(h: &Hospital, token: &str, passcode: &str) -> (StatusCode, Value) {
    h.call(
        Method::POST,
        "/api/v1/share-links/open",
        None,
        Some(json!({"token": token, "passcode": passcode})),
    )
    .await
}

/// "ECG, last 30 days, for five days": the specialist reads ECG and rhythm events inside
/// the window, and nothing else: not glucose, vital signs, alarms, the care plan, the
/// devices, ECG before the window, nor any other patient; a second specialist sees
/// nothing, and changes stay with the care team.
#[tokio::test]
async fn a_share_opens_its_categories_within_its_window_and_nothing_else() {
    let (h, _clock) = hospital_and_clock().await;
    let ada = h.ada;
    let patient = |path: &str| format!("/api/v1/patients/{ada}{path}");
    // Before any share, Ada is not the specialist's patient.
    let (_, patients) = h.as_("okafor", Method::GET, "/api/v1/patients", None).await;
    assert_eq!(patients, json!([]));
    assert_eq!(
        status(&h, "okafor", &patient("")).await,
        StatusCode::FORBIDDEN
    );

    let created = share(
        &h,
        json!({"grantee_username": "dr.okafor", "categories": ["ecg"], "data_last_days": 30,
               "expires_in_days": 5, "message": "before the arrhythmia clinic"}),
    )
    .await;
    assert_eq!(created["categories"], json!(["ecg"]));
    assert_eq!(created["grantee_name"], "Specialist dr.okafor");
    let share_id = created["id"].as_str().unwrap().to_owned();

    let (_, patients) = h.as_("okafor", Method::GET, "/api/v1/patients", None).await;
    assert_eq!(patients.as_array().map(Vec::len), Some(1), "{patients}");
    let (_, mine) = h
        .as_("okafor", Method::GET, "/api/v1/me/shared-with-me", None)
        .await;
    assert_eq!(mine.as_array().map(Vec::len), Some(1), "{mine}");
    assert_eq!(mine[0]["patient_id"], json!(ada));
    let (_, theirs) = h
        .as_("second", Method::GET, "/api/v1/me/shared-with-me", None)
        .await;
    assert_eq!(theirs, json!([]));
    let now = Utc::now();
    for path in [
        patient(""),
        patient(&format!(
            "/waveforms?{}",
            window(now - Duration::hours(2), now - Duration::hours(1))
        )),
        patient(&format!(
            "/rhythm-events?{}",
            window(now - Duration::days(10), now)
        )),
        // A window reaching before the share's is cut to it.
        patient(&format!(
            "/rhythm-events?{}",
            window(now - Duration::days(60), now)
        )),
        patient("/observations/latest"),
    ] {
        assert_eq!(status(&h, "okafor", &path).await, StatusCode::OK, "{path}");
    }
    for path in [
        patient(&format!(
            "/observations?code=99504-3&{}",
            window(now - Duration::days(5), now)
        )),
        patient(&format!(
            "/observations/summary?code=8867-4&{}",
            window(now - Duration::days(5), now)
        )),
        patient(&format!("/news2?{}", window(now - Duration::days(1), now))),
        patient("/news2/latest"),
        patient("/alarms"),
        patient("/care-plan"),
        patient("/devices"),
        patient("/care-teams"),
        patient("/access-log"),
        patient(&format!(
            "/reports/cgm?{}",
            window(now - Duration::days(14), now)
        )),
        // ECG wholly before the window.
        patient(&format!(
            "/waveforms?{}",
            window(
                now - Duration::days(40),
                now - Duration::days(40) + Duration::hours(1)
            )
        )),
        format!("/api/v1/patients/{}", h.bob),
    ] {
        assert_eq!(
            status(&h, "okafor", &path).await,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    assert_eq!(
        status(&h, "second", &patient("")).await,
        StatusCode::FORBIDDEN
    );
    // A share is for reading: the care plan stays the care team's.
    let (status_code, _) = h
        .as_(
            "okafor",
            Method::PUT,
            &patient("/care-plan"),
            Some(json!({"program": "cardiac", "reason": "specialist's change"})),
        )
        .await;
    assert_eq!(status_code, StatusCode::FORBIDDEN);

    // Every read through the share is audited with it.
    let (_, audit) = h
        .as_(
            "admin",
            Method::GET,
            "/api/v1/audit?action=rhythm_events.read",
            None,
        )
        .await;
    let through: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["detail"].as_str().unwrap_or("").contains(&share_id))
        .collect();
    assert_eq!(through.len(), 2, "{audit}");
    // And Ada sees who looked, at what, through which share.
    let (_, log) = h
        .as_("ada", Method::GET, &patient("/access-log?limit=200"), None)
        .await;
    let by_share: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["share_id"] == json!(share_id))
        .collect();
    assert!(
        by_share
            .iter()
            .any(|entry| entry["action"] == "rhythm_events.read"
                && entry["who"] == "Specialist dr.okafor"
                && entry["role"] == "specialist"
                && entry["outcome"] == "allowed"),
        "{log}"
    );
    assert!(by_share.iter().all(|entry| entry["emergency"] == false));
}

/// The window is applied by the store query: readings measured outside it are never
/// read, whatever window the specialist asks for.
#[tokio::test]
async fn readings_outside_the_shared_window_are_never_read() {
    let (h, _clock) = hospital_and_clock().await;
    ada_glucose(&h, &[35, 5, 1]).await;
    let now = Utc::now();
    share(
        &h,
        json!({"grantee_username": "dr.okafor", "categories": ["glucose"],
               "data_from": now - Duration::days(10), "data_to": now - Duration::days(2)}),
    )
    .await;
    let glucose = |who: &'static str| {
        let path = format!(
            "/api/v1/patients/{}/observations?code=99504-3&{}",
            h.ada,
            window(now - Duration::days(60), now)
        );
        let h = &h;
        async move {
            let (status_code, page) = h.as_(who, Method::GET, &path, None).await;
            assert_eq!(status_code, StatusCode::OK, "{page}");
            page["observations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|observation| observation["value"].as_f64().unwrap())
                .collect::<Vec<f64>>()
        }
    };
    assert_eq!(
        glucose("okafor").await,
        vec![101.0],
        "only the reading of 5 days ago"
    );
    // The newest glucose (1 day ago) is outside the window: the latest values leave it out.
    let (_, latest) = h
        .as_(
            "okafor",
            Method::GET,
            &format!("/api/v1/patients/{}/observations/latest", h.ada),
            None,
        )
        .await;
    assert_eq!(latest, json!([]), "{latest}");
    // The care team sees everything.
    assert_eq!(glucose("clinician").await.len(), 3);
}

/// Revoked, or expired (the clock moved on), a share opens nothing, and logging in again
/// does not bring it back. Only the patient shares, and only their own record.
#[tokio::test]
async fn a_revoked_or_expired_share_opens_nothing() {
    let (h, clock) = hospital_and_clock().await;
    let ada_page = format!("/api/v1/patients/{}", h.ada);
    let first = share(
        &h,
        json!({"grantee_username": "dr.okafor", "categories": ["ecg", "vital_signs"], "data_last_days": 7}),
    )
    .await;
    assert_eq!(status(&h, "okafor", &ada_page).await, StatusCode::OK);
    let (status_code, body) = h
        .as_(
            "ada",
            Method::POST,
            &format!("/api/v1/me/shares/{}/revoke", first["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status_code, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(status(&h, "okafor", &ada_page).await, StatusCode::FORBIDDEN);
    let again = h.login("dr.okafor").await;
    let (status_code, _) = h.call(Method::GET, &ada_page, Some(&again), None).await;
    assert_eq!(
        status_code,
        StatusCode::FORBIDDEN,
        "a new login does not bring it back"
    );

    // A share of two days, and the clock moves three days on.
    share(
        &h,
        json!({"grantee_username": "dr.okafor", "categories": ["ecg"], "data_last_days": 7, "expires_in_days": 2}),
    )
    .await;
    assert_eq!(status(&h, "okafor", &ada_page).await, StatusCode::OK);
    clock.advance(Duration::days(3));
    assert_eq!(status(&h, "okafor", &ada_page).await, StatusCode::FORBIDDEN);
    // The expiry is in the audit trail, once.
    assert_eq!(h.service.record_share_expiries().await.unwrap(), 1);
    assert_eq!(h.service.record_share_expiries().await.unwrap(), 0);
    let (_, log) = h
        .as_(
            "ada",
            Method::GET,
            &format!("/api/v1/patients/{}/access-log?limit=100", h.ada),
            None,
        )
        .await;
    assert_eq!(
        log.as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["action"] == "shares.expire")
            .count(),
        1,
        "{log}"
    );
    let (_, listed) = h.as_("ada", Method::GET, "/api/v1/me/shares", None).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert!(
        listed[1]["revoked"].is_string(),
        "the first, revoked: {listed}"
    );
    assert!(
        listed[0]["revoked"].is_null(),
        "the second, expired: {listed}"
    );

    // Nobody but the patient shares: not the care team, not the specialist (no passing
    // a share on); and a patient's share is of their own record.
    let request =
        json!({"grantee_username": "dr.second", "categories": ["ecg"], "data_last_days": 7});
    for who in ["clinician", "okafor", "admin"] {
        let (status_code, _) = h
            .as_(
                who,
                Method::POST,
                "/api/v1/me/shares",
                Some(request.clone()),
            )
            .await;
        assert_eq!(status_code, StatusCode::FORBIDDEN, "{who}");
    }
    let (status_code, bobs) = h
        .as_("bob", Method::POST, "/api/v1/me/shares", Some(request))
        .await;
    assert_eq!(status_code, StatusCode::CREATED, "{bobs}");
    assert_eq!(bobs["share"]["patient_id"], json!(h.bob));
    // Every share ends, and only a specialist receives one.
    for (body, field) in [
        (
            json!({"grantee_username": "dr.okafor", "categories": ["ecg"], "data_last_days": 7, "expires_in_days": 400}),
            "expires_in_days",
        ),
        (
            json!({"grantee_username": "clinician", "categories": ["ecg"], "data_last_days": 7}),
            "grantee_username",
        ),
        (
            json!({"grantee_username": "dr.okafor", "categories": [], "data_last_days": 7}),
            "categories",
        ),
    ] {
        let (status_code, error) = h
            .as_("ada", Method::POST, "/api/v1/me/shares", Some(body))
            .await;
        assert_eq!(status_code, StatusCode::BAD_REQUEST, "{error}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }
}

/// A link with a passcode, for someone without an account: the right passcode opens
/// exactly the shared data; wrong ones count down, and the fifth disables the link; an
/// expired, revoked or used single-use link says which. Every attempt is in the
/// patient's access log.
#[tokio::test]
async fn a_share_link_opens_with_its_passcode_and_closes_as_it_should() {
    let (h, clock) = hospital_and_clock().await;
    ada_glucose(&h, &[35, 5]).await;
    let link = created(
        &h,
        json!({"link": {}, "categories": ["glucose"], "data_last_days": 30, "expires_in_days": 3}),
    )
    .await;
    let token = link["link_token"].as_str().unwrap().to_owned();
    let passcode = link["passcode"].as_str().unwrap().to_owned();
    assert!(token.starts_with("wsl_") && passcode.len() == 10, "{link}");
    assert_eq!(link["share"]["grantee_id"], Value::Null);
    // The token and passcode are shown this once: the list has neither.
    let (_, listed) = h.as_("ada", Method::GET, "/api/v1/me/shares", None).await;
    assert!(!listed.to_string().contains(&passcode) && !listed.to_string().contains(&token));

    let (status_code, record) = open_link(&h, &token, &passcode).await;
    assert_eq!(status_code, StatusCode::OK, "{record}");
    assert_eq!(record["patient_name"], "Ada");
    let values: Vec<f64> = record["observations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|observation| observation["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, vec![101.0], "glucose of the last 30 days only");
    assert_eq!(record["care_plan"], Value::Null);
    // Not single-use: it opens again.
    assert_eq!(open_link(&h, &token, &passcode).await.0, StatusCode::OK);

    // Wrong passcodes count down; the fifth disables it, for the right one too.
    for left in (1..=4).rev() {
        let (status_code, error) = open_link(&h, &token, "WRONGPASS2").await;
        assert_eq!(status_code, StatusCode::FORBIDDEN, "{error}");
        assert_eq!(error["error"]["code"], "bad_passcode");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("{left} of 5 attempts left")),
            "{message}"
        );
    }
    let (status_code, error) = open_link(&h, &token, "WRONGPASS2").await;
    assert_eq!(status_code, StatusCode::GONE, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled after 5 wrong passcodes")
    );
    let (status_code, _) = open_link(&h, &token, &passcode).await;
    assert_eq!(status_code, StatusCode::GONE);
    let (_, listed) = h.as_("ada", Method::GET, "/api/v1/me/shares", None).await;
    assert!(
        listed[0]["link"]["disabled"].is_string(),
        "the patient sees it: {listed}"
    );
    assert_eq!(listed[0]["link"]["passcode_failures"], 5);

    // A single-use link opens once.
    let once = created(
        &h,
        json!({"link": {"single_use": true}, "categories": ["vital_signs"], "data_last_days": 7}),
    )
    .await;
    let (token, passcode) = (
        once["link_token"].as_str().unwrap().to_owned(),
        once["passcode"].as_str().unwrap().to_owned(),
    );
    assert_eq!(open_link(&h, &token, &passcode).await.0, StatusCode::OK);
    let (status_code, error) = open_link(&h, &token, &passcode).await;
    assert_eq!(status_code, StatusCode::GONE);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("for one use")
    );

    // Revoked, and expired, links say so; an unknown one is not found.
    let revoked = created(
        &h,
        json!({"link": {}, "categories": ["ecg"], "data_last_days": 7}),
    )
    .await;
    let status_code = on_share(&h, &revoked["share"], "revoke").await;
    assert_eq!(status_code, StatusCode::NO_CONTENT);
    closed_saying(&h, &revoked, "the patient revoked this link").await;
    let lapsing = created(
        &h,
        json!({"link": {}, "categories": ["ecg"], "data_last_days": 7, "expires_in_days": 1}),
    )
    .await;
    clock.advance(Duration::days(2));
    closed_saying(&h, &lapsing, "this link expired on").await;
    assert_eq!(
        open_link(&h, "wsl_nothing", "ABCDEFGHJK").await.0,
        StatusCode::NOT_FOUND
    );

    // Every attempt is in Ada's access log, with its share.
    let (_, log) = h
        .as_(
            "ada",
            Method::GET,
            &format!("/api/v1/patients/{}/access-log?limit=200", h.ada),
            None,
        )
        .await;
    let attempts = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "share_links.open" && entry["share_id"].is_string())
        .count();
    assert!(attempts >= 12, "{attempts} attempts logged: {log}");
}

/// A referral the care team proposes opens nothing until the patient accepts it; the
/// patient may decline it instead; nobody outside the team proposes one.
#[tokio::test]
async fn a_referral_gives_no_access_until_the_patient_accepts() {
    let (h, _clock) = hospital_and_clock().await;
    let ada_page = format!("/api/v1/patients/{}", h.ada);
    let referrals = format!("/api/v1/patients/{}/referrals", h.ada);
    let request = json!({"grantee_username": "dr.okafor", "categories": ["ecg"], "data_last_days": 30,
                         "expires_in_days": 14, "message": "palpitations at night"});
    let (status_code, _) = h
        .as_("outsider", Method::POST, &referrals, Some(request.clone()))
        .await;
    assert_eq!(status_code, StatusCode::FORBIDDEN, "not on Ada's team");
    let (status_code, proposed) = h
        .as_("clinician", Method::POST, &referrals, Some(request.clone()))
        .await;
    assert_eq!(status_code, StatusCode::CREATED, "{proposed}");
    assert_eq!(proposed["accepted"], Value::Null);
    assert!(proposed["proposed_by"].is_string());
    assert_eq!(
        status(&h, "okafor", &ada_page).await,
        StatusCode::FORBIDDEN,
        "not yet"
    );
    let (_, mine) = h
        .as_("okafor", Method::GET, "/api/v1/me/shared-with-me", None)
        .await;
    assert_eq!(mine, json!([]));

    // Ada sees it waiting, and accepts it: from now on the specialist reads ECG.
    let (_, listed) = h.as_("ada", Method::GET, "/api/v1/me/shares", None).await;
    assert_eq!(listed[0]["id"], proposed["id"]);
    let accept = format!(
        "/api/v1/me/shares/{}/accept",
        proposed["id"].as_str().unwrap()
    );
    let (status_code, _) = h.as_("okafor", Method::POST, &accept, None).await;
    assert_eq!(
        status_code,
        StatusCode::FORBIDDEN,
        "only the patient accepts"
    );
    let (status_code, accepted) = h.as_("ada", Method::POST, &accept, None).await;
    assert_eq!(status_code, StatusCode::OK, "{accepted}");
    assert!(accepted["accepted"].is_string());
    assert!(accepted["consented_by"].is_string());
    assert_eq!(status(&h, "okafor", &ada_page).await, StatusCode::OK);
    let (status_code, _) = h.as_("ada", Method::POST, &accept, None).await;
    assert_eq!(status_code, StatusCode::CONFLICT, "accepted once");

    // Another one, declined: it never opens.
    let (_, second) = h
        .as_(
            "nurse",
            Method::POST,
            &referrals,
            Some(json!({"grantee_username": "dr.second", "categories": ["glucose"], "data_last_days": 7})),
        )
        .await;
    let status_code = on_share(&h, &second, "revoke").await;
    assert_eq!(status_code, StatusCode::NO_CONTENT);
    let status_code = on_share(&h, &second, "accept").await;
    assert_eq!(
        status_code,
        StatusCode::CONFLICT,
        "a declined referral is not accepted later"
    );
    assert_eq!(status(&h, "second", &ada_page).await, StatusCode::FORBIDDEN);
}

/// A specialist's live stream carries only the shared categories, and ends within a
/// second of the patient's revocation.
#[tokio::test]
async fn a_specialists_stream_carries_the_share_only_and_ends_at_revocation() {
    let (h, _clock) = hospital_and_clock().await;
    let shared = share(
        &h,
        json!({"grantee_username": "dr.okafor", "categories": ["glucose"], "data_last_days": 1}),
    )
    .await;
    let mut stream = crate::streams::OpenStream::open(
        &h,
        "okafor",
        &format!("/api/v1/patients/{}/observations/stream", h.ada),
    )
    .await;
    // Ada's CGM and oximeter send one reading each, now.
    let (cgm, cgm_secret) = h.ada_cgm().await;
    let (status_code, oximeter) = h
        .as_(
            "admin",
            Method::POST,
            "/api/v1/devices",
            Some(json!({"kind": "pulse_oximeter", "model": "O2", "serial": "2", "patient_id": h.ada})),
        )
        .await;
    assert_eq!(status_code, StatusCode::CREATED, "{oximeter}");
    for (device, secret, reading) in [
        (
            cgm.as_str(),
            cgm_secret.as_str(),
            json!({"v": 1, "seq": 1, "code": "99504-3", "value": 142, "unit": "mg/dL", "time": Utc::now()}),
        ),
        (
            oximeter["device"]["id"].as_str().unwrap(),
            oximeter["secret"].as_str().unwrap(),
            json!({"v": 1, "seq": 1, "code": "8867-4", "value": 77, "unit": "/min", "time": Utc::now()}),
        ),
    ] {
        let (status_code, body) = h
            .call(
                Method::POST,
                &format!("/api/v1/devices/{device}/readings"),
                Some(secret),
                Some(reading),
            )
            .await;
        assert_eq!(status_code, StatusCode::OK, "{body}");
    }
    let text = stream.text_within(std::time::Duration::from_secs(2)).await;
    assert!(text.contains("99504-3"), "the glucose reading: {text}");
    assert!(!text.contains("8867-4"), "no heart rate: {text}");

    let status_code = on_share(&h, &shared, "revoke").await;
    assert_eq!(status_code, StatusCode::NO_CONTENT);
    let revoked = std::time::Instant::now();
    let text = stream
        .text_within(std::time::Duration::from_millis(1500))
        .await;
    assert!(
        revoked.elapsed() < std::time::Duration::from_millis(1500),
        "the stream ends within about a second of the revocation"
    );
    assert!(
        text.contains("event: ended"),
        "its last event says it ended: {text}"
    );
}

/// `who` invites a specialist by e-mail.
async fn invite(h: &Hospital, who: &str, email: &str, display_name: &str) -> (StatusCode, Value) {
    h.as_(
        who,
        Method::POST,
        "/api/v1/specialist-invitations",
        Some(json!({"email": email, "display_name": display_name})),
    )
    .await
}

/// An invitation makes one specialist account, once, until it expires; the invited
/// person chooses their own user name and password; specialists do not invite.
#[tokio::test]
async fn an_invitation_makes_a_specialist_account_once() {
    let (h, clock) = hospital_and_clock().await;
    let (status_code, _) = invite(&h, "okafor", "someone@clinic.example", "Dr Amara Neuro").await;
    assert_eq!(
        status_code,
        StatusCode::FORBIDDEN,
        "a specialist does not invite"
    );
    let (status_code, error) = invite(&h, "ada", "not an address", "Dr Amara Neuro").await;
    assert_eq!(status_code, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["field"], "email");
    let (status_code, created) = invite(&h, "ada", "neuro@clinic.example", "Dr Amara Neuro").await;
    assert_eq!(status_code, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["emailed"], false,
        "no SMTP server here: Ada sends the link"
    );
    let token = created["link_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("wsi_"));

    let accept = |token: String, username: &'static str| {
        let h = &h;
        async move {
            h.call(
                Method::POST,
                "/api/v1/specialist-invitations/accept",
                None,
                Some(json!({"token": token, "username": username, "password": "lantern over the quiet harbour"})),
            )
            .await
        }
    };
    let (status_code, user) = accept(token.clone(), "dr.neuro").await;
    assert_eq!(status_code, StatusCode::CREATED, "{user}");
    assert_eq!(
        (user["role"].as_str(), user["display_name"].as_str()),
        (Some("specialist"), Some("Dr Amara Neuro"))
    );
    // The new specialist logs in (with the password they chose), and Ada can share
    // with them.
    let neuro = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "dr.neuro", "password": "lantern over the quiet harbour"})),
        )
        .await;
    assert_eq!(neuro.0, StatusCode::OK, "{}", neuro.1);
    let (status_code, again) = accept(token.clone(), "dr.neuro2").await;
    assert_eq!(status_code, StatusCode::GONE, "{again}");
    assert_eq!(again["error"]["code"], "invitation_closed");
    assert!(
        again["error"]["message"]
            .as_str()
            .unwrap()
            .contains("used already")
    );
    let (_, found) = h.as_("admin", Method::GET, "/api/v1/users", None).await;
    assert!(
        !found.to_string().contains("dr.neuro2"),
        "the second use made no account"
    );
    share(
        &h,
        json!({"grantee_username": "dr.neuro", "categories": ["ecg"], "data_last_days": 7}),
    )
    .await;

    // An invitation not used within its week says so.
    let (_, late) = invite(&h, "clinician", "late@clinic.example", "Dr Amara Neuro").await;
    clock.advance(Duration::days(8));
    let (status_code, expired) =
        accept(late["link_token"].as_str().unwrap().to_owned(), "dr.late").await;
    assert_eq!(status_code, StatusCode::GONE, "{expired}");
    assert!(
        expired["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    assert_eq!(
        accept("wsi_unknown".into(), "dr.nobody").await.0,
        StatusCode::NOT_FOUND
    );
}

/// Each invitation is an e-mail in Wardline's name: an account sends 20, then no more
/// for a while, and other accounts are not held back by it.
#[tokio::test]
async fn an_account_sends_a_limited_number_of_invitations() {
    let (h, _clock) = hospital_and_clock().await;
    let someone = |who: &'static str, index: usize| {
        let h = &h;
        async move {
            let email = format!("someone{index}@clinic.example");
            invite(h, who, &email, "Dr Someone").await
        }
    };
    for index in 0..20 {
        let (status_code, body) = someone("ada", index).await;
        assert_eq!(
            status_code,
            StatusCode::CREATED,
            "invitation {index}: {body}"
        );
    }
    let (status_code, refused) = someone("ada", 20).await;
    assert_eq!(status_code, StatusCode::TOO_MANY_REQUESTS, "{refused}");
    assert_eq!(refused["error"]["code"], "too_many_invitations");
    let (status_code, _) = someone("clinician", 21).await;
    assert_eq!(
        status_code,
        StatusCode::CREATED,
        "another account still invites"
    );
}

/// A specialist invited again (by another patient) takes the invitation up with the
/// account they have, logged in; no second account is made, other roles cannot take it
/// up, and the link still works once.
#[tokio::test]
async fn an_invitation_links_a_specialist_account_already_made() {
    let (h, _clock) = hospital_and_clock().await;
    let new_token = || {
        let h = &h;
        async move {
            let (status_code, created) =
                invite(h, "ada", "okafor@clinic.example", "Dr Okafor").await;
            assert_eq!(status_code, StatusCode::CREATED, "{created}");
            created["link_token"].as_str().unwrap().to_owned()
        }
    };
    let link = |who: &'static str, token: String| {
        let h = &h;
        async move {
            h.as_(
                who,
                Method::POST,
                "/api/v1/me/specialist-invitations/accept",
                Some(json!({"token": token})),
            )
            .await
        }
    };
    let (_, users_before) = h.as_("admin", Method::GET, "/api/v1/users", None).await;
    let token = new_token().await;
    let (status_code, refused) = link("clinician", token.clone()).await;
    assert_eq!(status_code, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["error"]["code"], "not_permitted");
    assert_eq!(refused["error"]["field"], "token");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("clinician account"),
        "{refused}"
    );
    let (status_code, linked) = link("okafor", token.clone()).await;
    assert_eq!(status_code, StatusCode::OK, "{linked}");
    assert_eq!(
        (linked["username"].as_str(), linked["role"].as_str()),
        (Some("dr.okafor"), Some("specialist"))
    );
    let (_, users_after) = h.as_("admin", Method::GET, "/api/v1/users", None).await;
    assert_eq!(
        users_before.as_array().map(Vec::len),
        users_after.as_array().map(Vec::len),
        "no account was made"
    );
    let (status_code, again) = link("okafor", token.clone()).await;
    assert_eq!(status_code, StatusCode::GONE, "{again}");
    let (status_code, _) = h
        .call(
            Method::POST,
            "/api/v1/specialist-invitations/accept",
            None,
            Some(json!({"token": token, "username": "dr.second", "password": "lantern over the quiet harbour"})),
        )
        .await;
    assert_eq!(
        status_code,
        StatusCode::GONE,
        "nor does it make an account after"
    );
    // Without a session there is no account to link.
    let (status_code, _) = h
        .call(
            Method::POST,
            "/api/v1/me/specialist-invitations/accept",
            None,
            Some(json!({"token": new_token().await})),
        )
        .await;
    assert_eq!(status_code, StatusCode::UNAUTHORIZED);
    let (_, trail) = h
        .as_("admin", Method::GET, "/api/v1/audit?limit=50", None)
        .await;
    let trail = trail.to_string();
    assert!(trail.contains("linked to the account dr.okafor"), "{trail}");
    assert!(trail.contains("not a specialist's"), "{trail}");
}

/// What a review found: an ECG share opens no plethysmography or respiration waveform,
/// nor a NEWS2 score; and a stream opened through one share ends when that share does,
/// even while another share with the same specialist lasts.
#[tokio::test]
async fn a_share_opens_its_own_signals_and_a_stream_ends_with_its_share() {
    let (h, _clock) = hospital_and_clock().await;
    let ada = h.ada;
    let now = Utc::now();
    let vitals = share(
        &h,
        json!({"grantee_username": "dr.okafor", "categories": ["vital_signs"], "data_last_days": 7}),
    )
    .await;
    let ecg = share(
        &h,
        json!({"grantee_username": "dr.okafor", "categories": ["ecg"], "data_last_days": 7}),
    )
    .await;
    let span = window(now - Duration::minutes(30), now);
    for (signal, expected) in [("ecg-lead-ii", StatusCode::OK), ("pleth", StatusCode::OK)] {
        let path = format!("/api/v1/patients/{ada}/waveforms?signal={signal}&{span}");
        assert_eq!(
            status(&h, "okafor", &path).await,
            expected,
            "{signal} with both shares"
        );
    }
    // Without the vital-signs share, the ECG share opens no pleth.
    assert_eq!(
        on_share(&h, &vitals, "revoke").await,
        StatusCode::NO_CONTENT
    );
    let pleth = format!("/api/v1/patients/{ada}/waveforms?signal=pleth&{span}");
    assert_eq!(status(&h, "okafor", &pleth).await, StatusCode::FORBIDDEN);
    let lead = format!("/api/v1/patients/{ada}/waveforms?signal=ecg-lead-ii&{span}");
    assert_eq!(status(&h, "okafor", &lead).await, StatusCode::OK);
    assert_eq!(
        status(
            &h,
            "okafor",
            &format!("/api/v1/patients/{ada}/news2/latest")
        )
        .await,
        StatusCode::FORBIDDEN
    );

    // A stream opened through the newest share (glucose) ends when it is revoked,
    // though the ECG share goes on: the client reconnects and gets the ECG scope.
    let glucose = share(
        &h,
        json!({"grantee_username": "dr.okafor", "categories": ["glucose"], "data_last_days": 7}),
    )
    .await;
    let mut stream = crate::streams::OpenStream::open(
        &h,
        "okafor",
        &format!("/api/v1/patients/{ada}/observations/stream"),
    )
    .await;
    assert!(
        !stream
            .ends_within(std::time::Duration::from_millis(1500))
            .await
    );
    assert_eq!(
        on_share(&h, &glucose, "revoke").await,
        StatusCode::NO_CONTENT
    );
    assert!(
        stream
            .ends_within(std::time::Duration::from_millis(1500))
            .await,
        "the stream cut to the revoked share ends"
    );
    let _ = ecg;
}
