//! Patients measured with spot-check devices at home: a post-surgery patient sliding
//! toward sepsis, a COPD patient on SpO2 Scale 2, and stable patients.
//!
//! A vital sign is modelled as baseline + circadian cosinor + (for a deteriorating
//! patient) severity × shift + physiological variation, and each device adds its own
//! measurement error and rounds as its display does.
//!
//! - Physiological variation: an Ornstein–Uhlenbeck process per vital, sampled exactly
//!   at the (irregular) measurement times (Uhlenbeck GE, Ornstein LS, "On the theory of
//!   the Brownian motion", Phys Rev 36:823–841, 1930; exact discretisation as in Gillespie
//!   DT, Phys Rev E 54:2084–2091, 1996).
//! - Circadian rhythms: body temperature peaks in the late afternoon and is lowest before
//!   dawn, about ±0.3 °C (Refinetti R, Menaker M, "The circadian rhythm of body
//!   temperature", Physiol Behav 51(3):613–637, 1992); heart rate and blood pressure dip
//!   at night (Degaute JP, et al., "Quantitative analysis of the 24-hour blood pressure
//!   and heart rate patterns in young men", Hypertension 18(2):199–210, 1991; the ≥10 %
//!   nocturnal "dipping" of O'Brien E, Sheridan J, O'Malley K, Lancet 2(8607):397, 1988).
//! - Sepsis: heart rate, respiratory rate and temperature rise while systolic pressure and
//!   SpO2 fall — the SIRS/qSOFA picture (Singer M, et al., "The Third International
//!   Consensus Definitions for Sepsis and Septic Shock (Sepsis-3)", JAMA
//!   315(8):801–810, 2016) — along a smooth accelerating course, so that NEWS2 (Royal
//!   College of Physicians, 2017) climbs from 0–1 to 7 or more over hours.
//! - COPD: a resting SpO2 in the 88–92 % target of NEWS2 Scale 2 (British Thoracic
//!   Society, O'Driscoll BR, et al., "BTS guideline for oxygen use in adults in
//!   healthcare and emergency settings", Thorax 72(Suppl 1):ii1–ii90, 2017), transient
//!   exertional desaturations, slightly lower saturation asleep, and a peak flow with
//!   its usual diurnal variation (lower in the morning; Quackenboss JJ, Lebowitz MD,
//!   Krzyzanowski M, "The normal range of diurnal changes in peak expiratory flow
//!   rates", Am Rev Respir Dis 143(2):323–330, 1991).
//! - Device errors: oximeters about 1.5 % (ISO 80601-2-61 requires an A_rms ≤ 4 %),
//!   automated cuffs about 4 mmHg SD (ANSI/AAMI/ISO 81060-2 allows mean ±5, SD ≤ 8 mmHg),
//!   thermometers 0.1 °C.

use chrono::{DateTime, Duration, FixedOffset, Offset, SubsecRound, Utc};
use wardline_analytics::news2::SpO2Scale;
use wardline_domain::DeviceKind;

use crate::payload::{DeviceEmission, Measured, Num, Transmitter};
use crate::rng::Rng;
use crate::roster::{DeviceSpec, PatientSpec, Program};
use crate::scenario::{LocalClock, Scenario, cosinor, minutes};

const HEART_RATE: &str = "8867-4";
const RESP_RATE: &str = "9279-1";
const TEMPERATURE: &str = "8310-5";
const SYSTOLIC: &str = "8480-6";
const DIASTOLIC: &str = "8462-4";
const SPO2: &str = "59408-5";
const WEIGHT: &str = "29463-7";
const PEAK_FLOW: &str = "19935-6";

/// The vitals the spot-check devices measure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vitals {
    pub heart_rate: f64,
    pub respiratory_rate: f64,
    pub temperature_c: f64,
    pub systolic: f64,
    pub diastolic: f64,
    pub spo2: f64,
}

