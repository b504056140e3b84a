//! Alarm burden of the diabetes care plan against naive thresholds, over every CGM
//! subject in `shared/data/cgm`. Fails if the plan misses a level 2 hypoglycaemia
//! episode that the naive rule caught, or if it does not reduce the alarm burden.
//!
//! Run with `cargo test -p wardline-alerting --test alerting cgm_alarm_burden -- --nocapture`
//! to see the table.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::DateTime;
use wardline_alerting::burden::{BurdenReport, replay_cgm};
use wardline_alerting::{CarePlan, PatientBaseline, Program};
use wardline_analytics::cgm::{GlucoseSeries, format_timestamp, parse_common_csv};
use wardline_domain::PatientId;

/// `$WARDLINE_SHARED_DATA`, else `<crate>/../../../shared/data`; a missing folder fails.
fn data_dir() -> PathBuf {
    let dir = std::env::var_os("WARDLINE_SHARED_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    );
    match std::fs::metadata(dir.join("cgm")) {
        Ok(m) if m.is_dir() => dir,
        _ => panic!(
            "shared test data not found: looked for the folder {}. \
             Set WARDLINE_SHARED_DATA to the `shared/data` folder (the one holding cgm/).",
            dir.join("cgm").display()
        ),
    }
}

/// The subject files: every `*.csv` in the dataset folders in the common
/// `timestamp,glucose_mg_dl` layout (covariates and the raw Clarity export are not).
fn subject_files(cgm: &std::path::Path) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    let mut datasets: Vec<_> = std::fs::read_dir(cgm)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    datasets.sort();
    for dataset in datasets {
        let name = dataset.file_name().unwrap().to_string_lossy().into_owned();
        let mut paths: Vec<_> = std::fs::read_dir(&dataset)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "csv"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap();
            if text
                .trim_start_matches('\u{feff}')
                .starts_with("timestamp,glucose_mg_dl")
            {
                files.push((name.clone(), path));
            }
        }
    }
    files
}

#[derive(Default)]
struct Totals {
    subjects: usize,
    days: f64,
    naive: usize,
    care_plan: usize,
    technical: usize,
    episodes: usize,
    caught_by_naive: usize,
    missed: usize,
}

impl Totals {
    fn add(&mut self, r: &BurdenReport) {
        self.subjects += 1;
        self.days += r.monitored_days;
        self.naive += r.naive_alarms;
        self.care_plan += r.care_plan_alarms;
        self.technical += r.care_plan_technical_alarms;
        self.episodes += r.level2_episodes;
        self.caught_by_naive += r.level2_caught_by_naive;
        self.missed += r.level2_missed.len();
    }

    fn row(&self, name: &str) -> String {
        format!(
            "| {name} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.0} % | {} | {} | {} |",
            self.subjects,
            self.days,
            self.naive as f64 / self.days,
            self.care_plan as f64 / self.days,
            self.technical as f64 / self.days,
            100.0 * (1.0 - self.care_plan as f64 / self.naive.max(1) as f64),
            self.episodes,
            self.caught_by_naive,
            self.missed,
        )
    }
}

#[test]
fn care_plan_reduces_alarm_burden_without_missing_level_2_hypoglycaemia() {
    let cgm = data_dir().join("cgm");
    let files = subject_files(&cgm);
    assert_eq!(
        files.len(),
        70,
        "expected the 70 subject files of {} (see its README)",
        cgm.display()
    );
    let mut datasets: BTreeMap<String, Totals> = BTreeMap::new();
    let mut all = Totals::default();
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (dataset, path) in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let series = GlucoseSeries::new(parse_common_csv(&text).unwrap()).unwrap();
        let start = series
            .valid()
            .next()
            .and_then(|(t, _)| DateTime::from_timestamp(t, 0))
            .unwrap();
        let plan = CarePlan::from_program(
            PatientId::random(),
            Program::Diabetes,
            &PatientBaseline::default(),
            start,
        );
        let report = replay_cgm(&series, &plan).unwrap();
        for missed in &report.level2_missed {
            failures.push(format!(
                "{}: level 2 episode {}..{} (lowest {} mg/dL) caught by the naive rule, missed by the care plan",
                path.display(),
                format_timestamp(missed.start),
                format_timestamp(missed.end),
                missed.lowest_mg_dl
            ));
        }
        for (rule, count) in &report.by_rule {
            *by_rule.entry(rule.to_string()).or_default() += count;
        }
        datasets.entry(dataset.clone()).or_default().add(&report);
        all.add(&report);
    }

    println!(
        "\n| dataset | subjects | patient-days | naive alarms/day | care plan alarms/day | technical/day | reduction | L2 episodes | caught by naive | missed by plan |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, totals) in &datasets {
        println!("{}", totals.row(name));
    }
    println!("{}", all.row("all"));
    println!("\ncare plan raises by rule: {by_rule:?}");

    for (name, totals) in datasets.iter().chain([(&"all".to_owned(), &all)]) {
        if totals.naive > 0 && totals.care_plan >= totals.naive {
            failures.push(format!(
                "{name}: the care plan raised {} physiological alarms, the naive rule {}: no reduction",
                totals.care_plan, totals.naive
            ));
        }
    }
    assert!(
        all.episodes > 0,
        "no level 2 episode in the data: the check proves nothing"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
