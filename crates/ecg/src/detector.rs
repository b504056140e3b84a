//! Streaming QRS (R-peak) detector.
//!
//! Design follows Hamilton & Tompkins ("Quantitative investigation of QRS
//! detection rules using the MIT/BIH arrhythmia database", IEEE TBME 33(12),
//! 1986) and its open-source successor OSEA: integer band-pass, derivative,
//! absolute value and moving-window integration, peak picking with a 200 ms
//! "pre-blank" in which only the largest peak survives, thresholds adapted from
//! the mean of the last eight QRS and noise peak heights, searchback at 1.5 x
//! the mean RR interval, a baseline-shift check and a slope test for T waves.
//!
//! Every decision is a function of the samples seen so far, made one sample at
//! a time, so feeding the record in chunks of any size yields exactly the same
//! beats as feeding it at once. State is a fixed set of ring buffers, so memory
//! per stream is bounded (about 100 KiB) whatever the record length.

use crate::error::{EcgError, Result};

/// Ring buffers must cover the longest look-back (filters plus fiducial
/// search, under 1.5 s at 1000 Hz); a power of two keeps indexing a mask.
const RING: usize = 2048;
const MASK: usize = RING - 1;
/// Peak heights averaged for the thresholds (Hamilton & Tompkins used 8).
const HIST: usize = 8;
/// Peaks remembered during the learning period; more than 2 s can hold.
const LEARN_CAP: usize = 64;

/// Detector configuration. Only the sampling rate is required; the rest have
/// defaults tuned on no particular record.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Samples per second, 125 to 1000.
    pub sampling_rate: f64,
    /// Fraction of the way from the noise level to the QRS level at which the
    /// detection threshold sits.
    pub threshold_fraction: f64,
    /// Searchback starts after this many mean RR intervals without a beat.
    pub searchback_rr: f64,
    /// Searchback accepts peaks above this fraction of the threshold.
    pub searchback_fraction: f64,
}

impl DetectorConfig {
    /// Defaults for a sampling rate.
    pub fn new(sampling_rate: f64) -> Self {
        Self {
            sampling_rate,
            threshold_fraction: 0.35,
            searchback_rr: 1.66,
            searchback_fraction: 0.6,
        }
    }
}

/// A detected heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// Sample index (from the start of the stream) of the R peak.
    pub sample: u64,
    /// Sample index at which the detector emitted the beat; `emitted - sample`
    /// is the detection latency.
    pub emitted: u64,
    /// True when found by searchback (lower threshold).
    pub searchback: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Peak {
    /// Height of the integrated feature.
    height: i64,
    /// Feature-time index of the peak.
    at: u64,
    /// Raw-time index of the R wave.
    fiducial: u64,
    /// Largest absolute derivative around the peak (T-wave test).
    slope: i64,
    /// False when the derivative looks like a baseline step, not a QRS.
    qrs_like: bool,
}

/// Filter lengths and rule constants derived from the sampling rate.
#[derive(Debug, Clone, Copy)]
struct Params {
    lp: usize,
    hp: usize,
    der: usize,
    win: usize,
    /// Delay from a raw sample to the same instant in the band-passed signal.
    hp_delay: u64,
    ms95: u64,
    ms200: u64,
    ms360: u64,
    ms150: u64,
    /// Largest P-to-R distance considered by the P-wave test.
    p_wave: u64,
    /// How long an accepted beat is held before it is emitted.
    hold: u64,
    learn: u64,
    rr_init: u64,
    rr_max: u64,
    th_num: i64,
    sb_num: i64,
    sb_rr_num: u64,
}

const FRAC_DEN: i64 = 1024;
const SLOPE_DEN: i64 = 100;
const SB_SLOPE_NUM: i64 = 30;
const P_WAVE_MS: f64 = 300.0;
const P_SLOPE_NUM: i64 = 3;
const P_SLOPE_DEN: i64 = 2;

