//! Patients and their health data. Every handler that returns health data first obtains a
//! `PatientAccess` from the access module.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use wardline_domain::{Observation, ObservationCode, PatientId, Signal};
use wardline_store::{
    Device, NewPatient, ObservationBucket, ObservationQuery, ObservationSummaryQuery, PageCursor,
    Patient, WaveformQuery,
};

use super::{Body, Params, optional_time, parse_id};
use crate::access::{authorize_own_patients, authorize_patient, require_admin, visible_patients};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn list_patients(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Patient>>, ApiError> {
    let visible = visible_patients(&state, &caller).await?;
    let mut patients = Vec::with_capacity(visible.len());
    for patient_id in visible {
        if let Some(patient) = state.store.patient(patient_id).await? {
            patients.push(patient);
        }
    }
    Ok(Json(patients))
}

#[derive(Deserialize)]
pub(crate) struct CreatePatientRequest {
    display_name: String,
    birth_date: Option<String>,
    mrn: Option<String>,
}

pub(crate) async fn create_patient(
    State(state): State<AppState>,
    caller: Caller,
    Body(request): Body<CreatePatientRequest>,
) -> Result<(StatusCode, Json<Patient>), ApiError> {
    require_admin(&state, &caller, "patients.create", None).await?;
    let display_name = request.display_name.trim().to_owned();
    if display_name.is_empty() || display_name.len() > 200 {
        return Err(ApiError::invalid("display_name", "1 to 200 characters"));
    }
    let birth_date = request
        .birth_date
        .as_deref()
        .map(|text| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| ApiError::invalid("birth_date", "expected YYYY-MM-DD"))
        })
        .transpose()?;
    if birth_date.is_some_and(|date| date > Utc::now().date_naive()) {
        return Err(ApiError::invalid("birth_date", "is in the future"));
    }
    if request
        .mrn
        .as_ref()
        .is_some_and(|mrn| mrn.is_empty() || mrn.len() > 64)
    {
        return Err(ApiError::invalid("mrn", "1 to 64 characters"));
    }
    let patient = state
        .store
        .create_patient(NewPatient {
            display_name,
            birth_date,
            mrn: request.mrn,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(patient)))
}

pub(crate) async fn get_patient(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient_id): Path<String>,
) -> Result<Json<Patient>, ApiError> {
    let patient_id: PatientId = parse_id("patient_id", &patient_id)?;
    let access = authorize_patient(&state, &caller, patient_id, "patient.read", None).await?;
    let patient = state
        .store
        .patient(access.patient_id())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("patient {patient_id}")))?;
    Ok(Json(patient))
}

pub(crate) async fn patient_devices(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient_id): Path<String>,
) -> Result<Json<Vec<Device>>, ApiError> {
    let patient_id: PatientId = parse_id("patient_id", &patient_id)?;
    let access = authorize_patient(&state, &caller, patient_id, "devices.read", None).await?;
    Ok(Json(
        state.store.devices_of_patient(access.patient_id()).await?,
    ))
}

#[derive(Deserialize)]
pub(crate) struct ObservationParams {
    code: String,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct ObservationPageBody {
    observations: Vec<Observation>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

fn parse_code(text: &str) -> Result<ObservationCode, ApiError> {
    ObservationCode::from_loinc(text).ok_or_else(|| {
        ApiError::invalid(
            "code",
            format!("{text:?} is not a LOINC code Wardline stores"),
        )
    })
}

pub(super) fn time_window(
    from: Option<&str>,
    to: Option<&str>,
    default_span: chrono::Duration,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let to = optional_time("to", to)?.unwrap_or_else(|| Utc::now() + chrono::Duration::minutes(5));
    let from = optional_time("from", from)?.unwrap_or(to - default_span);
    if from >= to {
        return Err(ApiError::invalid("from", "must be before `to`"));
    }
    Ok((from, to))
}

pub(crate) async fn observations(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient_id): Path<String>,
    Params(params): Params<ObservationParams>,
) -> Result<Json<ObservationPageBody>, ApiError> {
    let patient_id: PatientId = parse_id("patient_id", &patient_id)?;
    let code = parse_code(&params.code)?;
    let (from, to) = time_window(
        params.from.as_deref(),
        params.to.as_deref(),
        chrono::Duration::hours(24),
    )?;
    let limit = params.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid("limit", "1 to 10000"));
    }
    let after = params
        .cursor
        .as_deref()
        .map(|text| {
            PageCursor::decode(text)
                .ok_or_else(|| ApiError::invalid("cursor", "not a cursor this API returned"))
        })
        .transpose()?;
    let access = authorize_patient(
        &state,
        &caller,
        patient_id,
        "observations.read",
        Some(format!("code {} from {from} to {to}", code.loinc())),
    )
    .await?;
    let page = state
        .store
        .observations(ObservationQuery {
            patient_id: access.patient_id(),
            code,
            from,
            to,
            after,
            limit,
        })
        .await?;
    Ok(Json(ObservationPageBody {
        observations: page.observations,
        next_cursor: page.next.map(PageCursor::encode),
    }))
}

