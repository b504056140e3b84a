//! Rules: what a care plan watches for, and how urgent each finding is.

use std::fmt;

use serde::{Deserialize, Serialize};
use wardline_domain::{DeviceId, DeviceKind, ObservationCode};

use crate::error::{AlertingError, Result};

/// Alarm priority in the sense of IEC 60601-1-8 Table 1 (anchors-features §3.3): the
/// potential harm of not responding, and how soon it could happen.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Minor or delayed harm.
    Low,
    /// Reversible harm that needs a prompt response.
    Medium,
    /// Death or irreversible harm, immediate or prompt.
    High,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }

    /// The longest snooze allowed. An urgent condition must come back to someone's
    /// attention soon; 30 minutes for high priority is the longest urgent-low snooze
    /// Nightscout offers on its default menu (15/30/45 min cut to the two shorter ones
    /// for a clinician-facing system).
    pub fn max_snooze_secs(self) -> i64 {
        match self {
            Priority::High => 30 * 60,
            Priority::Medium => 60 * 60,
            Priority::Low => 4 * 60 * 60,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// IEC 60601-1-8 distinguishes the patient's condition from the equipment's: a silent
/// sensor calls for a different person (and different words) than a low glucose.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    Physiological,
    Technical,
}

/// A rule's identifier, unique within its care plan and stable across versions, so that
/// an edited rule keeps its alarm condition.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleId(pub String);

impl RuleId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which side of a limit is the excursion.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Strictly below the limit.
    Below,
    /// Strictly above the limit.
    Above,
}

impl Direction {
    pub(crate) fn beyond(self, value: f64, limit: f64) -> bool {
        match self {
            Direction::Below => value < limit,
            Direction::Above => value > limit,
        }
    }

    /// Back on the safe side by at least `margin`.
    pub(crate) fn recovered(self, value: f64, limit: f64, margin: f64) -> bool {
        match self {
            Direction::Below => value >= limit + margin,
            Direction::Above => value <= limit - margin,
        }
    }

    pub(crate) fn word(self) -> &'static str {
        match self {
            Direction::Below => "below",
            Direction::Above => "above",
        }
    }
}

/// A value beyond a limit for at least a minimum time.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdRule {
    #[serde(with = "crate::codes")]
    pub code: ObservationCode,
    pub direction: Direction,
    /// In the code's canonical unit.
    pub value: f64,
    /// The excursion must have lasted this long (first to latest reading beyond); 0 raises
    /// on the first reading.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 604_800))]
    pub min_duration_secs: i64,
    /// The condition clears only once a reading is back across the limit by this margin,
    /// so a value hovering at the limit does not raise and clear over and over.
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub hysteresis: f64,
}

/// Change per minute over a window, e.g. glucose falling faster than 2 mg/dL/min.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateOfChangeRule {
    #[serde(with = "crate::codes")]
    pub code: ObservationCode,
    /// `Below` watches for a fall, `Above` for a rise.
    pub direction: Direction,
    /// Magnitude, canonical unit per minute (positive).
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0))]
    pub per_minute: f64,
    /// The rate is measured from the oldest to the newest reading within this window.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 604_800))]
    pub window_secs: i64,
    /// The condition clears once the rate is below `per_minute - hysteresis_per_minute`.
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub hysteresis_per_minute: f64,
    /// Only while the latest value is below this (a fast fall from a high is usually a
    /// correction working; the same fall near the low range is a warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_below: Option<f64>,
}

/// A forecast, supplied by the caller, crossing a limit within a horizon.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictedCrossingRule {
    #[serde(with = "crate::codes")]
    pub code: ObservationCode,
    pub direction: Direction,
    pub value: f64,
    /// Only forecast points at most this far after the forecast was issued count.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 604_800))]
    pub horizon_secs: i64,
    /// Successive forecasts must keep predicting the crossing this long: one forecast
    /// bent by a noisy reading is not a prediction worth an alarm.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 604_800))]
    pub min_duration_secs: i64,
    /// The condition clears once every forecast point is back by this margin.
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub hysteresis: f64,
}

/// Which NEWS2 finding (RCP 2017, Chart 2) a rule reacts to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "band", rename_all = "snake_case")]
pub enum News2Band {
    /// Aggregate score in `min..=max` (no `max`: and above).
    Aggregate {
        #[cfg_attr(feature = "openapi", schema(maximum = 20))]
        min: u8,
        /// At least `min`.
        #[cfg_attr(feature = "openapi", schema(maximum = 20))]
        max: Option<u8>,
    },
    /// A 3 in any single parameter while the aggregate is below 5; at 5 or more the
    /// aggregate bands already speak for it.
    SingleParameter3,
}

/// ECG rhythm findings Wardline's ECG analysis reports.
pub use wardline_domain::RhythmKind;

