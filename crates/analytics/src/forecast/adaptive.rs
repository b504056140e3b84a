//! Wardline's per-patient adaptive regression (see the module docs of
//! [`super`]). All learning happens in [`AdaptiveModel::observe`], from
//! readings already pushed, so the model can never see the future.

use std::collections::VecDeque;

use super::{FORECAST_MAX_MG_DL, FORECAST_MIN_MG_DL, HORIZON_STEPS, MAX_GAP_SECS, STEP_SECS};

/// Grid points of history: now and 6 steps back (30 minutes).
const LAGS: usize = 6;
/// Constant, six successive differences, distance from the moving average.
const DIM: usize = LAGS + 2;
/// Per-step damping of the trend in the prior (and in the fallback).
const PRIOR_DAMPING: f64 = 0.8;
/// Ridge strength toward the prior, per feature, in units of "samples of
/// typical size": about a hundred 5-minute differences of 2 mg/dL and twenty
/// 30 mg/dL excursions, so the patient's data outweighs the population prior
/// within about a day. (Ten times less, the strength that suited the damped-trend
/// prior this replaced, let a new patient's first hours of data pull the model
/// away from a prior that knew better: on the shared data the first day was then
/// worse than AR2 in two datasets; VALIDATION.md has the figures.)
const RIDGE: [f64; DIM] = [100.0, 400.0, 400.0, 400.0, 400.0, 400.0, 400.0, 20_000.0];
/// Forgetting per training pair: half-life ~1400 pairs, about five days of
/// 5-minute data, so sensor changes and routine shifts are followed.
const FORGETTING: f64 = 0.9995;
/// Where the patient's moving average starts, before it has seen them: not their first
/// reading, which may be the top of an excursion that would then pull every forecast of
/// the next hours back toward it.
const BASELINE_START_MG_DL: f64 = 140.0;
/// Time constant of the patient's moving average.
const BASELINE_TAU_SECS: f64 = 12.0 * 3600.0;
/// How far a reading may be from the exact horizon to serve as its outcome.
const MATCH_TOLERANCE_SECS: i64 = STEP_SECS / 2;

type Features = [f64; DIM];

/// Coefficients of every horizon (5 to 30 minutes), one feature vector each.
pub type Coefficients = [[f64; DIM]; HORIZON_STEPS];

/// Number of features of the regression.
pub const FEATURES: usize = DIM;

/// Where every patient's model starts: the regression pooled over the population
/// (see [`super::fit_population_prior`]), which the patient's own data then moves.
// Fitted by `wardline validate forecast-prior` on the 70 CGM subjects of the shared data.
pub(super) const POPULATION_PRIOR: Coefficients = [
    [
        -0.007219, 0.713989, 0.085939, -0.003250, -0.043613, -0.005055, 0.017646, -0.008321,
    ],
    [
        -0.011873, 1.300482, 0.146997, -0.052489, -0.079141, -0.006836, 0.054215, -0.022532,
    ],
    [
        -0.017317, 1.771312, 0.149026, -0.088173, -0.110792, 0.000986, 0.099468, -0.041645,
    ],
    [
        -0.026772, 2.102344, 0.153974, -0.125888, -0.125225, 0.022170, 0.138809, -0.064700,
    ],
    [
        -0.040848, 2.324983, 0.153542, -0.145592, -0.124278, 0.048649, 0.169633, -0.090649,
    ],
    [
        -0.055405, 2.460024, 0.154455, -0.143055, -0.101687, 0.061653, 0.186774, -0.118261,
    ],
];

/// The prior a new patient starts from: the damped trend, or the population's
/// coefficients fitted by [`super::fit_population_prior`].
fn damped_trend(steps: usize) -> Features {
    let mut prior = [0.0; DIM];
    prior[1] = (1..=steps as i32).map(|k| PRIOR_DAMPING.powi(k)).sum();
    prior
}

/// A feature vector waiting for its outcomes.
#[derive(Debug, Clone)]
struct Pending {
    issued_at: i64,
    level: f64,
    features: Features,
    learned: [bool; HORIZON_STEPS],
}

/// Normal equations of one horizon's ridge regression.
#[derive(Debug, Clone)]
pub(super) struct Horizon {
    gram: [[f64; DIM]; DIM],
    moment: [f64; DIM],
    prior: Features,
    weights: Features,
    /// Fitting the population: pairs weigh `pair_weight` each, nothing is forgotten,
    /// and the weights are solved once at the end.
    pooling: bool,
    pair_weight: f64,
}

impl Horizon {
    fn new(prior: Features) -> Self {
        Self {
            gram: [[0.0; DIM]; DIM],
            moment: [0.0; DIM],
            prior,
            weights: prior,
            pooling: false,
            pair_weight: 1.0,
        }
    }

