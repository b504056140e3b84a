//! The storage conformance suite against PostgreSQL, each check in a database of its own
//! on the server at `WARDLINE_TEST_POSTGRES` (default: the local server, as user
//! `postgres`), created for the check and dropped after it.

use wardline_store::postgres::{PostgresOptions, PostgresStore};
use wardline_store::testsuite::postgres::TestDatabase;

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

wardline_store::store_conformance_suite!(fresh());

// ---------------------------------------------------------------------------------------
// Several workers over one database: what SQLite's single writer made true by itself,
// PostgreSQL must make true between processes.

mod alarms {
    use super::fresh;
    use serde_json::json;
    use wardline_alerting::{
        Alarm, AlarmKind, AlarmSignal, ConditionKey, EscalationStatus, Priority, RuleId,
    };
    use wardline_domain::{CareTeamId, PatientId};
    use wardline_store::postgres::{PostgresOptions, try_evaluation_lease};
    use wardline_store::testsuite::{at, audit, audit_key, patient};
    use wardline_store::{
        AlarmChange, AlarmRecord, AlarmStore, ChannelKind, DeliveryOutcome, DeliveryStatus,
        EvaluationFence, NewCareTeam, NewNotification, NotificationChannel, NotificationQuery,
        OutboxStore, PeopleStore, PostgresStore, StoreError,
    };

    /// A second worker on the same database.
    async fn second_worker(database: &super::TestDatabase) -> PostgresStore {
        PostgresStore::open(PostgresOptions::new(database.url(), audit_key()))
            .await
            .expect("open the second worker")
    }

