//! Each rule kind through the per-patient evaluator.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use wardline_alerting::monitor::{
    DeviceStatusReport, ForecastInput, ForecastPoint, RhythmObservation,
};
use wardline_alerting::rule::RhythmKind;
use wardline_alerting::{
    AlarmKind, AlarmSignal, CarePlanChange, CarePlanHistory, ObservedValue, PatientMonitor,
    Priority, Program, RuleEdit, RuleId, RuleKind,
};
use wardline_analytics::news2::{Consciousness, InspiredAir, News2Observations, score_news2};
use wardline_domain::{DeviceId, DeviceKind, ObservationCode, UserId};

#[test]
fn threshold_waits_for_its_minimum_duration_and_clears_past_the_hysteresis() {
    let mut monitor = diabetes_monitor();
    assert!(glucose(&mut monitor, 0.0, 65.0).is_empty());
    assert!(glucose(&mut monitor, 5.0, 64.0).is_empty());
    assert!(glucose(&mut monitor, 10.0, 63.0).is_empty());
    let signals = glucose(&mut monitor, 15.0, 62.0);
    assert_eq!(summary(&signals), [raised("low")]);
    let AlarmSignal::Raise {
        priority,
        kind,
        message,
        care_plan_version,
        ..
    } = &signals[0]
    else {
        panic!("a raise");
    };
    assert_eq!(
        (*priority, *kind, *care_plan_version),
        (Priority::Medium, AlarmKind::Physiological, 1)
    );
    assert!(
        message.contains("62 mg/dL, below 70 mg/dL for 15 min"),
        "{message}"
    );
    // Back above 70 but inside the 10 mg/dL hysteresis: still low.
    assert!(glucose(&mut monitor, 20.0, 72.0).is_empty());
    assert!(glucose(&mut monitor, 25.0, 68.0).is_empty());
    assert!(glucose(&mut monitor, 30.0, 79.0).is_empty());
    assert_eq!(
        summary(&glucose(&mut monitor, 35.0, 80.0)),
        [cleared("low")]
    );
}

/// A back-fill (readings that reach Wardline more than a day after they were measured:
/// an imported export, an uploader catching up) opens no alarm for an excursion that is
/// over; the same readings arriving hours late (a device whose clock is behind) do, and
/// live readings after a back-fill are judged as ever.
#[test]
fn backfilled_readings_open_no_alarm_and_late_ones_within_a_day_do() {
    let late = |minute: f64, value: f64, received_minute: f64| ObservedValue {
        received: Some(at(received_minute)),
        ..reading(ObservationCode::GlucoseCgm, minute, value)
    };
    // An urgent low two days ago, uploaded now.
    let mut monitor = diabetes_monitor();
    let now = 2.0 * 24.0 * 60.0;
    for minute in [0.0, 5.0, 10.0, 15.0, 20.0] {
        let signals = monitor
            .on_observation(&late(minute, 45.0, now), at(now))
            .unwrap();
        // Two days without a live reading is "no CGM data", which a back-fill does not
        // clear; no glucose alarm.
        assert!(
            summary(&signals)
                .iter()
                .all(|(rule, _)| rule == "cgm-silent"),
            "minute {minute}: {signals:?}"
        );
    }
    // The same low arriving three hours late is still the care team's business.
    let mut monitor = diabetes_monitor();
    let late_raises: Vec<_> = [0.0, 5.0, 10.0, 15.0, 20.0]
        .into_iter()
        .flat_map(|minute| {
            monitor
                .on_observation(&late(minute, 45.0, 200.0), at(200.0))
                .unwrap()
        })
        .filter(AlarmSignal::is_raise)
        .collect();
    assert!(
        !late_raises.is_empty(),
        "a reading late by less than a day is evaluated"
    );
    // Live readings after a back-fill: the back-filled lows left no state behind.
    let mut monitor = diabetes_monitor();
    for minute in [0.0, 5.0, 10.0] {
        monitor
            .on_observation(&late(minute, 45.0, now), at(now))
            .unwrap();
    }
    let live = glucose(&mut monitor, now, 45.0);
    assert!(
        summary(&live).contains(&raised("urgent-low")),
        "a live urgent low raises its alarm: {live:?}"
    );
}

