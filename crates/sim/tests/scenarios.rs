#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::HashMap;

use chrono::{Duration, Timelike};
use wardline_analytics::news2::{
    Consciousness, InspiredAir, News2Observations, SpO2Scale, score_news2,
};
use wardline_domain::ObservationCode;
use wardline_sim::{
    DiabetesConfig, DiabetesScenario, Instrument, Scenario, Vitals, VitalsProfile, VitalsScenario,
};

use support::{parse_all, readings_of, start};

#[test]
fn cgm_stays_in_sensor_range_and_goes_low_at_night() {
    for seed in 1..=5 {
        let patient = DiabetesScenario::standard_patient("ada", "Ada");
        let mut scenario =
            DiabetesScenario::new(patient, "cgm-ada", DiabetesConfig::default(), seed, start());
        let emissions = scenario.advance_to(start() + Duration::days(3));
        let parsed = parse_all(&emissions);
        let readings = readings_of(&parsed, "cgm-ada");
        // 5-min readings for 3 days, less sensor warm-ups.
        assert!(
            readings.len() > 800,
            "seed {seed}: {} readings",
            readings.len()
        );
        assert!(
            readings
                .iter()
                .all(|r| r.code == ObservationCode::GlucoseCgm)
        );
        assert!(
            readings.iter().all(|r| (40.0..=400.0).contains(&r.value)),
            "seed {seed}: out of sensor range"
        );
        let night_lows = readings
            .iter()
            .filter(|r| r.value < 70.0 && !(7..23).contains(&r.effective.hour()))
            .count();
        assert!(
            night_lows > 0,
            "seed {seed}: no night-time value below 70 mg/dL"
        );
        let mean = readings.iter().map(|r| r.value).sum::<f64>() / readings.len() as f64;
        assert!((100.0..180.0).contains(&mean), "seed {seed}: mean {mean}");
        // Reading times are on the 5-minute grid and strictly increasing.
        assert!(readings.windows(2).all(|w| w[1].effective > w[0].effective));
    }
}

#[test]
fn sepsis_course_drives_news2_from_low_to_high() {
    for seed in [1, 2, 3] {
        let patient = VitalsScenario::post_surgery_patient("carla", "Carla");
        let mut scenario = VitalsScenario::new(
            patient,
            VitalsProfile::post_surgery(),
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
            start(),
        );
        let emissions = scenario.advance_to(start() + Duration::hours(14));
        let parsed = parse_all(&emissions);
        // Score the latest value of each vital after every message, once all are known.
        let mut latest: HashMap<ObservationCode, f64> = HashMap::new();
        let mut scores = Vec::new();
        for (key, _, message) in &parsed {
            let wardline_domain::DeviceMessage::Readings(readings) = message else {
                continue;
            };
            for r in readings {
                // The oximeter's pulse is the one NEWS2 uses; the cuff's is a duplicate.
                if r.code == ObservationCode::HeartRate && key != "oxi-carla" {
                    continue;
                }
                latest.insert(r.code, r.value);
            }
            let get = |code| latest.get(&code).copied();
            let (Some(rr), Some(spo2), Some(sbp), Some(hr), Some(temp)) = (
                get(ObservationCode::RespiratoryRate),
                get(ObservationCode::OxygenSaturationPulseOximetry),
                get(ObservationCode::SystolicBloodPressure),
                get(ObservationCode::HeartRate),
                get(ObservationCode::BodyTemperature),
            ) else {
                continue;
            };
            let observations = News2Observations {
                respiration_rate: Some(rr as u16),
                spo2_percent: Some(spo2 as u16),
                spo2_scale: SpO2Scale::Scale1,
                inspired_air: Some(InspiredAir::Air),
                systolic_bp_mmhg: Some(sbp as u16),
                pulse_per_min: Some(hr as u16),
                consciousness: Some(Consciousness::Alert),
                temperature_c: Some(temp),
            };
            let score = score_news2(&observations).unwrap();
            scores.push(score.complete().unwrap().total);
        }
        assert!(scores.len() > 40, "seed {seed}: {} scores", scores.len());
        assert!(scores[0] <= 2, "seed {seed}: starts at NEWS2 {}", scores[0]);
        let max = *scores.iter().max().unwrap();
        assert!(max >= 7, "seed {seed}: NEWS2 peaks at {max}: {scores:?}");
        let first_five = scores.iter().position(|s| *s >= 5).unwrap();
        assert!(first_five > 4, "seed {seed}: NEWS2 5 too early");
    }
}

