//! Chunking must not change the beats: proptest over random chunk splits of
//! real and synthetic signals.

#![allow(clippy::unwrap_used)]

use crate::common;

use proptest::prelude::*;
use wardline_ecg::{DetectorConfig, QrsDetector, detect_all};

fn synthetic(fs: f64, seconds: f64) -> Vec<i32> {
    // Gaussian-ish spikes at a slightly varying rate on a wandering baseline.
    let n = (fs * seconds) as usize;
    let mut v = vec![0i32; n];
    let mut t = 0.3;
    let mut k = 0u32;
    while t < seconds {
        let c = (t * fs) as i64;
        for d in -30i64..=30 {
            let x = d as f64 / (0.012 * fs);
            if let Some(s) = usize::try_from(c + d).ok().filter(|&i| i < n) {
                v[s] += (900.0 * (-x * x).exp()) as i32;
            }
        }
        k += 1;
        t += 0.75 + 0.1 * f64::from(k % 3);
    }
    for (i, s) in v.iter_mut().enumerate() {
        *s += (80.0 * (i as f64 / fs * 0.3).sin()) as i32;
    }
    v
}

fn chunked(samples: &[i32], cfg: &DetectorConfig, cuts: &[usize]) -> Vec<u64> {
    let mut det = QrsDetector::new(cfg).unwrap();
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut i = 0usize;
    while pos < samples.len() {
        let len = cuts[i % cuts.len()].max(1);
        let end = (pos + len).min(samples.len());
        det.push_into(&samples[pos..end], &mut out);
        pos = end;
        i += 1;
    }
    out.extend(det.finish());
    out.iter().map(|b| b.sample).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn chunking_is_invisible_real_record(cuts in prop::collection::vec(1usize..5000, 1..40)) {
        let rec = common::load("203", "MLII");
        // Five minutes keep the test quick while covering AF, PVCs and noise.
        let s = &rec.signal[..108_000];
        let cfg = DetectorConfig::new(360.0);
        let whole: Vec<u64> = detect_all(s, &cfg).unwrap().iter().map(|b| b.sample).collect();
        prop_assert!(whole.len() > 300);
        prop_assert_eq!(chunked(s, &cfg, &cuts), whole);
    }

    #[test]
    fn chunking_is_invisible_any_rate(fs in 125u32..=1000, cuts in prop::collection::vec(1usize..700, 1..20)) {
        let fs = f64::from(fs);
        let s = synthetic(fs, 30.0);
        let cfg = DetectorConfig::new(fs);
        let whole: Vec<u64> = detect_all(&s, &cfg).unwrap().iter().map(|b| b.sample).collect();
        // 30 s at 0.75-0.95 s per beat: the detector should find nearly all.
        prop_assert!(whole.len() >= 30, "only {} beats at {} Hz", whole.len(), fs);
        prop_assert_eq!(chunked(&s, &cfg, &cuts), whole);
    }
}

#[test]
fn latency_is_bounded() {
    let rec = common::load("232", "MLII");
    let mut det = QrsDetector::new(&DetectorConfig::new(360.0)).unwrap();
    let bound = det.max_latency_samples();
    let mut beats = det.push(&rec.signal);
    beats.extend(det.finish());
    let learn_end = 2 * 360 + 2 * 360; // learning period plus its own bound
    for b in beats.iter().filter(|b| b.emitted > learn_end) {
        assert!(b.emitted - b.sample <= bound, "{b:?} exceeds {bound}");
    }
}

#[test]
fn rejects_unsupported_rates() {
    assert!(QrsDetector::new(&DetectorConfig::new(100.0)).is_err());
    assert!(QrsDetector::new(&DetectorConfig::new(2000.0)).is_err());
}
