//! A cardiac patient wearing an ECG patch that streams lead II in 10-second chunks and
//! reports a heart rate every minute.
//!
//! Two sources of signal:
//! - **Replay** of an MIT-BIH Arrhythmia Database record's MLII lead, sample for sample,
//!   with the record's own gain and baseline (Moody GB, Mark RG, "The impact of the
//!   MIT-BIH Arrhythmia Database", IEEE Eng Med Biol 20(3):45–50, 2001; Goldberger AL et
//!   al., "PhysioBank, PhysioToolkit, and PhysioNet", Circulation 101(23):e215–e220,
//!   2000). The caller passes the record's bytes; the record loops when it ends.
//! - **Synthesis** with ECGSYN, the dynamical model of McSharry PE, Clifford GD,
//!   Tarassenko L, Smith LA, "A dynamical model for generating synthetic
//!   electrocardiogram signals", IEEE Trans Biomed Eng 50(3):289–294, 2003: a point
//!   circling a limit cycle at angular speed 2π/RR drives z(t) through five Gaussian
//!   events P, Q, R, S, T. Sinus RR intervals carry McSharry's bimodal spectrum
//!   (Mayer waves at 0.1 Hz, respiratory sinus arrhythmia at 0.25 Hz, LF/HF 0.5) built
//!   as a sum of random-phase sinusoids. Atrial fibrillation episodes drop the P wave,
//!   add fibrillatory f-waves (the sawtooth model with amplitude and frequency modulation
//!   of Stridh M, Sörnmo L, "Spatiotemporal QRST cancellation techniques for analysis of
//!   atrial fibrillation", IEEE Trans Biomed Eng 48(1):105–111, 2001) and draw RR
//!   intervals as AV-node refractory period plus exponential waiting for the next
//!   conducted atrial impulse (Cohen RJ, Berger RD, Dushane TE, "A quantitative model
//!   for the ventricular response during atrial fibrillation", IEEE Trans Biomed Eng
//!   30(12):769–781, 1983), which gives the "irregularly irregular" rhythm.

use std::collections::VecDeque;
use std::f64::consts::{PI, TAU};

use chrono::{DateTime, Datelike, Duration, SubsecRound, Utc};
use wardline_analytics::news2::SpO2Scale;
use wardline_domain::{DeviceKind, Signal};
use wardline_ecg::wfdb::{Header, decode_signal, parse_annotations};
use wardline_ecg::{DetectorConfig, detect_all};

use crate::error::SimError;
use crate::payload::{DeviceEmission, Measured, Num, Transmitter};
use crate::rng::Rng;
use crate::roster::{DeviceSpec, PatientSpec, Program};

const HEART_RATE_CODE: &str = "8867-4";

/// One lead of an ECG record, as the caller decoded it from WFDB files.
#[derive(Debug, Clone, PartialEq)]
pub struct EcgRecord {
    pub name: String,
    pub lead: String,
    pub sampling_rate_hz: u32,
    /// ADC counts per mV.
    pub gain: f64,
    /// ADC count of 0 mV.
    pub baseline: i32,
    pub samples: Vec<i32>,
    /// R-peak sample positions (reference annotations if given, else detected).
    pub beats: Vec<u64>,
    /// Header comment lines (age, sex, medication, notes).
    pub comments: Vec<String>,
}

