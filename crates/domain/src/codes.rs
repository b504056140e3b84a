//! The observation codes Wardline understands (LOINC), the one canonical UCUM unit each
//! is stored in, the units a device may send instead, and the range of values that can
//! physically occur. Codes and units come from the FHIR vital-signs value set, the HL7
//! CGM implementation guide and the table in our research notes (anchors-features §3.4).

use serde::Serialize;

/// A unit a device may send for a code, and how to turn it into the canonical unit.
#[derive(Debug, Clone, Copy)]
pub struct AcceptedUnit {
    pub ucum: &'static str,
    pub to_canonical: Conversion,
}

/// A linear conversion `canonical = value * scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conversion {
    pub scale: f64,
    pub offset: f64,
}

impl Conversion {
    pub const IDENTITY: Conversion = Conversion {
        scale: 1.0,
        offset: 0.0,
    };

    pub fn apply(self, value: f64) -> f64 {
        value * self.scale + self.offset
    }
}

/// One observation code and its rules.
#[derive(Debug, Clone, Copy)]
pub struct CodeSpec {
    pub code: ObservationCode,
    pub loinc: &'static str,
    pub display: &'static str,
    /// The UCUM unit values are stored in.
    pub canonical_unit: &'static str,
    /// Units accepted from devices, the canonical one first.
    pub accepted_units: &'static [AcceptedUnit],
    /// Values outside this closed range (in the canonical unit) cannot be real
    /// measurements and are rejected rather than stored.
    pub possible_range: (f64, f64),
}

/// mg/dL per mmol/L of glucose (molar mass 180.156 g/mol), the factor Tidepool uses too.
pub const GLUCOSE_MG_DL_PER_MMOL_L: f64 = 18.0156;

const fn unit(ucum: &'static str, scale: f64, offset: f64) -> AcceptedUnit {
    AcceptedUnit {
        ucum,
        to_canonical: Conversion { scale, offset },
    }
}

const PER_MIN: &[AcceptedUnit] = &[unit("/min", 1.0, 0.0), unit("{beats}/min", 1.0, 0.0)];
const BREATHS_PER_MIN: &[AcceptedUnit] = &[unit("/min", 1.0, 0.0), unit("{breaths}/min", 1.0, 0.0)];
const PERCENT: &[AcceptedUnit] = &[unit("%", 1.0, 0.0)];
const CELSIUS: &[AcceptedUnit] = &[
    unit("Cel", 1.0, 0.0),
    // (°F − 32) × 5/9
    unit("[degF]", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
];
const MM_HG: &[AcceptedUnit] = &[unit("mm[Hg]", 1.0, 0.0), unit("kPa", 7.500_616_8, 0.0)];
const GLUCOSE: &[AcceptedUnit] = &[
    unit("mg/dL", 1.0, 0.0),
    unit("mmol/L", GLUCOSE_MG_DL_PER_MMOL_L, 0.0),
];
const KILOGRAM: &[AcceptedUnit] = &[
    unit("kg", 1.0, 0.0),
    unit("g", 0.001, 0.0),
    unit("[lb_av]", 0.453_592_37, 0.0),
];
const LITRE_PER_MIN: &[AcceptedUnit] = &[unit("L/min", 1.0, 0.0)];
const MILLISECOND: &[AcceptedUnit] = &[unit("ms", 1.0, 0.0), unit("s", 1000.0, 0.0)];
const CENTIMETRE: &[AcceptedUnit] = &[
    unit("cm", 1.0, 0.0),
    unit("m", 100.0, 0.0),
    unit("[in_i]", 2.54, 0.0),
];
const KG_PER_M2: &[AcceptedUnit] = &[unit("kg/m2", 1.0, 0.0)];

/// The codes Wardline stores.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservationCode {
    HeartRate,
    OxygenSaturation,
    OxygenSaturationPulseOximetry,
    BodyTemperature,
    RespiratoryRate,
    SystolicBloodPressure,
    DiastolicBloodPressure,
    GlucoseCgm,
    GlucoseMeter,
    GlucoseBlood,
    BodyWeight,
    PeakExpiratoryFlow,
    RrInterval,
    // Appended, never inserted: a code's place in the catalogue is part of the `seq` of
    // readings that carry none of their own (`ObservationCode::seq_at`).
    MeanBloodPressure,
    BodyHeight,
    BodyMassIndex,
}

