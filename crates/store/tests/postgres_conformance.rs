//! The storage conformance suite against PostgreSQL, each check in a database of its own
//! on the server at `WARDLINE_TEST_POSTGRES` (default: the local server, as user
//! `postgres`), created for the check and dropped after it.

use wardline_store::postgres::{PostgresOptions, PostgresStore};

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn server() -> String {
    std::env::var("WARDLINE_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_SERVER.to_owned())
}

/// A database that exists while this lives.
pub(crate) struct TestDatabase {
    name: String,
}

impl TestDatabase {
    pub(crate) async fn create() -> Self {
        let name = format!("wardline_test_{}", uuid_like());
        let (client, connection) = tokio_postgres::connect(&server(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "no PostgreSQL server at {} (set WARDLINE_TEST_POSTGRES): {error}",
                    server()
                )
            });
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        Self { name }
    }

    pub(crate) fn url(&self) -> String {
        let server = server();
        let base = server
            .rsplit_once('/')
            .map_or(server.as_str(), |(base, _)| base);
        format!("{base}/{}", self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await; a thread with its own runtime drops the database, ending the
        // store's connections first.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let (client, connection) =
                    tokio_postgres::connect(&server(), tokio_postgres::NoTls)
                        .await
                        .expect("connect to drop the test database");
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .expect("drop the test database");
            });
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("the test database {} was not dropped", self.name);
        }
    }
}

