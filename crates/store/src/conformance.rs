//! The conformance suite every [`Store`] backend must pass.
//!
//! Each check is a plain async function over `&dyn Store`; a backend instantiates them
//! all with [`store_conformance_suite!`](crate::store_conformance_suite), giving each
//! check a fresh, empty store.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use wardline_domain::{DeviceId, DeviceKind, ObservationCode, PatientId, Reading, Role, Signal};

use crate::alarms::*;
use crate::model::*;
use crate::{Store, StoreError};

/// Instantiates every conformance check as a `#[tokio::test]`; `$fresh` is an async
/// expression giving a new, empty store (and whatever guard keeps it alive).
#[macro_export]
macro_rules! store_conformance_suite {
    ($fresh:expr) => {
        $crate::store_conformance_suite!(@tests $fresh;
            users_and_credentials, sessions_expire_and_revoke, care_teams_decide_membership,
            devices_and_assignments, ingest_stores_once, ingest_refuses_unassigned_and_revoked,
            reassigned_device_keeps_patients_apart, observations_page_by_time,
            latest_observation_per_code, waveform_chunks_by_window, audit_trail_is_chained,
            derived_observations_have_their_own_seq, latest_observations_within_a_window,
            rhythm_events_grow_and_are_found_by_overlap, news2_results_replace_per_time,
            care_plans_alarms_and_the_outbox, observation_summary_per_bucket);
    };
    (@tests $fresh:expr; $($check:ident),*) => {
        $(
            #[tokio::test]
            async fn $check() {
                let (store, _guard) = $fresh.await;
                $crate::conformance::$check(&store).await;
            }
        )*
    };
}

fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0)
        .single()
        .expect("valid time")
        + Duration::minutes(minutes)
}

async fn patient(store: &dyn Store, name: &str) -> PatientId {
    store
        .create_patient(NewPatient {
            display_name: name.into(),
            birth_date: None,
            mrn: None,
        })
        .await
        .expect("create patient")
        .id
}

async fn device(store: &dyn Store, id: &str) -> DeviceId {
    let id = DeviceId::parse(id).expect("device id");
    store
        .create_device(NewDevice {
            id: id.clone(),
            kind: DeviceKind::Cgm,
            model: "G7".into(),
            serial: format!("SN-{id}"),
            secret_hash: [7; 32],
        })
        .await
        .expect("create device");
    id
}

fn glucose(seq: i64, minute: i64, value: f64) -> Reading {
    Reading {
        seq,
        code: ObservationCode::GlucoseCgm,
        value,
        original: None,
        effective: at(minute),
    }
}

fn readings(device: &DeviceId, readings: Vec<Reading>) -> IngestItem {
    IngestItem {
        device_id: device.clone(),
        received: at(10_000),
        payload: IngestPayload::Readings(readings),
    }
}

fn user(username: &str, role: Role, patient_id: Option<PatientId>) -> NewUser {
    NewUser {
        username: username.into(),
        display_name: username.to_uppercase(),
        role,
        password_hash: "$argon2id$fake".into(),
        patient_id,
    }
}

