//! `wardline validate ecg|cgm|forecast|news2`: the analytics libraries against the
//! shared real data, printing the tables that VALIDATION.md quotes. A missed target is
//! an error, so the command exits non-zero.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use wardline_analytics::cgm::{
    ConsensusMetrics, FIVE_MINUTES, GlucoseSeries, consensus_metrics, parse_common_csv,
};
use wardline_analytics::forecast::{
    ForecastEvaluation, MethodEvaluation, evaluate_first_day, evaluate_forecasts,
};
use wardline_analytics::news2::{
    ClinicalRisk, Consciousness, InspiredAir, News2, News2Observations, SpO2Scale, score_news2,
};

#[derive(Subcommand, Debug, Clone, Copy)]
pub enum ValidateCommand {
    /// Every ECG database under ecg/ (a folder with RECORDS or .hea files): beats
    /// (EC57), AF episodes and durations (EC57), CinC 2017 F1, each record from its
    /// signal where there is one, else from its reference beats; VT/VF per the AHA
    /// goals. Targets per database.
    Ecg {
        /// Seconds of signal per chunk fed to the streaming analysis (devices choose
        /// their chunk length; the streaming figures depend on it).
        #[arg(long, default_value_t = 10.0, value_parser = chunk_seconds)]
        chunk_seconds: f64,
    },
    /// Fits the R-R AF model on every ECG database with reference beats and prints it
    /// as the constant `crates/ecg/src/af.rs` holds, with each database held out.
    EcgTrainAf,
    /// CGM consensus metrics against cgm/expected.csv (0.1 percentage point, 0.1 mg/dL,
    /// 0.01 GMI point).
    Cgm,
    /// 30-minute glucose forecasts of every CGM subject, per dataset and each subject's
    /// first day apart: persistence, AR2 and Wardline's adaptive regression. Target: ours
    /// >= 10 % lower RMSE than AR2 in every group.
    Forecast,
    /// Fits the population prior of the adaptive regression on every CGM subject and
    /// prints it as the constant `crates/analytics/src/forecast/adaptive.rs` holds.
    ForecastPrior,
    /// NEWS2 on the worked examples of news2/examples.csv: every total, risk band and
    /// sub-score must match.
    News2,
}