/// A name no other test run picks: the process and a counter, with the time.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |time| time.as_nanos());
    format!(
        "{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

async fn fresh() -> (PostgresStore, TestDatabase) {
    let database = TestDatabase::create().await;
    let store = PostgresStore::open(PostgresOptions::new(
        database.url(),
        wardline_store::testsuite::audit_key(),
    ))
    .await
    .expect("open store");
    (store, database)
}

// The capabilities ported so far, by group; the whole suite (and its check that every
// method is called) replaces these lists when the backend is complete.

mod audit {
    #[allow(unused_imports)]
    use super::fresh;
    wardline_store::store_conformance_checks!(fresh(); audit_trail_is_chained);
}

// ---------------------------------------------------------------------------------------
// People, sessions, care teams, emergency access, mapping templates.

mod people {
    #[allow(unused_imports)]
    use super::fresh;
    wardline_store::store_conformance_checks!(fresh();
        users_and_credentials,
        sessions_expire_and_revoke,
        a_new_password_ends_the_other_sessions,
        a_second_factor_is_confirmed_and_each_code_used_once,
        care_teams_decide_membership,
        people_changes_are_audited_in_the_same_commit,
        emergency_access_opens_expires_and_is_reviewed_once,
        mapping_templates_are_versioned_one_in_force_per_model,
    );
}

// ---------------------------------------------------------------------------------------
// Devices, ingest, gateways, Nightscout sites.

mod devices {
    #[allow(unused_imports)]
    use super::fresh;
    wardline_store::store_conformance_checks!(fresh(););
}

// ---------------------------------------------------------------------------------------
// Clinical reads and derived results, the event log.

mod clinical {
    #[allow(unused_imports)]
    use super::fresh;
    wardline_store::store_conformance_checks!(fresh(););
}

// ---------------------------------------------------------------------------------------
// Care plans, alarms, escalation, the outbox.

mod alarms {
    #[allow(unused_imports)]
    use super::fresh;
    wardline_store::store_conformance_checks!(fresh(););
}

// ---------------------------------------------------------------------------------------
// Shares, referrals, specialist invitations.

mod shares {
    #[allow(unused_imports)]
    use super::fresh;
    wardline_store::store_conformance_checks!(fresh();
        shares_open_until_they_expire_or_are_revoked,
        share_links_count_openings_and_wrong_passcodes,
        a_referral_opens_nothing_until_the_patient_accepts,
        an_invitation_makes_one_account_once,
        an_invitation_links_an_existing_account,
    );

    // Several workers over one database: what SQLite's single writer made true by itself.

    use uuid::Uuid;
    use wardline_domain::Role;
    use wardline_domain::sharing::ShareCategory;
    use wardline_store::testsuite::{at, audit, patient, user};
    use wardline_store::{
        AuditQuery, AuditStore, InvitedAccount, LinkAttempt, NewInvitation, NewShare, PeopleStore,
        PostgresStore, ShareGrantee, ShareStore, StoreError,
    };

    const WORKERS: usize = 8;

    /// A link share of a new patient's record, opened by the patient's account.
    async fn link(store: &PostgresStore, single_use: bool) -> Uuid {
        let alice = patient(store, "Alice").await;
        let alice_account = store
            .create_user(
                user("alice", Role::Patient, Some(alice)),
                audit("users.create"),
            )
            .await
            .expect("account")
            .id;
        let id = Uuid::new_v4();
        store
            .create_share(
                NewShare {
                    id,
                    patient_id: alice,
                    grantee: ShareGrantee::Link {
                        token_hash: [7; 32],
                        passcode_hash: "hash".into(),
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
                },
                audit("shares.create"),
            )
            .await
            .expect("create");
        id
    }

    async fn entries_of(store: &PostgresStore, action: &str) -> usize {
        store
            .audit_events(AuditQuery {
                action: Some(action.into()),
                limit: 1000,
                ..AuditQuery::default()
            })
            .await
            .expect("audit")
            .len()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_single_use_link_opened_by_workers_at_once_opens_once() {
        let (store, _guard) = fresh().await;
        let id = link(&store, true).await;
        let attempts: Vec<_> = (0..WORKERS)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .record_link_attempt(
                            id,
                            LinkAttempt::Opened,
                            at(1),
                            audit("share_links.open"),
                        )
                        .await
                })
            })
            .collect();
        let mut opened = 0;
        for attempt in attempts {
            match attempt.await.expect("worker") {
                Ok(_) => opened += 1,
                Err(StoreError::Conflict { .. }) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(opened, 1);
        let share = store.share(id).await.expect("read").expect("share");
        assert_eq!(share.link.expect("link").opened, 1);
        assert_eq!(entries_of(&store, "share_links.open").await, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn wrong_passcodes_from_workers_at_once_all_count() {
        let (store, _guard) = fresh().await;
        let id = link(&store, false).await;
        let attempts: Vec<_> = (0..WORKERS)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .record_link_attempt(
                            id,
                            LinkAttempt::WrongPasscode { limit: 5 },
                            at(1),
                            audit("share_links.open"),
                        )
                        .await
                })
            })
            .collect();
        let mut seen = Vec::new();
        for attempt in attempts {
            let share = attempt.await.expect("worker").expect("attempt");
            seen.push(share.link.expect("link").passcode_failures);
        }
        // Each attempt saw the ones before it: the counts are 1 to WORKERS, once each.
        seen.sort_unstable();
        assert_eq!(seen, (1..=WORKERS as u32).collect::<Vec<_>>());
        let state = store
            .share(id)
            .await
            .expect("read")
            .expect("share")
            .link
            .expect("link");
        assert_eq!(state.passcode_failures, WORKERS as u32);
        assert!(state.disabled.is_some());
        assert_eq!(entries_of(&store, "share_links.open").await, WORKERS);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn an_invitation_accepted_by_workers_at_once_makes_one_account() {
        let (store, _guard) = fresh().await;
        let alice = patient(&store, "Alice").await;
        let alice_account = store
            .create_user(
                user("alice", Role::Patient, Some(alice)),
                audit("users.create"),
            )
            .await
            .expect("account")
            .id;
        let id = Uuid::new_v4();
        store
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
        let acceptances: Vec<_> = (0..WORKERS)
            .map(|worker| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .accept_invitation(
                            id,
                            InvitedAccount::New(user(
                                &format!("okafor{worker}"),
                                Role::Specialist,
                                None,
                            )),
                            at(5),
                            audit("invitations.accept"),
                        )
                        .await
                })
            })
            .collect();
        let mut made = Vec::new();
        for acceptance in acceptances {
            match acceptance.await.expect("worker") {
                Ok(user) => made.push(user.id),
                Err(StoreError::Conflict { .. }) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(made.len(), 1);
        let used = store
            .invitation_by_token([4; 32])
            .await
            .expect("lookup")
            .expect("invitation");
        assert_eq!(used.user_id, Some(made[0]));
        assert_eq!(entries_of(&store, "invitations.accept").await, 1);
        assert_eq!(
            store.users().await.expect("users").len(),
            2,
            "alice and one"
        );
    }
}
