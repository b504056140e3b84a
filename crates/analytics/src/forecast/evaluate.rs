//! Offline evaluation of the forecasters on a recorded series, replaying it
//! reading by reading exactly as they would run live.
//!
//! Scored points: every valid reading from which *all three* methods issued a
//! forecast and that has an actual reading within 2.5 minutes of 30 minutes
//! later; all methods are scored on the same points.
//! * RMSE and MARD of the 30-minute point against that actual reading.
//! * Predicted-low sensitivity: among scored points where glucose was still
//!   at or above 70 mg/dL and some reading in the next 30 minutes went below
//!   70, the share where the forecast predicted a low.
//! * False alerts: an alert is raised when a forecast predicts a low while the
//!   previous forecast did not (one notification per alert, as an alarm
//!   would); it is false when glucose was at or above 70 at the time and no
//!   reading of the next 30 minutes went below 70. Counted per day of scored
//!   forecasts
//!   (points x 5 min).

use serde::Serialize;

use super::{
    Coefficients, Forecast, ForecastMethod, Forecaster, HORIZON_STEPS, LOW_MG_DL, STEP_SECS,
};
use crate::cgm::{GlucoseSeries, SECONDS_PER_DAY};

const HORIZON_SECS: i64 = STEP_SECS * HORIZON_STEPS as i64;
const MATCH_TOLERANCE_SECS: i64 = STEP_SECS / 2;

/// Accuracy of one method; the sums make results poolable across patients.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodEvaluation {
    /// Method scored.
    pub method: ForecastMethod,
    /// Scored forecasts.
    pub n: usize,
    /// Sum of squared 30-minute errors, (mg/dL)^2.
    pub sum_squared_error: f64,
    /// Sum of absolute relative 30-minute errors (fraction).
    pub sum_relative_error: f64,
    /// Scored points with glucose >= 70 followed by a low within 30 minutes.
    pub lows_ahead: usize,
    /// Of those, how many the forecast predicted.
    pub lows_predicted: usize,
    /// Alerts raised that no low followed.
    pub false_alerts: usize,
    /// Root-mean-square error at 30 minutes, mg/dL.
    pub rmse_30_mg_dl: f64,
    /// Mean absolute relative difference at 30 minutes, %.
    pub mard_30_pct: f64,
    /// `lows_predicted / lows_ahead`; `None` without lows.
    pub low_sensitivity: Option<f64>,
    /// False alerts per day of scored forecasts.
    pub false_alerts_per_day: f64,
}

impl MethodEvaluation {
    fn empty(method: ForecastMethod) -> Self {
        Self {
            method,
            n: 0,
            sum_squared_error: 0.0,
            sum_relative_error: 0.0,
            lows_ahead: 0,
            lows_predicted: 0,
            false_alerts: 0,
            rmse_30_mg_dl: f64::NAN,
            mard_30_pct: f64::NAN,
            low_sensitivity: None,
            false_alerts_per_day: f64::NAN,
        }
    }

    /// Adds another evaluation of the same method (e.g. another patient).
    pub fn pool(&self, other: &MethodEvaluation) -> MethodEvaluation {
        Self {
            n: self.n + other.n,
            sum_squared_error: self.sum_squared_error + other.sum_squared_error,
            sum_relative_error: self.sum_relative_error + other.sum_relative_error,
            lows_ahead: self.lows_ahead + other.lows_ahead,
            lows_predicted: self.lows_predicted + other.lows_predicted,
            false_alerts: self.false_alerts + other.false_alerts,
            ..self.clone()
        }
        .with_rates()
    }

    fn with_rates(mut self) -> Self {
        let n = self.n as f64;
        let days = n * STEP_SECS as f64 / SECONDS_PER_DAY as f64;
        self.rmse_30_mg_dl = (self.sum_squared_error / n).sqrt();
        self.mard_30_pct = 100.0 * self.sum_relative_error / n;
        self.low_sensitivity =
            (self.lows_ahead > 0).then(|| self.lows_predicted as f64 / self.lows_ahead as f64);
        self.false_alerts_per_day = self.false_alerts as f64 / days;
        self
    }
}

/// Persistence, AR2 and the adaptive regression scored on the same points.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastEvaluation {
    /// Last value carried forward.
    pub persistence: MethodEvaluation,
    /// Nightscout AR2.
    pub ar2: MethodEvaluation,
    /// Wardline's adaptive regression.
    pub adaptive: MethodEvaluation,
}

impl ForecastEvaluation {
    /// Pools two evaluations (e.g. two patients) method by method.
    pub fn pool(&self, other: &ForecastEvaluation) -> ForecastEvaluation {
        Self {
            persistence: self.persistence.pool(&other.persistence),
            ar2: self.ar2.pool(&other.ar2),
            adaptive: self.adaptive.pool(&other.adaptive),
        }
    }

