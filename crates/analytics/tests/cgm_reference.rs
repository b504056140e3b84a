//! Consensus metrics against `shared/data/cgm/expected.csv` and the Dexcom
//! Clarity importer against its converted twin.

use crate::common;

use common::read_data;
use wardline_analytics::cgm::{
    ConsensusMetrics, FIVE_MINUTES, GlucoseSeries, consensus_metrics, format_timestamp,
    parse_common_csv, parse_dexcom_clarity,
};

/// One expected.csv row, as a header-name lookup.
struct Expected<'a> {
    header: &'a [&'a str],
    fields: Vec<&'a str>,
}

impl Expected<'_> {
    fn text(&self, column: &str) -> &str {
        let index = self
            .header
            .iter()
            .position(|h| *h == column)
            .unwrap_or_else(|| panic!("expected.csv has no column {column}"));
        self.fields[index]
    }

    fn number(&self, column: &str) -> f64 {
        let text = self.text(column);
        text.parse()
            .unwrap_or_else(|e| panic!("expected.csv {column} = {text}: {e}"))
    }
}

fn mismatches(m: &ConsensusMetrics, e: &Expected) -> Vec<String> {
    let mut bad = Vec::new();
    let mut check = |column: &str, actual: f64, tolerance: f64| {
        let expected = e.number(column);
        if (actual - expected).abs() > tolerance {
            bad.push(format!("{column}: expected {expected}, got {actual:.4}"));
        }
    };
    check("n_readings", m.n_readings as f64, 0.0);
    check("n_valid", m.n_valid as f64, 0.0);
    check("span_days", m.span_days, 0.001);
    check("mean_mg_dl", m.mean_mg_dl, 0.1);
    check("sd_mg_dl", m.sd_mg_dl.unwrap_or(f64::NAN), 0.1);
    check("sd_pop_mg_dl", m.sd_pop_mg_dl, 0.1);
    check("cv_pct", m.cv_pct.unwrap_or(f64::NAN), 0.1);
    check("cv_pop_pct", m.cv_pop_pct, 0.1);
    check("gmi_pct", m.gmi_pct, 0.01);
    check("min_mg_dl", m.min_mg_dl, 1e-9);
    check("max_mg_dl", m.max_mg_dl, 1e-9);
    for column in [
        "tir_70_180_pct",
        "tbr_lt70_pct",
        "tbr_lt54_pct",
        "tbr_54_69_pct",
        "tar_gt180_pct",
        "tar_gt250_pct",
        "tar_181_250_pct",
    ] {
        let actual = match column {
            "tir_70_180_pct" => m.tir_70_180_pct,
            "tbr_lt70_pct" => m.tbr_lt70_pct,
            "tbr_lt54_pct" => m.tbr_lt54_pct,
            "tbr_54_69_pct" => m.tbr_54_69_pct,
            "tar_gt180_pct" => m.tar_gt180_pct,
            "tar_gt250_pct" => m.tar_gt250_pct,
            _ => m.tar_181_250_pct,
        };
        check(column, actual, 0.1);
    }
    if format_timestamp(m.first) != e.text("first") || format_timestamp(m.last) != e.text("last") {
        bad.push(format!(
            "first/last: expected {}..{}, got {}..{}",
            e.text("first"),
            e.text("last"),
            format_timestamp(m.first),
            format_timestamp(m.last)
        ));
    }
    bad
}

#[test]
fn every_subject_matches_expected_csv() {
    let expected = read_data("cgm/expected.csv");
    let mut lines = expected.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut failures = Vec::new();
    let mut subjects = 0;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let row = Expected {
            header: &header,
            fields: line.split(',').collect(),
        };
        let file = row.text("file");
        let readings = parse_common_csv(&read_data(&format!("cgm/{file}")))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let metrics =
            consensus_metrics(&GlucoseSeries::new(readings).unwrap(), FIVE_MINUTES).unwrap();
        assert!(metrics.percent_time_active > 0.0 && metrics.percent_time_active <= 100.0);
        for problem in mismatches(&metrics, &row) {
            failures.push(format!("{file}: {problem}"));
        }
        subjects += 1;
    }
    assert_eq!(subjects, 70, "expected.csv should list 70 subjects");
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}

#[test]
fn clarity_import_equals_the_converted_sample() {
    let clarity = parse_dexcom_clarity(&read_data(
        "cgm/dexcom_g6_cgmquantify/dexcom_clarity_export_original.csv",
    ))
    .unwrap();
    let common =
        parse_common_csv(&read_data("cgm/dexcom_g6_cgmquantify/dexcom_g6_sample.csv")).unwrap();
    assert_eq!(clarity.len(), 2148);
    assert_eq!(clarity, common);
}

#[test]
fn episodes_and_agp_on_the_dexcom_sample_are_consistent() {
    use wardline_analytics::cgm::{ambulatory_glucose_profile, glucose_episodes};
    let readings =
        parse_common_csv(&read_data("cgm/dexcom_g6_cgmquantify/dexcom_g6_sample.csv")).unwrap();
    let series = GlucoseSeries::new(readings).unwrap();
    let report = glucose_episodes(&series, FIVE_MINUTES).unwrap();
    for episodes in [
        &report.hypo_level1,
        &report.hypo_level2,
        &report.hyper_level1,
        &report.hyper_level2,
    ] {
        for pair in episodes.windows(2) {
            assert!(pair[0].end <= pair[1].start, "episodes overlap: {pair:?}");
        }
        assert!(episodes.iter().all(|e| e.duration_secs >= 15 * 60));
    }
    // Every level 2 episode lies inside a level 1 episode of the same side.
    for inner in &report.hyper_level2 {
        assert!(
            report
                .hyper_level1
                .iter()
                .any(|outer| outer.start <= inner.start && inner.end <= outer.end + 900)
        );
    }
    let agp = ambulatory_glucose_profile(&series, 15).unwrap();
    assert_eq!(agp.bins.len(), 96);
    for bin in &agp.bins {
        let p = bin
            .percentiles
            .expect("7.9 days of data fill every 15-minute bin");
        assert!(p.windows(2).all(|w| w[0] <= w[1]), "{bin:?}");
    }
}
