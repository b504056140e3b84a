//! Care plans: a monitoring programme's rules for one patient, and their history.
//!
//! Every clinician edit makes a new version that records who changed what, when and
//! why, with the rule before and after; the rule set in force at any past moment can
//! be reconstructed, which is what a review of "why did (or didn't) this alarm fire"
//! needs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use wardline_domain::{DeviceKind, ObservationCode, PatientId, UserId};

use crate::error::{AlertingError, Result};
use crate::rule::{
    DeviceSelector, DeviceSilenceRule, DeviceStatusCondition, DeviceStatusRule, Direction,
    News2Band, News2Rule, PredictedCrossingRule, Priority, RateOfChangeRule, RhythmKind,
    RhythmRule, Rule, RuleId, RuleKind, ThresholdRule,
};

/// Monitoring programmes with default rules.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Program {
    Diabetes,
    Cardiac,
    /// Asthma and other chronic respiratory disease.
    Respiratory,
    PostSurgery,
    GeneralVitals,
}

impl Program {
    pub const ALL: [Program; 5] = [
        Program::Diabetes,
        Program::Cardiac,
        Program::Respiratory,
        Program::PostSurgery,
        Program::GeneralVitals,
    ];

    /// The programme's name as the care team says it.
    pub fn title(self) -> &'static str {
        match self {
            Program::Diabetes => "Diabetes",
            Program::Cardiac => "Cardiac",
            Program::Respiratory => "Respiratory (asthma and chronic lung disease)",
            Program::PostSurgery => "After surgery",
            Program::GeneralVitals => "General vital signs",
        }
    }
}

/// What the defaults need to know about the patient.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PatientBaseline {
    /// Best peak expiratory flow, L/min. Asthma action plans are written in percent of
    /// it, so without it there are no peak-flow rules.
    pub peak_flow_personal_best_l_min: Option<f64>,
}

/// The rules in force for one patient from `effective_from` on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarePlan {
    pub patient_id: PatientId,
    pub program: Program,
    /// 1 for the plan a patient is enrolled with, +1 per edit.
    pub version: u32,
    pub effective_from: DateTime<Utc>,
    pub rules: Vec<Rule>,
}

impl CarePlan {
    /// The programme's default rules, version 1.
    pub fn from_program(
        patient_id: PatientId,
        program: Program,
        baseline: &PatientBaseline,
        effective_from: DateTime<Utc>,
    ) -> Self {
        Self {
            patient_id,
            program,
            version: 1,
            effective_from,
            rules: default_rules(program, baseline),
        }
    }

    pub fn rule(&self, id: &RuleId) -> Option<&Rule> {
        self.rules.iter().find(|rule| &rule.id == id)
    }

    /// Every rule valid and every id used once.
    pub fn validate(&self) -> Result<()> {
        for (index, rule) in self.rules.iter().enumerate() {
            rule.validate()?;
            if self.rules[..index].iter().any(|other| other.id == rule.id) {
                return Err(AlertingError::Invalid {
                    what: format!("care plan version {}", self.version),
                    reason: format!("rule id {:?} is used twice", rule.id.0),
                });
            }
        }
        Ok(())
    }
}

/// One clinician edit of a care plan.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarePlanChange {
    pub author: UserId,
    pub at: DateTime<Utc>,
    /// Required: an audit of a missed or needless alarm starts from here.
    pub reason: String,
    pub edit: RuleEdit,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RuleEdit {
    Add {
        rule: Rule,
    },
    /// Replaces the rule with the same id.
    Replace {
        rule: Rule,
    },
    Remove {
        rule_id: RuleId,
    },
}

/// A version of the plan and the edit that produced it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarePlanVersion {
    pub plan: CarePlan,
    pub author: UserId,
    pub at: DateTime<Utc>,
    pub reason: String,
    /// The rule before the edit (`None` for an addition or the enrolment).
    pub old_rule: Option<Rule>,
    /// The rule after the edit (`None` for a removal or the enrolment).
    pub new_rule: Option<Rule>,
}

