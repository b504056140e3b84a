//! Heart rate, RR intervals and rhythm events from detected beats.

use crate::af::{AF_MODEL, AfModel, interval_features};
use crate::error::{EcgError, Result};
use crate::ventricular::{VentricularConfig, ventricular_spans};

pub use wardline_domain::RhythmKind;

/// An event `[onset, end)` in samples from the start of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RhythmEvent {
    pub kind: RhythmKind,
    pub onset: u64,
    pub end: u64,
}

/// Rhythm thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct RhythmConfig {
    pub sampling_rate: f64,
    /// Heart rate (bpm) below which the rhythm is bradycardic.
    pub brady_bpm: f64,
    /// Heart rate (bpm) above which the rhythm is tachycardic.
    pub tachy_bpm: f64,
    /// Brady/tachycardia must last this long (s) to become an event.
    pub min_rate_event_s: f64,
    /// Beat-free interval (s) reported as a pause / asystole.
    pub pause_s: f64,
    /// RR intervals in the AF analysis window (centred on each interval).
    pub af_window: usize,
    /// Model probability above which an interval's window is AF.
    pub af_threshold: f64,
    /// The model weighing the window's irregularity features.
    pub af_model: AfModel,
    /// AF episodes separated by less than this (s) are one episode: a few regular
    /// beats inside AF do not end it.
    pub af_merge_gap_s: f64,
    /// AF episodes shorter than this (s) are dropped.
    pub min_af_s: f64,
}

impl RhythmConfig {
    /// Defaults for a sampling rate.
    pub fn new(sampling_rate: f64) -> Self {
        Self {
            sampling_rate,
            brady_bpm: 50.0,
            tachy_bpm: 100.0,
            min_rate_event_s: 10.0,
            pause_s: 3.0,
            // AF parameters: see `crate::af` and VALIDATION.md for how they were
            // chosen across databases.
            af_window: 64,
            af_threshold: 0.5,
            af_model: AF_MODEL,
            af_merge_gap_s: 10.0,
            min_af_s: 30.0,
        }
    }
}

/// RR intervals in seconds between consecutive beats (sample indices).
pub fn rr_intervals(beats: &[u64], sampling_rate: f64) -> Vec<f64> {
    beats
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]) as f64 / sampling_rate)
        .collect()
}

