//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use wardline_alerting::{
    AlarmSignal, CarePlan, ObservedValue, PatientBaseline, PatientMonitor, Program,
};
use wardline_domain::{DeviceId, DeviceKind, ObservationCode, PatientId};

pub fn at(minutes: f64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap()
        + TimeDelta::milliseconds((minutes * 60_000.0) as i64)
}

pub fn cgm() -> DeviceId {
    DeviceId::parse("cgm-0001").unwrap()
}

pub fn plan(program: Program) -> CarePlan {
    CarePlan::from_program(
        PatientId::random(),
        program,
        &PatientBaseline {
            peak_flow_personal_best_l_min: Some(400.0),
        },
        at(0.0),
    )
}

pub fn diabetes_monitor() -> PatientMonitor {
    let mut monitor = PatientMonitor::new(plan(Program::Diabetes), at(0.0)).unwrap();
    monitor.attach_device(cgm(), DeviceKind::Cgm);
    monitor
}

pub fn reading(code: ObservationCode, minute: f64, value: f64) -> ObservedValue {
    ObservedValue {
        device_id: cgm(),
        code,
        value,
        effective: at(minute),
        received: None,
    }
}

pub fn glucose(monitor: &mut PatientMonitor, minute: f64, value: f64) -> Vec<AlarmSignal> {
    monitor
        .on_observation(
            &reading(ObservationCode::GlucoseCgm, minute, value),
            at(minute),
        )
        .unwrap()
}

/// The (rule id, raise?) pairs of some signals.
pub fn summary(signals: &[AlarmSignal]) -> Vec<(String, bool)> {
    signals
        .iter()
        .map(|s| (s.condition().rule_id.to_string(), s.is_raise()))
        .collect()
}

pub fn raised(rule: &str) -> (String, bool) {
    (rule.to_owned(), true)
}

pub fn cleared(rule: &str) -> (String, bool) {
    (rule.to_owned(), false)
}