#[test]
fn copd_saturation_sits_in_the_scale_2_target() {
    let patient = VitalsScenario::copd_patient("dev", "Dev");
    let mut scenario = VitalsScenario::new(
        patient,
        VitalsProfile::copd(),
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
        11,
        start(),
    );
    let parsed = parse_all(&scenario.advance_to(start() + Duration::days(2)));
    let mut spo2: Vec<f64> = readings_of(&parsed, "oxi-dev")
        .iter()
        .filter(|r| r.code == ObservationCode::OxygenSaturationPulseOximetry)
        .map(|r| r.value)
        .collect();
    spo2.sort_by(f64::total_cmp);
    let median = spo2[spo2.len() / 2];
    assert!((88.0..=92.0).contains(&median), "median SpO2 {median}");
    let in_target = spo2.iter().filter(|v| (87.0..=93.0).contains(*v)).count();
    assert!(in_target * 10 >= spo2.len() * 8, "{spo2:?}");
    let peak_flows = readings_of(&parsed, "peakflow-dev");
    assert_eq!(peak_flows.len(), 4);
    assert!(
        peak_flows
            .iter()
            .all(|r| (150.0..=300.0).contains(&r.value))
    );
}

#[test]
fn stable_patients_stay_normal_with_a_circadian_dip() {
    let patient = VitalsScenario::stable_patient("eva", "Eva", 1987, "well");
    let profile = VitalsProfile::stable(
        Vitals {
            heart_rate: 72.0,
            respiratory_rate: 14.0,
            temperature_c: 36.7,
            systolic: 122.0,
            diastolic: 78.0,
            spo2: 98.0,
        },
        63.0,
    );
    let mut scenario = VitalsScenario::new(
        patient,
        profile,
        vec![
            (
                "oxi-eva".to_owned(),
                Instrument::PulseOximeter {
                    every_min: 30.0,
                    respiratory_rate: false,
                },
            ),
            (
                "thermo-eva".to_owned(),
                Instrument::Thermometer {
                    every_min: 240.0,
                    fahrenheit: true,
                },
            ),
        ],
        5,
        start(),
    );
    let parsed = parse_all(&scenario.advance_to(start() + Duration::days(2)));
    let readings = readings_of(&parsed, "oxi-eva");
    let hr = |night: bool| {
        let values: Vec<f64> = readings
            .iter()
            .filter(|r| r.code == ObservationCode::HeartRate)
            .filter(|r| (1..6).contains(&r.effective.hour()) == night)
            .map(|r| r.value)
            .collect();
        values.iter().sum::<f64>() / values.len() as f64
    };
    assert!(
        hr(true) < hr(false) - 3.0,
        "night {} day {}",
        hr(true),
        hr(false)
    );
    assert!(readings.iter().all(|r| match r.code {
        ObservationCode::HeartRate => (45.0..=105.0).contains(&r.value),
        _ => (93.0..=100.0).contains(&r.value),
    }));
    // Eva's thermometer sends °F; the server stores °C.
    let temps = readings_of(&parsed, "thermo-eva");
    assert!(!temps.is_empty());
    assert!(temps.iter().all(|r| {
        r.original
            .as_ref()
            .is_some_and(|(_, unit)| unit == "[degF]")
    }));
    assert!(
        temps.iter().all(|r| (35.8..=37.8).contains(&r.value)),
        "{temps:?}"
    );
}
