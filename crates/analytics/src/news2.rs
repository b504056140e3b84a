//! National Early Warning Score 2 (NEWS2).
//!
//! Source: Royal College of Physicians, "National Early Warning Score (NEWS)
//! 2: Standardising the assessment of acute-illness severity in the NHS",
//! updated report of a working party, London: RCP, 2017. Chart 1 (scoring
//! table) and Chart 2 (clinical risk: 0-4 low; a 3 in any single parameter
//! low-medium; 5-6 medium; >= 7 high). Scale 2 SpO2 is for confirmed
//! hypercapnic respiratory failure only, as prescribed by a clinician.
//!
//! An observation set with a parameter missing gives a [`News2::Partial`]:
//! it lists what is missing and only offers a *minimum* total and risk,
//! because the missing parameters can only add points.

use serde::{Deserialize, Serialize};

use crate::AnalyticsError;

/// Which SpO2 scoring scale the clinician prescribed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpO2Scale {
    /// Everyone else (target 94-98 %).
    #[default]
    Scale1,
    /// Hypercapnic respiratory failure (target 88-92 %).
    Scale2,
}

/// What the patient breathes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InspiredAir {
    /// Room air.
    Air,
    /// Any supplemental oxygen.
    SupplementalOxygen,
}

/// ACVPU.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consciousness {
    /// Alert.
    Alert,
    /// New confusion (or new disorientation / agitation).
    NewConfusion,
    /// Responds to voice.
    Voice,
    /// Responds to pain.
    Pain,
    /// Unresponsive.
    Unresponsive,
}

/// One set of observations; `None` means not measured.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct News2Observations {
    /// Breaths per minute.
    pub respiration_rate: Option<u16>,
    /// Oxygen saturation, %.
    pub spo2_percent: Option<u16>,
    /// Scoring scale for SpO2.
    pub spo2_scale: SpO2Scale,
    /// Air or supplemental oxygen.
    pub inspired_air: Option<InspiredAir>,
    /// Systolic blood pressure, mmHg.
    pub systolic_bp_mmhg: Option<u16>,
    /// Pulse, beats per minute.
    pub pulse_per_min: Option<u16>,
    /// ACVPU level.
    pub consciousness: Option<Consciousness>,
    /// Temperature, degrees Celsius (scored at one decimal, as charted).
    pub temperature_c: Option<f64>,
}

/// The seven NEWS2 parameters.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum News2Parameter {
    /// Respiration rate.
    RespirationRate,
    /// SpO2.
    Spo2,
    /// Air or oxygen.
    AirOrOxygen,
    /// Systolic blood pressure.
    SystolicBp,
    /// Pulse.
    Pulse,
    /// Consciousness.
    Consciousness,
    /// Temperature.
    Temperature,
}

/// Clinical risk (RCP Chart 2).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClinicalRisk {
    /// Aggregate 0-4 and no single parameter scoring 3.
    Low,
    /// A single parameter scoring 3, aggregate below 5.
    LowMedium,
    /// Aggregate 5-6.
    Medium,
    /// Aggregate 7 or more.
    High,
}

/// Sub-scores of a complete observation set.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct News2SubScores {
    /// Respiration rate, 0-3.
    pub respiration_rate: u8,
    /// SpO2 on the prescribed scale, 0-3.
    pub spo2: u8,
    /// Air 0, oxygen 2.
    pub air_or_oxygen: u8,
    /// Systolic BP, 0-3.
    pub systolic_bp: u8,
    /// Pulse, 0-3.
    pub pulse: u8,
    /// Alert 0, CVPU 3.
    pub consciousness: u8,
    /// Temperature, 0-3.
    pub temperature: u8,
}

