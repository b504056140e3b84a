//! The International Consensus (Battelino 2019) summary of a CGM period.

use serde::Serialize;

use super::{GlucoseSeries, SECONDS_PER_DAY};
use crate::AnalyticsError;

/// Consensus metrics over one period. Percentages are percent of *valid
/// readings*: missing values are excluded, readings are not time-weighted,
/// interpolated or de-duplicated (iglu's convention).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsensusMetrics {
    /// Readings in the period, with or without a value.
    pub n_readings: usize,
    /// Readings with a glucose value.
    pub n_valid: usize,
    /// Timestamp of the first valid reading.
    pub first: i64,
    /// Timestamp of the last valid reading.
    pub last: i64,
    /// `(last - first)` in days: the span, not the wear time.
    pub span_days: f64,
    /// Wear: `100 * n_valid / expected`, where `expected = floor((last - first)
    /// / sensor_interval) + 1` is how many readings a sensor that never dropped
    /// out would have produced between the first and last valid reading;
    /// capped at 100 (a sensor can read slightly faster than nominal).
    pub percent_time_active: f64,
    /// Mean glucose, mg/dL.
    pub mean_mg_dl: f64,
    /// Sample standard deviation (n - 1), mg/dL; `None` with a single reading.
    pub sd_mg_dl: Option<f64>,
    /// Population standard deviation (n), mg/dL.
    pub sd_pop_mg_dl: f64,
    /// Coefficient of variation with the sample SD, %.
    pub cv_pct: Option<f64>,
    /// Coefficient of variation with the population SD, %.
    pub cv_pop_pct: f64,
    /// Glucose management indicator, % (3.31 + 0.02392 * mean mg/dL).
    pub gmi_pct: f64,
    /// Time in range, 70 <= g <= 180 mg/dL.
    pub tir_70_180_pct: f64,
    /// Time below range, g < 70 (includes < 54).
    pub tbr_lt70_pct: f64,
    /// Level 2 hypoglycaemia, g < 54.
    pub tbr_lt54_pct: f64,
    /// Level 1 hypoglycaemia, 54 <= g < 70.
    pub tbr_54_69_pct: f64,
    /// Time above range, g > 180 (includes > 250).
    pub tar_gt180_pct: f64,
    /// Level 2 hyperglycaemia, g > 250.
    pub tar_gt250_pct: f64,
    /// Level 1 hyperglycaemia, 180 < g <= 250.
    pub tar_181_250_pct: f64,
    /// Lowest reading, mg/dL.
    pub min_mg_dl: f64,
    /// Highest reading, mg/dL.
    pub max_mg_dl: f64,
}

/// Computes the consensus metrics of a series (use [`GlucoseSeries::period`]
/// for a sub-period). `sensor_interval_secs` is the device's nominal interval
/// (300 for Dexcom), used only for `percent_time_active`.
pub fn consensus_metrics(
    series: &GlucoseSeries,
    sensor_interval_secs: i64,
) -> Result<ConsensusMetrics, AnalyticsError> {
    if sensor_interval_secs <= 0 {
        return Err(AnalyticsError::InvalidSetting(
            "the sensor interval must be positive",
        ));
    }
    let values: Vec<f64> = series.valid().map(|(_, g)| g).collect();
    let (first, last) = match (series.valid().next(), series.valid().last()) {
        (Some((first, _)), Some((last, _))) => (first, last),
        _ => {
            return Err(AnalyticsError::InsufficientData(
                "no valid glucose reading in the period",
            ));
        }
    };
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let squares: f64 = values.iter().map(|g| (g - mean).powi(2)).sum();
    let sd_pop = (squares / n).sqrt();
    let sd = (values.len() > 1).then(|| (squares / (n - 1.0)).sqrt());
    let percent =
        |keep: fn(f64) -> bool| 100.0 * values.iter().filter(|g| keep(**g)).count() as f64 / n;
    let expected = ((last - first) / sensor_interval_secs + 1) as f64;
    Ok(ConsensusMetrics {
        n_readings: series.len(),
        n_valid: values.len(),
        first,
        last,
        span_days: (last - first) as f64 / SECONDS_PER_DAY as f64,
        percent_time_active: (100.0 * n / expected).min(100.0),
        mean_mg_dl: mean,
        sd_mg_dl: sd,
        sd_pop_mg_dl: sd_pop,
        cv_pct: sd.map(|sd| 100.0 * sd / mean),
        cv_pop_pct: 100.0 * sd_pop / mean,
        gmi_pct: 3.31 + 0.02392 * mean,
        tir_70_180_pct: percent(|g| (70.0..=180.0).contains(&g)),
        tbr_lt70_pct: percent(|g| g < 70.0),
        tbr_lt54_pct: percent(|g| g < 54.0),
        tbr_54_69_pct: percent(|g| (54.0..70.0).contains(&g)),
        tar_gt180_pct: percent(|g| g > 180.0),
        tar_gt250_pct: percent(|g| g > 250.0),
        tar_181_250_pct: percent(|g| g > 180.0 && g <= 250.0),
        min_mg_dl: values.iter().copied().fold(f64::INFINITY, f64::min),
        max_mg_dl: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgm::GlucoseReading;

    fn series(values: &[Option<f64>]) -> GlucoseSeries {
        GlucoseSeries::new(
            values
                .iter()
                .enumerate()
                .map(|(i, g)| GlucoseReading {
                    timestamp: i as i64 * 300,
                    glucose_mg_dl: *g,
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn band_edges_follow_the_consensus() {
        let s = series(&[
            Some(53.0),
            Some(54.0),
            Some(69.0),
            Some(70.0),
            Some(180.0),
            Some(181.0),
            Some(250.0),
            Some(251.0),
            None,
            Some(100.0),
            Some(100.0),
        ]);
        let m = consensus_metrics(&s, 300).unwrap();
        assert_eq!((m.n_readings, m.n_valid), (11, 10));
        assert_eq!(m.tbr_lt54_pct, 10.0);
        assert_eq!(m.tbr_54_69_pct, 20.0);
        assert_eq!(m.tbr_lt70_pct, 30.0);
        assert_eq!(m.tir_70_180_pct, 40.0);
        assert_eq!(m.tar_181_250_pct, 20.0);
        assert_eq!(m.tar_gt250_pct, 10.0);
        assert_eq!(m.tar_gt180_pct, 30.0);
        assert!((m.percent_time_active - 100.0 * 10.0 / 11.0).abs() < 1e-9);
    }

    #[test]
    fn gmi_matches_the_worked_example_and_empty_is_an_error() {
        let m = consensus_metrics(&series(&[Some(150.0)]), 300).unwrap();
        assert!((m.gmi_pct - 6.898).abs() < 1e-9);
        assert_eq!(m.sd_mg_dl, None);
        assert!(consensus_metrics(&series(&[None]), 300).is_err());
        assert!(consensus_metrics(&series(&[Some(1.0)]), 0).is_err());
    }
}
