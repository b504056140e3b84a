//! Checks of [`ClinicalStore`](crate::ClinicalStore).

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use wardline_domain::{DeviceId, ObservationCode, PatientId, Reading, RhythmKind, Signal};

use super::{assigned_device, at, audit, device, glucose, heart_rate, patient, readings};
use crate::*;

fn derived_only(derived: Vec<NewDerivedObservation>) -> AnalysisResults {
    AnalysisResults {
        derived,
        recorded: at(0),
        ..AnalysisResults::default()
    }
}

/// Every CGM reading of `patient` from minute 2 to 12, page by page: `(time, seq)` in the
/// order the pages give them.
async fn page_through(
    store: &dyn Store,
    patient: PatientId,
    limit: u32,
    newest_first: bool,
) -> Vec<(DateTime<Utc>, i64)> {
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let page = store
            .observations(ObservationQuery {
                patient_id: patient,
                code: ObservationCode::GlucoseCgm,
                from: at(2),
                to: at(12),
                after,
                limit,
                newest_first,
            })
            .await
            .expect("query");
        assert!(page.observations.len() <= limit as usize);
        seen.extend(
            page.observations
                .iter()
                .map(|observation| (observation.effective, observation.seq)),
        );
        match page.next {
            Some(cursor) => after = Some(cursor),
            None => return seen,
        }
    }
}

pub async fn observations_page_by_time(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let cgm = device(store, "cgm-001").await;
    store
        .assign_device(&cgm, alice, at(0), audit("devices.assign"))
        .await
        .expect("assign");
    // Deliberately out of order and with ties in time.
    let batch: Vec<Reading> = (0..25)
        .rev()
        .map(|i| glucose(i, 1 + i / 2, 100.0 + i as f64))
        .collect();
    store
        .ingest(vec![readings(&cgm, batch)])
        .await
        .expect("ingest");
    let seen = page_through(store, alice, 4, false).await;
    let times: Vec<_> = seen.iter().map(|(time, _)| *time).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "pages come in time order");
    let mut seqs: Vec<i64> = seen.iter().map(|(_, seq)| *seq).collect();
    seqs.sort();
    // Minutes 2..12 (exclusive) hold seq 2..=21.
    assert_eq!(seqs, (2..=21).collect::<Vec<_>>());

    // Newest first: the same readings, in the opposite order, paged toward the past.
    let newest_first = page_through(store, alice, 3, true).await;
    let mut reversed = seen.clone();
    reversed.sort();
    reversed.reverse();
    let mut got = newest_first.clone();
    // Readings at one time come in the store's order within it; compare times in order
    // and the set of readings.
    let got_times: Vec<_> = got.iter().map(|(time, _)| *time).collect();
    let want_times: Vec<_> = reversed.iter().map(|(time, _)| *time).collect();
    assert_eq!(got_times, want_times, "newest first, every reading once");
    got.sort();
    let mut all = seen.clone();
    all.sort();
    assert_eq!(got, all);
    let other_code = store
        .observations(ObservationQuery {
            patient_id: alice,
            code: ObservationCode::HeartRate,
            from: at(0),
            to: at(60),
            after: None,
            limit: 10,
            newest_first: false,
        })
        .await
        .expect("query");
    assert!(other_code.observations.is_empty());
}

