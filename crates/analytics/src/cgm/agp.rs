//! Ambulatory glucose profile (AGP): glucose percentiles by time of day over
//! a "modal day" that stacks all days of the period (Battelino 2019; the
//! AGP report of the International Diabetes Center, agpreport.org).
//!
//! Percentile method: linear interpolation between order statistics,
//! `h = (n - 1) p`, i.e. Hyndman & Fan type 7, the default of R's `quantile`
//! and of NumPy, so the bands agree with iglu's `agp` output.

use serde::Serialize;

use super::{GlucoseSeries, SECONDS_PER_DAY};
use crate::AnalyticsError;

/// One time-of-day bin of the modal day.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgpBin {
    /// Start of the bin, minutes after midnight.
    pub start_minute: u32,
    /// Valid readings that fell in the bin over all days.
    pub n: usize,
    /// 5th, 25th, 50th, 75th and 95th percentiles, mg/dL; `None` when `n == 0`.
    pub percentiles: Option<[f64; 5]>,
}

/// The AGP of a period.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AmbulatoryGlucoseProfile {
    /// Width of each bin, minutes.
    pub bin_minutes: u32,
    /// The percentiles that `AgpBin::percentiles` holds, in order.
    pub levels: [f64; 5],
    /// Bins from midnight on.
    pub bins: Vec<AgpBin>,
}

const AGP_LEVELS: [f64; 5] = [0.05, 0.25, 0.50, 0.75, 0.95];

/// Builds the AGP with bins of `bin_minutes` (5 or 15 are usual); the bin
/// width must divide the 1440 minutes of a day.
pub fn ambulatory_glucose_profile(
    series: &GlucoseSeries,
    bin_minutes: u32,
) -> Result<AmbulatoryGlucoseProfile, AnalyticsError> {
    if bin_minutes == 0 || 1440 % bin_minutes != 0 {
        return Err(AnalyticsError::InvalidSetting(
            "the AGP bin width must divide 1440 minutes",
        ));
    }
    let bin_count = (1440 / bin_minutes) as usize;
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); bin_count];
    for (timestamp, glucose) in series.valid() {
        let minute = timestamp.rem_euclid(SECONDS_PER_DAY) / 60;
        let index = (minute as usize / bin_minutes as usize).min(bin_count - 1);
        if let Some(bin) = values.get_mut(index) {
            bin.push(glucose);
        }
    }
    let bins = values
        .into_iter()
        .zip((0..).step_by(bin_minutes as usize))
        .map(|(mut bin, start_minute)| {
            bin.sort_by(f64::total_cmp);
            AgpBin {
                start_minute,
                n: bin.len(),
                percentiles: percentiles_of_sorted(&bin),
            }
        })
        .collect();
    Ok(AmbulatoryGlucoseProfile {
        bin_minutes,
        levels: AGP_LEVELS,
        bins,
    })
}

fn percentiles_of_sorted(sorted: &[f64]) -> Option<[f64; 5]> {
    let mut out = [0.0; 5];
    for (slot, level) in out.iter_mut().zip(AGP_LEVELS) {
        *slot = percentile(sorted, level)?;
    }
    Some(out)
}

/// The `p`-quantile (0 <= p <= 1) of ascending `sorted` values, type 7;
/// `None` for an empty slice or a `p` outside [0, 1].
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&p) {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * p;
    let below = h.floor() as usize;
    let lower = *sorted.get(below)?;
    let upper = *sorted.get(below + 1).unwrap_or(&lower);
    Some(lower + (h - below as f64) * (upper - lower))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgm::GlucoseReading;

    #[test]
    fn percentile_matches_r_type_7() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&v, 0.5), Some(5.5));
        assert!((percentile(&v, 0.05).unwrap() - 1.45).abs() < 1e-12);
        assert!((percentile(&v, 0.95).unwrap() - 9.55).abs() < 1e-12);
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&v, 1.5), None);
    }

    #[test]
    fn readings_fall_in_their_clock_bin_across_days() {
        let readings = (0..3)
            .flat_map(|day| {
                [
                    GlucoseReading::new(day * SECONDS_PER_DAY + 60, 100.0 + day as f64),
                    GlucoseReading::new(day * SECONDS_PER_DAY + 12 * 3600, 200.0),
                ]
            })
            .collect();
        let agp = ambulatory_glucose_profile(&GlucoseSeries::new(readings).unwrap(), 15).unwrap();
        assert_eq!(agp.bins.len(), 96);
        assert_eq!(agp.bins[0].n, 3);
        assert_eq!(agp.bins[0].percentiles.unwrap()[2], 101.0);
        assert_eq!(agp.bins[48].n, 3);
        assert_eq!(agp.bins[1].percentiles, None);
        assert!(ambulatory_glucose_profile(&GlucoseSeries::default(), 7).is_err());
    }
}
