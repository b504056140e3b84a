//! Checks of [`IngestStore`](crate::IngestStore).

use wardline_domain::{DeviceId, ObservationCode};

use super::{assigned_device, at, audit, device, glucose, heart_rate, patient, readings};
use crate::{
    CommittedEvent, DeviceReport, DeviceStatus, EventFilter, IngestOutcome, ObservationQuery,
    Store, StoreError,
};

pub async fn ingest_stores_once(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let cgm = device(store, "cgm-001").await;
    store
        .assign_device(&cgm, alice, at(0), audit("devices.assign"))
        .await
        .expect("assign");
    let batch = vec![glucose(1, 5, 110.0), glucose(2, 10, 115.0)];
    let outcomes = store
        .ingest(vec![readings(&cgm, batch.clone())])
        .await
        .expect("ingest");
    let IngestOutcome::Stored {
        patient_id,
        stored,
        duplicates,
    } = &outcomes[0]
    else {
        panic!("expected stored, got {outcomes:?}")
    };
    assert_eq!(*patient_id, alice);
    assert_eq!(stored.len(), 2);
    assert_eq!(*duplicates, 0);
    // A retry of the same message, and a message overlapping it, store nothing twice.
    let retried = store
        .ingest(vec![
            readings(&cgm, batch),
            readings(&cgm, vec![glucose(2, 10, 115.0), glucose(3, 15, 120.0)]),
        ])
        .await
        .expect("retry");
    assert!(
        matches!(&retried[0], IngestOutcome::Stored { stored, duplicates: 2, .. } if stored.is_empty())
    );
    assert!(
        matches!(&retried[1], IngestOutcome::Stored { stored, duplicates: 1, .. } if stored.len() == 1)
    );
    let page = store
        .observations(ObservationQuery {
            patient_id: alice,
            code: ObservationCode::GlucoseCgm,
            from: at(0),
            to: at(60),
            after: None,
            limit: 100,
            newest_first: false,
        })
        .await
        .expect("query");
    let seqs: Vec<i64> = page
        .observations
        .iter()
        .map(|observation| observation.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(store.count_observations().await.expect("count"), 3);
    assert_eq!(page.observations[0].device_id, cgm);
    assert!(
        store
            .device(&cgm)
            .await
            .expect("device")
            .expect("exists")
            .last_seen
            .is_some()
    );
}

pub async fn ingest_refuses_unassigned_and_revoked(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let cgm = device(store, "cgm-001").await;
    let outcomes = store
        .ingest(vec![readings(&cgm, vec![glucose(1, 5, 110.0)])])
        .await
        .expect("ingest");
    assert!(matches!(outcomes[0], IngestOutcome::NotAssigned { .. }));
    store
        .assign_device(&cgm, alice, at(10), audit("devices.assign"))
        .await
        .expect("assign");
    // One reading before the assignment refuses the whole message.
    let mixed = store
        .ingest(vec![readings(
            &cgm,
            vec![glucose(2, 15, 110.0), glucose(3, 5, 111.0)],
        )])
        .await
        .expect("ingest");
    assert!(matches!(mixed[0], IngestOutcome::NotAssigned { at: when, .. } if when == at(5)));
    let unknown = DeviceId::parse("ghost-01").expect("id");
    let outcomes = store
        .ingest(vec![readings(&unknown, vec![glucose(1, 15, 1.0)])])
        .await
        .expect("ingest");
    assert!(matches!(outcomes[0], IngestOutcome::UnknownDevice { .. }));
    store
        .set_device_status(&cgm, DeviceStatus::Revoked, audit("devices.revoke"))
        .await
        .expect("revoke");
    let outcomes = store
        .ingest(vec![readings(&cgm, vec![glucose(4, 20, 100.0)])])
        .await
        .expect("ingest");
    assert!(matches!(outcomes[0], IngestOutcome::Revoked { .. }));
    let page = store
        .observations(ObservationQuery {
            patient_id: alice,
            code: ObservationCode::GlucoseCgm,
            from: at(0),
            to: at(60),
            after: None,
            limit: 100,
            newest_first: false,
        })
        .await
        .expect("query");
    assert!(page.observations.is_empty());
}

pub async fn reassigned_device_keeps_patients_apart(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let cgm = device(store, "cgm-001").await;
    store
        .assign_device(&cgm, alice, at(0), audit("devices.assign"))
        .await
        .expect("assign");
    store
        .assign_device(&cgm, bob, at(30), audit("devices.assign"))
        .await
        .expect("reassign");
    store
        .ingest(vec![
            readings(&cgm, vec![glucose(1, 25, 100.0)]),
            readings(&cgm, vec![glucose(2, 35, 200.0)]),
        ])
        .await
        .expect("ingest");
    for (patient_id, value) in [(alice, 100.0), (bob, 200.0)] {
        let page = store
            .observations(ObservationQuery {
                patient_id,
                code: ObservationCode::GlucoseCgm,
                from: at(0),
                to: at(60),
                after: None,
                limit: 10,
                newest_first: false,
            })
            .await
            .expect("query");
        assert_eq!(page.observations.len(), 1);
        assert_eq!(page.observations[0].value, value);
    }
    let assignments = store.device_assignments(&cgm).await.expect("assignments");
    assert_eq!(assignments.len(), 2);
    assert_eq!(assignments[0].end, Some(at(30)));
    assert_eq!(assignments[1].end, None);
}

pub async fn a_reused_seq_with_other_content_is_refused(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let cgm = device(store, "cgm-001").await;
    store
        .assign_device(&cgm, alice, at(0), audit("devices.assign"))
        .await
        .expect("assign");
    let start = store.event_tail().await.expect("tail");
    let first = store
        .ingest(vec![readings(&cgm, vec![glucose(1, 5, 110.0)])])
        .await
        .expect("ingest");
    assert!(matches!(&first[0], IngestOutcome::Stored { stored, .. } if stored.len() == 1));

    // Seq 1 again with another value (a counter that went back), behind a new reading
    // in the same message: nothing of the message is stored.
    let conflicting = store
        .ingest(vec![
            readings(&cgm, vec![glucose(7, 20, 130.0), glucose(1, 5, 60.0)]),
            readings(&cgm, vec![glucose(1, 6, 110.0)]),
            readings(&cgm, vec![glucose(1, 5, 110.0)]),
        ])
        .await
        .expect("ingest");
    assert_eq!(
        conflicting[0],
        IngestOutcome::SeqConflict {
            device_id: cgm.clone(),
            seq: 1
        },
        "another value"
    );
    assert_eq!(
        conflicting[1],
        IngestOutcome::SeqConflict {
            device_id: cgm.clone(),
            seq: 1
        },
        "another time"
    );
    assert!(
        matches!(&conflicting[2], IngestOutcome::Stored { stored, duplicates: 1, .. } if stored.is_empty()),
        "the same reading again is a retry: {:?}",
        conflicting[2]
    );
    assert_eq!(store.count_observations().await.expect("count"), 1);
    let kept = store.latest_observations(alice).await.expect("latest");
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].seq, kept[0].value), (1, 110.0));

    // Each conflict left a fault report of the device for the rules to see.
    let batch = store
        .events_after(&start, EventFilter::all(), 100)
        .await
        .expect("events");
    let faults: Vec<&DeviceReport> = batch
        .events
        .iter()
        .filter_map(|event| match event {
            CommittedEvent::DeviceReport(report) => Some(report),
            _ => None,
        })
        .collect();
    assert_eq!(faults.len(), 2, "{:?}", batch.events);
    for report in faults {
        assert_eq!((&report.device_id, report.patient_id), (&cgm, alice));
        assert!(
            report
                .fault
                .as_deref()
                .is_some_and(|fault| fault.starts_with("seq_conflict")),
            "{report:?}"
        );
    }
}

