//! The audit trail against someone who has the database file but not the audit key: the
//! real server exports signed checkpoints, and `wardline admin verify-audit` notices
//! deleted, emptied and rewritten trails in copies of its data folder.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::TimeZone;
use wardline_store::{AuditEvent, AuditOutcome, unkeyed_chain_hash};

use crate::support::{TestServer, open_database, printed};

struct Folders {
    data: PathBuf,
    keys: PathBuf,
    checkpoints: PathBuf,
}

fn verify(folders: &Folders, data: &Path) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wardline"))
        .args(["admin", "--data-dir"])
        .arg(data)
        .arg("--keys-dir")
        .arg(&folders.keys)
        .arg("verify-audit")
        .env("WARDLINE_AUDIT_CHECKPOINT_FILE", &folders.checkpoints)
        .output()
        .expect("run wardline admin verify-audit");
    let text = printed(&output);
    (output.status.success(), text)
}

/// A copy of the data folder's database, tampered with by `sql` after the append-only
/// triggers are dropped (as anyone with the file can).
fn tampered(folders: &Folders, name: &str, sql: &str) -> PathBuf {
    let copy = folders.data.with_file_name(name);
    std::fs::create_dir_all(&copy).expect("copy folder");
    for file in ["wardline.db", "wardline.db-wal", "wardline.db-shm"] {
        let from = folders.data.join(file);
        if from.try_exists().expect("look for the file") {
            std::fs::copy(&from, copy.join(file)).expect("copy database");
        }
    }
    let connection = open_database(&copy.join("wardline.db"), &folders.keys);
    connection
        .execute_batch(&format!(
            "DROP TRIGGER audit_event_no_update; DROP TRIGGER audit_event_no_delete; {sql}"
        ))
        .expect("tamper");
    copy
}

/// Every file in a folder and the folders in it.
fn files_under(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).expect("folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn newest_entry(folders: &Folders) -> i64 {
    open_database(&folders.data.join("wardline.db"), &folders.keys)
        .query_row("SELECT max(key) FROM audit_event", [], |row| row.get(0))
        .expect("newest entry")
}

fn newest_checkpoint(file: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().last()?;
    serde_json::from_str::<serde_json::Value>(line).ok()?["sequence"].as_i64()
}