#[test]
fn an_excursion_interrupted_by_a_normal_reading_or_a_gap_starts_over() {
    let mut monitor = diabetes_monitor();
    glucose(&mut monitor, 0.0, 65.0);
    glucose(&mut monitor, 5.0, 66.0);
    glucose(&mut monitor, 10.0, 75.0);
    assert!(glucose(&mut monitor, 15.0, 65.0).is_empty());
    assert!(glucose(&mut monitor, 25.0, 65.0).is_empty());
    // A 20-minute gap: nothing is assumed about it.
    assert!(glucose(&mut monitor, 45.0, 65.0).is_empty());
    assert!(glucose(&mut monitor, 55.0, 65.0).is_empty());
    assert_eq!(summary(&glucose(&mut monitor, 60.0, 65.0)), [raised("low")]);
}

#[test]
fn a_persisting_condition_raises_once_however_long_and_noisy() {
    let mut monitor = diabetes_monitor();
    let mut signals = Vec::new();
    for step in 0..200 {
        // Oscillates around 54 within the hysteresis band.
        let value = if step % 2 == 0 { 50.0 } else { 58.0 };
        signals.extend(glucose(&mut monitor, f64::from(step) * 5.0, value));
    }
    let urgent: Vec<_> = signals
        .iter()
        .filter(|s| s.condition().rule_id.as_str() == "urgent-low")
        .collect();
    assert_eq!(urgent.len(), 1, "{signals:?}");
    assert!(urgent[0].is_raise());
    assert_eq!(
        signals
            .iter()
            .filter(|s| s.condition().rule_id.as_str() == "low")
            .count(),
        1
    );
}

#[test]
fn rate_of_fall_is_measured_over_the_window_and_only_near_the_low_range() {
    let mut monitor = diabetes_monitor();
    // 3 mg/dL/min from 250: a correction working, no alarm.
    for (minute, value) in [(0.0, 250.0), (5.0, 235.0), (10.0, 220.0), (15.0, 205.0)] {
        assert!(
            summary(&glucose(&mut monitor, minute, value))
                .iter()
                .all(|(r, _)| r != "falling-fast")
        );
    }
    let mut monitor = diabetes_monitor();
    assert!(glucose(&mut monitor, 0.0, 115.0).is_empty());
    // Five minutes is less than half the window: no rate yet.
    assert!(glucose(&mut monitor, 5.0, 100.0).is_empty());
    assert_eq!(
        summary(&glucose(&mut monitor, 10.0, 85.0)),
        [raised("falling-fast")]
    );
    assert!(glucose(&mut monitor, 15.0, 75.0).is_empty());
    // Flat from here: the 15-minute rate drops below 2 - 1 mg/dL/min only at 25 min.
    assert!(glucose(&mut monitor, 20.0, 75.0).is_empty());
    assert_eq!(
        summary(&glucose(&mut monitor, 25.0, 75.0)),
        [cleared("falling-fast")]
    );
}

/// A device that reports every second (a wearable, a CGM relayed by a fast gateway) is
/// measured over the rule's whole window too, and its rule state stays small.
#[test]
fn rate_of_fall_from_a_chatty_device_is_measured_over_the_whole_window() {
    let mut monitor = diabetes_monitor();
    let mut raised_at = None;
    // 3 mg/dL/min from 115, a reading every second for 12 minutes.
    for step in 0..=720 {
        let minute = f64::from(step) / 60.0;
        let signals = glucose(&mut monitor, minute, 115.0 - 3.0 * minute);
        if summary(&signals).contains(&raised("falling-fast")) {
            raised_at.get_or_insert(minute);
        }
    }
    let raised_at = raised_at.expect("the fall is alarmed");
    // The rate counts once half the 15-minute window is covered.
    assert!((7.5..8.0).contains(&raised_at), "raised at {raised_at} min");
    let state = serde_json::to_string(&monitor).unwrap();
    assert!(state.len() < 16_000, "rule state of {} bytes", state.len());
}

fn forecast(minute: f64, lowest: f64) -> ForecastInput {
    ForecastInput {
        code: ObservationCode::GlucoseCgm,
        issued_at: at(minute),
        points: (1..=6)
            .map(|k| ForecastPoint {
                at: at(minute + 5.0 * f64::from(k)),
                value: 100.0 - (100.0 - lowest) * f64::from(k) / 6.0,
            })
            .collect(),
    }
}

