//! CGM exports (Dexcom Clarity, LibreView) imported into a patient's record.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_domain::PatientId;
use wardline_service::Error;
use wardline_service::imports::{ImportSource, ImportSummary};

use crate::error::ApiError;
use crate::extract::{Caller, Id, Params};
use crate::state::AppState;

/// The largest export taken: a year of a Libre's readings every 15 minutes and its
/// scans is a few megabytes.
pub(crate) const MAX_IMPORT_BYTES: usize = 32 * 1024 * 1024;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import_cgm))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ImportParams {
    /// `clarity` (Dexcom Clarity) or `libreview`.
    #[param(pattern = "^(clarity|libreview)$")]
    source: String,
    /// The IANA time zone the export's clock times are in (the patient's), such as
    /// `Europe/London`.
    #[param(min_length = 1, max_length = 64)]
    time_zone: String,
}

/// Imports a CGM export (the file as the request body, UTF-8 CSV) into the patient's
/// record (the patient, or a clinician or nurse of their care team). Importing the same
/// file again adds nothing; the summary lists what was refused and why.
#[utoipa::path(post, path = "/api/v1/patients/{patient_id}/imports", tag = "observations",
    params(("patient_id" = PatientId, Path, description = "The patient"), ImportParams),
    request_body(content = String, description = "The export, as the device's software wrote it", content_type = "text/csv"),
    responses((status = 200, description = "What the import did", body = ImportSummary)))]
pub(crate) async fn import_cgm(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Params(params): Params<ImportParams>,
    body: axum::body::Body,
) -> Result<Json<ImportSummary>, ApiError> {
    let source = ImportSource::parse(&params.source)?;
    let Ok(body) = axum::body::to_bytes(body, MAX_IMPORT_BYTES).await else {
        return Err(Error::PayloadTooLarge {
            limit: MAX_IMPORT_BYTES,
        }
        .into());
    };
    let text = std::str::from_utf8(&body)
        .map_err(|error| Error::invalid("file", format!("the file is not UTF-8 text: {error}")))?;
    Ok(Json(
        state
            .service
            .import_cgm(&caller.actor(), patient_id, source, text, &params.time_zone)
            .await?,
    ))
}
