//! Sharing over real sockets: an invitation reaches a specialist by e-mail through a real
//! SMTP server, and its link makes their account; a share link carries the alarms the
//! running engine raised.

use serde_json::{Value, json};

use crate::alarms::{SmtpServer, add_rule, assign_program, glucose_above, post_glucose};
use crate::support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_arrives_by_email_and_its_link_makes_the_account() {
    let smtp = SmtpServer::start().await;
    let server = smtp.wardline().await;
    let ward = server.ward().await;
    let created = server
        .post_ok(
            &ward.clinician,
            "/api/v1/specialist-invitations",
            json!({"email": "neuro@clinic.test", "display_name": "Dr Amara Neuro"}),
        )
        .await;
    assert_eq!(created["emailed"], json!(true), "{created}");
    let token = created["link_token"].as_str().expect("token").to_owned();
    let text = smtp.first_message().await;
    assert!(text.contains("neuro@clinic.test"), "{text}");
    assert!(
        text.contains("Subject: Your invitation to Wardline"),
        "{text}"
    );
    assert!(
        text.contains(&format!("/invite#{token}")),
        "the link: {text}"
    );

    let accepted = server
        .client
        .post(server.url("/api/v1/specialist-invitations/accept"))
        .json(&json!({"token": token, "username": "dr.neuro", "password": "lantern over the quiet harbour"}))
        .send()
        .await
        .expect("accept");
    assert_eq!(accepted.status(), 201);
    let user: Value = accepted.json().await.expect("user");
    assert_eq!(user["role"], json!("specialist"));
    let session = server
        .login("dr.neuro", "lantern over the quiet harbour")
        .await;
    let patients: Value = server
        .get(&session, "/api/v1/patients")
        .await
        .json()
        .await
        .expect("patients");
    assert_eq!(
        patients,
        json!([]),
        "a specialist sees nothing until a patient shares"
    );
}

/// A share link of alarms and the care plan carries the alarm the engine raised from a
/// real reading, and the plan whose rule raised it; a link without those categories
/// carries neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_link_carries_the_alarms_and_care_plan_it_shares() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    assign_program(&server, &ward.clinician, &ward.patient_id, "diabetes").await;
    add_rule(&server, &ward, glucose_above("share-high", 300.0)).await;
    post_glucose(&server, &ward.device, 1, 350.0).await;
    let alarms_path = format!("/api/v1/patients/{}/alarms", ward.patient_id);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let alarms: Value = server
            .get(&ward.clinician, &alarms_path)
            .await
            .json()
            .await
            .expect("alarms");
        if alarms["alarms"]
            .as_array()
            .is_some_and(|alarms| !alarms.is_empty())
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no alarm within 10 s: {alarms}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server
        .post_ok(&ward.admin, "/api/v1/users", json!({"username": "ada", "display_name": "Ada", "role": "patient", "password": "my own long password", "password_change_required": false, "patient_id": ward.patient_id}))
        .await;
    let ada = server.login("ada", "my own long password").await;
    let open = |categories: Value| {
        let (server, ada) = (&server, &ada);
        async move {
            let created = server
                .post_ok(
                    ada,
                    "/api/v1/me/shares",
                    json!({"link": {}, "categories": categories, "data_last_days": 1}),
                )
                .await;
            let opened = server
                .client
                .post(server.url("/api/v1/share-links/open"))
                .json(&json!({"token": created["link_token"], "passcode": created["passcode"]}))
                .send()
                .await
                .expect("open");
            assert_eq!(opened.status(), 200);
            opened.json::<Value>().await.expect("record")
        }
    };
    let record = open(json!(["alarms", "care_plan"])).await;
    let alarms = record["alarms"].as_array().expect("alarms");
    assert_eq!(alarms.len(), 1, "{record}");
    assert_eq!(alarms[0]["priority"], json!("high"));
    assert_eq!(alarms[0]["state_name"], json!("open"));
    assert!(
        alarms[0].get("names").is_none(),
        "who handled it stays with the team"
    );
    let rules = record["care_plan"]["plan"]["rules"]
        .as_array()
        .expect("rules");
    assert!(rules.iter().any(|rule| rule["id"] == json!("share-high")));
    assert_eq!(record["observations"], json!([]), "no glucose shared");

    let record = open(json!(["glucose"])).await;
    assert_eq!(record["alarms"], json!([]));
    assert_eq!(record["care_plan"], Value::Null);
    assert_eq!(record["observations"][0]["value"], json!(350.0));
}
