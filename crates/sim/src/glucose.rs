//! Type 1 diabetes on a CGM.
//!
//! Physiology: the Hovorka glucoregulatory model with its nominal parameters —
//! Hovorka R, Canonico V, Chassin LJ, et al. "Nonlinear model predictive control of
//! glucose concentration in subjects with type 1 diabetes", Physiol Meas
//! 25(4):905–920, 2004 (two-compartment glucose kinetics, three insulin actions on
//! transport, disposal and endogenous production, subcutaneous insulin absorption and the
//! two-compartment gut absorption of meals; parameter values from its Table 1, as in
//! Wilinska et al., J Diabetes Sci Technol 4(1):132–144, 2010).
//!
//! Sensor: interstitial glucose follows plasma glucose through a first-order
//! compartment (Rebrin K, Steil GM, et al., "Subcutaneous glucose predicts plasma glucose
//! independent of insulin", Am J Physiol 277:E561–E571, 1999; τ ≈ 7 min), then each
//! sensor session gets a calibration error (gain and offset, after Facchinetti A, Del
//! Favero S, Sparacino G, et al., "Modeling the glucose sensor error", IEEE Trans Biomed
//! Eng 61(3):620–629, 2014) and AR(1) measurement noise (Breton M, Kovatchev B,
//! "Analysis, modeling, and simulation of the accuracy of continuous glucose sensors",
//! J Diabetes Sci Technol 2(5):853–862, 2008: φ = 0.7 per 5-min sample; we use a
//! Gaussian marginal with SD 5 mg/dL rather than their Johnson SU one). Values are
//! clamped to the 40–400 mg/dL reporting range, as real sensors report "LOW"/"HIGH".
//!
//! Behaviour: three meals and an occasional unbolused snack at jittered times, carb
//! counts wrong by about 15–20 % (Brazeau AS, et al., "Carbohydrate counting accuracy and
//! blood glucose variability in adults with type 1 diabetes", Diabetes Res Clin Pract
//! 99(1):19–23, 2013), now and then a forgotten bolus, a dawn rise in endogenous glucose
//! production (Bolli GB, Gerich JE, "The dawn phenomenon", N Engl J Med 310:746–750,
//! 1984), day-to-day insulin-sensitivity variation (Visentin R, et al., "Circadian
//! variability of insulin sensitivity", Diabetes Technol Ther 17(1):1–7, 2015), and — the
//! scenario's point — a dinner over-bolus every n-th evening that gives a night-time
//! hypoglycaemia. The patient treats lows with fast carbs (awake below 70 mg/dL; asleep
//! only once the urgent-low alarm at 55 mg/dL wakes them) and corrects highs above
//! 250 mg/dL, which keeps the trace inside the sensor range.

use chrono::{DateTime, Duration, FixedOffset, Offset, SubsecRound, Utc};
use wardline_analytics::news2::SpO2Scale;
use wardline_domain::DeviceKind;
use wardline_domain::codes::GLUCOSE_MG_DL_PER_MMOL_L;

use crate::payload::{DeviceEmission, Measured, Num, Transmitter};
use crate::rng::Rng;
use crate::roster::{DeviceSpec, PatientSpec, Program};
use crate::scenario::{LocalClock, Scenario};

const CGM_CODE: &str = "99504-3";
/// Grams of glucose per mmol.
const GLUCOSE_G_PER_MMOL: f64 = 0.180_156;
/// CGM sample period, minutes.
const CGM_PERIOD_MIN: i64 = 5;
const SENSOR_RANGE_MG_DL: (f64, f64) = (40.0, 400.0);