#[derive(Deserialize)]
pub(crate) struct SummaryParams {
    code: String,
    from: Option<String>,
    to: Option<String>,
    bucket_secs: Option<i64>,
}

#[derive(Serialize)]
pub(crate) struct SummaryBody {
    code: &'static str,
    unit: &'static str,
    bucket_secs: i64,
    buckets: Vec<ObservationBucket>,
}

/// At most this many buckets per request: more than any screen has pixels across.
const MAX_BUCKETS: i64 = 10_000;

/// One code's observations per time bucket (count, min, max, mean): what a chart of a
/// month of second-by-second readings draws instead of millions of points.
pub(crate) async fn observation_summary(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient_id): Path<String>,
    Params(params): Params<SummaryParams>,
) -> Result<Json<SummaryBody>, ApiError> {
    let patient_id: PatientId = parse_id("patient_id", &patient_id)?;
    let code = parse_code(&params.code)?;
    let (from, to) = time_window(
        params.from.as_deref(),
        params.to.as_deref(),
        chrono::Duration::days(30),
    )?;
    if to - from > chrono::Duration::days(366) {
        return Err(ApiError::invalid(
            "from",
            "a summary spans at most 366 days",
        ));
    }
    let bucket_secs = params.bucket_secs.unwrap_or(3600);
    if !(1..=86_400).contains(&bucket_secs) {
        return Err(ApiError::invalid("bucket_secs", "1 to 86400 seconds"));
    }
    if (to - from).num_seconds() / bucket_secs > MAX_BUCKETS {
        return Err(ApiError::invalid(
            "bucket_secs",
            format!("too small for the window: at most {MAX_BUCKETS} buckets"),
        ));
    }
    let access = authorize_patient(
        &state,
        &caller,
        patient_id,
        "observations.summary",
        Some(format!("code {} from {from} to {to}", code.loinc())),
    )
    .await?;
    let buckets = state
        .store
        .observation_summary(ObservationSummaryQuery {
            patient_id: access.patient_id(),
            code,
            from,
            to,
            bucket: chrono::Duration::seconds(bucket_secs),
        })
        .await?;
    Ok(Json(SummaryBody {
        code: code.loinc(),
        unit: code.spec().canonical_unit,
        bucket_secs,
        buckets,
    }))
}

pub(crate) async fn latest_observations(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient_id): Path<String>,
) -> Result<Json<Vec<Observation>>, ApiError> {
    let patient_id: PatientId = parse_id("patient_id", &patient_id)?;
    let access = authorize_patient(
        &state,
        &caller,
        patient_id,
        "observations.read_latest",
        None,
    )
    .await?;
    Ok(Json(
        state.store.latest_observations(access.patient_id()).await?,
    ))
}