/// Why a new or changed threshold does not fit the plan's other thresholds on the same
/// code, if it does not: every "below" limit must lie under every "above" limit (or no
/// value would be free of alarms), and a changed limit that moves past another in the
/// same direction must not leave the more extreme of the two less urgent (an urgent low
/// moved above the low is a slip). A new rule may be more urgent than a more extreme one
/// (an extra high-priority alert at 300 mg/dL beside a medium one at 350).
fn consistent_with(
    rule: &Rule,
    old: Option<&Rule>,
    rules: &[Rule],
) -> std::result::Result<(), String> {
    let RuleKind::Threshold(new) = &rule.kind else {
        return Ok(());
    };
    let unit = new.code.spec().canonical_unit;
    let says = |rule: &Rule, limit: &ThresholdRule| {
        let direction = match limit.direction {
            Direction::Below => "below",
            Direction::Above => "above",
        };
        format!(
            "{:?} ({} priority, {direction} {} {unit})",
            rule.name,
            rule.priority.as_str(),
            limit.value
        )
    };
    for other in rules.iter().filter(|other| other.id != rule.id) {
        let RuleKind::Threshold(limit) = &other.kind else {
            continue;
        };
        if limit.code != new.code {
            continue;
        }
        let (low, high) = match (new.direction, limit.direction) {
            (Direction::Below, Direction::Above) => ((rule, new), (other, limit)),
            (Direction::Above, Direction::Below) => ((other, limit), (rule, new)),
            (direction, _) => {
                let further = |value: f64| match direction {
                    Direction::Below => value < limit.value,
                    Direction::Above => value > limit.value,
                };
                let was_further = old.and_then(|old| match &old.kind {
                    RuleKind::Threshold(before)
                        if before.code == new.code && before.direction == direction =>
                    {
                        Some(further(before.value))
                    }
                    _ => None,
                });
                // Only a limit moved past this one is judged here.
                if was_further.is_none_or(|was| was == further(new.value)) {
                    continue;
                }
                let (outer, inner) = if further(new.value) {
                    ((rule, new), (other, limit))
                } else {
                    ((other, limit), (rule, new))
                };
                if outer.1.value != inner.1.value && outer.0.priority < inner.0.priority {
                    return Err(format!(
                        "{} is further out than {} but less urgent: the more extreme limit must be at least as urgent",
                        says(outer.0, outer.1),
                        says(inner.0, inner.1)
                    ));
                }
                continue;
            }
        };
        if low.1.value >= high.1.value {
            return Err(format!(
                "{} is not under {}: every value would raise an alarm",
                says(low.0, low.1),
                says(high.0, high.1)
            ));
        }
    }
    Ok(())
}

/// All versions of one patient's plan, oldest first; append-only.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarePlanHistory {
    versions: Vec<CarePlanVersion>,
}

impl CarePlanHistory {
    /// Starts a history with the plan a patient is enrolled with.
    pub fn enrol(plan: CarePlan, author: UserId, reason: &str) -> Result<Self> {
        plan.validate()?;
        let at = plan.effective_from;
        Ok(Self {
            versions: vec![CarePlanVersion {
                plan,
                author,
                at,
                reason: reason.to_owned(),
                old_rule: None,
                new_rule: None,
            }],
        })
    }

    /// The plan in force now (the latest version).
    pub fn current(&self) -> &CarePlan {
        // `enrol` guarantees one version and nothing removes versions.
        &self.versions[self.versions.len() - 1].plan
    }

    pub fn versions(&self) -> &[CarePlanVersion] {
        &self.versions
    }