pub async fn users_and_credentials(store: &dyn Store) {
    let nurse = store
        .create_user(user("Nora", Role::Nurse, None))
        .await
        .expect("create nurse");
    let credentials = store
        .user_credentials("nora")
        .await
        .expect("lookup")
        .expect("usernames match without regard to case");
    assert_eq!(credentials.user, nurse);
    assert_eq!(credentials.password_hash, "$argon2id$fake");
    assert!(matches!(
        store.create_user(user("NORA", Role::Clinician, None)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(
        store
            .create_user(user("pat", Role::Patient, None))
            .await
            .is_err(),
        "a patient account must be linked to a patient record"
    );
    let record = patient(store, "Pat").await;
    let account = store
        .create_user(user("pat", Role::Patient, Some(record)))
        .await
        .expect("patient account");
    assert_eq!(account.patient_id, Some(record));
    assert_eq!(
        store.user(account.id).await.expect("user"),
        Some(account.clone())
    );
    assert_eq!(
        store
            .count_users_with_role(Role::Admin)
            .await
            .expect("count"),
        0
    );
    store
        .set_user_disabled(account.id, true)
        .await
        .expect("disable");
    assert!(
        store
            .user(account.id)
            .await
            .expect("user")
            .expect("exists")
            .disabled
    );
    assert_eq!(store.users().await.expect("users").len(), 2);
}

pub async fn sessions_expire_and_revoke(store: &dyn Store) {
    let clinician = store
        .create_user(user("cleo", Role::Clinician, None))
        .await
        .expect("user");
    let session = NewSession {
        token_hash: [1; 32],
        user_id: clinician.id,
        created: at(0),
        expires: at(60),
    };
    store.create_session(session).await.expect("session");
    let live = store
        .session([1; 32], at(30))
        .await
        .expect("lookup")
        .expect("live session");
    assert_eq!(live.user.id, clinician.id);
    assert!(
        store
            .session([1; 32], at(61))
            .await
            .expect("lookup")
            .is_none(),
        "expired"
    );
    assert!(
        store
            .session([2; 32], at(30))
            .await
            .expect("lookup")
            .is_none(),
        "unknown token"
    );
    assert!(store.revoke_session([1; 32], at(31)).await.expect("revoke"));
    assert!(
        store
            .session([1; 32], at(32))
            .await
            .expect("lookup")
            .is_none(),
        "revoked"
    );
    store
        .create_session(NewSession {
            token_hash: [3; 32],
            user_id: clinician.id,
            created: at(0),
            expires: at(60),
        })
        .await
        .expect("second session");
    store
        .set_user_disabled(clinician.id, true)
        .await
        .expect("disable");
    assert!(
        store
            .session([3; 32], at(30))
            .await
            .expect("lookup")
            .is_none(),
        "disabled user"
    );
}

pub async fn care_teams_decide_membership(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let xavier = store
        .create_user(user("xavier", Role::Clinician, None))
        .await
        .expect("user");
    let yvonne = store
        .create_user(user("yvonne", Role::Nurse, None))
        .await
        .expect("user");
    let cardiology = store.create_care_team("Cardiology").await.expect("team");
    let diabetes = store.create_care_team("Diabetes").await.expect("team");
    assert!(matches!(
        store.create_care_team("Cardiology").await,
        Err(StoreError::Conflict { .. })
    ));
    store
        .add_care_team_member(cardiology.id, xavier.id)
        .await
        .expect("member");
    store
        .add_care_team_patient(cardiology.id, alice)
        .await
        .expect("patient");
    store
        .add_care_team_member(diabetes.id, yvonne.id)
        .await
        .expect("member");
    store
        .add_care_team_patient(diabetes.id, bob)
        .await
        .expect("patient");
    store
        .add_care_team_patient(diabetes.id, alice)
        .await
        .expect("patient");
    assert!(
        store
            .is_on_care_team_of(xavier.id, alice)
            .await
            .expect("check")
    );
    assert!(
        !store
            .is_on_care_team_of(xavier.id, bob)
            .await
            .expect("check")
    );
    let mut yvonnes = store
        .patients_of_care_team_member(yvonne.id)
        .await
        .expect("patients");
    yvonnes.sort();
    let mut expected = vec![alice, bob];
    expected.sort();
    assert_eq!(yvonnes, expected);
    let record = patient(store, "Carol").await;
    let carol = store
        .create_user(user("carol", Role::Patient, Some(record)))
        .await
        .expect("user");
    assert!(
        store
            .add_care_team_member(diabetes.id, carol.id)
            .await
            .is_err(),
        "a patient account cannot join a care team"
    );
    let teams = store.care_teams().await.expect("teams");
    assert_eq!(teams.len(), 2);
    assert_eq!(teams[1].patients.len(), 2);
}

pub async fn devices_and_assignments(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let cgm = device(store, "cgm-001").await;
    assert!(matches!(
        store
            .create_device(NewDevice {
                id: cgm.clone(),
                kind: DeviceKind::Cgm,
                model: "x".into(),
                serial: "y".into(),
                secret_hash: [0; 32],
            })
            .await,
        Err(StoreError::Conflict { .. })
    ));
    let credentials = store
        .device_credentials(&cgm)
        .await
        .expect("lookup")
        .expect("device");
    assert_eq!(credentials.secret_hash, [7; 32]);
    assert_eq!(credentials.device.status, DeviceStatus::Active);
    store
        .assign_device(&cgm, alice, at(0))
        .await
        .expect("assign");
    assert_eq!(
        store
            .devices_of_patient(alice)
            .await
            .expect("devices")
            .len(),
        1
    );
    assert!(
        store.assign_device(&cgm, alice, at(-5)).await.is_err(),
        "no assignment before the last one"
    );
    store
        .set_device_status(&cgm, DeviceStatus::Revoked)
        .await
        .expect("revoke");
    assert_eq!(
        store
            .device(&cgm)
            .await
            .expect("lookup")
            .expect("device")
            .status,
        DeviceStatus::Revoked
    );
    let unknown = DeviceId::parse("nope-000").expect("id");
    assert!(store.device(&unknown).await.expect("lookup").is_none());
    assert!(matches!(
        store
            .set_device_status(&unknown, DeviceStatus::Active)
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn ingest_stores_once(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let cgm = device(store, "cgm-001").await;
    store
        .assign_device(&cgm, alice, at(0))
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
        .assign_device(&cgm, alice, at(10))
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
        .set_device_status(&cgm, DeviceStatus::Revoked)
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
        .assign_device(&cgm, alice, at(0))
        .await
        .expect("assign");
    store
        .assign_device(&cgm, bob, at(30))
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

pub async fn observations_page_by_time(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let cgm = device(store, "cgm-001").await;
    store
        .assign_device(&cgm, alice, at(0))
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
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let page = store
            .observations(ObservationQuery {
                patient_id: alice,
                code: ObservationCode::GlucoseCgm,
                from: at(2),
                to: at(12),
                after,
                limit: 4,
            })
            .await
            .expect("query");
        assert!(page.observations.len() <= 4);
        seen.extend(
            page.observations
                .iter()
                .map(|observation| (observation.effective, observation.seq)),
        );
        match page.next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    let times: Vec<_> = seen.iter().map(|(time, _)| *time).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "pages come in time order");
    let mut seqs: Vec<i64> = seen.iter().map(|(_, seq)| *seq).collect();
    seqs.sort();
    // Minutes 2..12 (exclusive) hold seq 2..=21.
    assert_eq!(seqs, (2..=21).collect::<Vec<_>>());
    let other_code = store
        .observations(ObservationQuery {
            patient_id: alice,
            code: ObservationCode::HeartRate,
            from: at(0),
            to: at(60),
            after: None,
            limit: 10,
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
        .assign_device(&cgm, alice, at(0))
        .await
        .expect("assign");
    store
        .assign_device(&other, bob, at(0))
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
    let cgm = device(store, "cgm-001").await;
    store
        .assign_device(&cgm, alice, at(0))
        .await
        .expect("assign");
    let heart = Reading {
        seq: 10,
        code: ObservationCode::HeartRate,
        value: 72.0,
        original: None,
        effective: at(3),
    };
    store
        .ingest(vec![readings(
            &cgm,
            vec![
                glucose(1, 5, 110.0),
                glucose(2, 9, 99.0),
                glucose(3, 7, 130.0),
                heart,
            ],
        )])
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
        .assign_device(&ecg, alice, at(0))
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
}

pub async fn audit_trail_is_chained(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let xavier = store
        .create_user(user("xavier", Role::Clinician, None))
        .await
        .expect("user");
    let event = |action: &str, outcome: AuditOutcome, patient_id: Option<PatientId>| AuditEvent {
        time: at(1),
        actor: Some(xavier.id),
        actor_label: "xavier".into(),
        action: action.into(),
        patient_id,
        outcome,
        remote_addr: Some("127.0.0.1".into()),
        detail: None,
    };
    store
        .append_audit(vec![
            event("login", AuditOutcome::Allowed, None),
            event("observations.read", AuditOutcome::Denied, Some(alice)),
        ])
        .await
        .expect("append");
    store
        .append_audit(vec![AuditEvent {
            actor: None,
            actor_label: "mallory".into(),
            ..event("login.failed", AuditOutcome::Denied, None)
        }])
        .await
        .expect("append");
    let about_alice = store
        .audit_events(AuditQuery {
            patient_id: Some(alice),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("query");
    assert_eq!(about_alice.len(), 1);
    assert_eq!(about_alice[0].outcome, AuditOutcome::Denied);
    assert_eq!(about_alice[0].actor, Some(xavier.id));
    let all = store
        .audit_events(AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("query");
    assert_eq!(all.len(), 3);
    assert!(all[0].sequence > all[1].sequence, "newest first");
    assert_eq!(store.verify_audit_chain().await.expect("verify"), 3);
}

pub async fn derived_observations_have_their_own_seq(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let ecg = device(store, "ecg-001").await;
    store
        .assign_device(&ecg, alice, at(0))
        .await
        .expect("assign");
    let heart = |seq: i64, minute: i64, value: f64| Reading {
        seq,
        code: ObservationCode::HeartRate,
        value,
        original: None,
        effective: at(minute),
    };
    store
        .ingest(vec![readings(&ecg, vec![heart(7, 1, 70.0)])])
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
        .store_derived_observations(vec![derived(7, 2, 71.0), derived(8, 3, 72.0)])
        .await
        .expect("derive");
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|observation| observation.derived));
    // Deriving again is a no-op.
    let again = store
        .store_derived_observations(vec![derived(8, 3, 72.0)])
        .await
        .expect("derive again");
    assert!(again.is_empty());
    // And a device retry of seq 7 is still a duplicate, not confused with the derived 7.
    let retried = store
        .ingest(vec![readings(&ecg, vec![heart(7, 1, 70.0)])])
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
        })
        .await
        .expect("query");
    let flags: Vec<(i64, bool)> = page
        .observations
        .iter()
        .map(|observation| (observation.seq, observation.derived))
        .collect();
    assert_eq!(flags, vec![(7, false), (7, true), (8, true)]);
    let latest = store.latest_observations(alice).await.expect("latest");
    assert_eq!(latest[0].value, 72.0);
    assert!(latest[0].derived);
    assert!(matches!(
        store
            .store_derived_observations(vec![NewDerivedObservation {
                device_id: DeviceId::parse("ghost-01").expect("id"),
                ..derived(9, 4, 73.0)
            }])
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn latest_observations_within_a_window(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let cgm = device(store, "cgm-001").await;
    store
        .assign_device(&cgm, alice, at(0))
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
    use crate::model::RhythmEventKind;
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let ecg = device(store, "ecg-001").await;
    let event = |kind: RhythmEventKind, onset: i64, end: i64| RhythmEventRecord {
        patient_id: alice,
        device_id: ecg.clone(),
        signal: Signal::EcgLeadIi,
        kind,
        onset: at(onset),
        end: at(end),
        detail: Some(json!({"median_bpm": 44})),
    };
    store
        .record_rhythm_events(vec![
            event(RhythmEventKind::AtrialFibrillation, 10, 12),
            event(RhythmEventKind::Pause, 20, 20),
        ])
        .await
        .expect("record");
    // The same AF event seen again with a later end grows; an earlier end never shrinks it.
    store
        .record_rhythm_events(vec![
            event(RhythmEventKind::AtrialFibrillation, 10, 15),
            event(RhythmEventKind::AtrialFibrillation, 10, 13),
        ])
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
    assert_eq!(all[0].kind, RhythmEventKind::AtrialFibrillation);
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
            .record_rhythm_events(vec![event(RhythmEventKind::Pause, 30, 29)])
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
    };
    assert!(store.latest_news2(alice).await.expect("latest").is_none());
    store.record_news2(result(5, 1)).await.expect("record");
    store.record_news2(result(10, 2)).await.expect("record");
    store.record_news2(result(10, 3)).await.expect("replace");
    let all = store
        .news2_scores(News2Query {
            patient_id: alice,
            from: at(0),
            to: at(60),
            limit: 100,
        })
        .await
        .expect("query");
    assert_eq!(all.len(), 2);
    assert_eq!(all[1], result(10, 3));
    assert_eq!(
        store.latest_news2(alice).await.expect("latest"),
        Some(result(10, 3))
    );
    assert!(
        store
            .record_news2(News2Record {
                risk: "unknown".into(),
                ..result(20, 0)
            })
            .await
            .is_err(),
        "only the four risk bands are stored"
    );
}

pub async fn care_plans_alarms_and_the_outbox(store: &dyn Store) {
    let patient_id = patient(store, "Alarm Patient").await;
    let team = store.create_care_team("Alarm Team").await.expect("team");
    store
        .add_care_team_patient(team.id, patient_id)
        .await
        .expect("team patient");
    assert_eq!(
        store
            .care_teams_of_patient(patient_id)
            .await
            .expect("teams"),
        vec![team.id]
    );

    // Care plan versions are append-only and numbered.
    let version = |version: u32, minute: i64| CarePlanVersionRecord {
        patient_id,
        version,
        effective: at(minute),
        author: None,
        author_label: "cli".into(),
        reason: "enrolled".into(),
        plan: json!({"version": version}),
        old_rule: None,
        new_rule: (version > 1).then(|| json!({"id": "low"})),
    };
    store
        .append_care_plan_version(version(1, 0))
        .await
        .expect("v1");
    store
        .append_care_plan_version(version(2, 10))
        .await
        .expect("v2");
    assert!(matches!(
        store.append_care_plan_version(version(2, 20)).await,
        Err(StoreError::Conflict { .. })
    ));
    let versions = store
        .care_plan_versions(patient_id)
        .await
        .expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1].new_rule, Some(json!({"id": "low"})));
    let current = store.current_care_plans().await.expect("current");
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].version, 2);

    store
        .save_monitor_states(vec![(patient_id, at(1), json!({"m": 1}))])
        .await
        .expect("monitor");
    store
        .save_monitor_states(vec![(patient_id, at(2), json!({"m": 2}))])
        .await
        .expect("monitor again");
    assert_eq!(
        store.monitor_states().await.expect("states"),
        vec![(patient_id, json!({"m": 2}))]
    );

    // An alarm, its history and a notification in one change.
    let channel = NotificationChannel {
        id: "ch-1".into(),
        team_id: team.id,
        kind: "webhook".into(),
        target: "https://example.org/hook".into(),
        sealed_secret: Some(vec![1, 2, 3]),
        minimal: true,
        created: at(0),
    };
    store
        .create_notification_channel(channel.clone())
        .await
        .expect("channel");
    let alarm = |state: &str, minute: i64| AlarmRecord {
        public_id: "a1".into(),
        alarm_id: format!("{patient_id}/low/1"),
        patient_id,
        rule_id: "low".into(),
        priority: "high".into(),
        kind: "physiological".into(),
        state: state.into(),
        raised: at(3),
        updated: at(minute),
        next_deadline: Some(at(minute + 5)),
        alarm: json!({"state": state}),
    };
    store
        .save_alarm_changes(vec![AlarmChange {
            alarm: alarm("open", 3),
            events: vec![NewAlarmEvent {
                time: at(3),
                event: "opened".into(),
                actor: None,
                detail: None,
            }],
            notifications: vec![NewNotification {
                idempotency_key: "a1/0/ch-1".into(),
                channel_id: "ch-1".into(),
                payload: json!({"alarm": "a1"}),
                next_attempt: at(3),
            }],
        }])
        .await
        .expect("save alarm");
    // A second unresolved alarm of the same condition is refused.
    let mut twin = alarm("open", 4);
    twin.public_id = "a2".into();
    twin.alarm_id = format!("{patient_id}/low/2");
    assert!(
        store
            .save_alarm_changes(vec![AlarmChange {
                alarm: twin,
                events: vec![],
                notifications: vec![],
            }])
            .await
            .is_err()
    );
    assert_eq!(
        store.unresolved_alarms().await.expect("unresolved").len(),
        1
    );
    let due = store.due_outbox(at(3), 10).await.expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].channel.sealed_secret, Some(vec![1, 2, 3]));
    assert!(store.due_outbox(at(2), 10).await.expect("early").is_empty());
    store
        .record_delivery(
            due[0].key,
            at(4),
            DeliveryOutcome::Retry {
                next_attempt: at(6),
                error: "503".into(),
            },
        )
        .await
        .expect("retry");
    assert_eq!(
        store.next_outbox_attempt().await.expect("next"),
        Some(at(6))
    );
    store
        .record_delivery(
            due[0].key,
            at(7),
            DeliveryOutcome::Dead {
                error: "gone".into(),
            },
        )
        .await
        .expect("dead");
    let dead = store
        .notifications(NotificationQuery {
            status: Some("dead".into()),
            limit: 10,
            ..NotificationQuery::default()
        })
        .await
        .expect("dead letters");
    assert_eq!((dead.len(), dead[0].attempts), (1, 2));
    assert!(
        store
            .retry_notification(dead[0].key, at(8))
            .await
            .expect("retry")
    );
    store
        .record_delivery(dead[0].key, at(8), DeliveryOutcome::Delivered)
        .await
        .expect("delivered");
    assert_eq!(store.next_outbox_attempt().await.expect("none"), None);

    // Acknowledged, then resolved: the history grows, the row is updated.
    store
        .save_alarm_changes(vec![AlarmChange {
            alarm: alarm("resolved", 9),
            events: vec![NewAlarmEvent {
                time: at(9),
                event: "resolved".into(),
                actor: None,
                detail: Some(json!({"note": "ok"})),
            }],
            notifications: vec![],
        }])
        .await
        .expect("resolve");
    assert!(store.unresolved_alarms().await.expect("none").is_empty());
    let found = store
        .alarms(AlarmQuery {
            patients: vec![patient_id],
            states: vec!["resolved".into()],
            limit: 10,
            ..AlarmQuery::default()
        })
        .await
        .expect("alarms");
    assert_eq!(found.len(), 1);
    assert_eq!(
        store.alarm_events("a1").await.expect("events").len(),
        2,
        "opened and resolved"
    );
    assert!(
        store
            .alarm_by_public_id("a1")
            .await
            .expect("by id")
            .is_some()
    );

    store
        .set_escalation_policy(team.id, json!({"steps": []}), at(0))
        .await
        .expect("policy");
    assert_eq!(
        store.escalation_policies().await.expect("policies").len(),
        1
    );
    assert!(
        store
            .remove_notification_channel(team.id, "ch-1", at(10))
            .await
            .expect("remove")
    );
    assert!(
        store
            .notification_channels(Some(team.id))
            .await
            .expect("channels")
            .is_empty()
    );
}
