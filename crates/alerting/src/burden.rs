//! Alarm burden: what a care plan would have raised over a recorded CGM trace, next to
//! naive thresholds that alarm on every reading out of range, and whether the plan's
//! duration, hysteresis and de-duplication cost any level 2 hypoglycaemia.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use wardline_analytics::cgm::{FIVE_MINUTES, GlucoseSeries, glucose_episodes};
use wardline_analytics::forecast::{ForecastMethod, Forecaster};
use wardline_domain::{DeviceId, DeviceKind, ObservationCode};

use crate::care_plan::CarePlan;
use crate::error::{AlertingError, Result};
use crate::monitor::{AlarmSignal, ForecastInput, ObservedValue, PatientMonitor};
use crate::rule::{AlarmKind, Direction, RuleId, RuleKind};

/// The naive rule: an alarm for every reading below this...
pub const NAIVE_LOW_MG_DL: f64 = 70.0;
/// ...or above this.
pub const NAIVE_HIGH_MG_DL: f64 = 250.0;

/// A level 2 hypoglycaemia episode the care plan did not alarm on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissedEpisode {
    /// Seconds since 1970 on the trace's clock, as in `wardline_analytics::cgm`.
    pub start: i64,
    pub end: i64,
    pub lowest_mg_dl: f64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurdenReport {
    /// Valid readings x 5 min: wear time, not first-to-last span (traces have gaps of
    /// months between sensor sessions).
    pub monitored_days: f64,
    pub naive_alarms: usize,
    /// Physiological raises of the care plan; every raise counts, as if nobody had
    /// acknowledged anything, so this is the most the care team could be disturbed.
    pub care_plan_alarms: usize,
    /// Technical raises (device silence) of the care plan, counted apart: the naive rule
    /// has no notion of them.
    pub care_plan_technical_alarms: usize,
    /// Raises per rule.
    pub by_rule: BTreeMap<RuleId, usize>,
    /// Level 2 hypoglycaemia episodes (< 54 mg/dL for >= 15 min, consensus definition).
    pub level2_episodes: usize,
    pub level2_caught_by_naive: usize,
    /// Caught by the naive rule but not alarmed by the care plan during the episode.
    pub level2_missed: Vec<MissedEpisode>,
}

impl BurdenReport {
    pub fn naive_per_day(&self) -> f64 {
        per_day(self.naive_alarms, self.monitored_days)
    }

    pub fn care_plan_per_day(&self) -> f64 {
        per_day(self.care_plan_alarms, self.monitored_days)
    }
}

fn per_day(count: usize, days: f64) -> f64 {
    if days > 0.0 { count as f64 / days } else { 0.0 }
}

/// Alarms of the naive rule over the trace.
pub fn naive_alarm_count(series: &GlucoseSeries) -> usize {
    series
        .valid()
        .filter(|(_, g)| *g < NAIVE_LOW_MG_DL || *g > NAIVE_HIGH_MG_DL)
        .count()
}

fn time(timestamp: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp(timestamp, 0).ok_or_else(|| AlertingError::Invalid {
        what: "CGM trace".into(),
        reason: format!("timestamp {timestamp} is out of range"),
    })
}

