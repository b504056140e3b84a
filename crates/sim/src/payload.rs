//! Builds payload v1 bytes exactly as a device's firmware would: one JSON object per
//! message, `"v": 1`, per-device increasing `seq` (one per reading or waveform chunk, so a
//! batch consumes several), RFC 3339 UTC times with milliseconds.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use wardline_domain::Signal;

/// One message a device sent, at the simulated time it sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEmission {
    /// The device's stable key, e.g. `cgm-ada`; also its MQTT client id / device id.
    pub device_key: String,
    /// When the device sent the message (sim time). Reading times inside may be earlier
    /// (a backfill after a lost connection) but never later.
    pub sim_time: DateTime<Utc>,
    /// Payload v1 JSON.
    pub payload_bytes: Vec<u8>,
}

/// A reading's value as the device formats it: counts as integers, the rest rounded
/// to the device's display resolution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum Num {
    Int(i64),
    Dec(f64),
}

impl Num {
    /// Rounds to `decimals` places, as a device display does.
    pub(crate) fn round(value: f64, decimals: i32) -> Self {
        if decimals <= 0 {
            Num::Int(value.round() as i64)
        } else {
            let scale = 10f64.powi(decimals);
            Num::Dec((value * scale).round() / scale)
        }
    }
}

/// One measured value before it gets its `seq`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Measured {
    pub(crate) code: &'static str,
    pub(crate) value: Num,
    pub(crate) unit: &'static str,
    pub(crate) time: DateTime<Utc>,
}

impl Measured {
    pub(crate) fn new(
        code: &'static str,
        value: Num,
        unit: &'static str,
        time: DateTime<Utc>,
    ) -> Self {
        Self {
            code,
            value,
            unit,
            time,
        }
    }
}

pub(crate) fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Serialize)]
struct ReadingOut<'a> {
    seq: i64,
    code: &'a str,
    value: Num,
    unit: &'a str,
    time: String,
}

#[derive(Serialize)]
struct SingleOut<'a> {
    v: u8,
    #[serde(flatten)]
    reading: ReadingOut<'a>,
}

#[derive(Serialize)]
struct BatchOut<'a> {
    v: u8,
    readings: Vec<ReadingOut<'a>>,
}

#[derive(Serialize)]
struct WaveformOut<'a> {
    seq: i64,
    signal: &'a str,
    rate_hz: f64,
    start: String,
    gain: f64,
    baseline: i32,
    samples: &'a [i32],
}

#[derive(Serialize)]
struct WaveformMessage<'a> {
    v: u8,
    waveform: WaveformOut<'a>,
}

/// A device's transmitter: owns the sequence counter so that no two messages of a device
/// can share a `seq`, which is how the server recognises retries.
#[derive(Debug, Clone)]
pub(crate) struct Transmitter {
    key: String,
    next_seq: i64,
}

impl Transmitter {
    pub(crate) fn new(key: &str) -> Self {
        Self {
            key: key.to_owned(),
            next_seq: 1,
        }
    }

    fn take_seq(&mut self) -> i64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn emit(&self, sim_time: DateTime<Utc>, payload_bytes: Vec<u8>) -> DeviceEmission {
        DeviceEmission {
            device_key: self.key.clone(),
            sim_time,
            payload_bytes,
        }
    }

    fn reading<'a>(&mut self, measured: &'a Measured) -> ReadingOut<'a> {
        ReadingOut {
            seq: self.take_seq(),
            code: measured.code,
            value: measured.value,
            unit: measured.unit,
            time: rfc3339(measured.time),
        }
    }

    /// One reading as a single message, several as a batch (stored all or nothing, which
    /// is what a BP cuff wants for systolic, diastolic and pulse of one measurement).
    pub(crate) fn readings(
        &mut self,
        sim_time: DateTime<Utc>,
        measured: &[Measured],
    ) -> Option<DeviceEmission> {
        let bytes = match measured {
            [] => return None,
            [one] => {
                let reading = self.reading(one);
                to_bytes(&SingleOut { v: 1, reading })
            }
            many => {
                let readings = many.iter().map(|m| self.reading(m)).collect();
                to_bytes(&BatchOut { v: 1, readings })
            }
        };
        Some(self.emit(sim_time, bytes))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn waveform(
        &mut self,
        sim_time: DateTime<Utc>,
        signal: Signal,
        rate_hz: f64,
        start: DateTime<Utc>,
        gain: f64,
        baseline: i32,
        samples: &[i32],
    ) -> DeviceEmission {
        let message = WaveformMessage {
            v: 1,
            waveform: WaveformOut {
                seq: self.take_seq(),
                signal: signal.as_str(),
                rate_hz,
                start: rfc3339(start),
                gain,
                baseline,
                samples,
            },
        };
        self.emit(sim_time, to_bytes(&message))
    }
}

fn to_bytes<T: Serialize>(message: &T) -> Vec<u8> {
    // Serialising plain structs of numbers and strings into memory cannot fail; the
    // fallback only keeps this total (and would be rejected by the server, visibly).
    serde_json::to_vec(message).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_batch_messages_have_the_v1_shape() {
        let time = DateTime::parse_from_rfc3339("2026-11-24T11:55:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let mut tx = Transmitter::new("thermo-x");
        let single = tx
            .readings(
                time,
                &[Measured::new("8310-5", Num::round(37.04, 1), "Cel", time)],
            )
            .map(|e| String::from_utf8(e.payload_bytes).unwrap_or_default());
        assert_eq!(
            single.as_deref(),
            Some(
                r#"{"v":1,"seq":1,"code":"8310-5","value":37.0,"unit":"Cel","time":"2026-11-24T11:55:00.000Z"}"#
            )
        );
        let batch = tx
            .readings(
                time,
                &[
                    Measured::new("8480-6", Num::round(121.4, 0), "mm[Hg]", time),
                    Measured::new("8462-4", Num::round(79.6, 0), "mm[Hg]", time),
                ],
            )
            .map(|e| String::from_utf8(e.payload_bytes).unwrap_or_default());
        assert_eq!(
            batch.as_deref(),
            Some(
                r#"{"v":1,"readings":[{"seq":2,"code":"8480-6","value":121,"unit":"mm[Hg]","time":"2026-11-24T11:55:00.000Z"},{"seq":3,"code":"8462-4","value":80,"unit":"mm[Hg]","time":"2026-11-24T11:55:00.000Z"}]}"#
            )
        );
    }
}