impl Params {
    fn new(cfg: &DetectorConfig) -> Result<Self> {
        let fs = cfg.sampling_rate;
        if !(125.0..=1000.0).contains(&fs) {
            return Err(EcgError::Config(format!(
                "sampling rate {fs} Hz outside 125..=1000"
            )));
        }
        let frac_ok = |v: f64| (0.0..=1.0).contains(&v);
        if !frac_ok(cfg.threshold_fraction) || !frac_ok(cfg.searchback_fraction) {
            return Err(EcgError::Config("fractions must be within 0..=1".into()));
        }
        if !(1.0..=3.0).contains(&cfg.searchback_rr) {
            return Err(EcgError::Config(
                "searchback_rr must be within 1..=3".into(),
            ));
        }
        let n = |ms: f64| ((ms * fs / 1000.0).round() as usize).max(1);
        let lp = n(25.0);
        // Odd, so the moving average has an integer centre.
        let hp = n(125.0) | 1;
        let der = n(10.0);
        // 150 ms (Pan & Tompkins' width) merges a tall P wave into its QRS
        // better than Hamilton's 80 ms on records with long PR intervals.
        let win = n(150.0);
        Ok(Self {
            lp,
            hp,
            der,
            win,
            hp_delay: (lp - 1) as u64 + (hp / 2) as u64,
            ms95: n(95.0) as u64,
            ms200: n(200.0) as u64,
            ms360: n(360.0) as u64,
            ms150: n(150.0) as u64,
            p_wave: n(P_WAVE_MS) as u64,
            hold: n(P_WAVE_MS + 95.0 + 200.0 + 5.0) as u64,
            learn: n(2000.0) as u64,
            rr_init: n(1000.0) as u64,
            rr_max: n(2000.0) as u64,
            th_num: (cfg.threshold_fraction * FRAC_DEN as f64).round() as i64,
            sb_num: (cfg.searchback_fraction * FRAC_DEN as f64).round() as i64,
            sb_rr_num: (cfg.searchback_rr * FRAC_DEN as f64).round() as u64,
        })
    }
}

/// Everything a beat acceptance changes, so a beat can be taken back when
/// the next peak shows it was a P wave.
#[derive(Debug, Clone, Copy)]
struct Decision {
    qrs_hist: [i64; HIST],
    noise_hist: [i64; HIST],
    rr_hist: [u64; HIST],
    qrs_sum: i64,
    noise_sum: i64,
    /// Steepest slope of the last QRS complexes (rejects gentle P/T waves).
    slope_hist: [i64; HIST],
    slope_sum: i64,
    rr_sum: u64,
    hist_pos: (usize, usize, usize),
    thresh: i64,
    last_beat: Option<Peak>,
    /// Best searchback candidate since the last beat.
    sb: Option<Peak>,
    /// Feature-time deadline for searchback.
    sb_deadline: u64,
}

/// Streaming QRS detector for one ECG lead.
#[derive(Debug, Clone)]
pub struct QrsDetector {
    p: Params,
    /// Samples consumed so far (raw time of the next sample).
    n: u64,
    x: Box<[i64; RING]>,
    s1: Box<[i64; RING]>,
    s2: Box<[i64; RING]>,
    hp: Box<[i64; RING]>,
    ad: Box<[i64; RING]>,
    sum1: i64,
    sum2: i64,
    sum3: i64,
    sum4: i64,
    // Peak() state.
    pk_max: i64,
    pk_at: u64,
    pk_since: u64,
    last_f: i64,
    // Pre-blank state.
    pending: Option<Peak>,
    pending_left: u64,
    // Learning period.
    learning: bool,
    learn_peaks: Vec<Peak>,
    d: Decision,
    /// Last accepted beat, held until no steeper peak can follow it, with
    /// the decision state from before it was accepted.
    tentative: Option<(Peak, bool, Decision)>,
}

impl QrsDetector {
    /// Creates a detector; fails if the configuration is out of range.
    pub fn new(cfg: &DetectorConfig) -> Result<Self> {
        let p = Params::new(cfg)?;
        let z = || Box::new([0i64; RING]);
        Ok(Self {
            p,
            n: 0,
            x: z(),
            s1: z(),
            s2: z(),
            hp: z(),
            ad: z(),
            sum1: 0,
            sum2: 0,
            sum3: 0,
            sum4: 0,
            pk_max: 0,
            pk_at: 0,
            pk_since: 0,
            last_f: 0,
            pending: None,
            pending_left: 0,
            learning: true,
            learn_peaks: Vec::with_capacity(LEARN_CAP),
            d: Decision {
                qrs_hist: [0; HIST],
                noise_hist: [0; HIST],
                rr_hist: [p.rr_init; HIST],
                qrs_sum: 0,
                noise_sum: 0,
                slope_hist: [0; HIST],
                slope_sum: 0,
                rr_sum: p.rr_init * HIST as u64,
                hist_pos: (0, 0, 0),
                thresh: 0,
                last_beat: None,
                sb: None,
                sb_deadline: u64::MAX,
            },
            tentative: None,
        })
    }

