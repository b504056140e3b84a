//! Hypo- and hyperglycaemia episodes as the 2019 consensus counts them.
//!
//! Battelino 2019, "CGM-based definitions of events": an event begins when
//! glucose is beyond the threshold for at least 15 consecutive minutes and
//! ends when it is back on the other side for at least 15 consecutive minutes.
//!
//! Duration is measured on timestamps, each reading standing for one sensor
//! interval: a run's duration is `last - first + sensor_interval`, so three
//! consecutive 5-minute readings below 70 make a 15-minute event.
//!
//! Gaps: readings without a value are ignored. When two consecutive valid
//! readings are more than `max_gap_secs` apart (default three sensor
//! intervals, i.e. more than two missed readings), nothing is assumed about
//! the gap: an unconfirmed run is dropped and an open episode is closed at its
//! last excursion reading with [`EpisodeEnd::Gap`], since whether it lasted
//! longer is unknown. An episode still open at the end of the data ends with
//! [`EpisodeEnd::EndOfData`].

use serde::Serialize;

use super::GlucoseSeries;
use crate::AnalyticsError;

/// Longest duration or interval a rule may use: longer ones are mistakes.
const MAX_RULE_SECS: i64 = 7 * 86_400;

/// The four consensus event types.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeKind {
    /// Level 1 hypoglycaemia: < 70 mg/dL (includes episodes that reach level 2).
    HypoLevel1,
    /// Level 2 hypoglycaemia: < 54 mg/dL.
    HypoLevel2,
    /// Hyperglycaemia: > 180 mg/dL (includes episodes that reach level 2).
    HyperLevel1,
    /// Level 2 (very high) hyperglycaemia: > 250 mg/dL.
    HyperLevel2,
}

impl EpisodeKind {
    /// The consensus threshold in mg/dL.
    pub fn threshold_mg_dl(self) -> f64 {
        match self {
            Self::HypoLevel1 => 70.0,
            Self::HypoLevel2 => 54.0,
            Self::HyperLevel1 => 180.0,
            Self::HyperLevel2 => 250.0,
        }
    }

    fn is_hypo(self) -> bool {
        matches!(self, Self::HypoLevel1 | Self::HypoLevel2)
    }
}

/// How an episode ended.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeEnd {
    /// Glucose stayed back across the threshold for the minimum duration.
    Recovered,
    /// Data stopped for longer than the allowed gap while in the episode.
    Gap,
    /// The series ended while in the episode.
    EndOfData,
}

/// When an episode starts and ends, and how it is detected.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EpisodeRule {
    /// Which event this rule detects.
    pub kind: EpisodeKind,
    /// Threshold, mg/dL: hypo episodes are strictly below, hyper strictly above.
    pub threshold_mg_dl: f64,
    /// Minimum duration to start and to end an episode (consensus: 15 min).
    pub min_duration_secs: i64,
    /// Time each reading stands for (5 min for Dexcom).
    pub sensor_interval_secs: i64,
    /// Longest interval between valid readings still treated as continuous.
    pub max_gap_secs: i64,
}

impl EpisodeRule {
    /// The consensus rule for `kind` with a given sensor interval.
    pub fn consensus(kind: EpisodeKind, sensor_interval_secs: i64) -> Self {
        Self {
            kind,
            threshold_mg_dl: kind.threshold_mg_dl(),
            min_duration_secs: 15 * 60,
            sensor_interval_secs,
            max_gap_secs: sensor_interval_secs.saturating_mul(3),
        }
    }

    fn is_excursion(&self, glucose: f64) -> bool {
        if self.kind.is_hypo() {
            glucose < self.threshold_mg_dl
        } else {
            glucose > self.threshold_mg_dl
        }
    }

    fn run_lasts(&self, first: i64, last: i64) -> bool {
        last - first + self.sensor_interval_secs >= self.min_duration_secs
    }
}

/// One detected episode.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Episode {
    /// Event type.
    pub kind: EpisodeKind,
    /// Timestamp of the first reading beyond the threshold.
    pub start: i64,
    /// When glucose came back (first reading of the recovery run), or, after a
    /// gap or at the end of data, the last excursion reading plus one interval.
    pub end: i64,
    /// `end - start`, seconds.
    pub duration_secs: i64,
    /// Lowest (hypo) or highest (hyper) glucose during the episode, mg/dL.
    pub extreme_mg_dl: f64,
    /// Readings beyond the threshold during the episode.
    pub readings_beyond: usize,
    /// How it ended.
    pub ended_by: EpisodeEnd,
}

