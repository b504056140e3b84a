//! Conformance checks of [`crate::ShareStore`].

use uuid::Uuid;
use wardline_domain::sharing::ShareCategory;
use wardline_domain::{PatientId, Role, UserId};

use super::{at, audit, patient, user};
use crate::{
    InvitedAccount, LinkAttempt, NewInvitation, NewShare, ShareGrantee, Store, StoreError,
};

/// How many audit entries of `action` the trail holds.
async fn entries_of(store: &dyn Store, action: &str) -> usize {
    store
        .audit_events(crate::AuditQuery {
            action: Some(action.into()),
            limit: 1000,
            ..crate::AuditQuery::default()
        })
        .await
        .expect("audit")
        .len()
}

/// An account of `role` named `name` (a patient account for `patient`).
async fn account(store: &dyn Store, name: &str, role: Role, patient: Option<PatientId>) -> UserId {
    store
        .create_user(user(name, role, patient), audit("users.create"))
        .await
        .expect("account")
        .id
}

pub async fn shares_open_until_they_expire_or_are_revoked(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let okafor = account(store, "okafor", Role::Specialist, None).await;
    let other = account(store, "other", Role::Specialist, None).await;
    let alice_account = account(store, "alice", Role::Patient, Some(alice)).await;
    let share = |id: Uuid, patient_id: PatientId, grantee: UserId, expires: i64| NewShare {
        id,
        patient_id,
        grantee: ShareGrantee::Person(grantee),
        consented_by: Some(alice_account),
        proposed_by: None,
        created: at(0),
        categories: vec![ShareCategory::Ecg, ShareCategory::Glucose],
        data_from: at(-30 * 24 * 60),
        data_to: at(0),
        expires: at(expires),
        message: Some("for the arrhythmia clinic".into()),
    };
    let first = Uuid::new_v4();
    let created = store
        .create_share(share(first, alice, okafor, 60), audit("shares.create"))
        .await
        .expect("create");
    assert_eq!(created.id, first);
    assert_eq!(created.grantee_name.as_deref(), Some("OKAFOR"));
    assert_eq!(created.grantee_id, Some(okafor));
    assert_eq!(created.link, None);
    assert_eq!(created.consented_by, Some(alice_account));
    assert_eq!((created.accepted, created.proposed_by), (Some(at(0)), None));
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
    assert_eq!(live(okafor, alice, 10).await, vec![first]);
    assert!(live(okafor, alice, 60).await.is_empty(), "expired");
    assert!(live(other, alice, 10).await.is_empty(), "another grantee");
    assert!(live(okafor, bob, 10).await.is_empty(), "another patient");
    assert_eq!(
        store
            .patients_sharing_with(okafor, at(10))
            .await
            .expect("patients"),
        vec![alice]
    );
    assert!(
        store
            .patients_sharing_with(okafor, at(60))
            .await
            .expect("patients")
            .is_empty()
    );

    // A second share; the patient sees both, newest first.
    let second = Uuid::new_v4();
    store
        .create_share(share(second, alice, other, 120), audit("shares.create"))
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
    assert!(live(okafor, alice, 10).await.is_empty(), "revoked");
    // The second share expires at 120; the revoked one never "expires".
    assert!(
        store
            .expired_unrecorded_shares(at(119))
            .await
            .expect("expired")
            .is_empty()
    );
    let expired: Vec<Uuid> = store
        .expired_unrecorded_shares(at(120))
        .await
        .expect("expired")
        .into_iter()
        .map(|share| share.id)
        .collect();
    assert_eq!(expired, vec![second]);
    let entries = entries_of(store, "shares.expire").await;
    let recorded = store
        .record_share_expiries(vec![(second, audit("shares.expire"))], at(121))
        .await
        .expect("record");
    assert_eq!(recorded, 1);
    assert!(
        store
            .expired_unrecorded_shares(at(200))
            .await
            .expect("expired")
            .is_empty()
    );
    // Recorded once: a second record writes no entry.
    assert_eq!(
        store
            .record_share_expiries(vec![(second, audit("shares.expire"))], at(122))
            .await
            .expect("record"),
        0
    );
    let after = entries_of(store, "shares.expire").await;
    assert_eq!(after, entries + 1);
    assert!(matches!(
        store
            .revoke_share(Uuid::new_v4(), at(6), audit("shares.revoke"))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .create_share(
                share(Uuid::new_v4(), PatientId::random(), okafor, 60),
                audit("shares.create")
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn share_links_count_openings_and_wrong_passcodes(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let alice_account = account(store, "alice", Role::Patient, Some(alice)).await;
    let link = |id: Uuid, token: u8, single_use: bool| NewShare {
        id,
        patient_id: alice,
        grantee: ShareGrantee::Link {
            token_hash: [token; 32],
            passcode_hash: format!("hash {token}"),
            single_use,
        },
        consented_by: Some(alice_account),
        proposed_by: None,
        created: at(0),
        categories: vec![ShareCategory::Glucose],
        data_from: at(-60),
        data_to: at(60),
        expires: at(120),
        message: None,
    };
    let open_link = |id: Uuid, minute: i64| {
        store.record_link_attempt(
            id,
            LinkAttempt::Opened,
            at(minute),
            audit("share_links.open"),
        )
    };
    let once = Uuid::new_v4();
    let created = store
        .create_share(link(once, 1, true), audit("shares.create"))
        .await
        .expect("create");
    assert_eq!((created.grantee_id, created.grantee_name), (None, None));
    let state = created.link.expect("a link");
    assert!(state.single_use);
    assert_eq!(
        (state.opened, state.passcode_failures, state.disabled),
        (0, 0, None)
    );
    let (found, passcode_hash) = store
        .share_by_link([1; 32])
        .await
        .expect("lookup")
        .expect("the link");
    assert_eq!((found.id, passcode_hash.as_str()), (once, "hash 1"));
    assert!(
        store
            .share_by_link([9; 32])
            .await
            .expect("lookup")
            .is_none()
    );
    // A link is nobody's account: it lists for no grantee.
    assert!(
        store
            .live_shares(alice_account, alice, at(1))
            .await
            .expect("live")
            .is_empty()
    );

    // A single-use link opens once.
    let opened = open_link(once, 1).await.expect("open");
    assert_eq!(opened.link.expect("link").opened, 1);
    assert!(matches!(
        open_link(once, 2).await,
        Err(StoreError::Conflict { .. })
    ));

    // Wrong passcodes count; the limit-th disables the link, which is then not live.
    let many = Uuid::new_v4();
    store
        .create_share(link(many, 2, false), audit("shares.create"))
        .await
        .expect("create");
    for attempt in 1..=3u32 {
        let share = store
            .record_link_attempt(
                many,
                LinkAttempt::WrongPasscode { limit: 3 },
                at(i64::from(attempt)),
                audit("share_links.open"),
            )
            .await
            .expect("attempt");
        let state = share.link.clone().expect("link");
        assert_eq!(state.passcode_failures, attempt);
        assert_eq!(state.disabled.is_some(), attempt == 3, "attempt {attempt}");
        assert_eq!(share.live_at(at(10)), attempt < 3);
    }
    // A disabled link does not open, even with the right passcode (checked inside the
    // commit that would count the opening).
    assert!(matches!(
        open_link(many, 20).await,
        Err(StoreError::Conflict { .. })
    ));
    // A link that is not single-use counts each opening.
    let again = Uuid::new_v4();
    store
        .create_share(link(again, 3, false), audit("shares.create"))
        .await
        .expect("create");
    for expected in 1..=2 {
        let share = store
            .record_link_attempt(
                again,
                LinkAttempt::Opened,
                at(20),
                audit("share_links.open"),
            )
            .await
            .expect("open");
        assert_eq!(share.link.expect("link").opened, expected);
    }
    // Nor does one past its expiry.
    assert!(matches!(
        store
            .record_link_attempt(
                again,
                LinkAttempt::Opened,
                at(120),
                audit("share_links.open")
            )
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store
            .record_link_attempt(
                Uuid::new_v4(),
                LinkAttempt::Opened,
                at(20),
                audit("share_links.open")
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn a_referral_opens_nothing_until_the_patient_accepts(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let okafor = account(store, "okafor", Role::Specialist, None).await;
    let grey = account(store, "grey", Role::Clinician, None).await;
    let alice_account = account(store, "alice", Role::Patient, Some(alice)).await;
    let id = Uuid::new_v4();
    let proposed = store
        .create_share(
            NewShare {
                id,
                patient_id: alice,
                grantee: ShareGrantee::Person(okafor),
                consented_by: None,
                proposed_by: Some(grey),
                created: at(0),
                categories: vec![ShareCategory::Ecg],
                data_from: at(-60),
                data_to: at(600),
                expires: at(600),
                message: None,
            },
            audit("shares.propose"),
        )
        .await
        .expect("propose");
    assert_eq!((proposed.consented_by, proposed.accepted), (None, None));
    assert_eq!(proposed.proposed_by, Some(grey));
    assert!(!proposed.live_at(at(1)));
    // A proposal waiting past its proposed end has not "expired": it has not begun.
    assert!(
        store
            .expired_unrecorded_shares(at(700))
            .await
            .expect("expired")
            .is_empty()
    );
    assert!(
        store
            .live_shares(okafor, alice, at(1))
            .await
            .expect("live")
            .is_empty()
    );
    assert!(
        store
            .patients_sharing_with(okafor, at(1))
            .await
            .expect("patients")
            .is_empty()
    );
    // Accepted: open from then, with the patient's consent recorded; once only.
    assert!(
        store
            .accept_share(id, alice_account, at(5), at(605), audit("shares.accept"))
            .await
            .expect("accept")
    );
    assert!(
        !store
            .accept_share(id, alice_account, at(6), at(606), audit("shares.accept"))
            .await
            .expect("accept again")
    );
    let accepted = store.share(id).await.expect("read").expect("share");
    assert_eq!(accepted.consented_by, Some(alice_account));
    assert_eq!(
        (accepted.accepted, accepted.expires),
        (Some(at(5)), at(605))
    );
    assert_eq!(
        store
            .live_shares(okafor, alice, at(10))
            .await
            .expect("live")
            .len(),
        1
    );
    assert!(matches!(
        store
            .accept_share(
                Uuid::new_v4(),
                alice_account,
                at(6),
                at(606),
                audit("shares.accept")
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn an_invitation_makes_one_account_once(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let alice_account = account(store, "alice", Role::Patient, Some(alice)).await;
    let id = Uuid::new_v4();
    let created = store
        .create_invitation(
            NewInvitation {
                id,
                token_hash: [4; 32],
                email: "okafor@clinic.example".into(),
                display_name: "Dr Okafor".into(),
                invited_by: alice_account,
                created: at(0),
                expires: at(60),
            },
            audit("invitations.create"),
        )
        .await
        .expect("invite");
    assert_eq!((created.id, created.invited_by), (id, alice_account));
    assert_eq!((created.accepted, created.user_id), (None, None));
    assert_eq!(
        store.invitation_by_token([4; 32]).await.expect("lookup"),
        Some(created.clone())
    );
    assert!(
        store
            .invitation_by_token([5; 32])
            .await
            .expect("lookup")
            .is_none()
    );
    let made = store
        .accept_invitation(
            id,
            InvitedAccount::New(user("okafor", Role::Specialist, None)),
            at(5),
            audit("invitations.accept"),
        )
        .await
        .expect("accept");
    assert_eq!(made.role, Role::Specialist);
    let used = store
        .invitation_by_token([4; 32])
        .await
        .expect("lookup")
        .expect("invitation");
    assert_eq!((used.accepted, used.user_id), (Some(at(5)), Some(made.id)));
    // Once only: a second acceptance makes no account.
    assert!(matches!(
        store
            .accept_invitation(
                id,
                InvitedAccount::New(user("okafor2", Role::Specialist, None)),
                at(6),
                audit("invitations.accept")
            )
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(
        store
            .user_credentials("okafor2")
            .await
            .expect("lookup")
            .is_none()
    );
    // Nor does it link an account afterwards.
    assert!(matches!(
        store
            .accept_invitation(
                id,
                InvitedAccount::Existing(made.id),
                at(6),
                audit("invitations.accept")
            )
            .await,
        Err(StoreError::Conflict { .. })
    ));
}

pub async fn an_invitation_links_an_existing_account(store: &dyn Store) {
    let bob = patient(store, "Bob").await;
    let bob_account = account(store, "bob", Role::Patient, Some(bob)).await;
    let specialist = account(store, "adeyemi", Role::Specialist, None).await;
    let invite = |id: Uuid, token: u8| NewInvitation {
        id,
        token_hash: [token; 32],
        email: "adeyemi@clinic.example".into(),
        display_name: "Dr Adeyemi".into(),
        invited_by: bob_account,
        created: at(0),
        expires: at(60),
    };
    let unknown = Uuid::new_v4();
    store
        .create_invitation(invite(unknown, 8), audit("invitations.create"))
        .await
        .expect("invite");
    // An unknown account links nothing and leaves the invitation open.
    assert!(matches!(
        store
            .accept_invitation(
                unknown,
                InvitedAccount::Existing(UserId::random()),
                at(2),
                audit("invitations.accept")
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store
            .invitation_by_token([8; 32])
            .await
            .expect("lookup")
            .expect("invitation")
            .accepted,
        None
    );
    let id = Uuid::new_v4();
    store
        .create_invitation(invite(id, 9), audit("invitations.create"))
        .await
        .expect("invite");
    let linked = store
        .accept_invitation(
            id,
            InvitedAccount::Existing(specialist),
            at(3),
            audit("invitations.accept"),
        )
        .await
        .expect("link");
    assert_eq!((linked.id, linked.role), (specialist, Role::Specialist));
    let used = store
        .invitation_by_token([9; 32])
        .await
        .expect("lookup")
        .expect("invitation");
    assert_eq!(
        (used.accepted, used.user_id),
        (Some(at(3)), Some(specialist))
    );
    assert_eq!(
        store.users().await.expect("users").len(),
        2,
        "no account made"
    );
}