/// Rewrites an entry and recomputes the whole chain with the unkeyed version-2 function,
/// which is all someone without the key can do.
fn recompute_without_the_key(data: &Path, keys: &Path) {
    let connection = open_database(&data.join("wardline.db"), keys);
    connection
        .execute(
            "UPDATE audit_event SET detail = 'nothing happened' WHERE key = 2",
            [],
        )
        .expect("edit");
    let rows: Vec<(i64, AuditEvent)> = connection
        .prepare(
            "SELECT key, time_ms, actor_id, actor_label, action, patient_id, outcome, remote_addr, detail
             FROM audit_event ORDER BY key",
        )
        .expect("prepare")
        .query_map([], |row| {
            let actor: Option<String> = row.get(2)?;
            let patient: Option<String> = row.get(5)?;
            let outcome: String = row.get(6)?;
            Ok((
                row.get(0)?,
                AuditEvent {
                    time: chrono::Utc
                        .timestamp_millis_opt(row.get(1)?)
                        .single()
                        .expect("time"),
                    actor: actor.map(|id| id.parse().expect("user id")),
                    actor_label: row.get(3)?,
                    action: row.get(4)?,
                    patient_id: patient.map(|id| id.parse().expect("patient id")),
                    outcome: AuditOutcome::parse(&outcome).expect("outcome"),
                    remote_addr: row.get(7)?,
                    detail: row.get(8)?,
                },
            ))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let mut previous = Vec::new();
    for (key, event) in rows {
        let hash = unkeyed_chain_hash(&previous, &event);
        connection
            .execute(
                "UPDATE audit_event SET chain_hash = ?1, chain_version = 2 WHERE key = ?2",
                rusqlite::params![hash.as_slice(), key],
            )
            .expect("rechain");
        previous = hash.to_vec();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_audit_notices_deleted_emptied_and_rewritten_trails() {
    let mut server =
        TestServer::start_with_env(&[("WARDLINE_AUDIT_CHECKPOINT_SECONDS", "1")]).await;
    let _ward = server.ward().await;
    let root = server.data.path().to_owned();
    let folders = Folders {
        data: root.join("server"),
        keys: root.join("server-keys"),
        checkpoints: root.join("server-audit-checkpoints.jsonl"),
    };
    // The server signs the chain's head within a second of it moving.
    let deadline = Instant::now() + Duration::from_secs(15);
    while newest_checkpoint(&folders.checkpoints) != Some(newest_entry(&folders)) {
        assert!(
            Instant::now() < deadline,
            "no checkpoint of the newest entry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill_hard();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let keys = [
            "audit.key",
            "notify.key",
            "ca.key",
            "server.key",
            "database.key",
        ]
        .map(|name| folders.keys.join(name));
        for file in keys.iter().chain([&folders.checkpoints]) {
            let mode = std::fs::metadata(file).expect("file").permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is owner-only", file.display());
        }
    }
    // No key of any kind is in the data folder: a copy of it carries none.
    for file in files_under(&folders.data) {
        let name = file.to_string_lossy().into_owned();
        assert!(!name.ends_with(".key"), "{name} is in the data folder");
        let bytes = std::fs::read(&file).expect("read");
        assert!(
            !bytes.windows(11).any(|window| window == b"PRIVATE KEY"),
            "{name} holds a private key"
        );
    }

    let (intact, text) = verify(&folders, &folders.data);
    assert!(intact && text.contains("audit trail intact"), "{text}");

    let truncated = tampered(
        &folders,
        "truncated",
        "DELETE FROM audit_event WHERE key > (SELECT max(key) - 3 FROM audit_event)",
    );
    let (intact, text) = verify(&folders, &truncated);
    assert!(
        !intact && text.contains("newest entries were deleted"),
        "{text}"
    );

    let emptied = tampered(&folders, "emptied", "DELETE FROM audit_event");
    let (intact, text) = verify(&folders, &emptied);
    assert!(!intact && text.contains("audit trail is empty"), "{text}");

    let edited = tampered(
        &folders,
        "edited",
        "UPDATE audit_event SET detail = 'nothing happened' WHERE key = 2",
    );
    let (intact, text) = verify(&folders, &edited);
    assert!(
        !intact && text.contains("chain broken at event 2"),
        "{text}"
    );

    let rechained = tampered(&folders, "rechained", "");
    recompute_without_the_key(&rechained, &folders.keys);
    let (intact, text) = verify(&folders, &rechained);
    assert!(
        !intact && text.contains("the trail was rewritten"),
        "{text}"
    );

    let gap = tampered(&folders, "gap", "DELETE FROM audit_event WHERE key = 3");
    let (intact, text) = verify(&folders, &gap);
    assert!(
        !intact && text.contains("audit events 3 to 3 are missing"),
        "{text}"
    );

    // A checkpoint line not signed with this installation's key is refused too.
    let forged = Folders {
        checkpoints: root.join("forged-checkpoints.jsonl"),
        ..folders
    };
    let mut lines =
        std::fs::read_to_string(root.join("server-audit-checkpoints.jsonl")).expect("checkpoints");
    lines.push_str(
        "{\"sequence\":1,\"chain_hash\":\"00\",\"time\":1800000000000,\"signature\":\"00\"}\n",
    );
    std::fs::write(&forged.checkpoints, lines).expect("forged file");
    let (intact, text) = verify(&forged, &forged.data);
    assert!(!intact && text.contains("is not signed"), "{text}");

    // Another key (a lost key replaced by a new one) is refused when the store opens.
    let other_keys = root.join("other-keys");
    std::fs::create_dir_all(&other_keys).expect("keys");
    std::fs::write(other_keys.join("audit.key"), [7u8; 32]).expect("key");
    // The same database key: what is checked is the audit key alone.
    std::fs::copy(
        forged.keys.join("database.key"),
        other_keys.join("database.key"),
    )
    .expect("database key");
    let wrong = Folders {
        keys: other_keys,
        ..forged
    };
    let (intact, text) = verify(&wrong, &wrong.data);
    assert!(!intact && text.contains("not the one"), "{text}");
}
