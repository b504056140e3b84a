//! Conformance checks of [`crate::ShareStore`].

use uuid::Uuid;
use wardline_domain::sharing::ShareCategory;
use wardline_domain::{PatientId, Role, UserId};

use super::{at, audit, patient, user};
use crate::{NewShare, Store, StoreError};

pub async fn shares_open_until_they_expire_or_are_revoked(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let okafor = store
        .create_user(
            user("okafor", Role::Specialist, None),
            audit("users.create"),
        )
        .await
        .expect("specialist");
    let other = store
        .create_user(user("other", Role::Specialist, None), audit("users.create"))
        .await
        .expect("specialist");
    let alice_account = store
        .create_user(
            user("alice", Role::Patient, Some(alice)),
            audit("users.create"),
        )
        .await
        .expect("patient");
    let share = |id: Uuid, patient_id: PatientId, grantee: UserId, expires: i64| NewShare {
        id,
        patient_id,
        grantee_id: grantee,
        consented_by: alice_account.id,
        created: at(0),
        categories: vec![ShareCategory::Ecg, ShareCategory::Glucose],
        data_from: at(-30 * 24 * 60),
        data_to: at(0),
        expires: at(expires),
        message: Some("for the arrhythmia clinic".into()),
    };
    let first = Uuid::new_v4();
    let created = store
        .create_share(share(first, alice, okafor.id, 60), audit("shares.create"))
        .await
        .expect("create");
    assert_eq!(created.id, first);
    assert_eq!(created.grantee_name, "OKAFOR");
    assert_eq!(created.consented_by, alice_account.id);
    assert_eq!(
        created.categories,
        vec![ShareCategory::Ecg, ShareCategory::Glucose]
    );
    assert_eq!(
        (created.data_from, created.data_to),
        (at(-30 * 24 * 60), at(0))
    );
    assert_eq!(
        created.message.as_deref(),
        Some("for the arrhythmia clinic")
    );
    assert_eq!(created.revoked, None);
    assert_eq!(
        store.share(first).await.expect("read"),
        Some(created.clone())
    );

    // Live for its grantee and patient only, until it expires.
    let live = |grantee: UserId, patient_id: PatientId, minute: i64| async move {
        store
            .live_shares(grantee, patient_id, at(minute))
            .await
            .expect("live")
            .into_iter()
            .map(|share| share.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(live(okafor.id, alice, 10).await, vec![first]);
    assert!(live(okafor.id, alice, 60).await.is_empty(), "expired");
    assert!(
        live(other.id, alice, 10).await.is_empty(),
        "another grantee"
    );
    assert!(live(okafor.id, bob, 10).await.is_empty(), "another patient");
    assert_eq!(
        store
            .patients_sharing_with(okafor.id, at(10))
            .await
            .expect("patients"),
        vec![alice]
    );
    assert!(
        store
            .patients_sharing_with(okafor.id, at(60))
            .await
            .expect("patients")
            .is_empty()
    );

    // A second share; the patient sees both, newest first.
    let second = Uuid::new_v4();
    store
        .create_share(share(second, alice, other.id, 120), audit("shares.create"))
        .await
        .expect("create");
    let listed: Vec<Uuid> = store
        .shares_of_patient(alice)
        .await
        .expect("list")
        .into_iter()
        .map(|share| share.id)
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&first) && listed.contains(&second));
    assert!(store.shares_of_patient(bob).await.expect("list").is_empty());

    // Revoked once, audited once; nothing live after.
    assert!(
        store
            .revoke_share(first, at(5), audit("shares.revoke"))
            .await
            .expect("revoke")
    );
    assert!(
        !store
            .revoke_share(first, at(6), audit("shares.revoke"))
            .await
            .expect("revoke again")
    );
    assert_eq!(
        store
            .share(first)
            .await
            .expect("read")
            .and_then(|share| share.revoked),
        Some(at(5))
    );
    assert!(live(okafor.id, alice, 10).await.is_empty(), "revoked");
    assert!(matches!(
        store
            .revoke_share(Uuid::new_v4(), at(6), audit("shares.revoke"))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .create_share(
                share(Uuid::new_v4(), PatientId::random(), okafor.id, 60),
                audit("shares.create")
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
}
