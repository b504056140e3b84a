//! ECG as FHIR R4 Observations with `valueSampledData`, both ways: one Observation per
//! stored chunk of one lead, coded as the R4 ECG example is (ISO/IEEE 11073 MDC
//! `MDC_ECG_ELEC_POTL`, the lead as the component's code), the samples exactly as stored;
//! and an ECG posted that way read into one chunk per lead, its samples, origin and
//! factor kept as sent.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use wardline_domain::{DeviceId, PatientId, Signal};

use crate::UCUM;
use crate::inbound::{InboundError, invalid, not_supported, required, value_error};
use crate::resources::{IdKind, device_fhir_id, instant, kind_id};

/// The PHD IG's name for the same MDC nomenclature.
const MDC_PHD: &str = "urn:iso:std:iso:11073:10101";
/// Most samples in one lead of one Observation: as many as a device's waveform message
/// may carry (a minute at 1 kHz).
pub const MAX_SAMPLES_PER_LEAD: usize = 60_000;
/// The sampling rates Wardline takes, as for a device's waveform message.
const RATES_HZ: std::ops::RangeInclusive<f64> = 1.0..=10_000.0;

/// ISO/IEEE 11073-10101 nomenclature (MDC) as FHIR names it.
pub const MDC: &str = "urn:oid:2.16.840.1.113883.6.24";
/// MDC_ECG_ELEC_POTL: an ECG's electric potential, whatever the lead.
pub const MDC_ECG: &str = "131328";
const CATEGORY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// A lead's MDC code and name (MDC_ECG_ELEC_POTL plus the lead's number in
/// MDC_ECG_LEAD); `None` for signals that are not ECG leads.
pub fn lead_code(signal: Signal) -> Option<(&'static str, &'static str)> {
    match signal {
        Signal::EcgLeadI => Some(("131329", "MDC_ECG_ELEC_POTL_I")),
        Signal::EcgLeadIi => Some(("131330", "MDC_ECG_ELEC_POTL_II")),
        Signal::EcgLeadIii => Some(("131389", "MDC_ECG_ELEC_POTL_III")),
        Signal::EcgLeadV1 => Some(("131331", "MDC_ECG_ELEC_POTL_V1")),
        Signal::EcgLeadV2 => Some(("131332", "MDC_ECG_ELEC_POTL_V2")),
        Signal::EcgLeadV5 => Some(("131335", "MDC_ECG_ELEC_POTL_V5")),
        Signal::Pleth | Signal::Respiration => None,
    }
}

/// The lead an MDC code names.
pub fn lead_of(code: &str) -> Option<Signal> {
    Signal::ALL
        .into_iter()
        .find(|signal| lead_code(*signal).is_some_and(|(lead, _)| lead == code))
}

/// One lead of an ECG posted as `valueSampledData`: its samples as sent, and the origin
/// and factor that make them millivolts.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundWaveform {
    /// Made of the start and the lead ([`Signal::seq_at`]): the same ECG sent again is a
    /// retry.
    pub seq: i64,
    pub signal: Signal,
    pub sampling_rate_hz: f64,
    pub start: DateTime<Utc>,
    /// mV per step of `samples` (the factor, converted to mV when sent in µV or V).
    pub factor: f64,
    /// The mV that a sample of 0 means (the origin, converted likewise).
    pub origin: f64,
    pub samples: Vec<i32>,
}

impl InboundWaveform {
    /// When the sample after the last one would have been taken.
    pub fn end(&self) -> DateTime<Utc> {
        let micros = (self.samples.len() as f64 * 1e6 / self.sampling_rate_hz).round();
        self.start + chrono::Duration::microseconds(micros as i64)
    }
}

