//! A second factor: setting it up, logging in with it (each code once), administrators
//! held to it, and an administrator's reset, through the real router with the audit
//! entries each leaves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use wardline_domain::Role;

use crate::common::{Hospital, PASSWORD, hospital, one_time_code};

async fn login(h: &Hospital, username: &str, code: Option<&str>) -> (StatusCode, Value) {
    let mut body = json!({"username": username, "password": PASSWORD});
    if let Some(code) = code {
        body["one_time_code"] = json!(code);
    }
    h.call(Method::POST, "/api/v1/auth/login", None, Some(body))
        .await
}

/// The newest `count` audit entries' `(action, outcome, detail)`, newest first, leaving
/// out the admin's readings of the trail.
async fn recent_audit(h: &Hospital, count: usize) -> Vec<(String, String, String)> {
    let (status, entries) = h
        .as_("admin", Method::GET, "/api/v1/audit?limit=100", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{entries}");
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["action"].as_str().unwrap().to_owned(),
                entry["outcome"].as_str().unwrap().to_owned(),
                entry["detail"].as_str().unwrap_or("").to_owned(),
            )
        })
        .filter(|(action, _, _)| action != "audit.read")
        .take(count)
        .collect()
}

fn code_of(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// A clinician sets up a second factor: from then on the password alone opens no
/// session, a wrong code is a failed login, a code is good once, and the secret is
/// stored sealed.
#[tokio::test]
async fn a_second_factor_is_set_up_then_asked_for_at_every_login() {
    let h = hospital().await;
    let clinician = h.tokens["clinician"].clone();
    // Optional for a clinician: nothing is held back without one.
    let (status, me) = h.as_("clinician", Method::GET, "/api/v1/me", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["second_factor"], false);
    assert_eq!(me["second_factor_setup_required"], false);

    let (status, setup) = h
        .call(
            Method::POST,
            "/api/v1/me/second-factor",
            Some(&clinician),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{setup}");
    let secret = setup["secret"].as_str().unwrap().to_owned();
    let uri = setup["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Wardline:clinician?"),
        "{uri}"
    );
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert_eq!(
        (setup["digits"].as_u64(), setup["period_seconds"].as_u64()),
        (Some(6), Some(30))
    );
    // Not asked for before it is confirmed.
    let (status, body) = login(&h, "clinician", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A wrong code confirms nothing.
    let wrong = format!(
        "{:06}",
        (one_time_code(&secret, 0).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    let confirm = |code: String| {
        h.call(
            Method::POST,
            "/api/v1/me/second-factor/confirm",
            Some(&clinician),
            Some(json!({"one_time_code": code})),
        )
    };
    let (status, body) = confirm(wrong).await;
    // Not proof of the key, but the session goes on.
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["field"], "one_time_code");
    // The right one does, typed as the app shows it.
    let current = one_time_code(&secret, 0);
    let typed = format!("{} {}", &current[..3], &current[3..]);
    let (status, account) = confirm(typed).await;
    assert_eq!(status, StatusCode::OK, "{account}");
    assert_eq!(account["second_factor"], true);
    let audit = recent_audit(&h, 3).await;
    assert_eq!(audit[0].0, "second_factor.confirm");
    assert_eq!(audit[0].1, "allowed");
    assert_eq!(
        (audit[1].0.as_str(), audit[1].1.as_str()),
        ("second_factor.confirm", "denied")
    );

    // Once set up, it stays: a session cannot swap it for another.
    let (status, body) = h
        .call(
            Method::POST,
            "/api/v1/me/second-factor",
            Some(&clinician),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // The password alone: asked for the code, no session.
    let (status, body) = login(&h, "clinician", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(code_of(&body), "second_factor_required");
    assert!(body.get("token").is_none());
    // A wrong password with the code slot empty says nothing about the factor.
    let (status, body) = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "clinician", "password": "not the password at all"})),
        )
        .await;
    assert_eq!(
        (status, code_of(&body)),
        (StatusCode::UNAUTHORIZED, "bad_login")
    );
    // Not six digits: which field, and why.
    let (status, body) = login(&h, "clinician", Some("12345")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "one_time_code");
    // The code already used to confirm is not good again.
    let (status, body) = login(&h, "clinician", Some(&current)).await;
    assert_eq!(
        (status, code_of(&body)),
        (StatusCode::UNAUTHORIZED, "bad_one_time_code"),
        "{body}"
    );
    let audit = recent_audit(&h, 1).await;
    assert_eq!(audit[0].0, "login.failed");
    assert!(audit[0].2.contains("one-time code"), "{:?}", audit[0]);
    // The next one is, once.
    let next = one_time_code(&secret, 1);
    let (status, body) = login(&h, "clinician", Some(&next)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["second_factor"], true);
    let (status, body) = login(&h, "clinician", Some(&next)).await;
    assert_eq!(
        (status, code_of(&body)),
        (StatusCode::UNAUTHORIZED, "bad_one_time_code"),
        "{body}"
    );

    // Stored sealed: the secret's bytes are nowhere in what the store holds.
    let stored = h
        .service
        .store()
        .user_credentials("clinician")
        .await
        .unwrap()
        .unwrap()
        .second_factor
        .unwrap();
    let raw = totp_rs::Secret::try_from_base32(&secret).unwrap();
    let raw = raw.as_ref();
    assert!(stored.confirmed);
    assert!(!stored.sealed.windows(raw.len()).any(|window| window == raw));
}

/// An administrator without a second factor may set one up, change their password, read
/// their account and log out, and nothing else, until they have one.
#[tokio::test]
async fn an_administrator_must_set_up_a_second_factor_before_anything_else() {
    let h = hospital().await;
    h.add_account("second.admin", Role::Admin).await;
    let (status, body) = login(&h, "second.admin", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    for path in ["/api/v1/users", "/api/v1/patients", "/api/v1/audit"] {
        let (status, body) = h.call(Method::GET, path, Some(&token), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(code_of(&body), "second_factor_setup_required", "{path}");
    }
    let (status, me) = h.call(Method::GET, "/api/v1/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["second_factor_setup_required"], true);
    assert_eq!(me["username"], "second.admin");

    h.set_up_second_factor(&token).await;
    let (status, me) = h.call(Method::GET, "/api/v1/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["second_factor_setup_required"], false);
    let (status, body) = h
        .call(Method::GET, "/api/v1/users", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A lost phone: an administrator removes a clinician's second factor (audited), after
/// which the password alone logs in; nobody removes their own, and only administrators
/// remove anyone's.
#[tokio::test]
async fn an_administrator_resets_someone_elses_second_factor() {
    let h = hospital().await;
    let nurse = h.tokens["nurse"].clone();
    let secret = h.set_up_second_factor(&nurse).await;
    let (status, body) = login(&h, "nurse", None).await;
    assert_eq!(code_of(&body), "second_factor_required", "{status} {body}");
    let (_, me) = h.as_("nurse", Method::GET, "/api/v1/me", None).await;
    let nurse_id = me["id"].as_str().unwrap().to_owned();
    let (_, me) = h.as_("admin", Method::GET, "/api/v1/me", None).await;
    let admin_id = me["id"].as_str().unwrap().to_owned();

    for who in ["clinician", "nurse"] {
        let (status, body) = h
            .as_(
                who,
                Method::POST,
                &format!("/api/v1/users/{nurse_id}/reset-second-factor"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {body}");
    }
    let (status, body) = h
        .as_(
            "admin",
            Method::POST,
            &format!("/api/v1/users/{admin_id}/reset-second-factor"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["field"], "user_id");

    let (status, body) = h
        .as_(
            "admin",
            Method::POST,
            &format!("/api/v1/users/{nurse_id}/reset-second-factor"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let audit = recent_audit(&h, 1).await;
    assert_eq!(
        (audit[0].0.as_str(), audit[0].1.as_str()),
        ("users.reset_second_factor", "allowed")
    );
    let (status, body) = login(&h, "nurse", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["second_factor"], false);
    // The old secret's codes open nothing now, and a new one can be set up.
    let (status, body) = login(&h, "nurse", Some(&one_time_code(&secret, 1))).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a code is not needed, and an old one harms nothing: {body}"
    );
    let (status, _) = h
        .call(Method::POST, "/api/v1/me/second-factor", Some(&nurse), None)
        .await;
    assert_eq!(status, StatusCode::OK);
}