/// Sub-scores that could be computed; `None` where an input is missing.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PartialSubScores {
    /// Respiration rate.
    pub respiration_rate: Option<u8>,
    /// SpO2 (also `None` on Scale 2 at >= 93 % when air/oxygen is unknown).
    pub spo2: Option<u8>,
    /// Air or oxygen.
    pub air_or_oxygen: Option<u8>,
    /// Systolic BP.
    pub systolic_bp: Option<u8>,
    /// Pulse.
    pub pulse: Option<u8>,
    /// Consciousness.
    pub consciousness: Option<u8>,
    /// Temperature.
    pub temperature: Option<u8>,
}

impl PartialSubScores {
    fn entries(&self) -> [(News2Parameter, Option<u8>); 7] {
        [
            (News2Parameter::RespirationRate, self.respiration_rate),
            (News2Parameter::Spo2, self.spo2),
            (News2Parameter::AirOrOxygen, self.air_or_oxygen),
            (News2Parameter::SystolicBp, self.systolic_bp),
            (News2Parameter::Pulse, self.pulse),
            (News2Parameter::Consciousness, self.consciousness),
            (News2Parameter::Temperature, self.temperature),
        ]
    }

    fn complete(&self) -> Option<News2SubScores> {
        Some(News2SubScores {
            respiration_rate: self.respiration_rate?,
            spo2: self.spo2?,
            air_or_oxygen: self.air_or_oxygen?,
            systolic_bp: self.systolic_bp?,
            pulse: self.pulse?,
            consciousness: self.consciousness?,
            temperature: self.temperature?,
        })
    }
}

/// A NEWS2 from a complete observation set.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct News2Score {
    /// Aggregate score, 0-20.
    pub total: u8,
    /// Per-parameter scores.
    pub sub_scores: News2SubScores,
    /// True when any single parameter scores 3 (a "red" score).
    pub any_parameter_3: bool,
    /// Clinical risk band.
    pub risk: ClinicalRisk,
}

/// What can be said about an incomplete observation set. There is no `total`
/// and no `risk`: only lower bounds, because every missing parameter could
/// still add up to 3 points.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartialNews2 {
    /// Parameters that could not be scored.
    pub missing: Vec<News2Parameter>,
    /// Scores of the parameters that were measured.
    pub sub_scores: PartialSubScores,
    /// Sum of the known sub-scores: the complete total is at least this.
    pub minimum_total: u8,
    /// True when a measured parameter already scores 3.
    pub any_parameter_3: bool,
    /// The complete set's risk is at least this band.
    pub minimum_risk: ClinicalRisk,
}

/// The outcome of scoring; match on it to tell complete from partial.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum News2 {
    /// Every parameter was measured.
    Complete(News2Score),
    /// At least one parameter was missing.
    Partial(PartialNews2),
}

impl News2 {
    /// The score, only when complete.
    pub fn complete(&self) -> Option<&News2Score> {
        match self {
            Self::Complete(score) => Some(score),
            Self::Partial(_) => None,
        }
    }
}

/// Risk band from an aggregate and the single-parameter flag (RCP Chart 2).
pub fn clinical_risk(total: u8, any_parameter_3: bool) -> ClinicalRisk {
    match total {
        7.. => ClinicalRisk::High,
        5..=6 => ClinicalRisk::Medium,
        _ if any_parameter_3 => ClinicalRisk::LowMedium,
        _ => ClinicalRisk::Low,
    }
}

/// Scores one observation set. Values outside the accepted ranges (see
/// [`check_ranges`]) are errors, not scores: they are entry or device faults.
pub fn score_news2(observations: &News2Observations) -> Result<News2, AnalyticsError> {
    check_ranges(observations)?;
    let sub_scores = sub_scores(observations);
    let known = sub_scores.entries();
    let minimum_total = known.iter().filter_map(|(_, s)| *s).sum::<u8>();
    let any_parameter_3 = known.iter().any(|(_, s)| *s == Some(3));
    Ok(match sub_scores.complete() {
        Some(sub_scores) => News2::Complete(News2Score {
            total: minimum_total,
            sub_scores,
            any_parameter_3,
            risk: clinical_risk(minimum_total, any_parameter_3),
        }),
        None => News2::Partial(PartialNews2 {
            missing: known
                .iter()
                .filter(|(_, s)| s.is_none())
                .map(|(p, _)| *p)
                .collect(),
            sub_scores,
            minimum_total,
            any_parameter_3,
            minimum_risk: clinical_risk(minimum_total, any_parameter_3),
        }),
    })
}