pub async fn ingest_all_or_none_stores_nothing_when_one_item_is_refused(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let cgm = assigned_device(store, "cgm-001", alice).await;
    let spare = device(store, "cgm-002").await;
    let start = store.event_tail().await.expect("tail");

    // One item of a device not assigned to anyone: nothing of the other is stored either.
    let (stored, outcomes) = store
        .ingest_all_or_none(vec![
            readings(&cgm, vec![glucose(1, 5, 110.0)]),
            readings(&spare, vec![glucose(1, 5, 111.0)]),
        ])
        .await
        .expect("ingest");
    assert!(!stored);
    assert!(
        matches!(&outcomes[0], IngestOutcome::Stored { .. }),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[1], IngestOutcome::NotAssigned { .. }),
        "{outcomes:?}"
    );
    assert_eq!(store.count_observations().await.expect("count"), 0);

    // All can be stored: all are, in one commit; sent again, all are duplicates.
    let items = vec![
        readings(&cgm, vec![glucose(1, 5, 110.0)]),
        readings(&cgm, vec![glucose(2, 10, 120.0), glucose(3, 15, 125.0)]),
    ];
    let (stored, outcomes) = store
        .ingest_all_or_none(items.clone())
        .await
        .expect("ingest");
    assert!(stored, "{outcomes:?}");
    assert_eq!(store.count_observations().await.expect("count"), 3);
    let (stored, outcomes) = store.ingest_all_or_none(items).await.expect("ingest");
    assert!(stored);
    assert!(
        outcomes.iter().all(
            |outcome| matches!(outcome, IngestOutcome::Stored { stored, .. } if stored.is_empty())
        ),
        "{outcomes:?}"
    );
    assert_eq!(store.count_observations().await.expect("count"), 3);

    // A reused seq refuses the whole; the device's fault is still recorded.
    let (stored, outcomes) = store
        .ingest_all_or_none(vec![
            readings(&cgm, vec![glucose(4, 20, 130.0)]),
            readings(&cgm, vec![glucose(1, 5, 60.0)]),
        ])
        .await
        .expect("ingest");
    assert!(!stored);
    assert_eq!(
        outcomes[1],
        IngestOutcome::SeqConflict {
            device_id: cgm.clone(),
            seq: 1
        }
    );
    assert_eq!(store.count_observations().await.expect("count"), 3);
    let batch = store
        .events_after(&start, EventFilter::all(), 100)
        .await
        .expect("events");
    let observations = batch
        .events
        .iter()
        .filter(|event| matches!(event, CommittedEvent::Observation(_)))
        .count();
    assert_eq!(observations, 3, "only what was stored reaches the rules");
    let faults = batch
        .events
        .iter()
        .filter(|event| {
            matches!(event, CommittedEvent::DeviceReport(report)
                if report.fault.as_deref().is_some_and(|fault| fault.starts_with("seq_conflict")))
        })
        .count();
    assert_eq!(faults, 1, "{:?}", batch.events);

    // Two items with one new seq and different values: the second clashes with the
    // first, so neither is stored, not even the second once the first is undone.
    let (stored, outcomes) = store
        .ingest_all_or_none(vec![
            readings(&cgm, vec![glucose(50, 30, 100.0)]),
            readings(&cgm, vec![glucose(50, 31, 120.0)]),
        ])
        .await
        .expect("ingest");
    assert!(!stored, "{outcomes:?}");
    assert_eq!(
        store.count_observations().await.expect("count"),
        3,
        "nothing of a refused transaction is stored"
    );
}

