//! FHIR writes (docs/fhir.md): a device posts an Observation, and a Personal Health
//! Device gateway a `transaction` or `batch` Bundle, authenticated as a device by HTTP
//! Basic (`device id:secret`). The answer comes only after the durable commit; a refused
//! entry is answered with an OperationOutcome naming the entry and the element.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_fhir::BundleKind;
use wardline_fhir::operation_outcome_information as information;
use wardline_service::Error;
use wardline_service::fhir::{EntryAnswer, Refusal, UploadAnswer};
use wardline_store::Device;

use super::fhir::{Fhir, FhirError, base};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_bundle))
        .routes(routes!(post_observation))
}

/// The device a request comes from: `Authorization: Basic` with the device id and its
/// secret. (A device's own routes name it in the path; FHIR's do not.)
async fn device_caller(state: &AppState, headers: &HeaderMap) -> Result<Device, Error> {
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, rest) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        })
        .ok_or(Error::Unauthenticated)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .map_err(|_| Error::Unauthenticated)?;
    let text = String::from_utf8(decoded).map_err(|_| Error::Unauthenticated)?;
    let (device_id, secret) = text.split_once(':').ok_or(Error::Unauthenticated)?;
    state
        .service
        .authenticate_device(device_id, secret.as_bytes())
        .await
}

/// The posted JSON: FHIR's media type (or plain JSON), parsed.
fn posted_json(headers: &HeaderMap, body: &[u8]) -> Result<Value, Error> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase());
    match media_type.as_deref() {
        Some("application/fhir+json" | "application/json") => {}
        _ => {
            return Err(Error::invalid(
                "content-type",
                "expected application/fhir+json",
            ));
        }
    }
    serde_json::from_slice(body).map_err(|error| Error::InvalidRequest {
        field: None,
        message: format!("not JSON: {error}"),
    })
}

fn http_date(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One issue of an OperationOutcome for a refused entry.
fn issue(refusal: &Refusal) -> Value {
    let mut issue = Map::new();
    issue.insert("severity".into(), json!("error"));
    issue.insert("code".into(), json!(refusal.issue.code()));
    issue.insert(
        "details".into(),
        json!({"coding": [{"system": "urn:wardline:error", "code": refusal.error.code()}]}),
    );
    let diagnostics = match refusal.index {
        Some(index) => format!("entry {index}: {}", refusal.error.message()),
        None => refusal.error.message(),
    };
    issue.insert("diagnostics".into(), json!(diagnostics));
    if let Some(field) = refusal.error.field() {
        issue.insert("expression".into(), json!([field]));
    }
    Value::Object(issue)
}

fn outcome(issues: Vec<Value>) -> Value {
    json!({"resourceType": "OperationOutcome", "issue": issues})
}

fn status_line(status: u16) -> String {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("");
    format!("{status} {reason}").trim_end().to_owned()
}

/// A refused upload's status: that of its first refusal (they share one almost always).
fn refused_status(answer: &UploadAnswer) -> StatusCode {
    answer
        .entries
        .iter()
        .find_map(|entry| match entry {
            EntryAnswer::Refused(refusal) => StatusCode::from_u16(refusal.error.status()).ok(),
            _ => None,
        })
        .unwrap_or(StatusCode::UNPROCESSABLE_ENTITY)
}

fn response_entry(entry: &EntryAnswer) -> Value {
    match entry {
        EntryAnswer::Stored {
            location,
            created,
            last_modified,
        } => json!({"response": {
            "status": status_line(if *created { 201 } else { 200 }),
            "location": format!("{location}/_history/1"),
            "etag": "W/\"1\"",
            "lastModified": http_date(*last_modified),
        }}),
        EntryAnswer::Found { location } => json!({"response": {
            "status": status_line(200),
            "location": location,
        }}),
        EntryAnswer::Noted { message } => json!({"response": {
            "status": status_line(200),
            "outcome": information(message),
        }}),
        EntryAnswer::Refused(refusal) => json!({"response": {
            "status": status_line(refusal.error.status()),
            "outcome": outcome(vec![issue(refusal)]),
        }}),
    }
}

/// A `transaction` or `batch` Bundle from a device or a PHD gateway. A transaction is
/// stored all or nothing (refused: one OperationOutcome with an issue per refused entry);
/// a batch entry by entry (each entry's response says). Either is answered after the
/// commit; sent again, it stores nothing twice.
#[utoipa::path(post, path = "/fhir/R4", tag = "fhir", security(("device_basic" = [])),
    request_body(content = Object, content_type = "application/fhir+json", description = "A transaction or batch Bundle"),
    responses(
        (status = 200, description = "The transaction-response or batch-response Bundle", content_type = "application/fhir+json", body = Object),
        (status = 400, description = "Not a Bundle Wardline takes, or an entry that cannot be read", content_type = "application/fhir+json", body = super::fhir::OperationOutcomeBody),
        (status = 401, description = "No device credentials, or wrong ones", content_type = "application/fhir+json", body = super::fhir::OperationOutcomeBody),
        (status = 409, description = "A transaction refused: a device not assigned at a reading's time, or a reading sent before with another value", content_type = "application/fhir+json", body = super::fhir::OperationOutcomeBody),
        (status = 422, description = "A transaction refused: an entry that cannot be taken as it is", content_type = "application/fhir+json", body = super::fhir::OperationOutcomeBody)))]