/// How the simulated person with type 1 diabetes lives and doses.
#[derive(Debug, Clone)]
pub struct DiabetesConfig {
    pub body_weight_kg: f64,
    /// The basal rate is titrated so that fasting glucose settles here.
    pub fasting_target_mg_dl: f64,
    /// Insulin-to-carbohydrate ratio, grams per unit.
    pub carb_ratio_g_per_unit: f64,
    /// Correction (insulin sensitivity) factor, mg/dL per unit.
    pub correction_factor_mg_dl_per_unit: f64,
    /// Every n-th dinner (counting from the first in the simulation, n-th being index
    /// n−1) is over-bolused by `over_bolus_factor`; `None` for no planned lows.
    pub night_low_every_nth_dinner: Option<u32>,
    pub over_bolus_factor: f64,
    pub missed_bolus_probability: f64,
    /// Chance per reading that the phone loses the sensor for 15–60 min; the sensor then
    /// backfills the missed readings in one batch, as real CGM transmitters do.
    pub dropout_probability: f64,
    pub utc_offset: FixedOffset,
}

impl Default for DiabetesConfig {
    fn default() -> Self {
        Self {
            body_weight_kg: 70.0,
            fasting_target_mg_dl: 120.0,
            // Hovorka's nominal subject is insulin-sensitive: the titrated basal is about
            // 0.38 U/h (9 U/day), a total daily dose near 17 U. The clinic rules of thumb
            // (carb ratio ≈ 500/TDD g/U, correction ≈ 1800/TDD mg/dL/U; Walsh J, Roberts
            // R, "Pumping Insulin", 2006) then give about 25 g/U and 100 mg/dL/U, which
            // also keep this model's meals near glucose-neutral.
            carb_ratio_g_per_unit: 25.0,
            correction_factor_mg_dl_per_unit: 100.0,
            night_low_every_nth_dinner: Some(2),
            over_bolus_factor: 2.0,
            missed_bolus_probability: 0.04,
            dropout_probability: 0.004,
            utc_offset: Utc.fix(),
        }
    }
}

/// Hovorka 2004, Table 1 (per-kg values scaled by body weight).
#[derive(Debug, Clone)]
struct HovorkaParams {
    /// Glucose distribution volume, L.
    vg: f64,
    /// Insulin distribution volume, L.
    vi: f64,
    /// Non-insulin-dependent glucose flux, mmol/min.
    f01: f64,
    /// Endogenous glucose production extrapolated to zero insulin, mmol/min.
    egp0: f64,
    /// Transfer rate from the non-accessible to the accessible compartment, /min.
    k12: f64,
    /// Deactivation rates of the three insulin actions, /min.
    ka: [f64; 3],
    /// Insulin sensitivities of transport/distribution, disposal (/min per mU/L) and
    /// endogenous production (per mU/L).
    si: [f64; 3],
    /// Insulin elimination from plasma, /min.
    ke: f64,
    /// Time-to-maximum of subcutaneous insulin absorption, min.
    tmax_i: f64,
    /// Carbohydrate bioavailability.
    ag: f64,
    /// Time-to-maximum of meal absorption, min (and of fast rescue carbs).
    tmax_g_meal: f64,
    tmax_g_fast: f64,
    /// Plasma-to-interstitium time constant, min (Rebrin 1999).
    tau_ig: f64,
}

impl HovorkaParams {
    fn nominal(body_weight_kg: f64) -> Self {
        Self {
            vg: 0.16 * body_weight_kg,
            vi: 0.12 * body_weight_kg,
            f01: 0.0097 * body_weight_kg,
            egp0: 0.0161 * body_weight_kg,
            k12: 0.066,
            ka: [0.006, 0.06, 0.03],
            si: [51.2e-4, 8.2e-4, 520e-4],
            ke: 0.138,
            tmax_i: 55.0,
            ag: 0.8,
            tmax_g_meal: 40.0,
            // Glucose tablets / juice peak far sooner than a mixed meal.
            tmax_g_fast: 20.0,
            tau_ig: 7.0,
        }
    }
}

