#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::HashSet;

use chrono::Duration;
use wardline_domain::{DeviceId, DeviceMessage};
use wardline_sim::{Program, Ward};

use support::{parse_all, start};

fn run(seed: u64, hours: i64, step: Duration) -> Vec<wardline_sim::DeviceEmission> {
    let mut ward = Ward::standard(seed, start());
    let end = start() + Duration::hours(hours);
    let mut t = start();
    let mut out = Vec::new();
    while t < end {
        t = (t + step).min(end);
        out.extend(ward.advance_to(t));
    }
    out
}

#[test]
fn same_seed_gives_identical_bytes_however_the_clock_is_advanced() {
    let a = run(7, 1, Duration::hours(1));
    let b = run(7, 1, Duration::hours(1));
    assert_eq!(a, b);
    // Advancing in uneven small steps changes nothing but the grouping.
    let c = run(7, 1, Duration::seconds(37));
    let key = |e: &wardline_sim::DeviceEmission| (e.device_key.clone(), e.payload_bytes.clone());
    let mut a_sorted: Vec<_> = a.iter().map(key).collect();
    let mut c_sorted: Vec<_> = c.iter().map(key).collect();
    a_sorted.sort();
    c_sorted.sort();
    assert_eq!(a_sorted, c_sorted);
    let d = run(8, 1, Duration::hours(1));
    assert_ne!(a, d);
}

#[test]
fn every_payload_parses_at_its_sim_time_with_increasing_seq() {
    // 06:00 to 10:00 includes the daily scale (07:00), the peak flow (08:00) and the
    // slowest spot check (every 3 h).
    let emissions = run(3, 4, Duration::minutes(10));
    let parsed = parse_all(&emissions);
    let devices: HashSet<&str> = parsed.iter().map(|(k, _, _)| k.as_str()).collect();
    let ward = Ward::standard(3, start());
    for device in ward.devices() {
        assert!(
            devices.contains(device.key.as_str()),
            "{} sent nothing in 4 h",
            device.key
        );
    }
    // Sent in time order, and never from the future.
    assert!(emissions.windows(2).all(|w| w[0].sim_time <= w[1].sim_time));
    for (_, sent, message) in &parsed {
        match message {
            DeviceMessage::Readings(readings) => {
                assert!(readings.iter().all(|r| r.effective <= *sent))
            }
            DeviceMessage::Waveform(chunk) => assert!(chunk.end() <= *sent),
        }
    }
}

#[test]
fn the_standard_ward_lists_patients_devices_and_programs() {
    let ward = Ward::standard(1, start());
    let patients: Vec<_> = ward.patients().collect();
    let keys: HashSet<&str> = patients.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys.len(), patients.len());
    for program in Program::ALL {
        assert!(
            patients.iter().any(|p| p.program == program),
            "no {program} patient"
        );
    }
    let mut device_keys = HashSet::new();
    for device in ward.devices() {
        assert!(DeviceId::parse(&device.key).is_ok(), "{}", device.key);
        assert!(
            device_keys.insert(device.key.clone()),
            "{} twice",
            device.key
        );
        assert!(keys.contains(device.patient_key.as_str()));
        assert!(!device.codes.is_empty() || !device.signals.is_empty());
    }
    assert!(device_keys.contains("cgm-ada"));
    let copd = patients
        .iter()
        .find(|p| p.program == Program::Respiratory)
        .unwrap();
    assert_eq!(
        copd.spo2_scale,
        wardline_analytics::news2::SpO2Scale::Scale2
    );
}