/// An ECG's leads: each component's `valueSampledData` (or the Observation's own, when
/// its code is a lead), starting at `start`, none ending after `latest_end`.
pub(crate) fn ecg_leads(
    resource: &Map<String, Value>,
    path: &str,
    start: DateTime<Utc>,
    latest_end: DateTime<Utc>,
) -> Result<Vec<InboundWaveform>, InboundError> {
    let mut leads = Vec::new();
    if let Some(sampled) = resource.get("valueSampledData") {
        let code = resource
            .get("code")
            .ok_or_else(|| required(format!("{path}.code"), "missing"))?;
        let signal = lead_named(code, &format!("{path}.code"))?;
        leads.push(lead(
            signal,
            sampled,
            &format!("{path}.valueSampledData"),
            start,
            latest_end,
        )?);
    }
    let components = match resource.get("component") {
        None => &Vec::new(),
        Some(Value::Array(components)) => components,
        Some(_) => return Err(invalid(format!("{path}.component"), "expected an array")),
    };
    for (index, component) in components.iter().enumerate() {
        let at = format!("{path}.component[{index}]");
        let Some(sampled) = component.get("valueSampledData") else {
            return Err(not_supported(
                &at,
                "an ECG's components are its leads, each a valueSampledData",
            ));
        };
        let code = component
            .get("code")
            .ok_or_else(|| required(format!("{at}.code"), "the lead is missing"))?;
        let signal = lead_named(code, &format!("{at}.code"))?;
        if leads
            .iter()
            .any(|lead: &InboundWaveform| lead.signal == signal)
        {
            return Err(value_error(
                format!("{at}.code"),
                format!("lead {} appears twice", signal.as_str()),
            ));
        }
        leads.push(lead(
            signal,
            sampled,
            &format!("{at}.valueSampledData"),
            start,
            latest_end,
        )?);
    }
    Ok(leads)
}

/// The lead a concept names by its MDC code.
fn lead_named(concept: &Value, expression: &str) -> Result<Signal, InboundError> {
    let codings = concept
        .get("coding")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    codings
        .iter()
        .filter(|coding| {
            matches!(
                coding.get("system").and_then(Value::as_str),
                Some(MDC | MDC_PHD)
            )
        })
        .find_map(|coding| coding.get("code").and_then(Value::as_str).and_then(lead_of))
        .ok_or_else(|| {
            let leads: Vec<String> = Signal::ALL
                .into_iter()
                .filter_map(lead_code)
                .map(|(code, name)| format!("{code} ({name})"))
                .collect();
            not_supported(
                format!("{expression}.coding"),
                format!(
                    "not an ECG lead Wardline records; the leads are MDC ({MDC}) {}",
                    leads.join(", ")
                ),
            )
        })
}

/// How many mV one unit of an origin is: mV, µV or V by UCUM code (or unit), and mV when
/// the origin says none (as the R4 example does), since an ECG lead's potential is
/// Wardline's in mV.
fn millivolts_per(origin: &Map<String, Value>, expression: &str) -> Result<f64, InboundError> {
    let unit = origin
        .get("code")
        .or_else(|| origin.get("unit"))
        .and_then(Value::as_str);
    match unit {
        None | Some("mV") => Ok(1.0),
        Some("uV" | "µV" | "μV") => Ok(0.001),
        Some("V") => Ok(1000.0),
        Some(other) => Err(value_error(
            format!("{expression}.code"),
            format!("{other:?}: an ECG lead's potential is in mV, uV or V"),
        )),
    }
}

fn number(sampled: &Map<String, Value>, name: &str, at: &str) -> Result<Option<f64>, InboundError> {
    match sampled.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => number
            .as_f64()
            .filter(|value| value.is_finite())
            .map(Some)
            .ok_or_else(|| invalid(format!("{at}.{name}"), "not a finite number")),
        Some(_) => Err(invalid(format!("{at}.{name}"), "expected a number")),
    }
}