/// Accepted ranges: respiration 1-80 /min, SpO2 40-100 %, systolic BP
/// 30-300 mmHg, pulse 20-300 /min, temperature 25.0-45.0 C. Outside them a
/// value is far more likely a typo or a probe fault than a patient, and
/// scoring it would hide that.
pub fn check_ranges(o: &News2Observations) -> Result<(), AnalyticsError> {
    let integer_checks = [
        ("respiration_rate", o.respiration_rate, 1, 80),
        ("spo2_percent", o.spo2_percent, 40, 100),
        ("systolic_bp_mmhg", o.systolic_bp_mmhg, 30, 300),
        ("pulse_per_min", o.pulse_per_min, 20, 300),
    ];
    for (parameter, value, min, max) in integer_checks {
        if let Some(v) = value
            && !(min..=max).contains(&v)
        {
            return Err(out_of_range(
                parameter,
                f64::from(v),
                min.into(),
                max.into(),
            ));
        }
    }
    if let Some(t) = o.temperature_c
        && !(25.0..=45.0).contains(&t)
    {
        return Err(out_of_range("temperature_c", t, 25.0, 45.0));
    }
    Ok(())
}

fn out_of_range(parameter: &'static str, value: f64, min: f64, max: f64) -> AnalyticsError {
    AnalyticsError::OutOfRange {
        parameter,
        value,
        min,
        max,
    }
}

fn sub_scores(o: &News2Observations) -> PartialSubScores {
    PartialSubScores {
        respiration_rate: o.respiration_rate.map(respiration_score),
        spo2: o
            .spo2_percent
            .and_then(|s| spo2_score(s, o.spo2_scale, o.inspired_air)),
        air_or_oxygen: o.inspired_air.map(|air| match air {
            InspiredAir::Air => 0,
            InspiredAir::SupplementalOxygen => 2,
        }),
        systolic_bp: o.systolic_bp_mmhg.map(systolic_score),
        pulse: o.pulse_per_min.map(pulse_score),
        consciousness: o.consciousness.map(|c| match c {
            Consciousness::Alert => 0,
            _ => 3,
        }),
        temperature: o.temperature_c.map(temperature_score),
    }
}

/// Respiration rate: <=8: 3, 9-11: 1, 12-20: 0, 21-24: 2, >=25: 3.
pub fn respiration_score(rate: u16) -> u8 {
    match rate {
        ..=8 => 3,
        9..=11 => 1,
        12..=20 => 0,
        21..=24 => 2,
        25.. => 3,
    }
}

/// SpO2 score. On Scale 2 a saturation of 93 % or more scores 0 on air and
/// 1-3 on oxygen, so it is unknown (`None`) when air/oxygen is unknown.
pub fn spo2_score(spo2: u16, scale: SpO2Scale, air: Option<InspiredAir>) -> Option<u8> {
    match scale {
        SpO2Scale::Scale1 => Some(match spo2 {
            ..=91 => 3,
            92..=93 => 2,
            94..=95 => 1,
            96.. => 0,
        }),
        SpO2Scale::Scale2 => match (spo2, air) {
            (..=83, _) => Some(3),
            (84..=85, _) => Some(2),
            (86..=87, _) => Some(1),
            (88..=92, _) => Some(0),
            (_, None) => None,
            (_, Some(InspiredAir::Air)) => Some(0),
            (93..=94, Some(InspiredAir::SupplementalOxygen)) => Some(1),
            (95..=96, Some(InspiredAir::SupplementalOxygen)) => Some(2),
            (97.., Some(InspiredAir::SupplementalOxygen)) => Some(3),
        },
    }
}