    /// Upper bound, in samples, on `Beat::emitted - Beat::sample` for beats
    /// found after the 2 s learning period: filter delay, peak confirmation,
    /// the 200 ms pre-blank and, for searchback beats, up to 1.5 x the mean RR
    /// (mean RR is capped at 2 s). Beats inside the learning period are
    /// emitted when it ends.
    pub fn max_latency_samples(&self) -> u64 {
        let p = &self.p;
        let filt = p.hp_delay + p.der as u64 + p.win as u64;
        let sb = p.rr_max * p.sb_rr_num / FRAC_DEN as u64 + p.win as u64;
        filt + p.ms95 + p.ms200 + sb.max(p.hold)
    }

    /// Samples consumed so far.
    pub fn samples_seen(&self) -> u64 {
        self.n
    }

    /// Feeds samples (ADC units, any scale) and returns the beats confirmed.
    pub fn push(&mut self, samples: &[i32]) -> Vec<Beat> {
        let mut out = Vec::new();
        self.push_into(samples, &mut out);
        out
    }

    /// Like [`push`](Self::push) but appends to `out` (no allocation per call).
    pub fn push_into(&mut self, samples: &[i32], out: &mut Vec<Beat>) {
        let p = self.p;
        for &raw in samples {
            let i = self.n as usize;
            let v = i64::from(raw);
            // Two cascaded moving sums: low-pass with a null at fs/lp.
            self.sum1 += v - self.x[(i.wrapping_sub(p.lp)) & MASK];
            self.x[i & MASK] = v;
            self.sum2 += self.sum1 - self.s1[(i.wrapping_sub(p.lp)) & MASK];
            self.s1[i & MASK] = self.sum1;
            // High-pass: centre sample minus the moving mean (scaled by hp).
            self.sum3 += self.sum2 - self.s2[(i.wrapping_sub(p.hp)) & MASK];
            self.s2[i & MASK] = self.sum2;
            let h = self.s2[(i.wrapping_sub(p.hp / 2)) & MASK] * p.hp as i64 - self.sum3;
            let d = (h - self.hp[(i.wrapping_sub(p.der)) & MASK]).abs();
            self.hp[i & MASK] = h;
            self.sum4 += d - self.ad[(i.wrapping_sub(p.win)) & MASK];
            self.ad[i & MASK] = d;
            let f = self.sum4;
            self.n += 1;
            // Filters are not settled until every window has filled once.
            if self.n <= (p.lp * 2 + p.hp + p.der + p.win) as u64 {
                continue;
            }
            self.step_peak(f, out);
        }
    }

    /// Ends the stream: resolves the peak still held in the pre-blank.
    pub fn finish(&mut self) -> Vec<Beat> {
        let mut out = Vec::new();
        if let Some(pk) = self.pending.take() {
            self.on_peak(pk, &mut out);
        }
        if self.learning {
            self.end_learning(&mut out);
        }
        self.emit_tentative(&mut out);
        out
    }

    #[inline]
    fn step_peak(&mut self, f: i64, out: &mut Vec<Beat>) {
        let now = self.n - 1;
        // Peak(): a local maximum is confirmed once the feature halves or 95 ms pass.
        let mut found = None;
        if self.pk_since > 0 {
            self.pk_since += 1;
        }
        if f > self.last_f && f > self.pk_max {
            self.pk_max = f;
            self.pk_at = now;
            self.pk_since = 1;
        } else if self.pk_max > 0 && (f < self.pk_max / 2 || self.pk_since > self.p.ms95) {
            found = Some((self.pk_max, self.pk_at));
            self.pk_max = 0;
            self.pk_since = 0;
        }
        self.last_f = f;

        // Pre-blank: only the largest peak within 200 ms survives.
        match (found, self.pending) {
            (Some((h, at)), None) => {
                self.pending = Some(self.describe(h, at, now));
                self.pending_left = self.p.ms200;
            }
            (Some((h, at)), Some(pk)) => {
                if h > pk.height {
                    self.pending = Some(self.describe(h, at, now));
                    self.pending_left = self.p.ms200;
                } else {
                    self.tick_pending(out);
                }
            }
            (None, Some(_)) => self.tick_pending(out),
            (None, None) => {}
        }

        if let Some((tent, _, _)) = self.tentative
            && now >= tent.at + self.p.hold
        {
            self.emit_tentative(out);
        }
        if !self.learning && now >= self.d.sb_deadline {
            self.searchback(out);
        } else if self.learning && now >= self.p.learn {
            self.end_learning(out);
        }
    }

