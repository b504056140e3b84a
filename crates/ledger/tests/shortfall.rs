//! What the open period and month are short of, and by when.

use wardline_ledger::CptCode::{Cpt99445, Cpt99453, Cpt99454, Cpt99457, Cpt99458, Cpt99470};
use wardline_ledger::{Need, Shortfall};

use crate::common::{Case, date};

/// Period 0 of an episode set up 2026-11-15 ends on 2026-12-14.
fn period_0(today: &str) -> Case {
    Case::new_york("2026-11-15", today)
}

fn period_message(case: &Case) -> Option<String> {
    let ledger = case.run();
    let open = ledger.periods.last().unwrap();
    assert!(!open.complete);
    open.shortfall.as_ref().map(|s| s.message.clone())
}

#[test]
fn the_open_period_needs_the_next_threshold_by_its_last_day() {
    let table = [
        // (today, first reading day, device days, message)
        (
            "2026-11-20",
            "2026-11-15",
            0,
            "needs 2 more days of device readings by 2026-12-14",
        ),
        (
            "2026-11-20",
            "2026-11-15",
            1,
            "needs 1 more day of device readings by 2026-12-14",
        ),
        (
            "2026-11-20",
            "2026-11-15",
            2,
            "needs 14 more days of device readings by 2026-12-14",
        ),
        (
            "2026-12-01",
            "2026-11-15",
            13,
            "needs 3 more days of device readings by 2026-12-14",
        ),
        // The last day, without a reading yet: today is still open.
        (
            "2026-12-14",
            "2026-11-15",
            15,
            "needs 1 more day of device readings by 2026-12-14",
        ),
        // Ten days left (12-05..12-14) and ten to go: still within reach.
        (
            "2026-12-05",
            "2026-11-15",
            6,
            "needs 10 more days of device readings by 2026-12-14",
        ),
    ];
    for (today, first, days, message) in table {
        let case = period_0(today).device_days(first, days);
        assert_eq!(
            period_message(&case).as_deref(),
            Some(message),
            "{today}, {days} days"
        );
    }
}

#[test]
fn the_open_period_says_when_a_threshold_is_out_of_reach() {
    let table = [
        // 12-10..12-14 remain, 6 needed.
        (
            "2026-12-10",
            "2026-11-15",
            10,
            "cannot reach 16 days this period: 5 days remain",
        ),
        // Today already has its reading, so 12-11..12-14 remain.
        (
            "2026-12-10",
            "2026-11-30",
            11,
            "cannot reach 16 days this period: 4 days remain",
        ),
        // The last day has its reading: nothing remains.
        (
            "2026-12-14",
            "2026-11-30",
            15,
            "cannot reach 16 days this period: 0 days remain",
        ),
        // The last day, no reading yet in the period.
        (
            "2026-12-14",
            "2026-11-15",
            0,
            "cannot reach 2 days this period: 1 day remains",
        ),
    ];
    for (today, first, days, message) in table {
        let case = period_0(today).device_days(first, days);
        assert_eq!(
            period_message(&case).as_deref(),
            Some(message),
            "{today}, {days} days"
        );
    }
}

#[test]
fn the_period_shortfall_is_structured() {
    let ledger = period_0("2026-12-01").device_days("2026-11-15", 13).run();
    let shortfall = ledger.periods[0].shortfall.clone().unwrap();
    assert_eq!(
        shortfall.needs,
        vec![Need::DeviceDays {
            more: 3,
            target: 16,
            codes: vec![Cpt99454],
            by: date("2026-12-14"),
        }]
    );

    let ledger = period_0("2026-12-10").device_days("2026-11-15", 10).run();
    assert_eq!(
        ledger.periods[0].shortfall.as_ref().unwrap().needs,
        vec![Need::DeviceDaysOutOfReach {
            target: 16,
            codes: vec![Cpt99454],
            days_remaining: 5,
            last_day: date("2026-12-14"),
        }]
    );

    // The first threshold brings set-up too in period 0, only supply after.
    let ledger = period_0("2026-11-16").run();
    let Need::DeviceDays { codes, .. } = &ledger.periods[0].shortfall.as_ref().unwrap().needs[0]
    else {
        panic!("{:?}", ledger.periods[0].shortfall);
    };
    assert_eq!(codes, &vec![Cpt99453, Cpt99445]);
    let ledger = period_0("2026-12-16").run();
    assert_eq!(
        ledger.periods[1].shortfall.as_ref().unwrap().needs,
        vec![Need::DeviceDays {
            more: 2,
            target: 2,
            codes: vec![Cpt99445],
            by: date("2027-01-13"),
        }]
    );
}

