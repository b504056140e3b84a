//! Device days, the supply codes (99445, 99454) and set-up (99453).

use wardline_ledger::CptCode::{Cpt99445, Cpt99453, Cpt99454};
use wardline_ledger::{CodeUnits, CptCode, ReadingOrigin};

use crate::common::{Case, NEW_YORK, date, local, utc};

pub(crate) fn one_each(codes: &[CptCode]) -> Vec<CodeUnits> {
    codes.iter().copied().map(CodeUnits::one).collect()
}

/// Periods of an episode set up 2026-01-05: 0 is 01-05..02-03, 1 is 02-04..03-05,
/// 2 (open on 2026-03-10) is 03-06..04-04.
fn episode() -> Case {
    Case::new_york("2026-01-05", "2026-03-10")
}

#[test]
fn device_days_choose_the_supply_code_in_the_first_period() {
    let table: [(u32, &[CptCode]); 6] = [
        (0, &[]),
        (1, &[]),
        (2, &[Cpt99453, Cpt99445]),
        (15, &[Cpt99453, Cpt99445]),
        (16, &[Cpt99453, Cpt99454]),
        (30, &[Cpt99453, Cpt99454]),
    ];
    for (days, expected) in table {
        let ledger = episode().device_days("2026-01-05", days).run();
        let period = &ledger.periods[0];
        assert_eq!(period.device_days, days, "{days} days");
        assert_eq!(period.codes, one_each(expected), "{days} days");
        assert!(period.complete);
        assert_eq!(
            period.shortfall, None,
            "a complete period is short of nothing"
        );
    }
}

#[test]
fn device_days_choose_the_supply_code_in_a_later_period_without_set_up() {
    let table: [(u32, &[CptCode]); 6] = [
        (0, &[]),
        (1, &[]),
        (2, &[Cpt99445]),
        (15, &[Cpt99445]),
        (16, &[Cpt99454]),
        (30, &[Cpt99454]),
    ];
    for (days, expected) in table {
        let ledger = episode().device_days("2026-02-04", days).run();
        let period = &ledger.periods[1];
        assert_eq!(period.device_days, days, "{days} days");
        assert_eq!(period.codes, one_each(expected), "{days} days");
        assert_eq!(period.units_of(Cpt99453), 0);
        // Readings of period 1 touch neither neighbour.
        assert_eq!(ledger.periods[0].device_days, 0);
        assert_eq!(ledger.periods[2].device_days, 0);
    }
}

#[test]
fn supply_codes_are_never_both() {
    for days in 0..=30 {
        let ledger = episode().device_days("2026-01-05", days).run();
        let period = &ledger.periods[0];
        assert!(
            period.units_of(Cpt99445) + period.units_of(Cpt99454) <= 1,
            "{days} days: {:?}",
            period.codes
        );
    }
}

#[test]
fn set_up_needs_two_days_in_the_first_period_and_comes_once() {
    // One day in period 0, then a full period 1: 99453 is not moved to period 1.
    let ledger = episode()
        .device_days("2026-01-05", 1)
        .device_days("2026-02-04", 20)
        .run();
    assert_eq!(ledger.periods[0].codes, vec![]);
    assert_eq!(ledger.periods[1].codes, one_each(&[Cpt99454]));

    // Full periods 0, 1 and 2: 99453 only in period 0.
    let ledger = episode().device_days("2026-01-05", 65).run();
    let set_ups: Vec<u32> = ledger
        .periods
        .iter()
        .map(|p| p.units_of(Cpt99453))
        .collect();
    assert_eq!(set_ups, vec![1, 0, 0]);
}

#[test]
fn many_readings_on_one_day_make_one_device_day() {
    let day = date("2026-01-10");
    let mut case = episode();
    for hour in 0..24 {
        case = case.reading(local(NEW_YORK, day, hour, 5), ReadingOrigin::Device);
        case = case.reading(local(NEW_YORK, day, hour, 35), ReadingOrigin::Device);
    }
    let ledger = case.run();
    assert_eq!(ledger.periods[0].device_days, 1);
    assert_eq!(ledger.periods[0].codes, vec![]);
}

