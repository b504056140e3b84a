//! Live streams end when the access they were opened with ends: within about a second of
//! a logout, a disabled account or the session's expiry, checked by the same rules as at
//! the opening.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;
use wardline_service::ServiceSettings;

use crate::common::{Hospital, hospital, hospital_with};

/// An open stream's body, read frame by frame.
pub(crate) struct OpenStream(Body);

impl OpenStream {
    pub(crate) async fn open(h: &Hospital, who: &str, path: &str) -> Self {
        Self::open_with_token(h, &h.tokens[who], path).await
    }

    pub(crate) async fn open_with_token(h: &Hospital, token: &str, path: &str) -> Self {
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let response = h.app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "opening {path}");
        Self(response.into_body())
    }

    /// The text the stream sends within `limit` (events and keep-alives).
    pub(crate) async fn text_within(&mut self, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        let mut text = String::new();
        while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, self.0.frame()).await {
            if let Ok(data) = frame.into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
        text
    }

    /// Whether the stream ended (its body finished) within `limit`; frames that arrive
    /// meanwhile (keep-alives, events) are read and skipped.
    pub(crate) async fn ends_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.0.frame()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

fn streams(h: &Hospital) -> [String; 3] {
    [
        format!("/api/v1/patients/{}/observations/stream", h.ada),
        "/api/v1/observations/stream".to_owned(),
        "/api/v1/alarms/stream".to_owned(),
    ]
}

/// A page tells a stalled server from a quiet one by the heartbeat: every stream sends
/// one, with the server's clock, every 5 s, whether or not anything happened.
#[tokio::test]
async fn every_stream_sends_a_heartbeat_a_page_can_see() {
    let h = hospital().await;
    let mut open = Vec::new();
    for path in streams(&h) {
        open.push((OpenStream::open(&h, "clinician", &path).await, path));
    }
    // All three at once: each waits for its first heartbeat.
    let texts = futures_util::future::join_all(
        open.iter_mut()
            .map(|(stream, _)| stream.text_within(Duration::from_millis(6500))),
    )
    .await;
    for ((_, path), text) in open.iter().zip(texts) {
        let beat = text
            .lines()
            .position(|line| line == "event: heartbeat")
            .unwrap_or_else(|| panic!("{path}: no heartbeat in {text:?}"));
        let time = text
            .lines()
            .nth(beat + 1)
            .and_then(|line| line.strip_prefix("data: "))
            .expect("the heartbeat's data");
        let sent = chrono::DateTime::parse_from_rfc3339(time).expect("the server's clock");
        assert!((chrono::Utc::now() - sent.to_utc()).num_seconds().abs() < 10);
    }
}

#[tokio::test]
async fn every_stream_ends_at_logout() {
    let h = hospital().await;
    let mut open = Vec::new();
    for path in streams(&h) {
        open.push(OpenStream::open(&h, "clinician", &path).await);
    }
    for stream in &mut open {
        assert!(
            !stream.ends_within(Duration::from_millis(1500)).await,
            "a stream stays open while its session lives"
        );
    }
    let (status, _) = h
        .as_("clinician", Method::POST, "/api/v1/auth/logout", None)
        .await;
    assert!(status.is_success(), "{status}");
    for (stream, path) in open.iter_mut().zip(streams(&h)) {
        assert!(
            stream.ends_within(Duration::from_millis(2500)).await,
            "{path} ends after the logout"
        );
    }
}

#[tokio::test]
async fn every_stream_ends_when_the_account_is_disabled() {
    let h = hospital().await;
    let mut open = Vec::new();
    for path in streams(&h) {
        open.push(OpenStream::open(&h, "nurse", &path).await);
    }
    let (_, users) = h.as_("admin", Method::GET, "/api/v1/users", None).await;
    let nurse = users
        .as_array()
        .unwrap()
        .iter()
        .find(|user| user["username"] == json!("nurse"))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = h
        .as_(
            "admin",
            Method::POST,
            &format!("/api/v1/users/{nurse}/disable"),
            None,
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    for (stream, path) in open.iter_mut().zip(streams(&h)) {
        assert!(
            stream.ends_within(Duration::from_millis(2500)).await,
            "{path} ends after the account is disabled"
        );
    }
}

#[tokio::test]
async fn a_patients_own_stream_ends_when_the_session_expires() {
    let h = hospital_with(ServiceSettings {
        session_lifetime: chrono::Duration::seconds(3),
        ..ServiceSettings::default()
    })
    .await;
    let mut stream = OpenStream::open(
        &h,
        "ada",
        &format!("/api/v1/patients/{}/observations/stream", h.ada),
    )
    .await;
    assert!(
        stream.ends_within(Duration::from_secs(5)).await,
        "the stream ends with its session"
    );
}