    /// Applies an edit and returns the new version number. Edits must come in time
    /// order (the history is what was in force when), must say why, and must fit the
    /// current rules.
    pub fn apply(&mut self, change: CarePlanChange) -> Result<u32> {
        let current = self.current();
        let refuse = |reason: String| Err(AlertingError::CarePlanChange(reason));
        if change.reason.trim().is_empty() {
            return refuse("a change needs a reason".into());
        }
        if change.at < current.effective_from {
            return refuse(format!(
                "the change at {} is earlier than version {} ({}): history is append-only",
                change.at, current.version, current.effective_from
            ));
        }
        let mut rules = current.rules.clone();
        let position = |id: &RuleId| rules.iter().position(|rule| &rule.id == id);
        let (old_rule, new_rule) = match &change.edit {
            RuleEdit::Add { rule } => {
                if position(&rule.id).is_some() {
                    return refuse(format!("rule {:?} already exists; replace it", rule.id.0));
                }
                rules.push(rule.clone());
                (None, Some(rule.clone()))
            }
            RuleEdit::Replace { rule } => {
                let Some(index) = position(&rule.id) else {
                    return refuse(format!("no rule {:?} to replace", rule.id.0));
                };
                let old = std::mem::replace(&mut rules[index], rule.clone());
                if old == *rule {
                    return refuse(format!("rule {:?} is unchanged", rule.id.0));
                }
                (Some(old), Some(rule.clone()))
            }
            RuleEdit::Remove { rule_id } => {
                let Some(index) = position(rule_id) else {
                    return refuse(format!("no rule {:?} to remove", rule_id.0));
                };
                (Some(rules.remove(index)), None)
            }
        };
        if let Some(rule) = &new_rule {
            rule.validate_limits()?;
            consistent_with(rule, old_rule.as_ref(), &rules)
                .map_err(AlertingError::CarePlanChange)?;
        }
        let plan = CarePlan {
            patient_id: current.patient_id,
            program: current.program,
            version: current.version + 1,
            effective_from: change.at,
            rules,
        };
        plan.validate()?;
        let version = plan.version;
        self.versions.push(CarePlanVersion {
            plan,
            author: change.author,
            at: change.at,
            reason: change.reason,
            old_rule,
            new_rule,
        });
        Ok(version)
    }

    /// The plan that was in force at `time`, `None` before enrolment. When two edits
    /// share a timestamp the later one wins, as it did live.
    pub fn in_force_at(&self, time: DateTime<Utc>) -> Option<&CarePlan> {
        let count = self
            .versions
            .partition_point(|version| version.plan.effective_from <= time);
        count.checked_sub(1).map(|index| &self.versions[index].plan)
    }
}

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;

fn threshold(
    code: ObservationCode,
    direction: Direction,
    value: f64,
    min_duration_secs: i64,
    hysteresis: f64,
) -> RuleKind {
    RuleKind::Threshold(ThresholdRule {
        code,
        direction,
        value,
        min_duration_secs,
        hysteresis,
    })
}

fn silence(kind: DeviceKind, after_secs: i64) -> RuleKind {
    RuleKind::DeviceSilence(DeviceSilenceRule {
        devices: DeviceSelector::Kind { kind },
        after_secs,
    })
}

fn device_status(kind: DeviceKind, condition: DeviceStatusCondition) -> RuleKind {
    RuleKind::DeviceStatus(DeviceStatusRule {
        devices: DeviceSelector::Kind { kind },
        condition,
    })
}

fn news2(band: News2Band) -> RuleKind {
    RuleKind::News2(News2Rule { band })
}

fn rhythm(rhythm: RhythmKind, clear_after_secs: i64) -> RuleKind {
    RuleKind::Rhythm(RhythmRule {
        rhythm,
        clear_after_secs,
    })
}

