//! Glucose forecasts 30 minutes ahead at 5-minute CGM cadence.
//!
//! Three methods share one streaming [`Forecaster`]:
//! * [`ForecastMethod::Persistence`]: glucose stays where it is.
//! * [`ForecastMethod::Ar2`]: Nightscout's AR2 predictor (nightscout/
//!   cgm-remote-monitor `lib/plugins/ar2.js`): in `y = ln(BG / 140)` space,
//!   `y[k+1] = -0.723 y[k-1] + 1.716 y[k]`, seeded with the current glucose
//!   and the mean of the readings about 5 minutes earlier, six 5-minute
//!   steps, each point rounded and clamped to 36..=400 mg/dL.
//! * [`ForecastMethod::AdaptiveRegression`]: Wardline's own, see
//!   [`adaptive`](self#adaptive-regression) below.
//!
//! # Gaps
//! A forecast is issued only when the latest reading follows the previous one
//! within [`MAX_GAP_SECS`] (10 minutes plus 30 s of device clock jitter, so a
//! single missed reading is tolerated and a longer silence is not bridged).
//! History used for features is interpolated only between readings at most
//! that far apart.
//!
//! # Adaptive regression
//! A direct multi-horizon linear model fitted per patient, online, on that
//! patient's own past only. For each horizon h = 5..30 min it predicts the
//! change `g(t + h) - g(t)` from the last 30 minutes resampled on a 5-minute
//! grid (six successive differences, which carry level noise and trend), the
//! distance of the current glucose from the patient's slow moving average
//! (post-meal and overnight excursions revert toward it) and a constant.
//! Coefficients are a ridge regression shrunk toward a population prior (the
//! same regression pooled over the shared CGM datasets, each dataset weighing
//! the same; [`fit_population_prior`]), with exponential forgetting (half-life
//! about 5 days), so a new patient starts as the population's forecaster and
//! becomes personal as outcomes arrive, within about a day. The patient's moving
//! average starts at 140 mg/dL, not at their first reading. Until the first 30
//! minutes of history exist, the forecast is a damped trend (0.8 per step). A
//! training pair is only formed when its outcome reading has actually been
//! pushed: no look-ahead is possible.
//!
//! "Predicted low" means any of the six forecast points is below
//! [`LOW_MG_DL`].

mod adaptive;
mod evaluate;

pub use adaptive::{Coefficients, FEATURES};
pub use evaluate::{
    ForecastEvaluation, MethodEvaluation, evaluate_first_day, evaluate_forecasts,
    evaluate_with_prior,
};

use std::collections::VecDeque;

use serde::Serialize;

use crate::AnalyticsError;
use adaptive::AdaptiveModel;

/// Forecast step.
pub const STEP_SECS: i64 = 300;
/// Number of steps: 6 x 5 min = 30 min.
pub const HORIZON_STEPS: usize = 6;
/// Longest interval between readings still treated as continuous.
pub const MAX_GAP_SECS: i64 = 630;
/// Threshold of a predicted low, mg/dL.
pub const LOW_MG_DL: f64 = 70.0;

const AR2_REFERENCE_MG_DL: f64 = 140.0;
const AR2_COEFFICIENTS: [f64; 2] = [-0.723, 1.716];
const FORECAST_MIN_MG_DL: f64 = 36.0;
const FORECAST_MAX_MG_DL: f64 = 400.0;
/// History kept: the feature window plus room for interpolation.
const HISTORY_SECS: i64 = 45 * 60;

/// Which predictor a [`Forecaster`] runs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ForecastMethod {
    /// Last value carried forward.
    Persistence,
    /// Nightscout AR2.
    Ar2,
    /// Wardline's per-patient adaptive regression.
    AdaptiveRegression,
}

/// Six forecast points, 5 to 30 minutes after `issued_at`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// Method that produced it.
    pub method: ForecastMethod,
    /// Timestamp of the reading the forecast starts from.
    pub issued_at: i64,
    /// Glucose at `issued_at + 5 min * (i + 1)`, mg/dL.
    pub points_mg_dl: [f64; HORIZON_STEPS],
}