/// Systolic BP: <=90: 3, 91-100: 2, 101-110: 1, 111-219: 0, >=220: 3.
pub fn systolic_score(mmhg: u16) -> u8 {
    match mmhg {
        ..=90 => 3,
        91..=100 => 2,
        101..=110 => 1,
        111..=219 => 0,
        220.. => 3,
    }
}

/// Pulse: <=40: 3, 41-50: 1, 51-90: 0, 91-110: 1, 111-130: 2, >=131: 3.
pub fn pulse_score(per_min: u16) -> u8 {
    match per_min {
        ..=40 => 3,
        41..=50 => 1,
        51..=90 => 0,
        91..=110 => 1,
        111..=130 => 2,
        131.. => 3,
    }
}

/// Temperature, scored at one decimal as charted: <=35.0: 3, 35.1-36.0: 1,
/// 36.1-38.0: 0, 38.1-39.0: 1, >=39.1: 2.
pub fn temperature_score(celsius: f64) -> u8 {
    // Whole tenths avoid 36.0 vs 36.04 floating-point edge effects.
    let tenths = (celsius * 10.0).round() as i32;
    match tenths {
        ..=350 => 3,
        351..=360 => 1,
        361..=380 => 0,
        381..=390 => 1,
        391.. => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> News2Observations {
        News2Observations {
            respiration_rate: Some(16),
            spo2_percent: Some(97),
            spo2_scale: SpO2Scale::Scale1,
            inspired_air: Some(InspiredAir::Air),
            systolic_bp_mmhg: Some(120),
            pulse_per_min: Some(70),
            consciousness: Some(Consciousness::Alert),
            temperature_c: Some(37.0),
        }
    }

    #[test]
    fn respiration_band_edges() {
        let cases = [
            (8, 3),
            (9, 1),
            (11, 1),
            (12, 0),
            (20, 0),
            (21, 2),
            (24, 2),
            (25, 3),
        ];
        for (rate, score) in cases {
            assert_eq!(respiration_score(rate), score, "rate {rate}");
        }
    }

    #[test]
    fn spo2_scale1_band_edges() {
        let cases = [
            (91, 3),
            (92, 2),
            (93, 2),
            (94, 1),
            (95, 1),
            (96, 0),
            (100, 0),
        ];
        for (spo2, score) in cases {
            assert_eq!(spo2_score(spo2, SpO2Scale::Scale1, None), Some(score));
        }
    }

    #[test]
    fn spo2_scale2_band_edges() {
        let o2 = Some(InspiredAir::SupplementalOxygen);
        let air = Some(InspiredAir::Air);
        let cases = [
            (83, o2, Some(3)),
            (84, o2, Some(2)),
            (85, air, Some(2)),
            (86, air, Some(1)),
            (87, o2, Some(1)),
            (88, o2, Some(0)),
            (92, o2, Some(0)),
            (93, air, Some(0)),
            (100, air, Some(0)),
            (93, o2, Some(1)),
            (94, o2, Some(1)),
            (95, o2, Some(2)),
            (96, o2, Some(2)),
            (97, o2, Some(3)),
            (93, None, None),
            (92, None, Some(0)),
        ];
        for (spo2, inspired, score) in cases {
            assert_eq!(
                spo2_score(spo2, SpO2Scale::Scale2, inspired),
                score,
                "{spo2} {inspired:?}"
            );
        }
    }

    #[test]
    fn systolic_pulse_and_temperature_band_edges() {
        let sbp = [
            (90, 3),
            (91, 2),
            (100, 2),
            (101, 1),
            (110, 1),
            (111, 0),
            (219, 0),
            (220, 3),
        ];
        for (mmhg, score) in sbp {
            assert_eq!(systolic_score(mmhg), score, "sbp {mmhg}");
        }
        let pulse = [
            (40, 3),
            (41, 1),
            (50, 1),
            (51, 0),
            (90, 0),
            (91, 1),
            (110, 1),
            (111, 2),
            (130, 2),
            (131, 3),
        ];
        for (rate, score) in pulse {
            assert_eq!(pulse_score(rate), score, "pulse {rate}");
        }
        let temp = [
            (35.0, 3),
            (35.1, 1),
            (36.0, 1),
            (36.1, 0),
            (38.0, 0),
            (38.1, 1),
            (39.0, 1),
            (39.1, 2),
        ];
        for (celsius, score) in temp {
            assert_eq!(temperature_score(celsius), score, "temperature {celsius}");
        }
    }

    #[test]
    fn risk_bands() {
        assert_eq!(clinical_risk(0, false), ClinicalRisk::Low);
        assert_eq!(clinical_risk(4, false), ClinicalRisk::Low);
        assert_eq!(clinical_risk(3, true), ClinicalRisk::LowMedium);
        assert_eq!(clinical_risk(4, true), ClinicalRisk::LowMedium);
        assert_eq!(clinical_risk(5, true), ClinicalRisk::Medium);
        assert_eq!(clinical_risk(6, false), ClinicalRisk::Medium);
        assert_eq!(clinical_risk(7, false), ClinicalRisk::High);
        assert_eq!(clinical_risk(20, true), ClinicalRisk::High);
    }

    #[test]
    fn oxygen_and_consciousness_score() {
        let mut o = healthy();
        o.inspired_air = Some(InspiredAir::SupplementalOxygen);
        o.consciousness = Some(Consciousness::NewConfusion);
        let score = score_news2(&o).unwrap();
        let score = score.complete().unwrap();
        assert_eq!(score.total, 5);
        assert_eq!(score.sub_scores.air_or_oxygen, 2);
        assert!(score.any_parameter_3);
        assert_eq!(score.risk, ClinicalRisk::Medium);
    }

    #[test]
    fn missing_parameters_give_a_partial_result() {
        let mut o = healthy();
        o.pulse_per_min = None;
        o.temperature_c = None;
        o.respiration_rate = Some(26);
        let News2::Partial(partial) = score_news2(&o).unwrap() else {
            panic!("a set with missing parameters must be partial");
        };
        assert_eq!(
            partial.missing,
            [News2Parameter::Pulse, News2Parameter::Temperature]
        );
        assert_eq!(partial.minimum_total, 3);
        assert_eq!(partial.minimum_risk, ClinicalRisk::LowMedium);

        let scale2 = News2Observations {
            spo2_scale: SpO2Scale::Scale2,
            inspired_air: None,
            ..healthy()
        };
        let News2::Partial(partial) = score_news2(&scale2).unwrap() else {
            panic!("unknown oxygen on scale 2 must be partial");
        };
        assert_eq!(
            partial.missing,
            [News2Parameter::Spo2, News2Parameter::AirOrOxygen]
        );
    }

    #[test]
    fn implausible_values_are_errors() {
        let bad = [
            News2Observations {
                spo2_percent: Some(101),
                ..healthy()
            },
            News2Observations {
                respiration_rate: Some(0),
                ..healthy()
            },
            News2Observations {
                pulse_per_min: Some(400),
                ..healthy()
            },
            News2Observations {
                systolic_bp_mmhg: Some(10),
                ..healthy()
            },
            News2Observations {
                temperature_c: Some(f64::NAN),
                ..healthy()
            },
            News2Observations {
                temperature_c: Some(50.0),
                ..healthy()
            },
        ];
        for o in bad {
            assert!(
                matches!(score_news2(&o), Err(AnalyticsError::OutOfRange { .. })),
                "{o:?}"
            );
        }
    }

    #[test]
    fn partial_serialises_without_a_total() {
        let json =
            serde_json::to_value(score_news2(&News2Observations::default()).unwrap()).unwrap();
        assert_eq!(json["status"], "partial");
        assert!(json.get("total").is_none() && json.get("risk").is_none());
    }
}
