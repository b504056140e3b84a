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
    wardline_store::store_conformance_checks!(fresh();
        devices_and_assignments, enrolment_for_an_unknown_patient_leaves_nothing,
        device_certificates_identify_their_device,
        an_assignment_is_not_backdated_over_stored_readings, gateways_report_and_list,
        nightscout_sites_live_with_their_device, nightscout_documents_are_kept_once_per_key);
}

// ---------------------------------------------------------------------------------------
// Clinical reads and derived results, the event log.

mod clinical {
    #[allow(unused_imports)]
    use super::fresh;
    wardline_store::store_conformance_checks!(fresh();
        observations_page_by_time, observation_summary_per_bucket, latest_observation_per_code,
        waveform_chunks_by_window, derived_observations_have_their_own_seq,
        latest_observations_within_a_window, rhythm_events_grow_and_are_found_by_overlap,
        news2_results_replace_per_time, event_log_reads_every_commit_once,
        event_log_reads_a_patient_scope, event_log_resumes_from_a_checkpoint);
}

// ---------------------------------------------------------------------------------------
// Care plans, alarms, escalation, the outbox.

mod alarms {
    #[allow(unused_imports)]
    use super::fresh;
    wardline_store::store_conformance_checks!(fresh();
        care_plans_are_versioned, alarms_with_history_and_checkpoint,
        escalation_policies_per_team, channels_and_the_outbox);

    // What SQLite's one writer kept, kept by PostgreSQL between two workers.

    use serde_json::json;
    use wardline_alerting::{
        Alarm, AlarmKind, AlarmSignal, ConditionKey, EscalationStatus, Priority, RuleId,
    };
    use wardline_domain::{CareTeamId, PatientId};
    use wardline_store::postgres::PostgresOptions;
    use wardline_store::testsuite::{at, audit, audit_key, patient};
    use wardline_store::{
        AlarmChange, AlarmRecord, AlarmStore, ChannelKind, DeliveryOutcome, DeliveryStatus,
        NewCareTeam, NewNotification, NotificationChannel, NotificationQuery, OutboxStore,
        PeopleStore, PostgresStore, StoreError,
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

    #[tokio::test]
    async fn a_removed_channel_delivers_nothing_whichever_worker_wrote() {
        let (first, database) = fresh().await;
        let second = second_worker(&database).await;
        let alice = patient(&first, "Alice").await;
        let team = first
            .create_care_team(
                NewCareTeam {
                    id: CareTeamId::random(),
                    name: "Ward 7".into(),
                    created: at(0),
                },
                audit("care_teams.create"),
            )
            .await
            .expect("team");
        for id in ["hook", "spare"] {
            first
                .create_notification_channel(
                    NotificationChannel {
                        id: id.into(),
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
        let dead = first.due_outbox(at(1), 100).await.expect("due");
        for letter in &dead {
            first
                .record_delivery(
                    letter.key,
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
                        team.id,
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

// ---------------------------------------------------------------------------------------
// Shares, referrals, specialist invitations.

mod shares {
    #[allow(unused_imports)]
    use super::fresh;
    wardline_store::store_conformance_checks!(fresh(););
}