impl EcgRecord {
    /// Reads the MLII lead of a format-212 record from its `.hea` text and `.dat` bytes.
    /// Beat positions come from the `.atr` bytes when given (the device's "own" beat
    /// detector is then perfect), else from Wardline's QRS detector.
    pub fn from_wfdb(header_text: &str, dat: &[u8], atr: Option<&[u8]>) -> Result<Self, SimError> {
        let header = Header::parse(header_text).map_err(|source| SimError::Record {
            record: "(header)".to_owned(),
            source,
        })?;
        let record = header.record.clone();
        let wrap = |source| SimError::Record {
            record: record.clone(),
            source,
        };
        let index = header.find_signal("MLII").map_err(wrap)?;
        let spec = &header.signals[index];
        let mut samples = decode_signal(&header, dat, index).map_err(wrap)?;
        if let Some(n) = header.samples_per_signal {
            samples.truncate(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if samples.is_empty() {
            return Err(SimError::Invalid(format!("record {record} has no samples")));
        }
        let rate = header.sampling_rate;
        if !(rate >= 1.0 && rate.fract() == 0.0 && rate <= 10_000.0) {
            return Err(SimError::Invalid(format!(
                "record {record}: sampling rate {rate} Hz is not a whole number of hertz"
            )));
        }
        let beats = match atr {
            Some(bytes) => parse_annotations(bytes)
                .map_err(wrap)?
                .into_iter()
                .filter(|a| a.is_beat() && a.sample >= 0)
                .map(|a| a.sample as u64)
                .filter(|&s| s < samples.len() as u64)
                .collect(),
            None => detect_all(&samples, &DetectorConfig::new(rate))
                .map_err(wrap)?
                .into_iter()
                .map(|b| b.sample)
                .collect(),
        };
        Ok(Self {
            name: record.clone(),
            lead: spec.description.clone(),
            sampling_rate_hz: rate as u32,
            gain: spec.gain,
            baseline: spec.baseline,
            samples,
            beats,
            comments: header.comments.clone(),
        })
    }

    /// Age and sex from the first MIT-BIH header comment (`# 68 M 1960 2851 x1`).
    pub fn age_and_sex(&self) -> Option<(u32, char)> {
        let mut words = self.comments.first()?.split_whitespace();
        let age = words.next()?.parse().ok()?;
        let sex = words.next()?.chars().next()?;
        Some((age, sex))
    }
}

/// How the synthetic patient's heart behaves.
#[derive(Debug, Clone)]
pub struct SyntheticEcgConfig {
    pub sampling_rate_hz: u32,
    /// ADC counts per mV and the zero count of the simulated patch.
    pub gain: f64,
    pub baseline: i32,
    pub sinus_heart_rate: f64,
    /// RR standard deviation in sinus rhythm, seconds.
    pub sinus_rr_sd_s: f64,
    /// Atrial fibrillation: refractory period and mean extra wait, seconds (Cohen 1983).
    pub af_refractory_s: f64,
    pub af_mean_wait_s: f64,
    /// Minutes of sinus rhythm before the first AF episode (drawn uniformly), then
    /// between episodes, and of each AF episode; `None` for sinus rhythm only.
    pub af_episodes: Option<AfEpisodes>,
    /// Measurement noise, mV RMS.
    pub noise_mv: f64,
}

/// Episode lengths in minutes, drawn uniformly from the ranges.
#[derive(Debug, Clone, Copy)]
pub struct AfEpisodes {
    pub first_onset_min: (f64, f64),
    pub sinus_min: (f64, f64),
    pub af_min: (f64, f64),
}

impl Default for SyntheticEcgConfig {
    fn default() -> Self {
        Self {
            sampling_rate_hz: 250,
            gain: 400.0,
            baseline: 0,
            sinus_heart_rate: 68.0,
            sinus_rr_sd_s: 0.035,
            af_refractory_s: 0.36,
            af_mean_wait_s: 0.22,
            af_episodes: Some(AfEpisodes {
                first_onset_min: (4.0, 10.0),
                sinus_min: (20.0, 50.0),
                af_min: (8.0, 25.0),
            }),
            noise_mv: 0.012,
        }
    }
}

/// Produces samples in order, and knows where the beats are.
trait EcgGenerator: std::fmt::Debug + Send {
    fn rate_hz(&self) -> u32;
    fn gain(&self) -> f64;
    fn baseline(&self) -> i32;
    /// Appends the next `count` samples (absolute indices continue across calls).
    fn generate(&mut self, count: usize, out: &mut Vec<i32>);
    /// R peaks with `from <= sample < to`; only asked about samples already generated.
    fn beats_between(&self, from: u64, to: u64) -> Vec<u64>;
    /// Ground truth: atrial fibrillation `[onset, end)` in samples generated so far.
    fn af_intervals(&self) -> Vec<(u64, u64)> {
        Vec::new()
    }
}

#[derive(Debug)]
struct Replay {
    record: EcgRecord,
    next: u64,
}

impl EcgGenerator for Replay {
    fn rate_hz(&self) -> u32 {
        self.record.sampling_rate_hz
    }
    fn gain(&self) -> f64 {
        self.record.gain
    }
    fn baseline(&self) -> i32 {
        self.record.baseline
    }
    fn generate(&mut self, count: usize, out: &mut Vec<i32>) {
        let n = self.record.samples.len() as u64;
        for _ in 0..count {
            out.push(self.record.samples[(self.next % n) as usize]);
            self.next += 1;
        }
    }
    fn beats_between(&self, from: u64, to: u64) -> Vec<u64> {
        let n = self.record.samples.len() as u64;
        let mut out = Vec::new();
        if to <= from {
            return out;
        }
        // The record loops: look in every pass that overlaps [from, to).
        for pass in from / n..=(to - 1) / n {
            let offset = pass * n;
            let lo = from.saturating_sub(offset);
            let hi = to - offset;
            let beats = &self.record.beats;
            let first = beats.partition_point(|&b| b < lo);
            out.extend(
                beats[first..]
                    .iter()
                    .take_while(|&&b| b < hi)
                    .map(|&b| b + offset),
            );
        }
        out
    }
}

/// ECGSYN's default P, Q, R, S, T events (McSharry 2003, Table 1): angle (rad), amplitude
/// and width.
const WAVE_ANGLE_DEG: [f64; 5] = [-70.0, -15.0, 0.0, 15.0, 100.0];
const WAVE_AMPLITUDE: [f64; 5] = [1.2, -5.0, 30.0, -7.5, 0.75];
const WAVE_WIDTH: [f64; 5] = [0.25, 0.1, 0.1, 0.1, 0.4];
const INTERNAL_STEPS: usize = 2;

#[derive(Debug)]
struct Ecgsyn {
    config: SyntheticEcgConfig,
    rng: Rng,
    /// Next absolute sample index.
    next: u64,
    theta: f64,
    z: f64,
    omega: f64,
    angles: [f64; 5],
    widths: [f64; 5],
    /// Amplitude multipliers that keep deflections independent of RR.
    gains: [f64; 5],
    /// mV per unit of z, from a calibration beat (ECGSYN rescales its output likewise).
    scale: f64,
    /// z of the isoelectric T–P segment.
    isoelectric: f64,
    in_af: bool,
    /// Sample at which the current rhythm episode ends (switches at the next beat).
    episode_end: u64,
    /// Random-phase sinusoids making up the sinus RR variability: (Hz, amplitude s, phase).
    rr_components: Vec<(f64, f64, f64)>,
    beats: VecDeque<u64>,
    wander_phase: f64,
    /// AF episodes so far: onset and, once over, end sample.
    af_history: Vec<(u64, Option<u64>)>,
}

impl Ecgsyn {
    fn new(config: SyntheticEcgConfig, mut rng: Rng) -> Self {
        // McSharry's spectrum: Gaussian peaks at 0.1 Hz and 0.25 Hz (SD 0.01 Hz), LF/HF 0.5.
        let variance = config.sinus_rr_sd_s.powi(2);
        let per_band = 8;
        let mut rr_components = Vec::new();
        for (centre, share) in [(0.1, 1.0 / 3.0), (0.25, 2.0 / 3.0)] {
            let amplitude = (2.0 * variance * share / f64::from(per_band)).sqrt();
            for _ in 0..per_band {
                let frequency = rng.gaussian(centre, 0.01);
                let phase = rng.range(0.0, TAU);
                rr_components.push((frequency, amplitude, phase));
            }
        }
        let mut generator = Self {
            scale: 1.0,
            isoelectric: 0.0,
            rng,
            next: 0,
            theta: -PI,
            z: 0.0,
            omega: TAU,
            angles: [0.0; 5],
            widths: WAVE_WIDTH,
            gains: [1.0; 5],
            in_af: false,
            episode_end: u64::MAX,
            rr_components,
            beats: VecDeque::new(),
            wander_phase: 0.0,
            af_history: Vec::new(),
            config,
        };
        (generator.scale, generator.isoelectric) = generator.calibrate();
        generator.wander_phase = generator.rng.range(0.0, TAU);
        if let Some(episodes) = generator.config.af_episodes {
            let minutes = generator
                .rng
                .range(episodes.first_onset_min.0, episodes.first_onset_min.1);
            generator.episode_end = generator.minutes_to_samples(minutes);
        }
        generator.start_beat();
        generator
    }

    fn minutes_to_samples(&self, minutes: f64) -> u64 {
        (minutes * 60.0 * f64::from(self.config.sampling_rate_hz)) as u64
    }

    /// Runs three noiseless beats at 60/min and returns the mV-per-z factor that maps the
    /// beat's range to ECGSYN's 1.6 mV (−0.4 to 1.2 mV), and z at the end of the beat
    /// (the T–P segment), which is taken as 0 mV.
    fn calibrate(&mut self) -> (f64, f64) {
        self.set_rate(1.0);
        let (mut z, mut theta) = (0.0, -PI);
        let dt = 1.0 / f64::from(self.config.sampling_rate_hz);
        let (mut low, mut high) = (f64::MAX, f64::MIN);
        let steps = 3 * self.config.sampling_rate_hz as usize;
        for i in 0..steps {
            for _ in 0..INTERNAL_STEPS {
                (theta, z) = self.rk4(theta, z, dt / INTERNAL_STEPS as f64, true);
                if theta > PI {
                    theta -= TAU;
                }
            }
            if i >= 2 * self.config.sampling_rate_hz as usize {
                low = low.min(z);
                high = high.max(z);
            }
        }
        let scale = if high > low { 1.6 / (high - low) } else { 1.0 };
        (scale, z)
    }

    /// Sets the angular speed for one RR interval and where the waves fall in it.
    ///
    /// ECGSYN scales wave angles and widths by √(HR/60), which suits a steady rate. In
    /// atrial fibrillation consecutive RR intervals differ two- or threefold, and that
    /// scaling would stretch each QRS with its own RR, which real ventricles do not do.
    /// So here the Q, R and S events keep fixed times (angle and width ∝ 1/RR, amplitude
    /// ∝ RR so that the deflection a·b²/ω is unchanged); the P wave keeps a fixed PR time;
    /// the T wave follows Bazett's QT ∝ √RR (Bazett HC, "An analysis of the
    /// time-relations of electrocardiograms", Heart 7:353–370, 1920) with ECGSYN's
    /// widening. At RR = 1 s everything equals ECGSYN's defaults.
    fn set_rate(&mut self, rr_s: f64) {
        self.omega = TAU / rr_s;
        let ecgsyn = (1.0 / rr_s).sqrt();
        for i in 0..5 {
            let angle = WAVE_ANGLE_DEG[i].to_radians();
            (self.angles[i], self.widths[i], self.gains[i]) = match i {
                // P: fixed PR time, kept in the first half of the cycle.
                0 => ((angle / rr_s).max(-0.9 * PI), WAVE_WIDTH[i] * ecgsyn, 1.0),
                // T: peak at 0.278 s·√RR after R, before the cycle ends.
                4 => (
                    (TAU * 0.278 * rr_s.sqrt() / rr_s).min(0.85 * PI),
                    WAVE_WIDTH[i] * ecgsyn,
                    1.0,
                ),
                _ => (angle / rr_s, WAVE_WIDTH[i] / rr_s, rr_s),
            };
        }
    }

    fn dz(&self, theta: f64, z: f64, with_p: bool) -> f64 {
        let mut forcing = 0.0;
        // Index 0 is the P wave, absent in atrial fibrillation.
        let first = usize::from(!with_p);
        let waves = self.angles.iter().zip(&self.widths).zip(&self.gains);
        let waves = waves.zip(&WAVE_AMPLITUDE);
        for (((angle, b), gain), amplitude) in waves.skip(first) {
            let mut d = theta - angle;
            d -= TAU * (d / TAU).round();
            // Beyond 6 widths the Gaussian is below 1e-8: skip the exp.
            if d.abs() < 6.0 * b {
                forcing += gain * amplitude * d * (-0.5 * (d / b).powi(2)).exp();
            }
        }
        // McSharry's equation as published; `set_rate` keeps each wave's deflection,
        // about a·b²/ω, the same at any heart rate.
        -forcing - z
    }

    fn rk4(&self, theta: f64, z: f64, h: f64, with_p: bool) -> (f64, f64) {
        let w = self.omega;
        let k1 = self.dz(theta, z, with_p);
        let k2 = self.dz(theta + w * h / 2.0, z + h / 2.0 * k1, with_p);
        let k3 = self.dz(theta + w * h / 2.0, z + h / 2.0 * k2, with_p);
        let k4 = self.dz(theta + w * h, z + h * k3, with_p);
        (theta + w * h, z + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4))
    }

    fn seconds(&self, sample: u64) -> f64 {
        sample as f64 / f64::from(self.config.sampling_rate_hz)
    }

    /// Draws the next RR interval and switches rhythm when the episode is over.
    fn start_beat(&mut self) {
        if self.next >= self.episode_end
            && let Some(episodes) = self.config.af_episodes
        {
            self.in_af = !self.in_af;
            if self.in_af {
                self.af_history.push((self.next, None));
            } else if let Some(last) = self.af_history.last_mut() {
                last.1 = Some(self.next);
            }
            let range = if self.in_af {
                episodes.af_min
            } else {
                episodes.sinus_min
            };
            let minutes = self.rng.range(range.0, range.1);
            self.episode_end = self.next + self.minutes_to_samples(minutes);
        }
        let rr = if self.in_af {
            (self.config.af_refractory_s + self.rng.exponential(self.config.af_mean_wait_s))
                .clamp(0.28, 2.0)
        } else {
            let t = self.seconds(self.next);
            let variability: f64 = self
                .rr_components
                .iter()
                .map(|(f, a, phase)| a * (TAU * f * t + phase).sin())
                .sum();
            (60.0 / self.config.sinus_heart_rate + variability).clamp(0.4, 1.6)
        };
        self.set_rate(rr);
    }

    /// Atrial f-waves (Stridh & Sörnmo 2001): M = 3 harmonics, f0 = 6 Hz with ±0.2 Hz
    /// modulation at 0.08 Hz, amplitude 0.05 ± 0.025 mV modulated at 0.08 Hz.
    fn f_wave(&self, t: f64) -> f64 {
        let (f0, df, ff, a, da, fa) = (6.0, 0.2, 0.08, 0.05, 0.025, 0.08);
        let phase = TAU * f0 * t + (df / ff) * (TAU * ff * t).sin();
        let amplitude = a + da * (TAU * fa * t).sin();
        (1..=3)
            .map(|i| {
                let i = f64::from(i);
                2.0 / (i * PI) * amplitude * (i * phase).sin()
            })
            .sum()
    }
}

impl EcgGenerator for Ecgsyn {
    fn rate_hz(&self) -> u32 {
        self.config.sampling_rate_hz
    }
    fn gain(&self) -> f64 {
        self.config.gain
    }
    fn baseline(&self) -> i32 {
        self.config.baseline
    }