#[test]
fn predicted_low_needs_successive_forecasts_and_clears_with_hysteresis() {
    let mut monitor = diabetes_monitor();
    // Only the forecast rule: the CGM is silent throughout this test.
    let mut send = |minute: f64, lowest: f64| {
        let mut signals = summary(
            &monitor
                .on_forecast(&forecast(minute, lowest), at(minute))
                .unwrap(),
        );
        signals.retain(|(rule, _)| rule == "predicted-low");
        signals
    };
    assert!(send(0.0, 60.0).is_empty());
    assert!(send(5.0, 62.0).is_empty());
    assert_eq!(send(10.0, 65.0), [raised("predicted-low")]);
    assert!(send(15.0, 60.0).is_empty());
    assert!(send(20.0, 75.0).is_empty(), "within the hysteresis");
    assert_eq!(send(25.0, 85.0), [cleared("predicted-low")]);
    // Beyond the 30-minute horizon a forecast point does not count.
    let mut monitor = diabetes_monitor();
    let mut far = forecast(0.0, 100.0);
    far.points.push(ForecastPoint {
        at: at(45.0),
        value: 40.0,
    });
    for minute in [0.0, 5.0, 10.0, 15.0] {
        far.issued_at = at(minute);
        let signals = monitor.on_forecast(&far, at(minute)).unwrap();
        assert!(
            summary(&signals)
                .iter()
                .all(|(rule, _)| rule != "predicted-low")
        );
    }
}

#[test]
fn device_silence_is_raised_on_a_timer_tick_once_and_cleared_by_data() {
    let mut monitor = diabetes_monitor();
    assert!(glucose(&mut monitor, 0.0, 120.0).is_empty());
    assert_eq!(monitor.next_tick_due(), Some(at(20.0)));
    assert!(monitor.on_tick(at(19.9)).is_empty());
    let signals = monitor.on_tick(at(20.0));
    assert_eq!(summary(&signals), [raised("cgm-silent")]);
    assert!(matches!(
        &signals[0],
        AlarmSignal::Raise { kind: AlarmKind::Technical, message, .. } if message.contains("20 min")
    ));
    assert!(monitor.on_tick(at(25.0)).is_empty());
    assert!(monitor.on_tick(at(300.0)).is_empty());
    assert_eq!(monitor.next_tick_due(), None);
    assert_eq!(
        summary(&glucose(&mut monitor, 301.0, 120.0)),
        [cleared("cgm-silent")]
    );
    assert_eq!(monitor.next_tick_due(), Some(at(321.0)));
}

#[test]
fn silence_counts_from_enrolment_when_a_device_never_spoke() {
    let mut monitor = diabetes_monitor();
    assert_eq!(summary(&monitor.on_tick(at(20.0))), [raised("cgm-silent")]);
    // A device picked out by id.
    let mut plan = plan(Program::Diabetes);
    let RuleKind::DeviceSilence(silence) = &mut plan
        .rules
        .iter_mut()
        .find(|r| r.id.as_str() == "cgm-silent")
        .unwrap()
        .kind
    else {
        panic!("silence rule");
    };
    silence.devices = wardline_alerting::rule::DeviceSelector::Device {
        device_id: DeviceId::parse("cgm-0002").unwrap(),
    };
    let mut monitor = PatientMonitor::new(plan, at(0.0)).unwrap();
    glucose(&mut monitor, 10.0, 100.0);
    assert_eq!(summary(&monitor.on_tick(at(20.0))), [raised("cgm-silent")]);
}

#[test]
fn news2_bands_follow_rcp_chart_2() {
    let mut monitor = PatientMonitor::new(plan(Program::GeneralVitals), at(0.0)).unwrap();
    let normal = News2Observations {
        respiration_rate: Some(16),
        spo2_percent: Some(97),
        inspired_air: Some(InspiredAir::Air),
        systolic_bp_mmhg: Some(120),
        pulse_per_min: Some(70),
        consciousness: Some(Consciousness::Alert),
        temperature_c: Some(37.0),
        ..Default::default()
    };
    let mut send = |minute: f64, observations: &News2Observations| {
        let score = score_news2(observations).unwrap();
        summary(&monitor.on_news2(&score, at(minute), at(minute)).unwrap())
    };
    assert!(send(0.0, &normal).is_empty());
    // Respiration 26 scores 3 on its own.
    let single_3 = News2Observations {
        respiration_rate: Some(26),
        ..normal.clone()
    };
    assert_eq!(send(60.0, &single_3), [raised("news2-single-3")]);
    // 3 + pulse 115 (2) = 5: the aggregate band takes over.
    let five = News2Observations {
        pulse_per_min: Some(115),
        ..single_3.clone()
    };
    let mut signals = send(120.0, &five);
    signals.sort();
    assert_eq!(signals, [cleared("news2-single-3"), raised("news2-urgent")]);
    // + temperature 39.5 (2) = 7: emergency.
    let seven = News2Observations {
        temperature_c: Some(39.5),
        ..five.clone()
    };
    let mut signals = send(180.0, &seven);
    signals.sort();
    assert_eq!(
        signals,
        [raised("news2-emergency"), cleared("news2-urgent")]
    );
    // A partial set proving at least 7 keeps the alarm; an unknown one does not clear it.
    let partial = News2Observations {
        consciousness: None,
        ..seven.clone()
    };
    assert!(send(200.0, &partial).is_empty());
    let mut signals = send(240.0, &normal);
    signals.sort();
    assert_eq!(signals, [cleared("news2-emergency")]);
}

