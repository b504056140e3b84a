//! What a device or a PHD gateway posts to the FHIR base: a Bundle, read entry by entry,
//! and an Observation posted alone.
#![no_main]

use chrono::{Duration, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // A fixed clock, so that a failing input fails again when it is replayed.
    let now = Utc
        .with_ymd_and_hms(2026, 6, 1, 12, 0, 0)
        .single()
        .expect("a valid time");
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return;
    };
    let skew = Duration::minutes(5);
    if let Ok((_, entries)) = wardline_fhir::read_bundle(&value, now, skew) {
        for entry in entries.into_iter().flatten() {
            if let wardline_fhir::EntryRequest::Observation(observation) = entry.request {
                for reading in &observation.readings {
                    // What is read is what may be stored: a finite value, in range.
                    assert!(reading.value.is_finite());
                    let (min, max) = reading.code.spec().possible_range;
                    assert!((min..=max).contains(&reading.value));
                }
                for lead in &observation.waveforms {
                    // An ECG lead read is one the chunk format stores, and gives back.
                    let header = wardline_waveform::ChunkHeader {
                        sampling_rate_hz: lead.sampling_rate_hz,
                        start_ms: lead.start.timestamp_millis(),
                        scale: wardline_waveform::Scale::Factor(lead.factor),
                        baseline: 0,
                        origin: lead.origin,
                    };
                    let chunk = wardline_waveform::encode(&header, &lead.samples)
                        .expect("a lead that was read encodes");
                    let back = wardline_waveform::decode(&chunk).expect("and decodes");
                    assert_eq!(back.samples, lead.samples);
                    assert_eq!(back.header, header);
                }
            }
        }
    }
    let _ = wardline_fhir::read_observation(&value, now, skew);
});
