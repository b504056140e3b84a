//! Runs the standard ward for a number of simulated hours at full speed and prints a
//! summary per device: `cargo run -p wardline-sim --release --example ward_summary -- 72 [seed]`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use wardline_sim::Ward;

fn main() {
    let mut args = std::env::args().skip(1);
    let hours: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(24);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(42);
    let start = DateTime::parse_from_rfc3339("2026-03-02T06:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default();
    let mut ward = Ward::standard(seed, start);
    for device in ward.devices() {
        println!(
            "{:<14} {:<20} patient {:<6} {}",
            device.key,
            device.kind.as_str(),
            device.patient_key,
            device.program
        );
    }
    // code -> per-hour (min, max, last)
    let mut series: BTreeMap<(String, String), Vec<(i64, f64)>> = BTreeMap::new();
    let mut messages: BTreeMap<String, usize> = BTreeMap::new();
    let mut bytes = 0usize;
    for hour in 1..=hours {
        for e in ward.advance_to(start + Duration::hours(hour)) {
            *messages.entry(e.device_key.clone()).or_default() += 1;
            bytes += e.payload_bytes.len();
            let Ok(v) = serde_json::from_slice::<Value>(&e.payload_bytes) else {
                continue;
            };
            let readings = match v.get("readings") {
                Some(Value::Array(items)) => items.clone(),
                _ if v.get("code").is_some() => vec![v.clone()],
                _ => Vec::new(),
            };
            for r in readings {
                let code = r["code"].as_str().unwrap_or_default().to_owned();
                let value = r["value"].as_f64().unwrap_or(f64::NAN);
                series
                    .entry((e.device_key.clone(), code))
                    .or_default()
                    .push((hour - 1, value));
            }
        }
    }
    println!(
        "{bytes} bytes in {} messages",
        messages.values().sum::<usize>()
    );
    for ((device, code), values) in &series {
        let min = values.iter().map(|v| v.1).fold(f64::MAX, f64::min);
        let max = values.iter().map(|v| v.1).fold(f64::MIN, f64::max);
        println!("{device} {code}: n={} min={min} max={max}", values.len());
        let mut line = String::new();
        for hour in 0..hours {
            let in_hour: Vec<f64> = values.iter().filter(|v| v.0 == hour).map(|v| v.1).collect();
            if in_hour.is_empty() {
                line.push_str("   . ");
            } else {
                let mean = in_hour.iter().sum::<f64>() / in_hour.len() as f64;
                line.push_str(&format!("{mean:>5.0}"));
            }
            if hour % 24 == 23 {
                line.push('\n');
            }
        }
        println!("{line}");
    }
}
