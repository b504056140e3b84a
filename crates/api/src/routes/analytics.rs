//! What Wardline derives about a patient: the CGM report, rhythm events and NEWS2. Every
//! handler obtains a `PatientAccess` first, as for any other health data.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use wardline_analytics::cgm::{
    AmbulatoryGlucoseProfile, ConsensusMetrics, EpisodeReport, FIVE_MINUTES, GlucoseReading,
    GlucoseSeries, ambulatory_glucose_profile, consensus_metrics, glucose_episodes,
};
use wardline_domain::{ObservationCode, PatientId};
use wardline_store::{
    News2Query, News2Record, ObservationQuery, RhythmEventQuery, RhythmEventRecord,
};

use super::clinical::time_window;
use super::{Params, parse_id};
use crate::access::authorize_patient;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The longest period one CGM report covers (the consensus asks for 14 days; 90 days
/// is the usual longest comparison period, and it bounds the work of one request).
const MAX_REPORT_DAYS: i64 = 90;
/// Bounds the readings one report reads: a reading a minute for 90 days, and some.
const MAX_REPORT_READINGS: usize = 150_000;

#[derive(Deserialize)]
pub(crate) struct CgmReportParams {
    from: Option<String>,
    to: Option<String>,
    /// The patient's clock, e.g. `+01:00`: the AGP is by time of day.
    utc_offset: Option<String>,
    agp_bin_minutes: Option<u32>,
}

#[derive(Serialize)]
pub(crate) struct CgmReportBody {
    patient_id: PatientId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    utc_offset: String,
    /// How `metrics.first`, `metrics.last` and the episodes' `start` and `end` count
    /// time.
    clock: &'static str,
    /// The device's reading interval, taken as the median interval between readings.
    sensor_interval_s: i64,
    readings: usize,
    /// `null` when the period holds no reading.
    metrics: Option<ConsensusMetrics>,
    episodes: Option<EpisodeReport>,
    agp: Option<AmbulatoryGlucoseProfile>,
}

fn parse_offset(text: Option<&str>) -> Result<FixedOffset, ApiError> {
    let Some(text) = text else {
        return FixedOffset::east_opt(0).ok_or_else(|| ApiError::Internal("UTC offset".into()));
    };
    let invalid = || ApiError::invalid("utc_offset", "expected an offset such as +01:00 or -05:30");
    let (sign, rest) = match text.as_bytes().first() {
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

/// The median interval between consecutive readings, within 1 to 15 minutes; five
/// minutes when it cannot be told.
fn sensor_interval(readings: &[GlucoseReading]) -> i64 {
    let mut intervals: Vec<i64> = readings
        .windows(2)
        .map(|pair| pair[1].timestamp - pair[0].timestamp)
        .filter(|interval| *interval > 0)
        .collect();
    if intervals.is_empty() {
        return FIVE_MINUTES;
    }
    intervals.sort_unstable();
    intervals[intervals.len() / 2].clamp(60, 900)
}

pub(crate) async fn cgm_report(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient_id): Path<String>,
    Params(params): Params<CgmReportParams>,
) -> Result<Json<CgmReportBody>, ApiError> {
    let patient_id: PatientId = parse_id("patient_id", &patient_id)?;
    let (from, to) = time_window(
        params.from.as_deref(),
        params.to.as_deref(),
        Duration::days(14),
    )?;
    if to - from > Duration::days(MAX_REPORT_DAYS) {
        return Err(ApiError::invalid(
            "from",
            format!("a CGM report covers at most {MAX_REPORT_DAYS} days"),
        ));
    }
    let offset = parse_offset(params.utc_offset.as_deref())?;
    let bin_minutes = params.agp_bin_minutes.unwrap_or(15);
    if bin_minutes == 0 || 1440 % bin_minutes != 0 || bin_minutes > 60 {
        return Err(ApiError::invalid(
            "agp_bin_minutes",
            "a divisor of 1440 from 1 to 60, e.g. 5 or 15",
        ));
    }
    let access = authorize_patient(
        &state,
        &caller,
        patient_id,
        "cgm_report.read",
        Some(format!("from {from} to {to}")),
    )
    .await?;
    let mut readings = Vec::new();
    let mut after = None;
    loop {
        let page = state
            .store
            .observations(ObservationQuery {
                patient_id: access.patient_id(),
                code: ObservationCode::GlucoseCgm,
                from,
                to,
                after,
                limit: 10_000,
            })
            .await?;
        let local = i64::from(offset.local_minus_utc());
        readings.extend(page.observations.iter().map(|observation| {
            GlucoseReading::new(observation.effective.timestamp() + local, observation.value)
        }));
        if readings.len() > MAX_REPORT_READINGS {
            return Err(ApiError::invalid(
                "from",
                "the period holds too many readings for one report; shorten it",
            ));
        }
        match page.next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    let count = readings.len();
    let interval = sensor_interval(&readings);
    let internal = |error: wardline_analytics::AnalyticsError| {
        ApiError::Internal(format!("CGM report: {error}"))
    };
    let series = GlucoseSeries::new(readings).map_err(internal)?;
    let (metrics, episodes, agp) = if series.is_empty() {
        (None, None, None)
    } else {
        (
            Some(consensus_metrics(&series, interval).map_err(internal)?),
            Some(glucose_episodes(&series, interval).map_err(internal)?),
            Some(ambulatory_glucose_profile(&series, bin_minutes).map_err(internal)?),
        )
    };
    Ok(Json(CgmReportBody {
        patient_id: access.patient_id(),
        from,
        to,
        utc_offset: offset.to_string(),
        clock: "seconds since 1970-01-01T00:00:00 on the patient's clock (UTC shifted by utc_offset)",
        sensor_interval_s: interval,
        readings: count,
        metrics,
        episodes,
        agp,
    }))
}

#[derive(Deserialize)]
pub(crate) struct RangeParams {
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
}

impl RangeParams {
    fn window(&self) -> Result<(DateTime<Utc>, DateTime<Utc>, u32), ApiError> {
        let (from, to) = time_window(
            self.from.as_deref(),
            self.to.as_deref(),
            Duration::hours(24),
        )?;
        let limit = self.limit.unwrap_or(1000);
        if !(1..=10_000).contains(&limit) {
            return Err(ApiError::invalid("limit", "1 to 10000"));
        }
        Ok((from, to, limit))
    }
}

pub(crate) async fn rhythm_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient_id): Path<String>,
    Params(params): Params<RangeParams>,
) -> Result<Json<Vec<RhythmEventRecord>>, ApiError> {
    let patient_id: PatientId = parse_id("patient_id", &patient_id)?;
    let (from, to, limit) = params.window()?;
    let access = authorize_patient(
        &state,
        &caller,
        patient_id,
        "rhythm_events.read",
        Some(format!("from {from} to {to}")),
    )
    .await?;
    Ok(Json(
        state
            .store
            .rhythm_events(RhythmEventQuery {
                patient_id: access.patient_id(),
                from,
                to,
                limit,
            })
            .await?,
    ))
}

pub(crate) async fn news2_scores(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient_id): Path<String>,
    Params(params): Params<RangeParams>,
) -> Result<Json<Vec<News2Record>>, ApiError> {
    let patient_id: PatientId = parse_id("patient_id", &patient_id)?;
    let (from, to, limit) = params.window()?;
    let access = authorize_patient(
        &state,
        &caller,
        patient_id,
        "news2.read",
        Some(format!("from {from} to {to}")),
    )
    .await?;
    Ok(Json(
        state
            .store
            .news2_scores(News2Query {
                patient_id: access.patient_id(),
                from,
                to,
                limit,
            })
            .await?,
    ))
}

pub(crate) async fn latest_news2(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient_id): Path<String>,
) -> Result<Json<News2Record>, ApiError> {
    let patient_id: PatientId = parse_id("patient_id", &patient_id)?;
    let access = authorize_patient(&state, &caller, patient_id, "news2.read_latest", None).await?;
    state
        .store
        .latest_news2(access.patient_id())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("NEWS2 result for this patient".into()))
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
