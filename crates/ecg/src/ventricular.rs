//! Ventricular tachyarrhythmia (ventricular tachycardia, flutter and fibrillation)
//! from the signal, by the threshold crossing sample count (TCSC) of Arafat, Chowdhury
//! and Hasan, "A simple time domain algorithm for the detection of ventricular
//! fibrillation in electrocardiogram", Signal Image Video Process 5:1-10 (2011).
//!
//! A normal or supraventricular rhythm spends most of its time near the baseline
//! between narrow QRS complexes; ventricular flutter and fibrillation, and the wide
//! complexes of a fast ventricular tachycardia, do not. TCSC measures that directly:
//! the share of samples of a 3-s window whose magnitude exceeds a fifth of the
//! window's peak. It needs no beat detection, which fails in fibrillation.

/// Window over which the crossing count is taken (s).
pub const WINDOW_S: f64 = 3.0;
/// Step between windows (s).
pub const STEP_S: f64 = 1.0;
/// Share of the window's peak magnitude a sample must exceed to count.
pub const LEVEL: f64 = 0.2;

/// Settings of the ventricular tachyarrhythmia call.
#[derive(Debug, Clone, PartialEq)]
pub struct VentricularConfig {
    pub sampling_rate: f64,
    /// TCSC (percent of samples) above which a window is ventricular.
    pub threshold: f64,
    /// Consecutive ventricular windows needed before a call (each step is 1 s).
    pub min_windows: usize,
    /// Rate (detected beats per minute in the window) below which a window is not
    /// ventricular tachyarrhythmia: wide QRS complexes at a normal rate (bundle branch
    /// block, a paced or idioventricular rhythm) also leave the baseline, but are not
    /// VT or VF. Fibrillation makes the beat detector fire often and irregularly, so
    /// it passes.
    pub min_bpm: f64,
}

impl VentricularConfig {
    pub fn new(sampling_rate: f64) -> Self {
        Self {
            sampling_rate,
            threshold: 48.0,
            min_windows: 3,
            min_bpm: 100.0,
        }
    }
}

impl VentricularConfig {
    /// Time from the start of a called span to the moment the call is made: one
    /// window, then the further windows the call waits for (s).
    pub fn decision_lag_s(&self) -> f64 {
        WINDOW_S + self.min_windows.saturating_sub(1) as f64 * STEP_S
    }
}

