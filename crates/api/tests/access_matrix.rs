//! Who may do what: every role against every kind of endpoint, through the real router.

use crate::common;

use axum::http::{Method, StatusCode};
use serde_json::json;

use common::hospital;

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

/// Reads of Ada's health data: her care team and Ada herself, nobody else; each decision
/// audited.
#[tokio::test]
async fn only_the_care_team_and_the_patient_read_a_patients_data() {
    let h = hospital().await;
    let reads = [
        "",
        "/devices",
        "/observations?code=99504-3",
        "/observations/summary?code=99504-3",
        "/observations/latest",
        "/waveforms",
        "/reports/cgm",
        "/rhythm-events",
        "/news2",
        "/care-teams",
        "/access-log",
        "/care-plan/versions",
        "/alarms",
    ];
    for who in ROLES {
        let expected = match who {
            "clinician" | "nurse" | "ada" => StatusCode::OK,
            "anonymous" => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        };
        for read in reads {
            let path = format!("/api/v1/patients/{}{read}", h.ada);
            let (status, body) = h.as_(who, Method::GET, &path, None).await;
            assert_eq!(status, expected, "{who} GET {path}: {body}");
            if status != StatusCode::OK {
                assert!(body["error"]["code"].is_string(), "{who} {path}: {body}");
            }
        }
    }
    // Absent data of a readable record is "not found", not "forbidden".
    for (path, who) in [("/news2/latest", "nurse"), ("/care-plan", "ada")] {
        let (status, _) = h
            .as_(
                who,
                Method::GET,
                &format!("/api/v1/patients/{}{path}", h.ada),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{who} {path}");
    }
    // Bob's own record is his alone.
    let (status, _) = h
        .as_(
            "bob",
            Method::GET,
            &format!("/api/v1/patients/{}", h.bob),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h
        .as_(
            "clinician",
            Method::GET,
            &format!("/api/v1/patients/{}", h.bob),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Every decision is in the audit trail, refusals included.
    let (_, log) = h
        .as_(
            "admin",
            Method::GET,
            &format!("/api/v1/audit?patient_id={}&limit=1000", h.ada),
            None,
        )
        .await;
    let entries = log.as_array().expect("audit");
    let denied = entries
        .iter()
        .filter(|entry| entry["outcome"] == "denied")
        .count();
    let allowed = entries
        .iter()
        .filter(|entry| entry["outcome"] == "allowed")
        .count();
    assert!(denied >= 3 * reads.len(), "{denied} refusals audited");
    assert!(allowed >= 3 * reads.len(), "{allowed} reads audited");
}

/// Administration is for admins: every admin endpoint refuses everyone else, and the
/// refusal is audited.
#[tokio::test]
async fn only_admins_administer() {
    let h = hospital().await;
    let team = h.team.clone();
    let admin_reads = [
        "/api/v1/users".to_owned(),
        "/api/v1/care-teams".to_owned(),
        "/api/v1/devices".to_owned(),
        "/api/v1/gateways".to_owned(),
        "/api/v1/mapping-templates".to_owned(),
        "/api/v1/audit".to_owned(),
        "/api/v1/notifications/dead-letters".to_owned(),
        "/metrics".to_owned(),
        format!("/api/v1/care-teams/{team}/notification-channels"),
    ];
    for who in ROLES {
        for path in &admin_reads {
            let (status, body) = h.as_(who, Method::GET, path, None).await;
            let expected = match who {
                "admin" => StatusCode::OK,
                "anonymous" => StatusCode::UNAUTHORIZED,
                _ => StatusCode::FORBIDDEN,
            };
            assert_eq!(status, expected, "{who} GET {path}: {body}");
        }
    }
    let changes = [
        (
            Method::POST,
            "/api/v1/patients".to_owned(),
            json!({"display_name": "Cleo"}),
        ),
        (
            Method::POST,
            "/api/v1/care-teams".to_owned(),
            json!({"name": "Night shift"}),
        ),
        (
            Method::POST,
            "/api/v1/devices".to_owned(),
            json!({"kind": "cgm", "model": "G7", "serial": "1"}),
        ),
        (
            Method::PUT,
            format!("/api/v1/care-teams/{team}/escalation-policy"),
            json!({"steps": [{"after_secs": 0, "notify": [{"to": "care_team", "care_team_id": team}]}], "repeat_after_secs": null, "max_rounds": 1}),
        ),
    ];
    for who in ["clinician", "nurse", "outsider", "ada"] {
        for (method, path, body) in &changes {
            let (status, answer) = h.as_(who, method.clone(), path, Some(body.clone())).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{who} {method} {path}: {answer}"
            );
        }
    }
    for (method, path, body) in changes {
        let (status, answer) = h.as_("admin", method.clone(), &path, Some(body)).await;
        assert!(status.is_success(), "admin {method} {path}: {answer}");
    }
    let (_, log) = h
        .as_(
            "admin",
            Method::GET,
            "/api/v1/audit?action=patients.create&limit=100",
            None,
        )
        .await;
    let outcomes: Vec<&str> = log
        .as_array()
        .expect("audit")
        .iter()
        .filter_map(|entry| entry["outcome"].as_str())
        .collect();
    assert!(
        outcomes.contains(&"denied") && outcomes.contains(&"allowed"),
        "{outcomes:?}"
    );
}

/// Changing a care plan needs a clinician or nurse of the patient's team; an admin, who
/// is not on it, can neither assign a programme nor replace the plan in force (and sees
/// none of it in the refusal).
#[tokio::test]
async fn only_the_care_team_changes_a_care_plan() {
    let h = hospital().await;
    let path = format!("/api/v1/patients/{}/care-plan", h.ada);
    let plan = json!({"program": "diabetes", "reason": "type 1 diabetes"});
    for who in ["outsider", "ada", "bob", "admin"] {
        let (status, body) = h.as_(who, Method::PUT, &path, Some(plan.clone())).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {body}");
    }
    let (status, body) = h.as_("nurse", Method::PUT, &path, Some(plan.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 1);
    let replacement = json!({"program": "cardiac", "reason": "swap"});
    let (status, body) = h.as_("admin", Method::PUT, &path, Some(replacement)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an admin does not replace a plan: {body}"
    );
    assert!(body.get("plan").is_none(), "{body}");
    let (status, body) = h.as_("nurse", Method::PUT, &path, Some(plan)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
    let edit = json!({"reason": "tighter", "edit": {"op": "remove", "rule_id": "high"}});
    let (status, _) = h.as_("admin", Method::PUT, &path, Some(edit.clone())).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an admin does not edit rules"
    );
    let (status, body) = h.as_("clinician", Method::PUT, &path, Some(edit)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 3);
    let (_, versions) = h
        .as_("ada", Method::GET, &format!("{path}/versions"), None)
        .await;
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(3));
}

/// Enrolling a device for a patient who does not exist is refused, and leaves nothing
/// behind: the same device id enrols cleanly afterwards.
#[tokio::test]
async fn enrolment_for_an_unknown_patient_creates_nothing() {
    let h = hospital().await;
    let ghost = wardline_domain::PatientId::random();
    let request = json!({"kind": "ecg", "model": "patch", "serial": "7", "device_id": "ecg-ward7-1", "patient_id": ghost});
    let (status, body) = h
        .as_("admin", Method::POST, "/api/v1/devices", Some(request))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("patient"),
        "{body}"
    );
    let (_, devices) = h.as_("admin", Method::GET, "/api/v1/devices", None).await;
    assert_eq!(
        devices.as_array().map(Vec::len),
        Some(0),
        "no device was created"
    );
    let (status, body) = h
        .as_(
            "admin",
            Method::POST,
            "/api/v1/devices",
            Some(json!({"kind": "ecg", "model": "patch", "serial": "7", "device_id": "ecg-ward7-1", "patient_id": h.ada})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        body["secret"]
            .as_str()
            .is_some_and(|secret| secret.starts_with("wds_"))
    );
    let (_, on_ada) = h
        .as_(
            "nurse",
            Method::GET,
            &format!("/api/v1/patients/{}/devices", h.ada),
            None,
        )
        .await;
    assert_eq!(on_ada[0]["id"], "ecg-ward7-1");
}

/// A session ends at logout; a disabled account's sessions end at once.
#[tokio::test]
async fn sessions_end_at_logout_and_when_an_account_is_disabled() {
    let h = hospital().await;
    let (status, _) = h
        .as_("nurse", Method::POST, "/api/v1/auth/logout", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.as_("nurse", Method::GET, "/api/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, me) = h.as_("clinician", Method::GET, "/api/v1/me", None).await;
    let clinician = me["id"].as_str().unwrap().to_owned();
    let (status, _) = h
        .as_(
            "admin",
            Method::POST,
            &format!("/api/v1/users/{clinician}/disable"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.as_("clinician", Method::GET, "/api/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// A device's assignment cannot be backdated over readings it stored for another
/// patient (which would end that patient's assignment early and send the device's late
/// readings to the other); the audit entry of a reassignment names the device, the time
/// and the patient it leaves.
#[tokio::test]
async fn a_reassignment_is_not_backdated_and_names_both_patients_in_the_audit() {
    let h = hospital().await;
    let (device, secret) = h.ada_cgm().await;
    let now = chrono::Utc::now();
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/api/v1/devices/{device}/readings"),
            Some(&secret),
            Some(json!({"v": 1, "seq": 1, "code": "99504-3", "value": 100, "unit": "mg/dL", "time": now})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let assignments = format!("/api/v1/devices/{device}/assignments");
    let assign = |from: chrono::DateTime<chrono::Utc>| {
        h.as_(
            "admin",
            Method::POST,
            &assignments,
            Some(json!({"patient_id": h.bob, "from": from})),
        )
    };
    let (status, body) = assign(now - chrono::Duration::minutes(45)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], json!("from"), "{body}");
    let from = now + chrono::Duration::seconds(1);
    let (status, body) = assign(from).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, audit) = h
        .as_(
            "admin",
            Method::GET,
            "/api/v1/audit?action=devices.assign",
            None,
        )
        .await;
    let newest = &audit.as_array().unwrap()[0];
    assert_eq!(newest["patient_id"], json!(h.bob), "{newest}");
    let detail = newest["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&device) && detail.contains(&h.ada.to_string()) && detail.contains("from "),
        "{detail}"
    );
}

/// An alarm's handle tells an outsider nothing: one they may not see and one that does
/// not exist both answer 404, and both attempts are audited as refused.
#[tokio::test]
async fn an_alarm_outside_my_patients_looks_like_no_alarm() {
    let h = hospital().await;
    let path = format!("/api/v1/patients/{}/care-plan", h.ada);
    let plan = json!({"program": "diabetes", "reason": "type 1 diabetes"});
    let (status, body) = h.as_("nurse", Method::PUT, &path, Some(plan)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (device, secret) = h.ada_cgm().await;
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/api/v1/devices/{device}/readings"),
            Some(&secret),
            Some(json!({"v": 1, "seq": 1, "code": "99504-3", "value": 45, "unit": "mg/dL", "time": chrono::Utc::now()})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut alarm_id = None;
    for _ in 0..100 {
        let (_, alarms) = h
            .as_("clinician", Method::GET, "/api/v1/alarms", None)
            .await;
        alarm_id = alarms["alarms"]
            .as_array()
            .and_then(|alarms| alarms.first())
            .and_then(|alarm| alarm["id"].as_str())
            .map(str::to_owned);
        if alarm_id.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let alarm_id = alarm_id.expect("the low raised an alarm");
    let (status, _) = h
        .as_(
            "clinician",
            Method::GET,
            &format!("/api/v1/alarms/{alarm_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for (method, path) in [
        (Method::GET, format!("/api/v1/alarms/{alarm_id}")),
        (
            Method::POST,
            format!("/api/v1/alarms/{alarm_id}/acknowledge"),
        ),
        (
            Method::GET,
            "/api/v1/alarms/0123456789abcdef01234567".to_owned(),
        ),
        (
            Method::POST,
            "/api/v1/alarms/0123456789abcdef01234567/acknowledge".to_owned(),
        ),
    ] {
        let body = (method == Method::POST).then(|| json!({}));
        let (status, answer) = h.as_("outsider", method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
    }
    let (_, audit) = h
        .as_("admin", Method::GET, "/api/v1/audit?limit=1000", None)
        .await;
    let refused = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| {
            entry["outcome"] == "denied"
                && entry["action"]
                    .as_str()
                    .is_some_and(|action| action.starts_with("alarms."))
        })
        .count();
    assert_eq!(refused, 4, "{audit}");
}

/// A patient's access log shows who looked, but not which other patient tried: that
/// would tell Ada that Bob is a patient here.
#[tokio::test]
async fn a_patients_access_log_names_no_other_patient() {
    let h = hospital().await;
    let (status, _) = h
        .as_(
            "bob",
            Method::GET,
            &format!("/api/v1/patients/{}/observations/latest", h.ada),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h
        .as_(
            "clinician",
            Method::GET,
            &format!("/api/v1/patients/{}/observations/latest", h.ada),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, log) = h
        .as_(
            "ada",
            Method::GET,
            &format!("/api/v1/patients/{}/access-log", h.ada),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let who: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["who"].as_str())
        .collect();
    assert!(!who.contains(&"BOB"), "{who:?}");
    assert!(who.contains(&"another patient account"), "{who:?}");
    assert!(who.contains(&"CLINICIAN"), "{who:?}");
}

/// An admin manages accounts but does not make themselves a reader of a team's patients:
/// adding oneself to a care team is refused and audited; another account is added.
#[tokio::test]
async fn an_admin_cannot_join_a_care_team_by_themselves() {
    let h = hospital().await;
    let (_, me) = h.as_("admin", Method::GET, "/api/v1/me", None).await;
    let admin_id = me["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/care-teams/{}/members", h.team);
    let (status, body) = h
        .as_(
            "admin",
            Method::POST,
            &path,
            Some(json!({"user_id": admin_id})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["field"], json!("user_id"), "{body}");
    let (status, _) = h
        .as_(
            "admin",
            Method::GET,
            &format!("/api/v1/patients/{}/observations/latest", h.ada),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "still no clinical access");
    let (_, audit) = h
        .as_(
            "admin",
            Method::GET,
            "/api/v1/audit?action=care_teams.add_member",
            None,
        )
        .await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["outcome"] == "denied"),
        "{audit}"
    );
}

/// Taking a nurse off the care team ends her access to its patients at the next request;
/// ending the team's care of Ada ends the clinician's. Only an admin may do either, each
/// removal is audited, and removing again finds nothing.
#[tokio::test]
async fn removal_from_a_care_team_ends_access_at_once() {
    let h = hospital().await;
    let latest = format!("/api/v1/patients/{}/observations/latest", h.ada);
    let (_, nurse) = h.as_("nurse", Method::GET, "/api/v1/me", None).await;
    let nurse_id = nurse["id"].as_str().expect("id").to_owned();
    let member = format!("/api/v1/care-teams/{}/members/{nurse_id}", h.team);
    let patient = format!("/api/v1/care-teams/{}/patients/{}", h.team, h.ada);
    for who in ["clinician", "nurse", "ada", "outsider"] {
        let (status, body) = h.as_(who, Method::DELETE, &member, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {body}");
    }
    assert_eq!(
        h.as_("nurse", Method::GET, &latest, None).await.0,
        StatusCode::OK
    );
    let (status, body) = h.as_("admin", Method::DELETE, &member, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        h.as_("nurse", Method::GET, &latest, None).await.0,
        StatusCode::FORBIDDEN,
        "the nurse's access ended"
    );
    assert_eq!(
        h.as_("clinician", Method::GET, &latest, None).await.0,
        StatusCode::OK
    );
    let (status, body) = h.as_("admin", Method::DELETE, &member, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, body) = h.as_("admin", Method::DELETE, &patient, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        h.as_("clinician", Method::GET, &latest, None).await.0,
        StatusCode::FORBIDDEN,
        "the team's care of Ada ended"
    );
    assert_eq!(
        h.as_("ada", Method::GET, &latest, None).await.0,
        StatusCode::OK,
        "Ada still reads her own record"
    );
    for action in ["care_teams.remove_member", "care_teams.remove_patient"] {
        let (_, audit) = h
            .as_(
                "admin",
                Method::GET,
                &format!("/api/v1/audit?action={action}"),
                None,
            )
            .await;
        let outcomes: Vec<&str> = audit
            .as_array()
            .expect("entries")
            .iter()
            .filter_map(|entry| entry["outcome"].as_str())
            .collect();
        assert!(outcomes.contains(&"allowed"), "{action}: {audit}");
    }
}

/// A password change checks the current one and ends every other session of the account;
/// an admin's reset ends all of them and hands over a generated password once.
#[tokio::test]
async fn a_new_password_ends_the_other_sessions() {
    let h = hospital().await;
    let login = |username: &'static str, password: String| {
        h.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": username, "password": password})),
        )
    };
    let (status, second) = login("nurse", common::PASSWORD.to_owned()).await;
    assert_eq!(status, StatusCode::OK);
    let second = second["token"].as_str().unwrap().to_owned();
    let change = |current: &str, new: &str| {
        h.as_(
            "nurse",
            Method::POST,
            "/api/v1/me/password",
            Some(json!({"current_password": current, "new_password": new})),
        )
    };
    let new_password = "a much longer passphrase now";
    let (status, body) = change("not it at all, sorry", new_password).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["field"], json!("current_password"));
    let (status, body) = change(common::PASSWORD, "short").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], json!("new_password"));
    let (status, body) = change(common::PASSWORD, new_password).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = h.as_("nurse", Method::GET, "/api/v1/me", None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the session that changed it goes on"
    );
    let (status, _) = h.call(Method::GET, "/api/v1/me", Some(&second), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the other session ended");
    assert_eq!(
        login("nurse", common::PASSWORD.to_owned()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login("nurse", new_password.to_owned()).await.0,
        StatusCode::OK
    );

    // An admin's reset: the clinician's session ends, the handed-over password works.
    let (_, users) = h.as_("admin", Method::GET, "/api/v1/users", None).await;
    let id_of = |name: &str| {
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|user| user["username"] == json!(name))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (status, reset) = h
        .as_(
            "admin",
            Method::POST,
            &format!("/api/v1/users/{}/reset-password", id_of("clinician")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    let (status, _) = h.as_("clinician", Method::GET, "/api/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let handed_over = reset["password"].as_str().unwrap().to_owned();
    assert_eq!(login("clinician", handed_over).await.0, StatusCode::OK);
    let (status, _) = h
        .as_(
            "admin",
            Method::POST,
            &format!("/api/v1/users/{}/reset-password", id_of("admin")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not one's own");
    let (status, _) = h
        .as_(
            "nurse",
            Method::POST,
            &format!("/api/v1/users/{}/reset-password", id_of("clinician")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admins only");
}

/// Every documented operation, as every role: the status, without reading a stream's
/// body. Path parameters name Ada, her care team, and things that do not exist.
async fn sweep(h: &common::Hospital) -> Vec<(String, String, &'static str, StatusCode)> {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    let document = serde_json::to_value(wardline_api::openapi()).expect("json");
    let mut seen = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch"] {
            let Some(operation) = item[method].as_object() else {
                continue;
            };
            // Reads that need a query get the one a client sends.
            let query = match path.as_str() {
                "/api/v1/patients/{patient_id}/observations"
                | "/api/v1/patients/{patient_id}/observations/summary" => "?code=99504-3",
                _ => "",
            };
            // A removal names someone who is not there, so that the sweep leaves the
            // hospital as it found it.
            let target = if method == "delete" {
                path.replace(
                    "{patient_id}",
                    &wardline_domain::PatientId::random().to_string(),
                )
            } else {
                path.clone()
            };
            let concrete = h.concrete(&format!("{target}{query}"));
            for who in ROLES {
                // Logging out would end the session the rest of the sweep uses; it has
                // its own test.
                if path == "/api/v1/auth/logout" && who != "anonymous" {
                    continue;
                }
                let mut request = Request::builder()
                    .method(Method::from_bytes(method.to_uppercase().as_bytes()).expect("method"))
                    .uri(&concrete);
                if let Some(token) = h.tokens.get(who) {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                let request = if operation.contains_key("requestBody") {
                    request
                        .header("content-type", "application/json")
                        .body(Body::from("{}"))
                } else {
                    request.body(Body::empty())
                }
                .expect("request");
                // A stream that opens is answered 200 at once; its body never ends.
                let response = h.app.clone().oneshot(request).await.expect("answer");
                seen.push((method.to_uppercase(), path.clone(), who, response.status()));
            }
        }
    }
    seen
}

/// Who an operation is for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Audience {
    /// Anyone, signed in or not.
    Public,
    /// Any signed-in account; what it sees is its own (its patients, its alarms).
    SignedIn,
    /// Staff acting on alarms; patients may not.
    Staff,
    /// Ada's health data: her care team and Ada.
    AdasReaders,
    /// Changes to Ada's record: her care team.
    AdasTeam,
    /// Clinicians and nurses, on Ada's team or not (emergency access).
    Clinical,
    Admin,
    /// Patients, about their own record (their shares).
    Patients,
    /// Specialists, about what patients shared with them.
    Specialists,
    /// Anyone signed in but a specialist: who may invite a specialist.
    Inviters,
    /// Devices and gateways, with their own credentials: no account's session will do.
    Devices,
    /// Ada herself and her care team's clinicians and nurses: changes a patient may make
    /// to their own record's connections.
    AdaAndTeam,
}

/// Every documented operation's audience. An operation missing here fails the sweep, so
/// a new route is not served until someone has said who it is for.
fn audience(method: &str, path: &str) -> Option<Audience> {
    use Audience::*;
    Some(match (method, path) {
        ("GET", "/healthz" | "/api/v1/openapi.json" | "/fhir/R4/metadata")
        | ("GET", "/fhir/R4/.well-known/smart-configuration")
        | ("POST", "/api/v1/oauth/token")
        | ("POST", "/api/v1/auth/login" | "/api/v1/share-links/open")
        | ("POST", "/api/v1/specialist-invitations/accept") => Public,
        ("POST", "/api/v1/specialist-invitations") => Inviters,
        ("GET", "/metrics") => Admin,
        ("GET", "/api/v1/me" | "/api/v1/alarms" | "/api/v1/alarms/stream")
        | ("GET", "/api/v1/observations/stream" | "/api/v1/patients")
        | ("GET", "/api/v1/alarms/{alarm_id}")
        | ("POST", "/api/v1/me/password" | "/api/v1/auth/logout")
        | ("POST", "/api/v1/me/second-factor" | "/api/v1/me/second-factor/confirm") => SignedIn,
        ("POST", "/api/v1/alarms/{alarm_id}/acknowledge")
        | ("POST", "/api/v1/alarms/{alarm_id}/resolve" | "/api/v1/alarms/{alarm_id}/snooze") => {
            Staff
        }
        ("POST", "/api/v1/devices/{device_id}/readings" | "/api/v1/devices/{device_id}/status")
        | ("POST", "/api/v1/gateways/{gateway_id}/forward")
        | ("POST", "/fhir/R4" | "/fhir/R4/Observation") => Devices,
        ("GET" | "POST", "/ns/{site}/api/v1/{resource}")
        | ("GET", "/ns/{site}/api/v1/{resource}/{part}") => Devices,
        ("POST", "/api/v1/patients/{patient_id}/imports")
        | ("POST", "/api/v1/patients/{patient_id}/nightscout-sites")
        | ("POST", "/api/v1/patients/{patient_id}/nightscout-sites/{site}/revoke") => AdaAndTeam,
        // One's own emergency access to a patient (none, for most).
        ("GET", "/api/v1/patients/{patient_id}/emergency-access") => SignedIn,
        ("POST", "/api/v1/patients/{patient_id}/emergency-access") => Clinical,
        ("GET" | "POST", "/api/v1/me/shares")
        | ("POST", "/api/v1/me/shares/{share_id}/revoke" | "/api/v1/me/shares/{share_id}/accept") => {
            Patients
        }
        ("POST", "/api/v1/patients/{patient_id}/referrals") => AdasTeam,
        ("GET", "/api/v1/me/shared-with-me")
        | ("POST", "/api/v1/me/specialist-invitations/accept") => Specialists,
        // Visits: the sweep's visit does not exist, so everyone signed in hears "not
        // found"; `visits.rs` shows who may do what with one that does.
        ("GET", "/api/v1/me/visits") | ("GET" | "PUT", "/api/v1/me/contact-email") => SignedIn,
        ("GET", visit) if visit.starts_with("/api/v1/visits/") => AdasReaders,
        (
            "POST",
            "/api/v1/visits/{visit_id}/room/enter" | "/api/v1/visits/{visit_id}/room/leave",
        )
        | (
            "POST",
            "/api/v1/visits/{visit_id}/room/signal" | "/api/v1/visits/{visit_id}/messages",
        ) => AdaAndTeam,
        ("POST" | "PUT", visit) if visit.starts_with("/api/v1/visits/") => AdasTeam,
        ("POST", "/api/v1/patients/{patient_id}/visits")
        | ("POST", "/api/v1/patients/{patient_id}/treatment-orders")
        | ("POST", "/api/v1/patients/{patient_id}/monitoring-time") => AdasTeam,
        // The ledger is the practice's record of its work: the care team's, not the
        // patient's.
        ("GET", "/api/v1/patients/{patient_id}/rpm-ledger") => AdasTeam,
        ("GET", "/api/v1/rpm-ledger" | "/api/v1/rpm-ledger.csv") => Staff,
        ("GET", patient) if patient.starts_with("/api/v1/patients/{patient_id}") => AdasReaders,
        ("GET", "/fhir/R4/Patient/{patient_id}") => AdasReaders,
        // A device that does not exist: nobody is told more than "not found".
        ("GET", "/fhir/R4/Device/{device_id}") => SignedIn,
        // Likewise a reading that does not exist.
        ("GET", "/fhir/R4/Observation/{observation_id}")
        | ("GET", "/fhir/R4/Observation/{observation_id}/_history/{version_id}") => SignedIn,
        // Searches name their patient in the query: without it, anyone signed in is told
        // what is missing (the access check then runs on the patient named).
        ("GET", "/fhir/R4/Patient" | "/fhir/R4/Observation" | "/fhir/R4/Observation/$lastn")
        | ("GET", "/fhir/R4/MedicationRequest" | "/fhir/R4/CareTeam" | "/fhir/R4/CarePlan")
        | ("GET", "/fhir/R4/Device")
        | ("GET", "/fhir/R4/DetectedIssue") => SignedIn,
        ("GET", "/fhir/R4/AuditEvent" | "/fhir/R4/AuditEvent/{sequence}") => Admin,
        // A kick-off without `Prefer: respond-async` is refused as malformed whoever asks;
        // an export, or a file of one, that does not exist is not found for anyone.
        ("GET", "/fhir/R4/Patient/$export" | "/fhir/R4/$export")
        | ("GET", "/fhir/R4/Group/{group_id}/$export")
        | ("GET" | "DELETE", "/fhir/R4/$export-status/{export_id}")
        | ("GET", "/fhir/R4/$export-file/{export_id}/{file}") => SignedIn,
        ("GET", "/fhir/R4/CarePlan/{patient_id}") => AdasReaders,
        // An alarm, or a care team of a patient, that does not exist: nobody is told more
        // than "not found".
        ("GET", "/fhir/R4/DetectedIssue/{alarm_id}")
        | ("GET", "/fhir/R4/CareTeam/{care_team_id}") => SignedIn,
        ("PUT", "/api/v1/patients/{patient_id}/care-plan") => AdasTeam,
        ("GET" | "POST" | "PUT" | "DELETE", admin)
            if [
                "/api/v1/audit",
                "/api/v1/backend-clients",
                "/api/v1/care-teams",
                "/api/v1/devices",
                "/api/v1/emergency-access",
                "/api/v1/gateways",
                "/api/v1/mapping-templates",
                "/api/v1/notifications",
                "/api/v1/users",
            ]
            .iter()
            .any(|prefix| admin.starts_with(prefix))
                || (method == "POST" && admin == "/api/v1/patients") =>
        {
            Admin
        }
        _ => return None,
    })
}

fn admits(audience: Audience, who: &str) -> bool {
    match audience {
        Audience::Public => true,
        Audience::SignedIn => who != "anonymous",
        Audience::Staff => matches!(who, "admin" | "clinician" | "nurse" | "outsider"),
        Audience::AdasReaders => matches!(who, "clinician" | "nurse" | "ada"),
        Audience::AdasTeam => matches!(who, "clinician" | "nurse"),
        Audience::Clinical => matches!(who, "clinician" | "nurse" | "outsider"),
        Audience::Admin => who == "admin",
        Audience::Patients => matches!(who, "ada" | "bob"),
        Audience::Specialists => who == "specialist",
        Audience::Inviters => !matches!(who, "specialist" | "anonymous"),
        Audience::Devices => false,
        Audience::AdaAndTeam => matches!(who, "clinician" | "nurse" | "ada"),
    }
}

/// The whole matrix: every documented operation (streams included) as every role. Those
/// it is for are never refused; everyone else is refused (401 without a session, 403, or
/// 404 where saying "forbidden" would tell that the thing exists) and never answered with
/// success. A read is sent as a client would; a change is sent with an empty body, which
/// an operation may refuse as malformed before it looks at who asks, so for changes the
/// sweep shows that nobody outside the audience succeeds, and the tests above show the
/// refusals of well-formed changes. Nothing answers 5xx.
#[tokio::test]
async fn every_operation_as_every_role() {
    let h = hospital().await;
    let mut problems = Vec::new();
    let mut operations = std::collections::BTreeSet::new();
    for (method, path, who, status) in sweep(&h).await {
        operations.insert(format!("{method} {path}"));
        let Some(audience) = audience(&method, &path) else {
            problems.push(format!("{method} {path}: no audience in the matrix"));
            continue;
        };
        let code = status.as_u16();
        let allowed = admits(audience, who);
        let fine = if status.is_server_error() {
            false
        } else if allowed {
            !matches!(code, 401 | 403)
        } else if who == "anonymous" || audience == Audience::Devices {
            code == 401
        } else if method == "GET" {
            matches!(code, 403 | 404)
        } else {
            !status.is_success()
        };
        if !fine {
            problems.push(format!(
                "{method} {path} as {who}: {code} ({audience:?}, {})",
                if allowed { "allowed" } else { "refused" }
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(operations.len() >= 60, "{} operations", operations.len());
}

/// A patient with an open alarm and a flood of newer ones that came and went: the open
/// one is listed whatever the limit.
#[tokio::test]
async fn an_open_alarm_is_never_hidden_behind_newer_ones() {
    let h = hospital().await;
    let path = format!("/api/v1/patients/{}/care-plan", h.ada);
    let plan = json!({"program": "diabetes", "reason": "type 1 diabetes"});
    let (status, body) = h.as_("nurse", Method::PUT, &path, Some(plan)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rule = json!({"reason": "test rule", "edit": {"op": "add", "rule": {
        "id": "above-300", "name": "glucose above 300", "priority": "high", "resolve_on_clear": true,
        "kind": {"type": "threshold", "code": "glucose_cgm", "direction": "above",
                 "value": 300.0, "min_duration_secs": 0, "hysteresis": 10}}}});
    let (status, body) = h.as_("clinician", Method::PUT, &path, Some(rule)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (device, secret) = h.ada_cgm().await;
    // An urgent low first (it stays open until someone resolves it), then three highs
    // that come and go.
    let start = chrono::Utc::now() + chrono::Duration::seconds(1);
    let values = [45.0, 110.0, 350.0, 110.0, 350.0, 110.0, 350.0, 110.0];
    for (seq, value) in values.iter().enumerate() {
        let (status, body) = h
            .call(
                Method::POST,
                &format!("/api/v1/devices/{device}/readings"),
                Some(&secret),
                Some(
                    json!({"v": 1, "seq": seq, "code": "99504-3", "value": value, "unit": "mg/dL",
                            "time": start + chrono::Duration::seconds(seq as i64)}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let alarms_path = format!("/api/v1/patients/{}/alarms", h.ada);
    let mut resolved = 0;
    for _ in 0..200 {
        let (_, alarms) = h.as_("clinician", Method::GET, &alarms_path, None).await;
        resolved = alarms["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|alarm| alarm["state_name"] == "resolved")
            .count();
        if resolved >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, seen) = h.as_("clinician", Method::GET, &alarms_path, None).await;
    assert!(resolved >= 3, "the highs came and went: {seen}");
    let (status, alarms) = h
        .as_(
            "clinician",
            Method::GET,
            &format!("{alarms_path}?limit=2"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{alarms}");
    let listed = alarms["alarms"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|alarm| alarm["rule_id"] == "urgent-low" && alarm["state_name"] == "open"),
        "the open urgent low is listed: {alarms}"
    );
    assert!(
        listed
            .iter()
            .filter(|alarm| alarm["state_name"] == "resolved")
            .count()
            <= 2,
        "and no more than the limit of the rest"
    );
}
