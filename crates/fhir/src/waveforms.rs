//! ECG as FHIR R4 Observations with `valueSampledData`: one Observation per stored
//! chunk of one lead, coded as the R4 ECG example is (ISO/IEEE 11073 MDC
//! `MDC_ECG_ELEC_POTL`, the lead as the component's code), the samples exactly as stored.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use wardline_domain::{DeviceId, PatientId, Signal};

use crate::UCUM;
use crate::resources::{device_fhir_id, instant, short_hash};

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
    /// ADC units per mV.
    pub gain: f64,
    /// The ADC value of 0 mV.
    pub baseline: i32,
    pub samples: &'a [i32],
}

/// The id of a stored chunk: 32 hexadecimal digits of the SHA-256 of its device and
/// sequence number, as for readings (a chunk's sequence numbers are the device's own,
/// apart from its readings').
pub fn waveform_id(device: &DeviceId, seq: i64) -> String {
    short_hash(&format!("{device}\u{1f}waveform\u{1f}{seq}"))
}

/// An ECG chunk as an R4 Observation: `effectivePeriod` from its first sample to the
/// time the sample after its last would have been taken, and its lead as the one
/// component, whose `valueSampledData` holds every sample as stored, counted from the
/// ADC's zero (`data` = sample − baseline, integers, so nothing is rounded), with
/// `factor` = 1 / gain mV per step from an `origin` of 0 mV and `period` the time between
/// samples in milliseconds. `None` for a signal that is not an ECG lead.
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
                "origin": {"value": 0, "unit": "mV", "system": UCUM, "code": "mV"},
                "period": 1000.0 / facts.sampling_rate_hz,
                "factor": 1.0 / facts.gain,
                "dimensions": 1,
                "data": data,
            }
        }],
    }))
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
            gain: 200.0,
            baseline: 1024,
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