/// One lead's `SampledData`.
fn lead(
    signal: Signal,
    sampled: &Value,
    at: &str,
    start: DateTime<Utc>,
    latest_end: DateTime<Utc>,
) -> Result<InboundWaveform, InboundError> {
    let sampled = sampled
        .as_object()
        .ok_or_else(|| invalid(at, "expected a SampledData object"))?;
    let origin = sampled
        .get("origin")
        .and_then(Value::as_object)
        .ok_or_else(|| required(format!("{at}.origin"), "the value a sample of 0 means"))?;
    let origin_value = number(origin, "value", &format!("{at}.origin"))?
        .ok_or_else(|| required(format!("{at}.origin.value"), "missing"))?;
    let scale = millivolts_per(origin, &format!("{at}.origin"))?;
    let period = number(sampled, "period", at)?
        .ok_or_else(|| required(format!("{at}.period"), "the milliseconds between samples"))?;
    let rate = 1000.0 / period;
    if !(period > 0.0 && RATES_HZ.contains(&rate)) {
        return Err(value_error(
            format!("{at}.period"),
            format!("{period} ms between samples is outside 0.1 ms to 1000 ms (1 to 10000 Hz)"),
        ));
    }
    // FHIR's default factor is 1.
    let factor = number(sampled, "factor", at)?.unwrap_or(1.0);
    if factor == 0.0 {
        return Err(value_error(
            format!("{at}.factor"),
            "a factor of 0 makes every sample the origin",
        ));
    }
    match sampled.get("dimensions") {
        Some(Value::Number(dimensions)) if dimensions.as_u64() == Some(1) => {}
        Some(dimensions) => {
            return Err(not_supported(
                format!("{at}.dimensions"),
                format!(
                    "{dimensions}: one lead per SampledData (dimensions 1); send each lead as its own component"
                ),
            ));
        }
        None => return Err(required(format!("{at}.dimensions"), "missing")),
    }
    let data = match sampled.get("data") {
        Some(Value::String(data)) => data,
        Some(_) => return Err(invalid(format!("{at}.data"), "expected a string")),
        None => {
            return Err(required(
                format!("{at}.data"),
                "no samples: there is nothing to store",
            ));
        }
    };
    let mut samples = Vec::new();
    for (index, token) in data.split_whitespace().enumerate() {
        if samples.len() == MAX_SAMPLES_PER_LEAD {
            return Err(value_error(
                format!("{at}.data"),
                format!(
                    "more than {MAX_SAMPLES_PER_LEAD} samples; send a long recording as several Observations"
                ),
            ));
        }
        let sample = match token {
            "E" | "L" | "U" => {
                return Err(value_error(
                    format!("{at}.data"),
                    format!(
                        "sample {index} is {token:?} (no value, or beyond the device's limits); Wardline stores a lead whose every sample was measured"
                    ),
                ));
            }
            _ => token.parse::<i32>().map_err(|_| {
                value_error(
                    format!("{at}.data"),
                    format!(
                        "sample {index} is {token:?}, not a whole number of steps; send integers with the factor that scales them"
                    ),
                )
            })?,
        };
        samples.push(sample);
    }
    if samples.is_empty() {
        return Err(required(
            format!("{at}.data"),
            "no samples: there is nothing to store",
        ));
    }
    let (factor, origin_value) = (factor * scale, origin_value * scale);
    if !(factor.is_finite() && origin_value.is_finite()) {
        return Err(value_error(
            format!("{at}.origin"),
            "the origin or factor is beyond any potential once in mV",
        ));
    }
    let waveform = InboundWaveform {
        seq: signal.seq_at(start),
        signal,
        sampling_rate_hz: rate,
        start,
        factor,
        origin: origin_value,
        samples,
    };
    if waveform.end() > latest_end {
        return Err(value_error(
            format!("{at}.data"),
            "the recording ends in the future beyond the allowed clock skew",
        ));
    }
    Ok(waveform)
}

/// One stored chunk of one signal, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveformFacts<'a> {
    pub device: DeviceId,
    pub seq: i64,
    pub patient: PatientId,
    pub signal: Signal,
    pub sampling_rate_hz: f64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// mV per ADC unit, exactly as stored (a chunk that came as FHIR keeps its factor).
    pub factor: f64,
    /// The ADC value of the origin.
    pub baseline: i32,
    /// The mV at the baseline: 0 for what devices send, a FHIR upload's origin.
    pub origin: f64,
    pub samples: &'a [i32],
}

/// The id of a stored chunk, made of its device and sequence number as a reading's is
/// (`dev.0011223344556677.w42`; a chunk's sequence numbers are the device's own, apart
/// from its readings'), so that it is read again by its id.
pub fn waveform_id(device: &DeviceId, seq: i64) -> String {
    kind_id(device, IdKind::Waveform, seq)
}

