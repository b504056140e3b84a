//! What every simulated patient offers, and the time helpers they share.

use std::fmt;

use chrono::{DateTime, Duration, FixedOffset, Utc};

use crate::payload::DeviceEmission;
use crate::roster::{DeviceSpec, PatientSpec};

/// One simulated patient with their devices.
///
/// Pull-based: the caller owns the clock and calls [`Scenario::advance_to`] with the
/// current sim time (wall-clock time for a real-time demo, or a faster clock). A
/// scenario evolves on its own fixed internal grid, so the messages it produces depend
/// only on its seed and start, never on how often `advance_to` is called.
pub trait Scenario: fmt::Debug + Send {
    fn patient(&self) -> &PatientSpec;
    fn devices(&self) -> &[DeviceSpec];
    /// Runs the simulation up to `until` (inclusive) and returns what the devices sent
    /// meanwhile, in order of sending. Times before the last call are a no-op.
    fn advance_to(&mut self, until: DateTime<Utc>) -> Vec<DeviceEmission>;
}

/// The patient's local clock: meals, sleep and circadian rhythms follow local time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalClock {
    pub(crate) offset: FixedOffset,
}

impl LocalClock {
    /// Hours since local midnight, 0 ≤ h < 24.
    pub(crate) fn hour_of_day(self, time: DateTime<Utc>) -> f64 {
        let local = time.timestamp() + i64::from(self.offset.local_minus_utc());
        let seconds =
            local.rem_euclid(86_400) as f64 + f64::from(time.timestamp_subsec_millis()) / 1000.0;
        seconds / 3600.0
    }

    /// The local day number (days since 1970-01-01 local).
    pub(crate) fn day(self, time: DateTime<Utc>) -> i64 {
        let local = time.timestamp() + i64::from(self.offset.local_minus_utc());
        local.div_euclid(86_400)
    }

    /// The UTC instant of `hours` after local midnight of local day `day`.
    pub(crate) fn at(self, day: i64, hours: f64) -> DateTime<Utc> {
        let seconds = day * 86_400 - i64::from(self.offset.local_minus_utc());
        DateTime::<Utc>::from_timestamp(seconds, 0).unwrap_or_default()
            + Duration::milliseconds((hours * 3_600_000.0).round() as i64)
    }
}

/// A cosinor term: `amplitude * cos(2π (h − peak) / 24)`, the standard description of a
/// circadian rhythm (Halberg's cosinor; Refinetti et al., "Procedures for numerical
/// analysis of circadian rhythms", Biol Rhythm Res 38(4):275–325, 2007).
pub(crate) fn cosinor(hour_of_day: f64, peak_hour: f64, amplitude: f64) -> f64 {
    amplitude * (std::f64::consts::TAU * (hour_of_day - peak_hour) / 24.0).cos()
}

pub(crate) fn minutes(value: f64) -> Duration {
    Duration::milliseconds((value * 60_000.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_clock_round_trips() {
        let clock = LocalClock {
            offset: FixedOffset::east_opt(3600).unwrap_or(FixedOffset::east_opt(0).unwrap()),
        };
        let t = clock.at(20_000, 7.5);
        assert_eq!(clock.day(t), 20_000);
        assert!((clock.hour_of_day(t) - 7.5).abs() < 1e-9);
    }
}
