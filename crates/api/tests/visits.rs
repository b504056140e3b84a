//! Telehealth visits through the real router: who may schedule, read, enter, signal and
//! chat; the room passes signalling between its participants only; the note is the
//! patient's to read once signed; a care plan change made in the visit is in force and
//! linked to it; the ledger counts the visit's time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::http::{Method, StatusCode};
use chrono::Utc;
use serde_json::{Value, json};

use crate::common::{Hospital, hospital};
use crate::streams::OpenStream;

const ROLES: [&str; 8] = [
    "admin",
    "clinician",
    "nurse",
    "outsider",
    "specialist",
    "ada",
    "bob",
    "anonymous",
];

fn expected(who: &str, allowed: &[&str]) -> StatusCode {
    if allowed.contains(&who) {
        StatusCode::OK
    } else if who == "anonymous" {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    }
}

async fn user_id(h: &Hospital, who: &str) -> String {
    let (status, me) = h.as_(who, Method::GET, "/api/v1/me", None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    me["id"]
        .as_str()
        .or(me["user"]["id"].as_str())
        .unwrap()
        .to_owned()
}

/// A visit of Ada's with the clinician, starting in `minutes`.
async fn visit(h: &Hospital, minutes: i64) -> Value {
    let (status, visit) = h
        .as_(
            "clinician",
            Method::POST,
            &format!("/api/v1/patients/{}/visits", h.ada),
            Some(json!({
                "start": Utc::now() + chrono::Duration::minutes(minutes),
                "duration_minutes": 20,
                "reason": "blood pressure review",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{visit}");
    visit
}

#[tokio::test]
async fn only_the_care_team_schedules_and_bad_requests_name_their_field() {
    let h = hospital().await;
    let nurse = user_id(&h, "nurse").await;
    let outsider = user_id(&h, "outsider").await;
    let path = format!("/api/v1/patients/{}/visits", h.ada);
    let body = |extra: Value| {
        let mut body = json!({
            "start": Utc::now() + chrono::Duration::hours(1),
            "duration_minutes": 30,
            "reason": "first week on the monitor",
        });
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    for who in ROLES {
        let (status, answer) = h.as_(who, Method::POST, &path, Some(body(json!({})))).await;
        let wanted = match who {
            "clinician" | "nurse" => StatusCode::CREATED,
            "anonymous" => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        };
        assert_eq!(status, wanted, "{who}: {answer}");
    }
    let (status, visit) = h
        .as_(
            "clinician",
            Method::POST,
            &path,
            Some(body(json!({"attendees": [nurse]}))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{visit}");
    assert_eq!(visit["attendees"].as_array().unwrap().len(), 2, "{visit}");
    assert_eq!(visit["status"], "scheduled");
    for (extra, field) in [
        (json!({"duration_minutes": 0}), "duration_minutes"),
        (json!({"duration_minutes": 600}), "duration_minutes"),
        (
            json!({"start": Utc::now() - chrono::Duration::days(1)}),
            "start",
        ),
        (json!({"reason": "  "}), "reason"),
        (json!({"reason": "a\u{0007}bell"}), "reason"),
        (json!({"attendees": [outsider]}), "attendees"),
    ] {
        let (status, error) = h
            .as_("clinician", Method::POST, &path, Some(body(extra.clone())))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}: {error}");
        assert_eq!(error["error"]["field"], field, "{extra}: {error}");
    }
    let (status, error) = h
        .as_(
            "clinician",
            Method::POST,
            &path,
            Some(body(json!({"surprise": 1}))),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
}

#[tokio::test]
async fn nobody_outside_the_visit_reads_enters_signals_or_chats() {
    let h = hospital().await;
    let visit = visit(&h, 5).await;
    let id = visit["id"].as_str().unwrap();
    // Reading the visit and its chat: the patient and her care team.
    for who in ROLES {
        let wanted = expected(who, &["clinician", "nurse", "ada"]);
        for path in [
            format!("/api/v1/visits/{id}"),
            format!("/api/v1/visits/{id}/messages"),
        ] {
            let (status, body) = h.as_(who, Method::GET, &path, None).await;
            assert_eq!(status, wanted, "{who} GET {path}: {body}");
        }
        let (status, body) = h
            .as_(
                who,
                Method::GET,
                &format!("/api/v1/patients/{}/visits", h.ada),
                None,
            )
            .await;
        assert_eq!(status, wanted, "{who} lists Ada's visits: {body}");
    }
    // Entering, signalling and chatting: the participants only (the nurse is on the
    // care team but does not attend this visit).
    for who in ROLES {
        let wanted = expected(who, &["clinician", "ada"]);
        let (status, body) = h
            .as_(
                who,
                Method::POST,
                &format!("/api/v1/visits/{id}/room/enter"),
                None,
            )
            .await;
        assert_eq!(status, wanted, "{who} enters: {body}");
        let (status, body) = h
            .as_(
                who,
                Method::POST,
                &format!("/api/v1/visits/{id}/room/signal"),
                Some(json!({"kind": "hello"})),
            )
            .await;
        let signalled = if wanted == StatusCode::OK {
            StatusCode::NO_CONTENT
        } else {
            wanted
        };
        assert_eq!(status, signalled, "{who} signals: {body}");
        let (status, body) = h
            .as_(
                who,
                Method::POST,
                &format!("/api/v1/visits/{id}/messages"),
                Some(json!({"text": format!("hello from {who}")})),
            )
            .await;
        let posted = if wanted == StatusCode::OK {
            StatusCode::CREATED
        } else {
            wanted
        };
        assert_eq!(status, posted, "{who} chats: {body}");
        // Listening: an allowed one's stream stays open (tested below); the others are
        // refused at once.
        if wanted != StatusCode::OK {
            let (status, body) = h
                .as_(
                    who,
                    Method::GET,
                    &format!("/api/v1/visits/{id}/room/events"),
                    None,
                )
                .await;
            assert_eq!(status, wanted, "{who} listens to the room: {body}");
        }
    }
    let (_, chat) = h
        .as_(
            "ada",
            Method::GET,
            &format!("/api/v1/visits/{id}/messages"),
            None,
        )
        .await;
    let authors: Vec<&str> = chat
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["text"].as_str().unwrap())
        .collect();
    assert_eq!(authors, ["hello from clinician", "hello from ada"]);
    // Every refusal is in the audit trail.
    let (_, log) = h
        .as_(
            "admin",
            Method::GET,
            &format!("/api/v1/audit?patient_id={}&limit=1000", h.ada),
            None,
        )
        .await;
    let refused: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["outcome"] == "denied")
        .filter_map(|entry| entry["action"].as_str())
        .filter(|action| action.starts_with("visits."))
        .collect();
    for action in ["visits.read", "visits.join", "visits.signal", "visits.chat"] {
        assert!(
            refused.contains(&action),
            "{action} refusals audited: {refused:?}"
        );
    }
    // Malformed signalling is refused with its field.
    for (request, field) in [
        (json!({"kind": "shout"}), "kind"),
        (json!({"kind": "offer", "data": "x".repeat(70_000)}), "data"),
        (
            json!({"kind": "offer", "to": "00000000-0000-4000-8000-000000000000"}),
            "to",
        ),
    ] {
        let (status, error) = h
            .as_(
                "clinician",
                Method::POST,
                &format!("/api/v1/visits/{id}/room/signal"),
                Some(request),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }
}

/// The clinician and Ada enter the visit's room, each handed the ICE servers.
async fn both_enter(h: &Hospital, id: &str) {
    for who in ["clinician", "ada"] {
        let (status, entry) = h
            .as_(
                who,
                Method::POST,
                &format!("/api/v1/visits/{id}/room/enter"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{entry}");
        assert!(entry["ice_servers"].is_array(), "{entry}");
    }
}

#[tokio::test]
async fn the_room_passes_signalling_to_the_other_participant_until_access_ends() {
    let h = hospital().await;
    let visit = visit(&h, 1).await;
    let id = visit["id"].as_str().unwrap();
    let clinician = user_id(&h, "clinician").await;
    let ada = user_id(&h, "ada").await;
    both_enter(&h, id).await;
    let mut ada_hears =
        OpenStream::open(&h, "ada", &format!("/api/v1/visits/{id}/room/events")).await;
    let mut clinician_hears =
        OpenStream::open(&h, "clinician", &format!("/api/v1/visits/{id}/room/events")).await;
    let offer = json!({"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"});
    let (status, body) = h
        .as_(
            "clinician",
            Method::POST,
            &format!("/api/v1/visits/{id}/room/signal"),
            Some(json!({"kind": "offer", "to": ada, "data": offer})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let heard = ada_hears.text_within(Duration::from_millis(500)).await;
    assert!(heard.contains("event: room"), "{heard}");
    assert!(heard.contains("\"kind\":\"offer\""), "{heard}");
    assert!(
        heard.contains(&format!("\"from\":\"{clinician}\"")),
        "{heard}"
    );
    // The sender does not hear its own signalling.
    let own = clinician_hears
        .text_within(Duration::from_millis(300))
        .await;
    assert!(!own.contains("\"kind\":\"offer\""), "{own}");
    // Chat goes to both.
    let (status, _) = h
        .as_(
            "ada",
            Method::POST,
            &format!("/api/v1/visits/{id}/messages"),
            Some(json!({"text": "no sound here"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let heard = clinician_hears
        .text_within(Duration::from_millis(500))
        .await;
    assert!(heard.contains("no sound here"), "{heard}");

    // Taken off the care team, the clinician can neither signal nor keep listening.
    let (status, members) = h
        .as_(
            "admin",
            Method::DELETE,
            &format!("/api/v1/care-teams/{}/members/{clinician}", h.team),
            None,
        )
        .await;
    assert!(status.is_success(), "{status} {members}");
    let (status, body) = h
        .as_(
            "clinician",
            Method::POST,
            &format!("/api/v1/visits/{id}/room/signal"),
            Some(json!({"kind": "candidate", "data": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        clinician_hears.ends_within(Duration::from_secs(3)).await,
        "the stream ends"
    );
}

/// Cancelling a visit closes its room: everyone's room stream hears `closed` and ends,
/// and the room can be neither entered nor used for signalling.
#[tokio::test]
async fn a_closed_visit_ends_its_room_streams() {
    let h = hospital().await;
    let visit = visit(&h, 1).await;
    let id = visit["id"].as_str().unwrap();
    both_enter(&h, id).await;
    let events = format!("/api/v1/visits/{id}/room/events");
    let mut ada_hears = OpenStream::open(&h, "ada", &events).await;
    let mut clinician_hears = OpenStream::open(&h, "clinician", &events).await;
    let (status, body) = h
        .as_(
            "clinician",
            Method::POST,
            &format!("/api/v1/visits/{id}/close"),
            Some(json!({"status": "cancelled", "reason": "the patient is in hospital"})),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    for stream in [&mut ada_hears, &mut clinician_hears] {
        let heard = stream.text_within(Duration::from_millis(500)).await;
        assert!(
            heard.contains("\"type\":\"closed\"") && heard.contains("\"status\":\"cancelled\""),
            "{heard}"
        );
        // Then the stream says it ends, and not that anyone's access did.
        assert!(
            heard.contains("event: ended") && heard.contains("events ended"),
            "{heard}"
        );
        assert!(
            stream.ends_within(Duration::from_secs(3)).await,
            "the stream ends"
        );
    }
    let (status, body) = h
        .as_(
            "ada",
            Method::POST,
            &format!("/api/v1/visits/{id}/room/signal"),
            Some(json!({"kind": "hello", "data": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = h
        .as_(
            "ada",
            Method::POST,
            &format!("/api/v1/visits/{id}/room/enter"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test]
async fn the_patient_reads_the_signed_note_and_the_visits_orders_and_plan_change() {
    let h = hospital().await;
    let visit = visit(&h, 1).await;
    let id = visit["id"].as_str().unwrap();
    let note = json!({"reason": "raised home readings", "findings": "mean 152/94 over 14 days", "plan": "amlodipine 5 mg\nreview in 4 weeks"});
    let (status, _) = h
        .as_(
            "ada",
            Method::PUT,
            &format!("/api/v1/visits/{id}/note"),
            Some(note.clone()),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the patient does not write the note"
    );
    let (status, draft) = h
        .as_(
            "clinician",
            Method::PUT,
            &format!("/api/v1/visits/{id}/note"),
            Some(note.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{draft}");
    assert_eq!(draft["plan"], "amlodipine 5 mg\nreview in 4 weeks");
    let (_, seen) = h
        .as_("ada", Method::GET, &format!("/api/v1/visits/{id}"), None)
        .await;
    assert!(
        seen["note"].is_null(),
        "a draft is not the patient's yet: {seen}"
    );
    let (_, seen) = h
        .as_("nurse", Method::GET, &format!("/api/v1/visits/{id}"), None)
        .await;
    assert_eq!(
        seen["note"]["plan"], note["plan"],
        "the care team reads the draft"
    );

    // A care plan change from the visit: in force, its reason naming the visit.
    let (status, changed) = h
        .as_(
            "clinician",
            Method::POST,
            &format!("/api/v1/visits/{id}/care-plan"),
            Some(json!({"reason": "start monitoring glucose", "program": "diabetes"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let version = changed["version"]["version"].as_u64().unwrap();
    assert_eq!(changed["visit"]["care_plan_versions"], json!([version]));
    let (status, plan) = h
        .as_(
            "ada",
            Method::GET,
            &format!("/api/v1/patients/{}/care-plan/versions", h.ada),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    let newest = plan["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("{plan}"))
        .iter()
        .find(|record| record["version"].as_u64() == Some(version))
        .unwrap_or_else(|| panic!("version {version} in {plan}"));
    assert!(newest["reason"].as_str().unwrap().contains(id), "{newest}");

    let (status, order) = h
        .as_(
            "clinician",
            Method::POST,
            &format!("/api/v1/patients/{}/treatment-orders", h.ada),
            Some(
                json!({"medication": "amlodipine", "dose": "5 mg", "frequency": "once a day",
                        "start": "2026-12-08", "instructions": "in the morning", "visit_id": id}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let (status, _) = h
        .as_(
            "nurse",
            Method::POST,
            &format!("/api/v1/patients/{}/treatment-orders", h.ada),
            Some(json!({"medication": "x", "dose": "1", "frequency": "daily", "start": "2026-12-08", "instructions": ""})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "orders are a clinician's");
    let (status, error) = h
        .as_(
            "clinician",
            Method::POST,
            &format!("/api/v1/patients/{}/treatment-orders", h.ada),
            Some(json!({"medication": "x", "dose": "1", "frequency": "daily", "start": "2026-12-08", "stop": "2026-12-01", "instructions": ""})),
        )
        .await;
    assert_eq!(
        (status, &error["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("stop"))
    );

    let (status, signed) = h
        .as_(
            "clinician",
            Method::POST,
            &format!("/api/v1/visits/{id}/note/sign"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    assert!(signed["signed"].is_string());
    let (status, _) = h
        .as_(
            "clinician",
            Method::PUT,
            &format!("/api/v1/visits/{id}/note"),
            Some(note.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a signed note is read-only");
    let (status, amended) = h
        .as_(
            "nurse",
            Method::POST,
            &format!("/api/v1/visits/{id}/note/addenda"),
            Some(json!({"text": "cuff size checked: adult large"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{amended}");
    let (_, seen) = h
        .as_("ada", Method::GET, &format!("/api/v1/visits/{id}"), None)
        .await;
    assert_eq!(seen["note"]["plan"], note["plan"], "{seen}");
    assert_eq!(seen["note"]["addenda"].as_array().unwrap().len(), 1);
    assert_eq!(seen["orders"][0]["medication"], "amlodipine");
    let (_, orders) = h
        .as_(
            "ada",
            Method::GET,
            &format!("/api/v1/patients/{}/treatment-orders", h.ada),
            None,
        )
        .await;
    assert_eq!(orders.as_array().unwrap().len(), 1, "{orders}");
    let (status, _) = h
        .as_(
            "bob",
            Method::GET,
            &format!("/api/v1/patients/{}/treatment-orders", h.ada),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Closing: a visit cannot be completed twice; a closed visit's room does not open.
    let (status, closed) = h
        .as_(
            "clinician",
            Method::POST,
            &format!("/api/v1/visits/{id}/close"),
            Some(json!({"status": "completed"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    let (status, _) = h
        .as_(
            "clinician",
            Method::POST,
            &format!("/api/v1/visits/{id}/close"),
            Some(json!({"status": "cancelled"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = h
        .as_(
            "ada",
            Method::POST,
            &format!("/api/v1/visits/{id}/room/enter"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn the_ledger_counts_the_visit_and_the_timer_for_the_care_team_only() {
    let h = hospital().await;
    // A device assigned to Ada opens her monitoring episode.
    let _cgm = h
        .ada_cgm_since(Utc::now() - chrono::Duration::days(3))
        .await;
    let visit = visit(&h, 1).await;
    let id = visit["id"].as_str().unwrap();
    for who in ["clinician", "ada"] {
        h.as_(
            who,
            Method::POST,
            &format!("/api/v1/visits/{id}/room/enter"),
            None,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for who in ["ada", "clinician"] {
        let (status, _) = h
            .as_(
                who,
                Method::POST,
                &format!("/api/v1/visits/{id}/room/leave"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let path = format!("/api/v1/patients/{}/monitoring-time", h.ada);
    let (status, time) = h
        .as_(
            "nurse",
            Method::POST,
            &path,
            Some(json!({"source": "timer", "seconds": 660})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{time}");
    let (status, error) = h
        .as_(
            "nurse",
            Method::POST,
            &path,
            Some(json!({"source": "correction", "seconds": -60})),
        )
        .await;
    assert_eq!(
        (status, &error["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("reason"))
    );
    let (status, _) = h
        .as_(
            "ada",
            Method::POST,
            &path,
            Some(json!({"source": "timer", "seconds": 60})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let ledger_path = format!("/api/v1/patients/{}/rpm-ledger", h.ada);
    for who in ROLES {
        let (status, body) = h.as_(who, Method::GET, &ledger_path, None).await;
        assert_eq!(
            status,
            expected(who, &["clinician", "nurse"]),
            "{who}: {body}"
        );
    }
    let (_, ledger) = h.as_("nurse", Method::GET, &ledger_path, None).await;
    let months = ledger["ledger"]["months"].as_array().unwrap();
    let this_month = months.last().unwrap();
    assert_eq!(this_month["interactive_contacts"], 1, "{ledger}");
    // 11 minutes of timer plus the visit's second or so.
    assert_eq!(this_month["minutes"], 11, "{ledger}");
    let codes: Vec<&str> = this_month["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["99470"], "10-19 minutes with a contact: {ledger}");
    let (status, all) = h
        .as_("clinician", Method::GET, "/api/v1/rpm-ledger", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all.as_array().unwrap().len(), 1, "Ada only: {all}");
    let (status, csv) = h
        .as_("clinician", Method::GET, "/api/v1/rpm-ledger.csv", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let csv = csv.as_str().unwrap();
    assert!(csv.starts_with("patient_id,patient_name,kind"), "{csv}");
    assert!(
        csv.contains(",management_month,") && csv.contains("99470"),
        "{csv}"
    );
    let (status, _) = h.as_("ada", Method::GET, "/api/v1/rpm-ledger", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// A month of remote monitoring, end to end: a scale from the simulated ward (the demo's
/// Farid's, sending at 07:00 New York time) used on chosen days, a video visit, the page
/// timer and a correction, with the clock moved through November and into December. The
/// codes below are worked out by hand from those records:
///
/// - the episode starts when the scale is assigned, 2 Nov 06:00 EST; period 0 is 2 Nov to
///   1 Dec, period 1 is 2 Dec to 31 Dec;
/// - period 0 has readings on 2–18 Nov (17 days) and one sent at 03:30 UTC on 2 Dec, which
///   is 22:30 on 1 Dec in New York: 18 device days, so 99453 (set-up, ≥ 2 days) and
///   99454 (≥ 16 days); the clinician recorded the most time in it, so bills it;
/// - period 1 has 2 and 3 Dec by 5 Dec: 99445 (2–15 days), 14 days short of 99454;
/// - November: the clinician's 12 minutes in the visit's room (the patient's own 10 do
///   not count), the nurse's 9-minute timer, the clinician's 25 minutes, a correction of
///   −2 minutes: 44 minutes with one interactive contact (the visit), so 99457 and one
///   99458 (each further full 20 minutes);
/// - December: 8 minutes and no contact: no code, 2 minutes and a contact short of 99470.
#[tokio::test]
async fn a_simulated_month_supports_the_codes_worked_out_by_hand() {
    use wardline_alarms::{Clock, ManualClock};
    use wardline_service::ServiceSettings;

    let utc = |text: &str| text.parse::<chrono::DateTime<Utc>>().unwrap();
    // The hospital is set up at the real time (the admin's second factor is checked
    // against it); the month is then lived in the past, with sessions long enough.
    let clock = std::sync::Arc::new(ManualClock::new(Utc::now()));
    let settings = ServiceSettings {
        practice_time_zone: chrono_tz::America::New_York,
        session_lifetime: chrono::Duration::days(60),
        session_idle_timeout: None,
        ..ServiceSettings::default()
    };
    let h = crate::common::hospital_with_clock(settings, clock.clone()).await;
    let cli = wardline_service::Actor::CommandLine;
    clock.set(utc("2026-11-02T11:00:00Z"));
    let scale = wardline_domain::DeviceId::parse("scale-farid").unwrap();
    let enrolled = h
        .service
        .enrol_device(
            &cli,
            wardline_service::devices::Enrolment {
                kind: wardline_domain::DeviceKind::Scale,
                model: "Simulated scale".into(),
                serial: "SIM-SCALE".into(),
                device_id: Some(scale.clone()),
                patient_id: None,
            },
        )
        .await
        .unwrap();
    h.service
        .assign_device(&cli, &scale, h.ada, Some(utc("2026-11-02T11:00:00Z")))
        .await
        .unwrap();
    let secret = enrolled.secret.expose().to_owned();
    let send = |body: Vec<u8>| {
        let request = axum::http::Request::builder()
            .method(Method::POST)
            .uri("/api/v1/devices/scale-farid/readings")
            .header("authorization", format!("Bearer {secret}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .unwrap();
        h.send(request)
    };
    let new_york = chrono_tz::America::New_York;
    let used_on = |day: chrono::NaiveDate| {
        let november =
            (2..=18).contains(&chrono::Datelike::day(&day)) && chrono::Datelike::month(&day) == 11;
        let december =
            chrono::Datelike::month(&day) == 12 && [2, 3].contains(&chrono::Datelike::day(&day));
        november || december
    };
    let mut ward = wardline_sim::Ward::standard_in(
        11,
        utc("2026-11-02T00:00:00Z"),
        chrono::FixedOffset::west_opt(5 * 3600).unwrap(),
    );
    ward.retain_patients(|key| key == "farid");
    let emissions: Vec<_> = ward
        .advance_to(utc("2026-12-05T00:00:00Z"))
        .into_iter()
        .filter(|emission| emission.device_key == "scale-farid")
        .filter(|emission| used_on(emission.sim_time.with_timezone(&new_york).date_naive()))
        .collect();
    assert_eq!(emissions.len(), 19, "one weighing a day on the chosen days");

    let timers = [
        (
            "2026-11-12T16:00:00Z",
            "nurse",
            json!({"source": "timer", "seconds": 540}),
        ),
        (
            "2026-11-20T17:00:00Z",
            "clinician",
            json!({"source": "timer", "seconds": 1500}),
        ),
        (
            "2026-11-21T10:00:00Z",
            "clinician",
            json!({"source": "correction", "seconds": -120, "reason": "timer left running over lunch"}),
        ),
        (
            "2026-12-03T16:00:00Z",
            "clinician",
            json!({"source": "timer", "seconds": 480}),
        ),
    ];
    let mut november_visit_done = false;
    for emission in emissions {
        // What the people did before this weighing, in time order.
        if !november_visit_done && emission.sim_time > utc("2026-11-10T12:00:00Z") {
            november_visit_done = true;
            clock.set(utc("2026-11-10T14:00:00Z"));
            let visit = visit_at(&h, "2026-11-10T15:00:00Z").await;
            let id = visit["id"].as_str().unwrap().to_owned();
            for (time, who, action) in [
                ("2026-11-10T15:00:00Z", "clinician", "enter"),
                ("2026-11-10T15:01:00Z", "ada", "enter"),
                ("2026-11-10T15:11:00Z", "ada", "leave"),
                ("2026-11-10T15:12:00Z", "clinician", "leave"),
            ] {
                clock.set(utc(time));
                let (status, body) = h
                    .as_(
                        who,
                        Method::POST,
                        &format!("/api/v1/visits/{id}/room/{action}"),
                        None,
                    )
                    .await;
                assert_eq!(status, StatusCode::OK, "{who} {action}: {body}");
            }
            clock.set(utc("2026-11-10T15:30:00Z"));
            let (status, _) = h
                .as_(
                    "clinician",
                    Method::POST,
                    &format!("/api/v1/visits/{id}/close"),
                    Some(json!({"status": "completed"})),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        record_time(&h, &clock, &timers, emission.sim_time).await;
        if emission.sim_time > utc("2026-12-02T03:30:00Z")
            && clock.now() < utc("2026-12-02T03:30:00Z")
        {
            // A late-evening weighing on 1 Dec, New York time, after midnight UTC.
            clock.set(utc("2026-12-02T03:31:00Z"));
            let (status, body) = send(
                json!({"v": 1, "seq": 900_000, "code": "29463-7", "value": 81.2, "unit": "kg",
                       "time": "2026-12-02T03:30:00Z"})
                .to_string()
                .into_bytes(),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        clock.set(emission.sim_time + chrono::Duration::seconds(1));
        let (status, body) = send(emission.payload_bytes).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    record_time(&h, &clock, &timers, utc("2026-12-05T12:00:00Z")).await;
    clock.set(utc("2026-12-05T12:00:00Z"));
    let (status, ledger) = h
        .as_(
            "nurse",
            Method::GET,
            &format!("/api/v1/patients/{}/rpm-ledger", h.ada),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{ledger}");
    assert_eq!(ledger["time_zone"], "America/New_York");
    let codes = |entry: &Value| -> Vec<(String, u64)> {
        entry["codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|code| {
                (
                    code["code"].as_str().unwrap().to_owned(),
                    code["units"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let periods = ledger["ledger"]["periods"].as_array().unwrap();
    assert_eq!(periods.len(), 2, "{ledger}");
    assert_eq!(
        (
            periods[0]["first_day"].as_str(),
            periods[0]["last_day"].as_str()
        ),
        (Some("2026-11-02"), Some("2026-12-01"))
    );
    assert_eq!(periods[0]["device_days"], 18, "{}", periods[0]);
    assert_eq!(
        codes(&periods[0]),
        [("99453".into(), 1), ("99454".into(), 1)]
    );
    assert_eq!(periods[0]["complete"], true);
    let clinician = user_id(&h, "clinician").await;
    assert_eq!(periods[0]["billing_practitioner"], json!(clinician));
    assert_eq!(periods[1]["device_days"], 2, "{}", periods[1]);
    assert_eq!(codes(&periods[1]), [("99445".into(), 1)]);
    assert_eq!(periods[1]["complete"], false);
    let short = periods[1]["shortfall"]["message"].as_str().unwrap();
    assert!(
        short.contains("14 more days") && short.contains("2026-12-31"),
        "{short}"
    );

    let months = ledger["ledger"]["months"].as_array().unwrap();
    assert_eq!(months.len(), 2, "{ledger}");
    assert_eq!(months[0]["month"], "2026-11-01");
    assert_eq!(months[0]["minutes"], 44, "{}", months[0]);
    assert_eq!(months[0]["interactive_contacts"], 1);
    assert_eq!(
        codes(&months[0]),
        [("99457".into(), 1), ("99458".into(), 1)]
    );
    assert_eq!(months[1]["minutes"], 8, "{}", months[1]);
    assert_eq!(months[1]["interactive_contacts"], 0);
    assert!(codes(&months[1]).is_empty());
    let short = months[1]["shortfall"]["message"].as_str().unwrap();
    assert!(
        short.contains("2 more minutes") && short.contains("interactive contact"),
        "{short}"
    );
}

/// Records, in time order, the monitoring time of `timers` due after the clock and by
/// `until`, moving the clock to each.
async fn record_time(
    h: &Hospital,
    clock: &wardline_alarms::ManualClock,
    timers: &[(&str, &str, Value)],
    until: chrono::DateTime<Utc>,
) {
    use wardline_alarms::Clock;
    for (time, who, body) in timers {
        let at: chrono::DateTime<Utc> = time.parse().unwrap();
        if at > clock.now() && at <= until {
            clock.set(at);
            let (status, recorded) = h
                .as_(
                    who,
                    Method::POST,
                    &format!("/api/v1/patients/{}/monitoring-time", h.ada),
                    Some(body.clone()),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{recorded}");
        }
    }
}

/// A visit of Ada's with the clinician at `start`, scheduled now (by the test's clock).
async fn visit_at(h: &Hospital, start: &str) -> Value {
    let (status, visit) = h
        .as_(
            "clinician",
            Method::POST,
            &format!("/api/v1/patients/{}/visits", h.ada),
            Some(json!({"start": start, "duration_minutes": 20, "reason": "monthly review"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{visit}");
    visit
}

/// A reload opens the room's stream again before the old one closes: closing the old one
/// does not end the stay; closing the last one does.
#[tokio::test]
async fn the_stay_ends_when_the_persons_last_room_stream_closes() {
    let h = hospital().await;
    let visit = visit(&h, 1).await;
    let id = visit["id"].as_str().unwrap();
    let (status, _) = h
        .as_(
            "ada",
            Method::POST,
            &format!("/api/v1/visits/{id}/room/enter"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let events = format!("/api/v1/visits/{id}/room/events");
    let old = OpenStream::open(&h, "ada", &events).await;
    let new = OpenStream::open(&h, "ada", &events).await;
    let still_in = |record: &Value| {
        record["presence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|span| span["left"].is_null())
    };
    drop(old);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, record) = h
        .as_(
            "clinician",
            Method::GET,
            &format!("/api/v1/visits/{id}"),
            None,
        )
        .await;
    assert!(
        still_in(&record),
        "the reloaded page is still in the room: {record}"
    );
    drop(new);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let (_, record) = h
            .as_(
                "clinician",
                Method::GET,
                &format!("/api/v1/visits/{id}"),
                None,
            )
            .await;
        if !still_in(&record) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the last stream's close ends the stay: {record}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The care team sees its members' accounts (to invite a colleague to a visit); the
/// patient sees their names and roles only.
#[tokio::test]
async fn only_the_care_team_sees_its_members_accounts() {
    let h = hospital().await;
    let path = format!("/api/v1/patients/{}/care-teams", h.ada);
    let (_, seen_by_team) = h.as_("nurse", Method::GET, &path, None).await;
    let members = seen_by_team[0]["members"].as_array().unwrap();
    assert!(
        members.iter().all(|member| member["user_id"].is_string()),
        "{seen_by_team}"
    );
    let (_, seen_by_ada) = h.as_("ada", Method::GET, &path, None).await;
    let members = seen_by_ada[0]["members"].as_array().unwrap();
    assert!(!members.is_empty());
    assert!(
        members.iter().all(|member| member.get("user_id").is_none()),
        "{seen_by_ada}"
    );
}
