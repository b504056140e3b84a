//! Treatment management per calendar month: 99470, 99457, 99458.

use wardline_ledger::CptCode::{self, Cpt99457, Cpt99458, Cpt99470};
use wardline_ledger::{CodeUnits, ManagementTime};

use crate::common::{Case, NEW_YORK, date, local, utc};

/// January 2026 is complete; the episode started 2026-01-05.
fn episode() -> Case {
    Case::new_york("2026-01-05", "2026-03-10")
}

fn units(list: &[(CptCode, u32)]) -> Vec<CodeUnits> {
    list.iter()
        .map(|&(code, units)| CodeUnits { code, units })
        .collect()
}

#[test]
fn minutes_choose_the_management_codes_with_an_interactive_contact() {
    let table: [(i64, &[(CptCode, u32)]); 8] = [
        (9, &[]),
        (10, &[(Cpt99470, 1)]),
        (19, &[(Cpt99470, 1)]),
        (20, &[(Cpt99457, 1)]),
        (39, &[(Cpt99457, 1)]),
        (40, &[(Cpt99457, 1), (Cpt99458, 1)]),
        (59, &[(Cpt99457, 1), (Cpt99458, 1)]),
        (60, &[(Cpt99457, 1), (Cpt99458, 2)]),
    ];
    for (minutes, expected) in table {
        // Split between a clinician and clinical staff: all of it counts.
        let half = minutes * 30;
        let ledger = episode()
            .time("2026-01-12", half, "dr-a")
            .time("2026-01-20", minutes * 60 - half, "rn-b")
            .contact("2026-01-15")
            .run();
        let month = &ledger.months[0];
        assert_eq!(month.month, date("2026-01-01"));
        assert_eq!(i64::from(month.minutes), minutes);
        assert_eq!(month.interactive_contacts, 1);
        assert_eq!(month.codes, units(expected), "{minutes} minutes");
        assert!(month.complete);
        assert_eq!(month.shortfall, None);
    }
}

#[test]
fn minutes_without_an_interactive_contact_support_no_code() {
    for minutes in [9, 10, 19, 20, 39, 40, 59, 60] {
        let ledger = episode()
            .time("2026-01-12", minutes * 60, "dr-a")
            // A contact in the next month does not help January.
            .contact("2026-02-02")
            .run();
        let january = &ledger.months[0];
        assert_eq!(i64::from(january.minutes), minutes);
        assert_eq!(january.interactive_contacts, 0);
        assert_eq!(january.codes, vec![], "{minutes} minutes");
        assert_eq!(ledger.months[1].interactive_contacts, 1);
    }
}

#[test]
fn the_short_and_the_first_20_minutes_are_never_both_and_99458_needs_99457() {
    for minutes in 0..=200 {
        let ledger = episode()
            .time("2026-01-12", minutes * 60, "dr-a")
            .contact("2026-01-12")
            .run();
        let month = &ledger.months[0];
        assert!(
            month.units_of(Cpt99470) + month.units_of(Cpt99457) <= 1,
            "{minutes}"
        );
        if month.units_of(Cpt99458) > 0 {
            assert_eq!(month.units_of(Cpt99457), 1, "{minutes}");
        }
    }
}

#[test]
fn minutes_are_whole_minutes_of_the_summed_seconds() {
    let table = [
        (1199, 19, units(&[(Cpt99470, 1)])),
        (1200, 20, units(&[(Cpt99457, 1)])),
    ];
    for (seconds, minutes, codes) in table {
        let ledger = episode()
            .time("2026-01-12", seconds, "dr-a")
            .contact("2026-01-12")
            .run();
        assert_eq!(ledger.months[0].minutes, minutes);
        assert_eq!(ledger.months[0].codes, codes);
    }

    // Thirty calls of 40 seconds are 20 minutes, not thirty times nothing.
    let mut case = episode().contact("2026-01-12");
    for _ in 0..30 {
        case = case.time("2026-01-12", 40, "rn-b");
    }
    assert_eq!(case.run().months[0].minutes, 20);
}