    fn generate(&mut self, count: usize, out: &mut Vec<i32>) {
        let dt = 1.0 / f64::from(self.config.sampling_rate_hz);
        let h = dt / INTERNAL_STEPS as f64;
        for _ in 0..count {
            let with_p = !self.in_af;
            for _ in 0..INTERNAL_STEPS {
                let before = self.theta;
                (self.theta, self.z) = self.rk4(self.theta, self.z, h, with_p);
                if before < 0.0 && self.theta >= 0.0 {
                    // θ = 0 is the R peak.
                    self.beats.push_back(self.next);
                }
                if self.theta > PI {
                    self.theta -= TAU;
                    self.start_beat();
                }
            }
            let t = self.seconds(self.next);
            // Respiratory baseline wander at 0.25 Hz (ECGSYN adds it through z0).
            let wander = 0.04 * (TAU * 0.25 * t + self.wander_phase).sin();
            let atrial = if self.in_af { self.f_wave(t) } else { 0.0 };
            let mv =
                self.scale * self.z + wander + atrial + self.config.noise_mv * self.rng.normal();
            out.push((mv * self.config.gain).round() as i32 + self.config.baseline);
            self.next += 1;
        }
        // Only the last few minutes of beats are ever asked for.
        let keep_from = self
            .next
            .saturating_sub(u64::from(self.config.sampling_rate_hz) * 300);
        while self.beats.front().is_some_and(|&b| b < keep_from) {
            self.beats.pop_front();
        }
    }