pub async fn an_assignment_is_not_backdated_over_stored_readings(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let cgm = assigned_device(store, "cgm-001", bob).await;
    store
        .ingest(vec![readings(&cgm, vec![glucose(1, 50, 100.0)])])
        .await
        .expect("ingest");
    // Bob wore the CGM until his reading at minute 50: giving it to Alice from minute 45
    // would end his assignment early and send his late readings to her.
    for from in [at(45), at(50)] {
        assert!(
            matches!(
                store
                    .assign_device(&cgm, alice, from, audit("devices.assign"))
                    .await,
                Err(StoreError::Invalid(_))
            ),
            "from {from}"
        );
    }
    store
        .assign_device(&cgm, alice, at(51), audit("devices.assign"))
        .await
        .expect("from after the newest reading");
    // A late reading of Bob's time still goes to Bob.
    let late = store
        .ingest(vec![readings(&cgm, vec![glucose(2, 49, 105.0)])])
        .await
        .expect("ingest");
    assert!(
        matches!(&late[0], IngestOutcome::Stored { patient_id, .. } if *patient_id == bob),
        "{late:?}"
    );
    // A device that never stored a reading may be assigned from a past time.
    let spare = device(store, "cgm-002").await;
    store
        .assign_device(&spare, alice, at(-60), audit("devices.assign"))
        .await
        .expect("backdated, nothing stored");
}

pub async fn readings_a_device_cannot_take_are_refused(store: &dyn Store) {
    use wardline_domain::payload::PayloadErrorKind;
    let alice = patient(store, "Alice").await;
    let patch = assigned_device(store, "ecg-001", alice).await;
    let cgm = assigned_device(store, "cgm-001", alice).await;
    let gateway = assigned_device(store, "gateway-001", alice).await;
    let outcomes = store
        .ingest(vec![
            // An ECG patch reporting a glucose of 45 mg/dL.
            readings(&patch, vec![glucose(1, 3, 45.0)]),
            // A good heart rate beside it in one message: nothing of the message is kept.
            readings(&patch, vec![heart_rate(2, 3, 72.0), glucose(3, 3, 45.0)]),
            // A gateway posting as itself.
            readings(&gateway, vec![heart_rate(1, 3, 72.0)]),
            // The patch's own heart rate is stored.
            readings(&patch, vec![heart_rate(4, 3, 72.0)]),
        ])
        .await
        .expect("ingest");
    let refusal = |index: usize| match &outcomes[index] {
        IngestOutcome::NotForDevice(error) => error.clone(),
        other => panic!("message {index} was not refused: {other:?}"),
    };
    assert_eq!(
        (refusal(0).kind, refusal(0).field.as_str()),
        (PayloadErrorKind::NotForDevice, "code")
    );
    assert!(refusal(0).reason.contains("ecg"), "{}", refusal(0).reason);
    assert_eq!(refusal(1).field, "readings[1].code");
    assert!(
        refusal(2).reason.contains("gateway"),
        "{}",
        refusal(2).reason
    );
    assert!(matches!(&outcomes[3], IngestOutcome::Stored { stored, .. } if stored.len() == 1));
    assert_eq!(store.count_observations().await.expect("count"), 1);

    // A CGM sending an ECG strip.
    let strip = store
        .ingest(vec![crate::IngestItem {
            device_id: cgm.clone(),
            received: at(5),
            payload: crate::IngestPayload::Waveform(crate::EncodedWaveform {
                seq: 1,
                signal: wardline_domain::Signal::EcgLeadIi,
                sampling_rate_hz: 360.0,
                start: at(4),
                end: at(5),
                sample_count: 21_600,
                encoded: vec![1; 16],
            }),
        }])
        .await
        .expect("ingest");
    assert!(
        matches!(&strip[0], IngestOutcome::NotForDevice(error) if error.field == "waveform.signal"),
        "{strip:?}"
    );
}