/// How a rhythm finding reads in an alarm message.
pub(crate) fn rhythm_words(kind: RhythmKind) -> &'static str {
    match kind {
        RhythmKind::AtrialFibrillation => "suspected atrial fibrillation",
        RhythmKind::Bradycardia => "bradycardia",
        RhythmKind::Tachycardia => "tachycardia",
        RhythmKind::Pause => "pause (no beat)",
        RhythmKind::PoorSignal => "poor ECG signal",
        RhythmKind::VentricularTachyarrhythmia => "ventricular tachycardia or fibrillation",
    }
}

/// A rhythm event kind. Events are short and come in bursts, so the condition stays
/// raised until no event of the kind has been seen for `clear_after_secs`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RhythmRule {
    pub rhythm: RhythmKind,
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 604_800))]
    pub clear_after_secs: i64,
}

/// Which devices a device rule watches.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum DeviceSelector {
    /// Every device of the kind: silence means none of them has spoken.
    Kind {
        kind: DeviceKind,
    },
    Device {
        device_id: DeviceId,
    },
}

/// No data from the selected devices for a while; evaluated on timer ticks.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSilenceRule {
    pub devices: DeviceSelector,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 604_800))]
    pub after_secs: i64,
}

/// What a device says about itself.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DeviceStatusCondition {
    /// Battery below a percentage; clears 5 points above it, since battery gauges jitter.
    LowBattery {
        #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
        below_percent: f64,
    },
    /// The device reports a fault.
    Fault,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceStatusRule {
    pub devices: DeviceSelector,
    pub condition: DeviceStatusCondition,
}

/// What a rule watches.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RuleKind {
    Threshold(ThresholdRule),
    RateOfChange(RateOfChangeRule),
    PredictedCrossing(PredictedCrossingRule),
    News2(News2Rule),
    Rhythm(RhythmRule),
    DeviceSilence(DeviceSilenceRule),
    DeviceStatus(DeviceStatusRule),
}

/// A NEWS2 finding, scored by the caller with `wardline_analytics::news2`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct News2Rule {
    pub band: News2Band,
}

/// One rule of a care plan.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: RuleId,
    /// What the care team calls it ("urgent low").
    pub name: String,
    pub priority: Priority,
    /// Whether the alarm resolves by itself once the condition clears. Latching
    /// (`false`) is for findings someone must see even if they are over, such as a pause.
    pub resolve_on_clear: bool,
    pub kind: RuleKind,
}

/// Longest duration any rule may use: anything longer is a typing mistake.
const MAX_RULE_SECS: i64 = 7 * 86_400;

impl Rule {
    pub fn new(
        id: &str,
        name: &str,
        priority: Priority,
        resolve_on_clear: bool,
        kind: RuleKind,
    ) -> Self {
        Self {
            id: RuleId::new(id),
            name: name.to_owned(),
            priority,
            resolve_on_clear,
            kind,
        }
    }

    /// Physiological or technical, from what the rule watches.
    pub fn alarm_kind(&self) -> AlarmKind {
        match &self.kind {
            RuleKind::DeviceSilence(_) | RuleKind::DeviceStatus(_) => AlarmKind::Technical,
            RuleKind::Rhythm(r) if r.rhythm == RhythmKind::PoorSignal => AlarmKind::Technical,
            _ => AlarmKind::Physiological,
        }
    }