/// Every code with its rules, in one table so that adding a code is one line.
pub const CATALOGUE: &[CodeSpec] = &[
    spec(
        ObservationCode::HeartRate,
        "8867-4",
        "Heart rate",
        "/min",
        PER_MIN,
        (0.0, 350.0),
    ),
    spec(
        ObservationCode::OxygenSaturation,
        "2708-6",
        "Oxygen saturation in arterial blood",
        "%",
        PERCENT,
        (0.0, 100.0),
    ),
    spec(
        ObservationCode::OxygenSaturationPulseOximetry,
        "59408-5",
        "Oxygen saturation in arterial blood by pulse oximetry",
        "%",
        PERCENT,
        (0.0, 100.0),
    ),
    spec(
        ObservationCode::BodyTemperature,
        "8310-5",
        "Body temperature",
        "Cel",
        CELSIUS,
        (20.0, 46.0),
    ),
    spec(
        ObservationCode::RespiratoryRate,
        "9279-1",
        "Respiratory rate",
        "/min",
        BREATHS_PER_MIN,
        (0.0, 120.0),
    ),
    spec(
        ObservationCode::SystolicBloodPressure,
        "8480-6",
        "Systolic blood pressure",
        "mm[Hg]",
        MM_HG,
        (20.0, 320.0),
    ),
    spec(
        ObservationCode::DiastolicBloodPressure,
        "8462-4",
        "Diastolic blood pressure",
        "mm[Hg]",
        MM_HG,
        (5.0, 250.0),
    ),
    spec(
        ObservationCode::GlucoseCgm,
        "99504-3",
        "Glucose [Mass/volume] in Interstitial fluid (CGM)",
        "mg/dL",
        GLUCOSE,
        (10.0, 1000.0),
    ),
    spec(
        ObservationCode::GlucoseMeter,
        "41653-7",
        "Glucose [Mass/volume] in Capillary blood by Glucometer",
        "mg/dL",
        GLUCOSE,
        (10.0, 1000.0),
    ),
    spec(
        ObservationCode::GlucoseBlood,
        "2339-0",
        "Glucose [Mass/volume] in Blood",
        "mg/dL",
        GLUCOSE,
        (10.0, 2000.0),
    ),
    spec(
        ObservationCode::BodyWeight,
        "29463-7",
        "Body weight",
        "kg",
        KILOGRAM,
        (0.2, 700.0),
    ),
    spec(
        ObservationCode::PeakExpiratoryFlow,
        "19935-6",
        "Peak expiratory flow",
        "L/min",
        LITRE_PER_MIN,
        (10.0, 1200.0),
    ),
    spec(
        ObservationCode::RrInterval,
        "8637-1",
        "R-R interval by EKG",
        "ms",
        MILLISECOND,
        (100.0, 10_000.0),
    ),
    spec(
        ObservationCode::MeanBloodPressure,
        "8478-0",
        "Mean blood pressure",
        "mm[Hg]",
        MM_HG,
        (0.0, 300.0),
    ),
    spec(
        ObservationCode::BodyHeight,
        "8302-2",
        "Body height",
        "cm",
        CENTIMETRE,
        (20.0, 280.0),
    ),
    spec(
        ObservationCode::BodyMassIndex,
        "39156-5",
        "Body mass index (BMI) [Ratio]",
        "kg/m2",
        KG_PER_M2,
        (5.0, 150.0),
    ),
];

/// Molar LOINC codes a device may send; they are stored under their mass twin in mg/dL.
const MOLAR_ALIASES: &[(&str, ObservationCode)] = &[
    ("105272-9", ObservationCode::GlucoseCgm),
    ("14743-9", ObservationCode::GlucoseMeter),
    ("15074-8", ObservationCode::GlucoseBlood),
];