/// An ECG chunk as an R4 Observation: `effectivePeriod` from its first sample to the
/// time the sample after its last would have been taken, and its lead as the one
/// component, whose `valueSampledData` holds every sample as stored, counted from the
/// baseline (`data` = sample − baseline, integers, so nothing is rounded), with `factor`
/// mV per step from the `origin` in mV and `period` the time between samples in
/// milliseconds. A chunk that came as FHIR comes back with its data, factor and origin as
/// sent (in mV). `None` for a signal that is not an ECG lead.
pub fn ecg_observation(facts: &WaveformFacts<'_>) -> Option<Value> {
    let (lead, lead_name) = lead_code(facts.signal)?;
    let data = facts
        .samples
        .iter()
        .map(|sample| (i64::from(*sample) - i64::from(facts.baseline)).to_string())
        .collect::<Vec<_>>()
        .join(" ");
    Some(json!({
        "resourceType": "Observation",
        "id": waveform_id(&facts.device, facts.seq),
        "identifier": [{"system": "urn:wardline:waveform",
                        "value": format!("{}/{}", facts.device, facts.seq)}],
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": "procedure", "display": "Procedure"}]}],
        "code": {"coding": [{"system": MDC, "code": MDC_ECG, "display": "MDC_ECG_ELEC_POTL"}],
                 "text": "ECG"},
        "subject": {"reference": format!("Patient/{}", facts.patient)},
        "effectivePeriod": {"start": instant(facts.start), "end": instant(facts.end)},
        "device": {"reference": format!("Device/{}", device_fhir_id(&facts.device)),
                   "identifier": {"system": "urn:wardline:device", "value": facts.device.as_str()},
                   "display": facts.device.as_str()},
        "component": [{
            "code": {"coding": [{"system": MDC, "code": lead, "display": lead_name}],
                     "text": facts.signal.as_str()},
            "valueSampledData": {
                "origin": {"value": decimal(facts.origin), "unit": "mV", "system": UCUM, "code": "mV"},
                "period": 1000.0 / facts.sampling_rate_hz,
                "factor": facts.factor,
                "dimensions": 1,
                "data": data,
            }
        }],
    }))
}

/// A whole number without a fraction (the origin a device's chunk has, 0, and the R4
/// example's, 2048, come back as they are written), anything else as it is.
fn decimal(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn an_ecg_chunk_keeps_every_sample_and_says_how_to_read_them() {
        let samples = [1024, 1030, 990, -5, i32::MAX];
        let start = DateTime::parse_from_rfc3339("2026-12-01T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let facts = WaveformFacts {
            device: DeviceId::parse("dev_0011223344556677").unwrap(),
            seq: 9,
            patient: PatientId::random(),
            signal: Signal::EcgLeadIi,
            sampling_rate_hz: 250.0,
            start,
            end: start + chrono::Duration::milliseconds(20),
            factor: 0.005,
            baseline: 1024,
            origin: 0.0,
            samples: &samples,
        };
        let observation = ecg_observation(&facts).unwrap();
        let sampled = &observation["component"][0]["valueSampledData"];
        assert_eq!(observation["code"]["coding"][0]["code"], "131328");
        assert_eq!(
            observation["component"][0]["code"]["coding"][0]["code"],
            "131330"
        );
        assert_eq!(sampled["period"], 4.0);
        assert_eq!(sampled["factor"], 0.005);
        // Counted from the baseline, without overflow at the ends of the range.
        assert_eq!(
            sampled["data"],
            format!("0 6 -34 -1029 {}", i64::from(i32::MAX) - 1024)
        );
        // value = origin + factor × data gives the physical value of each sample.
        let millivolts: Vec<f64> = sampled["data"]
            .as_str()
            .unwrap()
            .split(' ')
            .map(|step| 0.005 * step.parse::<f64>().unwrap())
            .collect();
        assert!((millivolts[2] - (990.0 - 1024.0) / 200.0).abs() < 1e-12);
        assert_eq!(
            observation["effectivePeriod"]["end"],
            "2026-12-01T08:00:00.020Z"
        );
        assert!(
            ecg_observation(&WaveformFacts {
                signal: Signal::Pleth,
                ..facts
            })
            .is_none()
        );
    }
}
