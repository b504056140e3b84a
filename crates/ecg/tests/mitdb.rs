//! Validation over the shared MIT-BIH records (MLII lead). Fails when the
//! data folder is missing or any target is missed.

#![allow(clippy::unwrap_used)]

use crate::common;

use wardline_ecg::validate::{AfScore, BeatScore, format_table, validate_record};

#[test]
fn mitdb_targets() {
    let mut results = Vec::new();
    for r in common::RECORDS {
        let rec = common::load(r, "MLII");
        let idx = rec.header.find_signal("MLII").unwrap();
        let gain = rec.header.signals[idx].gain;
        let res = validate_record(
            r,
            "MLII",
            &rec.signal,
            rec.header.sampling_rate,
            gain,
            &rec.annotations,
        )
        .unwrap();
        results.push(res);
    }
    println!("{}", format_table(&results));
    let b = results
        .iter()
        .fold(BeatScore::default(), |a, r| a.add(&r.beats));
    let af = results.iter().fold(AfScore::default(), |a, r| a.add(&r.af));
    assert!(
        b.sensitivity() >= 99.7,
        "gross Se {:.3} % < 99.7 %",
        b.sensitivity()
    );
    assert!(
        b.positive_predictivity() >= 99.7,
        "gross +P {:.3} % < 99.7 %",
        b.positive_predictivity()
    );
    assert!(
        af.sensitivity() >= 90.0,
        "AF window Se {:.2} % < 90 %",
        af.sensitivity()
    );
    assert!(
        af.specificity() >= 95.0,
        "AF window Sp {:.2} % < 95 %",
        af.specificity()
    );
}