/// The code a LOINC code a device may send is stored under: its own, or for a molar
/// glucose code its mass twin.
pub fn accepted_code(loinc: &str) -> Option<ObservationCode> {
    ObservationCode::from_loinc(loinc).or_else(|| {
        MOLAR_ALIASES
            .iter()
            .find(|(alias, _)| *alias == loinc)
            .map(|(_, code)| *code)
    })
}

#[allow(clippy::too_many_arguments)]
const fn spec(
    code: ObservationCode,
    loinc: &'static str,
    display: &'static str,
    canonical_unit: &'static str,
    accepted_units: &'static [AcceptedUnit],
    possible_range: (f64, f64),
) -> CodeSpec {
    CodeSpec {
        code,
        loinc,
        display,
        canonical_unit,
        accepted_units,
        possible_range,
    }
}

/// Why a value cannot be stored under a code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnitError {
    #[error("unknown code {0:?}: not one of the LOINC codes Wardline accepts")]
    UnknownCode(String),
    #[error("unit {unit:?} does not fit code {loinc} ({display}); accepted: {accepted}")]
    UnitMismatch {
        unit: String,
        loinc: &'static str,
        display: &'static str,
        accepted: String,
    },
    #[error("{value} {unit} is not a finite number")]
    NotFinite { value: f64, unit: String },
    #[error("{value} {unit} is outside the possible range {min}–{max} {unit} for {display}")]
    Impossible {
        value: f64,
        unit: &'static str,
        min: f64,
        max: f64,
        display: &'static str,
    },
}

impl ObservationCode {
    /// The `seq` of a reading whose message carries none of its own (a templated
    /// device's JSON, a FHIR Observation): made of its time and code, so the same
    /// measurement sent again is the same reading (a retry), and readings of different
    /// codes at one instant never collide. Milliseconds since the epoch times 32 stay far
    /// inside an i64 for any plausible time; the code's place in the catalogue is the
    /// rest, which is why codes are only ever appended to it.
    pub fn seq_at(self, effective: chrono::DateTime<chrono::Utc>) -> i64 {
        let index = CATALOGUE
            .iter()
            .position(|spec| spec.code == self)
            .unwrap_or(0) as i64;
        effective
            .timestamp_millis()
            .saturating_mul(32)
            .saturating_add(index)
    }

    pub fn spec(self) -> &'static CodeSpec {
        // The catalogue lists every variant; the fallback is unreachable but keeps this total.
        CATALOGUE
            .iter()
            .find(|spec| spec.code == self)
            .unwrap_or(&CATALOGUE[0])
    }

    pub fn loinc(self) -> &'static str {
        self.spec().loinc
    }

    /// Finds a code by its canonical LOINC code (not the molar aliases).
    pub fn from_loinc(loinc: &str) -> Option<Self> {
        CATALOGUE
            .iter()
            .find(|spec| spec.loinc == loinc)
            .map(|spec| spec.code)
    }
}

/// A value normalised to its code's canonical unit, with what the device sent.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalisedValue {
    pub code: ObservationCode,
    pub value: f64,
    /// The value and unit as sent, when they differ from the canonical ones.
    pub original: Option<(f64, String)>,
}