/// State vector indices.
const S1: usize = 0;
const S2: usize = 1;
const PI: usize = 2;
const X1: usize = 3;
const X2: usize = 4;
const X3: usize = 5;
const Q1: usize = 6;
const Q2: usize = 7;
const D1: usize = 8;
const D2: usize = 9;
const F1: usize = 10;
const F2: usize = 11;
const IG: usize = 12;
const N_STATE: usize = 13;

type State = [f64; N_STATE];

/// Inputs held constant over one integration step.
#[derive(Debug, Clone, Copy)]
struct Inputs {
    /// Subcutaneous insulin infusion, mU/min.
    insulin_mu_per_min: f64,
    /// Multiplies endogenous glucose production (dawn phenomenon).
    egp_factor: f64,
    /// Multiplies the three insulin sensitivities (day-to-day variation).
    si_factor: f64,
}

fn derivatives(p: &HovorkaParams, x: &State, u: Inputs) -> State {
    let g = x[Q1].max(0.0) / p.vg;
    // Below 4.5 mmol/L insulin-independent uptake falls in proportion (Hovorka eq. 6).
    let f01c = if g >= 4.5 { p.f01 } else { p.f01 * g / 4.5 };
    // Renal clearance above the 9 mmol/L threshold (Hovorka eq. 7).
    let fr = if g >= 9.0 {
        0.003 * (g - 9.0) * p.vg
    } else {
        0.0
    };
    let ug_meal = x[D2] / p.tmax_g_meal;
    let ug_fast = x[F2] / p.tmax_g_fast;
    let kb = |i: usize| p.si[i] * u.si_factor * p.ka[i];
    let egp = (p.egp0 * u.egp_factor * (1.0 - x[X3])).max(0.0);
    let mut d = [0.0; N_STATE];
    d[S1] = u.insulin_mu_per_min - x[S1] / p.tmax_i;
    d[S2] = (x[S1] - x[S2]) / p.tmax_i;
    d[PI] = x[S2] / (p.tmax_i * p.vi) - p.ke * x[PI];
    d[X1] = -p.ka[0] * x[X1] + kb(0) * x[PI];
    d[X2] = -p.ka[1] * x[X2] + kb(1) * x[PI];
    d[X3] = -p.ka[2] * x[X3] + kb(2) * x[PI];
    d[Q1] = -f01c - x[X1] * x[Q1] + p.k12 * x[Q2] - fr + ug_meal + ug_fast + egp;
    d[Q2] = x[X1] * x[Q1] - (p.k12 + x[X2]) * x[Q2];
    d[D1] = -x[D1] / p.tmax_g_meal;
    d[D2] = (x[D1] - x[D2]) / p.tmax_g_meal;
    d[F1] = -x[F1] / p.tmax_g_fast;
    d[F2] = (x[F1] - x[F2]) / p.tmax_g_fast;
    d[IG] = (g - x[IG]) / p.tau_ig;
    d
}

/// One classical Runge–Kutta step of `h` minutes.
fn rk4(p: &HovorkaParams, x: &State, u: Inputs, h: f64) -> State {
    let add = |a: &State, k: &State, s: f64| {
        let mut out = *a;
        for (o, k) in out.iter_mut().zip(k) {
            *o += s * k;
        }
        out
    };
    let k1 = derivatives(p, x, u);
    let k2 = derivatives(p, &add(x, &k1, h / 2.0), u);
    let k3 = derivatives(p, &add(x, &k2, h / 2.0), u);
    let k4 = derivatives(p, &add(x, &k3, h), u);
    let mut out = *x;
    for i in 0..N_STATE {
        out[i] += h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
        // Amounts and concentrations cannot go negative; RK4 overshoot near zero can.
        out[i] = out[i].max(0.0);
    }
    out
}