    /// What the rule watches for, in words ("Glucose [Mass/volume] in Interstitial fluid (CGM)
    /// below 54 mg/dL for 15 min", as alarm messages name the code), for those who read a
    /// plan without Wardline's screens (its FHIR CarePlan).
    pub fn condition_words(&self) -> String {
        let held = |secs: i64| {
            if secs > 0 {
                format!(" for {}", duration_words(secs))
            } else {
                String::new()
            }
        };
        let devices = |selector: &DeviceSelector| match selector {
            DeviceSelector::Kind { kind } => format!("any {kind} device"),
            DeviceSelector::Device { device_id } => format!("device {device_id}"),
        };
        match &self.kind {
            RuleKind::Threshold(t) => format!(
                "{} {} {} {}{}",
                t.code.spec().display,
                t.direction.word(),
                number(t.value),
                t.code.spec().canonical_unit,
                held(t.min_duration_secs)
            ),
            RuleKind::RateOfChange(r) => {
                let unit = r.code.spec().canonical_unit;
                let guard = r
                    .only_below
                    .map(|limit| format!(", while below {} {unit}", number(limit)))
                    .unwrap_or_default();
                format!(
                    "{} {} faster than {} {unit}/min over {}{guard}",
                    r.code.spec().display,
                    match r.direction {
                        Direction::Below => "falling",
                        Direction::Above => "rising",
                    },
                    number(r.per_minute),
                    duration_words(r.window_secs)
                )
            }
            RuleKind::PredictedCrossing(p) => format!(
                "{} forecast {} {} {} within {}{}",
                p.code.spec().display,
                p.direction.word(),
                number(p.value),
                p.code.spec().canonical_unit,
                duration_words(p.horizon_secs),
                held(p.min_duration_secs)
            ),
            RuleKind::News2(n) => match n.band {
                News2Band::Aggregate {
                    min,
                    max: Some(max),
                } if max == min => {
                    format!("NEWS2 aggregate score {min}")
                }
                News2Band::Aggregate {
                    min,
                    max: Some(max),
                } => {
                    format!("NEWS2 aggregate score {min} to {max}")
                }
                News2Band::Aggregate { min, max: None } => {
                    format!("NEWS2 aggregate score {min} or more")
                }
                News2Band::SingleParameter3 => {
                    "NEWS2: a single parameter scoring 3 (aggregate below 5)".to_owned()
                }
            },
            RuleKind::Rhythm(r) => format!("ECG: {}", rhythm_words(r.rhythm)),
            RuleKind::DeviceSilence(s) => format!(
                "no data from {} for {}",
                devices(&s.devices),
                duration_words(s.after_secs)
            ),
            RuleKind::DeviceStatus(s) => match &s.condition {
                DeviceStatusCondition::LowBattery { below_percent } => format!(
                    "battery of {} below {} %",
                    devices(&s.devices),
                    number(*below_percent)
                ),
                DeviceStatusCondition::Fault => format!("{} reports a fault", devices(&s.devices)),
            },
        }
    }

    /// Refuses rules the evaluator could not honour (NaN limits, negative durations...).
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(AlertingError::Invalid {
                what: format!("rule {:?}", self.id.0),
                reason,
            })
        };
        let id = self.id.as_str();
        if id.is_empty() || id.len() > 64 || id.chars().any(char::is_control) {
            return bad("the id must be 1 to 64 printable characters".into());
        }
        let duration = |name: &str, secs: i64, zero_ok: bool| -> Result<()> {
            let min = if zero_ok { 0 } else { 1 };
            if (min..=MAX_RULE_SECS).contains(&secs) {
                Ok(())
            } else {
                bad(format!(
                    "{name} must be between {min} s and 7 days, not {secs} s"
                ))
            }
        };
        let non_negative = |name: &str, value: f64| -> Result<()> {
            if value.is_finite() && value >= 0.0 {
                Ok(())
            } else {
                bad(format!("{name} must be a finite number >= 0, not {value}"))
            }
        };
        let finite = |name: &str, value: f64| -> Result<()> {
            if value.is_finite() {
                Ok(())
            } else {
                bad(format!("{name} must be a finite number, not {value}"))
            }
        };
        match &self.kind {
            RuleKind::Threshold(r) => {
                finite("value", r.value)?;
                non_negative("hysteresis", r.hysteresis)?;
                duration("min_duration_secs", r.min_duration_secs, true)
            }
            RuleKind::RateOfChange(r) => {
                if !(r.per_minute.is_finite() && r.per_minute > 0.0) {
                    return bad(format!("per_minute must be > 0, not {}", r.per_minute));
                }
                non_negative("hysteresis_per_minute", r.hysteresis_per_minute)?;
                if r.hysteresis_per_minute >= r.per_minute {
                    return bad("hysteresis_per_minute must be smaller than per_minute".into());
                }
                if let Some(limit) = r.only_below {
                    finite("only_below", limit)?;
                }
                duration("window_secs", r.window_secs, false)
            }
            RuleKind::PredictedCrossing(r) => {
                finite("value", r.value)?;
                non_negative("hysteresis", r.hysteresis)?;
                duration("min_duration_secs", r.min_duration_secs, true)?;
                duration("horizon_secs", r.horizon_secs, false)
            }
            RuleKind::News2(r) => match r.band {
                News2Band::Aggregate { min, max } => {
                    if min > 20 || max.is_some_and(|max| max < min || max > 20) {
                        bad(format!(
                            "NEWS2 band {min}..={max:?} is not within the score's range 0..=20"
                        ))
                    } else {
                        Ok(())
                    }
                }
                News2Band::SingleParameter3 => Ok(()),
            },
            RuleKind::Rhythm(r) => duration("clear_after_secs", r.clear_after_secs, true),
            RuleKind::DeviceSilence(r) => duration("after_secs", r.after_secs, false),
            RuleKind::DeviceStatus(r) => match r.condition {
                DeviceStatusCondition::LowBattery { below_percent } => {
                    if (0.0..=100.0).contains(&below_percent) {
                        Ok(())
                    } else {
                        bad(format!(
                            "below_percent must be 0..=100, not {below_percent}"
                        ))
                    }
                }
                DeviceStatusCondition::Fault => Ok(()),
            },
        }
    }

    /// Whether the rule's limit is one a reading can reach, and one an alarm limit may
    /// have (see [`crate::codes::alarm_limits`]). A limit outside what the code can
    /// measure would never raise (or always hold): most likely a slip such as 7075 typed
    /// for 75. Checked on every new or changed rule; rules already in a stored plan
    /// are not re-judged on load, so a stricter check can never stop a patient's monitoring.
    pub fn validate_limits(&self) -> Result<()> {
        let (code, value) = match &self.kind {
            RuleKind::Threshold(r) => (r.code, r.value),
            RuleKind::PredictedCrossing(r) => (r.code, r.value),
            _ => return Ok(()),
        };
        let spec = code.spec();
        let (min, max) = spec.possible_range;
        let refuse = |reason: String| {
            Err(AlertingError::Invalid {
                what: format!("rule {:?}", self.id.0),
                reason,
            })
        };
        if !(min..=max).contains(&value) {
            return refuse(format!(
                "value {value} {} is outside what {} can measure ({min} to {max})",
                spec.canonical_unit, spec.display
            ));
        }
        let (lowest, highest) = crate::codes::alarm_limits(code);
        if !(lowest..=highest).contains(&value) {
            return refuse(format!(
                "value {value} {unit} is outside the limits an alarm on {} may have ({lowest} to {highest} {unit})",
                spec.display,
                unit = spec.canonical_unit
            ));
        }
        Ok(())
    }
}

