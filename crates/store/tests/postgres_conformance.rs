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
        care_plans_are_versioned, alarms_with_history_and_checkpoint);
}

// ---------------------------------------------------------------------------------------
// Shares, referrals, specialist invitations.

mod shares {
    #[allow(unused_imports)]
    use super::fresh;
    wardline_store::store_conformance_checks!(fresh(););
}