/// All four consensus event types over a series.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpisodeReport {
    /// < 70 mg/dL for >= 15 min.
    pub hypo_level1: Vec<Episode>,
    /// < 54 mg/dL for >= 15 min.
    pub hypo_level2: Vec<Episode>,
    /// > 180 mg/dL for >= 15 min.
    pub hyper_level1: Vec<Episode>,
    /// > 250 mg/dL for >= 15 min.
    pub hyper_level2: Vec<Episode>,
}

/// Detects the four consensus event types.
pub fn glucose_episodes(
    series: &GlucoseSeries,
    sensor_interval_secs: i64,
) -> Result<EpisodeReport, AnalyticsError> {
    let detect =
        |kind| detect_episodes(series, &EpisodeRule::consensus(kind, sensor_interval_secs));
    Ok(EpisodeReport {
        hypo_level1: detect(EpisodeKind::HypoLevel1)?,
        hypo_level2: detect(EpisodeKind::HypoLevel2)?,
        hyper_level1: detect(EpisodeKind::HyperLevel1)?,
        hyper_level2: detect(EpisodeKind::HyperLevel2)?,
    })
}

/// Detects episodes of one kind with a custom rule.
pub fn detect_episodes(
    series: &GlucoseSeries,
    rule: &EpisodeRule,
) -> Result<Vec<Episode>, AnalyticsError> {
    let sane = |secs: i64| (1..=MAX_RULE_SECS).contains(&secs);
    if !sane(rule.sensor_interval_secs) || !sane(rule.max_gap_secs) || !sane(rule.min_duration_secs)
    {
        return Err(AnalyticsError::InvalidSetting(
            "episode durations and intervals must be between 1 s and 7 days",
        ));
    }
    let mut detector = Detector {
        rule,
        state: State::Normal,
        previous: None,
        episodes: Vec::new(),
    };
    for (timestamp, glucose) in series.valid() {
        detector.step(timestamp, glucose);
    }
    detector.close(EpisodeEnd::EndOfData);
    Ok(detector.episodes)
}

/// A run of readings beyond the threshold.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: i64,
    last: i64,
    extreme: f64,
    count: usize,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Normal,
    /// Beyond the threshold, not yet for long enough to count.
    Candidate(Run),
    /// A confirmed episode; `recovering_since` starts the possible recovery run.
    Episode {
        run: Run,
        recovering_since: Option<i64>,
    },
}

#[derive(Debug)]
struct Detector<'a> {
    rule: &'a EpisodeRule,
    state: State,
    previous: Option<i64>,
    episodes: Vec<Episode>,
}

