//! Checks of [`PeopleStore`](crate::PeopleStore).

use wardline_domain::{PatientId, Role};

use super::{at, audit, patient, user};
use crate::{
    AuditQuery, LoginFailure, NewCareTeam, NewSession, NewUser, SecondFactorSecret, Store,
    StoreError,
};

fn team(name: &str) -> NewCareTeam {
    NewCareTeam {
        id: wardline_domain::CareTeamId::random(),
        name: name.into(),
        created: at(0),
    }
}

pub async fn users_and_credentials(store: &dyn Store) {
    let nurse = store
        .create_user(user("Nora", Role::Nurse, None), audit("users.create"))
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
        store
            .create_user(user("NORA", Role::Clinician, None), audit("users.create"))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(
        store
            .create_user(user("pat", Role::Patient, None), audit("users.create"))
            .await
            .is_err(),
        "a patient account must be linked to a patient record"
    );
    assert!(
        matches!(
            store
                .create_user(
                    user("ghost", Role::Patient, Some(PatientId::random())),
                    audit("users.create")
                )
                .await,
            Err(StoreError::NotFound { .. })
        ),
        "a patient account for a record that does not exist"
    );
    let record = patient(store, "Pat").await;
    let account = store
        .create_user(
            user("pat", Role::Patient, Some(record)),
            audit("users.create"),
        )
        .await
        .expect("patient account");
    assert_eq!(account.patient_id, Some(record));
    assert_eq!(account.created, at(0));
    assert_eq!(
        store.user(account.id).await.expect("user"),
        Some(account.clone())
    );
    assert_eq!(
        store
            .count_users_with_role(Role::Nurse)
            .await
            .expect("count"),
        1
    );
    assert_eq!(
        store
            .count_users_with_role(Role::Admin)
            .await
            .expect("count"),
        0
    );
    store
        .set_user_disabled(account.id, true, at(1), audit("users.disable"))
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
    assert!(matches!(
        store
            .set_user_disabled(
                wardline_domain::UserId::random(),
                true,
                at(1),
                audit("users.disable")
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let names: Vec<String> = store
        .users()
        .await
        .expect("users")
        .into_iter()
        .map(|user| user.username)
        .collect();
    assert_eq!(names, ["Nora", "pat"], "every account, by username");
}

pub async fn sessions_expire_and_revoke(store: &dyn Store) {
    let clinician = store
        .create_user(user("cleo", Role::Clinician, None), audit("users.create"))
        .await
        .expect("user");
    let session = |hash: u8| NewSession {
        token_hash: [hash; 32],
        user_id: clinician.id,
        password_hash: "$argon2id$fake".into(),
        created: at(0),
        expires: at(60),
    };
    store
        .create_session(session(1), audit("login"))
        .await
        .expect("session");
    let live = store
        .session([1; 32], at(30))
        .await
        .expect("lookup")
        .expect("live session");
    assert_eq!(live.user.id, clinician.id);
    assert_eq!((live.created, live.expires), (at(0), at(60)));
    assert_eq!(
        live.active,
        at(0),
        "a new session was last active at its login"
    );
    // Activity moves forward only, and never touches a session it does not name.
    store
        .record_session_activity([1; 32], at(20))
        .await
        .expect("activity");
    store
        .record_session_activity([1; 32], at(10))
        .await
        .expect("older activity");
    store
        .record_session_activity([9; 32], at(25))
        .await
        .expect("activity of an unknown session");
    assert_eq!(
        store
            .session([1; 32], at(30))
            .await
            .expect("lookup")
            .expect("live session")
            .active,
        at(20)
    );
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
    assert!(
        store
            .revoke_session([1; 32], at(31), audit("logout"))
            .await
            .expect("revoke")
    );
    let entries = audit_entries(store).await;
    assert!(
        !store
            .revoke_session([1; 32], at(32), audit("logout"))
            .await
            .expect("revoke again"),
        "already revoked"
    );
    assert_eq!(
        audit_entries(store).await,
        entries,
        "ending a session that has ended already leaves no entry"
    );
    assert!(
        store
            .session([1; 32], at(32))
            .await
            .expect("lookup")
            .is_none(),
        "revoked"
    );
    store
        .create_session(session(3), audit("login"))
        .await
        .expect("second session");
    store
        .set_user_disabled(clinician.id, true, at(1), audit("users.disable"))
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
    // A login whose password was checked before the disabling commits opens nothing.
    assert!(matches!(
        store.create_session(session(4), audit("login")).await,
        Err(StoreError::NotFound { .. })
    ));
    store
        .set_user_disabled(clinician.id, false, at(2), audit("users.enable"))
        .await
        .expect("enable");
    for hash in [3, 4] {
        assert!(
            store
                .session([hash; 32], at(30))
                .await
                .expect("lookup")
                .is_none(),
            "disabling ended session {hash} for good"
        );
    }
    // Nor does one whose password was changed after it was checked.
    assert!(matches!(
        store
            .create_session(
                NewSession {
                    password_hash: "an older hash".into(),
                    ..session(5)
                },
                audit("login")
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    store
        .create_session(session(6), audit("login"))
        .await
        .expect("a login with the current password");
}

pub async fn care_teams_decide_membership(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let xavier = store
        .create_user(user("xavier", Role::Clinician, None), audit("users.create"))
        .await
        .expect("user");
    let yvonne = store
        .create_user(user("yvonne", Role::Nurse, None), audit("users.create"))
        .await
        .expect("user");
    let cardiology = store
        .create_care_team(team("Cardiology"), audit("care_teams.create"))
        .await
        .expect("team");
    let diabetes = store
        .create_care_team(team("Diabetes"), audit("care_teams.create"))
        .await
        .expect("team");
    assert!(matches!(
        store
            .create_care_team(team("Cardiology"), audit("care_teams.create"))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    let add_member =
        |team, user| store.add_care_team_member(team, user, audit("care_teams.add_member"));
    let add_patient =
        |team, patient| store.add_care_team_patient(team, patient, audit("care_teams.add_patient"));
    add_member(cardiology.id, xavier.id).await.expect("member");
    add_member(cardiology.id, xavier.id)
        .await
        .expect("adding again changes nothing");
    add_patient(cardiology.id, alice).await.expect("patient");
    add_member(diabetes.id, yvonne.id).await.expect("member");
    add_patient(diabetes.id, bob).await.expect("patient");
    add_patient(diabetes.id, alice).await.expect("patient");
    assert!(matches!(
        add_patient(diabetes.id, PatientId::random()).await,
        Err(StoreError::NotFound { .. })
    ));
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
    let mut alices_teams = store.care_teams_of_patient(alice).await.expect("teams");
    alices_teams.sort();
    let mut expected = vec![cardiology.id, diabetes.id];
    expected.sort();
    assert_eq!(alices_teams, expected);
    let record = patient(store, "Carol").await;
    let carol = store
        .create_user(
            user("carol", Role::Patient, Some(record)),
            audit("users.create"),
        )
        .await
        .expect("user");
    assert!(
        matches!(
            add_member(diabetes.id, carol.id).await,
            Err(StoreError::Invalid(_))
        ),
        "a patient account cannot join a care team"
    );
    let teams = store.care_teams().await.expect("teams");
    assert_eq!(teams.len(), 2);
    assert_eq!(teams[1].name, "Diabetes");
    assert_eq!(teams[1].patients.len(), 2);
    assert_eq!(teams[0].members, vec![xavier.id]);

    // Taking someone off a team ends what the team gave them, at once; taking them off
    // again finds nothing and stores nothing.
    let entries = audit_entries(store).await;
    assert!(
        store
            .remove_care_team_member(diabetes.id, yvonne.id, audit("care_teams.remove_member"))
            .await
            .expect("remove")
    );
    assert!(
        !store
            .is_on_care_team_of(yvonne.id, bob)
            .await
            .expect("check")
    );
    assert!(
        !store
            .remove_care_team_member(diabetes.id, yvonne.id, audit("care_teams.remove_member"))
            .await
            .expect("again")
    );
    assert!(
        store
            .remove_care_team_patient(cardiology.id, alice, audit("care_teams.remove_patient"))
            .await
            .expect("remove")
    );
    assert!(
        !store
            .is_on_care_team_of(xavier.id, alice)
            .await
            .expect("check")
    );
    assert!(
        !store
            .remove_care_team_patient(cardiology.id, alice, audit("care_teams.remove_patient"))
            .await
            .expect("again")
    );
    assert_eq!(
        audit_entries(store).await,
        entries + 2,
        "one entry per removal"
    );
    assert!(matches!(
        store
            .remove_care_team_patient(
                wardline_domain::CareTeamId::random(),
                alice,
                audit("care_teams.remove_patient")
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    // Put back as they were, for the checks below.
    add_member(diabetes.id, yvonne.id).await.expect("member");
    add_patient(cardiology.id, alice).await.expect("patient");
    let patients = store.patients().await.expect("patients");
    let names: Vec<&str> = patients.iter().map(|p| p.display_name.as_str()).collect();
    assert_eq!(names, ["Alice", "Bob", "Carol"]);
    assert_eq!(
        store.patient(alice).await.expect("patient").map(|p| p.id),
        Some(alice)
    );
    assert!(
        store
            .patient(PatientId::random())
            .await
            .expect("patient")
            .is_none()
    );
}

/// A change and its audit entry commit together: one entry per change made, none for a
/// change refused.
pub async fn people_changes_are_audited_in_the_same_commit(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let entry = |action: &str| crate::AuditEvent {
        patient_id: Some(alice),
        ..audit(action)
    };
    let nurse = store
        .create_user(user("nina", Role::Nurse, None), entry("users.create"))
        .await
        .expect("user");
    assert!(
        store
            .create_user(user("NINA", Role::Nurse, None), entry("users.create.again"))
            .await
            .is_err()
    );
    let team = store
        .create_care_team(team("Ward 7"), entry("care_teams.create"))
        .await
        .expect("team");
    store
        .add_care_team_member(team.id, nurse.id, entry("care_teams.add_member"))
        .await
        .expect("member");
    assert!(
        store
            .add_care_team_patient(team.id, PatientId::random(), entry("care_teams.add_ghost"))
            .await
            .is_err()
    );
    let actions: Vec<String> = store
        .audit_events(AuditQuery {
            patient_id: Some(alice),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .expect("audit")
        .into_iter()
        .rev()
        .map(|event| event.action)
        .collect();
    assert_eq!(
        actions,
        ["users.create", "care_teams.create", "care_teams.add_member"],
        "refused changes leave no entry"
    );
    assert_eq!(store.verify_audit_chain().await.expect("chain"), 4);
}

pub async fn a_new_password_ends_the_other_sessions(store: &dyn Store) {
    let account = store
        .create_user(user("cleo", Role::Clinician, None), audit("users.create"))
        .await
        .expect("user");
    for hash in [1u8, 2, 3] {
        store
            .create_session(
                NewSession {
                    token_hash: [hash; 32],
                    user_id: account.id,
                    password_hash: "$argon2id$fake".into(),
                    created: at(0),
                    expires: at(60),
                },
                audit("login"),
            )
            .await
            .expect("session");
    }
    assert!(!account.password_change_required);
    // Changed from session 1: it stays, the others end.
    store
        .set_password(
            account.id,
            "new hash".into(),
            false,
            Some([1; 32]),
            at(5),
            audit("password.change"),
        )
        .await
        .expect("change");
    let live = |hash: u8| async move {
        store
            .session([hash; 32], at(6))
            .await
            .expect("lookup")
            .is_some()
    };
    assert_eq!(
        (live(1).await, live(2).await, live(3).await),
        (true, false, false)
    );
    assert_eq!(
        store
            .user_credentials("cleo")
            .await
            .expect("credentials")
            .expect("account")
            .password_hash,
        "new hash"
    );
    // Reset by an admin: every session ends, and the holder must choose a new one.
    store
        .set_password(
            account.id,
            "reset".into(),
            true,
            None,
            at(7),
            audit("users.reset_password"),
        )
        .await
        .expect("reset");
    assert!(!live(1).await);
    let reset = store
        .user_credentials("cleo")
        .await
        .expect("credentials")
        .expect("account");
    assert_eq!(reset.password_hash, "reset");
    assert!(reset.user.password_change_required);
    assert!(
        store
            .user(account.id)
            .await
            .expect("user")
            .expect("account")
            .password_change_required
    );
    // An account created with a temporary password says so.
    let temporary = store
        .create_user(
            NewUser {
                password_change_required: true,
                ..user("tess", Role::Nurse, None)
            },
            audit("users.create"),
        )
        .await
        .expect("user");
    assert!(temporary.password_change_required);
    assert!(matches!(
        store
            .set_password(
                wardline_domain::UserId::random(),
                "x".into(),
                false,
                None,
                at(8),
                audit("users.reset_password")
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn a_second_factor_is_confirmed_and_each_code_used_once(store: &dyn Store) {
    let account = store
        .create_user(user("cleo", Role::Clinician, None), audit("users.create"))
        .await
        .expect("user");
    let credentials = || async {
        store
            .user_credentials("cleo")
            .await
            .expect("credentials")
            .expect("account")
    };
    let begin = |sealed: &'static [u8]| async move {
        store
            .set_second_factor(
                account.id,
                Some(sealed.to_vec()),
                audit("second_factor.begin"),
            )
            .await
            .expect("begin");
    };
    let accept = |sealed: &'static [u8], step: i64, entry: Option<&str>| {
        let entry = entry.map(audit);
        async move {
            store
                .accept_second_factor_step(account.id, sealed.to_vec(), step, entry)
                .await
                .expect("accept")
        }
    };
    let secret = |sealed: &[u8], confirmed: bool, last_step: Option<i64>| {
        Some(SecondFactorSecret {
            sealed: sealed.to_vec(),
            confirmed,
            last_step,
        })
    };
    let before = credentials().await;
    assert!(before.second_factor.is_none());
    assert!(!before.user.second_factor);
    let entries = audit_entries(store).await;

    // Being set up: kept, not yet asked for.
    begin(b"first").await;
    let pending = credentials().await;
    assert_eq!(pending.second_factor, secret(b"first", false, None));
    assert!(!pending.user.second_factor);
    assert_eq!(audit_entries(store).await, entries + 1);

    // Set up again before it was confirmed: the new secret replaces it, and a code of
    // the old one confirms nothing.
    begin(b"second").await;
    assert!(!accept(b"first", 100, Some("second_factor.confirm")).await);
    assert_eq!(
        audit_entries(store).await,
        entries + 2,
        "a refused step leaves no entry"
    );
    assert!(accept(b"second", 100, Some("second_factor.confirm")).await);
    assert_eq!(audit_entries(store).await, entries + 3);
    let confirmed = credentials().await;
    assert_eq!(confirmed.second_factor, secret(b"second", true, Some(100)));
    assert!(confirmed.user.second_factor);
    assert!(
        store
            .user(account.id)
            .await
            .expect("user")
            .expect("account")
            .second_factor
    );
    assert!(
        store
            .users()
            .await
            .expect("users")
            .iter()
            .any(|user| user.id == account.id && user.second_factor)
    );

    // A step is good once, and an earlier one never again; a later one is.
    assert!(!accept(b"second", 100, None).await, "the same step");
    assert!(!accept(b"second", 99, None).await, "an earlier step");
    assert!(accept(b"second", 101, None).await);
    assert_eq!(
        audit_entries(store).await,
        entries + 3,
        "a login's step has no entry of its own"
    );

    // Removed (an administrator's reset): logging in no longer asks for it.
    store
        .set_second_factor(account.id, None, audit("users.reset_second_factor"))
        .await
        .expect("reset");
    let reset = credentials().await;
    assert!(reset.second_factor.is_none());
    assert!(!reset.user.second_factor);
    assert!(!accept(b"second", 102, None).await);
    // A new secret's steps are its own: one the old secret used is good for it.
    begin(b"third").await;
    assert!(accept(b"third", 101, None).await);
    assert!(matches!(
        store
            .set_second_factor(
                wardline_domain::UserId::random(),
                None,
                audit("users.reset_second_factor")
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn audit_entries(store: &dyn Store) -> usize {
    store
        .audit_events(AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .expect("audit")
        .len()
}

pub async fn failed_logins_are_counted_per_account_and_address(store: &dyn Store) {
    for (second, address) in [(1, "10.0.0.1"), (2, "10.0.0.2"), (3, "10.0.0.1")] {
        store
            .record_login_failure("Nora", address, at(second), at(0))
            .await
            .expect("record");
    }
    store
        .record_login_failure("someone", "10.0.0.1", at(4), at(0))
        .await
        .expect("record");
    let seen = store
        .login_failures("NORA", "10.0.0.1", at(0), 100)
        .await
        .expect("read");
    assert_eq!(
        seen,
        vec![
            LoginFailure {
                at: at(1),
                from_address: true,
                counts_for_account: true
            },
            LoginFailure {
                at: at(2),
                from_address: false,
                counts_for_account: true
            },
            LoginFailure {
                at: at(3),
                from_address: true,
                counts_for_account: true
            },
        ],
        "usernames compare without case, oldest first, other accounts apart"
    );
    let newest = store
        .login_failures("nora", "10.0.0.1", at(2), 1)
        .await
        .expect("read");
    assert_eq!(
        newest.iter().map(|failure| failure.at).collect::<Vec<_>>(),
        vec![at(3)]
    );

    // One failure forgotten (an attempt that was not one after all): only that one.
    store
        .record_login_failure("nora", "10.0.0.1", at(3), at(0))
        .await
        .expect("record");
    store
        .forget_login_failure("NORA", "10.0.0.1", at(3))
        .await
        .expect("forget");
    store
        .forget_login_failure("nora", "10.0.0.1", at(9))
        .await
        .expect("nothing to forget");
    let times: Vec<_> = store
        .login_failures("nora", "10.0.0.1", at(0), 100)
        .await
        .expect("read")
        .iter()
        .map(|failure| failure.at)
        .collect();
    assert_eq!(
        times,
        vec![at(1), at(2), at(3)],
        "one of the two at minute 3 is left"
    );

    // A success from one address forgets its failures; the others stay, but no longer
    // count against the account.
    store
        .clear_login_failures("nora", "10.0.0.1")
        .await
        .expect("clear");
    let seen = store
        .login_failures("nora", "10.0.0.2", at(0), 100)
        .await
        .expect("read");
    assert_eq!(
        seen,
        vec![LoginFailure {
            at: at(2),
            from_address: true,
            counts_for_account: false
        }]
    );

    // Old records are forgotten as new ones come.
    store
        .record_login_failure("nora", "10.0.0.2", at(10), at(5))
        .await
        .expect("record");
    let seen = store
        .login_failures("nora", "10.0.0.2", at(0), 100)
        .await
        .expect("read");
    assert_eq!(
        seen.iter().map(|failure| failure.at).collect::<Vec<_>>(),
        vec![at(10)]
    );
    assert!(
        store
            .login_failures("someone", "10.0.0.1", at(0), 100)
            .await
            .expect("read")
            .is_empty()
    );
}