/// Steady state under a constant basal infusion that holds plasma glucose at `g_target`
/// mmol/L: solves Hovorka's equations at equilibrium for plasma insulin by bisection
/// (glucose balance falls monotonically with insulin), then back-computes the rate.
fn basal_steady_state(p: &HovorkaParams, g_target: f64) -> (f64, State) {
    let q1 = g_target * p.vg;
    let balance = |insulin: f64| {
        let x1 = p.si[0] * insulin;
        let x2 = p.si[1] * insulin;
        let x3 = p.si[2] * insulin;
        let q2 = x1 * q1 / (p.k12 + x2);
        let f01c = if g_target >= 4.5 {
            p.f01
        } else {
            p.f01 * g_target / 4.5
        };
        let fr = if g_target >= 9.0 {
            0.003 * (g_target - 9.0) * p.vg
        } else {
            0.0
        };
        -f01c - x1 * q1 + p.k12 * q2 - fr + (p.egp0 * (1.0 - x3)).max(0.0)
    };
    let (mut low, mut high) = (0.0, 200.0);
    for _ in 0..100 {
        let mid = 0.5 * (low + high);
        if balance(mid) > 0.0 {
            low = mid;
        } else {
            high = mid;
        }
    }
    let insulin = 0.5 * (low + high);
    let rate = insulin * p.vi * p.ke;
    let mut state = [0.0; N_STATE];
    state[S1] = rate * p.tmax_i;
    state[S2] = rate * p.tmax_i;
    state[PI] = insulin;
    state[X1] = p.si[0] * insulin;
    state[X2] = p.si[1] * insulin;
    state[X3] = p.si[2] * insulin;
    state[Q1] = q1;
    state[Q2] = state[X1] * q1 / (p.k12 + state[X2]);
    state[IG] = g_target;
    (rate, state)
}

/// Something the person does at a given minute of the simulation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Meal {
        carbs_g: f64,
    },
    FastCarbs {
        carbs_g: f64,
    },
    /// A meal bolus, computed when given from the carbs the person thinks they will eat.
    MealBolus {
        carbs_estimate_g: f64,
        factor: f64,
    },
}

#[derive(Debug, Clone)]
struct SensorSession {
    /// Minute index at which this sensor started (warm-up follows).
    started_minute: i64,
    gain: f64,
    offset_mg_dl: f64,
    ar_noise: f64,
}

/// The T1D-on-CGM scenario.
#[derive(Debug)]
pub struct DiabetesScenario {
    patient: PatientSpec,
    devices: Vec<DeviceSpec>,
    config: DiabetesConfig,
    params: HovorkaParams,
    clock: LocalClock,
    rng: Rng,
    start: DateTime<Utc>,
    /// The next minute to simulate (minutes since start).
    minute: i64,
    state: State,
    basal_mu_per_min: f64,
    planned_day: Option<i64>,
    /// Pending actions by minute index, kept sorted.
    actions: Vec<(i64, Action)>,
    dinners_seen: u32,
    si_factor: f64,
    last_sensor_mg_dl: Option<f64>,
    last_rescue_minute: Option<i64>,
    last_correction_minute: Option<i64>,
    sensor: SensorSession,
    sensor_life_min: i64,
    warmup_min: i64,
    /// Minute until which the phone cannot hear the sensor.
    dropout_until: Option<i64>,
    backlog: Vec<Measured>,
    tx: Transmitter,
}

