//! The gateway's clock against the server's, and device timestamps that are far off.
//!
//! Each answer from the server carries its clock (`server_time` in the body, else the
//! HTTP `Date` header). The offset is that time minus the gateway's clock at the middle
//! of the round trip; samples from short round trips count most. With the offset the
//! gateway knows "server now" even while offline, and judges device timestamps by it.

use std::sync::Mutex;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::Value;
use wardline_domain::{DeviceMessage, PayloadError, PayloadLimits, parse_device_message};

/// Server clock minus gateway clock.
#[derive(Debug, Default)]
pub struct ClockOffset {
    state: Mutex<Option<Estimate>>,
}

#[derive(Debug, Clone, Copy)]
struct Estimate {
    offset_ms: f64,
    /// Uncertainty: half the round trip of the sample (plus the header's resolution).
    error_ms: f64,
}

impl ClockOffset {
    /// Records one sample: the server's clock `server`, seen between `sent` and `received`
    /// on the gateway's clock; `resolution_ms` is how coarse `server` is (1000 for `Date`).
    pub fn record(
        &self,
        server: DateTime<Utc>,
        sent: DateTime<Utc>,
        received: DateTime<Utc>,
        resolution_ms: f64,
    ) {
        let round_trip = (received - sent).num_milliseconds().max(0) as f64;
        let middle = sent + Duration::milliseconds((round_trip / 2.0) as i64);
        let sample = Estimate {
            offset_ms: (server - middle).num_milliseconds() as f64 + resolution_ms / 2.0,
            error_ms: round_trip / 2.0 + resolution_ms / 2.0,
        };
        if let Ok(mut state) = self.state.lock() {
            *state = Some(match *state {
                None => sample,
                Some(previous) => {
                    // Weigh by precision; let old knowledge fade so drift is followed.
                    let previous_error = previous.error_ms * 1.05 + 1.0;
                    let w_new = 1.0 / (sample.error_ms + 1.0).powi(2);
                    let w_old = 1.0 / previous_error.powi(2);
                    Estimate {
                        offset_ms: (previous.offset_ms * w_old + sample.offset_ms * w_new)
                            / (w_old + w_new),
                        error_ms: previous_error.min(sample.error_ms),
                    }
                }
            });
        }
    }

    /// The offset in whole milliseconds, once measured.
    pub fn offset_ms(&self) -> Option<i64> {
        self.state
            .lock()
            .ok()
            .and_then(|state| state.map(|estimate| estimate.offset_ms.round() as i64))
    }

    /// The server's clock now, as well as the gateway knows it.
    pub fn server_now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.offset_ms().unwrap_or(0))
    }
}

/// What the gateway did to a message's timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The payload to queue: the device's own bytes, or rewritten when corrected.
    pub payload: Vec<u8>,
    /// How far every timestamp was moved back, in ms, when the device's clock ran ahead.
    pub corrected_ms: Option<i64>,
}

/// Validates a device message as the server will (payload v1), judging its timestamps
/// against the server's clock `server_now`.
///
/// A device clock that runs ahead by more than `max_skew` would have its readings
/// refused by the server. Assuming the device sent its newest reading just now, every
/// timestamp of the message is moved back by the same amount (keeping their spacing), and
/// the correction is returned so that it is counted and reported. Timestamps in the past
/// are left alone: a device sending a backlog is normal.
pub fn check_message(
    payload: &[u8],
    server_now: DateTime<Utc>,
    max_skew: Duration,
    limits: &PayloadLimits,
) -> Result<Checked, PayloadError> {
    let lenient = PayloadLimits {
        max_future_skew: Duration::days(365 * 100),
        ..*limits
    };
    let message = parse_device_message(payload, server_now, &lenient)?;
    let newest = match &message {
        DeviceMessage::Readings(readings) => readings.iter().map(|reading| reading.effective).max(),
        DeviceMessage::Waveform(chunk) => Some(chunk.end()),
    };
    let Some(newest) = newest else {
        return Ok(Checked {
            payload: payload.to_vec(),
            corrected_ms: None,
        });
    };
    if newest <= server_now + max_skew {
        return Ok(Checked {
            payload: payload.to_vec(),
            corrected_ms: None,
        });
    }
    let shift = newest - server_now;
    let mut document: Value = serde_json::from_slice(payload).map_err(malformed)?;
    shift_times(&mut document, shift);
    let rewritten = serde_json::to_vec(&document).map_err(malformed)?;
    // The corrected message must pass as the server will check it.
    parse_device_message(&rewritten, server_now, limits)?;
    Ok(Checked {
        payload: rewritten,
        corrected_ms: Some(shift.num_milliseconds()),
    })
}

fn malformed(error: serde_json::Error) -> PayloadError {
    PayloadError {
        kind: wardline_domain::PayloadErrorKind::Malformed,
        field: "$".into(),
        reason: error.to_string(),
    }
}

fn shift_field(object: &mut serde_json::Map<String, Value>, field: &str, shift: Duration) {
    if let Some(Value::String(text)) = object.get_mut(field)
        && let Ok(time) = DateTime::parse_from_rfc3339(text)
    {
        *text = (time.with_timezone(&Utc) - shift).to_rfc3339_opts(SecondsFormat::Millis, true);
    }
}

fn shift_times(document: &mut Value, shift: Duration) {
    let Value::Object(message) = document else {
        return;
    };
    shift_field(message, "time", shift);
    if let Some(Value::Array(readings)) = message.get_mut("readings") {
        for reading in readings {
            if let Value::Object(reading) = reading {
                shift_field(reading, "time", shift);
            }
        }
    }
    if let Some(Value::Object(waveform)) = message.get_mut("waveform") {
        shift_field(waveform, "start", shift);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_clock_far_ahead_is_corrected_and_one_in_time_is_kept() {
        let now: DateTime<Utc> = "2026-03-02T10:00:00Z".parse().unwrap_or_default();
        let limits = PayloadLimits::default();
        let fine = br#"{"v":1,"seq":1,"code":"8867-4","value":70,"unit":"/min","time":"2026-03-02T09:59:00Z"}"#;
        let checked = check_message(fine, now, Duration::minutes(5), &limits);
        assert_eq!(
            checked,
            Ok(Checked {
                payload: fine.to_vec(),
                corrected_ms: None
            })
        );
        let ahead = br#"{"v":1,"readings":[{"seq":1,"code":"8480-6","value":120,"unit":"mm[Hg]","time":"2026-03-02T11:00:00Z"},{"seq":2,"code":"8462-4","value":80,"unit":"mm[Hg]","time":"2026-03-02T10:59:00Z"}]}"#;
        let checked = check_message(ahead, now, Duration::minutes(5), &limits);
        let Ok(checked) = checked else {
            panic!("corrected message refused: {checked:?}");
        };
        assert_eq!(checked.corrected_ms, Some(3_600_000));
        let text = String::from_utf8(checked.payload).unwrap_or_default();
        assert!(text.contains("2026-03-02T10:00:00.000Z"), "{text}");
        assert!(text.contains("2026-03-02T09:59:00.000Z"), "{text}");
    }

    #[test]
    fn offset_follows_the_server() {
        let clock = ClockOffset::default();
        let sent = Utc::now();
        let received = sent + Duration::milliseconds(20);
        clock.record(
            sent + Duration::milliseconds(10) + Duration::seconds(90),
            sent,
            received,
            0.0,
        );
        assert_eq!(clock.offset_ms(), Some(90_000));
    }
}
