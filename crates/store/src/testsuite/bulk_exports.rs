//! Conformance checks of [`crate::BulkExportStore`].

use chrono::Duration;
use uuid::Uuid;

use super::{at, audit, patient};
use crate::{AuditQuery, BulkExportEnd, BulkExportOutput, BulkExportStatus, NewBulkExport, Store};

fn new_export(requester: &str, patients: Vec<wardline_domain::PatientId>) -> NewBulkExport {
    NewBulkExport {
        id: Uuid::new_v4(),
        requester: requester.to_owned(),
        request: "https://wardline.example/fhir/R4/Patient/$export?_type=Observation".into(),
        created: at(0),
        types: vec!["Patient".into(), "Observation".into()],
        since: Some(at(-60)),
        patients,
    }
}

pub async fn bulk_exports_are_claimed_once_and_end_once(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let first = store
        .create_bulk_export(new_export("user:a", vec![alice, bob]), audit("fhir.export"))
        .await
        .expect("create");
    assert_eq!(first.status, BulkExportStatus::Pending);
    assert_eq!(first.patients, vec![alice, bob]);
    assert_eq!(
        first.types,
        vec!["Patient".to_owned(), "Observation".to_owned()]
    );
    assert_eq!(first.since, Some(at(-60)));
    assert_eq!(first.attempt, 0);
    let second = store
        .create_bulk_export(new_export("user:a", vec![alice]), audit("fhir.export"))
        .await
        .expect("create");
    store
        .create_bulk_export(new_export("user:b", vec![bob]), audit("fhir.export"))
        .await
        .expect("create");
    let audited = store
        .audit_events(AuditQuery {
            action: Some("fhir.export".into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    assert_eq!(audited.len(), 3, "each request audited in its commit");
    assert_eq!(
        store
            .open_bulk_exports_of("user:a")
            .await
            .expect("open")
            .len(),
        2
    );

    // The oldest waiting job first; a claimed one is not handed out again while its
    // lease holds.
    let claimed = store
        .claim_bulk_export(at(1), at(11))
        .await
        .expect("claim")
        .expect("a job waits");
    assert_eq!(claimed.id, first.id);
    assert_eq!(claimed.status, BulkExportStatus::Running);
    assert_eq!(claimed.attempt, 1);
    assert_eq!(claimed.lease_until, Some(at(11)));
    let next = store
        .claim_bulk_export(at(2), at(12))
        .await
        .expect("claim")
        .expect("another job waits");
    assert_eq!(next.id, second.id);
    assert!(
        store
            .record_bulk_export_progress(first.id, 1, "Observation: 1 of 2 patients".into(), at(20))
            .await
            .expect("progress")
    );
    let read = store
        .bulk_export(first.id)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(
        read.progress.as_deref(),
        Some("Observation: 1 of 2 patients")
    );
    assert_eq!(read.lease_until, Some(at(20)));

    // Once the lease runs out another worker takes it over, and the first claim can
    // record nothing more.
    let _third = store
        .claim_bulk_export(at(3), at(13))
        .await
        .expect("claim")
        .expect("the third job");
    assert_eq!(
        store.claim_bulk_export(at(4), at(14)).await.expect("claim"),
        None
    );
    let retaken = store
        .claim_bulk_export(at(21), at(31))
        .await
        .expect("claim")
        .expect("the job whose lease ran out");
    assert_eq!((retaken.id, retaken.attempt), (first.id, 2));
    assert_eq!(retaken.progress, None);
    assert!(
        !store
            .record_bulk_export_progress(first.id, 1, "late".into(), at(40))
            .await
            .expect("progress")
    );
    let outputs = vec![BulkExportOutput {
        resource_type: "Observation".into(),
        file: "Observation.1.ndjson".into(),
        count: 42,
    }];
    assert!(
        !store
            .finish_bulk_export(
                first.id,
                1,
                BulkExportEnd::Completed(Vec::new()),
                at(22),
                at(22) + Duration::hours(1)
            )
            .await
            .expect("finish")
    );
    assert!(
        store
            .finish_bulk_export(
                first.id,
                2,
                BulkExportEnd::Completed(outputs.clone()),
                at(23),
                at(83)
            )
            .await
            .expect("finish")
    );
    let done = store
        .bulk_export(first.id)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(done.status, BulkExportStatus::Completed);
    assert_eq!(done.outputs, outputs);
    assert_eq!((done.finished, done.expires), (Some(at(23)), Some(at(83))));
    assert!(
        !store
            .finish_bulk_export(
                first.id,
                2,
                BulkExportEnd::Failed("again".into()),
                at(24),
                at(84)
            )
            .await
            .expect("finish"),
        "a finished job ends once"
    );
    assert!(
        store
            .finish_bulk_export(
                second.id,
                1,
                BulkExportEnd::Failed("disk full".into()),
                at(24),
                at(30)
            )
            .await
            .expect("finish")
    );
    let failed = store
        .bulk_export(second.id)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(failed.status, BulkExportStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("disk full"));
    assert!(
        store
            .open_bulk_exports_of("user:a")
            .await
            .expect("open")
            .is_empty()
    );
    assert_eq!(
        store
            .open_bulk_exports_of("user:b")
            .await
            .expect("open")
            .len(),
        1
    );

    // Cancelling is once, audited; cancelled and expired jobs are the ones to clear.
    let third = store
        .open_bulk_exports_of("user:b")
        .await
        .expect("open")
        .remove(0);
    assert!(
        store
            .cancel_bulk_export(third.id, at(25), audit("fhir.export.cancel"))
            .await
            .expect("cancel")
    );
    assert!(
        !store
            .cancel_bulk_export(third.id, at(26), audit("fhir.export.cancel"))
            .await
            .expect("cancel")
    );
    assert!(
        !store
            .record_bulk_export_progress(third.id, 1, "after the cancel".into(), at(40))
            .await
            .expect("progress"),
        "a cancelled job's worker stops"
    );
    assert_eq!(
        store
            .bulk_export(third.id)
            .await
            .expect("read")
            .expect("kept")
            .status,
        BulkExportStatus::Cancelled
    );
    let cancelled = store
        .audit_events(AuditQuery {
            action: Some("fhir.export.cancel".into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    assert_eq!(cancelled.len(), 1);
    let mut ended = store.ended_bulk_exports(at(29)).await.expect("ended");
    assert_eq!(ended, vec![third.id]);
    ended = store.ended_bulk_exports(at(83)).await.expect("ended");
    ended.sort();
    let mut expected = vec![first.id, second.id, third.id];
    expected.sort();
    assert_eq!(ended, expected);
    for id in ended {
        store.delete_bulk_export(id).await.expect("delete");
    }
    assert_eq!(store.bulk_export(first.id).await.expect("read"), None);
    assert!(
        store
            .ended_bulk_exports(at(100))
            .await
            .expect("ended")
            .is_empty()
    );
    assert_eq!(
        store
            .claim_bulk_export(at(100), at(110))
            .await
            .expect("claim"),
        None
    );
}