pub(crate) async fn post_bundle(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FhirError> {
    let sender = device_caller(&state, &headers).await?;
    let bundle = posted_json(&headers, &body)?;
    let (kind, entries) = wardline_fhir::read_bundle(
        &bundle,
        Utc::now(),
        state.service.settings().payload_limits.max_future_skew,
    )
    .map_err(|error| Error::InvalidRequest {
        field: Some(error.expression),
        message: error.message,
    })?;
    let answer = state.service.fhir_bundle(&sender, kind, entries).await?;
    if kind == BundleKind::Transaction && !answer.stored {
        let issues = answer
            .entries
            .iter()
            .filter_map(|entry| match entry {
                EntryAnswer::Refused(refusal) => Some(issue(refusal)),
                _ => None,
            })
            .collect();
        return Ok(Fhir(refused_status(&answer), outcome(issues)).into_response());
    }
    let entries: Vec<Value> = answer.entries.iter().map(response_entry).collect();
    Ok(Fhir(
        StatusCode::OK,
        json!({"resourceType": "Bundle", "type": kind.response_type(), "entry": entries}),
    )
    .into_response())
}

/// One Observation from the device that measured it: 201 with its `Location` when it is
/// new, 200 when it was stored before (a repeat after a lost answer), answered after the
/// commit.
#[utoipa::path(post, path = "/fhir/R4/Observation", tag = "fhir", security(("device_basic" = [])),
    request_body(content = Object, content_type = "application/fhir+json", description = "An Observation"),
    responses(
        (status = 201, description = "Stored", content_type = "application/fhir+json", body = super::fhir::OperationOutcomeBody),
        (status = 200, description = "Stored before: nothing stored twice", content_type = "application/fhir+json", body = super::fhir::OperationOutcomeBody),
        (status = 400, description = "An element that cannot be read", content_type = "application/fhir+json", body = super::fhir::OperationOutcomeBody),
        (status = 401, description = "No device credentials, or wrong ones", content_type = "application/fhir+json", body = super::fhir::OperationOutcomeBody),
        (status = 409, description = "The device was not assigned at the reading's time, or sent another value for it before", content_type = "application/fhir+json", body = super::fhir::OperationOutcomeBody),
        (status = 422, description = "Not a measurement Wardline takes", content_type = "application/fhir+json", body = super::fhir::OperationOutcomeBody)))]
pub(crate) async fn post_observation(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FhirError> {
    let sender = device_caller(&state, &headers).await?;
    let resource = posted_json(&headers, &body)?;
    let observation = wardline_fhir::read_observation(
        &resource,
        Utc::now(),
        state.service.settings().payload_limits.max_future_skew,
    );
    let answer = state.service.fhir_observation(&sender, observation).await?;
    match answer {
        EntryAnswer::Stored {
            location, created, ..
        } => {
            let (status, words) = if created {
                (StatusCode::CREATED, "stored")
            } else {
                (StatusCode::OK, "stored before; nothing was stored twice")
            };
            let mut response =
                Fhir(status, information(&format!("{location}: {words}"))).into_response();
            if let Ok(value) =
                HeaderValue::from_str(&format!("{}/{location}/_history/1", base(&state)))
            {
                response.headers_mut().insert(header::LOCATION, value);
            }
            Ok(response)
        }
        EntryAnswer::Refused(refusal) => {
            let status = StatusCode::from_u16(refusal.error.status())
                .unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            Ok(Fhir(status, outcome(vec![issue(&refusal)])).into_response())
        }
        EntryAnswer::Noted { message } => {
            Ok(Fhir(StatusCode::OK, information(&message)).into_response())
        }
        EntryAnswer::Found { .. } => {
            Err(Error::Internal("an observation answered as found".into()).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use wardline_fhir::IssueType;

    use super::*;

    #[test]
    fn status_lines_carry_their_reason() {
        assert_eq!(status_line(201), "201 Created");
        assert_eq!(status_line(422), "422 Unprocessable Entity");
    }

    #[test]
    fn an_issue_names_the_entry_and_the_element() {
        let refusal = Refusal {
            index: Some(3),
            issue: IssueType::Value,
            error: Error::Unprocessable {
                field: "Bundle.entry[3].resource.status".into(),
                message: "not a measurement".into(),
            },
        };
        let issue = issue(&refusal);
        assert_eq!(issue["expression"][0], "Bundle.entry[3].resource.status");
        assert_eq!(issue["diagnostics"], "entry 3: not a measurement");
        assert_eq!(issue["code"], "value");
    }
}
