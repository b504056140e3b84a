//! The router and its description agree: every documented operation is routed (and the
//! routes are only ever added with their description, through `utoipa-axum`).

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use common::hospital;

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let h = hospital().await;
    let document = serde_json::to_value(wardline_api::openapi()).expect("json");
    let admin = h.tokens["admin"].clone();
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch"] {
            if !item[method].is_object() {
                continue;
            }
            let concrete = path
                .replace("{patient_id}", &h.ada.to_string())
                .replace("{team_id}", &h.team)
                .replace("{user_id}", &wardline_domain::UserId::random().to_string())
                .replace("{device_id}", "dev_0000000000000000")
                .replace("{gateway_id}", "gw-0000")
                .replace("{alarm_id}", "0123abcd")
                .replace("{channel_id}", "ch_0")
                .replace("{notification_id}", "1");
            let request = Request::builder()
                .method(Method::from_bytes(method.to_uppercase().as_bytes()).expect("method"))
                .uri(&concrete)
                .header("authorization", format!("Bearer {admin}"))
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .expect("request");
            let response = h.app.clone().oneshot(request).await.expect("answer");
            let status = response.status();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            if status == StatusCode::NOT_FOUND {
                // A 404 from the operation itself (no such alarm) is fine; the router's
                // own "route not found" is not.
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                let text = String::from_utf8_lossy(&body);
                assert!(
                    !text.contains("route not found"),
                    "{method} {path} is not routed"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 56, "{checked} operations checked");
}
