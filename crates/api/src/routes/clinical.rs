//! Patients and their health data, and the live streams of it. Every handler reaches the
//! data through the service layer's access check.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use chrono::NaiveDate;
use futures_util::Stream;
use serde::Deserialize;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_domain::sharing::ShareCategory;
use wardline_domain::{Observation, ObservationCode, PatientId, Signal};
use wardline_service::clinical::{ObservationPageView, SummaryView, WaveformView, Window};
use wardline_service::people::PatientDetails;
use wardline_service::{Error, PatientAccess, Wardline};
use wardline_store::{Device, News2Record, Patient};

use crate::error::ApiError;
use crate::extract::{Body, Caller, Id, Params, optional_time};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_patients, create_patient))
        .routes(routes!(get_patient))
        .routes(routes!(patient_devices))
        .routes(routes!(observations))
        .routes(routes!(observation_summary))
        .routes(routes!(latest_observations))
        .routes(routes!(waveforms))
}

/// The live streams: no deadline, they answer for as long as the client listens.
pub(crate) fn stream_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(observation_stream))
        .routes(routes!(ward_stream))
}

pub(crate) fn parse_code(text: &str) -> Result<ObservationCode, Error> {
    ObservationCode::from_loinc(text).ok_or_else(|| {
        Error::invalid(
            "code",
            format!("{text:?} is not a LOINC code Wardline stores"),
        )
    })
}

/// `from` and `to` query parameters as a window.
pub(crate) fn window(from: Option<&str>, to: Option<&str>) -> Result<Window, Error> {
    Ok((optional_time("from", from)?, optional_time("to", to)?))
}

/// The patients the caller may list: their own record, their care teams' patients, or
/// every record for an admin (names only; clinical reads still need a care team).
#[utoipa::path(get, path = "/api/v1/patients", tag = "patients",
    responses((status = 200, description = "Patient records", body = Vec<Patient>)))]
pub(crate) async fn list_patients(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Patient>>, ApiError> {
    Ok(Json(state.service.list_patients(&caller.actor()).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CreatePatientRequest {
    #[schema(schema_with = crate::schemas::trimmed_text::<200>)]
    display_name: String,
    /// `YYYY-MM-DD`, not in the future.
    #[schema(value_type = Option<String>, format = Date)]
    birth_date: Option<String>,
    /// The hospital's medical record number: 1 to 64 bytes, unique.
    #[schema(min_length = 1, max_length = 64)]
    mrn: Option<String>,
}

/// Creates a patient record (admin).
#[utoipa::path(post, path = "/api/v1/patients", tag = "patients",
    request_body = CreatePatientRequest,
    responses((status = 201, description = "The new record", body = Patient)))]
pub(crate) async fn create_patient(
    State(state): State<AppState>,
    caller: Caller,
    Body(request): Body<CreatePatientRequest>,
) -> Result<(StatusCode, Json<Patient>), ApiError> {
    let birth_date = request
        .birth_date
        .as_deref()
        .map(|text| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| Error::invalid("birth_date", "expected YYYY-MM-DD"))
        })
        .transpose()?;
    let patient = state
        .service
        .create_patient(
            &caller.actor(),
            PatientDetails {
                display_name: request.display_name,
                birth_date,
                mrn: request.mrn,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(patient)))
}

/// One patient record.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}", tag = "patients",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    responses((status = 200, description = "The record", body = Patient)))]
pub(crate) async fn get_patient(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
) -> Result<Json<Patient>, ApiError> {
    Ok(Json(
        state.service.patient(&caller.actor(), patient_id).await?,
    ))
}