    fn beats_between(&self, from: u64, to: u64) -> Vec<u64> {
        self.beats
            .iter()
            .copied()
            .filter(|&b| b >= from && b < to)
            .collect()
    }

    fn af_intervals(&self) -> Vec<(u64, u64)> {
        self.af_history
            .iter()
            .map(|(onset, end)| (*onset, end.unwrap_or(self.next)))
            .collect()
    }
}

/// The cardiac scenario: one ECG patch.
#[derive(Debug)]
pub struct CardiacScenario {
    patient: PatientSpec,
    devices: Vec<DeviceSpec>,
    generator: Box<dyn EcgGenerator>,
    tx: Transmitter,
    start: DateTime<Utc>,
    chunk_samples: u64,
    /// Index of the next chunk to send.
    next_chunk: u64,
    /// Index of the next heart-rate minute (sent at its end).
    next_hr_minute: u64,
    /// Samples generated but not yet sent, starting at `pending_start`.
    pending: Vec<i32>,
    pending_start: u64,
}

/// Chunk length of the patch, seconds.
const CHUNK_SECONDS: u64 = 10;

impl CardiacScenario {
    /// Replays `record` from `start`.
    pub fn replay(
        patient: PatientSpec,
        device_key: &str,
        record: EcgRecord,
        start: DateTime<Utc>,
    ) -> Self {
        let model = format!(
            "Simulated ECG patch replaying MIT-BIH record {} ({}, {} Hz)",
            record.name, record.lead, record.sampling_rate_hz
        );
        Self::with_generator(
            patient,
            device_key,
            &model,
            Box::new(Replay { record, next: 0 }),
            start,
        )
    }