#[test]
fn negative_corrections_subtract_and_the_month_never_goes_below_zero() {
    let table = [
        // (entries, minutes)
        (vec![1500, -300], 20),
        (vec![1200, -1], 19),
        (vec![1200, -1800], 0),
        (vec![-600], 0),
        (vec![-600, 900], 5),
    ];
    for (entries, minutes) in table {
        let mut case = episode().contact("2026-01-12");
        for seconds in &entries {
            case = case.time("2026-01-12", *seconds, "dr-a");
        }
        let ledger = case.run();
        assert_eq!(ledger.months[0].minutes, minutes, "{entries:?}");
    }

    // A month driven below zero does not borrow from the next.
    let ledger = episode()
        .time("2026-01-12", -3600, "dr-a")
        .time("2026-02-12", 1200, "dr-a")
        .contact("2026-02-12")
        .run();
    assert_eq!(ledger.months[0].minutes, 0);
    assert_eq!(ledger.months[1].minutes, 20);
    assert_eq!(ledger.months[1].codes, units(&[(Cpt99457, 1)]));
}

#[test]
fn records_before_the_episode_or_after_now_do_not_count() {
    let mut case = episode()
        .time("2026-01-04", 1200, "dr-a")
        .time("2025-12-20", 1200, "dr-a")
        .contact("2026-01-04")
        .time("2026-03-11", 1200, "dr-a")
        .contact("2026-03-11");
    // The enrolment visit on the day of set-up, before the 09:00 set-up, counts.
    case.contacts
        .push(local(NEW_YORK, date("2026-01-05"), 8, 0));
    case.management.push(ManagementTime {
        at: local(NEW_YORK, date("2026-01-05"), 8, 30),
        seconds: 600,
        practitioner: "dr-a".to_owned(),
    });
    // 12:00:01 on 03-10 is after now.
    case.management.push(ManagementTime {
        at: utc("2026-03-10T16:00:01Z"),
        seconds: 600,
        practitioner: "dr-a".to_owned(),
    });
    let ledger = case.run();
    let january = &ledger.months[0];
    assert_eq!((january.minutes, january.interactive_contacts), (10, 1));
    assert_eq!(january.codes, units(&[(Cpt99470, 1)]));
    let march = &ledger.months[2];
    assert_eq!((march.minutes, march.interactive_contacts), (0, 0));
    assert_eq!(ledger.months.len(), 3);
}

#[test]
fn every_contact_of_the_month_is_counted() {
    let ledger = episode()
        .contact("2026-01-06")
        .contact("2026-01-06")
        .contact("2026-01-31")
        .contact("2026-02-01")
        .run();
    let contacts: Vec<u32> = ledger
        .months
        .iter()
        .map(|m| m.interactive_contacts)
        .collect();
    assert_eq!(contacts, vec![3, 1, 0]);
}

#[test]
fn many_additional_blocks_are_a_count() {
    let ledger = episode()
        .time("2026-01-12", 1000 * 60, "dr-a")
        .contact("2026-01-12")
        .run();
    assert_eq!(
        ledger.months[0].codes,
        units(&[(Cpt99457, 1), (Cpt99458, 49)])
    );
}

#[test]
fn absurd_totals_do_not_overflow() {
    let mut case = Case::new_york("2026-01-05", "2026-01-20").contact("2026-01-06");
    for _ in 0..4 {
        case = case.time("2026-01-12", i64::MAX, "dr-a");
    }
    case = case.time("2026-01-13", i64::MIN, "dr-b");
    let ledger = case.run();
    let month = &ledger.months[0];
    assert_eq!(month.minutes, u32::MAX);
    assert_eq!(month.units_of(Cpt99458), (u32::MAX - 20) / 20);
    // No threshold lies past u32::MAX minutes, and the month has its contact.
    assert_eq!(month.shortfall, None);
    assert_eq!(
        ledger.periods[0].billing_practitioner.as_deref(),
        Some("dr-a")
    );
}