impl Forecast {
    /// The 30-minute point.
    pub fn at_30_min(&self) -> f64 {
        self.points_mg_dl[HORIZON_STEPS - 1]
    }

    /// True when any point is below 70 mg/dL.
    pub fn predicted_low(&self) -> bool {
        self.points_mg_dl.iter().any(|g| *g < LOW_MG_DL)
    }
}

/// A per-patient streaming forecaster: push readings in time order, ask for
/// the forecast from the latest one.
#[derive(Debug, Clone)]
pub struct Forecaster {
    method: ForecastMethod,
    history: VecDeque<(i64, f64)>,
    adaptive: AdaptiveModel,
}

impl Forecaster {
    /// A forecaster with no history.
    pub fn new(method: ForecastMethod) -> Self {
        Self {
            method,
            history: VecDeque::new(),
            adaptive: AdaptiveModel::new(),
        }
    }

    /// An adaptive-regression forecaster whose model starts from `prior` rather than
    /// the population prior Wardline ships: for validating the prior on patients it was
    /// not fitted on.
    pub fn with_prior(prior: &Coefficients) -> Self {
        Self {
            method: ForecastMethod::AdaptiveRegression,
            history: VecDeque::new(),
            adaptive: AdaptiveModel::with_prior(prior),
        }
    }

    /// The method it runs.
    pub fn method(&self) -> ForecastMethod {
        self.method
    }

    /// Adds a reading. Readings must come in strictly increasing time;
    /// glucose must be a positive finite mg/dL value.
    pub fn push(&mut self, timestamp: i64, glucose_mg_dl: f64) -> Result<(), AnalyticsError> {
        if let Some(&(previous, _)) = self.history.back()
            && timestamp <= previous
        {
            return Err(AnalyticsError::OutOfOrder {
                timestamp,
                previous,
            });
        }
        crate::cgm::check_reading(timestamp, Some(glucose_mg_dl))?;
        self.history.push_back((timestamp, glucose_mg_dl));
        while self
            .history
            .front()
            .is_some_and(|&(t, _)| t < timestamp - HISTORY_SECS)
        {
            self.history.pop_front();
        }
        if self.method == ForecastMethod::AdaptiveRegression {
            self.adaptive.observe(&self.history);
        }
        Ok(())
    }

    /// The forecast from the latest reading, or `None` when there is no
    /// reading yet, the latest follows a gap, or the method lacks history.
    pub fn forecast(&self) -> Option<Forecast> {
        let &(now, current) = self.history.back()?;
        let &(before, _) = self.history.iter().rev().nth(1)?;
        if now - before > MAX_GAP_SECS {
            return None;
        }
        let points = match self.method {
            ForecastMethod::Persistence => [current; HORIZON_STEPS],
            ForecastMethod::Ar2 => ar2_points(&self.history)?,
            ForecastMethod::AdaptiveRegression => self.adaptive.predict(&self.history)?,
        };
        Some(Forecast {
            method: self.method,
            issued_at: now,
            points_mg_dl: points,
        })
    }
}

/// The population prior every new patient's adaptive regression starts from.
pub fn population_prior() -> &'static Coefficients {
    &adaptive::POPULATION_PRIOR
}

