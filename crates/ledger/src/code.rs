//! The CPT codes of remote physiologic monitoring.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A CPT code for remote physiologic monitoring, sent as its five digits.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CptCode {
    /// Set-up and patient education on the device, once per episode.
    #[serde(rename = "99453")]
    Cpt99453,
    /// Device supply, 2 to 15 days of readings in a 30-day period.
    #[serde(rename = "99445")]
    Cpt99445,
    /// Device supply, 16 to 30 days of readings in a 30-day period.
    #[serde(rename = "99454")]
    Cpt99454,
    /// Treatment management, 10 to 19 minutes in a calendar month.
    #[serde(rename = "99470")]
    Cpt99470,
    /// Treatment management, the first 20 minutes in a calendar month.
    #[serde(rename = "99457")]
    Cpt99457,
    /// Treatment management, each further 20 minutes in a calendar month.
    #[serde(rename = "99458")]
    Cpt99458,
}

impl CptCode {
    /// Every code, in the order the ledger reports them.
    pub const ALL: [Self; 6] = [
        Self::Cpt99453,
        Self::Cpt99445,
        Self::Cpt99454,
        Self::Cpt99470,
        Self::Cpt99457,
        Self::Cpt99458,
    ];

    /// The five digits, as billed.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cpt99453 => "99453",
            Self::Cpt99445 => "99445",
            Self::Cpt99454 => "99454",
            Self::Cpt99470 => "99470",
            Self::Cpt99457 => "99457",
            Self::Cpt99458 => "99458",
        }
    }

    /// A short description for people, not the CPT descriptor itself (which is
    /// the AMA's text).
    pub const fn description(self) -> &'static str {
        match self {
            Self::Cpt99453 => "RPM device set-up and patient education (once per episode)",
            Self::Cpt99445 => "RPM device supply, 2-15 days of readings in 30 days",
            Self::Cpt99454 => "RPM device supply, 16-30 days of readings in 30 days",
            Self::Cpt99470 => "RPM treatment management, first 10 minutes in a month",
            Self::Cpt99457 => "RPM treatment management, first 20 minutes in a month",
            Self::Cpt99458 => "RPM treatment management, each additional 20 minutes",
        }
    }
}

impl fmt::Display for CptCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A code and how many times the records support it (more than 1 only for 99458).
///
/// A count rather than the code repeated, so an absurd total of minutes costs
/// a number, not a list.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct CodeUnits {
    /// The code.
    pub code: CptCode,
    /// Units supported, at least 1.
    pub units: u32,
}

impl CodeUnits {
    /// One unit of `code`.
    pub const fn one(code: CptCode) -> Self {
        Self { code, units: 1 }
    }
}
