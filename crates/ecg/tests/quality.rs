//! Flat line, lead-off and heavy noise give "poor signal", not arrhythmias.

#![allow(clippy::unwrap_used)]

use wardline_ecg::{RhythmKind, analyze};

const FS: f64 = 250.0;
const GAIN: f64 = 200.0;

fn ecg_like(seconds: f64) -> Vec<i32> {
    let n = (FS * seconds) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / FS;
            let ph = (t % 0.8) - 0.4;
            let qrs = 220.0 * (-(ph / 0.012).powi(2)).exp();
            let tw = 40.0 * (-((ph - 0.25) / 0.05).powi(2)).exp();
            (qrs + tw) as i32
        })
        .collect()
}

fn noise(n: usize, amp: f64, seed: u64) -> Vec<i32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (((x >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 2.0 * amp) as i32
        })
        .collect()
}

fn kinds(samples: &[i32]) -> Vec<RhythmKind> {
    analyze(samples, FS, GAIN)
        .unwrap()
        .events
        .iter()
        .map(|e| e.kind)
        .collect()
}

#[test]
fn clean_signal_has_no_events() {
    assert!(kinds(&ecg_like(120.0)).is_empty());
}

#[test]
fn flat_line_is_poor_signal_not_asystole() {
    let mut s = ecg_like(60.0);
    s.extend(std::iter::repeat_n(0, (FS * 30.0) as usize));
    s.extend(ecg_like(60.0));
    let k = kinds(&s);
    assert!(k.contains(&RhythmKind::PoorSignal), "{k:?}");
    assert!(!k.contains(&RhythmKind::Pause), "{k:?}");
}

#[test]
fn lead_off_at_rail_is_poor_signal() {
    let mut s = ecg_like(60.0);
    s.extend(std::iter::repeat_n(2047, (FS * 20.0) as usize));
    let k = kinds(&s);
    assert!(k.contains(&RhythmKind::PoorSignal), "{k:?}");
    assert!(!k.contains(&RhythmKind::Pause), "{k:?}");
}

#[test]
fn heavy_noise_is_poor_signal_not_af_or_tachycardia() {
    let mut s = ecg_like(60.0);
    s.extend(noise((FS * 120.0) as usize, 300.0, 7));
    s.extend(ecg_like(60.0));
    let k = kinds(&s);
    assert!(k.contains(&RhythmKind::PoorSignal), "{k:?}");
    for bad in [
        RhythmKind::AtrialFibrillation,
        RhythmKind::Tachycardia,
        RhythmKind::Pause,
    ] {
        assert!(!k.contains(&bad), "{k:?}");
    }
}