/// Fits the coefficients every new patient's adaptive regression starts from: the
/// regression pooled over `series` (each replayed as live, so no pair sees its future).
/// Each series comes with its group (its dataset: a device and a population), and every
/// group weighs the same, however many readings it has, so that the prior is not the
/// largest study's sensor. What `wardline validate forecast-prior` prints, and what the
/// constant in `adaptive.rs` holds, fitted on the shared CGM data.
pub fn fit_population_prior(
    series: &[(String, crate::cgm::GlucoseSeries)],
) -> adaptive::Coefficients {
    let mut readings_per_group: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::new();
    for (group, one) in series {
        *readings_per_group.entry(group).or_default() += one.valid().count();
    }
    // Each group's pairs weigh together what an average group's would: the total weight
    // stays the number of readings, so the light ridge of the fit means what it says.
    let total: usize = readings_per_group.values().sum();
    let per_group = total as f64 / readings_per_group.len().max(1) as f64;
    let mut horizons = None;
    for (group, one) in series {
        let readings = readings_per_group
            .get(group.as_str())
            .copied()
            .unwrap_or(1)
            .max(1);
        let weight = per_group / readings as f64;
        let mut forecaster = Forecaster::new(ForecastMethod::AdaptiveRegression);
        forecaster.adaptive = AdaptiveModel::pooling(horizons.take(), weight);
        for (timestamp, glucose) in one.valid() {
            // Equal timestamps are refused; the replay skips them as evaluation does.
            let _ = forecaster.push(timestamp, glucose);
        }
        horizons = Some(forecaster.adaptive.into_horizons());
    }
    let mut horizons =
        horizons.unwrap_or_else(|| AdaptiveModel::pooling(None, 1.0).into_horizons());
    adaptive::pooled_coefficients(&mut horizons)
}

/// Nightscout AR2 from the latest reading and the mean of the readings in the
/// bucket 2.5 to 7.5 minutes before it.
fn ar2_points(history: &VecDeque<(i64, f64)>) -> Option<[f64; HORIZON_STEPS]> {
    let &(now, current) = history.back()?;
    let bucket: Vec<f64> = history
        .iter()
        .filter(|(t, _)| (now - t) >= STEP_SECS / 2 && (now - t) < STEP_SECS * 3 / 2)
        .map(|(_, g)| *g)
        .collect();
    if bucket.is_empty() {
        return None;
    }
    let five_minutes_ago = bucket.iter().sum::<f64>() / bucket.len() as f64;
    let mut previous = (five_minutes_ago / AR2_REFERENCE_MG_DL).ln();
    let mut latest = (current / AR2_REFERENCE_MG_DL).ln();
    let mut points = [0.0; HORIZON_STEPS];
    for point in &mut points {
        let next = AR2_COEFFICIENTS[0] * previous + AR2_COEFFICIENTS[1] * latest;
        previous = latest;
        latest = next;
        *point = (AR2_REFERENCE_MG_DL * next.exp())
            .round()
            .clamp(FORECAST_MIN_MG_DL, FORECAST_MAX_MG_DL);
    }
    Some(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ar2_extrapolates_a_fall_and_persistence_does_not() {
        let mut ar2 = Forecaster::new(ForecastMethod::Ar2);
        let mut flat = Forecaster::new(ForecastMethod::Persistence);
        for (i, g) in [120.0, 110.0, 100.0].iter().enumerate() {
            ar2.push(i as i64 * 300, *g).unwrap();
            flat.push(i as i64 * 300, *g).unwrap();
        }
        // ln(110/140) and ln(100/140) stepped by hand: 140 * exp(-0.403) = 93.6.
        let forecast = ar2.forecast().unwrap();
        assert_eq!(forecast.points_mg_dl[0], 94.0);
        assert!(forecast.points_mg_dl.windows(2).all(|w| w[1] <= w[0]));
        assert!(forecast.at_30_min() < 90.0 && !forecast.predicted_low());
        assert_eq!(flat.forecast().unwrap().at_30_min(), 100.0);
    }

    #[test]
    fn no_forecast_across_a_gap_and_out_of_order_is_an_error() {
        let mut f = Forecaster::new(ForecastMethod::Ar2);
        f.push(0, 100.0).unwrap();
        f.push(1200, 100.0).unwrap();
        assert_eq!(f.forecast(), None);
        assert!(matches!(
            f.push(600, 90.0),
            Err(AnalyticsError::OutOfOrder { .. })
        ));
        assert!(f.push(1500, f64::NAN).is_err());
    }
}