impl DiabetesScenario {
    pub fn new(
        patient: PatientSpec,
        device_key: &str,
        config: DiabetesConfig,
        seed: u64,
        start: DateTime<Utc>,
    ) -> Self {
        // Payload times carry milliseconds; a finer start would drift from them.
        let start = start.trunc_subsecs(3);
        let params = HovorkaParams::nominal(config.body_weight_kg);
        let (basal, state) = basal_steady_state(
            &params,
            config.fasting_target_mg_dl / GLUCOSE_MG_DL_PER_MMOL_L,
        );
        let mut rng = Rng::derive(seed, &patient.key);
        let sensor_life_min = 10 * 24 * 60;
        // A sensor somewhere in its life at the start, so changes fall at random times.
        let age = (rng.uniform() * (sensor_life_min - 24 * 60) as f64) as i64;
        let sensor = new_sensor(&mut rng, -age - 30);
        let devices = vec![DeviceSpec::new(
            device_key.to_owned(),
            DeviceKind::Cgm,
            "Simulated CGM (10-day sensor, 5-min readings)",
            &patient,
            &[CGM_CODE],
        )];
        let clock = LocalClock {
            offset: config.utc_offset,
        };
        Self {
            tx: Transmitter::new(device_key),
            patient,
            devices,
            params,
            clock,
            rng,
            start,
            minute: 0,
            state,
            basal_mu_per_min: basal,
            planned_day: None,
            actions: Vec::new(),
            dinners_seen: 0,
            si_factor: 1.0,
            last_sensor_mg_dl: None,
            last_rescue_minute: None,
            last_correction_minute: None,
            sensor,
            sensor_life_min,
            warmup_min: 30,
            dropout_until: None,
            backlog: Vec::new(),
            config,
        }
    }

    /// The standard patient for the ward.
    pub fn standard_patient(key: &str, name: &str) -> PatientSpec {
        PatientSpec {
            key: key.to_owned(),
            display_name: name.to_owned(),
            birth_year: 1994,
            program: Program::Diabetes,
            summary: "Type 1 diabetes on a CGM with multiple daily injections; \
                      over-boluses dinner every other evening and runs low overnight"
                .to_owned(),
            spo2_scale: SpO2Scale::Scale1,
        }
    }

    /// Basal insulin in U/h that the titration arrived at.
    pub fn basal_units_per_hour(&self) -> f64 {
        self.basal_mu_per_min * 60.0 / 1000.0
    }

    /// Plasma glucose now, mg/dL (the truth the sensor measures with delay and error).
    pub fn plasma_glucose_mg_dl(&self) -> f64 {
        self.state[Q1] / self.params.vg * GLUCOSE_MG_DL_PER_MMOL_L
    }

    fn time_of(&self, minute: i64) -> DateTime<Utc> {
        self.start + Duration::minutes(minute)
    }

    fn minute_of(&self, time: DateTime<Utc>) -> i64 {
        (time - self.start).num_seconds().div_euclid(60)
    }

    fn schedule(&mut self, minute: i64, action: Action) {
        let index = self.actions.partition_point(|(m, _)| *m <= minute);
        self.actions.insert(index, (minute, action));
    }

    /// Plans a local day's meals the first time the simulation enters it.
    fn plan_day(&mut self, day: i64) {
        self.planned_day = Some(day);
        // Day-to-day insulin sensitivity, ±10 % (Visentin et al. 2015 report larger
        // within-day swings; a daily factor is the simplest faithful variation).
        self.si_factor = (1.0 + 0.1 * self.rng.normal()).clamp(0.75, 1.25);
        let meals = [
            (7.25, 20.0, (35.0, 55.0), 1.0, false),
            (12.5, 30.0, (45.0, 75.0), 1.0, false),
            (16.0, 30.0, (15.0, 25.0), 0.4, true),
            (19.0, 30.0, (55.0, 85.0), 1.0, false),
        ];
        for (index, (hour, jitter_min, carbs, probability, snack)) in meals.into_iter().enumerate()
        {
            let jitter = (self.rng.normal() * jitter_min).clamp(-60.0, 60.0) / 60.0;
            let carbs_g = self.rng.range(carbs.0, carbs.1).round();
            let pre_bolus = self.rng.range(0.0, 15.0);
            let counting_error = (1.0 + 0.18 * self.rng.normal()).clamp(0.6, 1.4);
            let missed = self.rng.chance(self.config.missed_bolus_probability);
            let eaten = self.rng.chance(probability);
            let mut hour = hour + jitter;
            let mut factor = 1.0;
            let mut missed = missed || snack;
            if index == 3 {
                let nth = self.dinners_seen;
                self.dinners_seen += 1;
                if let Some(n) = self.config.night_low_every_nth_dinner
                    && n > 0
                    && nth % n == n - 1
                {
                    // The planned low: a late dinner out, over-bolused (dosed for a dessert
                    // that was never eaten), so insulin peaks after midnight while asleep.
                    hour = 21.5 + jitter / 2.0;
                    factor = self.config.over_bolus_factor;
                    missed = false;
                }
            }
            let minute = self.minute_of(self.clock.at(day, hour));
            if !eaten || minute < self.minute {
                continue;
            }
            self.schedule(minute, Action::Meal { carbs_g });
            if !missed {
                let bolus_minute = (minute - pre_bolus.round() as i64).max(self.minute);
                self.schedule(
                    bolus_minute,
                    Action::MealBolus {
                        carbs_estimate_g: carbs_g * counting_error,
                        factor,
                    },
                );
            }
        }
    }