    fn learn(&mut self, x: &Features, y: f64) {
        let (forgetting, weight) = if self.pooling {
            (1.0, self.pair_weight)
        } else {
            (FORGETTING, 1.0)
        };
        for (i, row) in self.gram.iter_mut().enumerate() {
            for (j, cell) in row.iter_mut().enumerate() {
                *cell = forgetting * *cell + weight * x[i] * x[j];
            }
            self.moment[i] = forgetting * self.moment[i] + weight * x[i] * y;
        }
        if !self.pooling {
            self.solve(1.0);
        }
    }

    /// The weights from what was learnt, shrunk toward the prior by `ridge_scale`
    /// times [`RIDGE`]. A singular system keeps the previous weights.
    fn solve(&mut self, ridge_scale: f64) {
        let mut a = self.gram;
        let mut b = self.moment;
        for i in 0..DIM {
            a[i][i] += ridge_scale * RIDGE[i];
            b[i] += ridge_scale * RIDGE[i] * self.prior[i];
        }
        if let Some(w) = solve(a, b) {
            self.weights = w;
        }
    }

    fn predict(&self, x: &Features) -> f64 {
        self.weights.iter().zip(x).map(|(w, x)| w * x).sum()
    }
}

/// State of the adaptive regression for one patient.
#[derive(Debug, Clone)]
pub(super) struct AdaptiveModel {
    horizons: Vec<Horizon>,
    pending: VecDeque<Pending>,
    baseline: Option<(i64, f64)>,
}

impl AdaptiveModel {
    pub(super) fn new() -> Self {
        Self::with_prior(&POPULATION_PRIOR)
    }

    /// A new patient's model starting from `prior` instead of the shipped one (a
    /// validation fitting the prior without the patients it evaluates).
    pub(super) fn with_prior(prior: &Coefficients) -> Self {
        Self {
            horizons: prior.iter().copied().map(Horizon::new).collect(),
            pending: VecDeque::new(),
            baseline: None,
        }
    }

    /// A model that pools what it learns across patients, for fitting the population
    /// prior: its horizons are handed from one patient's replay to the next.
    pub(super) fn pooling(horizons: Option<Vec<Horizon>>, pair_weight: f64) -> Self {
        let mut horizons = horizons.unwrap_or_else(|| {
            (1..=HORIZON_STEPS)
                .map(|steps| {
                    let mut horizon = Horizon::new(damped_trend(steps));
                    horizon.pooling = true;
                    horizon
                })
                .collect()
        });
        for horizon in &mut horizons {
            horizon.pair_weight = pair_weight;
        }
        Self {
            horizons,
            pending: VecDeque::new(),
            baseline: None,
        }
    }

    /// The horizons, to pass on to the next patient's replay.
    pub(super) fn into_horizons(self) -> Vec<Horizon> {
        self.horizons
    }

    /// Learns from the newest reading (the back of `history`).
    pub(super) fn observe(&mut self, history: &VecDeque<(i64, f64)>) {
        let Some(&(now, glucose)) = history.back() else {
            return;
        };
        self.update_baseline(now, glucose);
        self.learn_outcomes(now, glucose);
        if let Some(features) = self.features(history) {
            self.pending.push_back(Pending {
                issued_at: now,
                level: glucose,
                features,
                learned: [false; HORIZON_STEPS],
            });
        }
    }

    pub(super) fn predict(&self, history: &VecDeque<(i64, f64)>) -> Option<[f64; HORIZON_STEPS]> {
        let &(now, level) = history.back()?;
        let mut points = [level; HORIZON_STEPS];
        match self.features(history) {
            Some(x) => {
                for (point, horizon) in points.iter_mut().zip(&self.horizons) {
                    *point = level + horizon.predict(&x);
                }
            }
            None => {
                let trend = interpolate(history, now - STEP_SECS).map_or(0.0, |g| level - g);
                let mut gain = 0.0;
                for (k, point) in points.iter_mut().enumerate() {
                    gain += PRIOR_DAMPING.powi(k as i32 + 1);
                    *point = level + gain * trend;
                }
            }
        }
        Some(points.map(|g| g.clamp(FORECAST_MIN_MG_DL, FORECAST_MAX_MG_DL)))
    }

    fn update_baseline(&mut self, now: i64, glucose: f64) {
        self.baseline = Some(match self.baseline {
            None => (now, BASELINE_START_MG_DL),
            Some((then, mean)) => {
                let weight = 1.0 - (-((now - then) as f64) / BASELINE_TAU_SECS).exp();
                (now, mean + weight * (glucose - mean))
            }
        });
    }

