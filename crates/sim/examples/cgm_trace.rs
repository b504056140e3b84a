//! Prints a CGM trace, one line per hour of 12 readings: `cargo run -p wardline-sim --example cgm_trace -- 72 [seed] [carb_ratio]`.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use wardline_sim::{DiabetesConfig, DiabetesScenario, Scenario};

fn main() {
    let mut args = std::env::args().skip(1);
    let hours: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(72);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(42);
    let mut config = DiabetesConfig::default();
    if let Some(ratio) = args.next().and_then(|a| a.parse().ok()) {
        config.carb_ratio_g_per_unit = ratio;
    }
    let start = DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default();
    let patient = DiabetesScenario::standard_patient("ada", "Ada");
    let mut scenario = DiabetesScenario::new(patient, "cgm-ada", config, seed, start);
    println!("basal {:.2} U/h", scenario.basal_units_per_hour());
    let mut all = Vec::new();
    for hour in 1..=hours {
        let mut line = Vec::new();
        for e in scenario.advance_to(start + Duration::hours(hour)) {
            let v: Value = serde_json::from_slice(&e.payload_bytes).unwrap_or_default();
            let readings = match v.get("readings") {
                Some(Value::Array(items)) => items.clone(),
                _ => vec![v],
            };
            for r in readings {
                let value = r["value"].as_f64().unwrap_or_default();
                line.push(format!("{value:>4}"));
                all.push(value);
            }
        }
        println!("{:02}h {}", (hour - 1) % 24, line.join(""));
    }
    let n = all.len() as f64;
    let mean = all.iter().sum::<f64>() / n;
    let tir = all.iter().filter(|v| (70.0..=180.0).contains(*v)).count() as f64 / n;
    let below = all.iter().filter(|v| **v < 70.0).count() as f64 / n;
    let above = all.iter().filter(|v| **v > 250.0).count() as f64 / n;
    println!(
        "mean {mean:.0} TIR {:.0}% <70 {:.1}% >250 {:.1}%",
        tir * 100.0,
        below * 100.0,
        above * 100.0
    );
}