impl Vitals {
    fn get(&self, vital: Vital) -> f64 {
        match vital {
            Vital::HeartRate => self.heart_rate,
            Vital::RespiratoryRate => self.respiratory_rate,
            Vital::Temperature => self.temperature_c,
            Vital::Systolic => self.systolic,
            Vital::Diastolic => self.diastolic,
            Vital::Spo2 => self.spo2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vital {
    HeartRate,
    RespiratoryRate,
    Temperature,
    Systolic,
    Diastolic,
    Spo2,
}

const VITALS: [Vital; 6] = [
    Vital::HeartRate,
    Vital::RespiratoryRate,
    Vital::Temperature,
    Vital::Systolic,
    Vital::Diastolic,
    Vital::Spo2,
];

impl Vital {
    /// Ornstein–Uhlenbeck SD and time constant (minutes) of physiological variation.
    fn variation(self) -> (f64, f64) {
        match self {
            Vital::HeartRate => (4.0, 30.0),
            Vital::RespiratoryRate => (1.0, 60.0),
            Vital::Temperature => (0.12, 120.0),
            Vital::Systolic => (5.0, 60.0),
            Vital::Diastolic => (3.5, 60.0),
            Vital::Spo2 => (0.6, 30.0),
        }
    }

    /// Circadian amplitude and acrophase (local hour).
    fn circadian(self) -> (f64, f64) {
        match self {
            Vital::HeartRate => (6.0, 15.0),
            Vital::RespiratoryRate => (0.8, 15.0),
            Vital::Temperature => (0.3, 17.0),
            Vital::Systolic => (7.0, 15.0),
            Vital::Diastolic => (5.0, 15.0),
            Vital::Spo2 => (0.4, 15.0),
        }
    }
}

/// A deterioration and recovery that repeats, so a long-running demo sees it again.
#[derive(Debug, Clone, Copy)]
pub struct DeteriorationCourse {
    /// Hours after the start before the first deterioration begins.
    pub onset_after_h: f64,
    /// Hours from well to the worst.
    pub ramp_h: f64,
    /// Hours at the worst (until treatment works).
    pub plateau_h: f64,
    /// Hours back to baseline.
    pub recovery_h: f64,
    /// Hours well before the next deterioration.
    pub quiet_h: f64,
    /// Shift of each vital at the worst.
    pub shift: Vitals,
}

impl DeteriorationCourse {
    /// Early sepsis after surgery: at the worst HR ~125, RR ~26, 39.3 °C, 90/56 mmHg,
    /// SpO2 ~92 % — NEWS2 of about 11.
    pub fn sepsis() -> Self {
        Self {
            onset_after_h: 1.0,
            ramp_h: 10.0,
            plateau_h: 2.0,
            recovery_h: 8.0,
            quiet_h: 3.0,
            shift: Vitals {
                heart_rate: 45.0,
                respiratory_rate: 11.0,
                temperature_c: 2.2,
                systolic: -36.0,
                diastolic: -22.0,
                spo2: -5.0,
            },
        }
    }

    /// Severity 0 (well) to 1 (worst) after `hours` of simulation.
    pub fn severity(&self, hours: f64) -> f64 {
        let t = hours - self.onset_after_h;
        if t < 0.0 {
            return 0.0;
        }
        let cycle = self.ramp_h + self.plateau_h + self.recovery_h + self.quiet_h;
        let t = t.rem_euclid(cycle.max(1e-9));
        // Smoothstep: changes start subtly, accelerate, then level off.
        let smooth = |u: f64| {
            let u = u.clamp(0.0, 1.0);
            u * u * (3.0 - 2.0 * u)
        };
        if t < self.ramp_h {
            smooth(t / self.ramp_h)
        } else if t < self.ramp_h + self.plateau_h {
            1.0
        } else if t < self.ramp_h + self.plateau_h + self.recovery_h {
            1.0 - smooth((t - self.ramp_h - self.plateau_h) / self.recovery_h)
        } else {
            0.0
        }
    }
}

/// Everything about one vitals patient's physiology.
#[derive(Debug, Clone)]
pub struct VitalsProfile {
    pub baseline: Vitals,
    pub weight_kg: f64,
    /// Best peak expiratory flow, L/min.
    pub peak_flow_l_min: f64,
    pub course: Option<DeteriorationCourse>,
    /// COPD: brief desaturations on exertion during the day, lower SpO2 asleep.
    pub exertional_desaturation: bool,
    pub utc_offset: FixedOffset,
}

impl VitalsProfile {
    pub fn post_surgery() -> Self {
        Self {
            baseline: Vitals {
                heart_rate: 80.0,
                respiratory_rate: 15.0,
                temperature_c: 36.9,
                systolic: 126.0,
                diastolic: 76.0,
                spo2: 97.0,
            },
            weight_kg: 74.0,
            peak_flow_l_min: 450.0,
            course: Some(DeteriorationCourse::sepsis()),
            exertional_desaturation: false,
            utc_offset: Utc.fix(),
        }
    }

    pub fn copd() -> Self {
        Self {
            baseline: Vitals {
                heart_rate: 86.0,
                respiratory_rate: 19.0,
                temperature_c: 36.7,
                systolic: 136.0,
                diastolic: 80.0,
                spo2: 90.5,
            },
            weight_kg: 68.0,
            peak_flow_l_min: 230.0,
            course: None,
            exertional_desaturation: true,
            utc_offset: Utc.fix(),
        }
    }

    pub fn stable(baseline: Vitals, weight_kg: f64) -> Self {
        Self {
            baseline,
            weight_kg,
            peak_flow_l_min: 480.0,
            course: None,
            exertional_desaturation: false,
            utc_offset: Utc.fix(),
        }
    }
}

/// What a spot-check device measures and how often.
#[derive(Debug, Clone, PartialEq)]
pub enum Instrument {
    /// SpO2 and pulse rate, and respiratory rate from the pleth when `respiratory_rate`.
    PulseOximeter {
        every_min: f64,
        respiratory_rate: bool,
    },
    /// Systolic, diastolic and pulse in one batch.
    BloodPressureCuff { every_min: f64 },
    /// Body temperature, in °F when `fahrenheit` (the server converts).
    Thermometer { every_min: f64, fahrenheit: bool },
    /// Weight once a day at a local hour.
    Scale { at_hour: f64 },
    /// Best of three blows at each local hour.
    PeakFlowMeter { at_hours: Vec<f64> },
}

impl Instrument {
    fn kind(&self) -> DeviceKind {
        match self {
            Instrument::PulseOximeter { .. } => DeviceKind::PulseOximeter,
            Instrument::BloodPressureCuff { .. } => DeviceKind::BloodPressureCuff,
            Instrument::Thermometer { .. } => DeviceKind::Thermometer,
            Instrument::Scale { .. } => DeviceKind::Scale,
            Instrument::PeakFlowMeter { .. } => DeviceKind::PeakFlowMeter,
        }
    }

    fn model(&self) -> &'static str {
        match self {
            Instrument::PulseOximeter {
                respiratory_rate: true,
                ..
            } => "Simulated pulse oximeter with pleth respiratory rate",
            Instrument::PulseOximeter { .. } => "Simulated fingertip pulse oximeter",
            Instrument::BloodPressureCuff { .. } => "Simulated upper-arm blood pressure monitor",
            Instrument::Thermometer {
                fahrenheit: true, ..
            } => "Simulated oral thermometer (°F)",
            Instrument::Thermometer { .. } => "Simulated oral thermometer",
            Instrument::Scale { .. } => "Simulated connected scale",
            Instrument::PeakFlowMeter { .. } => "Simulated electronic peak flow meter",
        }
    }

    fn codes(&self) -> &'static [&'static str] {
        match self {
            Instrument::PulseOximeter {
                respiratory_rate: true,
                ..
            } => &[SPO2, HEART_RATE, RESP_RATE],
            Instrument::PulseOximeter { .. } => &[SPO2, HEART_RATE],
            Instrument::BloodPressureCuff { .. } => &[SYSTOLIC, DIASTOLIC, HEART_RATE],
            Instrument::Thermometer { .. } => &[TEMPERATURE],
            Instrument::Scale { .. } => &[WEIGHT],
            Instrument::PeakFlowMeter { .. } => &[PEAK_FLOW],
        }
    }
}

#[derive(Debug)]
struct Device {
    instrument: Instrument,
    tx: Transmitter,
    /// Scheduled measurement number (interval devices) or local day (daily devices).
    counter: i64,
    next_due: DateTime<Utc>,
}

/// The first of the local `hours` after the device's previous measurement (at least 30
/// minutes after it, so a re-drawn jitter never repeats a slot).
fn next_daily(clock: LocalClock, device: &Device, hours: &[f64], jitter_min: f64) -> DateTime<Utc> {
    let after = device.next_due;
    let margin = if device.counter == 0 {
        Duration::zero()
    } else {
        Duration::minutes(30)
    };
    if hours.is_empty() {
        return DateTime::<Utc>::MAX_UTC;
    }
    let mut day = clock.day(after);
    loop {
        let first = hours
            .iter()
            .map(|h| clock.at(day, *h) + minutes(jitter_min))
            .filter(|t| *t > after + margin)
            .min();
        if let Some(first) = first {
            return first;
        }
        day += 1;
    }
}

/// An Ornstein–Uhlenbeck process sampled at increasing times.
#[derive(Debug, Clone)]
struct Ou {
    sd: f64,
    tau_min: f64,
    value: f64,
    at: DateTime<Utc>,
}

impl Ou {
    fn new(sd: f64, tau_min: f64, at: DateTime<Utc>, rng: &mut Rng) -> Self {
        Self {
            sd,
            tau_min,
            value: sd * rng.normal(),
            at,
        }
    }

