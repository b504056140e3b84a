//! The per-patient evaluator: inputs in, alarm signals out.
//!
//! A [`PatientMonitor`] holds, per rule of the patient's care plan, just enough state to
//! decide whether the rule's condition is present: it emits [`AlarmSignal::Raise`] when
//! a condition starts and [`AlarmSignal::Clear`] when it ends, never twice in a row for
//! the same condition, so a persisting condition produces one alarm, not a storm.
//! Durations are measured on the readings' own times (a gateway may forward an hour of
//! readings at once); device silence is measured on `now`, the time the caller passes in,
//! because what matters is that *we* have heard nothing.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use wardline_analytics::news2::News2;
use wardline_domain::{DeviceId, DeviceKind, Observation, ObservationCode, PatientId};

use crate::care_plan::CarePlan;
use crate::codes::{same_quantity, usual_device_kind};
use crate::error::{AlertingError, Result};
use crate::rule::{
    AlarmKind, DeviceSelector, DeviceStatusCondition, Direction, News2Band, Priority, RhythmKind,
    Rule, RuleId, RuleKind, duration_words, number,
};

/// An alarm condition: one per patient and rule, whatever the rule's version.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConditionKey {
    pub patient_id: PatientId,
    pub rule_id: RuleId,
}

/// What the evaluator tells the alarm layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
pub enum AlarmSignal {
    Raise {
        condition: ConditionKey,
        priority: Priority,
        kind: AlarmKind,
        message: String,
        rule_id: RuleId,
        care_plan_version: u32,
        /// Copied from the rule so the alarm knows whether a clear resolves it.
        resolve_on_clear: bool,
        at: DateTime<Utc>,
    },
    Clear {
        condition: ConditionKey,
        at: DateTime<Utc>,
    },
}

impl AlarmSignal {
    pub fn condition(&self) -> &ConditionKey {
        match self {
            AlarmSignal::Raise { condition, .. } | AlarmSignal::Clear { condition, .. } => {
                condition
            }
        }
    }

    pub fn is_raise(&self) -> bool {
        matches!(self, AlarmSignal::Raise { .. })
    }
}

/// A reading as the evaluator needs it; built from a stored [`Observation`] or directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedValue {
    pub device_id: DeviceId,
    #[serde(with = "crate::codes")]
    pub code: ObservationCode,
    /// In the code's canonical unit.
    pub value: f64,
    pub effective: DateTime<Utc>,
    /// When Wardline received it, for a stored reading: a reading that arrived long
    /// after it was measured is back-filled (see [`BACKFILLED_AFTER_SECS`]).
    #[serde(default)]
    pub received: Option<DateTime<Utc>>,
}

impl From<&Observation> for ObservedValue {
    fn from(observation: &Observation) -> Self {
        Self {
            device_id: observation.device_id.clone(),
            code: observation.code,
            value: observation.value,
            effective: observation.effective,
            received: Some(observation.received),
        }
    }
}

/// A reading that reached Wardline more than this long after it was measured is
/// back-filled: an imported CGM export, an uploader or a gateway catching up after more
/// than a day. It stays in the record, but the rules do not evaluate it and its device
/// does not count as heard: an alarm now for an excursion days or years past calls the
/// care team to something that is over, an import of last month would open hundreds, and
/// old data says nothing about whether the sensor works now (CGM systems do not alert on
/// back-filled data either). Readings of the last day are evaluated however late they
/// came, so a device whose clock is hours behind (a missed change to summer time) still
/// raises its alarms.
pub const BACKFILLED_AFTER_SECS: i64 = 24 * 60 * 60;

/// A rhythm event from the ECG analysis, in wall-clock time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RhythmObservation {
    pub device_id: DeviceId,
    pub rhythm: RhythmKind,
    pub onset: DateTime<Utc>,
    /// `None` while the event is still going on.
    pub end: Option<DateTime<Utc>>,
}

impl RhythmObservation {
    /// Converts an event of `wardline_ecg` (sample indices) given when sample 0 was taken.
    pub fn from_ecg(
        event: &wardline_ecg::RhythmEvent,
        device_id: DeviceId,
        stream_start: DateTime<Utc>,
        sampling_rate_hz: f64,
    ) -> Self {
        let at = |sample: u64| {
            let micros = (sample as f64 / sampling_rate_hz * 1e6).round();
            stream_start + TimeDelta::microseconds(micros as i64)
        };
        Self {
            device_id,
            rhythm: event.kind,
            onset: at(event.onset),
            end: Some(at(event.end)),
        }
    }
}

