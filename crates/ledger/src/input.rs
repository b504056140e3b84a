//! What the caller passes in: one patient's records for one monitoring episode.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Where a reading came from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadingOrigin {
    /// Sent by the monitoring device itself; counts towards device days.
    Device,
    /// Entered by hand, by the patient or by staff; never a device day.
    Manual,
}

/// One stretch of treatment management time (clinician or clinical staff).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct ManagementTime {
    /// When the time was spent; its local date places it in a month and a period.
    pub at: DateTime<Utc>,
    /// Length in seconds. Negative for a correction of earlier time: the month's
    /// total is floored at 0, never an entry on its own.
    pub seconds: i64,
    /// Who spent it: an opaque identifier, compared as text to break ties.
    pub practitioner: String,
}

/// One patient's records for one monitoring episode, and the moment to judge them at.
#[derive(Debug, Clone, Copy)]
pub struct LedgerInput<'a> {
    /// The practice's time zone: days and months are its local dates.
    pub time_zone: Tz,
    /// Device set-up: the episode, and its first 30-day period, start on this
    /// instant's local date.
    pub episode_start: DateTime<Utc>,
    /// Readings with their origin. One per day is enough; more are harmless.
    pub readings: &'a [(DateTime<Utc>, ReadingOrigin)],
    /// Treatment management time, corrections already applied or passed as
    /// negative entries.
    pub management: &'a [ManagementTime],
    /// Instants of interactive contacts: synchronous audio or video with the patient.
    pub interactive_contacts: &'a [DateTime<Utc>],
    /// The moment the ledger is drawn up; nothing after it is counted.
    pub now: DateTime<Utc>,
}
