//! Technical signal quality: flat line / lead-off and heavy noise. Rhythm
//! analysis uses it so that a lost electrode is reported as "poor signal"
//! rather than as asystole, and noise rather than as tachycardia or AF.

use crate::error::{EcgError, Result};

/// Quality of one analysis window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignalQuality {
    Good,
    /// Almost no amplitude: electrode off, amplifier saturated at a rail, or
    /// a disconnected cable.
    Flat,
    /// Amplitude beyond any ECG, or dominated by high-frequency noise.
    Noisy,
}

/// Quality thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityConfig {
    pub sampling_rate: f64,
    /// ADC units per mV (200 for MIT-BIH).
    pub units_per_mv: f64,
    /// Window length in seconds.
    pub window_s: f64,
    /// Below this peak-to-peak amplitude (mV) a window is flat.
    pub flat_mv: f64,
    /// Above this peak-to-peak amplitude (mV) a window is noise.
    pub max_mv: f64,
    /// Total variation over peak-to-peak amplitude, per sample of the window,
    /// above which the window is noise. A clean ECG has a few swings per beat;
    /// broadband noise swings on nearly every sample.
    pub max_variation_per_sample: f64,
}

impl QualityConfig {
    /// Defaults for a sampling rate and gain.
    pub fn new(sampling_rate: f64, units_per_mv: f64) -> Self {
        Self {
            sampling_rate,
            units_per_mv,
            window_s: 2.0,
            flat_mv: 0.05,
            max_mv: 10.0,
            max_variation_per_sample: 0.06,
        }
    }
}

/// A stretch of samples `[start, end)` with one quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QualitySegment {
    pub start: u64,
    pub end: u64,
    pub quality: SignalQuality,
}

/// Streaming quality classifier over fixed, non-overlapping windows.
#[derive(Debug, Clone)]
pub struct QualityMonitor {
    win: u64,
    flat: i64,
    max: i64,
    var_limit: f64,
    n: u64,
    start: u64,
    lo: i32,
    hi: i32,
    tv: i64,
    prev: Option<i32>,
}

impl QualityMonitor {
    /// Creates a monitor; fails on a non-positive rate, gain or window.
    pub fn new(cfg: &QualityConfig) -> Result<Self> {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        if !ok(cfg.sampling_rate) || !ok(cfg.units_per_mv) || !ok(cfg.window_s) {
            return Err(EcgError::Config(
                "quality: rate, gain and window must be > 0".into(),
            ));
        }
        let win = (cfg.sampling_rate * cfg.window_s).round().max(2.0) as u64;
        Ok(Self {
            win,
            flat: (cfg.flat_mv * cfg.units_per_mv).round() as i64,
            max: (cfg.max_mv * cfg.units_per_mv).round() as i64,
            var_limit: cfg.max_variation_per_sample * win as f64,
            n: 0,
            start: 0,
            lo: i32::MAX,
            hi: i32::MIN,
            tv: 0,
            prev: None,
        })
    }

    /// Feeds samples; returns one segment per window completed.
    pub fn push(&mut self, samples: &[i32]) -> Vec<QualitySegment> {
        let mut out = Vec::new();
        for &s in samples {
            self.lo = self.lo.min(s);
            self.hi = self.hi.max(s);
            if let Some(p) = self.prev {
                self.tv += (i64::from(s) - i64::from(p)).abs();
            }
            self.prev = Some(s);
            self.n += 1;
            if self.n - self.start == self.win {
                out.push(self.close());
            }
        }
        out
    }

    /// Classifies the last, partial window (if any).
    pub fn finish(&mut self) -> Option<QualitySegment> {
        (self.n > self.start).then(|| self.close())
    }

    fn close(&mut self) -> QualitySegment {
        let p2p = i64::from(self.hi) - i64::from(self.lo);
        let quality = if p2p <= self.flat {
            SignalQuality::Flat
        } else if p2p > self.max || self.tv as f64 > self.var_limit * p2p as f64 {
            SignalQuality::Noisy
        } else {
            SignalQuality::Good
        };
        let seg = QualitySegment {
            start: self.start,
            end: self.n,
            quality,
        };
        self.start = self.n;
        self.lo = i32::MAX;
        self.hi = i32::MIN;
        self.tv = 0;
        seg
    }
}

/// Classifies a whole record.
pub fn assess_quality(samples: &[i32], cfg: &QualityConfig) -> Result<Vec<QualitySegment>> {
    let mut m = QualityMonitor::new(cfg)?;
    let mut v = m.push(samples);
    v.extend(m.finish());
    Ok(v)
}

/// Merges the non-good segments into poor-signal intervals `[start, end)`.
pub fn poor_intervals(segments: &[QualitySegment]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for s in segments.iter().filter(|s| s.quality != SignalQuality::Good) {
        match out.last_mut() {
            Some(last) if last.1 >= s.start => last.1 = last.1.max(s.end),
            _ => out.push((s.start, s.end)),
        }
    }
    out
}