#[test]
fn a_period_with_sixteen_days_or_a_complete_period_is_short_of_nothing() {
    let ledger = period_0("2026-12-05").device_days("2026-11-15", 16).run();
    assert_eq!(ledger.periods[0].shortfall, None);
    let ledger = period_0("2026-12-15").device_days("2026-11-15", 1).run();
    assert!(ledger.periods[0].complete);
    assert_eq!(ledger.periods[0].codes, vec![]);
    assert_eq!(ledger.periods[0].shortfall, None);
    assert!(ledger.periods[1].shortfall.is_some());
}

/// December 2026 is open on 12-15.
fn december(minutes: i64, contact: bool) -> Option<Shortfall> {
    let mut case = Case::new_york("2026-12-01", "2026-12-15");
    if minutes > 0 {
        case = case.time("2026-12-03", minutes * 60, "dr-a");
    }
    if contact {
        case = case.contact("2026-12-02");
    }
    let ledger = case.run();
    let month = ledger.months.last().unwrap();
    assert!(!month.complete);
    month.shortfall.clone()
}

#[test]
fn the_open_month_needs_the_next_threshold_of_minutes_by_its_last_day() {
    let table = [
        (0, "needs 10 more minutes of management by 2026-12-31"),
        (6, "needs 4 more minutes of management by 2026-12-31"),
        (9, "needs 1 more minute of management by 2026-12-31"),
        (10, "needs 10 more minutes of management by 2026-12-31"),
        (19, "needs 1 more minute of management by 2026-12-31"),
        (20, "needs 20 more minutes of management by 2026-12-31"),
        (39, "needs 1 more minute of management by 2026-12-31"),
        (45, "needs 15 more minutes of management by 2026-12-31"),
        (60, "needs 20 more minutes of management by 2026-12-31"),
    ];
    for (minutes, message) in table {
        assert_eq!(
            december(minutes, true).unwrap().message,
            message,
            "{minutes} minutes"
        );
    }
}

#[test]
fn the_open_month_names_the_code_each_threshold_brings() {
    let table = [
        (0, 10, Cpt99470),
        (10, 20, Cpt99457),
        (20, 40, Cpt99458),
        (59, 60, Cpt99458),
    ];
    for (minutes, target, code) in table {
        let shortfall = december(minutes, true).unwrap();
        assert_eq!(
            shortfall.needs,
            vec![Need::ManagementMinutes {
                more: u32::try_from(i64::from(target) - minutes).unwrap(),
                target,
                codes: vec![code],
                by: date("2026-12-31"),
            }]
        );
    }
}

#[test]
fn the_open_month_without_an_interactive_contact_says_so() {
    for minutes in [0, 9, 10, 19, 20, 39, 40, 59, 60] {
        let shortfall = december(minutes, false).unwrap();
        assert_eq!(
            shortfall.needs.last(),
            Some(&Need::InteractiveContact {
                by: date("2026-12-31")
            }),
            "{minutes} minutes"
        );
        assert!(
            shortfall
                .message
                .ends_with("; needs an interactive contact (video or phone visit) by 2026-12-31"),
            "{}",
            shortfall.message
        );
    }
    assert_eq!(
        december(26, false).unwrap().message,
        "needs 14 more minutes of management by 2026-12-31; \
         needs an interactive contact (video or phone visit) by 2026-12-31"
    );
}

#[test]
fn a_complete_month_is_short_of_nothing() {
    let ledger = Case::new_york("2026-11-20", "2026-12-15")
        .time("2026-11-21", 300, "dr-a")
        .run();
    assert!(ledger.months[0].complete);
    assert_eq!(ledger.months[0].codes, vec![]);
    assert_eq!(ledger.months[0].shortfall, None);
    assert_eq!(ledger.months[1].shortfall.as_ref().unwrap().needs.len(), 2);
}
