//! Atrial fibrillation from R-R intervals: irregularity features of a window of
//! intervals, and the logistic model that weighs them.
//!
//! No one irregularity measure holds across databases: the successive-difference
//! measures (Tateno & Glass, Med Biol Eng Comput 39:664-671, 2001; the normalised
//! RMSSD and turning-point ratio of Dash et al., Ann Biomed Eng 37:1701-1709, 2009)
//! miss AF with a fast, only moderately irregular ventricular response, and read
//! frequent supraventricular ectopy as AF. Several measures, each scale-free, are
//! weighed by a logistic model fitted on the shared annotated databases
//! (`wardline validate ecg-train-af` fits it and prints [`AF_MODEL`]); the model is
//! small enough to read, and its weights are in this file.

/// Number of features of a window.
pub const FEATURES: usize = 7;

/// Names of the features, in order (for the training report).
pub const FEATURE_NAMES: [&str; FEATURES] = [
    "median_nsd",
    "concentration",
    "fraction_nsd_over_0.1",
    "nrmssd",
    "cv",
    "turning_points",
    "rate_per_100bpm",
];

/// Relative R-R tolerance defining a cluster in [`rr_concentration`].
pub const CLUSTER_TOLERANCE: f64 = 0.06;

/// Fewest successive differences between kept intervals a window needs.
pub const MIN_PAIRS: usize = 10;

/// Reusable buffers, so that scoring every interval of a day allocates once.
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    diffs: Vec<f64>,
    kept: Vec<f64>,
}

/// Mass of the tightest R-R cluster: the largest fraction of `rr_s` lying within
/// `tol` (relative) of one of its values.
///
/// Irregularity alone cannot tell AF from ectopy that the morphology check misses
/// (supraventricular premature beats, aberrant beats close to the dominant shape),
/// which is just as unpredictable beat to beat. Ectopy on a regular rhythm still
/// puts most intervals in a few tight clusters (normal, coupling, compensatory),
/// while AF spreads them out: the "irregularly irregular" criterion read literally.
pub fn rr_concentration(rr_s: &[f64], tol: f64) -> f64 {
    let mut sorted = rr_s.to_vec();
    concentration_in_place(&mut sorted, tol)
}

fn concentration_in_place(rr: &mut [f64], tol: f64) -> f64 {
    if rr.is_empty() {
        return 0.0;
    }
    rr.sort_unstable_by(f64::total_cmp);
    // For each value a, the values within [a(1 - tol), a(1 + tol)]; both bounds grow
    // with a, so two cursors sweep the sorted intervals once.
    let (mut lo, mut hi, mut best) = (0usize, 0usize, 0usize);
    for &a in rr.iter() {
        while rr[lo] < a * (1.0 - tol) {
            lo += 1;
        }
        while hi < rr.len() && rr[hi] <= a * (1.0 + tol) {
            hi += 1;
        }
        best = best.max(hi - lo);
    }
    best as f64 / rr.len() as f64
}

/// Features of one window: `rr` are its intervals in seconds and `keep[k]` says
/// whether interval `k` joins two beats of the dominant shape in good signal (only
/// those enter). `None` when fewer than [`MIN_PAIRS`] successive pairs are kept.
pub fn window_features(
    rr: &[f64],
    keep: &[bool],
    scratch: &mut Scratch,
) -> Option<[f64; FEATURES]> {
    let diffs = &mut scratch.diffs;
    let kept = &mut scratch.kept;
    diffs.clear();
    kept.clear();
    let mut squares = 0.0;
    let mut turning = 0usize;
    let mut triples = 0usize;
    for k in 0..rr.len() {
        if !keep[k] {
            continue;
        }
        kept.push(rr[k]);
        if k + 1 < rr.len() && keep[k + 1] {
            let d = rr[k + 1] - rr[k];
            let nsd = d.abs() / ((rr[k + 1] + rr[k]) / 2.0);
            if nsd.is_finite() {
                diffs.push(nsd);
                squares += d * d;
            }
            if k + 2 < rr.len() && keep[k + 2] {
                triples += 1;
                let e = rr[k + 2] - rr[k + 1];
                if d * e < 0.0 {
                    turning += 1;
                }
            }
        }
    }
    if diffs.len() < MIN_PAIRS {
        return None;
    }
    let n = kept.len() as f64;
    let mean = kept.iter().sum::<f64>() / n;
    if !(mean.is_finite() && mean > 0.0) {
        return None;
    }
    let variance = kept.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / n;
    let pairs = diffs.len() as f64;
    let over = diffs.iter().filter(|&&d| d > 0.1).count() as f64 / pairs;
    let rmssd = (squares / pairs).sqrt();
    diffs.sort_unstable_by(f64::total_cmp);
    let median = diffs[diffs.len() / 2];
    let concentration = concentration_in_place(kept, CLUSTER_TOLERANCE);
    Some([
        median,
        concentration,
        over,
        (rmssd / mean).min(1.0),
        (variance.sqrt() / mean).min(1.0),
        if triples == 0 {
            0.0
        } else {
            turning as f64 / triples as f64
        },
        60.0 / mean / 100.0,
    ])
}