/// Heart rate (bpm) at each beat from the median of the last 8 RR intervals,
/// as `(sample, bpm)`; the first beat has no rate.
pub fn heart_rate(beats: &[u64], sampling_rate: f64) -> Vec<(u64, f64)> {
    let rr = rr_intervals(beats, sampling_rate);
    (0..rr.len())
        .map(|i| {
            let lo = i.saturating_sub(7);
            let m = median(&rr[lo..=i]);
            (beats[i + 1], if m > 0.0 { 60.0 / m } else { 0.0 })
        })
        .collect()
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn overlaps(poor: &[(u64, u64)], a: u64, b: u64) -> bool {
    poor.iter().any(|&(s, e)| s < b && a < e)
}

/// Runs rhythm analysis over a record's beats, treating every beat as of
/// the dominant morphology; see [`analyze_rhythm_with_morphology`].
pub fn analyze_rhythm(
    beats: &[u64],
    poor: &[(u64, u64)],
    n_samples: u64,
    cfg: &RhythmConfig,
) -> Result<Vec<RhythmEvent>> {
    analyze_rhythm_with_morphology(beats, &vec![true; beats.len()], poor, n_samples, cfg)
}

/// Runs rhythm analysis over a record's beats.
///
/// `dominant[i]` says whether beat `i` has the dominant QRS shape (from
/// [`crate::morphology::dominant_morphology`]); only intervals between two
/// dominant beats enter the AF analysis. `poor` are poor-signal intervals
/// from [`crate::quality::poor_intervals`]; within them no rhythm event is
/// raised (a `PoorSignal` event is), and RR intervals touching them are
/// ignored. `n_samples` is the record length.
pub fn analyze_rhythm_with_morphology(
    beats: &[u64],
    dominant: &[bool],
    poor: &[(u64, u64)],
    n_samples: u64,
    cfg: &RhythmConfig,
) -> Result<Vec<RhythmEvent>> {
    let fs = cfg.sampling_rate;
    if dominant.len() != beats.len() {
        return Err(EcgError::Config(format!(
            "rhythm: {} morphology flags for {} beats",
            dominant.len(),
            beats.len()
        )));
    }
    if !(fs.is_finite() && fs > 0.0) {
        return Err(EcgError::Config("rhythm: sampling rate must be > 0".into()));
    }
    let secs = |s: f64| (s * fs).round().max(0.0) as u64;
    let mut events: Vec<RhythmEvent> = poor
        .iter()
        .map(|&(onset, end)| RhythmEvent {
            kind: RhythmKind::PoorSignal,
            onset,
            end,
        })
        .collect();

    let rr = rr_intervals(beats, fs);
    let valid: Vec<bool> = beats
        .windows(2)
        .map(|w| !overlaps(poor, w[0], w[1] + 1))
        .collect();

    // Pauses: a long valid interval, or a long beat-free tail.
    let pause = secs(cfg.pause_s);
    for (i, w) in beats.windows(2).enumerate() {
        if valid[i] && w[1] - w[0] >= pause {
            events.push(RhythmEvent {
                kind: RhythmKind::Pause,
                onset: w[0],
                end: w[1],
            });
        }
    }
    let tail_from = beats.last().copied().unwrap_or(0);
    if n_samples.saturating_sub(tail_from) >= pause && !overlaps(poor, tail_from, n_samples) {
        events.push(RhythmEvent {
            kind: RhythmKind::Pause,
            onset: tail_from,
            end: n_samples,
        });
    }

    // Rate events: runs of beats whose median-of-8 rate is beyond a limit.
    let hr = heart_rate(beats, fs);
    let min_len = secs(cfg.min_rate_event_s);
    for (kind, pred) in [
        (
            RhythmKind::Bradycardia,
            Box::new(|b: f64| b < cfg.brady_bpm) as Box<dyn Fn(f64) -> bool>,
        ),
        (
            RhythmKind::Tachycardia,
            Box::new(|b: f64| b > cfg.tachy_bpm),
        ),
    ] {
        let mut run: Option<(u64, u64)> = None;
        for (i, &(at, bpm)) in hr.iter().enumerate() {
            let ok = valid[i] && pred(bpm);
            match (&mut run, ok) {
                (Some(r), true) => r.1 = at,
                (None, true) => run = Some((beats[i], at)),
                (Some(r), false) => {
                    if r.1 - r.0 >= min_len {
                        events.push(RhythmEvent {
                            kind,
                            onset: r.0,
                            end: r.1,
                        });
                    }
                    run = None;
                }
                (None, false) => {}
            }
        }
        if let Some(r) = run
            && r.1 - r.0 >= min_len
        {
            events.push(RhythmEvent {
                kind,
                onset: r.0,
                end: r.1,
            });
        }
    }

    // AF: runs of intervals whose centred entropy window is AF-like.
    for (onset, end) in af_spans(beats, dominant, &rr, &valid, cfg) {
        events.push(RhythmEvent {
            kind: RhythmKind::AtrialFibrillation,
            onset,
            end,
        });
    }
    events.sort_by_key(|e| (e.onset, e.end));
    Ok(events)
}

/// Rhythm analysis with the signal at hand: [`analyze_rhythm_with_morphology`] over
/// the whole of `samples`, plus ventricular tachyarrhythmia found in the waveform
/// itself (see [`crate::ventricular`]; beat detection is unreliable in fibrillation).
pub fn analyze_rhythm_with_signal(
    samples: &[i32],
    beats: &[u64],
    dominant: &[bool],
    poor: &[(u64, u64)],
    cfg: &RhythmConfig,
) -> Result<Vec<RhythmEvent>> {
    let mut events =
        analyze_rhythm_with_morphology(beats, dominant, poor, samples.len() as u64, cfg)?;
    let ventricular = VentricularConfig::new(cfg.sampling_rate);
    events.extend(
        ventricular_spans(samples, beats, poor, &ventricular)
            .into_iter()
            .map(|(onset, end)| RhythmEvent {
                kind: RhythmKind::VentricularTachyarrhythmia,
                onset,
                end,
            }),
    );
    events.sort_by_key(|e| (e.onset, e.end));
    Ok(events)
}

/// AF spans `[onset, end)` in samples.
///
/// Each interval is AF when the model (see [`crate::af`]) finds the window of
/// `af_window` intervals centred on it AF-like; only intervals joining two beats of
/// dominant morphology in good signal enter the window, so PVCs and their
/// compensatory pauses do not count. Runs of AF intervals closer than
/// `af_merge_gap_s` are joined, and episodes shorter than `min_af_s` dropped.
fn af_spans(
    beats: &[u64],
    dominant: &[bool],
    rr: &[f64],
    valid: &[bool],
    cfg: &RhythmConfig,
) -> Vec<(u64, u64)> {
    let fs = cfg.sampling_rate;
    let n = rr.len();
    let keep: Vec<bool> = (0..n)
        .map(|i| valid[i] && dominant[i] && dominant[i + 1])
        .collect();
    let features = interval_features(rr, &keep, cfg.af_window);
    let mut spans: Vec<(u64, u64)> = Vec::new();
    let merge_gap = (cfg.af_merge_gap_s * fs).max(0.0) as u64;
    for (i, f) in features.iter().enumerate() {
        let af = valid[i] && f.is_some_and(|f| cfg.af_model.probability(&f) > cfg.af_threshold);
        if !af {
            continue;
        }
        let (onset, end) = (beats[i], beats[i + 1]);
        match spans.last_mut() {
            Some(last) if onset <= last.1 + merge_gap => last.1 = end,
            _ => spans.push((onset, end)),
        }
    }
    let min_len = (cfg.min_af_s * fs) as u64;
    spans.retain(|&(a, b)| b - a >= min_len);
    spans
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn beats_from_rr(rr: &[f64], fs: f64) -> Vec<u64> {
        let mut t = 1.0;
        let mut v = vec![(t * fs) as u64];
        for r in rr {
            t += r;
            v.push((t * fs) as u64);
        }
        v
    }

    fn af_seconds(ev: &[RhythmEvent], fs: f64) -> f64 {
        ev.iter()
            .filter(|e| e.kind == RhythmKind::AtrialFibrillation)
            .map(|e| (e.end - e.onset) as f64 / fs)
            .sum()
    }

    #[test]
    fn random_rr_is_af_and_regular_or_ectopic_is_not() {
        let fs = 250.0;
        let cfg = RhythmConfig::new(fs);
        // Deterministic pseudo-random RR between 0.4 and 1.2 s.
        let mut x = 12345u64;
        let irregular: Vec<f64> = (0..300)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                0.4 + 0.8 * ((x >> 33) as f64 / (1u64 << 31) as f64)
            })
            .collect();
        let b = beats_from_rr(&irregular, fs);
        let n = b.last().unwrap() + 1000;
        let ev = analyze_rhythm(&b, &[], n, &cfg).unwrap();
        assert!(af_seconds(&ev, fs) > 150.0);

        // Sinus at 0.8 s with every third beat a PVC (short-long): irregular
        // RR, but the PVCs are not of the dominant shape.
        let rr: Vec<f64> = (0..300)
            .map(|i| match i % 3 {
                0 => 0.8,
                1 => 0.5,
                _ => 1.1,
            })
            .collect();
        let b = beats_from_rr(&rr, fs);
        let dom: Vec<bool> = (0..b.len()).map(|i| i % 3 != 2).collect();
        let n = b.last().unwrap() + 1000;
        let ev = analyze_rhythm_with_morphology(&b, &dom, &[], n, &cfg).unwrap();
        assert_eq!(af_seconds(&ev, fs), 0.0);
        // Premature beats of normal shape (every fifth beat, short-long):
        // most intervals are still sinus, caught by the cluster test.
        let rr: Vec<f64> = (0..300)
            .map(|i| match i % 5 {
                3 => 0.5,
                4 => 1.0,
                _ => 0.8,
            })
            .collect();
        let b2 = beats_from_rr(&rr, fs);
        let n2 = b2.last().unwrap() + 1000;
        let ev = analyze_rhythm(&b2, &[], n2, &cfg).unwrap();
        assert_eq!(af_seconds(&ev, fs), 0.0);
        assert!(analyze_rhythm_with_morphology(&b, &dom[1..], &[], n, &cfg).is_err());
    }

    #[test]
    fn pause_and_poor_signal() {
        let fs = 100.0;
        let beats: Vec<u64> = vec![0, 100, 200, 700, 800, 900, 1400];
        let cfg = RhythmConfig::new(fs);
        let ev = analyze_rhythm(&beats, &[(900, 1400)], 1400, &cfg).unwrap();
        let pauses: Vec<_> = ev.iter().filter(|e| e.kind == RhythmKind::Pause).collect();
        assert_eq!(pauses.len(), 1);
        assert_eq!((pauses[0].onset, pauses[0].end), (200, 700));
        assert!(ev.iter().any(|e| e.kind == RhythmKind::PoorSignal));
    }
}
