//! The rule set on its own, the codes, the JSON shape, and another rule set.

use wardline_ledger::CptCode::{Cpt99445, Cpt99453, Cpt99454, Cpt99457, Cpt99458, Cpt99470};
use wardline_ledger::{CodeUnits, CptCode, RuleSet, Threshold, Us2026};

use crate::common::{Case, date};

#[test]
fn us_2026_device_thresholds() {
    let rules = Us2026;
    assert_eq!(rules.period_days(), 30);
    for days in 0..=30 {
        let first = rules.device_codes(0, days);
        let later = rules.device_codes(7, days);
        let supply = match days {
            0 | 1 => None,
            2..=15 => Some(Cpt99445),
            _ => Some(Cpt99454),
        };
        let expected_later: Vec<CodeUnits> = supply.into_iter().map(CodeUnits::one).collect();
        assert_eq!(later, expected_later, "{days}");
        let mut expected_first = expected_later.clone();
        if days >= 2 {
            expected_first.insert(0, CodeUnits::one(Cpt99453));
        }
        assert_eq!(first, expected_first, "{days}");
    }
    let next = |index, days| rules.next_device_threshold(index, days);
    assert_eq!(
        next(0, 0),
        Some(Threshold {
            at_least: 2,
            codes: vec![Cpt99453, Cpt99445]
        })
    );
    assert_eq!(
        next(1, 1),
        Some(Threshold {
            at_least: 2,
            codes: vec![Cpt99445]
        })
    );
    assert_eq!(
        next(0, 2),
        Some(Threshold {
            at_least: 16,
            codes: vec![Cpt99454]
        })
    );
    assert_eq!(
        next(3, 15),
        Some(Threshold {
            at_least: 16,
            codes: vec![Cpt99454]
        })
    );
    assert_eq!(next(0, 16), None);
    assert_eq!(next(0, 30), None);
}

#[test]
fn us_2026_management_thresholds() {
    let rules = Us2026;
    assert!(rules.management_needs_interactive_contact());
    assert_eq!(rules.management_codes(60, 0), vec![]);
    assert_eq!(
        rules.management_codes(80, 2),
        vec![
            CodeUnits::one(Cpt99457),
            CodeUnits {
                code: Cpt99458,
                units: 3
            }
        ]
    );
    let table = [
        (0, 10, Cpt99470),
        (9, 10, Cpt99470),
        (10, 20, Cpt99457),
        (19, 20, Cpt99457),
    ];
    for (minutes, at_least, code) in table {
        assert_eq!(
            rules.next_management_threshold(minutes),
            Some(Threshold {
                at_least,
                codes: vec![code]
            }),
            "{minutes}"
        );
    }
    for (minutes, at_least) in [(20, 40), (39, 40), (40, 60), (59, 60), (60, 80)] {
        assert_eq!(
            rules.next_management_threshold(minutes),
            Some(Threshold {
                at_least,
                codes: vec![Cpt99458]
            }),
            "{minutes}"
        );
    }
    assert_eq!(rules.next_management_threshold(u32::MAX), None);
}

#[test]
fn codes_read_as_their_digits() {
    let digits: Vec<&str> = CptCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        digits,
        vec!["99453", "99445", "99454", "99470", "99457", "99458"]
    );
    for code in CptCode::ALL {
        assert_eq!(code.to_string(), code.as_str());
        assert!(!code.description().is_empty());
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(json, format!("\"{}\"", code.as_str()));
        assert_eq!(serde_json::from_str::<CptCode>(&json).unwrap(), code);
    }
}

