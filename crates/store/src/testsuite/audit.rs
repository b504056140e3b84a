//! Checks of [`AuditStore`](crate::AuditStore).

use wardline_domain::{PatientId, Role};

use super::{at, audit, patient, user};
use crate::{AuditEvent, AuditOutcome, AuditQuery, Store};

pub async fn audit_trail_is_chained(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let xavier = store
        .create_user(user("xavier", Role::Clinician, None), audit("users.create"))
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
    let nobody = PatientId::random();
    store
        .append_audit(vec![
            event("login", AuditOutcome::Allowed, None),
            event("observations.read", AuditOutcome::Denied, Some(alice)),
            event("observations.read", AuditOutcome::Denied, Some(nobody)),
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
    store.append_audit(vec![]).await.expect("nothing to append");
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
    assert_eq!(about_alice[0].remote_addr.as_deref(), Some("127.0.0.1"));
    let by_xavier = store
        .audit_events(AuditQuery {
            actor: Some(xavier.id),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("query");
    assert_eq!(by_xavier.len(), 3);
    assert_eq!(
        by_xavier[0].patient_id,
        Some(nobody),
        "a refused read of a record that does not exist names what was asked for"
    );
    let all = store
        .audit_events(AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("query");
    // The patient and the user were created with their own entries.
    assert_eq!(all.len(), 6);
    assert!(all[0].sequence > all[1].sequence, "newest first");
    assert_eq!(all[0].actor_label, "mallory");
    let older = store
        .audit_events(AuditQuery {
            before: Some(all[0].sequence),
            action: Some("observations.read".into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("query");
    assert_eq!(older.len(), 2);
    assert_eq!(store.verify_audit_chain().await.expect("verify"), 6);
    let hashes: std::collections::HashSet<&str> =
        all.iter().map(|event| event.chain_hash.as_str()).collect();
    assert_eq!(hashes.len(), 6, "every entry has its own hash");
}
