//! FHIR Bulk Data Access (docs/fhir.md, "Bulk export"): the kick-off
//! (`Patient/$export`, `Group/[care team]/$export`, `$export`), the status URL it answers
//! with (polled, and `DELETE`d to cancel), and the files of a finished export. Who may
//! export what, and every download, is decided by the service through the one access
//! check.

use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use wardline_fhir::{FHIR_NDJSON, IssueType};
use wardline_service::Error;
use wardline_service::bulk_export::{EXPORT_TYPES, ExportLevel, ExportRequest};
use wardline_store::{BulkExport, BulkExportStatus};

use super::fhir::{Fhir, FhirError, base};
use crate::error::ApiError;
use crate::extract::ExportCaller;
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export_patients))
        .routes(routes!(export_group))
        .routes(routes!(export_system))
        .routes(routes!(export_status, cancel_export))
}

/// The files, without the deadline of requests answered at once: a large file takes a
/// slow link longer than that.
pub(crate) fn file_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export_file))
}

/// How often a client is asked to poll an export under way.
const POLL_SECONDS: &str = "2";

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ExportParams {
    /// `application/fhir+ndjson` (also `application/ndjson`, `ndjson`): the only format.
    #[serde(rename = "_outputFormat")]
    #[param(rename = "_outputFormat")]
    output_format: Option<String>,
    /// Only what changed from this instant on (a date and time with its zone).
    _since: Option<String>,
    /// Comma-separated resource types: Patient, Device, Observation, CarePlan,
    /// DetectedIssue (all when absent).
    _type: Option<String>,
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(crate) struct ExportHeaders {
    /// Required: `respond-async`.
    #[serde(rename = "Prefer")]
    #[param(rename = "Prefer")]
    prefer: String,
}

/// Reads a kick-off and records the export; answers 202 with its status URL.
async fn kick_off(
    state: &AppState,
    caller: Result<ExportCaller, ApiError>,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    level: ExportLevel,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let asynchronous = headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|preference| preference.trim().eq_ignore_ascii_case("respond-async"));
    if !asynchronous {
        return Err(Error::invalid(
            "Prefer",
            "an export is asynchronous: send `Prefer: respond-async`",
        )
        .into());
    }
    let pairs = crate::extract::query_pairs(uri)?;
    let parameters = wardline_fhir::export_parameters(&pairs, &EXPORT_TYPES)?;
    let request = format!(
        "{}{}",
        state.settings.http_url,
        uri.path_and_query()
            .map_or(uri.path(), |path| path.as_str())
    );
    let export = state
        .service
        .request_bulk_export(
            &actor,
            ExportRequest {
                level,
                types: parameters.types,
                since: parameters.since,
                request,
            },
        )
        .await?;
    let location = format!("{}/$export-status/{}", base(state), export.id);
    let mut response = Fhir(
        StatusCode::ACCEPTED,
        wardline_fhir::operation_outcome_information(&format!(
            "export {} accepted for {} patients; follow it at the Content-Location",
            export.id,
            export.patients.len()
        )),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response
            .headers_mut()
            .insert(header::CONTENT_LOCATION, value);
    }
    Ok(response)
}

