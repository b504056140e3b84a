//! Local dates: time zones, daylight saving changes, periods across month ends.

use chrono::Days;
use wardline_ledger::ReadingOrigin::Device;

use crate::common::{Case, date, local, utc};

/// An episode whose period 0 ends on local date `last_of_period_0`, judged a
/// month later, with the given readings.
fn boundary_case(last_of_period_0: &str, readings: &[&str]) -> Case {
    let start = date(last_of_period_0) - Days::new(29);
    let mut case = Case::new_york(&start.to_string(), &(start + Days::new(45)).to_string());
    for at in readings {
        case = case.reading(utc(at), Device);
    }
    case
}

#[test]
fn spring_forward_the_day_after_is_local_time_with_the_new_offset() {
    // New York moves to EDT (UTC-4) on 2026-03-08: 04:30 UTC on 03-09 is 00:30 on
    // 03-09, not 23:30 on 03-08 as the winter offset would make it.
    let ledger = boundary_case("2026-03-08", &["2026-03-09T04:30:00Z"]).run();
    assert_eq!(ledger.periods[0].last_day, date("2026-03-08"));
    assert_eq!(ledger.periods[0].device_days, 0);
    assert_eq!(ledger.periods[1].first_day, date("2026-03-09"));
    assert_eq!(ledger.periods[1].device_days, 1);
}

#[test]
fn fall_back_the_day_after_is_local_time_with_the_new_offset() {
    // New York returns to EST (UTC-5) on 2026-11-01: 04:30 UTC on 11-02 is 23:30
    // on 11-01, not 00:30 on 11-02 as the summer offset would make it.
    let ledger = boundary_case("2026-11-01", &["2026-11-02T04:30:00Z"]).run();
    assert_eq!(ledger.periods[0].last_day, date("2026-11-01"));
    assert_eq!(ledger.periods[0].device_days, 1);
    assert_eq!(ledger.periods[1].device_days, 0);
}

#[test]
fn the_repeated_hour_of_fall_back_is_one_day() {
    // 01:30 happens twice on 2026-11-01 in New York (EDT, then EST): one device day.
    let ledger = boundary_case(
        "2026-11-10",
        &["2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"],
    )
    .run();
    assert_eq!(ledger.periods[0].device_days, 1);
}

#[test]
fn the_day_of_spring_forward_is_one_day() {
    // 2026-03-08 has 23 hours in New York; its first and last minutes are one date.
    let ledger = boundary_case(
        "2026-03-20",
        &["2026-03-08T05:00:00Z", "2026-03-09T03:59:00Z"],
    )
    .run();
    assert_eq!(ledger.periods[0].device_days, 1);
    let ledger = boundary_case(
        "2026-03-20",
        &["2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z"],
    )
    .run();
    assert_eq!(ledger.periods[0].device_days, 2);
}

#[test]
fn just_after_midnight_utc_is_the_previous_local_day() {
    // 02:00 UTC on 06-10 is 22:00 on 06-09 in New York.
    let ledger = boundary_case("2026-06-09", &["2026-06-10T02:00:00Z"]).run();
    assert_eq!(ledger.periods[0].device_days, 1);
    assert_eq!(ledger.periods[1].device_days, 0);

    // And management time at 03:30 UTC on 07-01 belongs to June.
    let mut case = Case::new_york("2026-06-01", "2026-07-15");
    case.management.push(wardline_ledger::ManagementTime {
        at: utc("2026-07-01T03:30:00Z"),
        seconds: 600,
        practitioner: "dr-a".to_owned(),
    });
    case.contacts.push(utc("2026-07-01T03:00:00Z"));
    let ledger = case.run();
    assert_eq!(ledger.months[0].month, date("2026-06-01"));
    assert_eq!(
        (
            ledger.months[0].minutes,
            ledger.months[0].interactive_contacts
        ),
        (10, 1)
    );
    assert_eq!(
        (
            ledger.months[1].minutes,
            ledger.months[1].interactive_contacts
        ),
        (0, 0)
    );
}

#[test]
fn east_of_utc_the_local_date_is_later() {
    // 20:00 UTC on 01-31 is 05:00 on 02-01 in Tokyo.
    let tokyo = chrono_tz::Asia::Tokyo;
    let mut case = Case::new_york("2026-01-10", "2026-02-20");
    case.tz = tokyo;
    case.start = local(tokyo, date("2026-01-10"), 9, 0);
    case.now = local(tokyo, date("2026-02-20"), 9, 0);
    case.management.push(wardline_ledger::ManagementTime {
        at: utc("2026-01-31T20:00:00Z"),
        seconds: 1200,
        practitioner: "dr-a".to_owned(),
    });
    let ledger = case.run();
    assert_eq!(ledger.months[0].minutes, 0);
    assert_eq!(ledger.months[1].month, date("2026-02-01"));
    assert_eq!(ledger.months[1].minutes, 20);
}

