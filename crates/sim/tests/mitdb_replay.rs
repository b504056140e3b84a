#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use chrono::Duration;
use wardline_domain::{DeviceMessage, Signal};
use wardline_ecg::wfdb::{Header, decode_format_212_signal};
use wardline_sim::{CardiacScenario, EcgRecord, Scenario, Ward};

use support::{parse_all, read_record, readings_of, start};

#[test]
fn replay_reproduces_the_record_sample_for_sample_and_loops() {
    let (hea, dat, atr) = read_record("201");
    let record = EcgRecord::from_wfdb(&hea, &dat, Some(&atr)).unwrap();
    // Decode independently for the reference.
    let header = Header::parse(&hea).unwrap();
    let mlii = header.find_signal("MLII").unwrap();
    let reference = decode_format_212_signal(&dat, header.signals.len(), mlii).unwrap();
    assert_eq!(reference.len(), 650_000);
    assert_eq!(record.samples, reference);

    let patient = CardiacScenario::record_patient(&record, start());
    let mut scenario = CardiacScenario::replay(patient, "ecg-mitdb201", record, start());
    // 30 min 5.6 s of record, then a little of its second pass.
    let emissions = scenario.advance_to(start() + Duration::seconds(1830));
    let parsed = parse_all(&emissions);
    let mut samples = Vec::new();
    let mut expected_start = start();
    for (_, _, message) in &parsed {
        if let DeviceMessage::Waveform(chunk) = message {
            assert_eq!(chunk.signal, Signal::EcgLeadIi);
            assert_eq!(chunk.sampling_rate_hz, 360.0);
            assert_eq!(chunk.gain, 200.0);
            assert_eq!(chunk.baseline, 1024);
            assert_eq!(chunk.samples.len(), 3600);
            assert_eq!(chunk.start, expected_start);
            expected_start = chunk.end();
            samples.extend_from_slice(&chunk.samples);
        }
    }
    assert_eq!(samples.len(), 183 * 3600);
    assert_eq!(samples[..650_000], reference[..]);
    assert_eq!(samples[650_000..], reference[..samples.len() - 650_000]);

    // A heart rate each minute, from the annotated beats: 201 has AF with fast
    // ventricular response as well as slow junctional stretches.
    let rates = readings_of(&parsed, "ecg-mitdb201");
    assert_eq!(rates.len(), 30);
    assert!(
        rates.iter().all(|r| (30.0..=200.0).contains(&r.value)),
        "{rates:?}"
    );
}

#[test]
fn af_records_load_and_join_the_ward() {
    let mut ward = Ward::standard(9, start());
    for name in ["202", "203", "219", "114"] {
        let (hea, dat, atr) = read_record(name);
        let record = EcgRecord::from_wfdb(&hea, &dat, Some(&atr)).unwrap();
        assert_eq!(record.lead, "MLII", "{name}");
        assert!(record.beats.len() > 1000, "{name}");
        ward.add_ecg_record(record).unwrap();
    }
    // The same record twice would clash.
    let (hea, dat, _) = read_record("219");
    let again = EcgRecord::from_wfdb(&hea, &dat, None).unwrap();
    assert!(again.beats.len() > 1000, "detected beats");
    assert!(ward.add_ecg_record(again).is_err());

    let emissions = ward.advance_to(start() + Duration::minutes(3));
    parse_all(&emissions);
    for name in ["202", "203", "219", "114"] {
        let key = format!("ecg-mitdb{name}");
        let chunks = emissions.iter().filter(|e| e.device_key == key).count();
        // 18 chunks and 3 heart rates.
        assert_eq!(chunks, 21, "{key}");
    }
}
