//! Sessions that end for idleness, and passwords that someone else set: each behaviour
//! through the real router, with the audit entries it leaves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use wardline_service::ServiceSettings;

use crate::common::{Hospital, hospital, hospital_with};
use crate::streams::OpenStream;

/// A GET with the caller's token, marked as a screen refreshing itself or not.
async fn get(h: &Hospital, token: &str, path: &str, refresh: bool) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("authorization", format!("Bearer {token}"));
    if refresh {
        request = request.header("x-wardline-refresh", "1");
    }
    h.send(request.body(Body::empty()).unwrap()).await
}

async fn login(h: &Hospital, username: &str, password: &str) -> Value {
    let (status, body) = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": username, "password": password})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{username} logs in: {body}");
    body
}

/// The audit trail's actions, read by a new admin (the hospital's own
/// admin session may have ended for idleness by now).
async fn audit_actions(h: &Hospital) -> Vec<String> {
    let admin = h.fresh_admin().await;
    let (status, body) = get(h, &admin, "/api/v1/audit?limit=500", false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap().to_owned())
        .collect()
}

/// A session used only by refreshing screens ends at the idle timeout; one whose person
/// acts stays. The ending is audited, answers `session_idle`, and takes the session's
/// open streams with it.
#[tokio::test]
async fn a_session_nobody_uses_ends_at_the_idle_timeout_and_its_streams_with_it() {
    let h = hospital_with(ServiceSettings {
        session_idle_timeout: Some(chrono::Duration::seconds(3)),
        ..ServiceSettings::default()
    })
    .await;
    let busy = login(&h, "clinician", crate::common::PASSWORD).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let idle = login(&h, "nurse", crate::common::PASSWORD).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut stream = OpenStream::open_with_token(&h, &idle, "/api/v1/observations/stream").await;
    let patient = format!("/api/v1/patients/{}", h.ada);
    // Five seconds: the busy person acts every half second, the idle screen refreshes.
    let started = tokio::time::Instant::now();
    let mut idle_ended = None;
    while started.elapsed() < Duration::from_secs(5) {
        let (status, body) = get(&h, &busy, &patient, false).await;
        assert_eq!(status, StatusCode::OK, "a session in use goes on: {body}");
        if idle_ended.is_none() {
            let (status, body) = get(&h, &idle, &patient, true).await;
            if status == StatusCode::UNAUTHORIZED {
                assert_eq!(body["error"]["code"], "session_idle", "{body}");
                idle_ended = Some(started.elapsed());
            } else {
                assert_eq!(status, StatusCode::OK, "{body}");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ended = idle_ended.expect("the refreshing-only session ended");
    assert!(
        ended >= Duration::from_millis(2500) && ended <= Duration::from_millis(4000),
        "ended after {ended:?}, for an idle timeout of 3 s"
    );
    assert!(
        stream.ends_within(Duration::from_secs(2)).await,
        "the idle session's stream ends with it"
    );
    // Once ended, it stays ended, even for an action.
    let (status, _) = get(&h, &idle, &patient, false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let actions = audit_actions(&h).await;
    assert_eq!(
        actions
            .iter()
            .filter(|action| *action == "session.idle_timeout")
            .count(),
        1,
        "{actions:?}"
    );
}

/// A change is always an action, whatever the request says: a refresh header on a POST
/// does not let a script keep a session alive without counting, nor the reverse.
#[tokio::test]
async fn only_a_read_can_be_a_refresh() {
    let h = hospital_with(ServiceSettings {
        session_idle_timeout: Some(chrono::Duration::seconds(2)),
        ..ServiceSettings::default()
    })
    .await;
    let token = login(&h, "clinician", crate::common::PASSWORD).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..6 {
        // A change that finds nothing to change is still the person acting.
        let request = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/alarms/00ff00ff00ff00ff/acknowledge")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .header("x-wardline-refresh", "1");
        let (status, body) = h.send(request.body(Body::from("{}")).unwrap()).await;
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{body}");
        let (status, body) = get(&h, &token, "/api/v1/me", true).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An account created with a generated password, or whose password an admin reset, can
/// do nothing but read itself, change the password and log out until it has chosen its
/// own; choosing the same one again is refused.
#[tokio::test]
async fn a_password_someone_else_set_must_be_changed_before_anything_else() {
    let h = hospital().await;
    let (status, created) = h
        .as_(
            "admin",
            Method::POST,
            "/api/v1/users",
            Some(json!({"username": "newnurse", "display_name": "New Nurse", "role": "nurse"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["user"]["password_change_required"], true);
    let given = created["generated_password"].as_str().unwrap().to_owned();
    let logged_in = login(&h, "newnurse", &given).await;
    assert_eq!(logged_in["user"]["password_change_required"], true);
    let token = logged_in["token"].as_str().unwrap().to_owned();

    for path in [
        "/api/v1/patients",
        "/api/v1/alarms",
        "/api/v1/observations/stream",
    ] {
        let (status, body) = get(&h, &token, path, false).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(body["error"]["code"], "password_change_required", "{path}");
    }
    let (status, me) = get(&h, &token, "/api/v1/me", false).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["password_change_required"], true);

    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    let (status, body) = h
        .call(
            Method::POST,
            "/api/v1/me/password",
            Some(&token),
            Some(change(&given, &given)),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the same password again: {body}"
    );
    assert_eq!(body["error"]["field"], "new_password");
    let chosen = "violet kettle under the orchard";
    let (status, body) = h
        .call(
            Method::POST,
            "/api/v1/me/password",
            Some(&token),
            Some(change(&given, chosen)),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = get(&h, &token, "/api/v1/patients", false).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "after the change the session goes on: {body}"
    );
    let (_, me) = get(&h, &token, "/api/v1/me", false).await;
    assert_eq!(me["password_change_required"], false);

    // A reset by an admin makes it temporary again, and ends the session.
    let user_id = created["user"]["id"].as_str().unwrap().to_owned();
    let (status, reset) = h
        .as_(
            "admin",
            Method::POST,
            &format!("/api/v1/users/{user_id}/reset-password"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    let (status, _) = get(&h, &token, "/api/v1/me", false).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the reset ended the session"
    );
    let again = login(&h, "newnurse", reset["password"].as_str().unwrap()).await;
    assert_eq!(again["user"]["password_change_required"], true);

    // An admin may create an account whose chosen password need not change.
    let (status, created) = h
        .as_(
            "admin",
            Method::POST,
            "/api/v1/users",
            Some(json!({"username": "kiosk", "display_name": "Ward Kiosk", "role": "nurse",
                        "password": "amber lantern over seven hills", "password_change_required": false})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["user"]["password_change_required"], false);
    // ... and by default an admin-chosen one must.
    let (status, created) = h
        .as_(
            "admin",
            Method::POST,
            "/api/v1/users",
            Some(
                json!({"username": "locum", "display_name": "Locum Nurse", "role": "nurse",
                        "password": "amber lantern over seven hills"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["user"]["password_change_required"], true);
    let actions = audit_actions(&h).await;
    assert!(
        actions.iter().any(|action| action == "password.change"),
        "{actions:?}"
    );
}

/// Opening a live stream is not a person acting: a screen whose stream reconnects by
/// itself (a browser's EventSource cannot mark its requests) still ends at the idle
/// timeout.
#[tokio::test]
async fn reopening_a_stream_does_not_keep_a_session_alive() {
    let h = hospital_with(ServiceSettings {
        session_idle_timeout: Some(chrono::Duration::seconds(2)),
        ..ServiceSettings::default()
    })
    .await;
    let token = login(&h, "nurse", crate::common::PASSWORD).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = tokio::time::Instant::now();
    let mut ended = false;
    while started.elapsed() < Duration::from_secs(4) {
        let request = Request::builder()
            .method(Method::GET)
            .uri("/api/v1/observations/stream")
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "text/event-stream")
            .body(Body::empty())
            .unwrap();
        let response = tower::ServiceExt::oneshot(h.app.clone(), request)
            .await
            .unwrap();
        if response.status() == StatusCode::UNAUTHORIZED {
            ended = true;
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
        drop(response);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        ended,
        "the session ended although its stream kept reconnecting"
    );
    assert!(started.elapsed() >= Duration::from_millis(1500));
}