    /// An evaluation with nothing scored, the neutral element of [`Self::pool`].
    pub fn empty() -> Self {
        Self {
            persistence: MethodEvaluation::empty(ForecastMethod::Persistence),
            ar2: MethodEvaluation::empty(ForecastMethod::Ar2),
            adaptive: MethodEvaluation::empty(ForecastMethod::AdaptiveRegression),
        }
    }
}

/// Replays `series` through the three forecasters and scores them.
pub fn evaluate_forecasts(series: &GlucoseSeries) -> ForecastEvaluation {
    evaluate(series, None, None)
}

/// [`evaluate_forecasts`] scored on the first day of the series only (the forecasters
/// run from the first reading, as for a new sensor or a new patient): how they do before
/// they have learnt anything about the patient.
pub fn evaluate_first_day(series: &GlucoseSeries) -> ForecastEvaluation {
    evaluate(series, Some(SECONDS_PER_DAY), None)
}

/// [`evaluate_forecasts`] and [`evaluate_first_day`] with the adaptive regression
/// starting from `prior` (fitted without this series' group, say).
pub fn evaluate_with_prior(
    series: &GlucoseSeries,
    prior: &Coefficients,
) -> (ForecastEvaluation, ForecastEvaluation) {
    (
        evaluate(series, None, Some(prior)),
        evaluate(series, Some(SECONDS_PER_DAY), Some(prior)),
    )
}

/// Replays the whole series; scores the points within `scored_for` seconds of its first
/// reading (all of them when `None`).
fn evaluate(
    series: &GlucoseSeries,
    scored_for: Option<i64>,
    prior: Option<&Coefficients>,
) -> ForecastEvaluation {
    let readings: Vec<(i64, f64)> = series.valid().collect();
    let scored_until = match (scored_for, readings.first()) {
        (Some(seconds), Some(&(first, _))) => first.saturating_add(seconds),
        _ => i64::MAX,
    };
    let methods = [
        ForecastMethod::Persistence,
        ForecastMethod::Ar2,
        ForecastMethod::AdaptiveRegression,
    ];
    let mut forecasters = methods.map(|method| match (method, prior) {
        (ForecastMethod::AdaptiveRegression, Some(prior)) => Forecaster::with_prior(prior),
        _ => Forecaster::new(method),
    });
    let mut scores = methods.map(MethodEvaluation::empty);
    let mut alerting = [false; 3];
    for (index, &(timestamp, glucose)) in readings.iter().enumerate() {
        let mut forecasts: [Option<Forecast>; 3] = [None, None, None];
        for (forecaster, forecast) in forecasters.iter_mut().zip(&mut forecasts) {
            // Equal timestamps are rejected by the forecaster; the replay skips them.
            if forecaster.push(timestamp, glucose).is_ok() {
                *forecast = forecaster.forecast();
            }
        }
        let outcome = Outcome::after(&readings, index);
        for ((forecast, score), alert) in forecasts.iter().zip(&mut scores).zip(&mut alerting) {
            let raised = forecast.as_ref().is_some_and(|f| f.predicted_low()) && !*alert;
            *alert = forecast.as_ref().is_some_and(Forecast::predicted_low);
            if let (Some(outcome), Some(forecast), true) = (
                &outcome,
                forecast,
                forecasts.iter().all(Option::is_some) && timestamp < scored_until,
            ) {
                outcome.score(score, forecast, glucose, raised);
            }
        }
    }
    let [persistence, ar2, adaptive] = scores.map(MethodEvaluation::with_rates);
    ForecastEvaluation {
        persistence,
        ar2,
        adaptive,
    }
}

/// What actually happened after a forecast.
#[derive(Debug)]
struct Outcome {
    at_30_min: f64,
    low_followed: bool,
}

impl Outcome {
    fn after(readings: &[(i64, f64)], index: usize) -> Option<Self> {
        let &(now, _) = readings.get(index)?;
        let target = now + HORIZON_SECS;
        let window = readings
            .get(index + 1..)?
            .iter()
            .take_while(|(t, _)| *t <= target + MATCH_TOLERANCE_SECS);
        let mut best: Option<(i64, f64)> = None;
        let mut low_followed = false;
        for &(t, g) in window {
            low_followed |= t <= target && g < LOW_MG_DL;
            let distance = (t - target).abs();
            if distance <= MATCH_TOLERANCE_SECS && best.is_none_or(|(d, _)| distance < d) {
                best = Some((distance, g));
            }
        }
        best.map(|(_, at_30_min)| Self {
            at_30_min,
            low_followed,
        })
    }

    fn score(&self, score: &mut MethodEvaluation, forecast: &Forecast, glucose: f64, raised: bool) {
        let error = forecast.at_30_min() - self.at_30_min;
        score.n += 1;
        score.sum_squared_error += error * error;
        score.sum_relative_error += (error / self.at_30_min).abs();
        if glucose >= LOW_MG_DL && self.low_followed {
            score.lows_ahead += 1;
            score.lows_predicted += usize::from(forecast.predicted_low());
        }
        if raised && glucose >= LOW_MG_DL && !self.low_followed {
            score.false_alerts += 1;
        }
    }
}
