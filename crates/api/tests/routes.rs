//! The router and its description agree: every documented operation is routed (and the
//! routes are only ever added with their description, through `utoipa-axum`).

use crate::common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
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
            let concrete = h.concrete(path);
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

/// The other direction: the router and the document are built from the same
/// `OpenApiRouter`s (`wardline_api::router` and `wardline_api::openapi` split one
/// `api()`), where `routes!` adds a handler together with its `#[utoipa::path]`. The one
/// way to route something undocumented is axum's own `route`, `route_service` or `nest`,
/// so no source file of the API may call them.
#[test]
fn routes_are_added_only_with_their_description() {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![source];
    let mut offenders = Vec::new();
    let mut scanned = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read src") {
                files.push(entry.expect("entry").path());
            }
            continue;
        }
        if path.extension().is_none_or(|extension| extension != "rs") {
            continue;
        }
        scanned += 1;
        let text = std::fs::read_to_string(&path).expect("read source");
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for call in [".route(", ".route_service(", ".nest(", ".nest_service("] {
                if code.contains(call) {
                    offenders.push(format!(
                        "{}:{}: {}",
                        path.display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(scanned >= 10, "only {scanned} source files found");
    assert!(
        offenders.is_empty(),
        "routes added without their OpenAPI description (use `routes!`):\n{}",
        offenders.join("\n")
    );
}

/// No answer of the API may be kept by a browser or proxy cache: answers carry health
/// data and session tokens. Successes, refusals and errors alike.
#[tokio::test]
async fn api_answers_are_never_cached() {
    let h = hospital().await;
    let paths = [
        format!("/api/v1/patients/{}/observations/latest", h.ada),
        format!("/api/v1/patients/{}", h.bob),
        "/api/v1/no-such-route".to_owned(),
        "/api/v1/openapi.json".to_owned(),
    ];
    for path in paths {
        let request = Request::builder()
            .method(Method::GET)
            .uri(&path)
            .header("authorization", format!("Bearer {}", h.tokens["clinician"]))
            .body(Body::empty())
            .unwrap();
        let response = h.app.clone().oneshot(request).await.unwrap();
        assert_eq!(
            response
                .headers()
                .get("cache-control")
                .and_then(|value| value.to_str().ok()),
            Some("no-store"),
            "{path}: {}",
            response.status()
        );
    }
}

/// A rule added to a programme after a patient was enrolled (the ventricular
/// tachyarrhythmia finding of the cardiac programme) is offered to the care team, never
/// added by itself; once added, or when the team removed it, it is not offered again.
#[tokio::test]
async fn a_programmes_new_default_rule_is_offered_to_the_care_team() {
    use wardline_alerting::{CarePlan, PatientBaseline, Program};
    let h = crate::common::hospital().await;
    let mut plan = CarePlan::from_program(
        h.ada,
        Program::Cardiac,
        &PatientBaseline::default(),
        chrono::Utc::now(),
    );
    let added_later = plan
        .rules
        .iter()
        .position(|rule| rule.id.0 == "ventricular-tachyarrhythmia")
        .expect("the cardiac programme has the rule");
    let rule = plan.rules.remove(added_later);
    h.service
        .assign_care_plan(
            &wardline_service::Actor::CommandLine,
            h.ada,
            plan,
            "enrolled before the rule existed",
        )
        .await
        .unwrap();
    let path = format!("/api/v1/patients/{}/care-plan/new-defaults", h.ada);
    let (status, offered) = h.as_("nurse", Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{offered}");
    let ids: Vec<&str> = offered
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| rule["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ventricular-tachyarrhythmia"]);
    let (status, _) = h.as_("bob", Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The team adds it, then takes it out again: neither time is it offered after.
    let care_plan = format!("/api/v1/patients/{}/care-plan", h.ada);
    let (status, body) = h
        .as_(
            "clinician",
            Method::PUT,
            &care_plan,
            Some(json!({"reason": "new programme default", "edit": {"op": "add", "rule": rule}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, offered) = h.as_("nurse", Method::GET, &path, None).await;
    assert_eq!(offered, json!([]));
    let (status, body) = h
        .as_("clinician", Method::PUT, &care_plan,
            Some(json!({"reason": "pacemaker: not wanted", "edit": {"op": "remove", "rule_id": "ventricular-tachyarrhythmia"}})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, offered) = h.as_("nurse", Method::GET, &path, None).await;
    assert_eq!(
        offered,
        json!([]),
        "a rule the team removed is not offered again"
    );
}
