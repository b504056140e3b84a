//! 30-minute forecast accuracy over every shared CGM subject.
//!
//! Run with `-- --nocapture` to see the per-subject table.

use crate::common;

use common::read_data;
use wardline_analytics::cgm::{GlucoseSeries, parse_common_csv};
use wardline_analytics::forecast::{ForecastEvaluation, MethodEvaluation, evaluate_forecasts};

fn subject_files() -> Vec<String> {
    read_data("cgm/expected.csv")
        .lines()
        .skip(1)
        .filter_map(|line| line.split(',').nth(2).map(str::to_owned))
        .collect()
}

fn summary(name: &str, m: &MethodEvaluation) -> String {
    format!(
        "{name:<12} n={:>6} RMSE30={:>6.2} MARD30={:>5.2}% low-sens={} ({}/{}) false-alerts/day={:.2}",
        m.n,
        m.rmse_30_mg_dl,
        m.mard_30_pct,
        m.low_sensitivity
            .map_or("n/a".to_owned(), |s| format!("{:.1}%", 100.0 * s)),
        m.lows_predicted,
        m.lows_ahead,
        m.false_alerts_per_day
    )
}

#[test]
fn adaptive_regression_beats_ar2_by_ten_percent() {
    let mut pooled = ForecastEvaluation::empty();
    let mut hall = ForecastEvaluation::empty();
    let mut others = ForecastEvaluation::empty();
    println!(
        "{:<34} {:>6} {:>8} {:>8} {:>8}",
        "subject", "n", "persist", "ar2", "ours"
    );
    for file in subject_files() {
        let readings = parse_common_csv(&read_data(&format!("cgm/{file}"))).unwrap();
        let evaluation = evaluate_forecasts(&GlucoseSeries::new(readings).unwrap());
        println!(
            "{file:<34} {:>6} {:>8.2} {:>8.2} {:>8.2}",
            evaluation.ar2.n,
            evaluation.persistence.rmse_30_mg_dl,
            evaluation.ar2.rmse_30_mg_dl,
            evaluation.adaptive.rmse_30_mg_dl
        );
        pooled = pooled.pool(&evaluation);
        if file.starts_with("hall2018/") {
            hall = hall.pool(&evaluation);
        } else {
            others = others.pool(&evaluation);
        }
    }
    for (label, e) in [("ALL", &pooled), ("hall2018", &hall), ("non-Hall", &others)] {
        println!("== {label}");
        println!("{}", summary("persistence", &e.persistence));
        println!("{}", summary("ar2", &e.ar2));
        println!("{}", summary("ours", &e.adaptive));
    }
    let gain = 1.0 - pooled.adaptive.rmse_30_mg_dl / pooled.ar2.rmse_30_mg_dl;
    println!(
        "ours vs AR2: {:.1}% lower pooled RMSE at 30 min",
        100.0 * gain
    );
    assert!(
        gain >= 0.10,
        "adaptive regression must beat AR2 by >= 10% pooled RMSE at 30 min: ours {:.2}, AR2 {:.2} ({:.1}%)",
        pooled.adaptive.rmse_30_mg_dl,
        pooled.ar2.rmse_30_mg_dl,
        100.0 * gain
    );
}