    #[inline]
    fn tick_pending(&mut self, out: &mut Vec<Beat>) {
        self.pending_left = self.pending_left.saturating_sub(1);
        if self.pending_left == 0
            && let Some(pk) = self.pending.take()
        {
            self.on_peak(pk, out);
        }
    }

    /// Measures the QRS-ness of a feature peak from the band-passed history.
    fn describe(&self, height: i64, at: u64, now: u64) -> Peak {
        let p = &self.p;
        // The integrator spans `win` samples ending at `at`; the slopes that
        // built the peak lie in that span (plus the derivative lag).
        let span = (p.win + p.der + p.ms95 as usize / 2) as u64;
        let lo = at.saturating_sub(span);
        let lo = lo.max(now.saturating_sub(RING as u64 - 1));
        let (mut best, mut best_at) = (-1i64, at);
        let (mut dmax, mut dmax_at, mut dmin, mut dmin_at) = (0i64, at, 0i64, at);
        let mut prev = self.hp[(lo as usize) & MASK];
        for t in lo..=at {
            let h = self.hp[(t as usize) & MASK];
            if h.abs() > best {
                best = h.abs();
                best_at = t;
            }
            let dd = h - prev;
            if dd > dmax {
                dmax = dd;
                dmax_at = t;
            }
            if dd < dmin {
                dmin = dd;
                dmin_at = t;
            }
            prev = h;
        }
        let neg = -dmin;
        {
            // The R wave is the largest deflection next to the steepest slope;
            // searching the whole integrator span could land on a T wave.
            let c = if dmax >= -dmin { dmax_at } else { dmin_at };
            let r = p.ms95 / 2;
            best = -1;
            for t in c.saturating_sub(r).max(lo)..=(c + r).min(at) {
                let h = self.hp[(t as usize) & MASK].abs();
                if h > best {
                    best = h;
                    best_at = t;
                }
            }
        }
        // A QRS has steep slopes of both signs close together; a baseline step
        // has mostly one.
        let qrs_like = dmax > neg / 8 && neg > dmax / 8 && dmax_at.abs_diff(dmin_at) < p.ms150;
        Peak {
            height,
            at,
            fiducial: best_at.saturating_sub(p.hp_delay),
            slope: dmax.max(neg),
            qrs_like,
        }
    }

    fn end_learning(&mut self, out: &mut Vec<Beat>) {
        self.learning = false;
        // Thresholds start from the tallest peak per second of the learning
        // period, noise at zero (as Hamilton & Tompkins initialise).
        let m = self.learn_peaks.iter().map(|p| p.height).max().unwrap_or(0);
        let sl = self.learn_peaks.iter().map(|p| p.slope).max().unwrap_or(0);
        self.d.qrs_hist = [m; HIST];
        self.d.qrs_sum = m * HIST as i64;
        self.d.slope_hist = [sl; HIST];
        self.d.slope_sum = sl * HIST as i64;
        self.update_threshold();
        let peaks = std::mem::take(&mut self.learn_peaks);
        for pk in peaks {
            if pk.at > self.d.sb_deadline {
                self.searchback(out);
            }
            self.classify(pk, out);
        }
    }

    fn on_peak(&mut self, pk: Peak, out: &mut Vec<Beat>) {
        if self.learning {
            if self.learn_peaks.len() < LEARN_CAP {
                self.learn_peaks.push(pk);
            }
            return;
        }
        self.classify(pk, out);
    }

