//! The virtual ward: a set of scenarios advanced together.

use std::collections::HashSet;

use chrono::{DateTime, FixedOffset, Offset, SubsecRound, Utc};

use crate::cardiac::{CardiacScenario, EcgRecord, SyntheticEcgConfig};
use crate::error::SimError;
use crate::glucose::{DiabetesConfig, DiabetesScenario};
use crate::payload::DeviceEmission;
use crate::roster::{DeviceSpec, PatientSpec};
use crate::scenario::Scenario;
use crate::vitals::{Instrument, Vitals, VitalsProfile, VitalsScenario};

/// Simulated patients and their devices, advanced by the caller's clock.
#[derive(Debug)]
pub struct Ward {
    seed: u64,
    start: DateTime<Utc>,
    utc_offset: FixedOffset,
    scenarios: Vec<Box<dyn Scenario>>,
}

impl Ward {
    /// An empty ward whose simulation starts at `start` (truncated to whole milliseconds,
    /// the resolution of payload timestamps).
    pub fn new(seed: u64, start: DateTime<Utc>) -> Self {
        Self {
            seed,
            start: start.trunc_subsecs(3),
            utc_offset: Utc.fix(),
            scenarios: Vec::new(),
        }
    }

    /// The default ward, patients living on UTC. See [`Ward::standard_in`].
    pub fn standard(seed: u64, start: DateTime<Utc>) -> Self {
        Self::standard_in(seed, start, Utc.fix())
    }

    /// The default ward, with meals, sleep and circadian rhythms on local time `offset`:
    ///
    /// | patient | program | devices |
    /// | --- | --- | --- |
    /// | `ada` Ada Moreno | diabetes | `cgm-ada` CGM, 5-min glucose; night lows every other night |
    /// | `ben` Ben Okafor | cardiac | `ecg-ben` ECG patch, ECGSYN lead II at 250 Hz with AF episodes, HR each minute |
    /// | `carla` Carla Jensen | post_surgery | `oxi-carla` (15 min, with RR), `bp-carla` (30 min), `thermo-carla` (60 min); sepsis over ~10 h |
    /// | `dev` Dev Raman | respiratory | `oxi-dev` (30 min), `peakflow-dev` (08:00, 20:00); COPD, SpO2 Scale 2 |
    /// | `eva` Eva Lindqvist | general | `oxi-eva` (30 min), `bp-eva` (60 min), `thermo-eva` (3 h, °F) |
    /// | `farid` Farid Haddad | general | `bp-farid` (2 h), `oxi-farid` (60 min), `scale-farid` (07:00) |
    pub fn standard_in(seed: u64, start: DateTime<Utc>, offset: FixedOffset) -> Self {
        let mut ward = Self::new(seed, start);
        ward.utc_offset = offset;
        let start = ward.start;
        let mut scenarios: Vec<Box<dyn Scenario>> = Vec::new();

        scenarios.push(Box::new(DiabetesScenario::new(
            DiabetesScenario::standard_patient("ada", "Ada Moreno"),
            "cgm-ada",
            DiabetesConfig {
                utc_offset: offset,
                ..DiabetesConfig::default()
            },
            seed,
            start,
        )));

        scenarios.push(Box::new(CardiacScenario::synthetic(
            CardiacScenario::standard_patient("ben", "Ben Okafor"),
            "ecg-ben",
            SyntheticEcgConfig::default(),
            seed,
            start,
        )));

        let post_surgery = VitalsProfile {
            utc_offset: offset,
            ..VitalsProfile::post_surgery()
        };
        scenarios.push(Box::new(VitalsScenario::new(
            VitalsScenario::post_surgery_patient("carla", "Carla Jensen"),
            post_surgery,
            vec![
                (
                    "oxi-carla".to_owned(),
                    Instrument::PulseOximeter {
                        every_min: 15.0,
                        respiratory_rate: true,
                    },
                ),
                (
                    "bp-carla".to_owned(),
                    Instrument::BloodPressureCuff { every_min: 30.0 },
                ),
                (
                    "thermo-carla".to_owned(),
                    Instrument::Thermometer {
                        every_min: 60.0,
                        fahrenheit: false,
                    },
                ),
            ],
            seed,
            start,
        )));

        let copd = VitalsProfile {
            utc_offset: offset,
            ..VitalsProfile::copd()
        };
        scenarios.push(Box::new(VitalsScenario::new(
            VitalsScenario::copd_patient("dev", "Dev Raman"),
            copd,
            vec![
                (
                    "oxi-dev".to_owned(),
                    Instrument::PulseOximeter {
                        every_min: 30.0,
                        respiratory_rate: false,
                    },
                ),
                (
                    "peakflow-dev".to_owned(),
                    Instrument::PeakFlowMeter {
                        at_hours: vec![8.0, 20.0],
                    },
                ),
            ],
            seed,
            start,
        )));

        let eva = VitalsProfile {
            utc_offset: offset,
            ..VitalsProfile::stable(
                Vitals {
                    heart_rate: 72.0,
                    respiratory_rate: 14.0,
                    temperature_c: 36.7,
                    systolic: 122.0,
                    diastolic: 78.0,
                    spo2: 98.0,
                },
                63.0,
            )
        };
        scenarios.push(Box::new(VitalsScenario::new(
            VitalsScenario::stable_patient(
                "eva",
                "Eva Lindqvist",
                1987,
                "Well; routine home monitoring after a virtual check-in",
            ),
            eva,
            vec![
                (
                    "oxi-eva".to_owned(),
                    Instrument::PulseOximeter {
                        every_min: 30.0,
                        respiratory_rate: false,
                    },
                ),
                (
                    "bp-eva".to_owned(),
                    Instrument::BloodPressureCuff { every_min: 60.0 },
                ),
                (
                    "thermo-eva".to_owned(),
                    Instrument::Thermometer {
                        every_min: 180.0,
                        fahrenheit: true,
                    },
                ),
            ],
            seed,
            start,
        )));

        let farid = VitalsProfile {
            utc_offset: offset,
            ..VitalsProfile::stable(
                Vitals {
                    heart_rate: 64.0,
                    respiratory_rate: 13.0,
                    temperature_c: 36.6,
                    systolic: 134.0,
                    diastolic: 84.0,
                    spo2: 97.0,
                },
                82.0,
            )
        };
        scenarios.push(Box::new(VitalsScenario::new(
            VitalsScenario::stable_patient(
                "farid",
                "Farid Haddad",
                1962,
                "Treated hypertension, stable; daily weight and blood pressure",
            ),
            farid,
            vec![
                (
                    "bp-farid".to_owned(),
                    Instrument::BloodPressureCuff { every_min: 120.0 },
                ),
                (
                    "oxi-farid".to_owned(),
                    Instrument::PulseOximeter {
                        every_min: 60.0,
                        respiratory_rate: false,
                    },
                ),
                ("scale-farid".to_owned(), Instrument::Scale { at_hour: 7.0 }),
            ],
            seed,
            start,
        )));

        ward.scenarios = scenarios;
        ward
    }