/// The devices assigned to the patient now.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/devices", tag = "patients",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    responses((status = 200, description = "Devices", body = Vec<Device>)))]
pub(crate) async fn patient_devices(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
) -> Result<Json<Vec<Device>>, ApiError> {
    Ok(Json(
        state
            .service
            .patient_devices(&caller.actor(), patient_id)
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ObservationParams {
    #[param(value_type = crate::schemas::LoincCode)]
    code: String,
    /// RFC 3339; default 24 h before `to`; before `to`.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// RFC 3339, exclusive; default now.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// 1 to 10000, default 1000.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^[+-]?0*[0-9]{1,18}\.[+-]?0*[0-9]{1,18}$")]
    cursor: Option<String>,
}

/// One code's observations in a window, oldest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/observations", tag = "observations",
    params(("patient_id" = PatientId, Path, description = "The patient"), ObservationParams),
    responses((status = 200, description = "A page of observations", body = ObservationPageView)))]
pub(crate) async fn observations(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Params(params): Params<ObservationParams>,
) -> Result<Json<ObservationPageView>, ApiError> {
    let code = parse_code(&params.code)?;
    let window = window(params.from.as_deref(), params.to.as_deref())?;
    Ok(Json(
        state
            .service
            .observations(
                &caller.actor(),
                patient_id,
                code,
                window,
                wardline_service::clinical::PageRequest {
                    limit: params.limit,
                    cursor: params.cursor.as_deref(),
                    newest_first: false,
                },
            )
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SummaryParams {
    #[param(value_type = crate::schemas::LoincCode)]
    code: String,
    /// RFC 3339; default 30 days before `to`; before `to`, and at most 366 days before it.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// RFC 3339, exclusive; default now.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// The bucket's length, 1 to 86400 s (default 3600); at most 10000 buckets.
    #[param(minimum = 1, maximum = 86400)]
    bucket_secs: Option<i64>,
}

/// One code's observations per time bucket (count, lowest, highest, mean), for charts
/// of periods too long to draw reading by reading.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/observations/summary", tag = "observations",
    params(("patient_id" = PatientId, Path, description = "The patient"), SummaryParams),
    responses((status = 200, description = "Buckets with readings, oldest first", body = SummaryView)))]
pub(crate) async fn observation_summary(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Params(params): Params<SummaryParams>,
) -> Result<Json<SummaryView>, ApiError> {
    let code = parse_code(&params.code)?;
    let window = window(params.from.as_deref(), params.to.as_deref())?;
    Ok(Json(
        state
            .service
            .observation_summary(
                &caller.actor(),
                patient_id,
                code,
                window,
                params.bucket_secs,
            )
            .await?,
    ))
}

/// The newest observation of each code.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/observations/latest", tag = "observations",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    responses((status = 200, description = "One observation per code", body = Vec<Observation>)))]
pub(crate) async fn latest_observations(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
) -> Result<Json<Vec<Observation>>, ApiError> {
    Ok(Json(
        state
            .service
            .latest_observations(&caller.actor(), patient_id)
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WaveformParams {
    /// e.g. `ecg-lead-ii`; every signal when absent.
    #[param(value_type = Option<Signal>)]
    signal: Option<String>,
    /// RFC 3339; default a minute before `to`; before `to`.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// RFC 3339; default now; at most an hour after `from`.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// Chunks at most, 1 to 1000 (default 120); a number outside is taken as the nearer
    /// of the two.
    limit: Option<u32>,
}

/// Decoded waveform chunks overlapping a window.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/waveforms", tag = "observations",
    params(("patient_id" = PatientId, Path, description = "The patient"), WaveformParams),
    responses((status = 200, description = "Chunks with their samples", body = Vec<WaveformView>)))]
pub(crate) async fn waveforms(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Params(params): Params<WaveformParams>,
) -> Result<Json<Vec<WaveformView>>, ApiError> {
    let signal = params
        .signal
        .as_deref()
        .map(|text| {
            Signal::parse(text)
                .ok_or_else(|| Error::invalid("signal", format!("unknown signal {text:?}")))
        })
        .transpose()?;
    let window = window(params.from.as_deref(), params.to.as_deref())?;
    Ok(Json(
        state
            .service
            .waveforms(&caller.actor(), patient_id, signal, window, params.limit)
            .await?,
    ))
}

/// Server-Sent Events: each observation of the patient as soon as it is committed
/// (`observation`), each NEWS2 recomputed from them (`news2`), `lagged` when the
/// client fell behind and should re-read, and `ended` last when the session or the
/// access ended (a share revoked or expired, a care team changed).
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/observations/stream", tag = "observations",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream", body = String)))]
pub(crate) async fn observation_stream(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let patients = state
        .service
        .open_patient_stream(&caller.actor(), patient_id)
        .await?;
    Ok(live_events(&state.service, caller, patients))
}

/// Server-Sent Events for a whole ward: the observations and NEWS2 of every patient the
/// caller may read, on one connection. The set of patients is fixed when the stream
/// opens (each one audited); a screen re-reads its list after a reconnect.
#[utoipa::path(get, path = "/api/v1/observations/stream", tag = "observations",
    responses((status = 200, description = "An event stream", content_type = "text/event-stream", body = String)))]
pub(crate) async fn ward_stream(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let patients = state.service.open_ward_stream(&caller.actor()).await?;
    Ok(live_events(&state.service, caller, patients))
}

/// The live events of the patients in `accesses`, each cut to its access (a share's
/// categories and window), until the caller's session or access to any of them ends
/// (checked every second; the last event is then `ended`).
fn live_events(
    service: &Wardline,
    caller: Caller,
    accesses: Vec<PatientAccess>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let patients: HashSet<PatientId> = accesses.iter().map(PatientAccess::patient_id).collect();
    let ended = service.stream_ended_with(caller.0, patients, accesses.clone());
    let watched: Arc<HashMap<PatientId, PatientAccess>> = Arc::new(
        accesses
            .into_iter()
            .map(|access| (access.patient_id(), access))
            .collect(),
    );
    let lagged = |skipped: u64| {
        // The client fell behind; it should re-read the latest values.
        Some(Ok(Event::default()
            .event("lagged")
            .data(skipped.to_string())))
    };
    let of_patients = Arc::clone(&watched);
    let observations =
        BroadcastStream::new(service.live().subscribe()).filter_map(move |item| match item {
            Ok(observation)
                if of_patients
                    .get(&observation.patient_id)
                    .is_some_and(|access| {
                        access.shows(observation.code, observation.effective)
                    }) =>
            {
                Some(Ok(Event::default()
                    .event("observation")
                    .json_data(observation.as_ref())
                    .unwrap_or_else(|_| Event::default().event("error"))))
            }
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(skipped)) => lagged(skipped),
        });
    let scores =
        BroadcastStream::new(service.live().subscribe_news2()).filter_map(move |item| match item {
            Ok(score)
                if watched.get(&score.patient_id).is_some_and(|access| {
                    access.allows(ShareCategory::VitalSigns) && access.in_window(score.time)
                }) =>
            {
                Some(Ok(Event::default()
                    .event("news2")
                    .json_data::<&News2Record>(score.as_ref())
                    .unwrap_or_else(|_| Event::default().event("error"))))
            }
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(skipped)) => lagged(skipped),
        });
    let events = crate::streams::live_stream(observations.merge(scores), ended);
    Sse::new(events)
}
