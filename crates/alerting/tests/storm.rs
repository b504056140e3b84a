//! Whatever the readings, each condition alternates raise and clear, and the board never
//! holds two unresolved alarms for one condition.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use wardline_alerting::{
    AlarmBoard, AlarmSignal, ConditionKey, ObservedValue, PatientMonitor, Program,
};
use wardline_domain::{DeviceId, ObservationCode};

#[derive(Debug, Clone)]
enum Input {
    Reading {
        code: usize,
        value: f64,
        minutes: f64,
    },
    Tick {
        minutes: f64,
    },
}

const CODES: [ObservationCode; 5] = [
    ObservationCode::GlucoseCgm,
    ObservationCode::HeartRate,
    ObservationCode::OxygenSaturationPulseOximetry,
    ObservationCode::BodyTemperature,
    ObservationCode::RespiratoryRate,
];

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => (0..CODES.len(), 0.0..400.0f64, 0.0..30.0f64)
            .prop_map(|(code, value, minutes)| Input::Reading { code, value, minutes }),
        1 => (0.0..60.0f64).prop_map(|minutes| Input::Tick { minutes }),
    ]
}

proptest! {
    #[test]
    fn at_most_one_open_alarm_per_condition(
        program in prop_oneof![Just(Program::Diabetes), Just(Program::Cardiac), Just(Program::Respiratory), Just(Program::GeneralVitals)],
        inputs in prop::collection::vec(input(), 1..300),
    ) {
        let mut monitor = PatientMonitor::new(plan(program), at(0.0)).unwrap();
        let device = DeviceId::parse("dev-1").unwrap();
        let mut board = AlarmBoard::new();
        let mut raised: BTreeMap<ConditionKey, bool> = BTreeMap::new();
        let mut clock = 0.0;
        for input in inputs {
            let signals = match input {
                Input::Reading { code, value, minutes } => {
                    clock += minutes;
                    let observation = ObservedValue {
                        device_id: device.clone(),
                        code: CODES[code],
                        value,
                        effective: at(clock),
                        received: None,
                    };
                    monitor.on_observation(&observation, at(clock)).unwrap()
                }
                Input::Tick { minutes } => {
                    clock += minutes;
                    monitor.on_tick(at(clock))
                }
            };
            for signal in &signals {
                let was = raised.insert(signal.condition().clone(), signal.is_raise()).unwrap_or(false);
                prop_assert!(was != signal.is_raise(), "two {} in a row for {:?}", if was { "raises" } else { "clears" }, signal.condition());
                if let AlarmSignal::Raise { .. } = signal {
                    prop_assert!(monitor.active_conditions().contains(&signal.condition().rule_id));
                }
                board.apply(signal);
                let mut seen = std::collections::BTreeSet::new();
                for alarm in board.unresolved() {
                    prop_assert!(seen.insert(alarm.condition.clone()), "two unresolved alarms for {:?}", alarm.condition);
                }
            }
        }
    }
}