    fn asleep(&self, time: DateTime<Utc>) -> bool {
        let hour = self.clock.hour_of_day(time);
        !(7.0..23.0).contains(&hour)
    }

    fn apply(&mut self, action: Action) {
        let p = &self.params;
        match action {
            Action::Meal { carbs_g } => self.state[D1] += p.ag * carbs_g / GLUCOSE_G_PER_MMOL,
            Action::FastCarbs { carbs_g } => self.state[F1] += p.ag * carbs_g / GLUCOSE_G_PER_MMOL,
            Action::MealBolus {
                carbs_estimate_g,
                factor,
            } => {
                let correction = self
                    .last_sensor_mg_dl
                    .map(|g| ((g - 120.0) / self.config.correction_factor_mg_dl_per_unit).max(0.0))
                    .unwrap_or(0.0);
                let units =
                    carbs_estimate_g / self.config.carb_ratio_g_per_unit * factor + correction;
                // Pens dose in half units.
                let units = (units * 2.0).round() / 2.0;
                self.state[S1] += units * 1000.0;
            }
        }
    }

    /// The person's reaction to what the CGM app shows.
    fn react(&mut self, minute: i64, sensor_mg_dl: f64) {
        let time = self.time_of(minute);
        let asleep = self.asleep(time);
        let recently_rescued = self.last_rescue_minute.is_some_and(|m| minute - m < 20);
        let threshold = if asleep { 55.0 } else { 70.0 };
        if sensor_mg_dl < threshold && !recently_rescued {
            let delay = if asleep {
                self.rng.range(10.0, 20.0)
            } else {
                self.rng.range(3.0, 10.0)
            };
            let carbs_g = if asleep { 20.0 } else { 15.0 };
            self.schedule(minute + delay.round() as i64, Action::FastCarbs { carbs_g });
            self.last_rescue_minute = Some(minute);
        }
        let recently_corrected = self
            .last_correction_minute
            .is_some_and(|m| minute - m < 180);
        if sensor_mg_dl > 250.0 && !asleep && !recently_corrected {
            let units = ((sensor_mg_dl - 140.0) / self.config.correction_factor_mg_dl_per_unit
                * 2.0)
                .round()
                / 2.0;
            self.state[S1] += units * 1000.0;
            self.last_correction_minute = Some(minute);
        }
    }

    /// Takes a CGM sample at `minute`, if the sensor is not warming up.
    fn sample_sensor(&mut self, minute: i64) -> Option<f64> {
        if minute - self.sensor.started_minute >= self.sensor_life_min {
            self.sensor = new_sensor(&mut self.rng, minute);
        }
        // The AR(1) noise evolves every sample period whether or not it is reported.
        let phi = 0.7;
        let sd = 5.0;
        self.sensor.ar_noise =
            phi * self.sensor.ar_noise + sd * (1.0 - phi * phi).sqrt() * self.rng.normal();
        if minute - self.sensor.started_minute < self.warmup_min {
            return None;
        }
        let interstitial = self.state[IG] * GLUCOSE_MG_DL_PER_MMOL_L;
        let value =
            self.sensor.gain * interstitial + self.sensor.offset_mg_dl + self.sensor.ar_noise;
        Some(
            value
                .round()
                .clamp(SENSOR_RANGE_MG_DL.0, SENSOR_RANGE_MG_DL.1),
        )
    }

