//! The first hour of an operator, with the command line as the README shows it: a
//! command run in the wrong folder stops and says so, and teams, users and patients are
//! named as they were just created, by name.

use std::process::{Command, Output};

use serde_json::Value;

use crate::support::TestServer;

fn admin(data_dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wardline"));
    command
        .args(["admin", "--data-dir"])
        .arg(data_dir)
        .args(args);
    match stdin {
        None => command.output().expect("run wardline admin"),
        Some(text) => {
            use std::io::Write;
            let mut child = command
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run wardline admin");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write stdin");
            child.wait_with_output().expect("wait")
        }
    }
}

fn succeeded(output: &Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn an_admin_command_in_a_folder_without_a_database_stops_and_says_where_it_looked() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let wrong = scratch.path().join("not-the-data");
    let output = admin(&wrong, &["create-patient", "--name", "Ada Lovelace"], None);
    assert!(!output.status.success(), "{output:?}");
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("no Wardline database in"), "{error}");
    assert!(error.contains("not-the-data"), "names the folder: {error}");
    assert!(error.contains("--init"), "says how to make one: {error}");
    assert!(!wrong.try_exists().expect("look"), "nothing was made there");
    // Asked to, it makes the folder and its database, and says which folder it used.
    let output = admin(&wrong, &["--init", "create-patient", "--name", "Ada"], None);
    assert!(succeeded(&output).contains("patient Ada id"));
    assert!(String::from_utf8_lossy(&output.stderr).contains("data folder"));
    assert!(wrong.try_exists().expect("look"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_users_and_patients_are_named_by_name_on_the_command_line() {
    let server = TestServer::start().await;
    let data = server.data.path().join("server");
    let created = succeeded(&admin(
        &data,
        &["create-patient", "--name", "Ada Lovelace", "--mrn", "MRN-7"],
        None,
    ));
    let patient_id = created
        .split(" id ")
        .nth(1)
        .expect("patient id")
        .trim()
        .to_owned();
    succeeded(&admin(
        &data,
        &["create-care-team", "--name", "Ward 7"],
        None,
    ));
    succeeded(&admin(
        &data,
        &[
            "create-user",
            "--username",
            "grey",
            "--display-name",
            "Dr Grey",
            "--role",
            "clinician",
            "--password-stdin",
        ],
        Some("a clinician's long password\n"),
    ));
    succeeded(&admin(
        &data,
        &["add-member", "--team", "Ward 7", "--user", "grey"],
        None,
    ));
    let add_patient = |patient: &str| {
        admin(
            &data,
            &["add-patient", "--team", "Ward 7", "--patient", patient],
            None,
        )
    };
    succeeded(&add_patient("Ada Lovelace"));
    let enrolled = succeeded(&admin(
        &data,
        &[
            "enrol-device",
            "--kind",
            "pulse_oximeter",
            "--model",
            "Nonin 3230",
            "--serial",
            "501234",
            "--patient",
            "MRN-7",
        ],
        None,
    ));
    assert!(enrolled.contains("secret"), "{enrolled}");
    let listed = succeeded(&admin(&data, &["list"], None));
    assert!(
        listed.contains("Ward 7 (1 members, 1 patients)"),
        "{listed}"
    );

    // A hospital system registered for SMART Backend Services, by its key set's file
    // and its care team's name; listed; revoked once.
    let jwks = server.data.path().join("engine.jwks.json");
    std::fs::write(
        &jwks,
        r#"{"keys": [{"kty": "EC", "crv": "P-384", "kid": "nightly-2026",
            "x": "c1DemAqbVfPPWof3zmjud3Aj6uaBbN9MR1t48AVC7GVVwMfhReiGxhUJwG9YHlG2",
            "y": "Cxn8MQcWVhYH4hRUcwcOxadklX_tU5tqfW3i_VCn_1AU8Khi0m8fAAH2ygM7zxUB"}]}"#,
    )
    .expect("key set file");
    let jwks_arg = jwks.to_str().expect("path");
    let registered = succeeded(&admin(
        &data,
        &[
            "register-backend-client",
            "--name",
            "Nightly export",
            "--jwks",
            jwks_arg,
            "--team",
            "Ward 7",
        ],
        None,
    ));
    let client_id = registered
        .split("client_id ")
        .nth(1)
        .expect("client id")
        .trim()
        .to_owned();
    assert!(client_id.starts_with("cl_"), "{registered}");
    let clients = succeeded(&admin(&data, &["backend-clients"], None));
    assert!(
        clients.contains(&format!(
            "{client_id}  Nightly export  1 care teams  active"
        )),
        "{clients}"
    );
    succeeded(&admin(
        &data,
        &["revoke-backend-client", "--client", &client_id],
        None,
    ));
    assert!(
        succeeded(&admin(&data, &["backend-clients"], None)).contains("revoked"),
        "listed as revoked"
    );
    let again = admin(
        &data,
        &["revoke-backend-client", "--client", &client_id],
        None,
    );
    assert!(!again.status.success(), "revoked once");
    // A key set that is not one is refused naming the key and field.
    std::fs::write(
        &jwks,
        r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "a"}]}"#,
    )
    .expect("key set file");
    let refused = admin(
        &data,
        &[
            "register-backend-client",
            "--name",
            "Shared secret",
            "--jwks",
            jwks_arg,
            "--team",
            "Ward 7",
        ],
        None,
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("jwks.keys[0].kty"),
        "{refused:?}"
    );

    // A name that is not there, or that two patients share, is refused and says why.
    let unknown = add_patient("Nobody");
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no patient with the id, MRN or name")
    );
    succeeded(&admin(
        &data,
        &["create-patient", "--name", "Ada Lovelace"],
        None,
    ));
    let ambiguous = add_patient("Ada Lovelace");
    assert!(!ambiguous.status.success());
    assert!(
        String::from_utf8_lossy(&ambiguous.stderr).contains("2 patients are named"),
        "{ambiguous:?}"
    );

    // The clinician made on the command line sees the patient put in the team by name.
    let session = server.login("grey", "a clinician's long password").await;
    let patients: Value = server
        .get(&session, "/api/v1/patients")
        .await
        .json()
        .await
        .expect("patients");
    let ids: Vec<&str> = patients
        .as_array()
        .expect("patients")
        .iter()
        .filter_map(|patient| patient["id"].as_str())
        .collect();
    assert_eq!(ids, vec![patient_id.as_str()]);
}