    /// An alarm raised at `minute`, with its notifications through `channels`.
    fn raised(
        patient_id: PatientId,
        rule: &str,
        public_id: &str,
        minute: i64,
        channels: &[&str],
    ) -> AlarmChange {
        let alarm = Alarm::from_signal(&AlarmSignal::Raise {
            condition: ConditionKey {
                patient_id,
                rule_id: RuleId::new(rule),
            },
            priority: Priority::High,
            kind: AlarmKind::Physiological,
            message: "low".into(),
            rule_id: RuleId::new(rule),
            care_plan_version: 1,
            resolve_on_clear: false,
            at: at(minute),
        })
        .expect("a raise opens an alarm");
        AlarmChange {
            alarm: AlarmRecord {
                public_id: public_id.into(),
                alarm,
                escalation: EscalationStatus {
                    levels: 1,
                    rounds: 1,
                    level: Some(1),
                    round: Some(1),
                    next: None,
                },
                updated: at(1),
            },
            events: vec![],
            notifications: channels
                .iter()
                .map(|channel| NewNotification {
                    idempotency_key: format!("{public_id}/{channel}"),
                    channel_id: (*channel).into(),
                    payload: json!({"alarm": public_id}),
                    next_attempt: at(1),
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn one_unresolved_alarm_per_rule_across_workers() {
        let (first, database) = fresh().await;
        let second = second_worker(&database).await;
        let alice = patient(&first, "Alice").await;
        // Raised a minute apart, so two alarms (not two states of one) of the same rule.
        for round in 0..10 {
            let rule = format!("rule-{round}");
            let (one, other) = tokio::join!(
                first.save_alarm_changes(
                    vec![raised(alice, &rule, &format!("x{round}"), 1, &[])],
                    None,
                    vec![]
                ),
                second.save_alarm_changes(
                    vec![raised(alice, &rule, &format!("y{round}"), 2, &[])],
                    None,
                    vec![]
                ),
            );
            let conflicts = [&one, &other]
                .iter()
                .filter(|result| matches!(result, Err(StoreError::Conflict { .. })))
                .count();
            assert!(
                (one.is_ok() || other.is_ok()) && conflicts == 1,
                "round {round}: {one:?} {other:?}"
            );
        }
        assert_eq!(
            first.unresolved_alarms().await.expect("unresolved").len(),
            10
        );
    }

    /// A worker's engine commits only while the worker holds the evaluation lease: once
    /// the lease has passed to another worker, the first one's late commit is refused
    /// (whether or not it has noticed yet), and the new holder's are kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn alarm_changes_of_a_worker_that_lost_the_lease_are_refused() {
        let database = super::TestDatabase::create().await;
        let url = database.url();
        let fenced = |fence: &EvaluationFence| {
            let mut options = PostgresOptions::new(url.clone(), audit_key());
            options.evaluation_fence = fence.clone();
            PostgresStore::open(options)
        };
        let (first_fence, second_fence) = (EvaluationFence::default(), EvaluationFence::default());
        let first = fenced(&first_fence).await.expect("open the first worker");
        let second = fenced(&second_fence).await.expect("open the second worker");
        let alice = patient(&first, "Alice").await;
        let raise = |rule: &str, minute| vec![raised(alice, rule, rule, minute, &[])];

        let first_lease = try_evaluation_lease(&url, None, &first_fence)
            .await
            .expect("ask for the lease")
            .expect("nobody holds it");
        assert!(
            try_evaluation_lease(&url, None, &second_fence)
                .await
                .expect("ask for the lease")
                .is_none(),
            "the first worker holds it"
        );
        first
            .save_alarm_changes(raise("before", 1), None, vec![])
            .await
            .expect("the holder commits");

        // The database ends the first worker's lease session (as after a network cut);
        // the second worker takes the lease over.
        let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        let ended = admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks
                 WHERE locktype = 'advisory' AND objsubid = 1 AND objid = 4
                   AND classid::bigint = x'57415244'::bigint",
                &[],
            )
            .await
            .expect("end the lease session");
        assert_eq!(ended, 1);
        let second_lease = loop {
            if let Some(lease) = try_evaluation_lease(&url, None, &second_fence)
                .await
                .expect("ask for the lease")
            {
                break lease;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert!(matches!(
            first
                .save_alarm_changes(raise("late", 2), None, vec![])
                .await,
            Err(StoreError::Unavailable(_))
        ));
        second
            .save_alarm_changes(raise("after", 3), None, vec![])
            .await
            .expect("the new holder commits");
        drop((first_lease, second_lease));
        assert!(matches!(
            second
                .save_alarm_changes(raise("released", 4), None, vec![])
                .await,
            Err(StoreError::Unavailable(_))
        ));
        let mut kept: Vec<String> = first
            .unresolved_alarms()
            .await
            .expect("alarms")
            .into_iter()
            .map(|record| record.public_id)
            .collect();
        kept.sort();
        assert_eq!(kept, ["after", "before"]);
    }

    /// A standby asks for the lease on one connection it keeps, not on a new one each
    /// time, and takes the lease on it once the holder is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_standby_asks_for_the_lease_on_one_connection() {
        let database = super::TestDatabase::create().await;
        let url = database.url();
        let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        let sessions = || async {
            admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()",
                    &[],
                )
                .await
                .expect("sessions")
                .get::<_, i64>(0)
        };
        let holder = try_evaluation_lease(&url, None, &EvaluationFence::default())
            .await
            .expect("ask")
            .expect("free");
        let mut standby =
            wardline_store::postgres::LeaseCandidate::new(&url, None, &EvaluationFence::default());
        assert!(standby.try_take().await.expect("ask").is_none());
        let after_one = sessions().await;
        for _ in 0..5 {
            assert!(standby.try_take().await.expect("ask").is_none());
        }
        assert_eq!(sessions().await, after_one, "no new connection per ask");
        drop(holder);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(lease) = standby.try_take().await.expect("ask") {
                assert!(lease.held());
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the standby took over"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A care team with webhook channels of these ids.
    async fn team_with_channels(
        store: &PostgresStore,
        name: &str,
        channels: &[&str],
    ) -> CareTeamId {
        let team = store
            .create_care_team(
                NewCareTeam {
                    id: CareTeamId::random(),
                    name: name.into(),
                    created: at(0),
                },
                audit("care_teams.create"),
            )
            .await
            .expect("team");
        for id in channels {
            store
                .create_notification_channel(
                    NotificationChannel {
                        id: (*id).into(),
                        team_id: team.id,
                        kind: ChannelKind::Webhook,
                        target: "https://example.org/hook".into(),
                        sealed_secret: None,
                        minimal: true,
                        created: at(0),
                    },
                    audit("notification_channel.create"),
                )
                .await
                .expect("channel");
        }
        team.id
    }

    #[tokio::test]
    async fn workers_claiming_the_outbox_at_once_take_each_notification_once() {
        let (first, database) = fresh().await;
        let second = second_worker(&database).await;
        let alice = patient(&first, "Alice").await;
        team_with_channels(&first, "Ward 8", &["hook"]).await;
        first
            .save_alarm_changes(
                (0..40)
                    .map(|n| raised(alice, &format!("due-{n}"), &format!("u{n}"), 1, &["hook"]))
                    .collect(),
                None,
                vec![],
            )
            .await
            .expect("alarms with notifications");
        let mut taken = std::collections::HashSet::new();
        let mut total = 0;
        // Small claims, many rounds, both workers at once.
        for _ in 0..10 {
            let (one, other) = tokio::join!(
                first.claim_due_outbox(at(1), 3, at(10)),
                second.claim_due_outbox(at(1), 3, at(10))
            );
            for notification in one.expect("claim").iter().chain(&other.expect("claim")) {
                total += 1;
                assert!(
                    taken.insert(notification.key),
                    "notification {} handed out twice",
                    notification.key
                );
            }
        }
        let rest = first
            .claim_due_outbox(at(1), 100, at(10))
            .await
            .expect("claim");
        total += rest.len();
        assert_eq!(total, 40, "every notification claimed once");
        assert!(
            rest.iter()
                .all(|notification| taken.insert(notification.key))
        );
    }

    #[tokio::test]
    async fn a_removed_channel_delivers_nothing_whichever_worker_wrote() {
        let (first, database) = fresh().await;
        let second = second_worker(&database).await;
        let alice = patient(&first, "Alice").await;
        let team = team_with_channels(&first, "Ward 7", &["hook", "spare"]).await;
        // Dead letters to put back while the channel goes.
        first
            .save_alarm_changes(
                (0..20)
                    .map(|n| raised(alice, &format!("dead-{n}"), &format!("d{n}"), 1, &["hook"]))
                    .collect(),
                None,
                vec![],
            )
            .await
            .expect("alarms to be dead letters");
        let dead = first
            .claim_due_outbox(at(1), 100, at(2))
            .await
            .expect("due");
        for letter in &dead {
            first
                .record_delivery(
                    letter.key,
                    at(2),
                    at(1),
                    DeliveryOutcome::Dead {
                        error: "gone".into(),
                    },
                )
                .await
                .expect("dead");
        }
        let writing = async {
            for n in 0..30 {
                second
                    .save_alarm_changes(
                        vec![raised(
                            alice,
                            &format!("new-{n}"),
                            &format!("n{n}"),
                            1,
                            &["hook"],
                        )],
                        None,
                        vec![],
                    )
                    .await
                    .expect("an alarm with its notification");
            }
        };
        let reviving = async {
            for letter in &dead {
                second
                    .retry_notification(letter.key, at(2), audit("notifications.retry"))
                    .await
                    .expect("retry");
            }
        };
        let removing = async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            assert!(
                first
                    .remove_notification_channel(
                        team,
                        "hook",
                        at(3),
                        audit("notification_channel.remove")
                    )
                    .await
                    .expect("remove")
            );
        };
        tokio::join!(writing, reviving, removing);
        let pending = first
            .notifications(NotificationQuery {
                status: Some(DeliveryStatus::Pending),
                limit: 1000,
                ..NotificationQuery::default()
            })
            .await
            .expect("pending");
        assert!(
            pending.is_empty(),
            "{} pending after the removal",
            pending.len()
        );
        assert_eq!(first.next_outbox_attempt().await.expect("next"), None);
    }
}

mod shares {
    use super::fresh;
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
