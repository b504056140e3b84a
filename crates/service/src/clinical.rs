//! Health data and what Wardline derives from it: observations, waveforms, rhythm
//! events, NEWS2 and the CGM report. Every read goes through the access check first.

use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde::Serialize;
use wardline_analytics::cgm::{
    AmbulatoryGlucoseProfile, ConsensusMetrics, EpisodeReport, FIVE_MINUTES, GlucoseReading,
    GlucoseSeries, ambulatory_glucose_profile, consensus_metrics, glucose_episodes,
};
use wardline_domain::sharing::ShareCategory;
use wardline_domain::{Observation, ObservationCode, PatientId, Signal};
use wardline_store::{
    News2Query, News2Record, ObservationBucket, ObservationQuery, ObservationSummaryQuery,
    PageCursor, RhythmEventQuery, RhythmEventRecord, WaveformQuery,
};

use crate::PatientAccess;
use crate::Wardline;
use crate::actor::Actor;
use crate::error::Error;

/// A time window `[from, to)` as asked; a missing end is now (and a little after, for
/// clocks that run ahead), a missing start `default_span` before the end.
pub fn time_window(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    default_span: Duration,
) -> Result<(DateTime<Utc>, DateTime<Utc>), Error> {
    let to = to.unwrap_or_else(|| Utc::now() + Duration::minutes(5));
    let from = from.unwrap_or(to - default_span);
    if from >= to {
        return Err(Error::invalid("from", "must be before `to`"));
    }
    Ok((from, to))
}

/// `[from, to)` as asked, either end optional.
pub type Window = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A page of observations and where the next starts.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct ObservationPageView {
    pub observations: Vec<Observation>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct SummaryView {
    pub code: &'static str,
    pub unit: &'static str,
    pub bucket_secs: i64,
    pub buckets: Vec<ObservationBucket>,
}

/// At most this many buckets per request: more than any screen has pixels across.
const MAX_BUCKETS: i64 = 10_000;

/// One decoded waveform chunk.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct WaveformView {
    pub device_id: String,
    pub seq: i64,
    pub signal: Signal,
    pub sampling_rate_hz: f64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// ADC units per `unit`.
    pub gain: f64,
    /// The ADC value of `origin`.
    pub baseline: i32,
    /// The value at the baseline, in `unit`: 0 for what devices send; an ECG uploaded
    /// as FHIR `SampledData` keeps its origin. A sample is origin + (sample − baseline) /
    /// gain.
    pub origin: f64,
    /// `unit` per ADC unit exactly as stored (FHIR gives an uploaded factor back as
    /// sent); `gain` says the same to the JSON API.
    #[serde(skip)]
    pub factor: f64,
    pub unit: &'static str,
    pub samples: Vec<i32>,
}

/// The consensus CGM report of a period.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct CgmReport {
    pub patient_id: PatientId,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub utc_offset: String,
    /// How `metrics.first`, `metrics.last` and the episodes' `start` and `end` count
    /// time.
    pub clock: &'static str,
    /// The device's reading interval, taken as the median interval between readings.
    pub sensor_interval_s: i64,
    pub readings: usize,
    /// `null` when the period holds no reading.
    pub metrics: Option<ConsensusMetrics>,
    pub episodes: Option<EpisodeReport>,
    pub agp: Option<AmbulatoryGlucoseProfile>,
}

/// The longest period one CGM report covers (the consensus asks for 14 days; 90 days
/// is the usual longest comparison period, and it bounds the work of one request).
const MAX_REPORT_DAYS: i64 = 90;
/// Bounds the readings one report reads: a reading a minute for 90 days, and some.
const MAX_REPORT_READINGS: usize = 150_000;

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

fn check_limit(limit: Option<u32>, default: u32, max: u32) -> Result<u32, Error> {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(Error::invalid("limit", format!("1 to {max}")));
    }
    Ok(limit)
}

/// The share category a waveform signal belongs to.
pub(crate) fn signal_category(signal: Signal) -> ShareCategory {
    match signal {
        Signal::Pleth | Signal::Respiration => ShareCategory::VitalSigns,
        _ => ShareCategory::Ecg,
    }
}

/// Which page of a patient's readings: how many, from where (a cursor an earlier page
/// returned), and in which order.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageRequest<'a> {
    pub limit: Option<u32>,
    pub cursor: Option<&'a str>,
    /// Newest first; oldest first when false.
    pub newest_first: bool,
}

