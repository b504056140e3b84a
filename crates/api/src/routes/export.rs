//! A patient's observations as a file: CSV or NDJSON, streamed page by page.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_domain::PatientId;
use wardline_service::export::ExportFormat;

use crate::error::ApiError;
use crate::extract::{Caller, Id, Params, optional_time};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export_observations))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportParams {
    /// `csv` (default) or `ndjson`.
    #[param(pattern = "^(csv|ndjson)$")]
    format: Option<String>,
    /// RFC 3339; everything from the first reading when absent.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// RFC 3339, exclusive; now when absent.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
}

/// The patient's observations measured in the window, as a file (the patient and their
/// care team): CSV with a header row, or NDJSON with one observation per line; code by
/// code, each oldest first. Audited once. A failure part-way aborts the transfer (the
/// chunked body ends without its last chunk, which HTTP clients report as an error)
/// rather than ending it as if the file were whole.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/export", tag = "observations",
    params(("patient_id" = PatientId, Path, description = "The patient"), ExportParams),
    responses((status = 200, description = "The file", body = String, content_type = "text/csv")))]
pub(crate) async fn export_observations(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Params(params): Params<ExportParams>,
) -> Result<Response, ApiError> {
    let format = ExportFormat::parse(params.format.as_deref().unwrap_or("csv"))?;
    let window = (
        optional_time("from", params.from.as_deref())?,
        optional_time("to", params.to.as_deref())?,
    );
    let mut export = state
        .service
        .export_observations(&caller.actor(), patient_id, window)
        .await?;
    let (sender, receiver) =
        tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        if sender
            .send(Ok(axum::body::Bytes::from_static(
                format.header().as_bytes(),
            )))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let chunk = match export.next_page().await {
                Ok(Some(page)) => page
                    .iter()
                    .map(|observation| format.line(observation))
                    .collect::<Result<String, _>>()
                    .map(axum::body::Bytes::from),
                Ok(None) => return,
                Err(error) => Err(error),
            };
            let chunk = chunk.map_err(|error| {
                tracing::error!(%error, "an export stopped part-way");
                std::io::Error::other("the export stopped part-way")
            });
            let failed = chunk.is_err();
            if sender.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    let (from, _) = window;
    let name = format!(
        "wardline-{patient_id}-{}.{}",
        from.map_or_else(
            || "all".to_owned(),
            |from| from.format("%Y%m%d").to_string()
        ),
        format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.media_type().to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver)),
    )
        .into_response())
}
