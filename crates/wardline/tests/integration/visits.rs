//! Video visits' reminders reach the patient's own address through the outbox and a real
//! SMTP server (Python's aiosmtpd), saying when and how to join and nothing of the
//! patient's health; a visit moved later is reminded of again, for its new time.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::alarms::SmtpServer;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_is_reminded_of_a_visit_at_their_own_address_without_health_data() {
    let smtp = SmtpServer::start().await;
    let server = smtp.wardline().await;
    let ward = server.ward().await;
    let username = server.patient_account(&ward).await;
    let patient = server.login(&username, CLINICIAN_PASSWORD).await;
    let response = server
        .client
        .put(server.url("/api/v1/me/contact-email"))
        .bearer_auth(&patient.token)
        .json(&json!({"email": "ada@home.example"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    // Visits more than a day ahead are not reminded of yet; one in three hours is, at once.
    for hours in [30, 3] {
        server
            .post_ok(
                &ward.clinician,
                &format!("/api/v1/patients/{}/visits", ward.patient_id),
                json!({"start": chrono::Utc::now() + chrono::Duration::hours(hours),
                       "duration_minutes": 20, "reason": "raised blood pressure at home"}),
            )
            .await;
    }
    let text = smtp.first_message().await;
    assert!(
        text.contains("Subject: Reminder: your video visit"),
        "{text}"
    );
    assert!(text.contains("ada@home.example"), "{text}");
    assert!(text.contains("for 20 minutes"), "{text}");
    for private in ["blood pressure", "Ada Patient", ward.patient_id.as_str()] {
        assert!(
            !text.contains(private),
            "no {private:?} in the mail: {text}"
        );
    }
    // One reminder per visit and time, however often the pass runs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let messages = smtp
        .output
        .lock()
        .expect("lock")
        .matches("END MESSAGE")
        .count();
    assert_eq!(messages, 1, "{}", smtp.output.lock().expect("lock"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = server
            .get(&ward.admin, "/api/v1/audit?action=visits.remind&limit=10")
            .await
            .json::<serde_json::Value>()
            .await
            .expect("json");
        if log.as_array().is_some_and(|entries| entries.len() == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "the reminder is audited: {log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