    fn sample(&mut self, at: DateTime<Utc>, rng: &mut Rng) -> f64 {
        let dt = (at - self.at).num_milliseconds() as f64 / 60_000.0;
        if dt > 0.0 {
            let decay = (-dt / self.tau_min).exp();
            self.value = self.value * decay + self.sd * (1.0 - decay * decay).sqrt() * rng.normal();
            self.at = at;
        }
        self.value
    }
}

/// An exertional desaturation: when, how deep (SpO2 points) and how long.
#[derive(Debug, Clone, Copy)]
struct Exertion {
    start: DateTime<Utc>,
    minutes: f64,
    depth: f64,
}

/// A patient measured by spot-check devices.
#[derive(Debug)]
pub struct VitalsScenario {
    patient: PatientSpec,
    specs: Vec<DeviceSpec>,
    devices: Vec<Device>,
    profile: VitalsProfile,
    clock: LocalClock,
    rng: Rng,
    start: DateTime<Utc>,
    variation: Vec<Ou>,
    weight_drift: Ou,
    exertions: Vec<Exertion>,
    exertions_planned_until: DateTime<Utc>,
}

impl VitalsScenario {
    /// `devices` pairs each device key with what it is.
    pub fn new(
        patient: PatientSpec,
        profile: VitalsProfile,
        devices: Vec<(String, Instrument)>,
        seed: u64,
        start: DateTime<Utc>,
    ) -> Self {
        // Payload times carry milliseconds; a finer start would drift from them.
        let start = start.trunc_subsecs(3);
        let mut rng = Rng::derive(seed, &patient.key);
        let clock = LocalClock {
            offset: profile.utc_offset,
        };
        let variation = VITALS
            .iter()
            .map(|v| {
                let (sd, tau) = v.variation();
                Ou::new(sd, tau, start, &mut rng)
            })
            .collect();
        let weight_drift = Ou::new(0.4, 7.0 * 24.0 * 60.0, start, &mut rng);
        let specs = devices
            .iter()
            .map(|(key, instrument)| {
                DeviceSpec::new(
                    key.clone(),
                    instrument.kind(),
                    instrument.model(),
                    &patient,
                    instrument.codes(),
                )
            })
            .collect();
        let mut scenario = Self {
            patient,
            specs,
            devices: Vec::new(),
            profile,
            clock,
            rng,
            start,
            variation,
            weight_drift,
            exertions: Vec::new(),
            exertions_planned_until: start,
        };
        for (key, instrument) in devices {
            scenario.devices.push(Device {
                tx: Transmitter::new(&key),
                instrument,
                counter: 0,
                next_due: start,
            });
            scenario.schedule_next(scenario.devices.len() - 1);
        }
        scenario
    }

