//! Every worked example of `shared/data/news2/examples.csv`.

use crate::common;

use common::read_data;
use wardline_analytics::news2::{
    ClinicalRisk, Consciousness, InspiredAir, News2, News2Observations, SpO2Scale, score_news2,
};

fn consciousness(code: &str) -> Consciousness {
    match code {
        "A" => Consciousness::Alert,
        "C" => Consciousness::NewConfusion,
        "V" => Consciousness::Voice,
        "P" => Consciousness::Pain,
        "U" => Consciousness::Unresponsive,
        other => panic!("unknown ACVPU code {other}"),
    }
}

fn risk(text: &str) -> ClinicalRisk {
    match text {
        "low" => ClinicalRisk::Low,
        "low-medium" => ClinicalRisk::LowMedium,
        "medium" => ClinicalRisk::Medium,
        "high" => ClinicalRisk::High,
        other => panic!("unknown risk {other}"),
    }
}

/// Splits a CSV line honouring double quotes (the `source` column has commas).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    out.push(field);
    out
}

#[test]
fn every_example_scores_as_published() {
    let text = read_data("news2/examples.csv");
    let mut lines = text.lines();
    let header = fields(lines.next().unwrap());
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let mut checked = 0;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f = fields(line);
        let get = |name: &str| f[column(name)].as_str();
        let observations = News2Observations {
            respiration_rate: Some(get("resp_rate").parse().unwrap()),
            spo2_percent: Some(get("spo2").parse().unwrap()),
            spo2_scale: if get("spo2_scale") == "2" {
                SpO2Scale::Scale2
            } else {
                SpO2Scale::Scale1
            },
            inspired_air: Some(if get("on_oxygen") == "true" {
                InspiredAir::SupplementalOxygen
            } else {
                InspiredAir::Air
            }),
            systolic_bp_mmhg: Some(get("systolic_bp").parse().unwrap()),
            pulse_per_min: Some(get("pulse").parse().unwrap()),
            consciousness: Some(consciousness(get("consciousness"))),
            temperature_c: Some(get("temperature").parse().unwrap()),
        };
        let case = get("case_id");
        let News2::Complete(score) = score_news2(&observations).unwrap() else {
            panic!("{case}: a full observation set must give a complete score");
        };
        let s = score.sub_scores;
        let subs = [
            ("sub_rr", s.respiration_rate),
            ("sub_spo2", s.spo2),
            ("sub_air_oxygen", s.air_or_oxygen),
            ("sub_sbp", s.systolic_bp),
            ("sub_pulse", s.pulse),
            ("sub_consciousness", s.consciousness),
            ("sub_temp", s.temperature),
        ];
        for (name, value) in subs {
            assert_eq!(value.to_string(), get(name), "{case}: {name}");
        }
        assert_eq!(
            score.total.to_string(),
            get("expected_score"),
            "{case}: total"
        );
        assert_eq!(score.risk, risk(get("expected_risk")), "{case}: risk");
        assert_eq!(
            score.any_parameter_3.to_string(),
            get("any_parameter_3"),
            "{case}: red flag"
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} examples read");
}