/// The default rules of a programme. Priorities follow IEC 60601-1-8 Table 1 (harm if
/// nobody responds x how soon); limits follow the sources cited at each rule.
pub fn default_rules(program: Program, baseline: &PatientBaseline) -> Vec<Rule> {
    use DeviceKind as K;
    use Direction::{Above, Below};
    use ObservationCode as C;
    use Priority::{High, Low, Medium};
    let mut rules = Vec::new();
    match program {
        Program::Diabetes => {
            // Level 2 hypoglycaemia, < 54 mg/dL (Battelino 2019 consensus; ADA Standards
            // of Care §6) can progress to seizure or coma: high, raised on the first
            // reading. Latching, so a clinician sees it even after the patient treated it.
            // Clears 10 mg/dL above the limit: CGM noise at 54 is a few mg/dL, and a
            // recovery to 64 means carbohydrate has acted.
            rules.push(Rule::new(
                "urgent-low",
                "urgent low glucose",
                High,
                false,
                threshold(C::GlucoseCgm, Below, 54.0, 0, 10.0),
            ));
            // Level 1, < 70 mg/dL for 15 min: the consensus's minimum event duration, so
            // one noisy reading or a compression low is not an alarm.
            rules.push(Rule::new(
                "low",
                "low glucose",
                Medium,
                true,
                threshold(C::GlucoseCgm, Below, 70.0, 15 * MINUTE, 10.0),
            ));
            // Level 2 hyperglycaemia, > 250 mg/dL (consensus TAR > 250 target < 5 %, about
            // 1 h 12 min a day): a clinician needs to hear of it when it is sustained, not
            // after every meal, hence 2 h. Low priority: harm is delayed.
            rules.push(Rule::new(
                "high",
                "high glucose",
                Low,
                true,
                threshold(C::GlucoseCgm, Above, 250.0, 2 * HOUR, 20.0),
            ));
            // Tidepool's "extreme high" bucket starts at 350 mg/dL; sustained for 30 min it
            // is a ketoacidosis risk that needs a prompt call.
            rules.push(Rule::new(
                "very-high",
                "very high glucose",
                Medium,
                true,
                threshold(C::GlucoseCgm, Above, 350.0, 30 * MINUTE, 30.0),
            ));
            // Dexcom's optional fall-rate alert uses 2 or 3 mg/dL/min; only near the low
            // range, since a fast fall from 300 is usually a correction dose working.
            rules.push(Rule::new(
                "falling-fast",
                "glucose falling fast",
                Low,
                true,
                RuleKind::RateOfChange(RateOfChangeRule {
                    code: C::GlucoseCgm,
                    direction: Below,
                    per_minute: 2.0,
                    window_secs: 15 * MINUTE,
                    hysteresis_per_minute: 1.0,
                    only_below: Some(120.0),
                }),
            ));
            // Nightscout's AR2 "predict" alarm looks 30 min ahead; the forecast is below
            // 70 before the glucose is. Delayed, reversible harm: low priority. Three
            // successive forecasts (10 min) must agree: on the shared CGM traces a single
            // AR2 forecast dips below 70 several times a day even in people without
            // diabetes, mostly after meals.
            rules.push(Rule::new(
                "predicted-low",
                "low glucose predicted within 30 min",
                Low,
                true,
                RuleKind::PredictedCrossing(PredictedCrossingRule {
                    code: C::GlucoseCgm,
                    direction: Below,
                    value: 70.0,
                    horizon_secs: 30 * MINUTE,
                    min_duration_secs: 10 * MINUTE,
                    hysteresis: 10.0,
                }),
            ));
            // Nightscout warns of stale data at 15 min and is urgent at 30; 20 min is four
            // missed 5-minute readings, past the usual Bluetooth drop-outs.
            rules.push(Rule::new(
                "cgm-silent",
                "no CGM data",
                Low,
                true,
                silence(K::Cgm, 20 * MINUTE),
            ));
            rules.push(Rule::new(
                "cgm-fault",
                "CGM reports a fault",
                Low,
                true,
                device_status(K::Cgm, DeviceStatusCondition::Fault),
            ));
        }
        Program::Cardiac => {
            // VT and VF stop the circulation within seconds to minutes: high priority
            // (IEC 60601-1-8: death or irreversible injury, immediate response),
            // latching, and a new alarm when it recurs after a minute of other rhythm.
            rules.push(Rule::new(
                "ventricular-tachyarrhythmia",
                "ventricular tachycardia or fibrillation",
                High,
                false,
                rhythm(RhythmKind::VentricularTachyarrhythmia, MINUTE),
            ));
            // A pause (no beat for >= 3 s, the ECG analysis's definition) can be syncope
            // or asystole: high, latching.
            rules.push(Rule::new(
                "pause",
                "ECG pause",
                High,
                false,
                rhythm(RhythmKind::Pause, 10 * MINUTE),
            ));
            // New AF carries stroke risk over hours to days: medium, latching, one alarm
            // per hour of AF burden rather than one per detected run.
            rules.push(Rule::new(
                "atrial-fibrillation",
                "suspected atrial fibrillation",
                Medium,
                false,
                rhythm(RhythmKind::AtrialFibrillation, HOUR),
            ));
            // The ECG analysis calls < 50 and > 100 bpm brady- and tachycardia; in daily
            // life these are often sleep and exercise, so the rhythm events are low
            // priority and the heart-rate limits below carry the urgent cases.
            rules.push(Rule::new(
                "bradycardia",
                "bradycardia",
                Low,
                true,
                rhythm(RhythmKind::Bradycardia, 30 * MINUTE),
            ));
            rules.push(Rule::new(
                "tachycardia",
                "tachycardia",
                Low,
                true,
                rhythm(RhythmKind::Tachycardia, 30 * MINUTE),
            ));
            rules.extend(heart_rate_scoring_3());
            // Poor signal is a technical alarm (IEC 60601-1-8): the nurse fixes an
            // electrode, nobody treats the patient.
            rules.push(Rule::new(
                "ecg-poor-signal",
                "poor ECG signal",
                Low,
                true,
                rhythm(RhythmKind::PoorSignal, 2 * MINUTE),
            ));
            rules.push(Rule::new(
                "ecg-silent",
                "no ECG data",
                Low,
                true,
                silence(K::Ecg, 10 * MINUTE),
            ));
            rules.push(Rule::new(
                "ecg-low-battery",
                "ECG battery low",
                Low,
                true,
                device_status(
                    K::Ecg,
                    DeviceStatusCondition::LowBattery {
                        below_percent: 20.0,
                    },
                ),
            ));
        }
        Program::Respiratory => {
            rules.push(spo2_low());
            // Below 86 % (NEWS2 scale 2's lowest band, <= 83-85) is dangerous for anyone.
            rules.push(Rule::new(
                "spo2-very-low",
                "SpO2 below 86 %",
                High,
                true,
                threshold(C::OxygenSaturationPulseOximetry, Below, 86.0, MINUTE, 2.0),
            ));
            // NEWS2: respiration >= 25 and <= 8 score 3.
            rules.push(Rule::new(
                "respiration-high",
                "respiratory rate 25/min or more",
                Medium,
                true,
                threshold(C::RespiratoryRate, Above, 24.0, 5 * MINUTE, 2.0),
            ));
            rules.push(Rule::new(
                "respiration-low",
                "respiratory rate 8/min or less",
                High,
                true,
                threshold(C::RespiratoryRate, Below, 9.0, MINUTE, 2.0),
            ));
            if let Some(best) = baseline
                .peak_flow_personal_best_l_min
                .filter(|best| best.is_finite() && *best > 0.0)
            {
                // Asthma action plan zones (NHLBI EPR-3; BTS/SIGN 158): below 80 % of
                // personal best is the yellow zone, below 50 % the red zone, "get help now".
                // Peak flow is a spot measurement, so no duration.
                rules.push(Rule::new(
                    "peak-flow-yellow",
                    "peak flow below 80 % of personal best",
                    Low,
                    true,
                    threshold(C::PeakExpiratoryFlow, Below, 0.8 * best, 0, 0.05 * best),
                ));
                rules.push(Rule::new(
                    "peak-flow-red",
                    "peak flow below 50 % of personal best",
                    High,
                    false,
                    threshold(C::PeakExpiratoryFlow, Below, 0.5 * best, 0, 0.05 * best),
                ));
                // Morning and evening readings: a day and a half without one is a missed day.
                rules.push(Rule::new(
                    "peak-flow-silent",
                    "no peak flow reading",
                    Low,
                    true,
                    silence(K::PeakFlowMeter, 36 * HOUR),
                ));
            }
        }
        Program::PostSurgery => {
            news2_rules(&mut rules);
            // Post-operative fever: NEWS2 gives 38.1-39.0 °C 1 point and >= 39.1 °C 2;
            // persisting over 38.0 for an hour is worth a look, >= 39.1 a prompt call
            // (wound or anastomotic infection, sepsis).
            rules.push(Rule::new(
                "fever",
                "temperature above 38.0 °C",
                Low,
                true,
                threshold(C::BodyTemperature, Above, 38.0, HOUR, 0.3),
            ));
            rules.push(Rule::new(
                "high-fever",
                "temperature 39.1 °C or more",
                Medium,
                true,
                threshold(C::BodyTemperature, Above, 39.0, 0, 0.3),
            ));
            // NEWS2 scores pulse 111-130 with 2 points: after surgery, a sustained
            // tachycardia is an early sign of bleeding or sepsis.
            rules.push(Rule::new(
                "heart-rate-high",
                "heart rate above 110/min",
                Medium,
                true,
                threshold(C::HeartRate, Above, 110.0, 15 * MINUTE, 10.0),
            ));
            rules.push(systolic_low());
        }
        Program::GeneralVitals => {
            news2_rules(&mut rules);
            // Single readings that score 3 in NEWS2 Chart 1, for patients whose vitals
            // arrive one at a time and are never scored as a set.
            rules.extend(heart_rate_scoring_3());
            rules.push(spo2_low());
            rules.push(systolic_low());
            rules.push(Rule::new(
                "temperature-high",
                "temperature 39.1 °C or more",
                Medium,
                true,
                threshold(C::BodyTemperature, Above, 39.0, 0, 0.3),
            ));
        }
    }
    rules
}