impl Wardline {
    /// [`Wardline::authorize_patient_window`] for a read of one code's readings: the
    /// code's share category, and the code and window in the audit entry.
    pub(crate) async fn authorize_code_window(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        action: &'static str,
        code: ObservationCode,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<(PatientAccess, (DateTime<Utc>, DateTime<Utc>)), Error> {
        self.authorize_patient_window(
            actor,
            patient_id,
            action,
            Some(ShareCategory::of_code(code)),
            (from, to),
            Some(format!("code {} from {from} to {to}", code.loinc())),
        )
        .await
    }

    pub async fn observations(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        code: ObservationCode,
        window: Window,
        page: PageRequest<'_>,
    ) -> Result<ObservationPageView, Error> {
        let (from, to) = time_window(window.0, window.1, Duration::hours(24))?;
        let limit = check_limit(page.limit, 1000, 10_000)?;
        let after = page
            .cursor
            .map(|text| {
                PageCursor::decode(text)
                    .ok_or_else(|| Error::invalid("cursor", "not a cursor this API returned"))
            })
            .transpose()?;
        let (access, (from, to)) = self
            .authorize_code_window(actor, patient_id, "observations.read", code, (from, to))
            .await?;
        let page = self
            .store
            .observations(ObservationQuery {
                patient_id: access.patient_id(),
                code,
                from,
                to,
                after,
                limit,
                newest_first: page.newest_first,
            })
            .await?;
        Ok(ObservationPageView {
            observations: page.observations,
            next_cursor: page.next.map(PageCursor::encode),
        })
    }

    /// Observations of several codes of one patient as one list in time order, paged:
    /// what a FHIR search by category reads. The cursor holds where each code's listing
    /// stands, so that no reading comes twice and none is skipped, readings of different
    /// codes at the same instant included. One access check (and audit entry) per share
    /// category the codes fall in; a category the reader may not see is left out, and
    /// when none may be seen the search is refused.
    pub async fn observations_of_codes(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        codes: &[ObservationCode],
        window: Window,
        page: PageRequest<'_>,
    ) -> Result<ObservationPageView, Error> {
        let (from, to) = time_window(window.0, window.1, Duration::hours(24))?;
        let limit = check_limit(page.limit, 1000, 10_000)?;
        let mut positions = CodePositions::decode(page.cursor, codes)?;
        // One decision per share category.
        let mut categories: Vec<ShareCategory> = codes
            .iter()
            .map(|code| ShareCategory::of_code(*code))
            .collect();
        categories.sort_by_key(|category| category.as_str());
        categories.dedup();
        // Each category the reader may see, with the window they may see it in.
        let mut allowed: Vec<(ShareCategory, PatientAccess, Bounds)> = Vec::new();
        for category in categories {
            let loincs: Vec<&str> = codes
                .iter()
                .filter(|code| ShareCategory::of_code(**code) == category)
                .map(|code| code.loinc())
                .collect();
            match self
                .authorize_patient_window(
                    actor,
                    patient_id,
                    "observations.read",
                    Some(category),
                    (from, to),
                    Some(format!("codes {} from {from} to {to}", loincs.join(","))),
                )
                .await
            {
                Ok((access, window)) => allowed.push((category, access, window)),
                Err(Error::Forbidden) => {}
                Err(other) => return Err(other),
            }
        }
        if allowed.is_empty() {
            return Err(Error::Forbidden);
        }
        let query = |code: ObservationCode, after: Option<PageCursor>, limit: u32| {
            let (_, access, (from, to)) = allowed
                .iter()
                .find(|(category, _, _)| *category == ShareCategory::of_code(code))?;
            Some(ObservationQuery {
                patient_id: access.patient_id(),
                code,
                from: *from,
                to: *to,
                after,
                limit,
                newest_first: page.newest_first,
            })
        };
        // Each code's next `limit` readings: the page's are among them.
        let mut fetched = Vec::new();
        for (index, code) in codes.iter().enumerate() {
            let Some(Position::At(after)) = positions.get(*code) else {
                continue;
            };
            let Some(query) = query(*code, after, limit) else {
                positions.set(*code, Position::End);
                continue;
            };
            let listed = self.store.observations(query).await?;
            fetched.push((index, *code, after, listed));
        }
        let mut merged: Vec<(usize, Observation)> = fetched
            .iter()
            .flat_map(|(index, _, _, listed)| {
                listed
                    .observations
                    .iter()
                    .map(move |observation| (*index, observation.clone()))
            })
            .collect();
        // Stable: each code's readings keep their order, a prefix of each is taken.
        merged.sort_by(|(a_code, a), (b_code, b)| {
            let by_time = a.effective.cmp(&b.effective);
            let by_time = if page.newest_first {
                by_time.reverse()
            } else {
                by_time
            };
            by_time.then(a_code.cmp(b_code))
        });
        merged.truncate(limit as usize);
        for (index, code, after, listed) in fetched {
            let taken = merged.iter().filter(|(of, _)| *of == index).count();
            let next = if taken == listed.observations.len() {
                listed.next
            } else if taken == 0 {
                continue;
            } else {
                // Where the code's listing stands after the readings taken.
                let query = query(code, after, u32::try_from(taken).unwrap_or(u32::MAX))
                    .ok_or(Error::Forbidden)?;
                self.store.observations(query).await?.next
            };
            positions.set(
                code,
                next.map_or(Position::End, |cursor| Position::At(Some(cursor))),
            );
        }
        // Through a share, each category's window was clamped to the share's above.
        Ok(ObservationPageView {
            observations: merged
                .into_iter()
                .map(|(_, observation)| observation)
                .collect(),
            next_cursor: positions.encode(),
        })
    }

    /// One code's observations per time bucket (count, min, max, mean): what a chart of
    /// a month of second-by-second readings draws instead of millions of points.
    pub async fn observation_summary(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        code: ObservationCode,
        window: Window,
        bucket_secs: Option<i64>,
    ) -> Result<SummaryView, Error> {
        let (from, to) = time_window(window.0, window.1, Duration::days(30))?;
        if to - from > Duration::days(366) {
            return Err(Error::invalid("from", "a summary spans at most 366 days"));
        }
        let bucket_secs = bucket_secs.unwrap_or(3600);
        if !(1..=86_400).contains(&bucket_secs) {
            return Err(Error::invalid("bucket_secs", "1 to 86400 seconds"));
        }
        if (to - from).num_seconds() / bucket_secs > MAX_BUCKETS {
            return Err(Error::invalid(
                "bucket_secs",
                format!("too small for the window: at most {MAX_BUCKETS} buckets"),
            ));
        }
        let (access, (from, to)) = self
            .authorize_code_window(actor, patient_id, "observations.summary", code, (from, to))
            .await?;
        let buckets = self
            .store
            .observation_summary(ObservationSummaryQuery {
                patient_id: access.patient_id(),
                code,
                from,
                to,
                bucket: Duration::seconds(bucket_secs),
            })
            .await?;
        Ok(SummaryView {
            code: code.loinc(),
            unit: code.spec().canonical_unit,
            bucket_secs,
            buckets,
        })
    }

    /// How many readings of one code a patient has in the window (a FHIR search with
    /// `_summary=count`): through the one access check, audited, counted by the store
    /// without reading the readings out.
    pub async fn observation_count(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        code: ObservationCode,
        window: Window,
    ) -> Result<u64, Error> {
        let (from, to) = time_window(window.0, window.1, Duration::hours(24))?;
        let (access, (from, to)) = self
            .authorize_code_window(actor, patient_id, "observations.count", code, (from, to))
            .await?;
        if to <= from {
            return Ok(0);
        }
        // One bucket as long as the window: its count is the answer.
        let buckets = self
            .store
            .observation_summary(ObservationSummaryQuery {
                patient_id: access.patient_id(),
                code,
                from,
                to,
                bucket: (to - from).max(Duration::seconds(1)),
            })
            .await?;
        Ok(buckets.iter().map(|bucket| bucket.count).sum())
    }

    pub async fn latest_observations(
        &self,
        actor: &Actor,
        patient_id: PatientId,
    ) -> Result<Vec<Observation>, Error> {
        let access = self
            .authorize_patient(actor, patient_id, "observations.read_latest", None)
            .await?;
        let mut latest = self.store.latest_observations(access.patient_id()).await?;
        latest.retain(|observation| access.shows(observation.code, observation.effective));
        Ok(latest)
    }

    pub async fn waveforms(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        signal: Option<Signal>,
        window: Window,
        limit: Option<u32>,
    ) -> Result<Vec<WaveformView>, Error> {
        let (from, to) = time_window(window.0, window.1, Duration::minutes(1))?;
        if to - from > Duration::hours(1) {
            return Err(Error::invalid(
                "to",
                "a waveform window spans at most one hour",
            ));
        }
        let (access, (from, to)) = self
            .authorize_patient_window(
                actor,
                patient_id,
                "waveforms.read",
                signal.map(signal_category),
                (from, to),
                Some(format!("from {from} to {to}")),
            )
            .await?;
        let chunks = self
            .store
            .waveforms(WaveformQuery {
                patient_id: access.patient_id(),
                signal,
                from,
                to,
                limit: limit.unwrap_or(120).clamp(1, 1000),
            })
            .await?;
        let mut views = Vec::with_capacity(chunks.len());
        // Through a share, only the signals of its categories (ECG leads for `ecg`,
        // plethysmography and respiration for `vital_signs`).
        for chunk in chunks
            .into_iter()
            .filter(|chunk| access.allows(signal_category(chunk.signal)))
        {
            let decoded = wardline_waveform::decode(&chunk.encoded).map_err(|error| {
                Error::Internal(format!("stored waveform chunk does not decode: {error}"))
            })?;
            views.push(WaveformView {
                device_id: chunk.device_id.to_string(),
                seq: chunk.seq,
                signal: chunk.signal,
                sampling_rate_hz: chunk.sampling_rate_hz,
                start: chunk.start,
                end: chunk.end,
                gain: decoded.header.gain(),
                baseline: decoded.header.baseline,
                origin: decoded.header.origin,
                factor: decoded.header.scale.factor(),
                unit: chunk.signal.physical_unit(),
                samples: decoded.samples,
            });
        }
        Ok(views)
    }

    pub async fn rhythm_events(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        window: Window,
        limit: Option<u32>,
    ) -> Result<Vec<RhythmEventRecord>, Error> {
        let (from, to) = time_window(window.0, window.1, Duration::hours(24))?;
        let limit = check_limit(limit, 1000, 10_000)?;
        let (access, (from, to)) = self
            .authorize_patient_window(
                actor,
                patient_id,
                "rhythm_events.read",
                None,
                (from, to),
                Some(format!("from {from} to {to}")),
            )
            .await?;
        Ok(self
            .store
            .rhythm_events(RhythmEventQuery {
                patient_id: access.patient_id(),
                from,
                to,
                limit,
            })
            .await?)
    }

    pub async fn news2_scores(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        window: Window,
        limit: Option<u32>,
    ) -> Result<Vec<News2Record>, Error> {
        let (from, to) = time_window(window.0, window.1, Duration::hours(24))?;
        let limit = check_limit(limit, 1000, 10_000)?;
        self.news2_page(actor, patient_id, (from, to), limit, false)
            .await
    }

    /// The newest `max` NEWS2 results of a patient, newest first, in the window the
    /// actor may read.
    pub async fn newest_news2(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        max: u32,
    ) -> Result<Vec<News2Record>, Error> {
        let window = (
            wardline_domain::nightscout::earliest(),
            Utc::now() + Duration::minutes(5),
        );
        self.news2_page(actor, patient_id, window, max.clamp(1, 10_000), true)
            .await
    }

    /// NEWS2 results in `[from, to)` as far as the actor may read them, audited.
    async fn news2_page(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        limit: u32,
        newest_first: bool,
    ) -> Result<Vec<News2Record>, Error> {
        let (access, (from, to)) = self
            .authorize_patient_window(
                actor,
                patient_id,
                "news2.read",
                None,
                (from, to),
                Some(format!("from {from} to {to}")),
            )
            .await?;
        Ok(self
            .store
            .news2_scores(News2Query {
                patient_id: access.patient_id(),
                from,
                to,
                limit,
                newest_first,
            })
            .await?)
    }

    pub async fn latest_news2(
        &self,
        actor: &Actor,
        patient_id: PatientId,
    ) -> Result<News2Record, Error> {
        let access = self
            .authorize_patient(actor, patient_id, "news2.read_latest", None)
            .await?;
        self.store
            .latest_news2(access.patient_id())
            .await?
            // Through a share, a score from outside its window is not shown.
            .filter(|score| access.in_window(score.time))
            .ok_or_else(|| Error::NotFound("NEWS2 result for this patient".into()))
    }

    /// The CGM consensus report (time in ranges, GMI, episodes, AGP) of a period.
    pub async fn cgm_report(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        window: Window,
        offset: FixedOffset,
        agp_bin_minutes: Option<u32>,
    ) -> Result<CgmReport, Error> {
        let (from, to) = time_window(window.0, window.1, Duration::days(14))?;
        if to - from > Duration::days(MAX_REPORT_DAYS) {
            return Err(Error::invalid(
                "from",
                format!("a CGM report covers at most {MAX_REPORT_DAYS} days"),
            ));
        }
        let bin_minutes = agp_bin_minutes.unwrap_or(15);
        if bin_minutes == 0 || 1440 % bin_minutes != 0 || bin_minutes > 60 {
            return Err(Error::invalid(
                "agp_bin_minutes",
                "a divisor of 1440 from 1 to 60, e.g. 5 or 15",
            ));
        }
        let (access, (from, to)) = self
            .authorize_patient_window(
                actor,
                patient_id,
                "cgm_report.read",
                None,
                (from, to),
                Some(format!("from {from} to {to}")),
            )
            .await?;
        let mut readings = Vec::new();
        let mut after = None;
        let local = i64::from(offset.local_minus_utc());
        loop {
            let page = self
                .store
                .observations(ObservationQuery {
                    patient_id: access.patient_id(),
                    code: ObservationCode::GlucoseCgm,
                    from,
                    to,
                    after,
                    limit: 10_000,
                    newest_first: false,
                })
                .await?;
            readings.extend(page.observations.iter().map(|observation| {
                GlucoseReading::new(observation.effective.timestamp() + local, observation.value)
            }));
            if readings.len() > MAX_REPORT_READINGS {
                return Err(Error::invalid(
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
            Error::Internal(format!("CGM report: {error}"))
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
        Ok(CgmReport {
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
        })
    }

    /// The patient whose live stream the actor opens (audited), with the access: through
    /// a share, the stream carries only what [`PatientAccess::shows`].
    pub async fn open_patient_stream(
        &self,
        actor: &Actor,
        patient_id: PatientId,
    ) -> Result<Vec<PatientAccess>, Error> {
        Ok(vec![
            self.authorize_patient(actor, patient_id, "observations.stream", None)
                .await?,
        ])
    }

    /// Every patient whose live data the actor may watch on one stream (each audited).
    /// The set is fixed when the stream opens; a screen re-reads after a reconnect.
    pub async fn open_ward_stream(&self, actor: &Actor) -> Result<Vec<PatientAccess>, Error> {
        self.authorize_own_patients(actor, "observations.stream_ward")
            .await
    }
}

/// A closed-open time window, both ends known.
type Bounds = (DateTime<Utc>, DateTime<Utc>);

/// Where a listing of several codes stands, code by code.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Position {
    /// After this reading (`None`: from the start).
    At(Option<PageCursor>),
    End,
}

/// Each code's position, as a cursor: `loinc:effective.key` or `loinc:end`, joined by
/// `,`, for the codes that have started.
struct CodePositions(Vec<(ObservationCode, Position)>);

impl CodePositions {
    fn decode(text: Option<&str>, codes: &[ObservationCode]) -> Result<Self, Error> {
        let mut positions: Vec<(ObservationCode, Position)> = codes
            .iter()
            .map(|code| (*code, Position::At(None)))
            .collect();
        let Some(text) = text else {
            return Ok(Self(positions));
        };
        let bad = || Error::invalid("cursor", "not a cursor this API returned");
        for part in text.split(',') {
            let (loinc, at) = part.split_once(':').ok_or_else(bad)?;
            let slot = positions
                .iter_mut()
                .find(|(code, _)| code.loinc() == loinc)
                .ok_or_else(bad)?;
            slot.1 = if at == "end" {
                Position::End
            } else {
                Position::At(Some(PageCursor::decode(at).ok_or_else(bad)?))
            };
        }
        Ok(Self(positions))
    }

    fn get(&self, code: ObservationCode) -> Option<Position> {
        self.0
            .iter()
            .find(|(known, _)| *known == code)
            .map(|(_, position)| *position)
    }

    fn set(&mut self, code: ObservationCode, position: Position) {
        if let Some(slot) = self.0.iter_mut().find(|(known, _)| *known == code) {
            slot.1 = position;
        }
    }

    /// `None` when every code's listing has ended.
    fn encode(&self) -> Option<String> {
        if self
            .0
            .iter()
            .all(|(_, position)| *position == Position::End)
        {
            return None;
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .filter_map(|(code, position)| match position {
                Position::At(None) => None,
                Position::At(Some(cursor)) => Some(format!("{}:{}", code.loinc(), cursor.encode())),
                Position::End => Some(format!("{}:end", code.loinc())),
            })
            .collect();
        Some(parts.join(","))
    }
}