#[test]
fn periods_run_across_month_ends() {
    let ledger = Case::new_york("2026-01-20", "2026-04-01")
        .device_days("2026-01-31", 2) // 01-31 and 02-01: period 0
        .device_days("2026-02-18", 2) // 02-18: period 0, 02-19: period 1
        .run();
    let spans: Vec<(String, String, u32)> = ledger
        .periods
        .iter()
        .map(|p| {
            (
                p.first_day.to_string(),
                p.last_day.to_string(),
                p.device_days,
            )
        })
        .collect();
    assert_eq!(
        spans,
        vec![
            ("2026-01-20".to_owned(), "2026-02-18".to_owned(), 3),
            ("2026-02-19".to_owned(), "2026-03-20".to_owned(), 1),
            ("2026-03-21".to_owned(), "2026-04-19".to_owned(), 0),
        ]
    );
    let complete: Vec<bool> = ledger.periods.iter().map(|p| p.complete).collect();
    assert_eq!(complete, vec![true, true, false]);
}

#[test]
fn periods_are_thirty_local_days_through_a_leap_february() {
    let ledger = Case::new_york("2028-02-10", "2028-03-12").run();
    assert_eq!(ledger.periods[0].last_day, date("2028-03-10"));
    assert_eq!(ledger.periods[1].first_day, date("2028-03-11"));
    let ledger = Case::new_york("2026-02-10", "2026-03-12").run();
    assert_eq!(ledger.periods[0].last_day, date("2026-03-11"));
    assert_eq!(ledger.periods.len(), 2);
}

#[test]
fn periods_are_thirty_local_days_across_a_clock_change() {
    // 2026-02-20 to 2026-03-21 holds the 23-hour 03-08 and is still 30 dates.
    let ledger = Case::new_york("2026-02-20", "2026-03-22").run();
    assert_eq!(ledger.periods[0].last_day, date("2026-03-21"));
    assert_eq!(ledger.periods[1].first_day, date("2026-03-22"));
}

#[test]
fn periods_are_listed_up_to_the_one_holding_now() {
    let table = [
        ("2026-01-05", 1),
        ("2026-02-03", 1),
        ("2026-02-04", 2),
        ("2026-03-05", 2),
        ("2026-03-06", 3),
    ];
    for (today, count) in table {
        let ledger = Case::new_york("2026-01-05", today).run();
        assert_eq!(ledger.periods.len(), count, "on {today}");
        let indices: Vec<u32> = ledger.periods.iter().map(|p| p.index).collect();
        assert_eq!(
            indices,
            (0..u32::try_from(count).unwrap()).collect::<Vec<_>>()
        );
        assert!(!ledger.periods.last().unwrap().complete);
    }
}

#[test]
fn months_run_from_the_first_month_to_now_across_a_year_end() {
    let ledger = Case::new_york("2026-11-20", "2027-02-03").run();
    let months: Vec<(String, String, bool)> = ledger
        .months
        .iter()
        .map(|m| (m.month.to_string(), m.last_day.to_string(), m.complete))
        .collect();
    assert_eq!(
        months,
        vec![
            ("2026-11-01".to_owned(), "2026-11-30".to_owned(), true),
            ("2026-12-01".to_owned(), "2026-12-31".to_owned(), true),
            ("2027-01-01".to_owned(), "2027-01-31".to_owned(), true),
            ("2027-02-01".to_owned(), "2027-02-28".to_owned(), false),
        ]
    );
}

#[test]
fn now_just_after_local_midnight_opens_the_next_month() {
    // 04:30 UTC on 2026-12-01 is 23:30 on 11-30 in New York: November is still open.
    let mut case = Case::new_york("2026-11-20", "2026-11-30");
    case.now = utc("2026-12-01T04:30:00Z");
    let ledger = case.run();
    assert_eq!(ledger.months.len(), 1);
    assert!(!ledger.months[0].complete);
    case.now = utc("2026-12-01T05:00:00Z");
    let ledger = case.run();
    assert_eq!(ledger.months.len(), 2);
    assert!(ledger.months[0].complete);
}