/// NEWS2 scores pulse <= 40 and >= 131 with 3 points (RCP 2017 Chart 1).
fn heart_rate_scoring_3() -> [Rule; 2] {
    use ObservationCode as C;
    [
        Rule::new(
            "heart-rate-very-low",
            "heart rate 40/min or less",
            Priority::High,
            true,
            threshold(C::HeartRate, Direction::Below, 41.0, 2 * MINUTE, 5.0),
        ),
        Rule::new(
            "heart-rate-very-high",
            "heart rate 131/min or more",
            Priority::Medium,
            true,
            threshold(C::HeartRate, Direction::Above, 130.0, 5 * MINUTE, 10.0),
        ),
    ]
}

/// NEWS2 scale 1 scores SpO2 <= 91 % with 3 points; 5 min filters the motion artefact
/// of home oximeters.
fn spo2_low() -> Rule {
    Rule::new(
        "spo2-low",
        "SpO2 below 92 %",
        Priority::Medium,
        true,
        threshold(
            ObservationCode::OxygenSaturationPulseOximetry,
            Direction::Below,
            92.0,
            5 * MINUTE,
            2.0,
        ),
    )
}

/// NEWS2 scores systolic pressure <= 90 mmHg with 3 points.
fn systolic_low() -> Rule {
    Rule::new(
        "systolic-low",
        "systolic blood pressure 90 mmHg or less",
        Priority::High,
        true,
        threshold(
            ObservationCode::SystolicBloodPressure,
            Direction::Below,
            91.0,
            0,
            5.0,
        ),
    )
}

