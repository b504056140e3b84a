#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use chrono::Duration;
use wardline_domain::DeviceMessage;
use wardline_ecg::RhythmKind;
use wardline_sim::{CardiacScenario, Scenario, SyntheticEcgConfig};

use support::{parse_all, readings_of, start};

/// The synthetic patch's AF episodes are what Wardline's own ECG analysis finds.
#[test]
fn wardline_ecg_finds_the_synthetic_af_episodes() {
    let patient = CardiacScenario::standard_patient("ben", "Ben");
    let mut scenario = CardiacScenario::synthetic(
        patient,
        "ecg-ben",
        SyntheticEcgConfig::default(),
        21,
        start(),
    );
    let parsed = parse_all(&scenario.advance_to(start() + Duration::minutes(90)));
    let mut samples = Vec::new();
    for (_, _, message) in &parsed {
        if let DeviceMessage::Waveform(chunk) = message {
            assert_eq!(chunk.sampling_rate_hz, 250.0);
            samples.extend_from_slice(&chunk.samples);
        }
    }
    assert_eq!(samples.len(), 90 * 60 * 250);
    let truth: Vec<(u64, u64)> = scenario
        .af_episodes()
        .iter()
        .map(|(onset, end)| {
            let at = |t: chrono::DateTime<chrono::Utc>| {
                ((t - start()).num_milliseconds() as u64 * 250 / 1000).min(samples.len() as u64)
            };
            (at(*onset), at(*end))
        })
        .collect();
    assert!(!truth.is_empty(), "no AF episode in 90 min");
    let analysis = wardline_ecg::analyze(&samples, 250.0, 400.0).unwrap();
    let detected: Vec<(u64, u64)> = analysis
        .events
        .iter()
        .filter(|e| e.kind == RhythmKind::AtrialFibrillation)
        .map(|e| (e.onset, e.end))
        .collect();
    let overlap = |a: &[(u64, u64)], b: &[(u64, u64)]| -> u64 {
        a.iter()
            .flat_map(|x| b.iter().map(move |y| (x, y)))
            .map(|(x, y)| x.1.min(y.1).saturating_sub(x.0.max(y.0)))
            .sum()
    };
    let total = |a: &[(u64, u64)]| a.iter().map(|x| x.1 - x.0).sum::<u64>();
    let sensitivity = overlap(&truth, &detected) as f64 / total(&truth) as f64;
    let false_af = (total(&detected) - overlap(&truth, &detected)) as f64
        / (samples.len() as u64 - total(&truth)) as f64;
    assert!(
        sensitivity > 0.7,
        "AF found in {sensitivity:.2} of true AF; truth {truth:?} detected {detected:?}"
    );
    assert!(
        false_af < 0.1,
        "AF called in {false_af:.2} of sinus rhythm; truth {truth:?} detected {detected:?}"
    );
    // Beat detection agrees with the patch's own per-minute heart rate.
    let rates = readings_of(&parsed, "ecg-ben");
    assert_eq!(rates.len(), 90);
    let detected_rate = analysis.beats.len() as f64 / 90.0;
    let mean_rate = rates.iter().map(|r| r.value).sum::<f64>() / 90.0;
    assert!(
        (detected_rate - mean_rate).abs() < 3.0,
        "{detected_rate} vs {mean_rate}"
    );
}