#[test]
fn rhythm_events_raise_once_per_burst_and_clear_after_a_quiet_period() {
    let mut monitor = PatientMonitor::new(plan(Program::Cardiac), at(0.0)).unwrap();
    let ecg = DeviceId::parse("ecg-patch-1").unwrap();
    let event = |rhythm, from: f64, to: f64| RhythmObservation {
        device_id: ecg.clone(),
        rhythm,
        onset: at(from),
        end: Some(at(to)),
    };
    let af = |from, to| event(RhythmKind::AtrialFibrillation, from, to);
    assert_eq!(
        summary(&monitor.on_rhythm_event(&af(0.0, 2.0), at(2.0)).unwrap()),
        [raised("atrial-fibrillation")]
    );
    assert!(
        monitor
            .on_rhythm_event(&af(10.0, 12.0), at(12.0))
            .unwrap()
            .is_empty()
    );
    // AF clears an hour after the last run ends; latching, so its alarm stays for a person.
    // The patch is silent after its last event: that is the technical alarm, not AF.
    assert_eq!(summary(&monitor.on_tick(at(71.0))), [raised("ecg-silent")]);
    assert_eq!(
        summary(&monitor.on_tick(at(72.0))),
        [cleared("atrial-fibrillation")]
    );
    let signals = monitor
        .on_rhythm_event(&event(RhythmKind::PoorSignal, 80.0, 81.0), at(81.0))
        .unwrap();
    assert_eq!(
        summary(&signals),
        [cleared("ecg-silent"), raised("ecg-poor-signal")]
    );
    assert!(matches!(
        &signals[1],
        AlarmSignal::Raise {
            kind: AlarmKind::Technical,
            ..
        }
    ));

    // VT/VF: a high-priority physiological alarm, at once (and a rhythm read from
    // the signal ends the poor-signal condition).
    let signals = monitor
        .on_rhythm_event(
            &event(RhythmKind::VentricularTachyarrhythmia, 90.0, 90.1),
            at(90.1),
        )
        .unwrap();
    assert_eq!(
        summary(&signals),
        [
            raised("ventricular-tachyarrhythmia"),
            cleared("ecg-poor-signal")
        ]
    );
    assert!(matches!(
        &signals[0],
        AlarmSignal::Raise {
            kind: AlarmKind::Physiological,
            priority: Priority::High,
            ..
        }
    ));

    // From the ECG analysis's sample indices.
    let detected = wardline_ecg::RhythmEvent {
        kind: wardline_ecg::RhythmKind::Pause,
        onset: 3_600,
        end: 4_500,
    };
    let converted = RhythmObservation::from_ecg(&detected, ecg.clone(), at(0.0), 360.0);
    assert_eq!(
        (converted.onset, converted.end),
        (at(10.0 / 60.0), Some(at(12.5 / 60.0)))
    );
    assert_eq!(converted.rhythm, RhythmKind::Pause);
}