/// One forecast point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ForecastPoint {
    pub at: DateTime<Utc>,
    pub value: f64,
}

/// A forecast made by the caller (e.g. `wardline_analytics::forecast`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastInput {
    #[serde(with = "crate::codes")]
    pub code: ObservationCode,
    pub issued_at: DateTime<Utc>,
    pub points: Vec<ForecastPoint>,
}

impl ForecastInput {
    /// A CGM forecast of `wardline_analytics`, whose timestamps are seconds since 1970
    /// (see `wardline_analytics::cgm`). `None` for a timestamp chrono cannot represent.
    pub fn from_glucose_forecast(
        forecast: &wardline_analytics::forecast::Forecast,
    ) -> Option<Self> {
        let step = wardline_analytics::forecast::STEP_SECS;
        let points = forecast
            .points_mg_dl
            .iter()
            .zip(1..)
            .map(|(value, k)| {
                Some(ForecastPoint {
                    at: DateTime::from_timestamp(forecast.issued_at + step * k, 0)?,
                    value: *value,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            code: ObservationCode::GlucoseCgm,
            issued_at: DateTime::from_timestamp(forecast.issued_at, 0)?,
            points,
        })
    }
}

/// What a device says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceStatusReport {
    pub device_id: DeviceId,
    pub at: DateTime<Utc>,
    pub battery_percent: Option<f64>,
    /// The device's fault description, `None` when it reports none.
    pub fault: Option<String>,
}

/// A run of excursion readings with a gap longer than this is two runs: nothing is
/// assumed about data we never saw (three missed CGM readings, as in
/// `wardline_analytics::cgm` episodes).
const RUN_MAX_GAP_SECS: i64 = 15 * 60;
/// Devices remembered per patient; beyond it the one heard from least recently goes.
const MAX_DEVICES: usize = 64;
/// Readings kept per rate rule whatever its window, so a chatty device cannot grow state.
const MAX_RATE_READINGS: usize = 256;
/// A rate rule keeps its readings about a window's 64th apart: the rate is measured from
/// the oldest reading kept in the window, which is then within a slot of the oldest
/// reading there was, and a device that reports every second is measured over the whole
/// window, not over its last 256 seconds.
const RATE_SLOTS_PER_WINDOW: i32 = 64;

/// Where a reading stands relative to a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Beyond,
    /// Inside the hysteresis band, or nothing can be said.
    Band,
    Recovered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transition {
    Raise,
    Clear,
}

/// Condition present or not, with the pending excursion that has not lasted long enough.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Tracker {
    active: bool,
    /// First reading of the excursion still waiting for its minimum duration.
    pending_since: Option<DateTime<Utc>>,
    last_input: Option<DateTime<Utc>>,
}

