//! What Wardline derives about a patient: the CGM report, rhythm events and NEWS2.

use axum::Json;
use axum::extract::State;
use chrono::FixedOffset;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_domain::PatientId;
use wardline_service::Error;
use wardline_service::clinical::CgmReport;
use wardline_store::{News2Record, RhythmEventRecord};

use super::clinical::window;
use crate::error::ApiError;
use crate::extract::{Caller, Id, Params};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(cgm_report))
        .routes(routes!(rhythm_events))
        .routes(routes!(news2_scores))
        .routes(routes!(latest_news2))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CgmReportParams {
    /// RFC 3339; default 14 days before `to`; before `to`, and at most 90 days before it.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// RFC 3339; default now.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// The patient's clock, e.g. `+01:00` (0 to 14 hours and 0 to 59 minutes either side
    /// of UTC): the AGP is by time of day. An unescaped `+` arriving as a space is read as
    /// `+`.
    #[param(pattern = r"^[ +-](\+?0*(1[0-4]|[0-9])|-0+):(\+?0*([1-5][0-9]|[0-9])|-0+)$")]
    utc_offset: Option<String>,
    #[param(schema_with = crate::schemas::agp_bin_minutes)]
    agp_bin_minutes: Option<u32>,
}

pub(crate) fn parse_offset(text: Option<&str>) -> Result<FixedOffset, Error> {
    let Some(text) = text else {
        return FixedOffset::east_opt(0).ok_or_else(|| Error::Internal("UTC offset".into()));
    };
    let invalid = || Error::invalid("utc_offset", "expected an offset such as +01:00 or -05:30");
    let (sign, rest) = match text.as_bytes().first() {
        // A `+` in a query string arrives as a space when the client did not escape it.
        Some(b'+') | Some(b' ') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(invalid()),
    };
    let (hours, minutes) = rest.split_once(':').ok_or_else(invalid)?;
    let hours: i32 = hours.parse().map_err(|_| invalid())?;
    let minutes: i32 = minutes.parse().map_err(|_| invalid())?;
    if !(0..=14).contains(&hours) || !(0..60).contains(&minutes) {
        return Err(invalid());
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60)).ok_or_else(invalid)
}

/// The consensus CGM report of a period: time in ranges, GMI, episodes and the AGP.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/reports/cgm", tag = "analytics",
    params(("patient_id" = PatientId, Path, description = "The patient"), CgmReportParams),
    responses((status = 200, description = "The report", body = CgmReport)))]
pub(crate) async fn cgm_report(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Params(params): Params<CgmReportParams>,
) -> Result<Json<CgmReport>, ApiError> {
    let window = window(params.from.as_deref(), params.to.as_deref())?;
    let offset = parse_offset(params.utc_offset.as_deref())?;
    Ok(Json(
        state
            .service
            .cgm_report(
                &caller.actor(),
                patient_id,
                window,
                offset,
                params.agp_bin_minutes,
            )
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RangeParams {
    /// RFC 3339; default 24 h before `to`; before `to`.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// RFC 3339; default now.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// 1 to 10000 (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

/// Rhythm events overlapping a window, oldest onset first.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/rhythm-events", tag = "analytics",
    params(("patient_id" = PatientId, Path, description = "The patient"), RangeParams),
    responses((status = 200, description = "Rhythm events", body = Vec<RhythmEventRecord>)))]
pub(crate) async fn rhythm_events(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Params(params): Params<RangeParams>,
) -> Result<Json<Vec<RhythmEventRecord>>, ApiError> {
    let window = window(params.from.as_deref(), params.to.as_deref())?;
    Ok(Json(
        state
            .service
            .rhythm_events(&caller.actor(), patient_id, window, params.limit)
            .await?,
    ))
}

/// NEWS2 results in a window, oldest first.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/news2", tag = "analytics",
    params(("patient_id" = PatientId, Path, description = "The patient"), RangeParams),
    responses((status = 200, description = "NEWS2 results", body = Vec<News2Record>)))]
pub(crate) async fn news2_scores(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Params(params): Params<RangeParams>,
) -> Result<Json<Vec<News2Record>>, ApiError> {
    let window = window(params.from.as_deref(), params.to.as_deref())?;
    Ok(Json(
        state
            .service
            .news2_scores(&caller.actor(), patient_id, window, params.limit)
            .await?,
    ))
}

/// The newest NEWS2 result.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/news2/latest", tag = "analytics",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    responses((status = 200, description = "The newest NEWS2 result", body = News2Record)))]
pub(crate) async fn latest_news2(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
) -> Result<Json<News2Record>, ApiError> {
    Ok(Json(
        state
            .service
            .latest_news2(&caller.actor(), patient_id)
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_read_strictly() {
        assert_eq!(
            parse_offset(Some("+01:00"))
                .ok()
                .map(|o| o.local_minus_utc()),
            Some(3600)
        );
        assert_eq!(
            parse_offset(Some("-05:30"))
                .ok()
                .map(|o| o.local_minus_utc()),
            Some(-19_800)
        );
        assert_eq!(
            parse_offset(None).ok().map(|o| o.local_minus_utc()),
            Some(0)
        );
        for bad in ["01:00", "+1", "+25:00", "+01:75", "", "+é:00"] {
            assert!(parse_offset(Some(bad)).is_err(), "{bad}");
        }
    }
}