/// RCP 2017 Chart 2: aggregate >= 7 emergency response (within 30 min, continuous
/// monitoring), 5-6 the key threshold for urgent review within 1 h, a 3 in one parameter
/// an urgent ward-based response, graded below the aggregate 5.
fn news2_rules(rules: &mut Vec<Rule>) {
    rules.push(Rule::new(
        "news2-emergency",
        "NEWS2 7 or more",
        Priority::High,
        true,
        news2(News2Band::Aggregate { min: 7, max: None }),
    ));
    rules.push(Rule::new(
        "news2-urgent",
        "NEWS2 5-6",
        Priority::Medium,
        true,
        news2(News2Band::Aggregate {
            min: 5,
            max: Some(6),
        }),
    ));
    rules.push(Rule::new(
        "news2-single-3",
        "NEWS2 3 in a single parameter",
        Priority::Low,
        true,
        news2(News2Band::SingleParameter3),
    ));
}

/// The programme's default rules that a patient's plan has never had, in any of its
/// versions (`ever`: every rule id the plan has held): rules Wardline added to the
/// programme after the patient was enrolled, such as a new rhythm finding. A rule the care
/// team removed is not among them: removing it was their decision. Offered to the care
/// team, never added by itself, since a plan decides which readings raise alarms.
pub fn new_programme_defaults<'a>(
    program: Program,
    baseline: &PatientBaseline,
    ever: impl IntoIterator<Item = &'a RuleId>,
) -> Vec<Rule> {
    let ever: std::collections::HashSet<&RuleId> = ever.into_iter().collect();
    default_rules(program, baseline)
        .into_iter()
        .filter(|rule| !ever.contains(&rule.id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn new_programme_defaults_are_the_rules_a_plan_never_had() {
        let baseline = PatientBaseline::default();
        let all = default_rules(Program::Cardiac, &baseline);
        let ids: Vec<RuleId> = all.iter().map(|rule| rule.id.clone()).collect();
        assert!(new_programme_defaults(Program::Cardiac, &baseline, &ids).is_empty());
        // A plan stored before the ventricular rule existed is offered it, and only it.
        let before: Vec<RuleId> = ids
            .iter()
            .filter(|id| id.0 != "ventricular-tachyarrhythmia")
            .cloned()
            .collect();
        let offered = new_programme_defaults(Program::Cardiac, &baseline, &before);
        assert_eq!(offered.len(), 1);
        assert_eq!(offered[0].id.0, "ventricular-tachyarrhythmia");
    }

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap() + chrono::Duration::minutes(minute)
    }

    const PROGRAMS: [Program; 5] = [
        Program::Diabetes,
        Program::Cardiac,
        Program::Respiratory,
        Program::PostSurgery,
        Program::GeneralVitals,
    ];

    #[test]
    fn every_default_plan_is_valid_and_round_trips() {
        let baseline = PatientBaseline {
            peak_flow_personal_best_l_min: Some(450.0),
        };
        for program in PROGRAMS {
            let plan = CarePlan::from_program(PatientId::random(), program, &baseline, at(0));
            plan.validate().unwrap();
            for rule in &plan.rules {
                rule.validate_limits().unwrap();
                consistent_with(rule, None, &plan.rules)
                    .unwrap_or_else(|error| panic!("{program:?}: {error}"));
            }
            assert!(!plan.rules.is_empty(), "{program:?}");
            let json = serde_json::to_string(&plan).unwrap();
            assert_eq!(serde_json::from_str::<CarePlan>(&json).unwrap(), plan);
        }
        let with_peak_flow = default_rules(Program::Respiratory, &baseline).len();
        let without = default_rules(Program::Respiratory, &PatientBaseline::default()).len();
        assert_eq!(with_peak_flow, without + 3);
    }

    fn diabetes_history() -> (CarePlanHistory, UserId) {
        let author = UserId::random();
        let plan = CarePlan::from_program(
            PatientId::random(),
            Program::Diabetes,
            &PatientBaseline::default(),
            at(0),
        );
        (
            CarePlanHistory::enrol(plan, author, "enrolled").unwrap(),
            author,
        )
    }

    fn raised_low(value: f64) -> Rule {
        Rule::new(
            "low",
            "low glucose",
            Priority::Medium,
            true,
            threshold(
                ObservationCode::GlucoseCgm,
                Direction::Below,
                value,
                900,
                10.0,
            ),
        )
    }

    #[test]
    fn an_edit_to_a_limit_no_reading_can_reach_is_refused() {
        let (mut history, author) = diabetes_history();
        let error = history
            .apply(CarePlanChange {
                author,
                at: at(1),
                reason: "earlier warning".into(),
                edit: RuleEdit::Replace {
                    rule: raised_low(7075.0),
                },
            })
            .unwrap_err()
            .to_string();
        assert!(error.contains("can measure"), "{error}");
        assert_eq!(history.versions().len(), 1, "nothing was added");
    }

    /// The illogical plans a clinician once saved: a low limit above the high one, an
    /// urgent low above the low, and an urgent low no CGM reports.
    #[test]
    fn an_edit_that_does_not_fit_the_other_limits_is_refused() {
        let (mut history, author) = diabetes_history();
        let mut urgent = history
            .current()
            .rule(&RuleId::new("urgent-low"))
            .unwrap()
            .clone();
        let mut refused = |rule: Rule| {
            let error = history
                .apply(CarePlanChange {
                    author,
                    at: at(1),
                    reason: "earlier warning".into(),
                    edit: RuleEdit::Replace { rule },
                })
                .unwrap_err()
                .to_string();
            assert_eq!(history.versions().len(), 1, "nothing was added: {error}");
            error
        };
        let error = refused(raised_low(300.0));
        assert!(
            error.contains("\"low glucose\" (medium priority, below 300 mg/dL) is not under \"high glucose\" (low priority, above 250 mg/dL)"),
            "{error}"
        );
        if let RuleKind::Threshold(limit) = &mut urgent.kind {
            limit.value = 80.0;
        }
        let error = refused(urgent.clone());
        assert!(
            error.contains("\"low glucose\" (medium priority, below 70 mg/dL) is further out than \"urgent low glucose\" (high priority, below 80 mg/dL) but less urgent"),
            "{error}"
        );
        if let RuleKind::Threshold(limit) = &mut urgent.kind {
            limit.value = 10.0;
        }
        let error = refused(urgent);
        assert!(
            error.contains("outside the limits an alarm on") && error.contains("(40 to 400 mg/dL)"),
            "{error}"
        );
        // A sensible change still goes through.
        history
            .apply(CarePlanChange {
                author,
                at: at(1),
                reason: "hypoglycaemia unawareness".into(),
                edit: RuleEdit::Replace {
                    rule: raised_low(80.0),
                },
            })
            .unwrap();
        // An extra alert, more urgent than a more extreme one, is a choice, not a slip.
        history
            .apply(CarePlanChange {
                author,
                at: at(2),
                reason: "ketoacidosis last month".into(),
                edit: RuleEdit::Add {
                    rule: Rule::new(
                        "early-very-high",
                        "glucose above 300",
                        Priority::High,
                        true,
                        threshold(
                            ObservationCode::GlucoseCgm,
                            Direction::Above,
                            300.0,
                            0,
                            10.0,
                        ),
                    ),
                },
            })
            .unwrap();
    }

    #[test]
    fn edits_make_versions_and_the_past_can_be_reconstructed() {
        let (mut history, author) = diabetes_history();
        let change = |minute, edit| CarePlanChange {
            author,
            at: at(minute),
            reason: "patient has hypoglycaemia unawareness".into(),
            edit,
        };
        assert_eq!(
            history
                .apply(change(
                    60,
                    RuleEdit::Replace {
                        rule: raised_low(80.0)
                    }
                ))
                .unwrap(),
            2
        );
        let removed = RuleEdit::Remove {
            rule_id: RuleId::new("falling-fast"),
        };
        assert_eq!(history.apply(change(120, removed)).unwrap(), 3);

        let version_2 = &history.versions()[1];
        assert_eq!(version_2.author, author);
        assert!(matches!(
            &version_2.old_rule.as_ref().unwrap().kind,
            RuleKind::Threshold(t) if t.value == 70.0
        ));
        assert!(matches!(
            &version_2.new_rule.as_ref().unwrap().kind,
            RuleKind::Threshold(t) if t.value == 80.0
        ));

        assert!(history.in_force_at(at(-1)).is_none());
        let low_at = |minute| {
            let plan = history.in_force_at(at(minute)).unwrap();
            let RuleKind::Threshold(t) = &plan.rule(&RuleId::new("low")).unwrap().kind else {
                panic!("low is a threshold");
            };
            (plan.version, t.value)
        };
        assert_eq!(low_at(0), (1, 70.0));
        assert_eq!(low_at(59), (1, 70.0));
        assert_eq!(low_at(60), (2, 80.0));
        assert_eq!(low_at(500), (3, 80.0));
        assert!(
            history
                .in_force_at(at(119))
                .unwrap()
                .rule(&RuleId::new("falling-fast"))
                .is_some()
        );
        assert!(
            history
                .current()
                .rule(&RuleId::new("falling-fast"))
                .is_none()
        );

        let json = serde_json::to_string(&history).unwrap();
        assert_eq!(
            serde_json::from_str::<CarePlanHistory>(&json).unwrap(),
            history
        );
    }

    #[test]
    fn bad_edits_are_refused_and_leave_the_history_alone() {
        let (mut history, author) = diabetes_history();
        let change = |minute, reason: &str, edit| CarePlanChange {
            author,
            at: at(minute),
            reason: reason.into(),
            edit,
        };
        let refused = [
            change(
                10,
                "",
                RuleEdit::Replace {
                    rule: raised_low(80.0),
                },
            ),
            change(
                -10,
                "why",
                RuleEdit::Replace {
                    rule: raised_low(80.0),
                },
            ),
            change(
                10,
                "why",
                RuleEdit::Add {
                    rule: raised_low(80.0),
                },
            ),
            change(
                10,
                "why",
                RuleEdit::Replace {
                    rule: raised_low(70.0),
                },
            ),
            change(
                10,
                "why",
                RuleEdit::Replace {
                    rule: raised_low(f64::NAN),
                },
            ),
            change(
                10,
                "why",
                RuleEdit::Remove {
                    rule_id: RuleId::new("nope"),
                },
            ),
        ];
        for bad in refused {
            assert!(history.apply(bad.clone()).is_err(), "{bad:?}");
        }
        assert_eq!(history.versions().len(), 1);
    }
}
