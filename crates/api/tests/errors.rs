//! Every kind of bad request gets a precise error (which field, why) in the one format,
//! and the server goes on serving.

use crate::common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use common::hospital;

fn error(body: &Value) -> (&str, Option<&str>) {
    (
        body["error"]["code"].as_str().unwrap_or("?"),
        body["error"]["field"].as_str(),
    )
}

/// A request, and the status, error code and field it must be answered with.
type Case = (
    Method,
    String,
    Option<Value>,
    StatusCode,
    &'static str,
    Option<&'static str>,
);

#[tokio::test]
async fn malformed_requests_name_what_is_wrong() {
    let h = hospital().await;
    let nurse = h.tokens["nurse"].clone();
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            "/api/v1/patients/not-a-uuid".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("patient_id"),
        ),
        (
            Method::GET,
            format!("/api/v1/patients/{}/observations?code=1234-5", h.ada),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("code"),
        ),
        (
            Method::GET,
            format!("/api/v1/patients/{}/observations", h.ada),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
        ),
        (
            Method::GET,
            format!(
                "/api/v1/patients/{}/observations?code=99504-3&from=yesterday",
                h.ada
            ),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("from"),
        ),
        (
            Method::GET,
            format!(
                "/api/v1/patients/{}/observations?code=99504-3&limit=0",
                h.ada
            ),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("limit"),
        ),
        (
            Method::GET,
            format!(
                "/api/v1/patients/{}/observations?code=99504-3&limit=many",
                h.ada
            ),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
        ),
        (
            Method::GET,
            format!(
                "/api/v1/patients/{}/observations?code=99504-3&cursor=zz",
                h.ada
            ),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("cursor"),
        ),
        (
            Method::GET,
            format!(
                "/api/v1/patients/{}/observations/summary?code=99504-3&bucket_secs=0",
                h.ada
            ),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("bucket_secs"),
        ),
        (
            Method::GET,
            format!("/api/v1/patients/{}/reports/cgm?utc_offset=PST", h.ada),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("utc_offset"),
        ),
        (
            Method::GET,
            format!("/api/v1/patients/{}/waveforms?signal=eeg", h.ada),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("signal"),
        ),
        (
            Method::GET,
            "/api/v1/alarms?state=panicking".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("state"),
        ),
        (
            Method::GET,
            "/api/v1/alarms/0123abcd".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            Method::POST,
            "/api/v1/alarms/0123abcd/snooze".into(),
            Some(json!({})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("minutes"),
        ),
        (
            Method::PUT,
            format!("/api/v1/patients/{}/care-plan", h.ada),
            Some(json!({"reason": "x", "program": "astrology"})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("program"),
        ),
        (
            Method::PUT,
            format!("/api/v1/patients/{}/care-plan", h.ada),
            Some(json!({"reason": "", "program": "diabetes"})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("reason"),
        ),
        (
            Method::PUT,
            format!("/api/v1/patients/{}/care-plan", h.ada),
            Some(json!({"reason": "x", "programme": "diabetes"})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("programme"),
        ),
        (
            Method::GET,
            "/api/v1/nothing-here".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            Method::DELETE,
            "/api/v1/me".into(),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            None,
        ),
    ];
    for (method, path, body, status, code, field) in cases {
        let (answered, answer) = h.call(method.clone(), &path, Some(&nurse), body).await;
        assert_eq!(answered, status, "{method} {path}: {answer}");
        assert_eq!(error(&answer).0, code, "{method} {path}: {answer}");
        assert_eq!(error(&answer).1, field, "{method} {path}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let admin = h.tokens["admin"].clone();
    let admin_cases: Vec<(Method, &str, Value, StatusCode, Option<&str>)> = vec![
        (
            Method::POST,
            "/api/v1/patients",
            json!({"display_name": 7}),
            StatusCode::BAD_REQUEST,
            Some("display_name"),
        ),
        (
            Method::POST,
            "/api/v1/patients",
            json!({"display_name": ""}),
            StatusCode::BAD_REQUEST,
            Some("display_name"),
        ),
        (
            Method::POST,
            "/api/v1/patients",
            json!({"display_name": "Cleo", "birth_date": "2999-01-01"}),
            StatusCode::BAD_REQUEST,
            Some("birth_date"),
        ),
        (
            Method::POST,
            "/api/v1/patients",
            json!({"display_name": "Cleo", "birth_date": "1/2/1950"}),
            StatusCode::BAD_REQUEST,
            Some("birth_date"),
        ),
        (
            Method::POST,
            "/api/v1/users",
            json!({"username": "x", "display_name": "X", "role": "nurse"}),
            StatusCode::BAD_REQUEST,
            Some("username"),
        ),
        (
            Method::POST,
            "/api/v1/users",
            json!({"username": "xavier", "display_name": "X", "role": "wizard"}),
            StatusCode::BAD_REQUEST,
            Some("role"),
        ),
        (
            Method::POST,
            "/api/v1/users",
            json!({"username": "xavier", "display_name": "X", "role": "nurse", "password": "short"}),
            StatusCode::BAD_REQUEST,
            Some("password"),
        ),
        (
            Method::POST,
            "/api/v1/users",
            json!({"username": "patty", "display_name": "P", "role": "patient"}),
            StatusCode::BAD_REQUEST,
            Some("patient_id"),
        ),
        (
            Method::POST,
            "/api/v1/users",
            json!({"username": "nurse", "display_name": "N", "role": "nurse"}),
            StatusCode::CONFLICT,
            None,
        ),
        (
            Method::POST,
            "/api/v1/devices",
            json!({"kind": "toaster", "model": "m", "serial": "s"}),
            StatusCode::BAD_REQUEST,
            Some("kind"),
        ),
        (
            Method::POST,
            "/api/v1/devices",
            json!({"kind": "cgm", "model": "", "serial": "s"}),
            StatusCode::BAD_REQUEST,
            Some("model"),
        ),
        (
            Method::POST,
            "/api/v1/devices",
            json!({"kind": "cgm", "model": "m", "serial": "s", "device_id": "a b"}),
            StatusCode::BAD_REQUEST,
            Some("device_id"),
        ),
        (
            Method::POST,
            "/api/v1/users/not-a-uuid/disable",
            json!({}),
            StatusCode::BAD_REQUEST,
            Some("user_id"),
        ),
        (
            Method::POST,
            "/api/v1/care-teams",
            json!({"name": " "}),
            StatusCode::BAD_REQUEST,
            Some("name"),
        ),
        (
            Method::POST,
            "/api/v1/care-teams",
            json!({"name": "Ward 8\r\n2026-12-04 admin granted"}),
            StatusCode::BAD_REQUEST,
            Some("name"),
        ),
        (
            Method::POST,
            "/api/v1/patients",
            json!({"display_name": "Ada \u{202e}ecalevol"}),
            StatusCode::BAD_REQUEST,
            Some("display_name"),
        ),
        (
            Method::POST,
            "/api/v1/care-teams",
            json!({"name": "Ward 7"}),
            StatusCode::CONFLICT,
            None,
        ),
    ];
    for (method, path, body, status, field) in admin_cases {
        let (answered, answer) = h
            .call(method.clone(), path, Some(&admin), Some(body.clone()))
            .await;
        assert_eq!(answered, status, "{method} {path} {body}: {answer}");
        assert_eq!(error(&answer).1, field, "{method} {path} {body}: {answer}");
    }
    // The server is still serving.
    let (status, _) = h.call(Method::GET, "/api/v1/me", Some(&nurse), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn bodies_that_are_not_json_or_too_large_are_refused() {
    let h = hospital().await;
    let admin = h.tokens["admin"].clone();
    let send = |content_type: Option<&str>, body: Vec<u8>| {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/care-teams")
            .header("authorization", format!("Bearer {admin}"));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.body(Body::from(body)).unwrap()
    };
    let (status, body) = h.send(send(None, b"{\"name\":\"A\"}".to_vec())).await;
    assert_eq!(
        (status, error(&body).1),
        (StatusCode::BAD_REQUEST, Some("content-type"))
    );
    let (status, body) = h
        .send(send(Some("application/json"), b"{\"name\":".to_vec()))
        .await;
    assert_eq!(
        (status, error(&body).0),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "{body}"
    );
    // Too large: the one JSON error (not the body limit's own plain text), and the
    // connection is closed, since the rest of the body is never read.
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let response = h
        .app
        .clone()
        .oneshot(send(Some("application/json"), huge.into_bytes()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).expect("a JSON error body");
    assert_eq!(error(&body).0, "payload_too_large", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("1048576")),
        "{body}"
    );
}

/// The web app's session cookie works only with the request header a cross-site form
/// cannot send.
#[tokio::test]
async fn a_cookie_session_needs_the_request_header_to_change_anything() {
    let h = hospital().await;
    let cookie = format!("wardline_session={}", h.tokens["admin"]);
    let request = |header: bool| {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/care-teams")
            .header("cookie", &cookie)
            .header("content-type", "application/json");
        if header {
            request = request.header("x-wardline-request", "1");
        }
        request
            .body(Body::from(
                json!({"name": format!("Team {header}")}).to_string(),
            ))
            .unwrap()
    };
    let (status, body) = h.send(request(false)).await;
    assert_eq!(
        (status, error(&body).0, error(&body).1),
        (
            StatusCode::FORBIDDEN,
            "csrf_header_missing",
            Some("x-wardline-request")
        )
    );
    let (status, _) = h.send(request(true)).await;
    assert_eq!(status, StatusCode::CREATED);
    let read = Request::builder()
        .uri("/api/v1/me")
        .header("cookie", &cookie)
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(read).await.0, StatusCode::OK, "reads need no header");
}

#[tokio::test]
async fn wrong_passwords_are_refused_then_slowed() {
    let h = hospital().await;
    let login = |password: &str| {
        h.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "nurse", "password": password})),
        )
    };
    for _ in 0..3 {
        let (status, body) = login("wrong wrong wrong").await;
        assert_eq!(
            (status, error(&body).0),
            (StatusCode::UNAUTHORIZED, "bad_login")
        );
    }
    // From the third failure the account's next attempt must wait, even with the right
    // password (the wait doubles with each failure, up to 30 s).
    let (status, body) = login(common::PASSWORD).await;
    assert_eq!(
        (status, error(&body).0),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts")
    );
    let (status, body) = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "nobody", "password": "x"})),
        )
        .await;
    assert_eq!(
        (status, error(&body).0),
        (StatusCode::UNAUTHORIZED, "bad_login"),
        "unknown users look alike"
    );
}

