//! Ventricular tachyarrhythmia on real records: called in the ventricular flutter of
//! MIT-BIH record 207 and the fibrillation of the Malignant Ventricular Ectopy
//! Database's record 418, and nowhere in a record of normal sinus rhythm.

#![allow(clippy::unwrap_used)]

use wardline_ecg::wfdb::{Header, decode_signal, parse_annotations, rhythm_spans};
use wardline_ecg::{RhythmKind, analyze};

use crate::common;

/// Seconds of `label` in the record and seconds of it inside VT/VF calls, and the
/// seconds called outside any ventricular rhythm label.
fn called(folder: &str, record: &str, labels: &[&str]) -> (f64, f64, f64) {
    let dir = common::data_dir().join("ecg").join(folder);
    let header =
        Header::parse(&std::fs::read_to_string(dir.join(format!("{record}.hea"))).unwrap())
            .unwrap();
    let lead = header.find_signal("MLII").unwrap_or(0);
    let bytes = std::fs::read(dir.join(&header.signals[lead].file)).unwrap();
    let samples = decode_signal(&header, &bytes, lead).unwrap();
    let fs = header.sampling_rate;
    let analysis = analyze(&samples, fs, header.signals[lead].gain).unwrap();
    let calls: Vec<(u64, u64)> = analysis
        .events
        .iter()
        .filter(|e| e.kind == RhythmKind::VentricularTachyarrhythmia)
        .map(|e| (e.onset, e.end))
        .collect();
    let annotations =
        parse_annotations(&std::fs::read(dir.join(format!("{record}.atr"))).unwrap()).unwrap();
    let spans = rhythm_spans(&annotations, samples.len() as i64);
    let overlap = |a: u64, b: u64| -> u64 {
        calls
            .iter()
            .map(|&(c, d)| d.min(b).saturating_sub(c.max(a)))
            .sum()
    };
    let (mut reference, mut inside, mut ventricular_total) = (0u64, 0u64, 0u64);
    for s in &spans {
        let (a, b) = (s.start as u64, s.end as u64);
        if labels.contains(&s.label.as_str()) {
            reference += b - a;
            inside += overlap(a, b);
        }
        if matches!(s.label.as_str(), "(VT" | "(VF" | "(VFL" | "(VFIB") {
            ventricular_total += overlap(a, b);
        }
    }
    let all: u64 = calls.iter().map(|&(a, b)| b - a).sum();
    (
        reference as f64 / fs,
        inside as f64 / fs,
        (all - ventricular_total) as f64 / fs,
    )
}

#[test]
fn ventricular_flutter_and_fibrillation_are_called_and_sinus_rhythm_is_not() {
    let (flutter, called_flutter, _) = called("mitdb-more", "207", &["(VFL"]);
    assert!(flutter > 100.0, "record 207 holds {flutter} s of flutter");
    assert!(
        called_flutter >= 0.8 * flutter,
        "{called_flutter} of {flutter} s of ventricular flutter called"
    );
    let (fibrillation, called_fibrillation, _) = called("vfdb", "418", &["(VF", "(VFL"]);
    assert!(
        called_fibrillation >= 0.8 * fibrillation,
        "{called_fibrillation} of {fibrillation} s of fibrillation called"
    );
    let (sinus, _, false_calls) = called("mitdb", "100", &["(N"]);
    assert!(sinus > 1500.0);
    assert_eq!(
        false_calls, 0.0,
        "VT/VF called in record 100's sinus rhythm"
    );
}
