//! The database encrypted at rest: no patient's name in the files, the wrong key refused,
//! an unencrypted database encrypted in place, and a key rotation.

use std::path::Path;

use wardline_store::sqlite::encryption::{is_plaintext, rewrite};
use wardline_store::sqlite::{DatabaseKey, SqliteOptions, SqliteStore};
use wardline_store::{PeopleStore, StoreError};

const FIXTURE: &str = include_str!("fixtures/schema-v1.sql");

fn options(path: &Path, key: Option<&DatabaseKey>) -> SqliteOptions {
    let mut options = SqliteOptions::new(path, wardline_store::testsuite::audit_key());
    options.key = key.cloned();
    options
}

/// Whether any file of the database (the file, its write-ahead log, its index) holds
/// `text` as it would be stored unencrypted.
fn files_contain(folder: &Path, text: &str) -> bool {
    std::fs::read_dir(folder)
        .expect("list folder")
        .map(|entry| std::fs::read(entry.expect("entry").path()).expect("read file"))
        .any(|bytes| {
            bytes
                .windows(text.len())
                .any(|window| window == text.as_bytes())
        })
}

/// Drops the store and gives its writer thread a moment to close its connection (which
/// folds the write-ahead log into the file when it is the last), so that the files are
/// what a copy would take; the checks hold whether or not the log is still there.
async fn close(store: SqliteStore, path: &Path) {
    drop(store);
    for _ in 0..50 {
        if !std::fs::exists(format!("{}-wal", path.display())).expect("look for the log") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_encrypted_database_holds_no_patient_name_in_its_files() {
    let key = DatabaseKey::generate().expect("key");
    for encrypted in [false, true] {
        let folder = tempfile::tempdir().expect("temp dir");
        let path = folder.path().join("wardline.db");
        let store = SqliteStore::open(options(&path, encrypted.then_some(&key)))
            .await
            .expect("open");
        wardline_store::testsuite::patient(&store, "Zebulon Quartermaine").await;
        // While the server runs, the name is in the write-ahead log…
        let open_files = files_contain(folder.path(), "Zebulon Quartermaine");
        close(store, &path).await;
        // …and after it stopped, in the database file.
        let closed_files = files_contain(folder.path(), "Zebulon Quartermaine");
        if encrypted {
            assert!(
                !open_files,
                "a patient's name is readable in the open database's files"
            );
            assert!(
                !closed_files,
                "a patient's name is readable in the database file"
            );
            assert_eq!(is_plaintext(&path).expect("header"), Some(false));
        } else {
            // The search finds the name where it is stored in clear: it can fail.
            assert!(
                open_files || closed_files,
                "the unencrypted control shows no name"
            );
            assert_eq!(is_plaintext(&path).expect("header"), Some(true));
        }
    }
}

#[tokio::test]
async fn the_wrong_key_or_none_is_refused_with_a_clear_error() {
    let folder = tempfile::tempdir().expect("temp dir");
    let path = folder.path().join("wardline.db");
    let key = DatabaseKey::generate().expect("key");
    let store = SqliteStore::open(options(&path, Some(&key)))
        .await
        .expect("open");
    wardline_store::testsuite::patient(&store, "Ada").await;
    close(store, &path).await;
    let other = DatabaseKey::generate().expect("other key");
    for (given, expected) in [
        (Some(&other), "the key does not open it"),
        (None, "it is encrypted, and no key was given"),
    ] {
        match SqliteStore::open(options(&path, given)).await {
            Err(error @ StoreError::DatabaseKey { .. }) => {
                let message = error.to_string();
                assert!(message.contains(expected), "{message}");
                assert!(message.contains("wardline.db"), "{message}");
            }
            Err(other) => panic!("unexpected error: {other}"),
            Ok(_) => panic!("opened with the wrong key"),
        }
    }
    // The refusals changed nothing: the right key still opens it, with its patient.
    let store = SqliteStore::open(options(&path, Some(&key)))
        .await
        .expect("reopen");
    assert_eq!(store.patients().await.expect("patients").len(), 1);
}

#[tokio::test]
async fn an_unencrypted_database_is_encrypted_in_place_when_a_key_is_given() {
    let folder = tempfile::tempdir().expect("temp dir");
    let path = folder.path().join("wardline.db");
    {
        let connection = rusqlite::Connection::open(&path).expect("create v1 database");
        connection.execute_batch(FIXTURE).expect("fixture builds");
    }
    assert!(
        files_contain(folder.path(), "Ada Lovelace"),
        "the fixture names Ada Lovelace"
    );
    let key = DatabaseKey::generate().expect("key");
    let store = SqliteStore::open(options(&path, Some(&key)))
        .await
        .expect("encrypt, open and migrate");
    let patients = store.patients().await.expect("patients");
    assert_eq!(patients.len(), 1);
    assert_eq!(patients[0].display_name, "Ada Lovelace");
    close(store, &path).await;
    assert!(!files_contain(folder.path(), "Ada Lovelace"));
    assert_eq!(is_plaintext(&path).expect("header"), Some(false));
    let staged: Vec<_> = std::fs::read_dir(folder.path())
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".rekeying"))
        .collect();
    assert_eq!(
        staged,
        Vec::<String>::new(),
        "no staging copy is left behind"
    );
}

#[tokio::test]
async fn a_rotation_moves_the_database_to_the_new_key() {
    let folder = tempfile::tempdir().expect("temp dir");
    let path = folder.path().join("wardline.db");
    let old = DatabaseKey::generate().expect("key");
    let store = SqliteStore::open(options(&path, Some(&old)))
        .await
        .expect("open");
    wardline_store::testsuite::patient(&store, "Grace Hopper").await;
    // Not while the database is open: the rotation must not race a server's commits.
    let new = DatabaseKey::generate().expect("new key");
    match rewrite(&path, Some(&old), Some(&new)) {
        Err(StoreError::Invalid(reason)) => assert!(reason.contains("in use"), "{reason}"),
        other => panic!("rotated an open database: {other:?}"),
    }
    close(store, &path).await;
    rewrite(&path, Some(&old), Some(&new)).expect("rotate");
    assert!(matches!(
        SqliteStore::open(options(&path, Some(&old))).await,
        Err(StoreError::DatabaseKey { .. })
    ));
    let store = SqliteStore::open(options(&path, Some(&new)))
        .await
        .expect("open with the new key");
    let patients = store.patients().await.expect("patients");
    assert_eq!(patients.len(), 1);
    assert_eq!(patients[0].display_name, "Grace Hopper");
    close(store, &path).await;
    assert!(!files_contain(folder.path(), "Grace Hopper"));
}

#[test]
fn a_key_reads_back_from_its_text_and_is_never_printed() {
    let key = DatabaseKey::generate().expect("key");
    let text = key.to_hex();
    assert_eq!(DatabaseKey::from_hex(&format!("{text}\n")), Ok(key.clone()));
    assert!(!format!("{key:?}").contains(&text[..8]));
    let short = DatabaseKey::from_hex("abcd").expect_err("too short");
    assert!(short.to_string().contains("has 4 characters"), "{short}");
    let not_hex = DatabaseKey::from_hex(&"g".repeat(64)).expect_err("not hex");
    assert!(not_hex.to_string().contains("not a hex digit"), "{not_hex}");
}