pub async fn observation_summary_per_bucket(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let cgm = device(store, "cgm-001").await;
    let other = device(store, "cgm-002").await;
    store
        .assign_device(&cgm, alice, at(0), audit("devices.assign"))
        .await
        .expect("assign");
    store
        .assign_device(&other, bob, at(0), audit("devices.assign"))
        .await
        .expect("assign");
    // Alice: minutes 0..30, value 100 + minute; Bob: the same minutes, other values.
    let alices: Vec<Reading> = (0..30).map(|i| glucose(i, i, 100.0 + i as f64)).collect();
    let bobs: Vec<Reading> = (0..30).map(|i| glucose(i, i, 300.0)).collect();
    store
        .ingest(vec![readings(&cgm, alices), readings(&other, bobs)])
        .await
        .expect("ingest");
    let summary = |from, to, minutes| {
        store.observation_summary(ObservationSummaryQuery {
            patient_id: alice,
            code: ObservationCode::GlucoseCgm,
            from: at(from),
            to: at(to),
            bucket: Duration::minutes(minutes),
        })
    };
    // Ten-minute buckets from minute 5 to 40: [5,15), [15,25), [25,35); nothing after 29.
    let buckets = summary(5, 40, 10).await.expect("summary");
    let shape: Vec<(DateTime<Utc>, u64, f64, f64, f64)> = buckets
        .iter()
        .map(|b| (b.start, b.count, b.min, b.max, b.mean))
        .collect();
    assert_eq!(
        shape,
        [
            (at(5), 10, 105.0, 114.0, 109.5),
            (at(15), 10, 115.0, 124.0, 119.5),
            (at(25), 5, 125.0, 129.0, 127.0),
        ]
    );
    // Empty buckets are left out; the window's end is exclusive.
    let sparse = summary(-60, 1, 30).await.expect("summary");
    assert_eq!(sparse.len(), 1);
    assert_eq!(
        (sparse[0].start, sparse[0].count),
        (at(-60) + Duration::minutes(60), 1)
    );
    let none = store
        .observation_summary(ObservationSummaryQuery {
            patient_id: alice,
            code: ObservationCode::HeartRate,
            from: at(0),
            to: at(60),
            bucket: Duration::minutes(5),
        })
        .await
        .expect("summary");
    assert!(none.is_empty(), "another code");
}

pub async fn latest_observation_per_code(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let cgm = assigned_device(store, "cgm-001", alice).await;
    let patch = assigned_device(store, "ecg-001", alice).await;
    store
        .ingest(vec![
            readings(
                &cgm,
                vec![
                    glucose(1, 5, 110.0),
                    glucose(2, 9, 99.0),
                    glucose(3, 7, 130.0),
                ],
            ),
            readings(&patch, vec![heart_rate(10, 3, 72.0)]),
        ])
        .await
        .expect("ingest");
    let latest = store.latest_observations(alice).await.expect("latest");
    assert_eq!(latest.len(), 2);
    let glucose_latest = latest
        .iter()
        .find(|o| o.code == ObservationCode::GlucoseCgm)
        .expect("glucose");
    assert_eq!(glucose_latest.value, 99.0);
    assert!(
        store
            .latest_observations(PatientId::random())
            .await
            .expect("latest")
            .is_empty()
    );
}

pub async fn waveform_chunks_by_window(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let ecg = device(store, "ecg-001").await;
    store
        .assign_device(&ecg, alice, at(0), audit("devices.assign"))
        .await
        .expect("assign");
    let chunk = |seq: i64, minute: i64| IngestItem {
        device_id: ecg.clone(),
        received: at(100),
        payload: IngestPayload::Waveform(EncodedWaveform {
            seq,
            signal: Signal::EcgLeadIi,
            sampling_rate_hz: 360.0,
            start: at(minute),
            end: at(minute + 1),
            sample_count: 21_600,
            encoded: vec![seq as u8; 16],
        }),
    };
    let outcomes = store
        .ingest(vec![chunk(1, 1), chunk(2, 2), chunk(3, 3)])
        .await
        .expect("ingest");
    assert!(outcomes.iter().all(|o| matches!(
        o,
        IngestOutcome::WaveformStored {
            duplicate: false,
            ..
        }
    )));
    let again = store.ingest(vec![chunk(2, 2)]).await.expect("ingest");
    assert!(matches!(
        again[0],
        IngestOutcome::WaveformStored {
            duplicate: true,
            ..
        }
    ));
    // Seq 2 again for another minute of signal is not a retry.
    let other = store.ingest(vec![chunk(2, 4)]).await.expect("ingest");
    assert_eq!(
        other[0],
        IngestOutcome::SeqConflict {
            device_id: ecg.clone(),
            seq: 2
        }
    );
    let window = store
        .waveforms(WaveformQuery {
            patient_id: alice,
            signal: Some(Signal::EcgLeadIi),
            from: at(2) + Duration::seconds(30),
            to: at(3) + Duration::seconds(1),
            limit: 10,
        })
        .await
        .expect("query");
    let seqs: Vec<i64> = window.iter().map(|w| w.seq).collect();
    assert_eq!(seqs, vec![2, 3], "chunks overlapping the window");
    assert_eq!(window[0].encoded, vec![2u8; 16]);

    // One chunk by its device and number, with its patient.
    let (patient, found) = store
        .waveform_by_seq(&ecg, 3)
        .await
        .expect("by seq")
        .expect("chunk 3");
    assert_eq!(patient, alice);
    assert_eq!((found.seq, found.start, found.end), (3, at(3), at(4)));
    assert_eq!(found.encoded, vec![3u8; 16]);
    assert_eq!(found, window[1]);
    assert!(
        store
            .waveform_by_seq(&ecg, 9)
            .await
            .expect("by seq")
            .is_none()
    );
    assert_eq!(window[0].received, at(100), "when it arrived, as stored");
}