/// Exports every patient the caller may export: a patient their own record, a care team
/// member their teams' patients. Asynchronous: answers 202 with the status URL in
/// `Content-Location`.
#[utoipa::path(get, path = "/fhir/R4/Patient/$export", tag = "fhir",
    params(ExportParams, ExportHeaders),
    responses(
        (status = 202, description = "Accepted: poll the Content-Location", content_type = "application/fhir+json", body = Object),
        (status = 429, description = "As many exports under way as the requester may have", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn export_patients(
    State(state): State<AppState>,
    caller: Result<ExportCaller, ApiError>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, FhirError> {
    kick_off(&state, caller, &headers, &uri, ExportLevel::Patients).await
}

/// Exports a care team's patients (a FHIR Group is a care team), for its members.
#[utoipa::path(get, path = "/fhir/R4/Group/{group_id}/$export", tag = "fhir",
    params(("group_id" = String, Path, description = "The care team's id"), ExportParams, ExportHeaders),
    responses(
        (status = 202, description = "Accepted: poll the Content-Location", content_type = "application/fhir+json", body = Object),
        (status = 429, description = "As many exports under way as the requester may have", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn export_group(
    State(state): State<AppState>,
    caller: Result<ExportCaller, ApiError>,
    headers: HeaderMap,
    Path(group): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, FhirError> {
    // The Prefer header is read first, as for the other kick-offs.
    let team = group.parse::<wardline_domain::CareTeamId>();
    let level = match team {
        Ok(team) => ExportLevel::Group(team),
        Err(_) => {
            caller?;
            return Err(Error::NotFound(format!("Group/{group}")).into());
        }
    };
    kick_off(&state, caller, &headers, &uri, level).await
}

/// Exports everything the caller may export (for a person, the patients
/// `Patient/$export` gives).
#[utoipa::path(get, path = "/fhir/R4/$export", tag = "fhir",
    params(ExportParams, ExportHeaders),
    responses(
        (status = 202, description = "Accepted: poll the Content-Location", content_type = "application/fhir+json", body = Object),
        (status = 429, description = "As many exports under way as the requester may have", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn export_system(
    State(state): State<AppState>,
    caller: Result<ExportCaller, ApiError>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, FhirError> {
    kick_off(&state, caller, &headers, &uri, ExportLevel::System).await
}

fn export_id(text: &str) -> Result<Uuid, Error> {
    text.parse()
        .map_err(|_| Error::NotFound(format!("bulk export {text}")))
}

/// An HTTP date (RFC 9110), for `Expires`.
fn http_date(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn manifest(state: &AppState, export: &BulkExport) -> serde_json::Value {
    let base = base(state);
    let files: Vec<wardline_fhir::ExportFile> = export
        .outputs
        .iter()
        .map(|output| wardline_fhir::ExportFile {
            resource_type: output.resource_type.clone(),
            url: format!("{base}/$export-file/{}/{}", export.id, output.file),
            count: output.count,
        })
        .collect();
    wardline_fhir::export_manifest(export.created, &export.request, &files)
}

/// Where an export stands, for the one who asked for it: 202 with `X-Progress` while it
/// is written, 200 with the manifest once done (until `Expires`), 500 with an
/// OperationOutcome if it failed; anyone else, and a cancelled or expired export, 404.
#[utoipa::path(get, path = "/fhir/R4/$export-status/{export_id}", tag = "fhir",
    params(("export_id" = String, Path, description = "The export, from the kick-off's Content-Location")),
    responses(
        (status = 200, description = "The manifest", content_type = "application/json", body = Object),
        (status = 202, description = "Under way; `X-Progress` says how far"),
        (status = 500, description = "The export failed", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn export_status(
    State(state): State<AppState>,
    caller: Result<ExportCaller, ApiError>,
    Path(id): Path<String>,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let export = state
        .service
        .bulk_export_status(&actor, export_id(&id)?)
        .await?;
    let mut response = match export.status {
        BulkExportStatus::Pending | BulkExportStatus::Running => {
            let progress = export
                .progress
                .clone()
                .unwrap_or_else(|| "waiting for a worker".to_owned());
            let mut response = StatusCode::ACCEPTED.into_response();
            let headers = response.headers_mut();
            if let Ok(value) = HeaderValue::from_str(&progress) {
                headers.insert("x-progress", value);
            }
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(POLL_SECONDS));
            response
        }
        BulkExportStatus::Completed => {
            let mut response =
                (StatusCode::OK, axum::Json(manifest(&state, &export))).into_response();
            if let Some(expires) = export.expires
                && let Ok(value) = HeaderValue::from_str(&http_date(expires))
            {
                response.headers_mut().insert(header::EXPIRES, value);
            }
            response
        }
        BulkExportStatus::Failed => Fhir(
            StatusCode::INTERNAL_SERVER_ERROR,
            wardline_fhir::operation_outcome(
                IssueType::Exception,
                export
                    .error
                    .as_deref()
                    .unwrap_or("the export could not be written"),
                None,
                "export_failed",
            ),
        )
        .into_response(),
        BulkExportStatus::Cancelled => {
            return Err(Error::NotFound(format!("bulk export {id}")).into());
        }
    };
    // A status is the requester's alone and changes while it is polled.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Cancels an export under way, or deletes a finished one's files: 202, and its status
/// is not found from then on.
#[utoipa::path(delete, path = "/fhir/R4/$export-status/{export_id}", tag = "fhir",
    params(("export_id" = String, Path, description = "The export, from the kick-off's Content-Location")),
    responses((status = 202, description = "Cancelled, its files removed")))]
pub(crate) async fn cancel_export(
    State(state): State<AppState>,
    caller: Result<ExportCaller, ApiError>,
    Path(id): Path<String>,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    state
        .service
        .cancel_bulk_export(&actor, export_id(&id)?)
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// One file of a finished export (`application/fhir+ndjson`, one resource per line),
/// for the one who asked for it while they may still read every patient in it.
#[utoipa::path(get, path = "/fhir/R4/$export-file/{export_id}/{file}", tag = "fhir",
    params(
        ("export_id" = String, Path, description = "The export"),
        ("file" = String, Path, description = "The file's name, from the manifest")),
    responses((status = 200, description = "The file: one resource per line", body = String, content_type = "application/fhir+ndjson")))]
pub(crate) async fn export_file(
    State(state): State<AppState>,
    caller: Result<ExportCaller, ApiError>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let (path, output) = state
        .service
        .bulk_export_file(&actor, export_id(&id)?, &name)
        .await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|error| Error::Internal(format!("opening {path:?} of export {id}: {error}")))?;
    let length = file
        .metadata()
        .await
        .map_err(|error| Error::Internal(format!("reading {path:?}: {error}")))?
        .len();
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file,
        256 * 1024,
    ));
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_NDJSON));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&output.count.to_string()) {
        headers.insert("x-resource-count", value);
    }
    Ok(response)
}