    /// Synthesises ECG with ECGSYN and AF episodes.
    pub fn synthetic(
        patient: PatientSpec,
        device_key: &str,
        config: SyntheticEcgConfig,
        seed: u64,
        start: DateTime<Utc>,
    ) -> Self {
        let rng = Rng::derive(seed, &patient.key);
        let model = format!(
            "Simulated ECG patch (ECGSYN, {} Hz, lead II)",
            config.sampling_rate_hz
        );
        Self::with_generator(
            patient,
            device_key,
            &model,
            Box::new(Ecgsyn::new(config, rng)),
            start,
        )
    }

    fn with_generator(
        patient: PatientSpec,
        device_key: &str,
        model: &str,
        generator: Box<dyn EcgGenerator>,
        start: DateTime<Utc>,
    ) -> Self {
        let mut device = DeviceSpec::new(
            device_key.to_owned(),
            DeviceKind::Ecg,
            model,
            &patient,
            &[HEART_RATE_CODE],
        );
        device.signals = vec![Signal::EcgLeadIi];
        // Payload times carry milliseconds; a finer start would drift from them.
        let start = start.trunc_subsecs(3);
        Self {
            chunk_samples: u64::from(generator.rate_hz()) * CHUNK_SECONDS,
            patient,
            devices: vec![device],
            generator,
            tx: Transmitter::new(device_key),
            start,
            next_chunk: 0,
            next_hr_minute: 0,
            pending: Vec::new(),
            pending_start: 0,
        }
    }

