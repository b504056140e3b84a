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
        nightscout_sites_live_with_their_device, nightscout_documents_are_kept_once_per_key,
        device_reports_are_kept, ingest_stores_once, ingest_refuses_unassigned_and_revoked,
        ingest_all_or_none_stores_nothing_when_one_item_is_refused,
        a_reused_seq_with_other_content_is_refused, readings_a_device_cannot_take_are_refused,
        reassigned_device_keeps_patients_apart);
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
    wardline_store::store_conformance_checks!(fresh(););
}

// ---------------------------------------------------------------------------------------
// Shares, referrals, specialist invitations.

mod shares {
    #[allow(unused_imports)]
    use super::fresh;
    wardline_store::store_conformance_checks!(fresh(););
}