/// R-R intervals in seconds between beats at `positions` (samples), and for each
/// whether it joins two beats of the dominant shape (`dominant[i]` per beat).
pub fn dominant_intervals(positions: &[u64], dominant: &[bool], fs: f64) -> (Vec<f64>, Vec<bool>) {
    positions
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            (
                w[1].saturating_sub(w[0]) as f64 / fs,
                dominant.get(i).copied().unwrap_or(false)
                    && dominant.get(i + 1).copied().unwrap_or(false),
            )
        })
        .unzip()
}

/// Features of the window of `window` intervals centred on each interval of `rr`
/// (seconds); `keep` as in [`window_features`].
pub fn interval_features(rr: &[f64], keep: &[bool], window: usize) -> Vec<Option<[f64; FEATURES]>> {
    let half = window / 2;
    let mut scratch = Scratch::default();
    (0..rr.len())
        .map(|i| {
            let lo = i.saturating_sub(half);
            let hi = (i + half).min(rr.len());
            window_features(&rr[lo..hi], &keep[lo..hi], &mut scratch)
        })
        .collect()
}

/// A logistic model over the window features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AfModel {
    pub bias: f64,
    pub weights: [f64; FEATURES],
}

impl AfModel {
    /// Probability that the window is AF.
    pub fn probability(&self, features: &[f64; FEATURES]) -> f64 {
        let z = self.bias
            + self
                .weights
                .iter()
                .zip(features)
                .map(|(w, x)| w * x)
                .sum::<f64>();
        1.0 / (1.0 + (-z).exp())
    }
}

/// The shipped model, fitted by `wardline validate ecg-train-af` on the R-R intervals
/// of every shared database with reference beats (afdb, cpsc2021, ltafdb, mitdb,
/// mitdb-more, nsr2db, svdb, vfdb); VALIDATION.md shows each database held out.
pub const AF_MODEL: AfModel = AfModel {
    bias: -0.5448,
    weights: [-4.2803, -9.8883, 5.4893, -2.2360, 2.2798, -0.6658, 4.0826],
};

/// Seconds either side of a reference rhythm change whose windows are left out of
/// training: a window there holds both rhythms, and its label would be a guess.
pub const TRAINING_MARGIN_S: f64 = 30.0;

/// One labelled window for fitting the model.
pub type LabelledWindow = ([f64; FEATURES], bool);

/// Windows of one record labelled by its reference AF spans, every `stride`-th
/// interval (neighbouring windows share almost all their intervals). `starts_s[i]` is
/// the time of interval `i`'s first beat; windows centred within
/// [`TRAINING_MARGIN_S`] of a reference rhythm change are left out.
pub fn labelled_windows(
    rr: &[f64],
    keep: &[bool],
    starts_s: &[f64],
    reference_af: &[(f64, f64)],
    window: usize,
    stride: usize,
) -> Vec<LabelledWindow> {
    interval_features(rr, keep, window)
        .into_iter()
        .zip(starts_s)
        .step_by(stride.max(1))
        .filter_map(|(features, &t)| {
            let features = features?;
            let near_change = reference_af.iter().any(|&(a, b)| {
                (t - a).abs() < TRAINING_MARGIN_S || (t - b).abs() < TRAINING_MARGIN_S
            });
            (!near_change).then(|| {
                let af = reference_af.iter().any(|&(a, b)| a <= t && t < b);
                (features, af)
            })
        })
        .collect()
}

/// Fits the logistic model by iteratively reweighted least squares (Newton's method
/// on the log-likelihood, with a small ridge so that a separable group cannot drive
/// a weight to infinity).
///
/// Each group (a database) weighs the same in total, and within a group AF and
/// non-AF windows weigh the same: the long sinus recordings would otherwise teach the
/// model that AF is rare, and the one long AF database that AF looks like its
/// patients'. A group without windows of one class contributes the other only.
pub fn fit_af_model(groups: &[Vec<LabelledWindow>]) -> AfModel {
    const P: usize = FEATURES + 1;
    const RIDGE: f64 = 1e-3;
    let mut weighted: Vec<(&[f64; FEATURES], f64, f64)> = Vec::new();
    for group in groups {
        let af = group.iter().filter(|(_, y)| *y).count() as f64;
        let other = group.len() as f64 - af;
        let classes = f64::from(u8::from(af > 0.0) + u8::from(other > 0.0));
        for (features, y) in group {
            let per_class = if *y { af } else { other };
            weighted.push((
                features,
                if *y { 1.0 } else { 0.0 },
                1.0 / (per_class * classes),
            ));
        }
    }
    let mut beta = [0.0f64; P];
    for _ in 0..50 {
        let mut hessian = [[0.0f64; P]; P];
        let mut gradient = [0.0f64; P];
        for &(features, y, w) in &weighted {
            let mut x = [1.0f64; P];
            x[1..].copy_from_slice(features);
            let z: f64 = x.iter().zip(&beta).map(|(a, b)| a * b).sum();
            let p = 1.0 / (1.0 + (-z).exp());
            for a in 0..P {
                gradient[a] += w * (y - p) * x[a];
                for b in 0..P {
                    hessian[a][b] += w * p * (1.0 - p) * x[a] * x[b];
                }
            }
        }
        for a in 0..P {
            hessian[a][a] += RIDGE;
            gradient[a] -= RIDGE * beta[a];
        }
        let Some(step) = solve(hessian, gradient) else {
            break;
        };
        for (b, d) in beta.iter_mut().zip(&step) {
            *b += d;
        }
        if step.iter().map(|d| d.abs()).sum::<f64>() < 1e-9 {
            break;
        }
    }
    let mut weights = [0.0; FEATURES];
    weights.copy_from_slice(&beta[1..]);
    AfModel {
        bias: beta[0],
        weights,
    }
}

