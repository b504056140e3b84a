//! The OpenAPI document: current in the repository (the web app's types are generated
//! from that copy), and complete: every operation with schemas for what it takes and
//! gives.

use serde_json::Value;

fn document() -> Value {
    serde_json::to_value(wardline_api::openapi()).expect("the document serialises")
}

/// The copy the web app's TypeScript types are generated from. Regenerate it with
/// `WARDLINE_UPDATE_OPENAPI=1 cargo test -p wardline-api --test api openapi::`.
#[test]
fn the_committed_document_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/openapi.json");
    let generated = serde_json::to_string_pretty(&document()).expect("json") + "\n";
    if std::env::var_os("WARDLINE_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write web/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "web/openapi.json is not the document the code generates; run \
         WARDLINE_UPDATE_OPENAPI=1 cargo test -p wardline-api --test api openapi:: and commit it"
    );
}

fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                found.push((method.clone(), path.clone(), operation.clone()));
            }
        }
    }
    found
}

fn has_schema(content: &Value) -> bool {
    content.as_object().is_some_and(|types| {
        !types.is_empty() && types.values().all(|media| media["schema"].is_object())
    })
}

#[test]
fn every_operation_describes_its_parameters_body_and_answers() {
    let document = document();
    let operations = operations(&document);
    assert!(operations.len() >= 56, "{} operations", operations.len());
    for (method, path, operation) in operations {
        let name = format!("{method} {path}");
        assert!(
            operation["summary"].is_string() || operation["description"].is_string(),
            "{name}: says what it does"
        );
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            assert!(
                parameter["schema"].is_object(),
                "{name}: parameter {parameter}"
            );
        }
        // Every path parameter is declared.
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let parameter = segment.trim_matches(['{', '}']);
            assert!(
                operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"] == parameter && p["in"] == "path"),
                "{name}: path parameter {parameter} is described"
            );
        }
        if let Some(body) = operation.get("requestBody") {
            assert!(has_schema(&body["content"]), "{name}: request body schema");
        }
        let responses = operation["responses"].as_object().expect("responses");
        let successes: Vec<(&String, &Value)> = responses
            .iter()
            .filter(|(status, _)| status.starts_with('2'))
            .collect();
        assert!(!successes.is_empty(), "{name}: a success answer");
        for (status, response) in successes {
            if status != "204" && status != "202" {
                assert!(
                    has_schema(&response["content"]),
                    "{name}: {status} has a schema"
                );
            }
        }
        for status in ["400", "401", "403", "404", "500", "503"] {
            let response = &responses[status];
            assert!(
                has_schema(&response["content"]),
                "{name}: {status} is described"
            );
        }
    }
}

#[test]
fn schemas_are_complete_for_what_clients_use() {
    let document = document();
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for name in [
        "AlarmView",
        "AlarmStreamEvent",
        "CarePlan",
        "CarePlanRequest",
        "Rule",
        "RuleKind",
        "EscalationPolicy",
        "Observation",
        "News2Record",
        "CgmReport",
        "ErrorBody",
        "ForwardRequest",
    ] {
        assert!(schemas.contains_key(name), "schema {name}");
    }
    // References all resolve.
    let text = document.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let target = reference.split('"').next().unwrap_or_default();
        let name = target.trim_start_matches("#/components/schemas/");
        assert!(schemas.contains_key(name), "dangling reference {target}");
    }
}