#[test]
fn manual_readings_never_count() {
    let mut case = episode();
    for n in 0..30 {
        let day = date("2026-01-05") + chrono::Days::new(n);
        case = case.reading(local(NEW_YORK, day, 13, 0), ReadingOrigin::Manual);
    }
    let ledger = case.clone().run();
    assert_eq!(ledger.periods[0].device_days, 0);
    assert_eq!(ledger.periods[0].codes, vec![]);

    // One device reading among them makes one day, not 31.
    let ledger = case.device_days("2026-01-07", 1).run();
    assert_eq!(ledger.periods[0].device_days, 1);
    assert_eq!(ledger.periods[0].codes, vec![]);
}

#[test]
fn readings_before_the_set_up_do_not_count() {
    // Set up 09:00 on 01-05: readings the day before and at 08:59 that morning
    // are not from this episode's device; one at 09:00 is.
    let case = episode()
        .device_days("2025-12-20", 16)
        .reading(utc("2026-01-05T13:59:00Z"), ReadingOrigin::Device)
        .reading(utc("2026-01-05T23:59:00Z"), ReadingOrigin::Manual);
    let ledger = case.clone().run();
    assert_eq!(ledger.periods[0].device_days, 0);
    assert_eq!(ledger.periods[0].first_day, date("2026-01-05"));

    let ledger = case
        .reading(utc("2026-01-05T14:00:00Z"), ReadingOrigin::Device)
        .run();
    assert_eq!(ledger.periods[0].device_days, 1);
}

#[test]
fn readings_after_now_do_not_count() {
    // Now is 12:00 on 2026-03-10 in New York (16:00 UTC).
    let ledger = episode()
        .device_days("2026-03-06", 4)
        .reading(utc("2026-03-10T16:00:01Z"), ReadingOrigin::Device)
        .device_days("2026-03-11", 20)
        .run();
    let open = &ledger.periods[2];
    assert_eq!(open.device_days, 4);
    assert_eq!(open.codes, one_each(&[Cpt99445]));
    assert_eq!(
        ledger.periods.len(),
        3,
        "no period after the one holding now"
    );
}

#[test]
fn the_open_period_reports_what_it_supports_so_far() {
    // Period 2 has 16 device days by its 21st day: 99454 already, not complete,
    // and short of nothing more.
    let ledger = Case::new_york("2026-01-05", "2026-03-26")
        .device_days("2026-03-06", 16)
        .run();
    let open = ledger.periods.last().unwrap();
    assert_eq!(open.index, 2);
    assert!(!open.complete);
    assert_eq!(open.device_days, 16);
    assert_eq!(open.codes, one_each(&[Cpt99454]));
    assert_eq!(open.shortfall, None);
    assert!(ledger.periods[..2].iter().all(|p| p.complete));
}

#[test]
fn now_before_the_set_up_gives_an_empty_ledger() {
    let mut case = episode()
        .device_days("2026-01-01", 3)
        .time("2026-01-02", 1200, "dr-a");
    case.now = utc("2026-01-05T13:59:59Z");
    let ledger = case.run();
    assert!(ledger.periods.is_empty());
    assert!(ledger.months.is_empty());
    assert_eq!(ledger.rules, "us_cpt_2026");
}

#[test]
fn the_set_up_instant_itself_opens_period_0_and_its_month() {
    let mut case = episode();
    case.now = case.start;
    let ledger = case.run();
    assert_eq!(ledger.periods.len(), 1);
    assert_eq!(ledger.periods[0].first_day, date("2026-01-05"));
    assert_eq!(ledger.periods[0].last_day, date("2026-02-03"));
    assert_eq!(ledger.months.len(), 1);
    assert_eq!(ledger.months[0].month, date("2026-01-01"));
}
