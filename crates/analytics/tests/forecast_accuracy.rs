//! 30-minute forecast accuracy over every shared CGM subject.
//!
//! Run with `-- --nocapture` to see the per-subject table.

use crate::common;

use common::read_data;
use wardline_analytics::cgm::{GlucoseSeries, parse_common_csv};
use wardline_analytics::forecast::{
    ForecastEvaluation, MethodEvaluation, evaluate_first_day, evaluate_forecasts,
    fit_population_prior, population_prior,
};

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

/// Every subject with its dataset (the folder of its file).
fn subjects() -> Vec<(String, GlucoseSeries)> {
    subject_files()
        .into_iter()
        .map(|file| {
            let readings =
                parse_common_csv(&read_data(&format!("cgm/{file}"))).expect("a CGM file");
            let dataset = file.split('/').next().unwrap_or_default().to_owned();
            (dataset, GlucoseSeries::new(readings).expect("a CGM series"))
        })
        .collect()
}

#[test]
fn the_shipped_population_prior_is_what_the_shared_data_gives() {
    let fitted = fit_population_prior(&subjects());
    for (shipped, fitted) in population_prior().iter().zip(&fitted) {
        for (shipped, fitted) in shipped.iter().zip(fitted) {
            assert!(
                (shipped - fitted).abs() < 1e-5,
                "shipped {shipped}, fitted {fitted}: run `wardline validate forecast-prior` and paste its table"
            );
        }
    }
}

#[test]
fn a_new_patients_first_day_is_forecast_no_worse_than_ar2_in_any_dataset() {
    let mut groups: std::collections::BTreeMap<String, ForecastEvaluation> =
        std::collections::BTreeMap::new();
    for (dataset, series) in subjects() {
        let first_day = evaluate_first_day(&series);
        let pooled = groups
            .entry(dataset)
            .or_insert_with(ForecastEvaluation::empty);
        *pooled = pooled.pool(&first_day);
    }
    for (dataset, evaluation) in &groups {
        println!(
            "{dataset}: ours {:.2}, AR2 {:.2}",
            evaluation.adaptive.rmse_30_mg_dl, evaluation.ar2.rmse_30_mg_dl
        );
        assert!(
            evaluation.adaptive.rmse_30_mg_dl <= evaluation.ar2.rmse_30_mg_dl,
            "{dataset}, first day: ours {:.2} mg/dL against AR2 {:.2}",
            evaluation.adaptive.rmse_30_mg_dl,
            evaluation.ar2.rmse_30_mg_dl
        );
    }
}