impl Tracker {
    fn step(
        &mut self,
        at: DateTime<Utc>,
        level: Level,
        min_duration_secs: i64,
    ) -> Option<Transition> {
        if let Some(last) = self.last_input {
            // A late reading belongs to a past the tracker has moved beyond.
            if at < last {
                return None;
            }
            if at - last > TimeDelta::seconds(RUN_MAX_GAP_SECS) {
                self.pending_since = None;
            }
        }
        self.last_input = Some(at);
        match level {
            Level::Beyond if self.active => None,
            Level::Beyond => {
                let since = *self.pending_since.get_or_insert(at);
                if at - since >= TimeDelta::seconds(min_duration_secs) {
                    self.active = true;
                    self.pending_since = None;
                    Some(Transition::Raise)
                } else {
                    None
                }
            }
            Level::Band => {
                if !self.active {
                    self.pending_since = None;
                }
                None
            }
            Level::Recovered => {
                self.pending_since = None;
                if self.active {
                    self.active = false;
                    Some(Transition::Clear)
                } else {
                    None
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum RuleState {
    Level {
        tracker: Tracker,
    },
    Rate {
        tracker: Tracker,
        readings: VecDeque<(DateTime<Utc>, f64)>,
    },
    Rhythm {
        active: bool,
        ongoing: bool,
        quiet_since: Option<DateTime<Utc>>,
    },
    Silence {
        active: bool,
        watching_since: DateTime<Utc>,
    },
    Status {
        devices: BTreeSet<DeviceId>,
    },
}

impl RuleState {
    fn fresh(rule: &Rule, now: DateTime<Utc>) -> Self {
        match rule.kind {
            RuleKind::Threshold(_) | RuleKind::PredictedCrossing(_) | RuleKind::News2(_) => {
                RuleState::Level {
                    tracker: Tracker::default(),
                }
            }
            RuleKind::RateOfChange(_) => RuleState::Rate {
                tracker: Tracker::default(),
                readings: VecDeque::new(),
            },
            RuleKind::Rhythm(_) => RuleState::Rhythm {
                active: false,
                ongoing: false,
                quiet_since: None,
            },
            RuleKind::DeviceSilence(_) => RuleState::Silence {
                active: false,
                watching_since: now,
            },
            RuleKind::DeviceStatus(_) => RuleState::Status {
                devices: BTreeSet::new(),
            },
        }
    }

    fn active(&self) -> bool {
        match self {
            RuleState::Level { tracker } | RuleState::Rate { tracker, .. } => tracker.active,
            RuleState::Rhythm { active, .. } | RuleState::Silence { active, .. } => *active,
            RuleState::Status { devices } => !devices.is_empty(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DeviceSeen {
    kind: Option<DeviceKind>,
    last_seen: Option<DateTime<Utc>>,
}

/// The evaluator of one patient's care plan. Serialisable, so that it survives a
/// restart, and bounded: its size depends on the plan, not on how long it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientMonitor {
    plan: CarePlan,
    devices: BTreeMap<DeviceId, DeviceSeen>,
    states: BTreeMap<RuleId, RuleState>,
}

impl PatientMonitor {
    /// Starts watching with `plan`; device-silence rules count from `now`.
    pub fn new(plan: CarePlan, now: DateTime<Utc>) -> Result<Self> {
        plan.validate()?;
        let states = plan
            .rules
            .iter()
            .map(|rule| (rule.id.clone(), RuleState::fresh(rule, now)))
            .collect();
        Ok(Self {
            plan,
            devices: BTreeMap::new(),
            states,
        })
    }

    pub fn care_plan(&self) -> &CarePlan {
        &self.plan
    }

    pub fn patient_id(&self) -> PatientId {
        self.plan.patient_id
    }

    /// Rules whose condition is present now.
    pub fn active_conditions(&self) -> Vec<RuleId> {
        self.states
            .iter()
            .filter(|(_, state)| state.active())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Tells the monitor what kind of device an id is, for rules that select by kind.
    pub fn attach_device(&mut self, device_id: DeviceId, kind: DeviceKind) {
        self.remember_device(&device_id, Some(kind), None, None);
    }

    /// Switches to a new version of the plan. Unchanged rules keep their state; an
    /// edited or removed rule's condition is cleared and its evaluation starts afresh,
    /// because its old state (a pending run, an active alarm) was judged by other limits.
    pub fn update_care_plan(
        &mut self,
        plan: CarePlan,
        now: DateTime<Utc>,
    ) -> Result<Vec<AlarmSignal>> {
        if plan.patient_id != self.plan.patient_id {
            return Err(AlertingError::WrongPatient {
                expected: self.plan.patient_id.to_string(),
                got: plan.patient_id.to_string(),
            });
        }
        plan.validate()?;
        let mut signals = Vec::new();
        let mut states = BTreeMap::new();
        for rule in &plan.rules {
            if self.plan.rule(&rule.id) == Some(rule)
                && let Some(state) = self.states.remove(&rule.id)
            {
                states.insert(rule.id.clone(), state);
            } else {
                states.insert(rule.id.clone(), RuleState::fresh(rule, now));
            }
        }
        // What is left belongs to edited or removed rules.
        for (rule_id, state) in std::mem::take(&mut self.states) {
            if state.active() {
                signals.push(AlarmSignal::Clear {
                    condition: self.condition(&rule_id),
                    at: now,
                });
            }
        }
        self.states = states;
        self.plan = plan;
        Ok(signals)
    }

    /// A device was heard from by other means than a reading (a waveform chunk, a
    /// heartbeat message): it is not silent.
    pub fn on_device_heard(
        &mut self,
        device_id: &DeviceId,
        now: DateTime<Utc>,
    ) -> Vec<AlarmSignal> {
        let mut signals = Vec::new();
        self.heard(device_id, None, now, &mut signals);
        self.timers(now, &mut signals);
        signals
    }

    /// A reading arrived.
    pub fn on_observation(
        &mut self,
        observation: &ObservedValue,
        now: DateTime<Utc>,
    ) -> Result<Vec<AlarmSignal>> {
        if !observation.value.is_finite() {
            return Err(AlertingError::Invalid {
                what: format!(
                    "{:?} reading from {}",
                    observation.code, observation.device_id
                ),
                reason: format!("value {} is not a finite number", observation.value),
            });
        }
        let mut signals = Vec::new();
        let (at, value) = (observation.effective, observation.value);
        let backfilled = observation
            .received
            .is_some_and(|received| received - at > TimeDelta::seconds(BACKFILLED_AFTER_SECS));
        if !backfilled {
            self.heard(
                &observation.device_id,
                usual_device_kind(observation.code),
                now,
                &mut signals,
            );
        }
        let rules = if backfilled {
            &[][..]
        } else {
            &self.plan.rules[..]
        };
        for rule in rules {
            let Some(state) = self.states.get_mut(&rule.id) else {
                continue;
            };
            let transition = match (&rule.kind, state) {
                (RuleKind::Threshold(t), RuleState::Level { tracker })
                    if same_quantity(t.code, observation.code) =>
                {
                    let level = if t.direction.beyond(value, t.value) {
                        Level::Beyond
                    } else if t.direction.recovered(value, t.value, t.hysteresis) {
                        Level::Recovered
                    } else {
                        Level::Band
                    };
                    tracker.step(at, level, t.min_duration_secs).map(|tr| {
                        let unit = t.code.spec().canonical_unit;
                        let held = if t.min_duration_secs > 0 {
                            format!(" for {}", duration_words(t.min_duration_secs))
                        } else {
                            String::new()
                        };
                        (
                            tr,
                            format!(
                                "{}: {} {} {unit}, {} {} {unit}{held}",
                                rule.name,
                                t.code.spec().display,
                                number(value),
                                t.direction.word(),
                                number(t.value)
                            ),
                        )
                    })
                }
                (RuleKind::RateOfChange(r), RuleState::Rate { tracker, readings })
                    if same_quantity(r.code, observation.code) =>
                {
                    if readings.back().is_some_and(|(last, _)| at < *last) {
                        None
                    } else {
                        let window = TimeDelta::seconds(r.window_secs);
                        // The newest reading is kept for now; the one before it goes if
                        // it is less than a slot after the one before that.
                        let slot = window / RATE_SLOTS_PER_WINDOW;
                        let len = readings.len();
                        if len >= 2 && at - readings[len - 2].0 < slot {
                            readings.pop_back();
                        }
                        readings.push_back((at, value));
                        while readings.front().is_some_and(|(t, _)| at - *t > window)
                            || readings.len() > MAX_RATE_READINGS
                        {
                            readings.pop_front();
                        }
                        let rate = readings.front().and_then(|(first, first_value)| {
                            let minutes = (at - *first).num_milliseconds() as f64 / 60_000.0;
                            // Two readings a minute apart give a rate made of noise.
                            (at - *first >= window / 2).then(|| (value - first_value) / minutes)
                        });
                        let toward = |rate: f64| match r.direction {
                            Direction::Below => -rate,
                            Direction::Above => rate,
                        };
                        let guarded = r.only_below.is_some_and(|limit| value >= limit);
                        let level = match rate {
                            _ if guarded => Level::Recovered,
                            Some(rate) if toward(rate) > r.per_minute => Level::Beyond,
                            Some(rate) if toward(rate) < r.per_minute - r.hysteresis_per_minute => {
                                Level::Recovered
                            }
                            _ => Level::Band,
                        };
                        let unit = r.code.spec().canonical_unit;
                        tracker.step(at, level, 0).map(|tr| {
                            (
                                tr,
                                format!(
                                    "{}: {} {} {unit}, changing {} {unit}/min over {}",
                                    rule.name,
                                    r.code.spec().display,
                                    number(value),
                                    number(rate.unwrap_or(0.0)),
                                    duration_words(r.window_secs)
                                ),
                            )
                        })
                    }
                }
                _ => None,
            };
            if let Some((transition, message)) = transition {
                signals.push(self.signal(rule, transition, message, now));
            }
        }
        self.timers(now, &mut signals);
        Ok(signals)
    }

    /// A rhythm event from the ECG analysis.
    pub fn on_rhythm_event(
        &mut self,
        event: &RhythmObservation,
        now: DateTime<Utc>,
    ) -> Result<Vec<AlarmSignal>> {
        let mut signals = Vec::new();
        self.heard(&event.device_id, Some(DeviceKind::Ecg), now, &mut signals);
        for rule in &self.plan.rules {
            let RuleKind::Rhythm(r) = &rule.kind else {
                continue;
            };
            if r.rhythm != event.rhythm {
                continue;
            }
            let Some(RuleState::Rhythm {
                active,
                ongoing,
                quiet_since,
            }) = self.states.get_mut(&rule.id)
            else {
                continue;
            };
            *ongoing = event.end.is_none_or(|end| end > now);
            if let Some(end) = event.end {
                *quiet_since = Some(quiet_since.map_or(end, |quiet| quiet.max(end)));
            }
            if !*active {
                *active = true;
                let message = format!(
                    "{}: {} from {} on {}",
                    rule.name,
                    crate::rule::rhythm_words(event.rhythm),
                    event.onset.format("%H:%M:%S"),
                    event.device_id
                );
                signals.push(self.signal(rule, Transition::Raise, message, now));
            }
        }
        self.timers(now, &mut signals);
        Ok(signals)
    }

    /// A NEWS2 scored (by `wardline_analytics::news2::score_news2`) from observations
    /// made at `effective`. A partial score raises only what its known sub-scores already
    /// prove, and clears only what they rule out.
    pub fn on_news2(
        &mut self,
        score: &News2,
        effective: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<AlarmSignal>> {
        let (total, any_3, complete) = match score {
            News2::Complete(s) => (s.total, s.any_parameter_3, true),
            News2::Partial(p) => (p.minimum_total, p.any_parameter_3, false),
        };
        let mut signals = Vec::new();
        for rule in &self.plan.rules {
            let RuleKind::News2(n) = &rule.kind else {
                continue;
            };
            let Some(RuleState::Level { tracker }) = self.states.get_mut(&rule.id) else {
                continue;
            };
            let level = match (&n.band, complete) {
                (News2Band::Aggregate { min, max }, true) => {
                    if total >= *min && max.is_none_or(|max| total <= max) {
                        Level::Beyond
                    } else {
                        Level::Recovered
                    }
                }
                (News2Band::Aggregate { min, max }, false) => {
                    if max.is_some_and(|max| total > max) {
                        Level::Recovered
                    } else if total >= *min && max.is_none() {
                        Level::Beyond
                    } else {
                        Level::Band
                    }
                }
                (News2Band::SingleParameter3, _) if total >= 5 => Level::Recovered,
                (News2Band::SingleParameter3, _) if any_3 => Level::Beyond,
                (News2Band::SingleParameter3, true) => Level::Recovered,
                (News2Band::SingleParameter3, false) => Level::Band,
            };
            if let Some(transition) = tracker.step(effective, level, 0) {
                let qualifier = if complete { "" } else { "at least " };
                let message = format!("{}: NEWS2 {qualifier}{total}", rule.name);
                signals.push(self.signal(rule, transition, message, now));
            }
        }
        self.timers(now, &mut signals);
        Ok(signals)
    }

    /// A forecast of one code.
    pub fn on_forecast(
        &mut self,
        forecast: &ForecastInput,
        now: DateTime<Utc>,
    ) -> Result<Vec<AlarmSignal>> {
        if let Some(point) = forecast.points.iter().find(|p| !p.value.is_finite()) {
            return Err(AlertingError::Invalid {
                what: "forecast".into(),
                reason: format!("point at {} is not a finite number", point.at),
            });
        }
        let mut signals = Vec::new();
        for rule in &self.plan.rules {
            let RuleKind::PredictedCrossing(p) = &rule.kind else {
                continue;
            };
            if !same_quantity(p.code, forecast.code) {
                continue;
            }
            let Some(RuleState::Level { tracker }) = self.states.get_mut(&rule.id) else {
                continue;
            };
            let horizon = TimeDelta::seconds(p.horizon_secs);
            let points: Vec<_> = forecast
                .points
                .iter()
                .filter(|point| {
                    point.at > forecast.issued_at && point.at - forecast.issued_at <= horizon
                })
                .collect();
            if points.is_empty() {
                continue;
            }
            let crossing = points
                .iter()
                .find(|point| p.direction.beyond(point.value, p.value));
            let level = if crossing.is_some() {
                Level::Beyond
            } else if points
                .iter()
                .all(|point| p.direction.recovered(point.value, p.value, p.hysteresis))
            {
                Level::Recovered
            } else {
                Level::Band
            };
            if let Some(transition) = tracker.step(forecast.issued_at, level, p.min_duration_secs) {
                let unit = p.code.spec().canonical_unit;
                let message = match crossing {
                    Some(point) => format!(
                        "{}: {} forecast {} {unit} at {}",
                        rule.name,
                        p.code.spec().display,
                        number(point.value),
                        point.at.format("%H:%M")
                    ),
                    None => String::new(),
                };
                signals.push(self.signal(rule, transition, message, now));
            }
        }
        self.timers(now, &mut signals);
        Ok(signals)
    }

    /// A device reported its battery or a fault.
    pub fn on_device_status(
        &mut self,
        report: &DeviceStatusReport,
        now: DateTime<Utc>,
    ) -> Result<Vec<AlarmSignal>> {
        if let Some(battery) = report.battery_percent
            && !(0.0..=100.0).contains(&battery)
        {
            return Err(AlertingError::Invalid {
                what: format!("status of {}", report.device_id),
                reason: format!("battery {battery} % is not within 0..=100"),
            });
        }
        let mut signals = Vec::new();
        self.heard(&report.device_id, None, now, &mut signals);
        let device_kind = self.device_kind(&report.device_id);
        for rule in &self.plan.rules {
            let RuleKind::DeviceStatus(s) = &rule.kind else {
                continue;
            };
            if !selects(&s.devices, &report.device_id, device_kind) {
                continue;
            }
            let Some(RuleState::Status { devices }) = self.states.get_mut(&rule.id) else {
                continue;
            };
            let was_active = !devices.is_empty();
            let bad = match s.condition {
                DeviceStatusCondition::LowBattery { below_percent } => {
                    report.battery_percent.and_then(|battery| {
                        if battery < below_percent {
                            Some(true)
                        } else if battery >= below_percent + 5.0 {
                            Some(false)
                        } else {
                            None
                        }
                    })
                }
                DeviceStatusCondition::Fault => Some(report.fault.is_some()),
            };
            match bad {
                Some(true) if devices.len() < MAX_DEVICES => {
                    devices.insert(report.device_id.clone());
                }
                Some(false) => {
                    devices.remove(&report.device_id);
                }
                _ => {}
            }
            let transition = match (was_active, devices.is_empty()) {
                (false, false) => Some(Transition::Raise),
                (true, true) => Some(Transition::Clear),
                _ => None,
            };
            if let Some(transition) = transition {
                let detail = match (&s.condition, &report.fault, report.battery_percent) {
                    (DeviceStatusCondition::Fault, Some(fault), _) => format!("fault {fault:?}"),
                    (_, _, Some(battery)) => format!("battery {} %", number(battery)),
                    _ => String::new(),
                };
                let message = format!("{}: device {} {detail}", rule.name, report.device_id);
                signals.push(self.signal(rule, transition, message, now));
            }
        }
        self.timers(now, &mut signals);
        Ok(signals)
    }

    /// A timer tick: device silence and the end of rhythm conditions depend on time
    /// passing, not on data. Every `on_*` call also runs these checks.
    pub fn on_tick(&mut self, now: DateTime<Utc>) -> Vec<AlarmSignal> {
        let mut signals = Vec::new();
        self.timers(now, &mut signals);
        signals
    }

    /// The earliest time at which [`Self::on_tick`] could emit something, for a caller
    /// that sets a timer rather than ticking every few seconds.
    pub fn next_tick_due(&self) -> Option<DateTime<Utc>> {
        self.plan
            .rules
            .iter()
            .filter_map(|rule| self.deadline(rule))
            .min()
    }

    fn deadline(&self, rule: &Rule) -> Option<DateTime<Utc>> {
        match (&rule.kind, self.states.get(&rule.id)?) {
            (
                RuleKind::DeviceSilence(s),
                RuleState::Silence {
                    active: false,
                    watching_since,
                },
            ) => {
                let heard = self
                    .devices
                    .iter()
                    .filter(|(id, seen)| selects(&s.devices, id, seen.kind))
                    .filter_map(|(_, seen)| seen.last_seen)
                    .max();
                let since = heard.map_or(*watching_since, |heard| heard.max(*watching_since));
                Some(since + TimeDelta::seconds(s.after_secs))
            }
            (
                RuleKind::Rhythm(r),
                RuleState::Rhythm {
                    active: true,
                    ongoing: false,
                    quiet_since: Some(quiet),
                },
            ) => Some(*quiet + TimeDelta::seconds(r.clear_after_secs)),
            _ => None,
        }
    }

    fn timers(&mut self, now: DateTime<Utc>, signals: &mut Vec<AlarmSignal>) {
        for rule in &self.plan.rules {
            let Some(due) = self.deadline(rule) else {
                continue;
            };
            if now < due {
                continue;
            }
            let transition = match self.states.get_mut(&rule.id) {
                Some(RuleState::Silence { active, .. }) => {
                    *active = true;
                    Transition::Raise
                }
                Some(RuleState::Rhythm { active, .. }) => {
                    *active = false;
                    Transition::Clear
                }
                _ => continue,
            };
            let message = match &rule.kind {
                RuleKind::DeviceSilence(s) => {
                    let which = match &s.devices {
                        DeviceSelector::Kind { kind } => format!("any {kind} device"),
                        DeviceSelector::Device { device_id } => format!("device {device_id}"),
                    };
                    format!(
                        "{}: nothing from {which} for {}",
                        rule.name,
                        duration_words(s.after_secs)
                    )
                }
                _ => String::new(),
            };
            signals.push(self.signal(rule, transition, message, now));
        }
    }

    fn condition(&self, rule_id: &RuleId) -> ConditionKey {
        ConditionKey {
            patient_id: self.plan.patient_id,
            rule_id: rule_id.clone(),
        }
    }

    fn signal(
        &self,
        rule: &Rule,
        transition: Transition,
        message: String,
        now: DateTime<Utc>,
    ) -> AlarmSignal {
        let condition = self.condition(&rule.id);
        match transition {
            Transition::Raise => AlarmSignal::Raise {
                condition,
                priority: rule.priority,
                kind: rule.alarm_kind(),
                message,
                rule_id: rule.id.clone(),
                care_plan_version: self.plan.version,
                resolve_on_clear: rule.resolve_on_clear,
                at: now,
            },
            Transition::Clear => AlarmSignal::Clear { condition, at: now },
        }
    }

    fn device_kind(&self, device_id: &DeviceId) -> Option<DeviceKind> {
        self.devices.get(device_id).and_then(|seen| seen.kind)
    }

    /// Records that a device spoke (or was registered), keeping the map bounded.
    fn remember_device(
        &mut self,
        device_id: &DeviceId,
        registered: Option<DeviceKind>,
        guessed: Option<DeviceKind>,
        heard: Option<DateTime<Utc>>,
    ) {
        if !self.devices.contains_key(device_id) && self.devices.len() >= MAX_DEVICES {
            let stalest = self
                .devices
                .iter()
                .min_by_key(|(_, seen)| seen.last_seen)
                .map(|(id, _)| id.clone());
            if let Some(stalest) = stalest {
                self.devices.remove(&stalest);
            }
        }
        let entry = self.devices.entry(device_id.clone()).or_insert(DeviceSeen {
            kind: None,
            last_seen: None,
        });
        // What the care team registered wins over a guess from the data.
        entry.kind = registered.or(entry.kind).or(guessed);
        if let Some(heard) = heard {
            entry.last_seen = Some(entry.last_seen.map_or(heard, |last| last.max(heard)));
        }
    }

    /// A device spoke: its silence conditions end.
    fn heard(
        &mut self,
        device_id: &DeviceId,
        guessed: Option<DeviceKind>,
        now: DateTime<Utc>,
        signals: &mut Vec<AlarmSignal>,
    ) {
        self.remember_device(device_id, None, guessed, Some(now));
        let kind = self.device_kind(device_id);
        for rule in &self.plan.rules {
            let RuleKind::DeviceSilence(s) = &rule.kind else {
                continue;
            };
            if !selects(&s.devices, device_id, kind) {
                continue;
            }
            if let Some(RuleState::Silence { active, .. }) = self.states.get_mut(&rule.id)
                && *active
            {
                *active = false;
                signals.push(self.signal(rule, Transition::Clear, String::new(), now));
            }
        }
    }
}

fn selects(selector: &DeviceSelector, device_id: &DeviceId, kind: Option<DeviceKind>) -> bool {
    match selector {
        DeviceSelector::Kind { kind: wanted } => kind == Some(*wanted),
        DeviceSelector::Device { device_id: wanted } => wanted == device_id,
    }
}