/// TCSC of each window: `(first sample, percent)`, windows of [`WINDOW_S`] every
/// [`STEP_S`]. The signal is first freed of baseline wander (a 1-s moving mean taken
/// off) and of high-frequency noise (a 20-ms moving mean), and each window is tapered
/// over its first and last quarter second so that a beat cut by the edge does not
/// set the peak.
pub fn tcsc(samples: &[i32], sampling_rate: f64) -> Vec<(u64, f64)> {
    let fs = sampling_rate;
    if !(fs.is_finite() && fs > 0.0) {
        return Vec::new();
    }
    let filtered = band_limit(samples, fs);
    let n = (WINDOW_S * fs).round() as usize;
    let step = (STEP_S * fs).round().max(1.0) as usize;
    let taper = (0.25 * fs).round() as usize;
    if n == 0 || filtered.len() < n {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(filtered.len() / step);
    let mut window = vec![0.0f64; n];
    let mut start = 0usize;
    while start + n <= filtered.len() {
        let segment = &filtered[start..start + n];
        let mean = segment.iter().sum::<f64>() / n as f64;
        let mut peak = 0.0f64;
        for (i, (w, &x)) in window.iter_mut().zip(segment).enumerate() {
            let edge = i.min(n - 1 - i);
            let gain = if taper > 0 && edge < taper {
                0.5 * (1.0 - (std::f64::consts::PI * edge as f64 / taper as f64).cos())
            } else {
                1.0
            };
            *w = (x - mean) * gain;
            peak = peak.max(w.abs());
        }
        let percent = if peak > 0.0 {
            100.0 * window.iter().filter(|w| w.abs() > LEVEL * peak).count() as f64 / n as f64
        } else {
            0.0
        };
        out.push((start as u64, percent));
        start += step;
    }
    out
}

/// Baseline (1-s moving mean) removed, then smoothed over 20 ms.
fn band_limit(samples: &[i32], fs: f64) -> Vec<f64> {
    let x: Vec<f64> = samples.iter().map(|&v| f64::from(v)).collect();
    let baseline = moving_mean(&x, (fs).round().max(1.0) as usize);
    let detrended: Vec<f64> = x.iter().zip(&baseline).map(|(a, b)| a - b).collect();
    moving_mean(&detrended, (0.02 * fs).round().max(1.0) as usize)
}

/// Centred moving mean over `width` samples (shorter at the ends).
fn moving_mean(x: &[f64], width: usize) -> Vec<f64> {
    let half = width / 2;
    let mut prefix = Vec::with_capacity(x.len() + 1);
    prefix.push(0.0);
    for v in x {
        prefix.push(prefix[prefix.len() - 1] + v);
    }
    (0..x.len())
        .map(|i| {
            let lo = i.saturating_sub(half);
            let hi = (i + half + 1).min(x.len());
            (prefix[hi] - prefix[lo]) / (hi - lo) as f64
        })
        .collect()
}

/// Ventricular tachyarrhythmia spans `[onset, end)` in samples: runs of at least
/// `min_windows` consecutive windows over the threshold and at `min_bpm` or more
/// (`beats` are the detected beats, sorted), none of them touching a poor-signal
/// interval (noise and a lost electrode also leave the baseline; they are
/// technical alarms, not VF).
pub fn ventricular_spans(
    samples: &[i32],
    beats: &[u64],
    poor: &[(u64, u64)],
    cfg: &VentricularConfig,
) -> Vec<(u64, u64)> {
    let n = (WINDOW_S * cfg.sampling_rate).round() as u64;
    let mut spans: Vec<(u64, u64)> = Vec::new();
    let mut run: Option<(u64, u64, usize)> = None;
    for (start, percent) in tcsc(samples, cfg.sampling_rate) {
        let end = start + n;
        let clean = !poor.iter().any(|&(a, b)| a < end && start < b);
        let lo = beats.partition_point(|&b| b < start);
        let hi = beats.partition_point(|&b| b < end);
        let bpm = (hi - lo) as f64 * 60.0 / WINDOW_S;
        if clean && percent > cfg.threshold && bpm >= cfg.min_bpm {
            run = Some(match run {
                Some((onset, _, count)) => (onset, end, count + 1),
                None => (start, end, 1),
            });
        } else if let Some((onset, last, count)) = run.take()
            && count >= cfg.min_windows
        {
            spans.push((onset, last));
        }
    }
    if let Some((onset, last, count)) = run
        && count >= cfg.min_windows
    {
        spans.push((onset, last));
    }
    spans
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Narrow spikes 0.8 s apart on a flat baseline (sinus-like), and a 5 Hz sine
    /// (flutter-like).
    #[test]
    fn narrow_complexes_cross_rarely_and_a_sine_crosses_mostly() {
        let fs = 250.0;
        let sinus: Vec<i32> = (0..2500)
            .map(|i| if i % 200 < 10 { 1000 } else { 0 })
            .collect();
        let flutter: Vec<i32> = (0..2500)
            .map(|i| (1000.0 * (2.0 * std::f64::consts::PI * 5.0 * i as f64 / fs).sin()) as i32)
            .collect();
        let s = tcsc(&sinus, fs);
        let f = tcsc(&flutter, fs);
        assert_eq!(s.len(), 8);
        assert!(s.iter().all(|&(_, p)| p < 20.0), "{s:?}");
        assert!(f.iter().all(|&(_, p)| p > 60.0), "{f:?}");
        let cfg = VentricularConfig::new(fs);
        let sinus_beats: Vec<u64> = (0..2500).step_by(200).collect();
        // The detector fires on each cycle of a 5 Hz flutter wave.
        let flutter_beats: Vec<u64> = (0..2500).step_by(50).collect();
        assert!(ventricular_spans(&sinus, &sinus_beats, &[], &cfg).is_empty());
        assert_eq!(
            ventricular_spans(&flutter, &flutter_beats, &[], &cfg),
            vec![(0, 2500)]
        );
        // The same wave at a rate under 100 bpm is not VT/VF; nor in poor signal.
        assert!(ventricular_spans(&flutter, &sinus_beats, &[], &cfg).is_empty());
        assert!(ventricular_spans(&flutter, &flutter_beats, &[(0, 2500)], &cfg).is_empty());
        assert!(tcsc(&flutter, 0.0).is_empty());
        assert!(tcsc(&flutter[..100], fs).is_empty());
    }
}