pub async fn derived_observations_have_their_own_seq(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let ecg = device(store, "ecg-001").await;
    store
        .assign_device(&ecg, alice, at(0), audit("devices.assign"))
        .await
        .expect("assign");
    store
        .ingest(vec![readings(&ecg, vec![heart_rate(7, 1, 70.0)])])
        .await
        .expect("ingest");
    let derived = |seq: i64, minute: i64, value: f64| NewDerivedObservation {
        patient_id: alice,
        device_id: ecg.clone(),
        seq,
        code: ObservationCode::HeartRate,
        value,
        effective: at(minute),
        received: at(minute),
    };
    // The same seq as the device's own reading: no collision, both kept.
    let stored = store
        .record_analysis(derived_only(vec![derived(7, 2, 71.0), derived(8, 3, 72.0)]))
        .await
        .expect("derive");
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|observation| observation.derived));
    // Deriving again is a no-op.
    let again = store
        .record_analysis(derived_only(vec![derived(8, 3, 72.0)]))
        .await
        .expect("derive again");
    assert!(again.is_empty());
    // And a device retry of seq 7 is still a duplicate, not confused with the derived 7.
    let retried = store
        .ingest(vec![readings(&ecg, vec![heart_rate(7, 1, 70.0)])])
        .await
        .expect("retry");
    assert!(matches!(
        &retried[0],
        IngestOutcome::Stored { duplicates: 1, .. }
    ));
    let page = store
        .observations(ObservationQuery {
            patient_id: alice,
            code: ObservationCode::HeartRate,
            from: at(0),
            to: at(60),
            after: None,
            limit: 100,
            newest_first: false,
        })
        .await
        .expect("query");
    let flags: Vec<(i64, bool)> = page
        .observations
        .iter()
        .map(|observation| (observation.seq, observation.derived))
        .collect();
    assert_eq!(flags, vec![(7, false), (7, true), (8, true)]);
    // Each is found by what identifies it, the device's and the derived one apart.
    let by_seq = |derived: bool, seq: i64| store.observation_by_seq(&ecg, derived, seq);
    assert_eq!(
        by_seq(false, 7).await.expect("by seq").map(|o| o.value),
        Some(70.0)
    );
    assert_eq!(
        by_seq(true, 7).await.expect("by seq").map(|o| o.value),
        Some(71.0)
    );
    assert!(by_seq(false, 8).await.expect("by seq").is_none());
    assert!(
        store
            .observation_by_seq(
                &DeviceId::parse("dev_ffffffffffffffff").expect("id"),
                false,
                7
            )
            .await
            .expect("by seq")
            .is_none()
    );
    let latest = store.latest_observations(alice).await.expect("latest");
    assert_eq!(latest[0].value, 72.0);
    assert!(latest[0].derived);
    assert!(matches!(
        store
            .record_analysis(derived_only(vec![NewDerivedObservation {
                device_id: DeviceId::parse("ghost-01").expect("id"),
                ..derived(9, 4, 73.0)
            }]))
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn latest_observations_within_a_window(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let cgm = device(store, "cgm-001").await;
    store
        .assign_device(&cgm, alice, at(0), audit("devices.assign"))
        .await
        .expect("assign");
    store
        .ingest(vec![readings(
            &cgm,
            vec![
                glucose(1, 5, 110.0),
                glucose(2, 20, 120.0),
                glucose(3, 40, 130.0),
            ],
        )])
        .await
        .expect("ingest");
    let within = store
        .latest_observations_between(alice, at(0), at(30))
        .await
        .expect("latest");
    assert_eq!(within.len(), 1);
    assert_eq!(within[0].value, 120.0, "the newest inside the window");
    let inclusive = store
        .latest_observations_between(alice, at(0), at(40))
        .await
        .expect("latest");
    assert_eq!(inclusive[0].value, 130.0, "the window's end is inclusive");
    assert!(
        store
            .latest_observations_between(alice, at(41), at(60))
            .await
            .expect("latest")
            .is_empty()
    );
}

pub async fn rhythm_events_grow_and_are_found_by_overlap(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let ecg = device(store, "ecg-001").await;
    let event = |kind: RhythmKind, onset: i64, end: i64| RhythmEventRecord {
        patient_id: alice,
        device_id: ecg.clone(),
        signal: Signal::EcgLeadIi,
        kind,
        onset: at(onset),
        end: at(end),
        detail: Some(json!({"median_bpm": 44})),
    };
    store
        .record_analysis(AnalysisResults {
            rhythm_events: vec![
                event(RhythmKind::AtrialFibrillation, 10, 12),
                event(RhythmKind::Pause, 20, 20),
            ],
            recorded: at(0),
            ..AnalysisResults::default()
        })
        .await
        .expect("record");
    // The same AF event seen again with a later end grows; an earlier end never shrinks it.
    store
        .record_analysis(AnalysisResults {
            rhythm_events: vec![
                event(RhythmKind::AtrialFibrillation, 10, 15),
                event(RhythmKind::AtrialFibrillation, 10, 13),
            ],
            recorded: at(0),
            ..AnalysisResults::default()
        })
        .await
        .expect("extend");
    let query = |from: i64, to: i64, patient_id: PatientId| RhythmEventQuery {
        patient_id,
        from: at(from),
        to: at(to),
        limit: 100,
    };
    let all = store
        .rhythm_events(query(0, 60, alice))
        .await
        .expect("query");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].kind, RhythmKind::AtrialFibrillation);
    assert_eq!(all[0].end, at(15));
    assert_eq!(all[0].detail, Some(json!({"median_bpm": 44})));
    let overlapping = store
        .rhythm_events(query(14, 16, alice))
        .await
        .expect("query");
    assert_eq!(
        overlapping.len(),
        1,
        "an event overlapping the window's start"
    );
    assert!(
        store
            .rhythm_events(query(0, 60, bob))
            .await
            .expect("query")
            .is_empty()
    );
    assert!(matches!(
        store
            .record_analysis(AnalysisResults {
                rhythm_events: vec![event(RhythmKind::Pause, 30, 29)],
                recorded: at(0),
                ..AnalysisResults::default()
            })
            .await,
        Err(StoreError::Invalid(_))
    ));
}