/// `wardline import clarity` takes the patient as named and the shared Dexcom Clarity
/// export, and says what it did; a second run of the same file adds nothing.
#[test]
fn a_clarity_export_is_imported_once_from_the_command_line() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let data = scratch.path().join("data");
    succeeded(&admin(
        &data,
        &[
            "--init",
            "create-patient",
            "--name",
            "Joe Schmoe",
            "--mrn",
            "MRN-9",
        ],
        None,
    ));
    let shared = std::env::var_os("WARDLINE_SHARED_DATA").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        std::path::PathBuf::from,
    );
    let export = shared.join("cgm/dexcom_g6_cgmquantify/dexcom_clarity_export_original.csv");
    assert!(
        export.is_file(),
        "the shared data folder was not found: looked for {}. Set WARDLINE_SHARED_DATA.",
        export.display()
    );
    let import = || {
        Command::new(env!("CARGO_BIN_EXE_wardline"))
            .args(["import", "clarity"])
            .arg(&export)
            .args([
                "--patient",
                "MRN-9",
                "--time-zone",
                "America/Los_Angeles",
                "--data-dir",
            ])
            .arg(&data)
            .output()
            .expect("run wardline import")
    };
    let first = succeeded(&import());
    assert!(
        first.contains("imported 2148 readings (0 stored before)"),
        "{first}"
    );
    assert!(first.contains("America/Los_Angeles"), "{first}");
    let second = succeeded(&import());
    assert!(
        second.contains("imported 0 readings (2148 stored before)"),
        "{second}"
    );
}
