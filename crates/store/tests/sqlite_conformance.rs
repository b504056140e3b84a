//! The storage conformance suite against the embedded SQLite backend, each check on a
//! fresh database file.

use wardline_store::sqlite::{SqliteOptions, SqliteStore};

async fn fresh() -> (SqliteStore, tempfile::TempDir) {
    let folder = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(SqliteOptions::new(
        folder.path().join("wardline.db"),
        wardline_store::testsuite::audit_key(),
    ))
    .await
    .expect("open store");
    (store, folder)
}

wardline_store::store_conformance_suite!(fresh());