/// The shared data folder: `--data`, else `$WARDLINE_SHARED_DATA`, else `../shared/data`.
pub fn data_dir(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = explicit
        .or_else(|| std::env::var_os("WARDLINE_SHARED_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("../shared/data"));
    if !dir.is_dir() {
        bail!(
            "the shared data folder {} does not exist; pass --data DIR or set WARDLINE_SHARED_DATA",
            dir.display()
        );
    }
    Ok(dir)
}

fn chunk_seconds(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if (0.1..=120.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(format!("{seconds} s is outside 0.1 to 120 s"))
    }
}

pub fn run(command: ValidateCommand, data: &Path) -> anyhow::Result<()> {
    match command {
        ValidateCommand::Ecg { chunk_seconds } => crate::validate_ecg::ecg(data, chunk_seconds),
        ValidateCommand::EcgTrainAf => crate::validate_ecg::ecg_train_af(data),
        ValidateCommand::Cgm => cgm(data),
        ValidateCommand::Forecast => forecast(data),
        ValidateCommand::ForecastPrior => forecast_prior(data),
        ValidateCommand::News2 => news2(data),
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

pub(crate) fn verdict(what: &str, missed: &[String]) -> anyhow::Result<()> {
    if missed.is_empty() {
        println!("{what}: every target met");
        Ok(())
    } else {
        bail!("{what}: target missed: {}", missed.join("; "))
    }
}

/// One row of a CSV with a header, looked up by column name.
struct Row<'a> {
    header: &'a [String],
    fields: Vec<String>,
}

impl Row<'_> {
    fn text(&self, column: &str) -> anyhow::Result<&str> {
        let index = self
            .header
            .iter()
            .position(|name| name == column)
            .with_context(|| format!("no column {column}"))?;
        self.fields
            .get(index)
            .map(String::as_str)
            .with_context(|| format!("row without column {column}"))
    }

    fn number(&self, column: &str) -> anyhow::Result<f64> {
        let text = self.text(column)?;
        text.parse()
            .with_context(|| format!("{column} = {text:?} is not a number"))
    }
}

/// Splits a CSV line, honouring double quotes (NEWS2 sources hold commas).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

fn csv_rows(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let header = lines.next().map(csv_fields).unwrap_or_default();
    (header, lines.map(csv_fields).collect())
}

/// The metrics checked against expected.csv and their tolerances.
fn cgm_checks(m: &ConsensusMetrics) -> Vec<(&'static str, f64, f64)> {
    vec![
        ("n_readings", m.n_readings as f64, 0.0),
        ("n_valid", m.n_valid as f64, 0.0),
        ("mean_mg_dl", m.mean_mg_dl, 0.1),
        ("sd_mg_dl", m.sd_mg_dl.unwrap_or(f64::NAN), 0.1),
        ("cv_pct", m.cv_pct.unwrap_or(f64::NAN), 0.1),
        ("gmi_pct", m.gmi_pct, 0.01),
        ("tir_70_180_pct", m.tir_70_180_pct, 0.1),
        ("tbr_lt70_pct", m.tbr_lt70_pct, 0.1),
        ("tbr_lt54_pct", m.tbr_lt54_pct, 0.1),
        ("tar_gt180_pct", m.tar_gt180_pct, 0.1),
        ("tar_gt250_pct", m.tar_gt250_pct, 0.1),
        ("min_mg_dl", m.min_mg_dl, 1e-9),
        ("max_mg_dl", m.max_mg_dl, 1e-9),
    ]
}

fn cgm(data: &Path) -> anyhow::Result<()> {
    let (header, rows) = csv_rows(&read(&data.join("cgm/expected.csv"))?);
    println!(
        "{:<44} {:>6} {:>8} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6}  result",
        "file", "n", "mean", "SD", "GMI", "TIR%", "TBR70%", "TBR54%", "TAR%"
    );
    let mut missed = Vec::new();
    let mut worst: Vec<(&'static str, f64)> = Vec::new();
    for fields in rows {
        let row = Row {
            header: &header,
            fields,
        };
        let file = row.text("file")?.to_owned();
        let readings = parse_common_csv(&read(&data.join("cgm").join(&file))?)
            .with_context(|| format!("cgm/{file}"))?;
        let series = GlucoseSeries::new(readings).with_context(|| format!("cgm/{file}"))?;
        let metrics =
            consensus_metrics(&series, FIVE_MINUTES).with_context(|| format!("cgm/{file}"))?;
        let mut mismatches = Vec::new();
        for (column, actual, tolerance) in cgm_checks(&metrics) {
            let expected = row.number(column)?;
            let difference = (actual - expected).abs();
            match worst.iter_mut().find(|(name, _)| *name == column) {
                Some((_, largest)) => *largest = largest.max(difference),
                None => worst.push((column, difference)),
            }
            // A NaN (a metric the library could not compute) is a mismatch too.
            if difference.is_nan() || difference > tolerance {
                mismatches.push(format!("{column} expected {expected} got {actual:.4}"));
            }
        }
        println!(
            "{:<44} {:>6} {:>8.2} {:>7.2} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>6.2}  {}",
            file,
            metrics.n_valid,
            metrics.mean_mg_dl,
            metrics.sd_mg_dl.unwrap_or(f64::NAN),
            metrics.gmi_pct,
            metrics.tir_70_180_pct,
            metrics.tbr_lt70_pct,
            metrics.tbr_lt54_pct,
            metrics.tar_gt180_pct,
            if mismatches.is_empty() {
                "ok"
            } else {
                "MISMATCH"
            }
        );
        missed.extend(mismatches.into_iter().map(|m| format!("{file}: {m}")));
    }
    println!("largest absolute difference from expected.csv per metric:");
    for (column, difference) in worst {
        println!("  {column:<16} {difference:.6}");
    }
    verdict("CGM", &missed)
}

fn method_row(name: &str, m: &MethodEvaluation) -> String {
    format!(
        "{name:<12} {:>7} {:>9.2} {:>9.2} {:>10} {:>9} {:>13.2}",
        m.n,
        m.rmse_30_mg_dl,
        m.mard_30_pct,
        m.low_sensitivity
            .map_or("n/a".to_owned(), |s| format!("{:.1}", 100.0 * s)),
        format!("{}/{}", m.lows_predicted, m.lows_ahead),
        m.false_alerts_per_day
    )
}

/// Every CGM subject of `cgm/expected.csv`, with its dataset.
fn cgm_subjects(data: &Path) -> anyhow::Result<Vec<(String, GlucoseSeries)>> {
    let (header, rows) = csv_rows(&read(&data.join("cgm/expected.csv"))?);
    let mut subjects = Vec::with_capacity(rows.len());
    for fields in rows {
        let row = Row {
            header: &header,
            fields,
        };
        let file = row.text("file")?;
        let readings = parse_common_csv(&read(&data.join("cgm").join(file))?)
            .with_context(|| format!("cgm/{file}"))?;
        let series = GlucoseSeries::new(readings).with_context(|| format!("cgm/{file}"))?;
        subjects.push((row.text("dataset")?.to_owned(), series));
    }
    Ok(subjects)
}

fn forecast_prior(data: &Path) -> anyhow::Result<()> {
    let series = cgm_subjects(data)?;
    let prior = wardline_analytics::forecast::fit_population_prior(&series);
    println!(
        "// Fitted by `wardline validate forecast-prior` on the {} CGM subjects of the shared data.",
        series.len()
    );
    println!("const POPULATION_PRIOR: Coefficients = [");
    for row in prior {
        let cells: Vec<String> = row.iter().map(|value| format!("{value:.6}")).collect();
        println!("    [{}],", cells.join(", "));
    }
    println!("];");
    Ok(())
}

/// The gain a forecaster must show over AR2 in 30-minute RMSE, in every group.
const FORECAST_GAIN_TARGET: f64 = 0.10;

fn forecast(data: &Path) -> anyhow::Result<()> {
    // Per dataset (the subjects' folder), whole records and their first day apart: a
    // forecaster that learns the patient must not fail before it has.
    let mut groups: std::collections::BTreeMap<
        String,
        (usize, ForecastEvaluation, ForecastEvaluation),
    > = std::collections::BTreeMap::new();
    let subjects = cgm_subjects(data)?;
    for (group, series) in &subjects {
        let entry = groups
            .entry(group.clone())
            .or_insert_with(|| (0, ForecastEvaluation::empty(), ForecastEvaluation::empty()));
        entry.0 += 1;
        entry.1 = entry.1.pool(&evaluate_forecasts(series));
        entry.2 = entry.2.pool(&evaluate_first_day(series));
    }
    let mut all = (0, ForecastEvaluation::empty(), ForecastEvaluation::empty());
    for (subjects, whole, first_day) in groups.values() {
        all.0 += subjects;
        all.1 = all.1.pool(whole);
        all.2 = all.2.pool(first_day);
    }
    let mut missed = Vec::new();
    println!(
        "30-minute forecasts of {} CGM subjects, per dataset: whole records, then each subject's first day",
        all.0
    );
    println!(
        "{:<34} {:<12} {:>7} {:>9} {:>9} {:>10} {:>9} {:>13}",
        "dataset", "method", "n", "RMSE30", "MARD30%", "low-sens%", "lows", "false/day"
    );
    let gross = ("all".to_owned(), all);
    for (group, (subjects, whole, first_day)) in
        groups.iter().chain(std::iter::once((&gross.0, &gross.1)))
    {
        for (part, evaluation) in [("", whole), (", first day", first_day)] {
            let label = format!("{group} ({subjects}){part}");
            for (name, method) in [
                ("persistence", &evaluation.persistence),
                ("AR2", &evaluation.ar2),
                ("ours", &evaluation.adaptive),
            ] {
                println!("{label:<34} {}", method_row(name, method));
            }
            let gain = 1.0 - evaluation.adaptive.rmse_30_mg_dl / evaluation.ar2.rmse_30_mg_dl;
            println!(
                "{label:<34} ours vs AR2: {:.1} % lower RMSE at 30 min (target >= {:.0} %)",
                100.0 * gain,
                100.0 * FORECAST_GAIN_TARGET
            );
            if gain.is_nan() || gain < FORECAST_GAIN_TARGET {
                missed.push(format!(
                    "{label}: ours is {:.1} % better than AR2, not {:.0} %",
                    100.0 * gain,
                    100.0 * FORECAST_GAIN_TARGET
                ));
            }
        }
    }
    held_out_prior(&subjects, &groups);
    verdict("forecast", &missed)
}

/// The shipped population prior was fitted on these very subjects. For an estimate of
/// how it does on people it has not seen, each dataset is evaluated again with a prior
/// fitted on the other datasets alone (information, not a target).
fn held_out_prior(
    subjects: &[(String, GlucoseSeries)],
    groups: &std::collections::BTreeMap<String, (usize, ForecastEvaluation, ForecastEvaluation)>,
) {
    println!();
    println!("held out: each dataset with a prior fitted on the other datasets only");
    for group in groups.keys() {
        let others: Vec<(String, GlucoseSeries)> = subjects
            .iter()
            .filter(|(other, _)| other != group)
            .cloned()
            .collect();
        let prior = wardline_analytics::forecast::fit_population_prior(&others);
        let (mut whole, mut first_day) = (ForecastEvaluation::empty(), ForecastEvaluation::empty());
        for (_, series) in subjects.iter().filter(|(other, _)| other == group) {
            let (all, first) = wardline_analytics::forecast::evaluate_with_prior(series, &prior);
            whole = whole.pool(&all);
            first_day = first_day.pool(&first);
        }
        for (part, evaluation) in [("", &whole), (", first day", &first_day)] {
            let gain = 1.0 - evaluation.adaptive.rmse_30_mg_dl / evaluation.ar2.rmse_30_mg_dl;
            println!(
                "{:<34} ours {:.2} mg/dL vs AR2 {:.2}: {:.1} % lower RMSE at 30 min",
                format!("{group}{part}"),
                evaluation.adaptive.rmse_30_mg_dl,
                evaluation.ar2.rmse_30_mg_dl,
                100.0 * gain
            );
        }
    }
}

fn consciousness(code: &str) -> anyhow::Result<Consciousness> {
    Ok(match code {
        "A" => Consciousness::Alert,
        "C" => Consciousness::NewConfusion,
        "V" => Consciousness::Voice,
        "P" => Consciousness::Pain,
        "U" => Consciousness::Unresponsive,
        other => bail!("unknown ACVPU code {other:?}"),
    })
}

fn risk_name(risk: ClinicalRisk) -> &'static str {
    match risk {
        ClinicalRisk::Low => "low",
        ClinicalRisk::LowMedium => "low-medium",
        ClinicalRisk::Medium => "medium",
        ClinicalRisk::High => "high",
    }
}

fn news2(data: &Path) -> anyhow::Result<()> {
    let (header, rows) = csv_rows(&read(&data.join("news2/examples.csv"))?);
    println!(
        "{:<22} {:>4} {:>5} {:>4} {:>4} {:>5} {:>4} {:>3} {:>5} | {:>8} {:>6} | {:>11} {:>11}  result",
        "case",
        "RR",
        "SpO2",
        "scl",
        "O2",
        "SBP",
        "HR",
        "C",
        "T",
        "expected",
        "got",
        "exp. risk",
        "risk"
    );
    let mut missed = Vec::new();
    for fields in rows {
        let row = Row {
            header: &header,
            fields,
        };
        let whole = |column: &str| -> anyhow::Result<u16> {
            let text = row.text(column)?;
            text.parse()
                .with_context(|| format!("{column} = {text:?} is not a whole number"))
        };
        let case = row.text("case_id")?.to_owned();
        let on_oxygen = row.text("on_oxygen")? == "true";
        let observations = News2Observations {
            respiration_rate: Some(whole("resp_rate")?),
            spo2_percent: Some(whole("spo2")?),
            spo2_scale: if row.text("spo2_scale")? == "2" {
                SpO2Scale::Scale2
            } else {
                SpO2Scale::Scale1
            },
            inspired_air: Some(if on_oxygen {
                InspiredAir::SupplementalOxygen
            } else {
                InspiredAir::Air
            }),
            systolic_bp_mmhg: Some(whole("systolic_bp")?),
            pulse_per_min: Some(whole("pulse")?),
            consciousness: Some(consciousness(row.text("consciousness")?)?),
            temperature_c: Some(row.number("temperature")?),
        };
        let expected_total = row.text("expected_score")?.to_owned();
        let expected_risk = row.text("expected_risk")?.to_owned();
        // Every sub-score and the "a parameter scored 3" flag must match too: a right
        // total can hide two wrong parameters that cancel out.
        let expected_parts = [
            ("sub_rr", "respiration rate"),
            ("sub_spo2", "SpO2"),
            ("sub_air_oxygen", "air or oxygen"),
            ("sub_sbp", "systolic BP"),
            ("sub_pulse", "pulse"),
            ("sub_consciousness", "consciousness"),
            ("sub_temp", "temperature"),
        ];
        let mut wrong_parts = Vec::new();
        let (total, risk) = match score_news2(&observations) {
            Ok(News2::Complete(score)) => {
                let parts = &score.sub_scores;
                let got = [
                    parts.respiration_rate,
                    parts.spo2,
                    parts.air_or_oxygen,
                    parts.systolic_bp,
                    parts.pulse,
                    parts.consciousness,
                    parts.temperature,
                ];
                for ((column, name), got) in expected_parts.iter().zip(got) {
                    let expected = row.text(column)?;
                    if expected != got.to_string() {
                        wrong_parts.push(format!("{name} {got}, expected {expected}"));
                    }
                }
                let expected_red = row.text("any_parameter_3")? == "true";
                if expected_red != score.any_parameter_3 {
                    wrong_parts.push(format!(
                        "a parameter scoring 3: {}, expected {expected_red}",
                        score.any_parameter_3
                    ));
                }
                (score.total.to_string(), risk_name(score.risk))
            }
            Ok(News2::Partial(_)) => ("partial".to_owned(), "-"),
            Err(error) => (format!("error: {error}"), "-"),
        };
        let ok = total == expected_total && risk == expected_risk && wrong_parts.is_empty();
        println!(
            "{:<22} {:>4} {:>5} {:>4} {:>4} {:>5} {:>4} {:>3} {:>5} | {:>8} {:>6} | {:>11} {:>11}  {}",
            case,
            row.text("resp_rate")?,
            row.text("spo2")?,
            row.text("spo2_scale")?,
            if on_oxygen { "yes" } else { "no" },
            row.text("systolic_bp")?,
            row.text("pulse")?,
            row.text("consciousness")?,
            row.text("temperature")?,
            expected_total,
            total,
            expected_risk,
            risk,
            if ok { "ok" } else { "MISMATCH" }
        );
        if !ok {
            let parts = if wrong_parts.is_empty() {
                String::new()
            } else {
                format!("; {}", wrong_parts.join(", "))
            };
            missed.push(format!(
                "{case}: expected {expected_total} {expected_risk}, got {total} {risk}{parts}"
            ));
        }
    }
    verdict("NEWS2", &missed)
}
