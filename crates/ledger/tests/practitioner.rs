//! One billing practitioner per 30-day period.

use crate::common::Case;

/// Period 0 is 2026-01-05..2026-02-03, period 1 2026-02-04..2026-03-05.
fn episode() -> Case {
    Case::new_york("2026-01-05", "2026-03-10")
}

fn names(case: &Case) -> Vec<Option<String>> {
    case.run()
        .periods
        .into_iter()
        .map(|p| p.billing_practitioner)
        .collect()
}

fn some(name: &str) -> Option<String> {
    Some(name.to_owned())
}

#[test]
fn the_most_management_time_in_the_period_names_the_practitioner() {
    let case = episode()
        .device_days("2026-01-05", 20)
        .time("2026-01-10", 600, "dr-a")
        .time("2026-01-20", 600, "dr-a")
        .time("2026-01-11", 900, "rn-b");
    assert_eq!(names(&case), vec![some("dr-a"), None, None]);
}

#[test]
fn a_tie_goes_to_the_smallest_identifier_whatever_the_order() {
    let forwards = episode()
        .time("2026-01-10", 600, "dr-b")
        .time("2026-01-11", 600, "dr-a");
    let backwards = episode()
        .time("2026-01-11", 600, "dr-a")
        .time("2026-01-10", 600, "dr-b");
    assert_eq!(names(&forwards)[0], some("dr-a"));
    assert_eq!(names(&backwards)[0], some("dr-a"));

    // Identifiers compare as text: "dr-10" sorts before "dr-9".
    let case = episode()
        .time("2026-01-10", 60, "dr-9")
        .time("2026-01-10", 60, "dr-10");
    assert_eq!(names(&case)[0], some("dr-10"));
}

#[test]
fn nobody_is_named_when_nobody_recorded_time() {
    let case = episode().device_days("2026-01-05", 30);
    assert_eq!(names(&case), vec![None, None, None]);

    // Only a correction, or time corrected back to nothing, is no time.
    let case = episode().time("2026-01-10", -600, "dr-a");
    assert_eq!(names(&case)[0], None);
    let case = episode()
        .time("2026-01-10", 600, "dr-a")
        .time("2026-01-12", -600, "dr-a")
        .time("2026-01-12", 60, "rn-b");
    assert_eq!(names(&case)[0], some("rn-b"));
}

#[test]
fn corrections_count_against_their_practitioner() {
    let case = episode()
        .time("2026-01-10", 1200, "dr-a")
        .time("2026-01-11", -700, "dr-a")
        .time("2026-01-12", 600, "rn-b");
    assert_eq!(names(&case)[0], some("rn-b"));
}

#[test]
fn each_period_counts_its_own_days_not_the_calendar_month() {
    // Both entries are in February, in different periods.
    let case = episode()
        .time("2026-02-02", 1200, "dr-a")
        .time("2026-02-10", 1800, "rn-b");
    assert_eq!(names(&case), vec![some("dr-a"), some("rn-b"), None]);
}

#[test]
fn the_open_period_names_who_is_on_course() {
    let case = Case::new_york("2026-01-05", "2026-01-09").time("2026-01-06", 60, "dr-a");
    let ledger = case.run();
    assert!(!ledger.periods[0].complete);
    assert_eq!(ledger.periods[0].codes, vec![]);
    assert_eq!(ledger.periods[0].billing_practitioner, some("dr-a"));
}