/// Normalises a device's `(code, value, unit)` to the canonical unit and checks it is possible.
pub fn normalise(loinc: &str, value: f64, unit: &str) -> Result<NormalisedValue, UnitError> {
    let code = accepted_code(loinc).ok_or_else(|| UnitError::UnknownCode(loinc.to_owned()))?;
    let spec = code.spec();
    let accepted = spec
        .accepted_units
        .iter()
        .find(|accepted| accepted.ucum == unit)
        .ok_or_else(|| UnitError::UnitMismatch {
            unit: unit.to_owned(),
            loinc: spec.loinc,
            display: spec.display,
            accepted: spec
                .accepted_units
                .iter()
                .map(|accepted| accepted.ucum)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    if !value.is_finite() {
        return Err(UnitError::NotFinite {
            value,
            unit: unit.to_owned(),
        });
    }
    let canonical = accepted.to_canonical.apply(value);
    let (min, max) = spec.possible_range;
    if !(min..=max).contains(&canonical) {
        return Err(UnitError::Impossible {
            value: canonical,
            unit: spec.canonical_unit,
            min,
            max,
            display: spec.display,
        });
    }
    let original = (accepted.to_canonical != Conversion::IDENTITY || unit != spec.canonical_unit)
        .then(|| (value, unit.to_owned()));
    Ok(NormalisedValue {
        code,
        value: canonical,
        original,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seq_made_of_time_and_code_never_collides_across_codes() {
        // `seq_at` keeps five bits for the code's place in the catalogue.
        assert!(CATALOGUE.len() <= 32, "{} codes", CATALOGUE.len());
        let at = chrono::DateTime::from_timestamp(1_765_000_000, 0).unwrap();
        let mut seqs: Vec<i64> = CATALOGUE.iter().map(|spec| spec.code.seq_at(at)).collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), CATALOGUE.len());
        assert_eq!(
            ObservationCode::HeartRate.seq_at(at + chrono::Duration::milliseconds(1)),
            ObservationCode::HeartRate.seq_at(at) + 32
        );
    }

    #[test]
    fn every_code_is_in_the_catalogue_once() {
        for spec in CATALOGUE {
            assert_eq!(spec.code.spec().loinc, spec.loinc);
            assert_eq!(spec.accepted_units[0].ucum, spec.canonical_unit);
            assert_eq!(
                CATALOGUE
                    .iter()
                    .filter(|other| other.loinc == spec.loinc)
                    .count(),
                1
            );
        }
    }

    #[test]
    fn every_loinc_code_passes_its_check_digit() {
        // LOINC's mod-10 check digit (Luhn over the digits before the hyphen).
        for loinc in CATALOGUE
            .iter()
            .map(|spec| spec.loinc)
            .chain(MOLAR_ALIASES.iter().map(|(alias, _)| *alias))
        {
            let (body, check) = loinc.split_once('-').unwrap();
            let mut sum = 0;
            for (position, digit) in body.bytes().rev().enumerate() {
                let mut d = u32::from(digit - b'0');
                if position % 2 == 0 {
                    d *= 2;
                    if d > 9 {
                        d -= 9;
                    }
                }
                sum += d;
            }
            let expected = (10 - sum % 10) % 10;
            assert_eq!(check, expected.to_string(), "check digit of {loinc}");
        }
    }

    #[test]
    fn glucose_in_mmol_is_stored_in_mg_dl_with_the_original_kept() {
        let normalised = normalise("99504-3", 5.5, "mmol/L").unwrap();
        assert_eq!(normalised.code, ObservationCode::GlucoseCgm);
        assert!((normalised.value - 99.0858).abs() < 1e-3);
        assert_eq!(normalised.original, Some((5.5, "mmol/L".to_owned())));
        let molar_code = normalise("105272-9", 5.5, "mmol/L").unwrap();
        assert_eq!(molar_code.code, ObservationCode::GlucoseCgm);
    }

    #[test]
    fn fahrenheit_becomes_celsius() {
        let normalised = normalise("8310-5", 98.6, "[degF]").unwrap();
        assert!((normalised.value - 37.0).abs() < 1e-9);
        let canonical = normalise("8310-5", 37.2, "Cel").unwrap();
        assert_eq!(canonical.original, None);
    }

    #[test]
    fn impossible_values_and_wrong_units_are_refused() {
        assert!(matches!(
            normalise("59408-5", 140.0, "%"),
            Err(UnitError::Impossible { .. })
        ));
        assert!(matches!(
            normalise("8867-4", -5.0, "/min"),
            Err(UnitError::Impossible { .. })
        ));
        assert!(matches!(
            normalise("8867-4", 70.0, "mg/dL"),
            Err(UnitError::UnitMismatch { .. })
        ));
        assert!(matches!(
            normalise("1234-5", 1.0, "%"),
            Err(UnitError::UnknownCode(_))
        ));
        assert!(matches!(
            normalise("8867-4", f64::NAN, "/min"),
            Err(UnitError::NotFinite { .. })
        ));
    }
}