    /// Moves device `index` to its next measurement.
    fn schedule_next(&mut self, index: usize) {
        // People do not measure on the dot: up to a few minutes either way.
        let jitter = (1.5 * self.rng.normal()).clamp(-4.0, 4.0);
        let device = &self.devices[index];
        let next_due = match &device.instrument {
            Instrument::PulseOximeter { every_min, .. }
            | Instrument::BloodPressureCuff { every_min }
            | Instrument::Thermometer { every_min, .. } => {
                let nominal = (device.counter + 1) as f64 * every_min.max(5.0);
                self.start + minutes(nominal + jitter)
            }
            Instrument::Scale { at_hour } => next_daily(self.clock, device, &[*at_hour], jitter),
            Instrument::PeakFlowMeter { at_hours } => {
                next_daily(self.clock, device, at_hours, jitter)
            }
        };
        let device = &mut self.devices[index];
        device.counter += 1;
        device.next_due = next_due;
    }

    fn plan_exertions(&mut self, until: DateTime<Utc>) {
        while self.exertions_planned_until <= until {
            // Poisson process: about four exertions per waking day (08–21 h).
            let gap = self.rng.exponential(13.0 * 60.0 / 4.0);
            let mut at = self.exertions_planned_until + minutes(gap);
            let hour = self.clock.hour_of_day(at);
            if !(8.0..21.0).contains(&hour) {
                // Skip the night: resume at 08:00 next morning.
                let day = self.clock.day(at) + i64::from(hour >= 21.0);
                at = self.clock.at(day, 8.0);
                self.exertions_planned_until = at;
                continue;
            }
            let exertion = Exertion {
                start: at,
                minutes: self.rng.range(5.0, 15.0),
                depth: self.rng.range(3.0, 6.0),
            };
            self.exertions.push(exertion);
            self.exertions_planned_until = at;
        }
    }

