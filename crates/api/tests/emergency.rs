//! Emergency ("break-the-glass") access through the real router: who may open it, what
//! it allows and for how long, what the audit trail and the patient see, and the review.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use wardline_service::ServiceSettings;

use crate::common::{Hospital, hospital, hospital_with};
use crate::streams::OpenStream;

const REASON: &str = "called to a cardiac arrest on ward 4, no team member on site";

async fn open(h: &Hospital, who: &str, reason: &str) -> (StatusCode, Value) {
    h.as_(
        who,
        Method::POST,
        &format!("/api/v1/patients/{}/emergency-access", h.ada),
        Some(json!({"reason": reason})),
    )
    .await
}

/// A clinician outside Ada's care teams is refused her data, opens emergency access with
/// a reason, then reads it (each read audited as emergency access, and shown in Ada's
/// own access log), but changes nothing. Only clinicians and nurses may open it, and
/// only for a patient not already theirs.
#[tokio::test]
async fn a_clinician_outside_the_team_reads_under_emergency_access_but_changes_nothing() {
    let h = hospital().await;
    let patient = format!("/api/v1/patients/{}", h.ada);
    let latest = format!("{patient}/observations/latest");
    let (status, _) = h.as_("outsider", Method::GET, &latest, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, body) = open(&h, "outsider", "urgent").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "reason");
    for (who, code) in [
        ("admin", "not_permitted"),
        ("ada", "not_permitted"),
        ("bob", "not_permitted"),
    ] {
        let (status, body) = open(&h, who, REASON).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {body}");
        assert_eq!(body["error"]["code"], code, "{who}");
    }
    let (status, body) = open(&h, "nurse", REASON).await;
    assert_eq!(status, StatusCode::CONFLICT, "already on the team: {body}");
    assert_eq!(body["error"]["code"], "invalid_state");

    let (status, access) = open(&h, "outsider", REASON).await;
    assert_eq!(status, StatusCode::CREATED, "{access}");
    assert_eq!(access["reason"], REASON);
    assert_eq!(access["review"], Value::Null);
    let (status, mine) = h
        .as_(
            "outsider",
            Method::GET,
            &format!("{patient}/emergency-access"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["access"]["id"], access["id"]);
    let (_, none) = h
        .as_(
            "clinician",
            Method::GET,
            &format!("{patient}/emergency-access"),
            None,
        )
        .await;
    assert_eq!(
        none["access"],
        Value::Null,
        "the team's own clinician has none"
    );

    for path in [patient.clone(), latest.clone(), format!("{patient}/alarms")] {
        let (status, body) = h.as_("outsider", Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // Reading, not changing: the care plan stays the team's.
    let (status, _) = h
        .as_(
            "outsider",
            Method::PUT,
            &format!("{patient}/care-plan"),
            Some(json!({"program": "cardiac", "reason": "while covering"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Bob is still out of reach.
    let (status, _) = h
        .as_(
            "outsider",
            Method::GET,
            &format!("/api/v1/patients/{}", h.bob),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (_, trail) = h
        .as_(
            "admin",
            Method::GET,
            &format!("/api/v1/audit?patient_id={}&limit=200", h.ada),
            None,
        )
        .await;
    let entries = trail.as_array().unwrap();
    let opened = entries
        .iter()
        .find(|entry| entry["action"] == "emergency_access.open" && entry["outcome"] == "allowed")
        .expect("the opening is audited");
    assert!(opened["detail"].as_str().unwrap().contains(REASON));
    let emergency_reads = entries
        .iter()
        .filter(|entry| {
            entry["actor_label"] == "outsider"
                && entry["outcome"] == "allowed"
                && entry["detail"]
                    .as_str()
                    .is_some_and(|detail| detail.starts_with("emergency access"))
        })
        .count();
    assert!(
        emergency_reads >= 3,
        "each read says it was emergency access: {entries:?}"
    );
    let (_, log) = h
        .as_("ada", Method::GET, &format!("{patient}/access-log"), None)
        .await;
    let outsider_name = "OUTSIDER";
    assert!(
        log.as_array().unwrap().iter().any(
            |entry| entry["who"] == outsider_name && entry["action"] == "emergency_access.open"
        ),
        "Ada sees who opened emergency access to her record: {log}"
    );
}

/// Emergency access ends by itself: reads are refused after it, and a live stream
/// opened under it ends with it.
#[tokio::test]
async fn emergency_access_ends_by_itself_and_takes_its_stream_with_it() {
    let h = hospital_with(ServiceSettings {
        emergency_access: chrono::Duration::seconds(3),
        ..ServiceSettings::default()
    })
    .await;
    let (status, body) = open(&h, "outsider", REASON).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let latest = format!("/api/v1/patients/{}/observations/latest", h.ada);
    let (status, _) = h.as_("outsider", Method::GET, &latest, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut stream = OpenStream::open(
        &h,
        "outsider",
        &format!("/api/v1/patients/{}/observations/stream", h.ada),
    )
    .await;
    assert!(
        !stream.ends_within(Duration::from_millis(1500)).await,
        "the stream goes on while the access lasts"
    );
    assert!(
        stream.ends_within(Duration::from_secs(4)).await,
        "the stream ends with the access"
    );
    let (status, _) = h.as_("outsider", Method::GET, &latest, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "refused after it ended");
}

/// The review list as `who` asks for it.
async fn unreviewed(h: &Hospital, who: &str) -> (StatusCode, Value) {
    h.as_(
        who,
        Method::GET,
        "/api/v1/emergency-access?unreviewed=true",
        None,
    )
    .await
}

/// Every emergency access waits on the administrators' list until one reviews it, once.
#[tokio::test]
async fn an_administrator_reviews_each_emergency_access_once() {
    let h = hospital().await;
    let (_, access) = open(&h, "outsider", REASON).await;
    let id = access["id"].as_str().unwrap().to_owned();
    for who in ["outsider", "clinician", "ada"] {
        let (status, _) = unreviewed(&h, who).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}");
    }
    let (status, list) = unreviewed(&h, "admin").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], json!(id));
    assert_eq!(list[0]["username"], "outsider");
    let review = format!("/api/v1/emergency-access/{id}/review");
    let (status, reviewed) = h
        .as_(
            "admin",
            Method::POST,
            &review,
            Some(json!({"note": "confirmed with the ward 4 charge nurse"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reviewed}");
    assert_eq!(reviewed["review"]["reviewer"], "admin");
    let (status, body) = h
        .as_(
            "admin",
            Method::POST,
            &review,
            Some(json!({"note": "again"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a review is final: {body}");
    let (_, list) = unreviewed(&h, "admin").await;
    assert_eq!(list, json!([]));
    let (_, all) = h
        .as_("admin", Method::GET, "/api/v1/emergency-access", None)
        .await;
    assert_eq!(all.as_array().unwrap().len(), 1);
}