/// A value as a clinician reads it: no trailing ".0", one decimal otherwise.
pub(crate) fn number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

pub(crate) fn duration_words(secs: i64) -> String {
    match secs {
        s if s % 3_600 == 0 && s > 0 => format!("{} h", s / 3_600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threshold(min_duration_secs: i64, hysteresis: f64) -> Rule {
        Rule::new(
            "low",
            "low",
            Priority::Medium,
            true,
            RuleKind::Threshold(ThresholdRule {
                code: ObservationCode::GlucoseCgm,
                direction: Direction::Below,
                value: 70.0,
                min_duration_secs,
                hysteresis,
            }),
        )
    }

    #[test]
    fn conditions_read_as_a_clinician_writes_them() {
        assert_eq!(
            threshold(900, 10.0).condition_words(),
            "Glucose [Mass/volume] in Interstitial fluid (CGM) below 70 mg/dL for 15 min"
        );
        assert_eq!(
            threshold(0, 10.0).condition_words(),
            "Glucose [Mass/volume] in Interstitial fluid (CGM) below 70 mg/dL"
        );
        // Every default rule of every programme has words of its own, and none is empty
        // or a debug dump.
        for program in crate::care_plan::Program::ALL {
            let plan = crate::care_plan::CarePlan::from_program(
                wardline_domain::PatientId::random(),
                program,
                &crate::care_plan::PatientBaseline::default(),
                chrono::Utc::now(),
            );
            for rule in &plan.rules {
                let words = rule.condition_words();
                assert!(
                    !words.is_empty() && !words.contains('{') && !words.contains("Some("),
                    "{program:?} {}: {words}",
                    rule.id
                );
            }
        }
    }

    #[test]
    fn nonsense_rules_are_refused() {
        assert!(threshold(900, 10.0).validate().is_ok());
        assert!(threshold(-1, 10.0).validate().is_err());
        assert!(threshold(900, f64::NAN).validate().is_err());
        assert!(threshold(900, -1.0).validate().is_err());
        assert!(threshold(8 * 86_400, 1.0).validate().is_err());
        let mut empty_id = threshold(0, 0.0);
        empty_id.id = RuleId::new("");
        assert!(empty_id.validate().is_err());
        // A limit no glucose reading can reach (75 typed as 7075) names the range.
        let mut slip = threshold(900, 10.0);
        if let RuleKind::Threshold(rule) = &mut slip.kind {
            rule.value = 7075.0;
        }
        assert!(slip.validate().is_ok(), "structurally sound");
        let error = slip.validate_limits().unwrap_err().to_string();
        assert!(
            error.contains("7075") && error.contains("can measure"),
            "{error}"
        );
    }

    #[test]
    fn rules_round_trip_through_json() {
        let rule = threshold(900, 10.0);
        let json = serde_json::to_string(&rule).unwrap();
        assert!(json.contains("\"code\":\"glucose_cgm\""), "{json}");
        let back: Rule = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rule);
        let loinc = json.replace("glucose_cgm", "99504-3");
        assert_eq!(serde_json::from_str::<Rule>(&loinc).unwrap(), rule);
    }

    #[test]
    fn priorities_order_by_urgency() {
        assert!(Priority::High > Priority::Medium && Priority::Medium > Priority::Low);
    }
}
