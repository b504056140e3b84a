//! Sharing over real sockets: an invitation reaches a specialist by e-mail through a real
//! SMTP server, and its link makes their account.

use serde_json::{Value, json};

use crate::alarms::SmtpServer;

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
