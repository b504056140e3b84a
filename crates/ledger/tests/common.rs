//! A small builder over `LedgerInput`, so each test states only what it varies.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use wardline_ledger::{Ledger, LedgerInput, ManagementTime, ReadingOrigin, RuleSet, ledger_with};

pub(crate) const NEW_YORK: Tz = chrono_tz::America::New_York;

/// An RFC 3339 instant.
pub(crate) fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

pub(crate) fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// `hh:mm` on local date `day` in `tz`, as UTC.
pub(crate) fn local(tz: Tz, day: NaiveDate, hour: u32, minute: u32) -> DateTime<Utc> {
    let time = NaiveTime::from_hms_opt(hour, minute, 0).unwrap();
    tz.from_local_datetime(&day.and_time(time))
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) tz: Tz,
    pub(crate) start: DateTime<Utc>,
    pub(crate) readings: Vec<(DateTime<Utc>, ReadingOrigin)>,
    pub(crate) management: Vec<ManagementTime>,
    pub(crate) contacts: Vec<DateTime<Utc>>,
    pub(crate) now: DateTime<Utc>,
}

impl Case {
    /// An episode set up at 09:00 New York time on `start_day`, judged at
    /// 12:00 New York time on `today`.
    pub(crate) fn new_york(start_day: &str, today: &str) -> Self {
        Self {
            tz: NEW_YORK,
            start: local(NEW_YORK, date(start_day), 9, 0),
            readings: Vec::new(),
            management: Vec::new(),
            contacts: Vec::new(),
            now: local(NEW_YORK, date(today), 12, 0),
        }
    }

    /// One device reading at local noon on each of `count` days from `first`.
    pub(crate) fn device_days(mut self, first: &str, count: u32) -> Self {
        let first = date(first);
        for n in 0..count {
            let day = first + chrono::Days::new(u64::from(n));
            self.readings
                .push((local(self.tz, day, 12, 0), ReadingOrigin::Device));
        }
        self
    }

    pub(crate) fn reading(mut self, at: DateTime<Utc>, origin: ReadingOrigin) -> Self {
        self.readings.push((at, origin));
        self
    }

    /// `seconds` of management by `practitioner` at local noon on `day`.
    pub(crate) fn time(mut self, day: &str, seconds: i64, practitioner: &str) -> Self {
        self.management.push(ManagementTime {
            at: local(self.tz, date(day), 12, 0),
            seconds,
            practitioner: practitioner.to_owned(),
        });
        self
    }

    /// An interactive contact at local 10:00 on `day`.
    pub(crate) fn contact(mut self, day: &str) -> Self {
        self.contacts.push(local(self.tz, date(day), 10, 0));
        self
    }

    pub(crate) fn input(&self) -> LedgerInput<'_> {
        LedgerInput {
            time_zone: self.tz,
            episode_start: self.start,
            readings: &self.readings,
            management: &self.management,
            interactive_contacts: &self.contacts,
            now: self.now,
        }
    }

    pub(crate) fn run(&self) -> Ledger {
        wardline_ledger::ledger(&self.input())
    }

    pub(crate) fn run_with(&self, rules: &impl RuleSet) -> Ledger {
        ledger_with(rules, &self.input())
    }
}