#[test]
fn device_status_raises_technical_alarms_with_a_battery_margin() {
    let mut monitor = PatientMonitor::new(plan(Program::Cardiac), at(0.0)).unwrap();
    let ecg = DeviceId::parse("ecg-patch-1").unwrap();
    monitor.attach_device(ecg.clone(), DeviceKind::Ecg);
    let mut status = |minute: f64, battery: f64| {
        let report = DeviceStatusReport {
            device_id: ecg.clone(),
            at: at(minute),
            battery_percent: Some(battery),
            fault: None,
        };
        summary(&monitor.on_device_status(&report, at(minute)).unwrap())
    };
    assert!(status(0.0, 50.0).is_empty());
    assert_eq!(status(1.0, 15.0), [raised("ecg-low-battery")]);
    assert!(status(2.0, 14.0).is_empty());
    assert!(status(3.0, 22.0).is_empty(), "inside the 5-point margin");
    assert_eq!(status(4.0, 25.0), [cleared("ecg-low-battery")]);

    let mut monitor = diabetes_monitor();
    let fault = DeviceStatusReport {
        device_id: cgm(),
        at: at(1.0),
        battery_percent: None,
        fault: Some("sensor error".into()),
    };
    assert_eq!(
        summary(&monitor.on_device_status(&fault, at(1.0)).unwrap()),
        [raised("cgm-fault")]
    );
    assert!(
        monitor
            .on_device_status(&fault, at(2.0))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn spo2_rules_hear_both_loinc_codes_of_spo2() {
    let mut monitor = PatientMonitor::new(plan(Program::Respiratory), at(0.0)).unwrap();
    let mut spo2 = |code, minute: f64, value| {
        summary(
            &monitor
                .on_observation(&reading(code, minute, value), at(minute))
                .unwrap(),
        )
    };
    assert!(spo2(ObservationCode::OxygenSaturation, 0.0, 90.0).is_empty());
    assert!(spo2(ObservationCode::OxygenSaturationPulseOximetry, 3.0, 90.0).is_empty());
    assert_eq!(
        spo2(ObservationCode::OxygenSaturation, 5.0, 91.0),
        [raised("spo2-low")]
    );
    // Peak flow 180 L/min with a personal best of 400: red zone at once.
    let mut peak = summary(
        &monitor
            .on_observation(
                &reading(ObservationCode::PeakExpiratoryFlow, 6.0, 180.0),
                at(6.0),
            )
            .unwrap(),
    );
    peak.sort();
    assert_eq!(peak, [raised("peak-flow-red"), raised("peak-flow-yellow")]);
}

#[test]
fn a_new_care_plan_version_clears_edited_rules_and_stamps_its_version() {
    let mut monitor = diabetes_monitor();
    let author = UserId::random();
    let mut history =
        CarePlanHistory::enrol(monitor.care_plan().clone(), author, "enrolled").unwrap();
    for minute in [0.0, 5.0, 10.0, 15.0] {
        glucose(&mut monitor, minute, 60.0);
    }
    assert!(monitor.active_conditions().contains(&RuleId::new("low")));
    let mut stricter = monitor
        .care_plan()
        .rule(&RuleId::new("low"))
        .unwrap()
        .clone();
    let RuleKind::Threshold(threshold) = &mut stricter.kind else {
        panic!("low is a threshold");
    };
    threshold.value = 80.0;
    threshold.min_duration_secs = 0;
    let version = history
        .apply(CarePlanChange {
            author,
            at: at(16.0),
            reason: "recurrent nocturnal lows".into(),
            edit: RuleEdit::Replace { rule: stricter },
        })
        .unwrap();
    assert_eq!(version, 2);
    let signals = monitor
        .update_care_plan(history.current().clone(), at(16.0))
        .unwrap();
    assert_eq!(summary(&signals), [cleared("low")]);
    // Urgent low (unchanged) keeps its state; the edited rule starts afresh.
    let signals = glucose(&mut monitor, 20.0, 75.0);
    assert!(matches!(
        &signals[..],
        [AlarmSignal::Raise { rule_id, care_plan_version: 2, .. }] if rule_id.as_str() == "low"
    ));
}

#[test]
fn the_monitor_survives_a_restart_through_json_and_stays_bounded() {
    let mut live = diabetes_monitor();
    let values: Vec<f64> = (0..3_000)
        .map(|i| 110.0 + 70.0 * (f64::from(i) / 20.0).sin())
        .collect();
    let mut live_signals = Vec::new();
    let mut restarted_signals = Vec::new();
    let mut restarted = None;
    for (i, value) in values.iter().enumerate() {
        let minute = i as f64 * 5.0;
        live_signals.extend(glucose(&mut live, minute, *value));
        if i == 1_500 {
            let json = serde_json::to_string(&live).unwrap();
            assert!(json.len() < 10_000, "state grew to {} bytes", json.len());
            restarted = Some(serde_json::from_str::<PatientMonitor>(&json).unwrap());
        }
        if let Some(monitor) = restarted.as_mut() {
            restarted_signals.extend(glucose(monitor, minute, *value));
        }
    }
    let json = serde_json::to_string(&live).unwrap();
    assert!(json.len() < 10_000, "state grew to {} bytes", json.len());
    let after_restart = &live_signals[live_signals.len() - restarted_signals.len()..];
    assert_eq!(after_restart, &restarted_signals[..]);
    assert!(!restarted_signals.is_empty());
}
