//! Checks of [`EventLog`](crate::EventLog).

use std::time::Duration as StdDuration;

use serde_json::json;
use wardline_domain::{ObservationCode, RhythmKind, Signal};

use super::{assigned_device, at, glucose, patient, readings};
use crate::*;

fn chunk(device: &wardline_domain::DeviceId, seq: i64, minute: i64) -> IngestItem {
    IngestItem {
        device_id: device.clone(),
        received: at(minute + 1),
        payload: IngestPayload::Waveform(EncodedWaveform {
            seq,
            signal: Signal::EcgLeadIi,
            sampling_rate_hz: 250.0,
            start: at(minute),
            end: at(minute + 1),
            sample_count: 15_000,
            encoded: vec![seq as u8; 8],
        }),
    }
}

/// Everything committed after a cursor comes back once, in commit order, whatever the
/// page size; and each commit is announced.
pub async fn event_log_reads_every_commit_once(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let cgm = assigned_device(store, "cgm-001", alice).await;
    let ecg = assigned_device(store, "ecg-001", alice).await;
    let start = store.event_tail().await.expect("tail");
    assert!(
        store
            .events_after(&start, EventFilter::all(), 10)
            .await
            .expect("events")
            .events
            .is_empty(),
        "nothing after the tail"
    );
    let mut commits = store.commits();
    let seen = *commits.borrow_and_update();
    store
        .ingest(vec![readings(
            &cgm,
            (1..=5).map(|i| glucose(i, i, 100.0 + i as f64)).collect(),
        )])
        .await
        .expect("ingest");
    tokio::time::timeout(StdDuration::from_secs(5), commits.changed())
        .await
        .expect("a commit is announced")
        .expect("the store is open");
    assert_ne!(*commits.borrow(), seen);
    store
        .ingest(vec![chunk(&ecg, 1, 10), chunk(&ecg, 2, 11)])
        .await
        .expect("waveforms");
    let derived = store
        .record_analysis(AnalysisResults {
            derived: vec![NewDerivedObservation {
                patient_id: alice,
                device_id: ecg.clone(),
                seq: 1,
                code: ObservationCode::HeartRate,
                value: 61.0,
                effective: at(11),
                received: at(12),
            }],
            rhythm_events: vec![RhythmEventRecord {
                patient_id: alice,
                device_id: ecg.clone(),
                signal: Signal::EcgLeadIi,
                kind: RhythmKind::Bradycardia,
                onset: at(10),
                end: at(11),
                detail: Some(json!({"median_bpm": 41.0})),
            }],
            news2: vec![News2Record {
                patient_id: alice,
                time: at(11),
                complete: false,
                total: 1,
                risk: "low".into(),
                any_parameter_3: false,
                missing: vec!["consciousness".into()],
                sub_scores: json!({}),
                inputs: json!({}),
                computed: None,
            }],
            checkpoint: None,
            recorded: at(12),
        })
        .await
        .expect("analysis");
    assert_eq!(derived.len(), 1);

    // One big page.
    let all = store
        .events_after(&start, EventFilter::all(), 1000)
        .await
        .expect("events");
    let mut values = Vec::new();
    let mut waveform_seqs = Vec::new();
    let mut others = Vec::new();
    for event in &all.events {
        assert_eq!(event.patient_id(), alice);
        match event {
            CommittedEvent::Observation(observation) => values.push(observation.value),
            CommittedEvent::Waveform(waveform) => {
                assert!(waveform.chunk.encoded.is_empty(), "no samples unless asked");
                assert_eq!(waveform.device_id(), &ecg);
                waveform_seqs.push(waveform.chunk.seq);
            }
            CommittedEvent::Rhythm(event) => others.push(event.kind.as_str().to_owned()),
            CommittedEvent::News2(score) => others.push(format!("news2 {}", score.total)),
            CommittedEvent::DeviceReport(_) => others.push("report".into()),
        }
    }
    assert_eq!(
        values,
        [101.0, 102.0, 103.0, 104.0, 105.0, 61.0],
        "in commit order"
    );
    assert_eq!(waveform_seqs, [1, 2]);
    assert_eq!(others, ["bradycardia", "news2 1"]);
    assert!(
        store
            .events_after(&all.next, EventFilter::all(), 1000)
            .await
            .expect("events")
            .events
            .is_empty(),
        "the next cursor is past all of it"
    );

    // Small pages of observations only, with samples: each event exactly once.
    let filter = EventFilter {
        observations: true,
        ..EventFilter::default()
    };
    let mut cursor = start.clone();
    let mut paged = Vec::new();
    loop {
        let batch = store
            .events_after(&cursor, filter.clone(), 2)
            .await
            .expect("page");
        if batch.events.is_empty() {
            break;
        }
        assert!(batch.events.len() <= 2);
        for event in batch.events {
            let CommittedEvent::Observation(observation) = event else {
                panic!("only observations were asked for");
            };
            paged.push(observation.value);
        }
        cursor = batch.next;
    }
    assert_eq!(paged, values);

    // A stretch read again: only what lies between the two positions, whatever the page
    // size, and never past the end of the stretch.
    let three = store
        .events_after(&start, filter.clone(), 3)
        .await
        .expect("three readings")
        .next;
    for page in [1, 2, 1000] {
        let mut cursor = start.clone();
        let mut replayed = Vec::new();
        loop {
            let batch = store
                .events_between(&cursor, &three, EventFilter::all(), page)
                .await
                .expect("stretch");
            if batch.events.is_empty() {
                assert_eq!(batch.next, cursor, "nothing more, the cursor stays");
                break;
            }
            replayed.extend(batch.events.iter().map(|event| match event {
                CommittedEvent::Observation(observation) => observation.value,
                _ => -1.0,
            }));
            cursor = batch.next;
        }
        assert_eq!(replayed, values[..3], "page {page}");
        assert_eq!(cursor, three, "page {page}");
    }
    let whole = store
        .events_between(&start, &all.next, EventFilter::all(), 1000)
        .await
        .expect("the whole log as a stretch");
    assert_eq!(whole, all, "a stretch to the tail is the same read");
    assert!(matches!(
        store
            .events_between(
                &start,
                &EventCursor("not a cursor".into()),
                EventFilter::all(),
                1
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
    let with_samples = store
        .events_after(
            &start,
            EventFilter {
                waveforms: true,
                waveform_samples: true,
                ..EventFilter::default()
            },
            10,
        )
        .await
        .expect("waveforms");
    let encoded: Vec<Vec<u8>> = with_samples
        .events
        .iter()
        .filter_map(|event| match event {
            CommittedEvent::Waveform(waveform) => Some(waveform.chunk.encoded.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(encoded, [vec![1u8; 8], vec![2u8; 8]]);

    // A grown rhythm event appears again, with its later end.
    store
        .record_analysis(AnalysisResults {
            rhythm_events: vec![RhythmEventRecord {
                patient_id: alice,
                device_id: ecg.clone(),
                signal: Signal::EcgLeadIi,
                kind: RhythmKind::Bradycardia,
                onset: at(10),
                end: at(12),
                detail: None,
            }],
            recorded: at(13),
            ..AnalysisResults::default()
        })
        .await
        .expect("grow");
    let grown = store
        .events_after(&all.next, EventFilter::all(), 10)
        .await
        .expect("events");
    assert!(matches!(
        grown.events.as_slice(),
        [CommittedEvent::Rhythm(event)] if event.end == at(12)
    ));
    assert_eq!(
        store.event_tail().await.expect("tail"),
        grown.next,
        "read to the end is the tail"
    );
    assert!(matches!(
        store
            .events_after(&EventCursor("elsewhere:1".into()), EventFilter::all(), 10)
            .await,
        Err(StoreError::Invalid(_))
    ));
}

/// A reader scoped to some patients gets only their events, in order; the others' are
/// counted as passed over and the cursor moves past them, so nothing is read twice or
/// skipped unaccounted.
pub async fn event_log_reads_a_patient_scope(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let alice_cgm = assigned_device(store, "cgm-alice", alice).await;
    let bob_cgm = assigned_device(store, "cgm-bob", bob).await;
    let bob_ecg = assigned_device(store, "ecg-bob", bob).await;
    let start = store.event_tail().await.expect("tail");
    store
        .ingest(vec![
            readings(&alice_cgm, vec![glucose(1, 1, 101.0), glucose(2, 2, 102.0)]),
            readings(
                &bob_cgm,
                (1..=3).map(|i| glucose(i, i, 200.0 + i as f64)).collect(),
            ),
            readings(&alice_cgm, vec![glucose(3, 3, 103.0)]),
            chunk(&bob_ecg, 1, 10),
        ])
        .await
        .expect("ingest");
    for (patient, total) in [(alice, 2), (bob, 5)] {
        store
            .record_analysis(AnalysisResults {
                news2: vec![News2Record {
                    patient_id: patient,
                    time: at(20),
                    complete: false,
                    total,
                    risk: "low".into(),
                    any_parameter_3: false,
                    missing: vec![],
                    sub_scores: json!({}),
                    inputs: json!({}),
                    computed: None,
                }],
                recorded: at(21),
                ..AnalysisResults::default()
            })
            .await
            .expect("news2");
    }
    let only_alice = EventFilter {
        patients: Some(std::sync::Arc::new([alice].into_iter().collect())),
        ..EventFilter::all()
    };
    assert!(only_alice.admits(&alice) && !only_alice.admits(&bob));
    let mut cursor = start.clone();
    let mut seen = Vec::new();
    let mut passed_over = PassedOver::default();
    loop {
        let batch = store
            .events_after(&cursor, only_alice.clone(), 2)
            .await
            .expect("page");
        let read = batch.events.len() as u64 + batch.passed_over.total();
        assert!(read <= 6, "at most the limit of each kind: {read}");
        for event in &batch.events {
            assert_eq!(event.patient_id(), alice, "only the scope's patients");
            match event {
                CommittedEvent::Observation(observation) => {
                    seen.push(format!("{}", observation.value))
                }
                CommittedEvent::News2(score) => seen.push(format!("news2 {}", score.total)),
                other => panic!("alice has no other events: {other:?}"),
            }
        }
        passed_over.observations += batch.passed_over.observations;
        passed_over.other += batch.passed_over.other;
        cursor = batch.next;
        if read == 0 {
            break;
        }
    }
    // Commit order holds per kind; pages interleave the kinds.
    seen.sort_by_key(|event| event.starts_with("news2"));
    assert_eq!(
        seen,
        ["101", "102", "103", "news2 2"],
        "each once, in order"
    );
    assert_eq!(
        passed_over,
        PassedOver {
            observations: 3,
            other: 2
        },
        "bob's three readings, his chunk and his NEWS2 result"
    );
    assert_eq!(
        cursor,
        store.event_tail().await.expect("tail"),
        "the cursor moved past what was passed over"
    );
    let everyone = store
        .events_after(&start, EventFilter::all(), 100)
        .await
        .expect("everyone");
    assert_eq!(everyone.events.len(), 9);
    assert_eq!(everyone.passed_over, PassedOver::default());
}

/// A reader's position is stored with what it produced, and read back after a restart.
pub async fn event_log_resumes_from_a_checkpoint(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let cgm = assigned_device(store, "cgm-001", alice).await;
    assert_eq!(store.checkpoint("analysis").await.expect("none"), None);
    let start = store.event_tail().await.expect("tail");
    store
        .ingest(vec![readings(
            &cgm,
            vec![glucose(1, 1, 90.0), glucose(2, 2, 91.0)],
        )])
        .await
        .expect("ingest");
    let filter = EventFilter {
        observations: true,
        ..EventFilter::default()
    };
    let first = store
        .events_after(&start, filter.clone(), 1)
        .await
        .expect("first");
    assert_eq!(first.events.len(), 1);
    store
        .record_analysis(AnalysisResults {
            checkpoint: Some(("analysis".into(), first.next.clone())),
            recorded: at(3),
            ..AnalysisResults::default()
        })
        .await
        .expect("checkpoint");
    let resumed = store
        .checkpoint("analysis")
        .await
        .expect("checkpoint")
        .expect("stored");
    assert_eq!(resumed, first.next);
    let rest = store
        .events_after(&resumed, filter, 10)
        .await
        .expect("rest");
    assert!(
        matches!(rest.events.as_slice(), [CommittedEvent::Observation(o)] if o.value == 91.0),
        "resumes after what was read before: {:?}",
        rest.events
    );
    assert_eq!(
        store.checkpoint("alarms").await.expect("other reader"),
        None
    );
    assert!(
        store
            .record_analysis(AnalysisResults {
                checkpoint: Some(("analysis".into(), EventCursor("garbage".into()))),
                recorded: at(4),
                ..AnalysisResults::default()
            })
            .await
            .is_err(),
        "a cursor this backend did not make is refused"
    );
    assert_eq!(
        store.checkpoint("analysis").await.expect("checkpoint"),
        Some(first.next)
    );
}
