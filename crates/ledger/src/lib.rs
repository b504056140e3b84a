//! Wardline's remote patient monitoring (RPM) ledger.
//!
//! From one patient's records (device readings, treatment management time and
//! interactive contacts) the ledger works out, for each 30-day device period and
//! each calendar month of a monitoring episode, which CPT codes those records
//! support, and what the open period and month are still short of.
//!
//! Everything here is pure: the caller passes the records, the practice's time
//! zone and `now`. Nothing reads a clock, a file or the network, so the same code
//! runs behind the API, in reports and in tests.
//!
//! # What the ledger does not claim
//!
//! It reports what the records support under the rules below, nothing more.
//! Whether a service is billed stays with people: the ledger does not know
//! whether monitoring was medically necessary, whether the patient consented,
//! whether another practice already reported the same period, whether the
//! device meets the FDA definition of a medical device, or whether a payer's
//! own policy departs from CPT. A code in the ledger is "the records are enough
//! for this", never "bill this". A shortfall is a count of what is missing,
//! not a prompt to collect readings or time for the sake of a code.
//!
//! # The rules ([`Us2026`], CPT 2026 as the product specifies them)
//!
//! ## Dates
//!
//! Every input is a UTC instant. Each is turned into a local date in the
//! practice's time zone ([`LedgerInput::time_zone`]) before anything is counted,
//! because the codes are defined on the practice's days and months: in New York
//! a reading at 02:00 UTC belongs to the previous evening, and on the days the
//! clocks change the offset of that date is the one used, so a reading is never
//! dropped or counted on the wrong side of midnight.
//!
//! ## Episode and 30-day periods
//!
//! The episode starts at the set-up instant ([`LedgerInput::episode_start`]);
//! its local date is the first day of period 0. Period `k` covers the local
//! dates `[start + 30k, start + 30(k+1))`; periods run on regardless of
//! calendar months, so one may start on 20 January and end on 18 February. The
//! ledger lists the periods from 0 up to and including the one holding `now`'s
//! local date.
//!
//! ## What is counted
//!
//! * A **device day** is a local date with at least one reading sent by the
//!   device ([`ReadingOrigin::Device`]). Many readings on one day make one
//!   device day. Readings entered by hand ([`ReadingOrigin::Manual`]) never
//!   count: the supply codes pay for a device that transmits, and a number
//!   someone typed in is not a transmission.
//! * Readings count from the set-up instant: one taken earlier, even on the
//!   same day, cannot have come from the device set up for this episode.
//! * Management time and interactive contacts count from the episode's first
//!   local date, so the enrolment visit held on the day of set-up, before the
//!   device was handed over, still counts for that month.
//! * Nothing dated after `now` counts; a record from the future is a clock
//!   error or a plan, not something that happened.
//!
//! ## 99453: set-up and patient education
//!
//! Once per episode, in period 0 only, and only when period 0 has at least 2
//! device days (the 2026 rule lowered the minimum from 16 to 2).
//!
//! ## 99445 and 99454: device supply, per 30-day period
//!
//! 99445 for 2 to 15 device days in the period, 99454 for 16 to 30. Never both;
//! 0 or 1 device day supports neither.
//!
//! ## 99470, 99457 and 99458: treatment management, per calendar month
//!
//! Minutes are the month's management seconds summed and floored to whole
//! minutes (19 min 59 s is 19 minutes). The entries the caller passes are
//! already corrected; a correction may be an entry with negative seconds, and
//! the month's total never goes below 0.
//!
//! All entries of the month count, whoever recorded them: under CPT the time of
//! clinical staff working under the billing practitioner's supervision counts
//! towards that practitioner's codes, and the ledger does not know who
//! supervises whom, so it does not split the month by person.
//!
//! Every management code needs at least one interactive contact in the month
//! (synchronous audio or video with the patient). With one:
//!
//! * 10 to 19 minutes: 99470;
//! * 20 minutes or more: 99457, plus one 99458 for each further full 20 minutes
//!   (40 minutes: 99457 and one 99458; 60: two 99458). 99458 only comes with
//!   99457, and 99470 never comes with 99457.
//!
//! Without an interactive contact the month supports no management code, and
//! its shortfall says so.
//!
//! ## One billing practitioner per period
//!
//! Device codes are reported by one practitioner per 30-day period. The ledger
//! names the practitioner with the most management time whose local date falls
//! in the period (their entries summed, corrections included), breaking a tie
//! by the smallest identifier so the same records always give the same answer.
//! Someone whose total is zero or less has recorded no time; when nobody has,
//! the period names nobody. The choice is made whether or not the period
//! supports a code yet, so an open period shows who is on course to report it;
//! it is a suggestion for the people who bill, who may know of an arrangement
//! the records do not show.
//!
//! ## Shortfall
//!
//! Only the open period and the open month (the ones holding `now`'s local
//! date) carry a [`Shortfall`]; a finished one is what it is. It names the next
//! threshold and the last local date by which it must be met, as structured
//! [`Need`]s and as one human sentence:
//!
//! * period: the next threshold is 2 device days (99445, and 99453 in period 0),
//!   then 16 (99454): `needs 3 more days of device readings by 2026-12-14`. When
//!   too few days are left for it (today counts when it has no device reading
//!   yet), `cannot reach 16 days this period: 5 days remain`. A period with 16
//!   device days or more is short of nothing.
//! * month: the next threshold of minutes is 10 (99470), then 20 (99457), then
//!   each further 20 (99458): `needs 4 more minutes of management by
//!   2026-12-31`; and, while the month has no interactive contact, `needs an
//!   interactive contact (video or phone visit) by 2026-12-31`.
//!
//! # Other rules
//!
//! The thresholds live behind the [`RuleSet`] trait; [`ledger`] applies
//! [`Us2026`], and [`ledger_with`] takes any other rule set (a payer that
//! departs from CPT, a later CPT year) while the counting of days, periods and
//! months stays the same.

mod code;
mod compute;
mod input;
mod report;
mod rules;

pub use code::{CodeUnits, CptCode};
pub use compute::{ledger, ledger_with};
pub use input::{LedgerInput, ManagementTime, ReadingOrigin};
pub use report::{DevicePeriod, Ledger, ManagementMonth, Need, Shortfall};
pub use rules::{RuleSet, Threshold, Us2026};