#[test]
fn the_ledger_round_trips_through_json_in_snake_case() {
    let ledger = Case::new_york("2026-11-15", "2026-12-01")
        .device_days("2026-11-15", 13)
        .time("2026-11-16", 1500, "dr-a")
        .run();
    let json = serde_json::to_value(&ledger).unwrap();
    assert_eq!(json["rules"], "us_cpt_2026");
    let period = &json["periods"][0];
    assert_eq!(period["first_day"], "2026-11-15");
    assert_eq!(period["billing_practitioner"], "dr-a");
    assert_eq!(period["codes"][0]["code"], "99453");
    assert_eq!(
        period["codes"][1],
        serde_json::json!({ "code": "99445", "units": 1 })
    );
    assert_eq!(period["shortfall"]["needs"][0]["kind"], "device_days");
    assert_eq!(period["shortfall"]["needs"][0]["by"], "2026-12-14");
    assert_eq!(
        period["shortfall"]["message"],
        "needs 3 more days of device readings by 2026-12-14"
    );
    let november = &json["months"][0];
    assert_eq!(november["month"], "2026-11-01");
    assert_eq!(november["minutes"], 25);
    assert_eq!(november["complete"], true);
    assert_eq!(november["shortfall"], serde_json::Value::Null);
    let december = &json["months"][1];
    assert_eq!(
        december["shortfall"]["needs"][0]["kind"],
        "management_minutes"
    );
    assert_eq!(
        december["shortfall"]["needs"][1]["kind"],
        "interactive_contact"
    );
    let back: wardline_ledger::Ledger = serde_json::from_value(json).unwrap();
    assert_eq!(back, ledger);
}

/// A made-up payer: 10-day periods, a single supply code from 5 days, and no
/// management codes at all.
#[derive(Debug)]
struct TenDayPayer;

impl RuleSet for TenDayPayer {
    fn name(&self) -> &'static str {
        "ten_day_payer"
    }
    fn period_days(&self) -> u32 {
        10
    }
    fn device_codes(&self, _period_index: u32, device_days: u32) -> Vec<CodeUnits> {
        if device_days >= 5 {
            vec![CodeUnits::one(Cpt99454)]
        } else {
            vec![]
        }
    }
    fn next_device_threshold(&self, _period_index: u32, device_days: u32) -> Option<Threshold> {
        (device_days < 5).then(|| Threshold {
            at_least: 5,
            codes: vec![Cpt99454],
        })
    }
    fn management_codes(&self, _minutes: u32, _interactive_contacts: u32) -> Vec<CodeUnits> {
        vec![]
    }
    fn next_management_threshold(&self, _minutes: u32) -> Option<Threshold> {
        None
    }
    fn management_needs_interactive_contact(&self) -> bool {
        false
    }
}

#[test]
fn another_rule_set_keeps_the_counting_and_changes_the_thresholds() {
    let case = Case::new_york("2026-01-01", "2026-01-25").device_days("2026-01-01", 14);
    let ledger = case.run_with(&TenDayPayer);
    assert_eq!(ledger.rules, "ten_day_payer");
    let spans: Vec<(u32, u32, bool)> = ledger
        .periods
        .iter()
        .map(|p| (p.device_days, p.units_of(Cpt99454), p.complete))
        .collect();
    assert_eq!(spans, vec![(10, 1, true), (4, 0, true), (0, 0, false)]);
    assert_eq!(ledger.periods[2].first_day, date("2026-01-21"));
    assert_eq!(
        ledger.periods[2].shortfall.as_ref().unwrap().message,
        "needs 5 more days of device readings by 2026-01-30"
    );
    // Nothing to reach and no contact required: the open month is short of nothing.
    assert_eq!(ledger.months[0].shortfall, None);
}

/// A rule set that answers a period of 0 days is read as 1, not divided by.
#[derive(Debug)]
struct ZeroDayPeriods;

impl RuleSet for ZeroDayPeriods {
    fn name(&self) -> &'static str {
        "zero"
    }
    fn period_days(&self) -> u32 {
        0
    }
    fn device_codes(&self, _: u32, _: u32) -> Vec<CodeUnits> {
        vec![]
    }
    fn next_device_threshold(&self, _: u32, _: u32) -> Option<Threshold> {
        None
    }
    fn management_codes(&self, _: u32, _: u32) -> Vec<CodeUnits> {
        vec![]
    }
    fn next_management_threshold(&self, _: u32) -> Option<Threshold> {
        None
    }
    fn management_needs_interactive_contact(&self) -> bool {
        false
    }
}

#[test]
fn a_zero_day_period_is_read_as_one_day() {
    let ledger = Case::new_york("2026-01-01", "2026-01-03").run_with(&ZeroDayPeriods);
    let days: Vec<(String, String)> = ledger
        .periods
        .iter()
        .map(|p| (p.first_day.to_string(), p.last_day.to_string()))
        .collect();
    assert_eq!(days.len(), 3);
    assert_eq!(days[2], ("2026-01-03".to_owned(), "2026-01-03".to_owned()));
}
