//! A database written by an older Wardline opens, migrates and stays readable. The
//! version-1 database is built from a committed fixture, so this test keeps meaning "a
//! database as version 1 wrote it" whatever later migrations do.

use chrono::{TimeZone, Utc};
use wardline_domain::{DeviceId, ObservationCode, PatientId};
use wardline_store::sqlite::{SCHEMA_VERSION, SqliteOptions, SqliteStore};
use wardline_store::{
    AnalysisResults, ClinicalStore, NewDerivedObservation, ObservationQuery, PeopleStore,
};

const FIXTURE: &str = include_str!("fixtures/schema-v1.sql");

#[tokio::test]
async fn a_version_1_database_migrates_with_its_rows_readable() {
    let folder = tempfile::tempdir().expect("temp dir");
    let path = folder.path().join("wardline.db");
    {
        let connection = rusqlite::Connection::open(&path).expect("create v1 database");
        connection.execute_batch(FIXTURE).expect("fixture builds");
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("version");
        assert_eq!(version, 1);
    }
    let store = SqliteStore::open(SqliteOptions::new(&path))
        .await
        .expect("open and migrate");
    {
        let connection = rusqlite::Connection::open(&path).expect("reopen");
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
    }
    let patient: PatientId = "6c1d0f3e-2b7a-4c55-9a51-0b8e2f4d9a10"
        .parse()
        .expect("patient id");
    let device = DeviceId::parse("dev_3f9a1c0b7d2e4f11").expect("device id");
    assert_eq!(
        store
            .patient(patient)
            .await
            .expect("patient")
            .expect("exists")
            .display_name,
        "Ada Lovelace"
    );
    let latest = store.latest_observations(patient).await.expect("latest");
    assert_eq!(latest.len(), 2);
    let temperature = latest
        .iter()
        .find(|observation| observation.code == ObservationCode::BodyTemperature)
        .expect("temperature");
    assert_eq!(temperature.original_unit.as_deref(), Some("[degF]"));
    assert!(
        latest.iter().all(|observation| !observation.derived),
        "rows from before derivation existed are the devices' own"
    );
    // The migrated unique key: a derived observation may reuse a device seq.
    let at = |ms: i64| Utc.timestamp_millis_opt(ms).single().expect("time");
    let stored = store
        .record_analysis(AnalysisResults {
            derived: vec![NewDerivedObservation {
                patient_id: patient,
                device_id: device,
                seq: 1,
                code: ObservationCode::HeartRate,
                value: 74.0,
                effective: at(1_790_000_070_000),
                received: at(1_790_000_071_000),
            }],
            recorded: at(1_790_000_072_000),
            ..AnalysisResults::default()
        })
        .await
        .expect("derive");
    assert_eq!(stored.len(), 1);
    let page = store
        .observations(ObservationQuery {
            patient_id: patient,
            code: ObservationCode::HeartRate,
            from: at(1_790_000_000_000),
            to: at(1_790_000_600_000),
            after: None,
            limit: 10,
        })
        .await
        .expect("query");
    assert_eq!(page.observations.len(), 2);
    // Opening again does not migrate twice.
    drop(store);
    SqliteStore::open(SqliteOptions::new(&path))
        .await
        .expect("reopen migrated");
}