    /// Exertion's effect on SpO2 at `time` (negative) as a fraction of its depth.
    fn exertion_effect(&self, time: DateTime<Utc>) -> f64 {
        self.exertions
            .iter()
            .filter(|e| time >= e.start)
            .map(|e| {
                let elapsed = (time - e.start).num_seconds() as f64 / 60.0;
                // Saturation falls during the effort and recovers over a few minutes.
                if elapsed < e.minutes {
                    e.depth
                } else {
                    e.depth * (-(elapsed - e.minutes) / 3.0).exp()
                }
            })
            .fold(0.0, f64::max)
    }

    /// The true vitals at `time` (advances the variation processes to `time`).
    fn vitals_at(&mut self, time: DateTime<Utc>) -> Vitals {
        let hour = self.clock.hour_of_day(time);
        let hours_in = (time - self.start).num_seconds() as f64 / 3600.0;
        let severity = self
            .profile
            .course
            .map(|course| course.severity(hours_in))
            .unwrap_or(0.0);
        let mut values = [0.0; 6];
        for (i, vital) in VITALS.iter().enumerate() {
            let (amplitude, peak) = vital.circadian();
            let mut amplitude = amplitude;
            if self.profile.exertional_desaturation && *vital == Vital::Spo2 {
                // Sleep-related hypoventilation lowers nocturnal saturation in COPD.
                amplitude = 1.0;
            }
            let shift = self
                .profile
                .course
                .map(|c| c.shift.get(*vital) * severity)
                .unwrap_or(0.0);
            let noise = self.variation[i].sample(time, &mut self.rng);
            values[i] =
                self.profile.baseline.get(*vital) + cosinor(hour, peak, amplitude) + shift + noise;
        }
        let mut vitals = Vitals {
            heart_rate: values[0],
            respiratory_rate: values[1],
            temperature_c: values[2],
            systolic: values[3],
            diastolic: values[4],
            spo2: values[5],
        };
        if self.profile.exertional_desaturation {
            self.plan_exertions(time);
            let effect = self.exertion_effect(time);
            vitals.spo2 -= effect;
            vitals.heart_rate += 3.0 * effect;
            vitals.respiratory_rate += effect;
        }
        vitals.spo2 = vitals.spo2.min(100.0);
        vitals
    }

