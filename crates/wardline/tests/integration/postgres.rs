//! `wardline serve` with its records in PostgreSQL (`WARDLINE_STORE`): the same server,
//! the same guarantees, nothing of the records in the data folder.

use std::time::Duration;

use wardline_store::testsuite::postgres::TestDatabase;

use crate::alarms::{AlarmStream, add_rule, assign_program, glucose_above, post_glucose};
use crate::durability::kill_9_mid_stream_loses_nothing;
use crate::support::*;
use crate::tls::refused_start;

fn store_env(database: &TestDatabase) -> [(&'static str, String); 1] {
    [("WARDLINE_STORE", database.url())]
}

async fn start_on(database: &TestDatabase) -> TestServer {
    let [(name, url)] = store_env(database);
    TestServer::start_with_env(&[(name, url.as_str())]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_postgresql_raises_alarms_and_its_audit_trail_verifies() {
    let database = TestDatabase::create().await;
    let server = start_on(&database).await;
    let ward = server.ward().await;
    assign_program(&server, &ward.clinician, &ward.patient_id, "diabetes").await;
    add_rule(&server, &ward, glucose_above("test-high", 300.0)).await;
    let mut stream = AlarmStream::open(&server, &ward.clinician).await;
    post_glucose(&server, &ward.device, 1, 350.0).await;
    let opened = stream
        .expect(Duration::from_secs(10), |event| {
            event["event"] == "opened" && event["alarm"]["rule_id"] == "test-high"
        })
        .await;
    assert_eq!(opened["alarm"]["priority"], "high");
    let stored = server
        .observations(&ward.clinician, &ward.patient_id, "99504-3")
        .await;
    assert_eq!(stored.len(), 1, "{stored:?}");

    // The data folder holds certificates and keys, never the records.
    let embedded = server.data.path().join("server").join("wardline.db");
    assert!(
        !embedded
            .try_exists()
            .expect("look for the embedded database"),
        "an embedded database was made beside a PostgreSQL store"
    );

    // The audit trail in PostgreSQL verifies with the command line, by the same key.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wardline"))
        .args(["admin", "--data-dir"])
        .arg(server.data.path().join("server"))
        .arg("--keys-dir")
        .arg(server.data.path().join("server-keys"))
        .args(["--store", &database.url(), "verify-audit"])
        .env(
            "WARDLINE_AUDIT_CHECKPOINT_FILE",
            server.data.path().join("server-audit-checkpoints.jsonl"),
        )
        .output()
        .expect("run wardline admin verify-audit");
    let text = printed(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("PostgreSQL database"), "{text}");
    assert!(text.contains("intact"), "{text}");

    // A second server on the same database is refused at start (each would evaluate
    // every patient), and the first goes on.
    let keys = server.data.path().join("server-keys");
    let said = refused_start(&[
        ("WARDLINE_STORE", &database.url()),
        // The same audit key, as every server on one database must have.
        ("WARDLINE_KEYS_DIR", &keys.to_string_lossy()),
    ]);
    assert!(said.contains("several servers on one database"), "{said}");
    post_glucose(&server, &ward.device, 2, 120.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_postgresql_loses_no_acknowledged_reading_to_kill_9() {
    let database = TestDatabase::create().await;
    kill_9_mid_stream_loses_nothing(start_on(&database).await).await;
}
