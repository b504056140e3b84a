//! Counting the records into periods and months.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::{
    DevicePeriod, Ledger, LedgerInput, ManagementMonth, ManagementTime, Need, ReadingOrigin,
    RuleSet, Shortfall, Us2026,
};

/// The ledger of `input` under the US CPT 2026 rules ([`Us2026`]).
pub fn ledger(input: &LedgerInput<'_>) -> Ledger {
    ledger_with(&Us2026, input)
}

/// The ledger of `input` under `rules`.
pub fn ledger_with<R: RuleSet + ?Sized>(rules: &R, input: &LedgerInput<'_>) -> Ledger {
    let mut ledger = Ledger {
        rules: rules.name().to_owned(),
        periods: Vec::new(),
        months: Vec::new(),
    };
    if input.now < input.episode_start {
        return ledger;
    }
    let tz = input.time_zone;
    let first_day = local_date(tz, input.episode_start);
    let today = local_date(tz, input.now);

    let device_days: BTreeSet<NaiveDate> = input
        .readings
        .iter()
        .filter(|(at, origin)| {
            *origin == ReadingOrigin::Device && *at >= input.episode_start && *at <= input.now
        })
        .map(|(at, _)| local_date(tz, *at))
        .collect();
    let management: Vec<(NaiveDate, &ManagementTime)> = input
        .management
        .iter()
        .filter(|m| m.at <= input.now)
        .map(|m| (local_date(tz, m.at), m))
        .filter(|(day, _)| *day >= first_day)
        .collect();
    let contacts: Vec<NaiveDate> = input
        .interactive_contacts
        .iter()
        .filter(|at| **at <= input.now)
        .map(|at| local_date(tz, *at))
        .filter(|day| *day >= first_day)
        .collect();

    ledger.periods = device_periods(rules, first_day, today, &device_days, &management);
    ledger.months = management_months(rules, first_day, today, &management, &contacts);
    ledger
}