    fn step_minute(&mut self, out: &mut Vec<DeviceEmission>) {
        let minute = self.minute;
        let time = self.time_of(minute);
        let day = self.clock.day(time);
        if self.planned_day != Some(day) {
            self.plan_day(day);
        }
        if minute.rem_euclid(CGM_PERIOD_MIN) == 0
            && let Some(value) = self.sample_sensor(minute)
        {
            self.last_sensor_mg_dl = Some(value);
            self.react(minute, value);
            let reading = Measured::new(CGM_CODE, Num::round(value, 0), "mg/dL", time);
            self.transmit(minute, time, reading, out);
        }
        while let Some((at, action)) = self.actions.first().copied() {
            if at > minute {
                break;
            }
            self.actions.remove(0);
            self.apply(action);
        }
        let hour = self.clock.hour_of_day(time);
        // Dawn phenomenon: +20 % endogenous production around 05:00–07:00.
        let dawn = 1.0 + 0.2 * (-((hour - 6.0) / 1.5).powi(2) / 2.0).exp();
        let inputs = Inputs {
            insulin_mu_per_min: self.basal_mu_per_min,
            egp_factor: dawn,
            si_factor: self.si_factor,
        };
        self.state = rk4(&self.params, &self.state, inputs, 1.0);
        self.minute += 1;
    }

    fn transmit(
        &mut self,
        minute: i64,
        time: DateTime<Utc>,
        reading: Measured,
        out: &mut Vec<DeviceEmission>,
    ) {
        if self.dropout_until.is_none() && self.rng.chance(self.config.dropout_probability) {
            let length = self.rng.range(15.0, 60.0).round() as i64;
            self.dropout_until = Some(minute + length);
        }
        match self.dropout_until {
            Some(until) if minute < until => self.backlog.push(reading),
            _ => {
                self.dropout_until = None;
                self.backlog.push(reading);
                let batch = std::mem::take(&mut self.backlog);
                out.extend(self.tx.readings(time, &batch));
            }
        }
    }
}

fn new_sensor(rng: &mut Rng, started_minute: i64) -> SensorSession {
    SensorSession {
        started_minute,
        gain: (1.0 + 0.04 * rng.normal()).clamp(0.9, 1.1),
        offset_mg_dl: (3.0 * rng.normal()).clamp(-8.0, 8.0),
        ar_noise: 0.0,
    }
}

impl Scenario for DiabetesScenario {
    fn patient(&self) -> &PatientSpec {
        &self.patient
    }

    fn devices(&self) -> &[DeviceSpec] {
        &self.devices
    }

    fn advance_to(&mut self, until: DateTime<Utc>) -> Vec<DeviceEmission> {
        let mut out = Vec::new();
        while self.time_of(self.minute) <= until {
            self.step_minute(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basal_steady_state_is_an_equilibrium() {
        let p = HovorkaParams::nominal(70.0);
        let (rate, state) = basal_steady_state(&p, 6.7);
        let d = derivatives(
            &p,
            &state,
            Inputs {
                insulin_mu_per_min: rate,
                egp_factor: 1.0,
                si_factor: 1.0,
            },
        );
        for (i, value) in d.iter().enumerate() {
            assert!(value.abs() < 1e-6, "state {i} drifts at {value}");
        }
        // A plausible adult basal rate.
        let units_per_hour = rate * 60.0 / 1000.0;
        assert!((0.2..2.0).contains(&units_per_hour), "{units_per_hour}");
    }
}