    /// Adds a scenario; patient and device keys must be new to the ward.
    pub fn add(&mut self, scenario: Box<dyn Scenario>) -> Result<(), SimError> {
        let patients: HashSet<&str> = self
            .scenarios
            .iter()
            .map(|s| s.patient().key.as_str())
            .collect();
        if patients.contains(scenario.patient().key.as_str()) {
            return Err(SimError::Invalid(format!(
                "patient key {} is already on the ward",
                scenario.patient().key
            )));
        }
        let devices: HashSet<&str> = self.devices().map(|d| d.key.as_str()).collect();
        if let Some(clash) = scenario
            .devices()
            .iter()
            .find(|d| devices.contains(d.key.as_str()))
        {
            return Err(SimError::Invalid(format!(
                "device key {} is already on the ward",
                clash.key
            )));
        }
        self.scenarios.push(scenario);
        Ok(())
    }

    /// Keeps only the patients `keep` names (by key), with their devices: a test that
    /// needs one patient's month does not simulate a month of another's ECG.
    pub fn retain_patients(&mut self, keep: impl Fn(&str) -> bool) {
        self.scenarios
            .retain(|scenario| keep(&scenario.patient().key));
    }

    /// Adds a cardiac patient (`mitdb<record>`, device `ecg-mitdb<record>`) whose patch
    /// replays `record` from the ward's start.
    pub fn add_ecg_record(&mut self, record: EcgRecord) -> Result<(), SimError> {
        let patient = CardiacScenario::record_patient(&record, self.start);
        let device_key = format!("ecg-{}", patient.key);
        self.add(Box::new(CardiacScenario::replay(
            patient,
            &device_key,
            record,
            self.start,
        )))
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    pub fn utc_offset(&self) -> FixedOffset {
        self.utc_offset
    }

    pub fn patients(&self) -> impl Iterator<Item = &PatientSpec> {
        self.scenarios.iter().map(|s| s.patient())
    }

    pub fn devices(&self) -> impl Iterator<Item = &DeviceSpec> {
        self.scenarios.iter().flat_map(|s| s.devices())
    }

    pub fn scenarios(&self) -> &[Box<dyn Scenario>] {
        &self.scenarios
    }

    /// Advances every patient to `until`; emissions come in order of sending (ties in
    /// ward order), each device's in increasing `seq`.
    pub fn advance_to(&mut self, until: DateTime<Utc>) -> Vec<DeviceEmission> {
        let mut out: Vec<DeviceEmission> = self
            .scenarios
            .iter_mut()
            .flat_map(|s| s.advance_to(until))
            .collect();
        // Stable: equal times keep ward order and each device's own order.
        out.sort_by_key(|e| e.sim_time);
        out
    }
}