    /// A patient for replaying `record`, described from its header.
    pub fn record_patient(record: &EcgRecord, start: DateTime<Utc>) -> PatientSpec {
        let (birth_year, sex) = match record.age_and_sex() {
            Some((age, sex)) => (start.year() - age as i32, sex),
            None => (1950, '?'),
        };
        PatientSpec {
            key: format!("mitdb{}", record.name),
            display_name: format!("MIT-BIH record {} ({sex})", record.name),
            birth_year,
            program: Program::Cardiac,
            summary: format!(
                "ECG patch replaying MIT-BIH Arrhythmia Database record {} ({} lead)",
                record.name, record.lead
            ),
            spo2_scale: SpO2Scale::Scale1,
        }
    }

    /// The standard synthetic cardiac patient.
    pub fn standard_patient(key: &str, name: &str) -> PatientSpec {
        PatientSpec {
            key: key.to_owned(),
            display_name: name.to_owned(),
            birth_year: 1951,
            program: Program::Cardiac,
            summary: "Paroxysmal atrial fibrillation: an ECG patch streams lead II; \
                      AF episodes of 8–25 min come and go"
                .to_owned(),
            spo2_scale: SpO2Scale::Scale1,
        }
    }

    /// Ground truth for the synthetic patch: the atrial fibrillation episodes so far (up to
    /// the last sample generated), as `[onset, end)` times. Empty for a replay, whose
    /// truth is the record's own rhythm annotations.
    pub fn af_episodes(&self) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        self.generator
            .af_intervals()
            .into_iter()
            .map(|(onset, end)| (self.sample_time(onset), self.sample_time(end)))
            .collect()
    }

    fn sample_time(&self, sample: u64) -> DateTime<Utc> {
        let rate = u64::from(self.generator.rate_hz());
        let nanos = u128::from(sample) * 1_000_000_000 / u128::from(rate);
        self.start + Duration::nanoseconds(i64::try_from(nanos).unwrap_or(i64::MAX))
    }

    fn ensure_generated(&mut self, upto: u64) {
        let have = self.pending_start + self.pending.len() as u64;
        if upto > have {
            self.generator
                .generate((upto - have) as usize, &mut self.pending);
        }
    }