/// Many devices' messages in one call, none repeating a seq within the call, as a group
/// commit sees them: each message's outcome is decided against what was stored before,
/// as if it came alone.
pub async fn one_call_of_many_devices_decides_each_message_alone(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let first = assigned_device(store, "cgm-001", alice).await;
    let second = assigned_device(store, "cgm-002", bob).await;
    let spare = device(store, "cgm-003").await;
    store
        .ingest(vec![
            readings(&first, vec![glucose(1, 5, 110.0)]),
            readings(&second, vec![glucose(1, 5, 90.0)]),
        ])
        .await
        .expect("first readings");
    let outcomes = store
        .ingest(vec![
            // New, with a retry of one stored before.
            readings(&first, vec![glucose(1, 5, 110.0), glucose(2, 10, 115.0)]),
            // A new reading, then a seq reused with another value: nothing of it is kept.
            readings(&second, vec![glucose(2, 10, 95.0), glucose(1, 5, 250.0)]),
            // A device with no patient.
            readings(&spare, vec![glucose(1, 5, 100.0)]),
            // The second device again, after its refused message: stored.
            readings(&second, vec![glucose(3, 15, 99.0)]),
        ])
        .await
        .expect("ingest");
    assert!(
        matches!(&outcomes[0], IngestOutcome::Stored { patient_id, stored, duplicates: 1 }
            if *patient_id == alice && stored.len() == 1 && stored[0].seq == 2),
        "{:?}",
        outcomes[0]
    );
    assert_eq!(
        outcomes[1],
        IngestOutcome::SeqConflict {
            device_id: second.clone(),
            seq: 1
        }
    );
    assert!(
        matches!(&outcomes[2], IngestOutcome::NotAssigned { device_id, .. } if *device_id == spare),
        "{:?}",
        outcomes[2]
    );
    assert!(
        matches!(&outcomes[3], IngestOutcome::Stored { patient_id, stored, duplicates: 0 }
            if *patient_id == bob && stored.len() == 1),
        "{:?}",
        outcomes[3]
    );
    let mut kept: Vec<(i64, f64)> = store
        .latest_observations(bob)
        .await
        .expect("latest")
        .iter()
        .map(|observation| (observation.seq, observation.value))
        .collect();
    kept.sort_by_key(|(seq, _)| *seq);
    assert_eq!(kept, vec![(3, 99.0)], "the latest reading of Bob");
    // 1 + 1 before, then seq 2 of the first device and seq 3 of the second.
    assert_eq!(store.count_observations().await.expect("count"), 4);

    // A device's retry within the same call (its seq twice), beside another device's
    // reading: the retry is found to be the message before it, and each is decided
    // as if it came alone.
    let outcomes = store
        .ingest(vec![
            readings(&first, vec![glucose(4, 20, 120.0)]),
            readings(&second, vec![glucose(4, 20, 100.0)]),
            readings(&first, vec![glucose(4, 20, 120.0)]),
            readings(&first, vec![glucose(5, 25, 121.0)]),
        ])
        .await
        .expect("ingest");
    let stored = |outcome: &IngestOutcome| match outcome {
        IngestOutcome::Stored {
            stored, duplicates, ..
        } => Some((stored.len(), *duplicates)),
        _ => None,
    };
    assert_eq!(
        outcomes.iter().map(stored).collect::<Vec<_>>(),
        vec![Some((1, 0)), Some((1, 0)), Some((0, 1)), Some((1, 0))],
        "{outcomes:?}"
    );
    assert_eq!(store.count_observations().await.expect("count"), 7);
}
