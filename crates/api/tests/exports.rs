//! A patient's readings exported as CSV and NDJSON, by the people who may read them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::{Hospital, hospital};

/// `GET path` as `who`: status, content type and the body as text.
async fn download(h: &Hospital, who: &str, path: &str) -> (StatusCode, String, String) {
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("authorization", format!("Bearer {}", h.tokens[who]))
        .body(Body::empty())
        .unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let kind = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, kind, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn the_patient_and_the_team_export_every_reading_and_nobody_else_does() {
    let h = hospital().await;
    let start = chrono::Utc::now() - chrono::Duration::hours(2);
    let (device, secret) = h.ada_cgm_since(start - chrono::Duration::minutes(1)).await;
    let readings: Vec<Value> = (0..30)
        .map(|i| {
            json!({"seq": i, "code": "99504-3", "value": 100 + i, "unit": "mg/dL",
                   "time": start + chrono::Duration::minutes(i * 2)})
        })
        .collect();
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/api/v1/devices/{device}/readings"),
            Some(&secret),
            Some(json!({"v": 1, "readings": readings})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/api/v1/devices/{device}/readings"),
            Some(&secret),
            Some(json!({"v": 1, "seq": 99, "code": "99504-3", "value": 5.5, "unit": "mmol/L", "time": chrono::Utc::now()})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let path = format!("/api/v1/patients/{}/export", h.ada);
    let (status, kind, csv) = download(&h, "clinician", &path).await;
    assert_eq!(status, StatusCode::OK, "{csv}");
    assert!(kind.starts_with("text/csv"), "{kind}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 32, "a header and 31 readings");
    assert!(lines[0].starts_with("effective,loinc,display,value,unit"));
    assert!(
        lines[1].contains(",99504-3,") && lines[1].contains(",100,mg/dL,"),
        "{}",
        lines[1]
    );
    assert!(
        lines[31].contains(",5.5,mmol/L,"),
        "the unit the device sent: {}",
        lines[31]
    );
    assert!(csv.ends_with("\r\n"));

    let since =
        (start + chrono::Duration::minutes(30)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (status, kind, ndjson) =
        download(&h, "ada", &format!("{path}?format=ndjson&from={since}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind, "application/x-ndjson");
    let observations: Vec<Value> = ndjson
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        observations.len(),
        16,
        "from minute 30 on: 15 of the batch and the last"
    );
    assert_eq!(observations[0]["value"], 115.0);

    for who in ["bob", "admin"] {
        let (status, _, _) = download(&h, who, &path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}");
    }
    let (status, _, body) = download(&h, "clinician", &format!("{path}?format=xlsx")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, audit) = h
        .as_(
            "admin",
            Method::GET,
            "/api/v1/audit?action=observations.export&limit=10",
            None,
        )
        .await;
    let outcomes: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|event| &event["outcome"])
        .collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|outcome| **outcome == "allowed")
            .count(),
        2,
        "{audit}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|outcome| **outcome == "denied")
            .count(),
        2
    );
}