/// Replays the trace through `plan` (its CGM rules see the readings, its predicted-low
/// rule Nightscout's AR2 forecast, its silence rules the gaps) with timer ticks where
/// they fall due, and compares with the naive rule.
pub fn replay_cgm(series: &GlucoseSeries, plan: &CarePlan) -> Result<BurdenReport> {
    let low_rules: Vec<&RuleId> = plan
        .rules
        .iter()
        .filter(|rule| {
            matches!(&rule.kind, RuleKind::Threshold(t)
                if t.code == ObservationCode::GlucoseCgm && t.direction == Direction::Below)
        })
        .map(|rule| &rule.id)
        .collect();
    let kinds: BTreeMap<&RuleId, AlarmKind> = plan
        .rules
        .iter()
        .map(|rule| (&rule.id, rule.alarm_kind()))
        .collect();

    let mut report = BurdenReport {
        monitored_days: 0.0,
        naive_alarms: naive_alarm_count(series),
        care_plan_alarms: 0,
        care_plan_technical_alarms: 0,
        by_rule: BTreeMap::new(),
        level2_episodes: 0,
        level2_caught_by_naive: 0,
        level2_missed: Vec::new(),
    };
    let Some((first, _)) = series.valid().next() else {
        return Ok(report);
    };
    let device = DeviceId::parse("cgm-replay").map_err(|e| AlertingError::Invalid {
        what: "replay device".into(),
        reason: e.to_string(),
    })?;
    let mut monitor = PatientMonitor::new(plan.clone(), time(first)?)?;
    monitor.attach_device(device.clone(), DeviceKind::Cgm);
    let mut forecaster = Forecaster::new(ForecastMethod::Ar2);
    // Low-glucose alarm intervals as (raised, cleared) timestamps.
    let mut low_since: BTreeMap<RuleId, i64> = BTreeMap::new();
    let mut low_intervals: Vec<(i64, i64)> = Vec::new();
    let mut valid = 0usize;

    let mut record = |signals: Vec<AlarmSignal>, report: &mut BurdenReport| {
        for signal in signals {
            match signal {
                AlarmSignal::Raise { rule_id, at, .. } => {
                    match kinds.get(&rule_id) {
                        Some(AlarmKind::Technical) => report.care_plan_technical_alarms += 1,
                        _ => report.care_plan_alarms += 1,
                    }
                    if low_rules.contains(&&rule_id) {
                        low_since.insert(rule_id.clone(), at.timestamp());
                    }
                    *report.by_rule.entry(rule_id).or_default() += 1;
                }
                AlarmSignal::Clear { condition, at } => {
                    if let Some(since) = low_since.remove(&condition.rule_id) {
                        low_intervals.push((since, at.timestamp()));
                    }
                }
            }
        }
    };

    for (timestamp, glucose) in series.valid() {
        valid += 1;
        let now = time(timestamp)?;
        // Ticks where the monitor's timers fall due before this reading, as a live
        // timer would have fired them.
        while let Some(due) = monitor.next_tick_due().filter(|due| *due < now) {
            let signals = monitor.on_tick(due);
            if signals.is_empty() {
                break;
            }
            record(signals, &mut report);
        }
        let observation = ObservedValue {
            device_id: device.clone(),
            code: ObservationCode::GlucoseCgm,
            value: glucose,
            effective: now,
            received: None,
        };
        record(monitor.on_observation(&observation, now)?, &mut report);
        // Equal timestamps are allowed in a series but not by the forecaster: skip them.
        if forecaster.push(timestamp, glucose).is_ok()
            && let Some(forecast) = forecaster.forecast()
            && let Some(input) = ForecastInput::from_glucose_forecast(&forecast)
        {
            record(monitor.on_forecast(&input, now)?, &mut report);
        }
    }
    let end_of_data = series.valid().last().map_or(first, |(t, _)| t);
    low_intervals.extend(low_since.values().map(|since| (*since, end_of_data)));
    report.monitored_days = (valid as i64 * FIVE_MINUTES) as f64 / 86_400.0;

    let episodes = glucose_episodes(series, FIVE_MINUTES)?.hypo_level2;
    report.level2_episodes = episodes.len();
    for episode in episodes {
        let naive = series
            .valid()
            .any(|(t, g)| (episode.start..=episode.end).contains(&t) && g < NAIVE_LOW_MG_DL);
        if !naive {
            continue;
        }
        report.level2_caught_by_naive += 1;
        let alarmed = low_intervals
            .iter()
            .any(|(raised, cleared)| *raised <= episode.end && *cleared >= episode.start);
        if !alarmed {
            report.level2_missed.push(MissedEpisode {
                start: episode.start,
                end: episode.end,
                lowest_mg_dl: episode.extreme_mg_dl,
            });
        }
    }
    Ok(report)
}