    fn measure(&mut self, index: usize) -> Option<DeviceEmission> {
        let time = self.devices[index].next_due;
        let instrument = self.devices[index].instrument.clone();
        let mut readings = Vec::new();
        match instrument {
            Instrument::PulseOximeter {
                respiratory_rate, ..
            } => {
                let v = self.vitals_at(time);
                let spo2 = (v.spo2 + 1.0 * self.rng.normal()).clamp(70.0, 100.0);
                readings.push(Measured::new(SPO2, Num::round(spo2, 0), "%", time));
                let pulse = v.heart_rate + 1.5 * self.rng.normal();
                readings.push(Measured::new(
                    HEART_RATE,
                    Num::round(pulse, 0),
                    "/min",
                    time,
                ));
                if respiratory_rate {
                    let rr = (v.respiratory_rate + 1.0 * self.rng.normal()).max(4.0);
                    readings.push(Measured::new(RESP_RATE, Num::round(rr, 0), "/min", time));
                }
            }
            Instrument::BloodPressureCuff { .. } => {
                let v = self.vitals_at(time);
                let systolic = v.systolic + 4.0 * self.rng.normal();
                let diastolic = (v.diastolic + 3.0 * self.rng.normal()).min(systolic - 15.0);
                let pulse = v.heart_rate + 2.0 * self.rng.normal();
                readings.push(Measured::new(
                    SYSTOLIC,
                    Num::round(systolic, 0),
                    "mm[Hg]",
                    time,
                ));
                readings.push(Measured::new(
                    DIASTOLIC,
                    Num::round(diastolic, 0),
                    "mm[Hg]",
                    time,
                ));
                readings.push(Measured::new(
                    HEART_RATE,
                    Num::round(pulse, 0),
                    "/min",
                    time,
                ));
            }
            Instrument::Thermometer { fahrenheit, .. } => {
                let v = self.vitals_at(time);
                let celsius = v.temperature_c + 0.1 * self.rng.normal();
                let reading = if fahrenheit {
                    Measured::new(
                        TEMPERATURE,
                        Num::round(celsius * 9.0 / 5.0 + 32.0, 1),
                        "[degF]",
                        time,
                    )
                } else {
                    Measured::new(TEMPERATURE, Num::round(celsius, 1), "Cel", time)
                };
                readings.push(reading);
            }
            Instrument::Scale { .. } => {
                let drift = self.weight_drift.sample(time, &mut self.rng);
                let kg = self.profile.weight_kg + drift + 0.1 * self.rng.normal();
                readings.push(Measured::new(WEIGHT, Num::round(kg, 1), "kg", time));
            }
            Instrument::PeakFlowMeter { .. } => {
                let hour = self.clock.hour_of_day(time);
                // Best of three blows, each within ~5 % of the day's capacity.
                let capacity = self.profile.peak_flow_l_min * (1.0 + cosinor(hour, 16.0, 0.06));
                let best = (0..3)
                    .map(|_| capacity * (1.0 - (0.05 * self.rng.normal()).abs()))
                    .fold(0.0, f64::max);
                // Meters read in 10 L/min steps.
                let value = (best / 10.0).round() * 10.0;
                readings.push(Measured::new(
                    PEAK_FLOW,
                    Num::round(value, 0),
                    "L/min",
                    time,
                ));
            }
        }
        let emission = self.devices[index].tx.readings(time, &readings);
        self.schedule_next(index);
        emission
    }

    /// The standard post-surgery patient.
    pub fn post_surgery_patient(key: &str, name: &str) -> PatientSpec {
        PatientSpec {
            key: key.to_owned(),
            display_name: name.to_owned(),
            birth_year: 1958,
            program: Program::PostSurgery,
            summary: "Home after bowel surgery; develops sepsis over about 10 hours \
                      (NEWS2 from 0–1 to 7+), is treated, recovers, and the course repeats daily"
                .to_owned(),
            spo2_scale: SpO2Scale::Scale1,
        }
    }

    pub fn copd_patient(key: &str, name: &str) -> PatientSpec {
        PatientSpec {
            key: key.to_owned(),
            display_name: name.to_owned(),
            birth_year: 1949,
            program: Program::Respiratory,
            summary: "COPD with hypercapnic respiratory failure: SpO2 target 88–92 % \
                      (NEWS2 Scale 2), desaturates on exertion"
                .to_owned(),
            spo2_scale: SpO2Scale::Scale2,
        }
    }

    pub fn stable_patient(key: &str, name: &str, birth_year: i32, summary: &str) -> PatientSpec {
        PatientSpec {
            key: key.to_owned(),
            display_name: name.to_owned(),
            birth_year,
            program: Program::General,
            summary: summary.to_owned(),
            spo2_scale: SpO2Scale::Scale1,
        }
    }
}

impl Scenario for VitalsScenario {
    fn patient(&self) -> &PatientSpec {
        &self.patient
    }

    fn devices(&self) -> &[DeviceSpec] {
        &self.specs
    }

    fn advance_to(&mut self, until: DateTime<Utc>) -> Vec<DeviceEmission> {
        let mut out = Vec::new();
        loop {
            // The earliest due device (first in declaration order on ties).
            let next = self
                .devices
                .iter()
                .enumerate()
                .min_by_key(|(i, d)| (d.next_due, *i))
                .map(|(i, d)| (i, d.next_due));
            match next {
                Some((index, due)) if due <= until => out.extend(self.measure(index)),
                _ => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sepsis_severity_rises_plateaus_and_recovers() {
        let course = DeteriorationCourse::sepsis();
        assert_eq!(course.severity(0.5), 0.0);
        assert!(course.severity(3.0) < course.severity(6.0));
        assert_eq!(course.severity(12.0), 1.0);
        assert!(course.severity(18.0) < 1.0);
        assert_eq!(course.severity(23.5), 0.0);
        // The next cycle.
        assert!(course.severity(25.0 + 6.0) > 0.4);
    }
}