/// Devices: a wrong secret is `unauthenticated`, a bad payload names its field and kind.
#[tokio::test]
async fn device_requests_are_checked_and_precise() {
    let h = hospital().await;
    let (device, secret) = h.ada_cgm().await;
    let post = |secret: &str, body: &str| {
        Request::builder()
            .method(Method::POST)
            .uri(format!("/api/v1/devices/{device}/readings"))
            .header("authorization", format!("Bearer {secret}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let now = chrono::Utc::now().to_rfc3339();
    let good =
        json!({"v": 1, "seq": 1, "code": "99504-3", "value": 101, "unit": "mg/dL", "time": now})
            .to_string();
    let (status, body) = h.send(post("wds_wrong", &good)).await;
    assert_eq!(
        (status, error(&body).0),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    let bad =
        json!({"v": 1, "seq": 2, "code": "99504-3", "value": 101, "unit": "furlongs", "time": now})
            .to_string();
    let (status, body) = h.send(post(&secret, &bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error(&body), ("invalid_payload", Some("unit")));
    assert_eq!(body["error"]["kind"], "unit_mismatch");
    // A CGM does not measure a heart rate.
    let foreign =
        json!({"v": 1, "seq": 3, "code": "8867-4", "value": 72, "unit": "/min", "time": now})
            .to_string();
    let (status, body) = h.send(post(&secret, &foreign)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error(&body), ("invalid_payload", Some("code")));
    assert_eq!(body["error"]["kind"], "not_for_device");
    let (status, body) = h.send(post(&secret, &good)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"stored": 1, "duplicates": 0}));
    let (status, body) = h.send(post(&secret, &good)).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"stored": 0, "duplicates": 1})),
        "a retry stores nothing twice"
    );
    let status_report = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/devices/{device}/status"))
        .header("authorization", format!("Bearer {secret}"))
        .header("content-type", "application/json")
        .body(Body::from(json!({"battery_percent": 140}).to_string()))
        .unwrap();
    let (status, body) = h.send(status_report).await;
    assert_eq!(
        (status, error(&body).1),
        (StatusCode::BAD_REQUEST, Some("battery_percent"))
    );
}