fn local_date(tz: Tz, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

fn add_days(day: NaiveDate, days: i64) -> Option<NaiveDate> {
    day.checked_add_days(Days::new(u64::try_from(days).ok()?))
}

fn device_periods<R: RuleSet + ?Sized>(
    rules: &R,
    first_day: NaiveDate,
    today: NaiveDate,
    device_days: &BTreeSet<NaiveDate>,
    management: &[(NaiveDate, &ManagementTime)],
) -> Vec<DevicePeriod> {
    let period_days = i64::from(rules.period_days().max(1));
    let period_of = |day: NaiveDate| (day - first_day).num_days() / period_days;

    // Seconds per practitioner per period; i128 so no sum of i64 entries overflows.
    let mut time: BTreeMap<i64, BTreeMap<&str, i128>> = BTreeMap::new();
    for (day, entry) in management {
        *time
            .entry(period_of(*day))
            .or_default()
            .entry(entry.practitioner.as_str())
            .or_default() += i128::from(entry.seconds);
    }

    let mut periods = Vec::new();
    for k in 0..=period_of(today) {
        let (Ok(index), Some(start)) = (
            u32::try_from(k),
            k.checked_mul(period_days)
                .and_then(|d| add_days(first_day, d)),
        ) else {
            break;
        };
        let last = add_days(start, period_days - 1).unwrap_or(NaiveDate::MAX);
        let days = u32::try_from(device_days.range(start..=last).count()).unwrap_or(u32::MAX);
        let complete = today > last;
        let shortfall = if complete {
            None
        } else {
            device_shortfall(
                rules,
                index,
                days,
                today,
                last,
                device_days.contains(&today),
            )
        };
        periods.push(DevicePeriod {
            index,
            first_day: start,
            last_day: last,
            device_days: days,
            codes: rules.device_codes(index, days),
            billing_practitioner: time.get(&k).and_then(billing_practitioner),
            complete,
            shortfall,
        });
    }
    periods
}

/// The most time, ties to the smallest identifier; nobody with none or less.
fn billing_practitioner(time: &BTreeMap<&str, i128>) -> Option<String> {
    let mut best: Option<(&str, i128)> = None;
    // The map iterates in identifier order, so keeping the first of equal totals
    // keeps the smallest identifier.
    for (&practitioner, &seconds) in time {
        if seconds > 0 && best.is_none_or(|(_, most)| seconds > most) {
            best = Some((practitioner, seconds));
        }
    }
    best.map(|(practitioner, _)| practitioner.to_owned())
}

fn device_shortfall<R: RuleSet + ?Sized>(
    rules: &R,
    index: u32,
    days: u32,
    today: NaiveDate,
    last: NaiveDate,
    today_counted: bool,
) -> Option<Shortfall> {
    let threshold = rules.next_device_threshold(index, days)?;
    let more = threshold.at_least.saturating_sub(days);
    let open_days = (last - today).num_days() + 1 - i64::from(today_counted);
    let days_remaining = u32::try_from(open_days.max(0)).unwrap_or(u32::MAX);
    let need = if more <= days_remaining {
        Need::DeviceDays {
            more,
            target: threshold.at_least,
            codes: threshold.codes,
            by: last,
        }
    } else {
        Need::DeviceDaysOutOfReach {
            target: threshold.at_least,
            codes: threshold.codes,
            days_remaining,
            last_day: last,
        }
    };
    Some(Shortfall::new(vec![need]))
}

fn first_of_month(day: NaiveDate) -> NaiveDate {
    // Day 1 exists in every month, so the fallback is never taken.
    day.with_day(1).unwrap_or(day)
}

fn management_months<R: RuleSet + ?Sized>(
    rules: &R,
    first_day: NaiveDate,
    today: NaiveDate,
    management: &[(NaiveDate, &ManagementTime)],
    contacts: &[NaiveDate],
) -> Vec<ManagementMonth> {
    let mut seconds: BTreeMap<NaiveDate, i128> = BTreeMap::new();
    for (day, entry) in management {
        *seconds.entry(first_of_month(*day)).or_default() += i128::from(entry.seconds);
    }
    let mut contact_count: BTreeMap<NaiveDate, u32> = BTreeMap::new();
    for day in contacts {
        let count = contact_count.entry(first_of_month(*day)).or_default();
        *count = count.saturating_add(1);
    }

    let mut months = Vec::new();
    let mut month = first_of_month(first_day);
    let end = first_of_month(today);
    while month <= end {
        let next = month.checked_add_months(Months::new(1));
        let last = next.and_then(|n| n.pred_opt()).unwrap_or(NaiveDate::MAX);
        let total = seconds.get(&month).copied().unwrap_or(0).max(0);
        let minutes = u32::try_from(total / 60).unwrap_or(u32::MAX);
        let interactive_contacts = contact_count.get(&month).copied().unwrap_or(0);
        let complete = today > last;
        let shortfall = if complete {
            None
        } else {
            management_shortfall(rules, minutes, interactive_contacts, last)
        };
        months.push(ManagementMonth {
            month,
            last_day: last,
            minutes,
            interactive_contacts,
            codes: rules.management_codes(minutes, interactive_contacts),
            complete,
            shortfall,
        });
        match next {
            Some(next) => month = next,
            None => break,
        }
    }
    months
}

fn management_shortfall<R: RuleSet + ?Sized>(
    rules: &R,
    minutes: u32,
    interactive_contacts: u32,
    last: NaiveDate,
) -> Option<Shortfall> {
    let mut needs = Vec::new();
    if let Some(threshold) = rules.next_management_threshold(minutes) {
        needs.push(Need::ManagementMinutes {
            more: threshold.at_least.saturating_sub(minutes),
            target: threshold.at_least,
            codes: threshold.codes,
            by: last,
        });
    }
    if rules.management_needs_interactive_contact() && interactive_contacts == 0 {
        needs.push(Need::InteractiveContact { by: last });
    }
    (!needs.is_empty()).then(|| Shortfall::new(needs))
}
