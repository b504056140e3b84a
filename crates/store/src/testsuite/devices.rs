//! Checks of [`DeviceStore`](crate::DeviceStore).

use wardline_domain::{DeviceId, PatientId};

use super::{at, audit, device, new_device, patient};
use crate::{
    AuditQuery, CommittedEvent, DeviceCertificate, DeviceReport, DeviceStatus, EventCursor,
    EventFilter, InitialAssignment, Store, StoreError,
};

pub async fn device_certificates_identify_their_device(store: &dyn Store) {
    let cgm = device(store, "cgm-001").await;
    let other = device(store, "cgm-002").await;
    let certificate = |byte: u8| DeviceCertificate {
        fingerprint: [byte; 32],
        serial: format!("{byte:02x}"),
        issued: at(1),
        not_after: at(1000),
    };
    assert!(
        store
            .device_by_certificate([1; 32])
            .await
            .expect("lookup")
            .is_none()
    );
    for byte in [1, 2] {
        store
            .add_device_certificate(&cgm, certificate(byte), audit("devices.issue_certificate"))
            .await
            .expect("add");
    }
    // Each certificate names its device; a renewal leaves the earlier one valid.
    for byte in [1, 2] {
        let found = store
            .device_by_certificate([byte; 32])
            .await
            .expect("lookup")
            .expect("certificate");
        assert_eq!(found.device.id, cgm);
        assert_eq!(found.certificate, certificate(byte));
    }
    // A fingerprint is one certificate's, for one device.
    assert!(matches!(
        store
            .add_device_certificate(&other, certificate(1), audit("devices.issue_certificate"))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store
            .add_device_certificate(
                &DeviceId::parse("dev_unknown").expect("id"),
                certificate(3),
                audit("devices.issue_certificate")
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let issued = store
        .audit_events(AuditQuery {
            action: Some("devices.issue_certificate".into()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    assert_eq!(issued.len(), 2, "refused certificates leave no entry");
    // The device's status is the caller's to judge: a revoked device is still found.
    store
        .set_device_status(&cgm, DeviceStatus::Revoked, audit("devices.revoke"))
        .await
        .expect("revoke");
    let revoked = store
        .device_by_certificate([2; 32])
        .await
        .expect("lookup")
        .expect("certificate");
    assert_eq!(revoked.device.status, DeviceStatus::Revoked);
}

pub async fn devices_and_assignments(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let cgm = device(store, "cgm-001").await;
    assert!(matches!(
        store
            .enrol_device(new_device(&cgm), None, audit("devices.enrol"))
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
    assert_eq!(credentials.device.created, at(0));
    store
        .assign_device(&cgm, alice, at(0), audit("devices.assign"))
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
        matches!(
            store
                .assign_device(&cgm, alice, at(-5), audit("devices.assign"))
                .await,
            Err(StoreError::Invalid(_))
        ),
        "no assignment before the last one"
    );
    store
        .set_device_status(&cgm, DeviceStatus::Revoked, audit("devices.revoke"))
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
    assert!(
        store
            .device_credentials(&unknown)
            .await
            .expect("lookup")
            .is_none()
    );
    assert!(matches!(
        store
            .set_device_status(&unknown, DeviceStatus::Active, audit("devices.revoke"))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let second = device(store, "cgm-002").await;
    let ids: Vec<DeviceId> = store
        .devices()
        .await
        .expect("devices")
        .into_iter()
        .map(|device| device.id)
        .collect();
    assert_eq!(ids, vec![cgm.clone(), second.clone()]);
    let assignments = store.device_assignments(&cgm).await.expect("assignments");
    assert_eq!(assignments.len(), 1);
    assert_eq!(
        (assignments[0].patient_id, assignments[0].start),
        (alice, at(0))
    );
    // A patient's assignments, past and present, of every device.
    let bob = patient(store, "Bob").await;
    store
        .assign_device(&second, alice, at(10), audit("devices.assign"))
        .await
        .expect("assign");
    store
        .assign_device(&second, bob, at(20), audit("devices.assign"))
        .await
        .expect("reassign");
    let of_alice: Vec<(DeviceId, PatientId, _, _)> = store
        .assignments_of_patient(alice)
        .await
        .expect("assignments")
        .into_iter()
        .map(|a| (a.device_id, a.patient_id, a.start, a.end))
        .collect();
    assert_eq!(
        of_alice,
        vec![
            (cgm.clone(), alice, at(0), None),
            (second.clone(), alice, at(10), Some(at(20)))
        ]
    );
    let of_bob = store
        .assignments_of_patient(bob)
        .await
        .expect("assignments");
    assert_eq!(of_bob.len(), 1);
    assert_eq!(
        (&of_bob[0].device_id, of_bob[0].start, of_bob[0].end),
        (&second, at(20), None)
    );
    assert!(
        store
            .assignments_of_patient(PatientId::random())
            .await
            .expect("assignments")
            .is_empty()
    );
}

/// Enrolment with an assignment is one commit: for a patient who does not exist it is
/// refused and leaves neither device nor audit entry behind.
pub async fn enrolment_for_an_unknown_patient_leaves_nothing(store: &dyn Store) {
    let ecg = DeviceId::parse("ecg-ghost").expect("id");
    let refused = store
        .enrol_device(
            new_device(&ecg),
            Some(InitialAssignment {
                patient_id: PatientId::random(),
                from: at(0),
            }),
            audit("devices.enrol"),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::NotFound { .. })),
        "{refused:?}"
    );
    assert!(store.device(&ecg).await.expect("lookup").is_none());
    assert!(store.devices().await.expect("devices").is_empty());
    assert!(
        store
            .audit_events(AuditQuery {
                limit: 10,
                ..AuditQuery::default()
            })
            .await
            .expect("audit")
            .is_empty()
    );
    let alice = patient(store, "Alice").await;
    let enrolled = store
        .enrol_device(
            new_device(&ecg),
            Some(InitialAssignment {
                patient_id: alice,
                from: at(1),
            }),
            audit("devices.enrol"),
        )
        .await
        .expect("enrol for a patient who exists");
    assert_eq!(enrolled.id, ecg);
    let assignments = store.device_assignments(&ecg).await.expect("assignments");
    assert_eq!(assignments.len(), 1);
    assert_eq!(assignments[0].patient_id, alice);
}

pub async fn device_reports_are_kept(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let cuff = super::assigned_device(store, "cuff-001", alice).await;
    let start = store.event_tail().await.expect("tail");
    let report = DeviceReport {
        device_id: cuff.clone(),
        patient_id: alice,
        at: at(5),
        battery_percent: Some(12.5),
        fault: Some("cuff leak".into()),
    };
    store
        .record_device_report(report.clone())
        .await
        .expect("report");
    assert!(matches!(
        store
            .record_device_report(DeviceReport {
                battery_percent: Some(140.0),
                ..report.clone()
            })
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store
            .record_device_report(DeviceReport {
                device_id: DeviceId::parse("nope-001").expect("id"),
                ..report.clone()
            })
            .await,
        Err(StoreError::NotFound { .. })
    ));
    // Kept only for the patient the device measured then, and only while it is active:
    // a report that raced a new assignment or a revocation is refused.
    let bob = patient(store, "Bob").await;
    store
        .assign_device(&cuff, bob, at(10), audit("devices.assign"))
        .await
        .expect("reassign");
    assert!(matches!(
        store
            .record_device_report(DeviceReport {
                at: at(11),
                ..report.clone()
            })
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .record_device_report(DeviceReport {
                patient_id: bob,
                at: at(9),
                ..report.clone()
            })
            .await,
        Err(StoreError::NotFound { .. })
    ));
    store
        .set_device_status(&cuff, DeviceStatus::Revoked, audit("devices.revoke"))
        .await
        .expect("revoke");
    assert!(matches!(
        store
            .record_device_report(DeviceReport {
                patient_id: bob,
                at: at(12),
                ..report.clone()
            })
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let batch = store
        .events_after(&start, EventFilter::all(), 100)
        .await
        .expect("events");
    assert_eq!(batch.events, vec![CommittedEvent::DeviceReport(report)]);
    let none = store
        .events_after(
            &start,
            EventFilter {
                device_reports: false,
                ..EventFilter::all()
            },
            100,
        )
        .await
        .expect("events");
    assert!(none.events.is_empty(), "not asked for");
    assert_ne!(none.next, EventCursor(String::new()));
}
