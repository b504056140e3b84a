//! Continuous glucose monitoring (CGM) analytics, glucose in mg/dL.
//!
//! Sources of the definitions:
//! * Metrics, targets and episode definitions: Battelino T et al., "Clinical
//!   Targets for Continuous Glucose Monitoring Data Interpretation:
//!   Recommendations From the International Consensus on Time in Range",
//!   Diabetes Care 2019;42:1593-1603 (ranges 54/70/180/250 mg/dL, level 1 and
//!   level 2 events of >= 15 consecutive minutes, the AGP with 5/25/50/75/95
//!   percentiles).
//! * Percentages are percent of valid readings (no time weighting), as the R
//!   package iglu (Broll et al., PLoS ONE 2021) computes them, which is how
//!   `shared/data/cgm/expected.csv` was produced.
//! * GMI: Bergenstal RM et al., Diabetes Care 2018;41:2275-2280.
//!
//! # Time
//! A [`GlucoseReading`]'s `timestamp` is whole seconds of the device's local
//! wall clock counted from 1970-01-01T00:00:00 *as if it were UTC* (CGM exports
//! carry no zone). Time of day for the AGP is therefore
//! `timestamp.rem_euclid(86_400)`, which is the clock time the patient saw.

mod agp;
mod episodes;
mod metrics;
mod parse;

pub use agp::{AgpBin, AmbulatoryGlucoseProfile, ambulatory_glucose_profile, percentile};
pub use episodes::{
    Episode, EpisodeEnd, EpisodeKind, EpisodeReport, EpisodeRule, detect_episodes, glucose_episodes,
};
pub use metrics::{ConsensusMetrics, consensus_metrics};
pub use parse::{
    CgmImport, DEXCOM_HIGH_MG_DL, DEXCOM_LOW_MG_DL, ImportedKind, ImportedReading,
    LIBRE_HIGH_MG_DL, LIBRE_LOW_MG_DL, RefusedRow, format_timestamp, import_dexcom_clarity,
    import_libreview, parse_common_csv, parse_dexcom_clarity, parse_timestamp,
};

use serde::{Deserialize, Serialize};

use crate::AnalyticsError;

/// Seconds in one day.
pub const SECONDS_PER_DAY: i64 = 86_400;

/// The usual interval between readings of Dexcom G4/G6/G7 and most CGMs.
pub const FIVE_MINUTES: i64 = 300;

/// Largest timestamp magnitude accepted (about 34,000 years either side of
/// 1970): generous for any clock, small enough that time arithmetic can never
/// overflow.
pub const MAX_ABS_TIMESTAMP: i64 = 1 << 40;

/// Checks a timestamp and a glucose value coming from outside.
pub(crate) fn check_reading(
    timestamp: i64,
    glucose_mg_dl: Option<f64>,
) -> Result<(), AnalyticsError> {
    if timestamp.unsigned_abs() > MAX_ABS_TIMESTAMP.unsigned_abs() {
        return Err(AnalyticsError::OutOfRange {
            parameter: "timestamp",
            value: timestamp as f64,
            min: -(MAX_ABS_TIMESTAMP as f64),
            max: MAX_ABS_TIMESTAMP as f64,
        });
    }
    match glucose_mg_dl {
        Some(g) if !(g.is_finite() && g > 0.0 && g <= MAX_PLAUSIBLE_MG_DL) => {
            Err(AnalyticsError::OutOfRange {
                parameter: "glucose_mg_dl",
                value: g,
                min: 0.0,
                max: MAX_PLAUSIBLE_MG_DL,
            })
        }
        _ => Ok(()),
    }
}

/// Anything above this is a corrupt value, not a reading: no CGM reports it.
pub const MAX_PLAUSIBLE_MG_DL: f64 = 1000.0;

/// One CGM reading: when, and the glucose in mg/dL if the sensor gave one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GlucoseReading {
    /// Local wall-clock seconds since 1970-01-01T00:00:00 (see the module docs).
    pub timestamp: i64,
    /// `None` when the source recorded a reading slot without a value.
    pub glucose_mg_dl: Option<f64>,
}

impl GlucoseReading {
    /// A reading with a value.
    pub fn new(timestamp: i64, glucose_mg_dl: f64) -> Self {
        Self {
            timestamp,
            glucose_mg_dl: Some(glucose_mg_dl),
        }
    }
}

/// A patient's readings in time order.
///
/// The order is an invariant every consumer (episodes, AGP, forecasting)
/// relies on, so it is established once here rather than checked everywhere.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GlucoseSeries {
    readings: Vec<GlucoseReading>,
}

impl GlucoseSeries {
    /// Sorts the readings by time (equal timestamps keep their order). Fails
    /// on a timestamp beyond [`MAX_ABS_TIMESTAMP`] or a glucose that is not a
    /// positive finite value up to [`MAX_PLAUSIBLE_MG_DL`].
    pub fn new(mut readings: Vec<GlucoseReading>) -> Result<Self, AnalyticsError> {
        for r in &readings {
            check_reading(r.timestamp, r.glucose_mg_dl)?;
        }
        readings.sort_by_key(|r| r.timestamp);
        Ok(Self { readings })
    }

    /// All readings, oldest first.
    pub fn readings(&self) -> &[GlucoseReading] {
        &self.readings
    }

    /// Readings that carry a glucose value, as `(timestamp, mg/dL)`, oldest first.
    pub fn valid(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.readings
            .iter()
            .filter_map(|r| r.glucose_mg_dl.map(|g| (r.timestamp, g)))
    }

    /// The readings with `from <= timestamp < until`, for metrics over a period.
    pub fn period(&self, from: i64, until: i64) -> GlucoseSeries {
        let start = self.readings.partition_point(|r| r.timestamp < from);
        let end = self.readings.partition_point(|r| r.timestamp < until);
        let readings = self.readings.get(start..end.max(start)).unwrap_or_default();
        GlucoseSeries {
            readings: readings.to_vec(),
        }
    }

    /// Number of readings, valid or not.
    pub fn len(&self) -> usize {
        self.readings.len()
    }

    /// True when there is no reading at all.
    pub fn is_empty(&self) -> bool {
        self.readings.is_empty()
    }
}

impl TryFrom<Vec<GlucoseReading>> for GlucoseSeries {
    type Error = AnalyticsError;

    fn try_from(readings: Vec<GlucoseReading>) -> Result<Self, AnalyticsError> {
        Self::new(readings)
    }
}