    fn classify(&mut self, pk: Peak, out: &mut Vec<Beat>) {
        let p = self.p;
        let mut is_qrs = pk.height > self.d.thresh && pk.qrs_like;
        if is_qrs && let Some(last) = self.d.last_beat {
            let since = pk.at.saturating_sub(last.at);
            if since < p.ms200 {
                is_qrs = false;
            } else if since < p.ms360 && pk.slope < last.slope / 2 {
                // Within 360 ms and much gentler than the last QRS: a T wave.
                is_qrs = false;
            }
        }
        if is_qrs {
            if let Some((tent, _, before)) = self.tentative
                && pk.at.saturating_sub(tent.at) < p.p_wave
                && pk.slope > tent.slope.saturating_mul(P_SLOPE_NUM) / P_SLOPE_DEN
            {
                // A much steeper complex right after an accepted one: the
                // first was a tall P wave (e.g. with a long PR interval).
                self.tentative = None;
                self.d = before;
                self.push_noise(tent.height);
            }
            self.accept(pk, false, out);
        } else {
            self.push_noise(pk.height);
            let eligible = self
                .d
                .last_beat
                .is_none_or(|last| pk.at >= last.at + p.ms360)
                && pk.qrs_like;
            if eligible && self.d.sb.is_none_or(|s| pk.height > s.height) {
                self.d.sb = Some(pk);
            }
        }
    }

    fn searchback(&mut self, out: &mut Vec<Beat>) {
        let p = self.p;
        let floor = self.d.thresh * p.sb_num / FRAC_DEN;
        match self.d.sb.take() {
            Some(pk)
                if pk.height > floor
                    // Lowered height alone lets P waves in during long pauses;
                    // a QRS must also be reasonably steep.
                    && pk.slope * SLOPE_DEN > self.d.slope_sum / HIST as i64 * SB_SLOPE_NUM =>
            {
                // The noise history counted this peak; it was a beat after all.
                self.accept(pk, true, out);
            }
            _ => {
                // Nothing usable: look again one mean RR later.
                self.d.sb_deadline = self.d.sb_deadline.saturating_add(self.rr_mean());
            }
        }
    }

    fn accept(&mut self, pk: Peak, searchback: bool, out: &mut Vec<Beat>) {
        let p = self.p;
        self.emit_tentative(out);
        let before = self.d;
        let k = self.d.hist_pos.0;
        self.d.slope_sum += pk.slope - self.d.slope_hist[k];
        self.d.slope_hist[k] = pk.slope;
        self.push_qrs(pk.height);
        if let Some(last) = self.d.last_beat {
            let rr = pk.at.saturating_sub(last.at).min(p.rr_max);
            self.push_rr(rr);
        }
        self.d.last_beat = Some(pk);
        self.d.sb = None;
        self.d.sb_deadline = pk.at + self.rr_mean() * p.sb_rr_num / FRAC_DEN as u64 + p.win as u64;
        self.update_threshold();
        self.tentative = Some((pk, searchback, before));
    }

    fn emit_tentative(&mut self, out: &mut Vec<Beat>) {
        if let Some((pk, searchback, _)) = self.tentative.take() {
            out.push(Beat {
                sample: pk.fiducial,
                emitted: self.n,
                searchback,
            });
        }
    }

    fn rr_mean(&self) -> u64 {
        self.d.rr_sum / HIST as u64
    }

    fn push_qrs(&mut self, h: i64) {
        let k = self.d.hist_pos.0;
        self.d.qrs_sum += h - self.d.qrs_hist[k];
        self.d.qrs_hist[k] = h;
        self.d.hist_pos.0 = (k + 1) % HIST;
    }

    fn push_noise(&mut self, h: i64) {
        let k = self.d.hist_pos.1;
        self.d.noise_sum += h - self.d.noise_hist[k];
        self.d.noise_hist[k] = h;
        self.d.hist_pos.1 = (k + 1) % HIST;
        self.update_threshold();
    }

    fn push_rr(&mut self, rr: u64) {
        let k = self.d.hist_pos.2;
        self.d.rr_sum = self.d.rr_sum + rr - self.d.rr_hist[k];
        self.d.rr_hist[k] = rr;
        self.d.hist_pos.2 = (k + 1) % HIST;
    }

    fn update_threshold(&mut self) {
        let q = self.d.qrs_sum / HIST as i64;
        let nz = self.d.noise_sum / HIST as i64;
        self.d.thresh = nz + (q - nz).max(0) * self.p.th_num / FRAC_DEN;
    }
}

/// Detects beats over a whole record at once (same result as streaming).
pub fn detect_all(samples: &[i32], cfg: &DetectorConfig) -> Result<Vec<Beat>> {
    let mut det = QrsDetector::new(cfg)?;
    let mut beats = det.push(samples);
    beats.extend(det.finish());
    Ok(beats)
}