#[derive(Deserialize)]
pub(crate) struct WaveformParams {
    signal: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
pub(crate) struct WaveformBody {
    device_id: String,
    seq: i64,
    signal: Signal,
    sampling_rate_hz: f64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    gain: f64,
    baseline: i32,
    unit: &'static str,
    samples: Vec<i32>,
}

pub(crate) async fn waveforms(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient_id): Path<String>,
    Params(params): Params<WaveformParams>,
) -> Result<Json<Vec<WaveformBody>>, ApiError> {
    let patient_id: PatientId = parse_id("patient_id", &patient_id)?;
    let signal = params
        .signal
        .as_deref()
        .map(|text| {
            Signal::parse(text)
                .ok_or_else(|| ApiError::invalid("signal", format!("unknown signal {text:?}")))
        })
        .transpose()?;
    let (from, to) = time_window(
        params.from.as_deref(),
        params.to.as_deref(),
        chrono::Duration::minutes(1),
    )?;
    if to - from > chrono::Duration::hours(1) {
        return Err(ApiError::invalid(
            "to",
            "a waveform window spans at most one hour",
        ));
    }
    let access = authorize_patient(
        &state,
        &caller,
        patient_id,
        "waveforms.read",
        Some(format!("from {from} to {to}")),
    )
    .await?;
    let chunks = state
        .store
        .waveforms(WaveformQuery {
            patient_id: access.patient_id(),
            signal,
            from,
            to,
            limit: params.limit.unwrap_or(120).min(1000),
        })
        .await?;
    let mut bodies = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let decoded = wardline_waveform::decode(&chunk.encoded).map_err(|error| {
            ApiError::Internal(format!("stored waveform chunk does not decode: {error}"))
        })?;
        bodies.push(WaveformBody {
            device_id: chunk.device_id.to_string(),
            seq: chunk.seq,
            signal: chunk.signal,
            sampling_rate_hz: chunk.sampling_rate_hz,
            start: chunk.start,
            end: chunk.end,
            gain: decoded.header.gain,
            baseline: decoded.header.baseline,
            unit: chunk.signal.physical_unit(),
            samples: decoded.samples,
        });
    }
    Ok(Json(bodies))
}

/// Server-Sent Events: each observation of the patient as soon as it is committed, and
/// each NEWS2 recomputed from them.
pub(crate) async fn observation_stream(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient_id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let patient_id: PatientId = parse_id("patient_id", &patient_id)?;
    let access =
        authorize_patient(&state, &caller, patient_id, "observations.stream", None).await?;
    Ok(live_events(&state, HashSet::from([access.patient_id()])))
}

/// Server-Sent Events for a whole ward: the observations and NEWS2 scores of every patient
/// the caller may read, on one connection instead of one per patient. The set of patients
/// is fixed when the stream opens (each one audited); a screen re-reads its list after a
/// reconnect.
pub(crate) async fn ward_stream(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let patients = authorize_own_patients(&state, &caller, "observations.stream_ward")
        .await?
        .iter()
        .map(|access| access.patient_id())
        .collect();
    Ok(live_events(&state, patients))
}

fn live_events(
    state: &AppState,
    patients: HashSet<PatientId>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let watched = Arc::new(patients);
    let lagged = |skipped: u64| {
        // The client fell behind; it should re-read the latest values.
        Some(Ok(Event::default()
            .event("lagged")
            .data(skipped.to_string())))
    };
    let of_patients = Arc::clone(&watched);
    let observations =
        BroadcastStream::new(state.ingest.live().subscribe()).filter_map(move |item| match item {
            Ok(observation) if of_patients.contains(&observation.patient_id) => {
                Some(Ok(Event::default()
                    .event("observation")
                    .json_data(observation.as_ref())
                    .unwrap_or_else(|_| Event::default().event("error"))))
            }
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(skipped)) => lagged(skipped),
        });
    // A recomputed NEWS2 is pushed as soon as it is stored, so a screen never shows a
    // score older than the vitals beside it for longer than the computation takes.
    let scores =
        BroadcastStream::new(state.ingest.live().subscribe_news2()).filter_map(move |item| {
            match item {
                Ok(score) if watched.contains(&score.patient_id) => Some(Ok(Event::default()
                    .event("news2")
                    .json_data(score.as_ref())
                    .unwrap_or_else(|_| Event::default().event("error")))),
                Ok(_) => None,
                Err(BroadcastStreamRecvError::Lagged(skipped)) => lagged(skipped),
            }
        });
    Sse::new(observations.merge(scores))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