impl Detector<'_> {
    fn step(&mut self, timestamp: i64, glucose: f64) {
        if self
            .previous
            .is_some_and(|p| timestamp - p > self.rule.max_gap_secs)
        {
            self.close(EpisodeEnd::Gap);
        }
        self.previous = Some(timestamp);
        let beyond = self.rule.is_excursion(glucose);
        self.state = match (self.state, beyond) {
            (State::Normal, false) => State::Normal,
            (State::Normal, true) => self.confirm(Run {
                start: timestamp,
                last: timestamp,
                extreme: glucose,
                count: 1,
            }),
            (State::Candidate(run), true) => self.confirm(self.extend(run, timestamp, glucose)),
            (State::Candidate(_), false) => State::Normal,
            (State::Episode { run, .. }, true) => State::Episode {
                run: self.extend(run, timestamp, glucose),
                recovering_since: None,
            },
            (
                State::Episode {
                    run,
                    recovering_since,
                },
                false,
            ) => {
                let since = recovering_since.unwrap_or(timestamp);
                if self.rule.run_lasts(since, timestamp) {
                    self.finish(run, since, EpisodeEnd::Recovered);
                    State::Normal
                } else {
                    State::Episode {
                        run,
                        recovering_since: Some(since),
                    }
                }
            }
        };
    }

    fn extend(&self, run: Run, timestamp: i64, glucose: f64) -> Run {
        let extreme = if self.rule.kind.is_hypo() {
            run.extreme.min(glucose)
        } else {
            run.extreme.max(glucose)
        };
        Run {
            last: timestamp,
            extreme,
            count: run.count + 1,
            ..run
        }
    }

    fn confirm(&self, run: Run) -> State {
        if self.rule.run_lasts(run.start, run.last) {
            State::Episode {
                run,
                recovering_since: None,
            }
        } else {
            State::Candidate(run)
        }
    }

    /// Ends whatever is open because the data stopped (gap or end of series).
    fn close(&mut self, reason: EpisodeEnd) {
        if let State::Episode { run, .. } = self.state {
            self.finish(run, run.last + self.rule.sensor_interval_secs, reason);
        }
        self.state = State::Normal;
    }

    fn finish(&mut self, run: Run, end: i64, ended_by: EpisodeEnd) {
        self.episodes.push(Episode {
            kind: self.rule.kind,
            start: run.start,
            end,
            duration_secs: end - run.start,
            extreme_mg_dl: run.extreme,
            readings_beyond: run.count,
            ended_by,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgm::GlucoseReading;

    fn series(values: &[f64]) -> GlucoseSeries {
        GlucoseSeries::new(
            values
                .iter()
                .enumerate()
                .map(|(i, g)| GlucoseReading::new(i as i64 * 300, *g))
                .collect(),
        )
        .unwrap()
    }

    fn hypos(values: &[f64]) -> Vec<Episode> {
        detect_episodes(
            &series(values),
            &EpisodeRule::consensus(EpisodeKind::HypoLevel1, 300),
        )
        .unwrap()
    }

    #[test]
    fn two_low_readings_are_not_an_episode_three_are() {
        assert!(hypos(&[100.0, 65.0, 60.0, 100.0, 100.0, 100.0]).is_empty());
        let episodes = hypos(&[100.0, 65.0, 60.0, 68.0, 100.0, 100.0, 100.0]);
        assert_eq!(episodes.len(), 1);
        let e = &episodes[0];
        assert_eq!((e.start, e.end, e.extreme_mg_dl), (300, 1200, 60.0));
        assert_eq!(e.ended_by, EpisodeEnd::Recovered);
    }

    #[test]
    fn a_short_recovery_does_not_split_an_episode() {
        let episodes = hypos(&[65.0, 65.0, 65.0, 80.0, 80.0, 65.0, 65.0, 80.0, 80.0, 80.0]);
        assert_eq!(episodes.len(), 1);
        assert_eq!(episodes[0].readings_beyond, 5);
        assert_eq!(episodes[0].end, 7 * 300);
    }

    #[test]
    fn gaps_and_end_of_data_close_episodes() {
        let mut readings: Vec<_> = [65.0, 65.0, 65.0]
            .iter()
            .enumerate()
            .map(|(i, g)| GlucoseReading::new(i as i64 * 300, *g))
            .collect();
        readings.push(GlucoseReading::new(10_000, 65.0));
        readings.push(GlucoseReading::new(10_300, 65.0));
        let s = GlucoseSeries::new(readings).unwrap();
        let episodes =
            detect_episodes(&s, &EpisodeRule::consensus(EpisodeKind::HypoLevel1, 300)).unwrap();
        assert_eq!(episodes.len(), 1);
        assert_eq!(episodes[0].ended_by, EpisodeEnd::Gap);
        assert_eq!(episodes[0].end, 900);

        let open = hypos(&[65.0, 65.0, 65.0, 65.0]);
        assert_eq!(open[0].ended_by, EpisodeEnd::EndOfData);
    }

    #[test]
    fn hyper_episodes_use_strictly_above() {
        let s = series(&[250.0, 251.0, 260.0, 255.0, 250.0, 240.0, 200.0]);
        let report = glucose_episodes(&s, 300).unwrap();
        assert_eq!(report.hyper_level2.len(), 1);
        assert_eq!(report.hyper_level2[0].extreme_mg_dl, 260.0);
        assert_eq!(report.hyper_level1.len(), 1);
        assert_eq!(report.hyper_level1[0].ended_by, EpisodeEnd::EndOfData);
        assert!(report.hypo_level1.is_empty() && report.hypo_level2.is_empty());
    }
}
