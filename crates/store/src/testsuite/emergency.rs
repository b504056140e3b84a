//! Conformance checks of [`crate::EmergencyAccessStore`].

use uuid::Uuid;
use wardline_domain::{PatientId, Role};

use super::{at, audit, patient, user};
use crate::{NewEmergencyAccess, Store, StoreError};

pub async fn emergency_access_opens_expires_and_is_reviewed_once(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let xavier = store
        .create_user(user("xavier", Role::Clinician, None), audit("users.create"))
        .await
        .expect("user");
    let root = store
        .create_user(user("root", Role::Admin, None), audit("users.create"))
        .await
        .expect("user");
    let opening = |id: Uuid, patient_id: PatientId, from: i64, until: i64| NewEmergencyAccess {
        id,
        user_id: xavier.id,
        patient_id,
        reason: "called to a cardiac arrest on ward 4".into(),
        opened: at(from),
        expires: at(until),
    };
    let first = Uuid::new_v4();
    let opened = store
        .open_emergency_access(opening(first, alice, 0, 60), audit("emergency_access.open"))
        .await
        .expect("open");
    assert_eq!(
        (opened.id, opened.user_id, opened.patient_id),
        (first, xavier.id, alice)
    );
    assert_eq!(opened.username, "xavier");
    assert_eq!((opened.opened, opened.expires), (at(0), at(60)));
    assert_eq!(opened.review, None);
    // Open within its window only, and only for its own user and patient.
    let open_at = |minute: i64| async move {
        store
            .open_emergency_access_of(xavier.id, alice, at(minute))
            .await
            .expect("lookup")
            .map(|access| access.id)
    };
    assert_eq!(open_at(30).await, Some(first));
    assert_eq!(open_at(60).await, None, "ended at its expiry");
    assert_eq!(
        store
            .open_emergency_access_of(xavier.id, bob, at(30))
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(
        store
            .open_emergency_access_of(root.id, alice, at(30))
            .await
            .expect("lookup"),
        None
    );
    // Of two open at once, the one that lasts longer.
    let second = Uuid::new_v4();
    store
        .open_emergency_access(
            opening(second, alice, 20, 90),
            audit("emergency_access.open"),
        )
        .await
        .expect("open again");
    assert_eq!(open_at(30).await, Some(second));
    assert_eq!(open_at(70).await, Some(second));
    assert!(matches!(
        store
            .open_emergency_access(
                NewEmergencyAccess {
                    patient_id: PatientId::random(),
                    ..opening(Uuid::new_v4(), alice, 0, 10)
                },
                audit("emergency_access.open"),
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));

    // Newest first; a review takes an access off the unreviewed list, once.
    let ids = |accesses: Vec<crate::EmergencyAccess>| {
        accesses
            .into_iter()
            .map(|access| access.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.emergency_accesses(true, 10).await.expect("list")),
        [second, first]
    );
    let reviewed = store
        .review_emergency_access(
            first,
            root.id,
            "confirmed with the ward".into(),
            at(120),
            audit("emergency_access.review"),
        )
        .await
        .expect("review");
    let review = reviewed.review.expect("the review");
    assert_eq!(
        (
            review.reviewer_id,
            review.reviewer.as_str(),
            review.reviewed
        ),
        (root.id, "root", at(120))
    );
    assert_eq!(review.note, "confirmed with the ward");
    assert_eq!(
        ids(store.emergency_accesses(true, 10).await.expect("list")),
        [second]
    );
    assert_eq!(
        ids(store.emergency_accesses(false, 10).await.expect("list")),
        [second, first]
    );
    assert_eq!(
        ids(store.emergency_accesses(false, 1).await.expect("list")),
        [second]
    );
    assert!(matches!(
        store
            .review_emergency_access(
                first,
                root.id,
                "again".into(),
                at(130),
                audit("emergency_access.review")
            )
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store
            .review_emergency_access(
                Uuid::new_v4(),
                root.id,
                "?".into(),
                at(130),
                audit("emergency_access.review")
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
}
