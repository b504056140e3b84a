//! The database at rest, as someone who copies the data folder sees it: no patient's name
//! and no reading in clear, while the server runs and after it crashed; and the key
//! rotated with `wardline admin rotate-database-key` without losing anything.

use std::path::Path;

use serde_json::json;

use crate::support::{TestServer, open_database};

/// The files of the data folder that contain `needle` as stored in clear.
fn files_containing(folder: &Path, needle: &[u8]) -> Vec<String> {
    std::fs::read_dir(folder)
        .expect("data folder")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.is_file())
        .filter(|path| {
            std::fs::read(path)
                .expect("read")
                .windows(needle.len())
                .any(|window| window == needle)
        })
        .map(|path| path.display().to_string())
        .collect()
}

fn rotate(server: &TestServer) -> (bool, String) {
    let root = server.data.path();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wardline"))
        .args(["admin", "--data-dir"])
        .arg(root.join("server"))
        .arg("--keys-dir")
        .arg(root.join("server-keys"))
        .arg("rotate-database-key")
        .output()
        .expect("run wardline admin rotate-database-key");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_folder_shows_no_patient_name_or_reading_and_the_key_rotates() {
    let mut server = TestServer::start().await;
    let ward = server.ward().await;
    let name = "Philippa Quennell-Ashdown";
    server
        .post_ok(
            &ward.admin,
            "/api/v1/patients",
            json!({"display_name": name}),
        )
        .await;
    // A reading with a unit string that appears nowhere else.
    server
        .device_post(
            &ward.device,
            json!({"v": 1, "seq": 1, "code": "99504-3", "value": 7.25, "unit": "mmol/L",
                   "time": chrono::Utc::now().to_rfc3339()}),
        )
        .await;
    let data = server.data.path().join("server");
    let keys = server.data.path().join("server-keys");
    // While the server runs (the name is in the write-ahead log)…
    assert_eq!(
        files_containing(&data, name.as_bytes()),
        Vec::<String>::new()
    );
    assert_eq!(files_containing(&data, b"mmol/L"), Vec::<String>::new());
    // …and after a crash left the log as it was.
    server.kill_hard();
    assert_eq!(
        files_containing(&data, name.as_bytes()),
        Vec::<String>::new()
    );
    assert_eq!(files_containing(&data, b"mmol/L"), Vec::<String>::new());
    // The key is outside the data folder, owner-only.
    let key_file = keys.join("database.key");
    let old_key = std::fs::read_to_string(&key_file).expect("database key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the database key is owner-only");
    }

    let (rotated, text) = rotate(&server);
    assert!(rotated, "{text}");
    let new_key = std::fs::read_to_string(&key_file).expect("new database key");
    assert_ne!(old_key.trim(), new_key.trim());
    assert_eq!(new_key.trim().len(), 64);
    // The old key opens nothing any more.
    let connection = rusqlite::Connection::open(data.join("wardline.db")).expect("open");
    let old_key = wardline_store::sqlite::DatabaseKey::from_hex(&old_key).expect("a key");
    wardline_store::sqlite::encryption::key_connection(&connection, &old_key).expect("key");
    assert!(
        connection
            .query_row("SELECT count(*) FROM patient", [], |row| row
                .get::<_, i64>(0))
            .is_err(),
        "the old key still opens the database"
    );
    drop(connection);
    // The new one does, given the same way.
    let connection = open_database(&data.join("wardline.db"), &keys);
    let patients: i64 = connection
        .query_row("SELECT count(*) FROM patient", [], |row| row.get(0))
        .expect("the new key opens the database");
    assert!(patients >= 2, "{patients} patients");
    drop(connection);

    // The server opens it with the new key, with everything in it.
    server.restart();
    let admin = server.admin().await;
    let patients: serde_json::Value = server
        .get(&admin, "/api/v1/patients")
        .await
        .json()
        .await
        .expect("patients");
    assert!(patients.to_string().contains(name), "{patients}");
    let clinician = server
        .login(&ward.clinician_username, crate::support::CLINICIAN_PASSWORD)
        .await;
    let latest: serde_json::Value = server
        .get(
            &clinician,
            &format!("/api/v1/patients/{}/observations/latest", ward.patient_id),
        )
        .await
        .json()
        .await
        .expect("latest");
    assert!(latest.to_string().contains("7.25"), "{latest}");
    // With the server running, a rotation is refused and changes nothing.
    let (rotated, text) = rotate(&server);
    assert!(!rotated && text.contains("in use"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&key_file).expect("key").trim(),
        new_key.trim()
    );
}