pub async fn news2_results_replace_per_time(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let result = |minute: i64, total: u8| News2Record {
        patient_id: alice,
        time: at(minute),
        complete: false,
        total,
        risk: "low".into(),
        any_parameter_3: false,
        missing: vec!["air_or_oxygen".into(), "consciousness".into()],
        sub_scores: json!({"respiration_rate": 0, "consciousness": null}),
        inputs: json!({"respiration_rate": {"value": 16.0}}),
        computed: None,
    };
    // As read back: with when the analysis computed it.
    let stored = |minute: i64, total: u8, computed: i64| News2Record {
        computed: Some(at(computed)),
        ..result(minute, total)
    };
    assert!(store.latest_news2(alice).await.expect("latest").is_none());
    store
        .record_analysis(AnalysisResults {
            news2: vec![result(5, 1)],
            recorded: at(0),
            ..AnalysisResults::default()
        })
        .await
        .expect("record");
    store
        .record_analysis(AnalysisResults {
            news2: vec![result(10, 2)],
            recorded: at(0),
            ..AnalysisResults::default()
        })
        .await
        .expect("record");
    store
        .record_analysis(AnalysisResults {
            news2: vec![result(10, 3)],
            recorded: at(30),
            ..AnalysisResults::default()
        })
        .await
        .expect("replace");
    let query = |newest_first: bool, limit: u32| News2Query {
        patient_id: alice,
        from: at(0),
        to: at(60),
        limit,
        newest_first,
    };
    let all = store.news2_scores(query(false, 100)).await.expect("query");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], stored(5, 1, 0));
    assert_eq!(all[1], stored(10, 3, 30), "replaced, with when it was");
    assert_eq!(
        store.news2_scores(query(true, 1)).await.expect("newest"),
        [stored(10, 3, 30)]
    );
    assert_eq!(
        store.latest_news2(alice).await.expect("latest"),
        Some(stored(10, 3, 30))
    );
    assert!(
        store
            .record_analysis(AnalysisResults {
                news2: vec![News2Record {
                    risk: "unknown".into(),
                    ..result(20, 0)
                }],
                recorded: at(0),
                ..AnalysisResults::default()
            })
            .await
            .is_err(),
        "only the four risk bands are stored"
    );
}
