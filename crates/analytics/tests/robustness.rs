//! Inputs from outside never panic the analytics.

use proptest::prelude::*;
use wardline_analytics::cgm::{GlucoseSeries, parse_common_csv, parse_dexcom_clarity};
use wardline_analytics::forecast::{ForecastMethod, Forecaster, evaluate_forecasts};
use wardline_analytics::news2::{News2Observations, SpO2Scale, score_news2};

proptest! {
    #[test]
    fn parsers_return_errors_not_panics(text in ".{0,400}") {
        let _ = parse_common_csv(&text);
        let _ = parse_dexcom_clarity(&text);
        let _ = parse_common_csv(&format!("timestamp,glucose_mg_dl\n{text}"));
    }

    #[test]
    fn news2_accepts_or_rejects_any_numbers(
        rr in proptest::option::of(any::<u16>()),
        spo2 in proptest::option::of(any::<u16>()),
        sbp in proptest::option::of(any::<u16>()),
        pulse in proptest::option::of(any::<u16>()),
        temp in proptest::option::of(any::<f64>()),
        scale2 in any::<bool>(),
    ) {
        let observations = News2Observations {
            respiration_rate: rr,
            spo2_percent: spo2,
            spo2_scale: if scale2 { SpO2Scale::Scale2 } else { SpO2Scale::Scale1 },
            systolic_bp_mmhg: sbp,
            pulse_per_min: pulse,
            temperature_c: temp,
            ..News2Observations::default()
        };
        let _ = score_news2(&observations);
    }

    #[test]
    fn forecasters_survive_arbitrary_streams(
        steps in proptest::collection::vec((0i64..2000, 1.0f64..600.0), 0..200)
    ) {
        let mut forecaster = Forecaster::new(ForecastMethod::AdaptiveRegression);
        let mut t = 0;
        let mut readings = Vec::new();
        for (dt, g) in steps {
            t += dt;
            let _ = forecaster.push(t, g);
            if let Some(f) = forecaster.forecast() {
                prop_assert!(f.points_mg_dl.iter().all(|p| p.is_finite()));
            }
            readings.push(wardline_analytics::cgm::GlucoseReading::new(t, g));
        }
        if let Ok(series) = GlucoseSeries::new(readings) {
            let _ = evaluate_forecasts(&series);
        }
    }
}

#[test]
fn extreme_timestamps_are_rejected_not_overflowed() {
    use wardline_analytics::cgm::GlucoseReading;
    assert!(GlucoseSeries::new(vec![GlucoseReading::new(i64::MAX, 100.0)]).is_err());
    assert!(GlucoseSeries::new(vec![GlucoseReading::new(0, f64::INFINITY)]).is_err());
    let mut forecaster = Forecaster::new(ForecastMethod::Ar2);
    assert!(forecaster.push(i64::MIN, 100.0).is_err());
    forecaster.push(0, 100.0).unwrap();
    assert!(forecaster.push(i64::MAX, 100.0).is_err());
}
