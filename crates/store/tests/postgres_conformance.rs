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
    wardline_store::store_conformance_checks!(fresh(););
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
    wardline_store::store_conformance_checks!(fresh(););
}
