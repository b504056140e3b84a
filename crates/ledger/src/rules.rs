//! The thresholds that turn counts into codes, one implementation per rule set.

use serde::{Deserialize, Serialize};

use crate::{CodeUnits, CptCode};

/// The next count that would add or change a code, and the codes it would bring.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Threshold {
    /// Device days or minutes needed, in total.
    pub at_least: u32,
    /// What reaching it would support.
    pub codes: Vec<CptCode>,
}

/// A country's or payer's rules for remote monitoring codes.
///
/// The ledger counts device days per period and minutes and contacts per month
/// the same way for every rule set; a rule set says how long a period is and
/// what each count supports. [`Us2026`] is the US CPT 2026 set.
pub trait RuleSet {
    /// A stable name for the rules, reported with every ledger.
    fn name(&self) -> &'static str;

    /// Days in one device period (30 under CPT). A rule set answering 0 is
    /// treated as 1.
    fn period_days(&self) -> u32;

    /// Codes a device period supports, given its index in the episode (0 for
    /// the first) and its device days.
    fn device_codes(&self, period_index: u32, device_days: u32) -> Vec<CodeUnits>;

    /// The next number of device days that would support more, or `None` when
    /// more days would add nothing.
    fn next_device_threshold(&self, period_index: u32, device_days: u32) -> Option<Threshold>;

    /// Codes a calendar month's management supports.
    fn management_codes(&self, minutes: u32, interactive_contacts: u32) -> Vec<CodeUnits>;

    /// The next total of minutes that would support more, or `None` when more
    /// minutes would add nothing.
    fn next_management_threshold(&self, minutes: u32) -> Option<Threshold>;

    /// Whether management codes need an interactive contact in the month.
    fn management_needs_interactive_contact(&self) -> bool;
}

/// US remote physiologic monitoring under CPT 2026, as the crate docs state it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Us2026;

impl Us2026 {
    /// Days in a device period.
    pub const PERIOD_DAYS: u32 = 30;
    /// Device days in period 0 for 99453 (16 before 2026).
    pub const SET_UP_MIN_DAYS: u32 = 2;
    /// Device days for 99445.
    pub const SHORT_SUPPLY_MIN_DAYS: u32 = 2;
    /// Device days for 99454.
    pub const FULL_SUPPLY_MIN_DAYS: u32 = 16;
    /// Minutes in a month for 99470.
    pub const SHORT_MANAGEMENT_MIN_MINUTES: u32 = 10;
    /// Minutes in a month for 99457.
    pub const FIRST_MANAGEMENT_MINUTES: u32 = 20;
    /// Further full minutes for each 99458.
    pub const ADDITIONAL_MANAGEMENT_MINUTES: u32 = 20;
}

impl RuleSet for Us2026 {
    fn name(&self) -> &'static str {
        "us_cpt_2026"
    }

    fn period_days(&self) -> u32 {
        Self::PERIOD_DAYS
    }

    fn device_codes(&self, period_index: u32, device_days: u32) -> Vec<CodeUnits> {
        let mut codes = Vec::with_capacity(2);
        if period_index == 0 && device_days >= Self::SET_UP_MIN_DAYS {
            codes.push(CodeUnits::one(CptCode::Cpt99453));
        }
        if device_days >= Self::FULL_SUPPLY_MIN_DAYS {
            codes.push(CodeUnits::one(CptCode::Cpt99454));
        } else if device_days >= Self::SHORT_SUPPLY_MIN_DAYS {
            codes.push(CodeUnits::one(CptCode::Cpt99445));
        }
        codes
    }

    fn next_device_threshold(&self, period_index: u32, device_days: u32) -> Option<Threshold> {
        if device_days < Self::SHORT_SUPPLY_MIN_DAYS {
            // Set-up and the short supply code share their 2-day minimum.
            let codes = if period_index == 0 {
                vec![CptCode::Cpt99453, CptCode::Cpt99445]
            } else {
                vec![CptCode::Cpt99445]
            };
            Some(Threshold {
                at_least: Self::SHORT_SUPPLY_MIN_DAYS,
                codes,
            })
        } else if device_days < Self::FULL_SUPPLY_MIN_DAYS {
            Some(Threshold {
                at_least: Self::FULL_SUPPLY_MIN_DAYS,
                codes: vec![CptCode::Cpt99454],
            })
        } else {
            None
        }
    }

    fn management_codes(&self, minutes: u32, interactive_contacts: u32) -> Vec<CodeUnits> {
        if interactive_contacts == 0 {
            return Vec::new();
        }
        if minutes >= Self::FIRST_MANAGEMENT_MINUTES {
            let additional =
                (minutes - Self::FIRST_MANAGEMENT_MINUTES) / Self::ADDITIONAL_MANAGEMENT_MINUTES;
            let mut codes = vec![CodeUnits::one(CptCode::Cpt99457)];
            if additional > 0 {
                codes.push(CodeUnits {
                    code: CptCode::Cpt99458,
                    units: additional,
                });
            }
            codes
        } else if minutes >= Self::SHORT_MANAGEMENT_MIN_MINUTES {
            vec![CodeUnits::one(CptCode::Cpt99470)]
        } else {
            Vec::new()
        }
    }

    fn next_management_threshold(&self, minutes: u32) -> Option<Threshold> {
        if minutes < Self::SHORT_MANAGEMENT_MIN_MINUTES {
            Some(Threshold {
                at_least: Self::SHORT_MANAGEMENT_MIN_MINUTES,
                codes: vec![CptCode::Cpt99470],
            })
        } else if minutes < Self::FIRST_MANAGEMENT_MINUTES {
            Some(Threshold {
                at_least: Self::FIRST_MANAGEMENT_MINUTES,
                codes: vec![CptCode::Cpt99457],
            })
        } else {
            let blocks =
                (minutes - Self::FIRST_MANAGEMENT_MINUTES) / Self::ADDITIONAL_MANAGEMENT_MINUTES;
            // No next threshold past u32::MAX minutes: nothing that large is real time.
            let at_least = blocks
                .checked_add(1)?
                .checked_mul(Self::ADDITIONAL_MANAGEMENT_MINUTES)?
                .checked_add(Self::FIRST_MANAGEMENT_MINUTES)?;
            Some(Threshold {
                at_least,
                codes: vec![CptCode::Cpt99458],
            })
        }
    }

    fn management_needs_interactive_contact(&self) -> bool {
        true
    }
}
