//! What the ledger reports.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::{CodeUnits, CptCode};

/// One episode's periods and months, as far as `now`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Ledger {
    /// The rule set applied ([`crate::RuleSet::name`]).
    pub rules: String,
    /// 30-day device periods from the episode's start up to and including the
    /// one holding `now`; empty when `now` is before the start.
    pub periods: Vec<DevicePeriod>,
    /// Calendar months from the episode's first month up to and including
    /// `now`'s; empty when `now` is before the start.
    pub months: Vec<ManagementMonth>,
}

/// One 30-day device period.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct DevicePeriod {
    /// 0 for the episode's first period.
    pub index: u32,
    /// First local date of the period.
    pub first_day: NaiveDate,
    /// Last local date of the period (inclusive).
    pub last_day: NaiveDate,
    /// Local dates in the period with at least one device-sent reading.
    pub device_days: u32,
    /// Codes the period's records support (so far, while it is open).
    pub codes: Vec<CodeUnits>,
    /// The one practitioner named for the period's device codes: the most
    /// management time in the period, ties to the smallest identifier; `None`
    /// when nobody recorded time.
    pub billing_practitioner: Option<String>,
    /// Whether `now` is past the period's last day.
    pub complete: bool,
    /// What the open period is still short of; `None` for a complete period or
    /// one short of nothing.
    pub shortfall: Option<Shortfall>,
}

impl DevicePeriod {
    /// Units of `code` the period supports (0 when none).
    pub fn units_of(&self, code: CptCode) -> u32 {
        units_of(&self.codes, code)
    }
}

/// One calendar month of treatment management.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct ManagementMonth {
    /// First day of the month.
    pub month: NaiveDate,
    /// Last day of the month.
    pub last_day: NaiveDate,
    /// Whole minutes of management in the month, corrections applied, never below 0.
    pub minutes: u32,
    /// Interactive contacts in the month.
    pub interactive_contacts: u32,
    /// Codes the month's records support (so far, while it is open).
    pub codes: Vec<CodeUnits>,
    /// Whether `now` is past the month's last day.
    pub complete: bool,
    /// What the open month is still short of; `None` for a complete month.
    pub shortfall: Option<Shortfall>,
}

impl ManagementMonth {
    /// Units of `code` the month supports (0 when none).
    pub fn units_of(&self, code: CptCode) -> u32 {
        units_of(&self.codes, code)
    }
}

fn units_of(codes: &[CodeUnits], code: CptCode) -> u32 {
    codes
        .iter()
        .filter(|c| c.code == code)
        .map(|c| c.units)
        .sum()
}

/// What an open period or month is short of.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Shortfall {
    /// Each missing thing, for software.
    pub needs: Vec<Need>,
    /// The same for people: each need's sentence, joined by "; ".
    pub message: String,
}

impl Shortfall {
    /// A shortfall of `needs`, with its message.
    pub fn new(needs: Vec<Need>) -> Self {
        let message = needs
            .iter()
            .map(Need::sentence)
            .collect::<Vec<_>>()
            .join("; ");
        Self { needs, message }
    }
}

/// One thing an open period or month is missing.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Need {
    /// More device days, still possible in the period.
    DeviceDays {
        /// Device days still to come.
        more: u32,
        /// Device days the threshold needs in total.
        target: u32,
        /// What reaching it would support.
        codes: Vec<CptCode>,
        /// Last local date of the period.
        by: NaiveDate,
    },
    /// More device days than the period has days left for.
    DeviceDaysOutOfReach {
        /// Device days the threshold needs in total.
        target: u32,
        /// What it would have supported.
        codes: Vec<CptCode>,
        /// Days left on which a reading could still add a device day: today
        /// (unless it already has one) to the period's last day.
        days_remaining: u32,
        /// Last local date of the period.
        last_day: NaiveDate,
    },
    /// More management minutes in the month.
    ManagementMinutes {
        /// Minutes still to come.
        more: u32,
        /// Minutes the threshold needs in total.
        target: u32,
        /// What reaching it would support (given an interactive contact).
        codes: Vec<CptCode>,
        /// Last day of the month.
        by: NaiveDate,
    },
    /// An interactive contact, without which no management code is supported.
    InteractiveContact {
        /// Last day of the month.
        by: NaiveDate,
    },
}

impl Need {
    /// The need as a sentence, e.g. `needs 3 more days of device readings by 2026-12-14`.
    pub fn sentence(&self) -> String {
        match self {
            Self::DeviceDays { more, by, .. } => {
                format!(
                    "needs {more} more {} of device readings by {by}",
                    plural(*more, "day", "days")
                )
            }
            Self::DeviceDaysOutOfReach {
                target,
                days_remaining,
                ..
            } => format!(
                "cannot reach {target} days this period: {days_remaining} {}",
                plural(*days_remaining, "day remains", "days remain")
            ),
            Self::ManagementMinutes { more, by, .. } => format!(
                "needs {more} more {} of management by {by}",
                plural(*more, "minute", "minutes")
            ),
            Self::InteractiveContact { by } => {
                format!("needs an interactive contact (video or phone visit) by {by}")
            }
        }
    }
}

fn plural(n: u32, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}
