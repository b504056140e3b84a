//! FHIR R4 searches of what the care team does around the readings (docs/fhir.md): a
//! patient's care teams, the monitoring plan in force, the alarms it raised, and (for
//! administrators) the audit trail. Each goes through the same service call, and so the
//! same access check and audit, as Wardline's own API.

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_domain::PatientId;
use wardline_fhir::RecordSearchRules;
use wardline_service::Error;
use wardline_service::fhir_resources::{care_plan_resource, detected_issue_resource};
use wardline_store::AuditQuery;

use super::fhir::{Fhir, FhirError, bundle, next_page, not_a_page, tied_page};
use crate::error::ApiError;
use crate::extract::Caller;
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_care_teams))
        .routes(routes!(read_care_team))
        .routes(routes!(search_care_plans))
        .routes(routes!(read_care_plan))
        .routes(routes!(search_detected_issues))
        .routes(routes!(read_detected_issue))
        .routes(routes!(search_audit_events))
        .routes(routes!(read_audit_event))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct PatientOnlyParams {
    /// Required: `Patient/[id]` or `[id]` (or as `subject`).
    patient: String,
}

/// The care teams that look after a patient, as CareTeams: their names, and their
/// active members by name and role. Through the one access check, audited.
#[utoipa::path(get, path = "/fhir/R4/CareTeam", tag = "fhir", params(PatientOnlyParams),
    responses((status = 200, description = "A searchset Bundle", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn search_care_teams(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let pairs = crate::extract::query_pairs(&uri)?;
    let patient = wardline_fhir::patient_search("CareTeam", &pairs)?;
    let teams = state.service.patient_care_teams(&actor, patient).await?;
    let resources = teams
        .into_iter()
        .map(|team| care_team_resource(team, patient))
        .collect();
    Ok(bundle(&state, "CareTeam", &pairs, resources, None))
}

fn care_team_resource(
    team: wardline_service::people::PatientCareTeamView,
    patient: PatientId,
) -> Value {
    wardline_fhir::care_team(&wardline_fhir::CareTeamFacts {
        team: team.id,
        name: team.name,
        patient,
        members: team
            .members
            .into_iter()
            .map(|member| (member.display_name, member.role.as_str().to_owned()))
            .collect(),
    })
}

/// One care team of one patient, by the id a search gives (the team's and the patient's),
/// through the same check as the search: for those who may not read the patient, or a
/// team not looking after them, it does not exist.
#[utoipa::path(get, path = "/fhir/R4/CareTeam/{care_team_id}", tag = "fhir",
    params(("care_team_id" = String, Path, description = "The CareTeam's id, as a search gives it")),
    responses((status = 200, description = "The CareTeam", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn read_care_team(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let not_found = || Error::NotFound(format!("CareTeam/{id}"));
    let (team, patient) = wardline_fhir::care_team_of_id(&id).ok_or_else(not_found)?;
    let teams = match state.service.patient_care_teams(&actor, patient).await {
        Ok(teams) => teams,
        Err(Error::Forbidden) => return Err(not_found().into()),
        Err(other) => return Err(other.into()),
    };
    let team = teams
        .into_iter()
        .find(|candidate| candidate.id == team)
        .ok_or_else(not_found)?;
    Ok(Fhir(StatusCode::OK, care_team_resource(team, patient)).into_response())
}

/// The monitoring plan in force for a patient, as one CarePlan (its id is the
/// patient's, its version in `meta.versionId`), each rule an activity. A patient not
/// enrolled in a programme has none: an empty Bundle.
#[utoipa::path(get, path = "/fhir/R4/CarePlan", tag = "fhir", params(PatientOnlyParams),
    responses((status = 200, description = "A searchset Bundle", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn search_care_plans(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let pairs = crate::extract::query_pairs(&uri)?;
    let patient = wardline_fhir::patient_search("CarePlan", &pairs)?;
    let resources = match state.service.care_plan(&actor, patient, None).await {
        Ok(version) => vec![care_plan_resource(&version)],
        // Allowed to look, and there is no plan: the search finds nothing.
        Err(Error::NotFound(_)) => Vec::new(),
        Err(other) => return Err(other.into()),
    };
    Ok(bundle(&state, "CarePlan", &pairs, resources, None))
}

/// A patient's plan in force, by its id (the patient's), through the one access check.
#[utoipa::path(get, path = "/fhir/R4/CarePlan/{patient_id}", tag = "fhir",
    params(("patient_id" = PatientId, Path, description = "The patient whose plan it is")),
    responses((status = 200, description = "The CarePlan", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn read_care_plan(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let patient: PatientId = id
        .parse()
        .map_err(|_| Error::NotFound(format!("CarePlan/{id}")))?;
    let version = state.service.care_plan(&actor, patient, None).await?;
    Ok(Fhir(StatusCode::OK, care_plan_resource(&version)).into_response())
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct DetectedIssueParams {
    /// Required: `Patient/[id]` or `[id]` (or as `subject`).
    patient: String,
    /// When the alarm was raised, with a prefix `eq`, `ge`, `gt`, `le` or `lt`;
    /// repeatable.
    identified: Option<Vec<String>>,
    /// Alarms per page, 1 to 100 (100 when absent).
    #[param(minimum = 1, maximum = 100)]
    _count: Option<u32>,
    /// Where the previous page ended: from a `next` link.
    _page: Option<String>,
}

/// The most alarms on one page.
const MAX_ALARMS_PER_PAGE: u32 = 100;
/// Alarms raised in the same millisecond that one page may have to step over: far more
/// than one reading can raise at once.
const MAX_TIED_ALARMS: u32 = 300;

/// One alarm by its id, through the one access check: an alarm the caller may not see is
/// not found, as on Wardline's own API.
#[utoipa::path(get, path = "/fhir/R4/DetectedIssue/{alarm_id}", tag = "fhir",
    params(("alarm_id" = String, Path, description = "The alarm's handle")),
    responses((status = 200, description = "The DetectedIssue", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn read_detected_issue(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let alarm = state.service.alarm(&actor, &id).await?;
    Ok(Fhir(StatusCode::OK, detected_issue_resource(&alarm)).into_response())
}

/// A patient's alarms, newest first, as DetectedIssues (`preliminary` until resolved,
/// with acknowledgements, snoozes and the resolution as mitigations), paged by `next`
/// links. Through the one access check, audited as any read of the patient's alarms.
#[utoipa::path(get, path = "/fhir/R4/DetectedIssue", tag = "fhir", params(DetectedIssueParams),
    responses((status = 200, description = "A searchset Bundle", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn search_detected_issues(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let pairs = crate::extract::query_pairs(&uri)?;
    let search = wardline_fhir::record_search(
        RecordSearchRules {
            resource: "DetectedIssue",
            date: Some("identified"),
            patient_required: true,
            max_count: MAX_ALARMS_PER_PAGE,
        },
        &pairs,
    )?;
    let patient = search
        .patient
        .ok_or_else(|| Error::invalid("patient", "required: Patient/[id]"))?;
    let page = search
        .page
        .as_deref()
        .map(|page| tied_page(page, MAX_TIED_ALARMS))
        .transpose()?;
    // A later page ends where the one before it did: its last alarm's time is the
    // newest this page may hold, and the alarms of that time it held are stepped over.
    let (to, step_over) = match page {
        Some((millis, held)) => {
            let end = chrono::DateTime::from_timestamp_millis(millis.saturating_add(1))
                .ok_or_else(not_a_page)?;
            (Some(search.to.map_or(end, |to| to.min(end))), held)
        }
        None => (search.to, 0),
    };
    let mut alarms = state
        .service
        .patient_alarms(
            &actor,
            patient,
            (search.from, to),
            // Every state named: the list is exactly the raised alarms of the window,
            // newest first, with no open ones added beyond the page.
            Some("open,acknowledged,snoozed,resolved"),
            Some(search.count + step_over + 1),
        )
        .await?;
    let stepped = alarms.len().min(step_over as usize);
    alarms.drain(..stepped);
    let more = alarms.len() > search.count as usize;
    alarms.truncate(search.count as usize);
    let next = match (more, alarms.last()) {
        (true, Some(last)) => {
            let last_millis = last.raised_at.timestamp_millis();
            let at_last = alarms
                .iter()
                .filter(|alarm| alarm.raised_at.timestamp_millis() == last_millis)
                .count() as u32;
            // Those of the same time on the page before, too, when this page began there.
            let held = match page {
                Some((millis, held)) if millis == last_millis => held + at_last,
                _ => at_last,
            };
            Some(next_page(&pairs, format!("{last_millis}.{held}")))
        }
        _ => None,
    };
    let resources: Vec<Value> = alarms.iter().map(detected_issue_resource).collect();
    Ok(bundle(
        &state,
        "DetectedIssue",
        &pairs,
        resources,
        next.as_deref(),
    ))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct AuditEventParams {
    /// Only the entries about this patient: `Patient/[id]` or `[id]`.
    patient: Option<String>,
    /// Entries per page, 1 to 1000 (100 when absent).
    #[param(minimum = 1, maximum = 1000)]
    _count: Option<u32>,
    /// Where the previous page ended: from a `next` link.
    _page: Option<String>,
}

fn audit_resource(event: wardline_store::AuditRecord) -> Value {
    wardline_fhir::audit_event(
        &wardline_fhir::AuditFacts {
            sequence: event.sequence,
            time: event.time,
            actor_id: event.actor.map(|id| id.to_string()),
            actor_label: event.actor_label,
            action: event.action,
            patient: event.patient_id,
            outcome: event.outcome.as_str(),
            remote_addr: event.remote_addr,
            detail: event.detail,
        },
        "Wardline",
    )
}

/// One entry of the audit trail by its place in the chain (administrators only).
#[utoipa::path(get, path = "/fhir/R4/AuditEvent/{sequence}", tag = "fhir",
    params(("sequence" = i64, Path, description = "The entry's place in the audit trail")),
    responses((status = 200, description = "The AuditEvent", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn read_audit_event(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let not_found = || Error::NotFound(format!("AuditEvent/{id}"));
    // An id that is no place in the trail finds nothing, after the same check as any.
    let sequence: i64 = id.parse().unwrap_or(0);
    let entry = state
        .service
        .audit_log(
            &actor,
            AuditQuery {
                before: sequence.checked_add(1),
                limit: 1,
                ..AuditQuery::default()
            },
        )
        .await?
        .into_iter()
        .find(|event| event.sequence == sequence)
        .ok_or_else(not_found)?;
    Ok(Fhir(StatusCode::OK, audit_resource(entry)).into_response())
}

/// The audit trail, newest first, as AuditEvents (administrators only; the refusal is
/// audited like every other), optionally only the entries about one patient, paged by
/// `next` links.
#[utoipa::path(get, path = "/fhir/R4/AuditEvent", tag = "fhir", params(AuditEventParams),
    responses((status = 200, description = "A searchset Bundle", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn search_audit_events(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let pairs = crate::extract::query_pairs(&uri)?;
    let search = wardline_fhir::record_search(
        RecordSearchRules {
            resource: "AuditEvent",
            date: None,
            patient_required: false,
            max_count: 1000,
        },
        &pairs,
    )?;
    let before = search
        .page
        .as_deref()
        .map(|page| {
            page.parse::<i64>()
                .ok()
                .filter(|sequence| *sequence > 0)
                .ok_or_else(not_a_page)
        })
        .transpose()?;
    let mut events = state
        .service
        .audit_log(
            &actor,
            AuditQuery {
                patient_id: search.patient,
                actor: None,
                action: None,
                before,
                limit: search.count + 1,
            },
        )
        .await?;
    let more = events.len() > search.count as usize;
    events.truncate(search.count as usize);
    let next = match (more, events.last()) {
        (true, Some(last)) => Some(next_page(&pairs, last.sequence.to_string())),
        _ => None,
    };
    let resources: Vec<Value> = events.into_iter().map(audit_resource).collect();
    Ok(bundle(
        &state,
        "AuditEvent",
        &pairs,
        resources,
        next.as_deref(),
    ))
}