    fn send_chunk(&mut self, out: &mut Vec<DeviceEmission>) {
        let first = self.next_chunk * self.chunk_samples;
        let end = first + self.chunk_samples;
        self.ensure_generated(end);
        let offset = (first - self.pending_start) as usize;
        let samples: Vec<i32> = self.pending[offset..offset + self.chunk_samples as usize].to_vec();
        let emission = self.tx.waveform(
            self.sample_time(end),
            Signal::EcgLeadIi,
            f64::from(self.generator.rate_hz()),
            self.sample_time(first),
            self.generator.gain(),
            self.generator.baseline(),
            &samples,
        );
        out.push(emission);
        self.pending.drain(..offset + self.chunk_samples as usize);
        self.pending_start = end;
        self.next_chunk += 1;
    }

    fn send_heart_rate(&mut self, out: &mut Vec<DeviceEmission>) {
        let rate = u64::from(self.generator.rate_hz());
        let end = (self.next_hr_minute + 1) * 60 * rate;
        let from = end - 60 * rate;
        self.ensure_generated(end);
        let beats = self.generator.beats_between(from, end);
        self.next_hr_minute += 1;
        // Mean rate over the beats of the last minute, as a patch averages it.
        if let (Some(first), Some(last)) = (beats.first(), beats.last())
            && beats.len() >= 2
            && last > first
        {
            let seconds = (last - first) as f64 / rate as f64;
            let per_min = 60.0 * (beats.len() - 1) as f64 / seconds;
            let time = self.sample_time(end);
            let reading = Measured::new(HEART_RATE_CODE, Num::round(per_min, 0), "/min", time);
            out.extend(self.tx.readings(time, &[reading]));
        }
    }
}

impl crate::scenario::Scenario for CardiacScenario {
    fn patient(&self) -> &PatientSpec {
        &self.patient
    }

    fn devices(&self) -> &[DeviceSpec] {
        &self.devices
    }

    fn advance_to(&mut self, until: DateTime<Utc>) -> Vec<DeviceEmission> {
        let mut out = Vec::new();
        let rate = u64::from(self.generator.rate_hz());
        loop {
            let chunk_due = self.sample_time((self.next_chunk + 1) * self.chunk_samples);
            let hr_due = self.sample_time((self.next_hr_minute + 1) * 60 * rate);
            let due = chunk_due.min(hr_due);
            if due > until {
                break;
            }
            if chunk_due <= hr_due {
                self.send_chunk(&mut out);
            } else {
                self.send_heart_rate(&mut out);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn af_free() -> SyntheticEcgConfig {
        SyntheticEcgConfig {
            af_episodes: None,
            ..SyntheticEcgConfig::default()
        }
    }

    #[test]
    fn synthetic_sinus_beats_at_the_configured_rate() {
        let mut g = Ecgsyn::new(af_free(), Rng::new(3));
        let mut samples = Vec::new();
        g.generate(250 * 60, &mut samples);
        let beats = g.beats_between(0, 250 * 60);
        assert!((64..=72).contains(&beats.len()), "{} beats", beats.len());
        // R peaks are the tallest thing in the signal: about 1 mV above the baseline.
        let peak = beats
            .iter()
            .filter_map(|&b| samples.get(b as usize))
            .map(|&s| f64::from(s) / 400.0)
            .sum::<f64>()
            / beats.len() as f64;
        assert!((0.8..1.6).contains(&peak), "mean R amplitude {peak} mV");
    }

    #[test]
    fn atrial_fibrillation_is_irregular_and_fast() {
        let config = SyntheticEcgConfig {
            af_episodes: Some(AfEpisodes {
                first_onset_min: (0.0, 0.0),
                sinus_min: (1.0, 1.0),
                af_min: (100.0, 100.0),
            }),
            ..SyntheticEcgConfig::default()
        };
        let mut g = Ecgsyn::new(config, Rng::new(4));
        let mut samples = Vec::new();
        g.generate(250 * 120, &mut samples);
        let beats = g.beats_between(250 * 10, 250 * 120);
        let rr: Vec<f64> = beats
            .windows(2)
            .map(|w| (w[1] - w[0]) as f64 / 250.0)
            .collect();
        let mean = rr.iter().sum::<f64>() / rr.len() as f64;
        let sd = (rr.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / rr.len() as f64).sqrt();
        assert!(mean < 0.7, "mean RR {mean}");
        assert!(
            sd / mean > 0.15,
            "RR coefficient of variation {}",
            sd / mean
        );
    }
}