    fn learn_outcomes(&mut self, now: i64, glucose: f64) {
        for pending in &mut self.pending {
            for (k, horizon) in self.horizons.iter_mut().enumerate() {
                let target_time = pending.issued_at + STEP_SECS * (k as i64 + 1);
                if !pending.learned[k] && (now - target_time).abs() <= MATCH_TOLERANCE_SECS {
                    horizon.learn(&pending.features, glucose - pending.level);
                    pending.learned[k] = true;
                }
            }
        }
        let horizon_end = STEP_SECS * HORIZON_STEPS as i64 + MATCH_TOLERANCE_SECS;
        while self
            .pending
            .front()
            .is_some_and(|p| now - p.issued_at > horizon_end)
        {
            self.pending.pop_front();
        }
    }

    fn features(&self, history: &VecDeque<(i64, f64)>) -> Option<Features> {
        let &(now, level) = history.back()?;
        let (_, baseline) = self.baseline?;
        let mut grid = [0.0; LAGS + 1];
        for (k, value) in grid.iter_mut().enumerate() {
            *value = interpolate(history, now - STEP_SECS * k as i64)?;
        }
        let mut x = [0.0; DIM];
        x[0] = 1.0;
        for k in 0..LAGS {
            x[k + 1] = grid[k] - grid[k + 1];
        }
        x[DIM - 1] = level - baseline;
        Some(x)
    }
}

/// Glucose at `time`, linearly interpolated between the two readings around
/// it when they are no more than [`MAX_GAP_SECS`] apart.
fn interpolate(history: &VecDeque<(i64, f64)>, time: i64) -> Option<f64> {
    let after = history.iter().position(|&(t, _)| t >= time)?;
    let (t1, g1) = *history.get(after)?;
    if t1 == time {
        return Some(g1);
    }
    let (t0, g0) = *history.get(after.checked_sub(1)?)?;
    if t1 - t0 > MAX_GAP_SECS {
        return None;
    }
    Some(g0 + (g1 - g0) * (time - t0) as f64 / (t1 - t0) as f64)
}

/// Solves `a w = b` by Gaussian elimination with partial pivoting; `None`
/// when `a` is (numerically) singular.
fn solve(mut a: [[f64; DIM]; DIM], mut b: [f64; DIM]) -> Option<[f64; DIM]> {
    for col in 0..DIM {
        let pivot = (col..DIM).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (done, rest) = a.split_at_mut(col + 1);
        let (b_done, b_rest) = b.split_at_mut(col + 1);
        let pivot_row = &done[col];
        let pivot_rhs = b_done[col];
        for (row, rhs) in rest.iter_mut().zip(b_rest.iter_mut()) {
            let factor = row[col] / pivot_row[col];
            for (cell, p) in row.iter_mut().zip(pivot_row).skip(col) {
                *cell -= factor * p;
            }
            *rhs -= factor * pivot_rhs;
        }
    }
    let mut w = [0.0; DIM];
    for row in (0..DIM).rev() {
        let tail: f64 = (row + 1..DIM).map(|k| a[row][k] * w[k]).sum();
        w[row] = (b[row] - tail) / a[row][row];
    }
    w.iter().all(|v| v.is_finite()).then_some(w)
}

/// The coefficients of pooled horizons, lightly shrunk toward the damped trend.
pub(super) fn pooled_coefficients(horizons: &mut [Horizon]) -> Coefficients {
    let mut coefficients = [[0.0; DIM]; HORIZON_STEPS];
    for (horizon, row) in horizons.iter_mut().zip(&mut coefficients) {
        horizon.solve(1.0);
        *row = horizon.weights;
    }
    coefficients
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_recovers_a_known_system() {
        let mut a = [[0.0; DIM]; DIM];
        let mut b = [0.0; DIM];
        for i in 0..DIM {
            a[i][i] = 2.0;
            b[i] = 2.0 * i as f64;
        }
        a[0][1] = 1.0;
        b[0] += 1.0;
        let w = solve(a, b).unwrap();
        for (i, v) in w.iter().enumerate() {
            assert!((v - i as f64).abs() < 1e-9);
        }
        assert_eq!(solve([[0.0; DIM]; DIM], b), None);
    }

    #[test]
    fn interpolation_refuses_to_bridge_gaps() {
        let history: VecDeque<_> = [(0, 100.0), (300, 110.0), (2000, 90.0)].into();
        assert_eq!(interpolate(&history, 150), Some(105.0));
        assert_eq!(interpolate(&history, 300), Some(110.0));
        assert_eq!(interpolate(&history, 1000), None);
        assert_eq!(interpolate(&history, 5000), None);
    }
}