/// Solves `m x = v` by Gauss-Jordan elimination with partial pivoting; `None` when
/// `m` is singular.
fn solve<const P: usize>(mut m: [[f64; P]; P], mut v: [f64; P]) -> Option<[f64; P]> {
    for c in 0..P {
        let pivot = (c..P).max_by(|&a, &b| m[a][c].abs().total_cmp(&m[b][c].abs()))?;
        if m[pivot][c].abs() < 1e-12 {
            return None;
        }
        m.swap(c, pivot);
        v.swap(c, pivot);
        for r in 0..P {
            if r != c {
                let k = m[r][c] / m[c][c];
                let row_c = m[c];
                for (x, y) in m[r].iter_mut().zip(row_c) {
                    *x -= k * y;
                }
                v[r] -= k * v[c];
            }
        }
    }
    let mut x = [0.0; P];
    for i in 0..P {
        x[i] = v[i] / m[i][i];
    }
    Some(x)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn concentration_counts_the_tightest_cluster() {
        let bigeminy: Vec<f64> = (0..64)
            .map(|i| if i % 2 == 0 { 0.5 } else { 1.1 })
            .collect();
        assert!((rr_concentration(&bigeminy, 0.06) - 0.5).abs() < 1e-9);
        assert_eq!(rr_concentration(&[], 0.06), 0.0);
        // 0.80 and 0.84 lie within 6 % of 0.8; 1.0 does not.
        assert!((rr_concentration(&[0.8, 0.84, 1.0], 0.06) - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn regular_and_irregular_windows_differ_in_every_irregularity_feature() {
        let regular = vec![0.8; 40];
        let mut x = 7u64;
        let irregular: Vec<f64> = (0..40)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                0.4 + 0.6 * ((x >> 33) as f64 / (1u64 << 31) as f64)
            })
            .collect();
        let keep = vec![true; 40];
        let mut scratch = Scratch::default();
        let r = window_features(&regular, &keep, &mut scratch).unwrap();
        let i = window_features(&irregular, &keep, &mut scratch).unwrap();
        assert!(r[0] < 0.01 && i[0] > 0.1);
        assert!(r[1] > 0.99 && i[1] < 0.5);
        assert!(r[3] < i[3] && r[4] < i[4]);
        assert!((r[6] - 0.75).abs() < 1e-9);
        // Too few kept pairs: no verdict.
        let mut few = vec![false; 40];
        few[..10].fill(true);
        assert!(window_features(&irregular, &few, &mut scratch).is_none());
    }

    #[test]
    fn the_fitted_model_separates_what_it_was_fitted_on() {
        let mut x = 99u64;
        let mut next = move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as f64 / (1u64 << 31) as f64
        };
        // A record of 600 intervals: sinus with a little variability, then AF.
        let rr: Vec<f64> = (0..600)
            .map(|i| {
                if i < 300 {
                    0.8 + 0.02 * next()
                } else {
                    0.4 + 0.6 * next()
                }
            })
            .collect();
        let mut starts = Vec::with_capacity(rr.len());
        let mut t = 0.0;
        for r in &rr {
            starts.push(t);
            t += r;
        }
        let keep = vec![true; rr.len()];
        let onset = starts[300];
        let windows = labelled_windows(&rr, &keep, &starts, &[(onset, t)], 32, 2);
        assert!(windows.iter().any(|(_, af)| *af) && windows.iter().any(|(_, af)| !*af));
        let model = fit_af_model(std::slice::from_ref(&windows));
        let correct = windows
            .iter()
            .filter(|(f, af)| (model.probability(f) > 0.5) == *af)
            .count();
        assert!(
            correct * 100 >= windows.len() * 99,
            "{correct} of {}",
            windows.len()
        );
    }
}
