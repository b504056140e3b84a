//! A database written by an older Wardline opens, migrates and stays readable. The
//! version-1 and version-4 databases are built from committed fixtures, so each test keeps
//! meaning "a database as that version wrote it" whatever later migrations do.

use chrono::{TimeZone, Utc};
use wardline_alerting::{AlarmKind, AlarmState, PatientMonitor, Priority, Program};
use wardline_domain::{DeviceId, DeviceKind, ObservationCode, PatientId, Role, UserId};
use wardline_store::sqlite::{SCHEMA_VERSION, SqliteOptions, SqliteStore};
use wardline_store::{
    AlarmChange, AlarmEventKind, AlarmQuery, AlarmStore, AnalysisResults, AuditEvent, AuditOutcome,
    AuditQuery, AuditStore, CHAIN_VERSION, ClinicalStore, DeliveryStatus, DeviceStore,
    NewAlarmEvent, NewDerivedObservation, NotificationQuery, ObservationQuery, OutboxStore,
    PeopleStore, StoreError, chain_hash,
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
    let store = SqliteStore::open(SqliteOptions::new(
        &path,
        wardline_store::testsuite::audit_key(),
    ))
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
            newest_first: false,
        })
        .await
        .expect("query");
    assert_eq!(page.observations.len(), 2);
    // Opening again does not migrate twice.
    drop(store);
    SqliteStore::open(SqliteOptions::new(
        &path,
        wardline_store::testsuite::audit_key(),
    ))
    .await
    .expect("reopen migrated");
}

const FIXTURE_V4: &str = include_str!("fixtures/schema-v4.sql");

#[tokio::test]
async fn a_version_4_database_migrates_with_alarms_readable_and_its_audit_chain_intact() {
    let folder = tempfile::tempdir().expect("temp dir");
    let path = folder.path().join("wardline.db");
    // What version 4 wrote, counted before the migration touches it.
    let audit_rows: i64 = {
        let connection = rusqlite::Connection::open(&path).expect("create v4 database");
        connection
            .execute_batch(FIXTURE_V4)
            .expect("fixture builds");
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("version");
        assert_eq!(version, 4);
        let dangling: i64 = connection
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
                row.get(0)
            })
            .expect("foreign key check");
        assert_eq!(dangling, 0, "every reference in the fixture resolves");
        connection
            .query_row("SELECT count(*) FROM audit_event", [], |row| row.get(0))
            .expect("count")
    };
    assert_eq!(audit_rows, 25, "the fixture's audit trail");
    let store = SqliteStore::open(SqliteOptions::new(
        &path,
        wardline_store::testsuite::audit_key(),
    ))
    .await
    .expect("open and migrate");
    {
        let connection = rusqlite::Connection::open(&path).expect("reopen");
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
    }

    // Every entry written by version 4 verifies under its version-1 hash.
    assert_eq!(
        store.verify_audit_chain().await.expect("chain verifies"),
        u64::try_from(audit_rows).expect("count")
    );

    let patient: PatientId = "fb78653d-5de6-4ac7-b733-011c48281f37"
        .parse()
        .expect("patient id");
    let nora: UserId = "fede4cfd-a1bb-4819-bda6-d035141d86f4"
        .parse()
        .expect("clinician id");
    let device = DeviceId::parse("dev_693284aa9f984f6c").expect("device id");
    let at = |ms: i64| Utc.timestamp_millis_opt(ms).single().expect("time");

    // People, the patient and the device.
    assert_eq!(
        store
            .patient(patient)
            .await
            .expect("patient")
            .expect("exists")
            .display_name,
        "Grace Hopper"
    );
    let clinician = store.user(nora).await.expect("user").expect("exists");
    assert_eq!(clinician.username, "nora");
    assert_eq!(clinician.role, Role::Clinician);
    assert_eq!(store.users().await.expect("users").len(), 2);
    assert_eq!(
        store
            .device(&device)
            .await
            .expect("device")
            .expect("exists")
            .kind,
        DeviceKind::Cgm
    );

    // The audit entries of version 4 read back with their actors and patients, which
    // version 4 stored only as internal keys.
    let acknowledged = store
        .audit_events(AuditQuery {
            action: Some("alarms.acknowledge".into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("audit events");
    assert_eq!(acknowledged.len(), 1);
    assert_eq!(acknowledged[0].sequence, 16);
    assert_eq!(acknowledged[0].actor, Some(nora));
    assert_eq!(acknowledged[0].patient_id, Some(patient));
    assert_eq!(
        acknowledged[0].detail.as_deref(),
        Some("71abf4f746fdcd84a438fb75")
    );

    // The care plan, as a typed record.
    let versions = store.care_plan_versions(patient).await.expect("care plan");
    assert_eq!(versions.len(), 1);
    let plan = &versions[0];
    assert_eq!(plan.version, 1);
    assert_eq!(plan.author, None);
    assert_eq!(plan.author_label, "cli");
    assert_eq!(plan.reason, "assigned from the command line");
    assert_eq!(plan.plan.program, Program::Diabetes);
    assert_eq!(plan.plan.patient_id, patient);
    assert_eq!(plan.plan.rules.len(), 8);
    assert!(
        plan.plan.rules.iter().any(|rule| rule.id.0 == "urgent-low"),
        "{:?}",
        plan.plan.rules
    );
    assert_eq!(
        store.current_care_plans().await.expect("current plans"),
        versions
    );

    // The evaluator's state as version 4 checkpointed it.
    let monitors = store.monitor_states().await.expect("monitor states");
    assert_eq!(monitors.len(), 1);
    assert_eq!(monitors[0].0, patient);
    let monitor: PatientMonitor =
        serde_json::from_value(monitors[0].1.clone()).expect("evaluator state decodes");
    assert_eq!(monitor.care_plan(), &plan.plan);

    // The observations: five CGM readings in mmol/L, stored in mg/dL.
    let page = store
        .observations(ObservationQuery {
            patient_id: patient,
            code: ObservationCode::GlucoseCgm,
            from: at(1_796_296_040_000),
            to: at(1_796_296_100_000),
            after: None,
            limit: 10,
            newest_first: false,
        })
        .await
        .expect("observations");
    let seqs: Vec<i64> = page.observations.iter().map(|o| o.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let originals: Vec<Option<f64>> = page.observations.iter().map(|o| o.original_value).collect();
    assert_eq!(
        originals,
        [Some(5.0), Some(4.1), Some(3.3), Some(2.6), Some(2.4)]
    );
    assert!(
        page.observations
            .iter()
            .all(|o| o.device_id == device && !o.derived && o.unit == "mg/dL"),
        "{:?}",
        page.observations
    );
    let latest = store.latest_observations(patient).await.expect("latest");
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].seq, 5);
    assert_eq!(latest[0].value, 43.23744);
    assert_eq!(latest[0].original_unit.as_deref(), Some("mmol/L"));

    // The alarm version 4 stored as JSON reads back as a typed record: the urgent low,
    // acknowledged by the clinician.
    let public_id = "71abf4f746fdcd84a438fb75";
    let record = store
        .alarm_by_public_id(public_id)
        .await
        .expect("alarm")
        .expect("exists");
    assert_eq!(record.public_id, public_id);
    assert_eq!(record.patient_id(), patient);
    assert_eq!(record.alarm.rule_id.0, "urgent-low");
    assert_eq!(record.alarm.priority, Priority::High);
    assert_eq!(record.alarm.kind, AlarmKind::Physiological);
    assert_eq!(record.alarm.care_plan_version, 1);
    assert_eq!(record.alarm.occurrences, 1);
    assert!(record.alarm.condition_active);
    match &record.alarm.state {
        AlarmState::Acknowledged { by, at } => {
            assert_eq!(*by, nora);
            assert_eq!(at.timestamp_millis(), 1_796_296_080_630);
        }
        other => panic!("expected acknowledged, found {other:?}"),
    }
    assert_eq!(record.updated, at(1_796_296_080_630));
    assert_eq!(record.escalation.levels, 1);
    assert_eq!(record.escalation.level, Some(1));
    assert_eq!(record.escalation.next, None);
    let listed = store
        .alarms(AlarmQuery {
            patients: vec![patient],
            states: vec!["acknowledged".into()],
            limit: 10,
            ..AlarmQuery::default()
        })
        .await
        .expect("alarms");
    assert_eq!(listed, std::slice::from_ref(&record));
    assert_eq!(
        store.unresolved_alarms().await.expect("unresolved"),
        std::slice::from_ref(&record)
    );
    let history = store.alarm_events(public_id).await.expect("alarm events");
    let kinds: Vec<AlarmEventKind> = history.iter().map(|event| event.event).collect();
    assert_eq!(
        kinds,
        [
            AlarmEventKind::Opened,
            AlarmEventKind::Notified,
            AlarmEventKind::Acknowledged
        ]
    );
    assert_eq!(history[0].actor, None);
    assert_eq!(
        history[1]
            .detail
            .as_ref()
            .and_then(|detail| detail.get("reason")),
        Some(&serde_json::json!("raised"))
    );
    assert_eq!(history[2].actor, Some(nora));
    assert_eq!(history[2].time, at(1_796_296_080_630));

    // A change made now appends a version-2 entry after the version-1 ones, and the
    // whole chain verifies.
    let newest_v1 = store
        .audit_events(AuditQuery {
            limit: 1,
            ..AuditQuery::default()
        })
        .await
        .expect("newest entry")
        .remove(0);
    assert_eq!(newest_v1.sequence, audit_rows);
    let now = at(1_796_296_200_000);
    let note = "treated with glucose tablets";
    let mut resolved = record.clone();
    resolved.alarm.resolve(nora, note, now).expect("resolve");
    resolved.updated = now;
    let audit = AuditEvent {
        time: now,
        actor: Some(nora),
        actor_label: "nora".into(),
        action: "alarms.resolve".into(),
        patient_id: Some(patient),
        outcome: AuditOutcome::Allowed,
        remote_addr: Some("127.0.0.1".into()),
        detail: Some(public_id.into()),
    };
    store
        .save_alarm_changes(
            vec![AlarmChange {
                alarm: resolved.clone(),
                events: vec![NewAlarmEvent {
                    time: now,
                    event: AlarmEventKind::Resolved,
                    actor: Some(nora),
                    detail: Some(serde_json::json!({ "by": "person", "note": note })),
                }],
                notifications: Vec::new(),
            }],
            None,
            vec![audit.clone()],
        )
        .await
        .expect("resolve the migrated alarm");
    let newest = store
        .audit_events(AuditQuery {
            limit: 1,
            ..AuditQuery::default()
        })
        .await
        .expect("newest entry")
        .remove(0);
    assert_eq!(newest.sequence, audit_rows + 1);
    let previous = hex::decode(&newest_v1.chain_hash).expect("hex");
    assert_eq!(
        newest.chain_hash,
        hex::encode(chain_hash(
            &wardline_store::testsuite::audit_key(),
            &previous,
            &audit
        )),
        "the new entry is linked with the keyed function after the last version-1 entry"
    );
    {
        let connection = rusqlite::Connection::open(&path).expect("reopen");
        let versions: Vec<(i64, i64)> = connection
            .prepare(
                "SELECT chain_version, count(*) FROM audit_event
                 GROUP BY chain_version ORDER BY chain_version",
            )
            .expect("prepare")
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(versions, [(1, audit_rows), (i64::from(CHAIN_VERSION), 1)]);
    }
    assert_eq!(
        store.verify_audit_chain().await.expect("chain verifies"),
        u64::try_from(audit_rows + 1).expect("count")
    );
    assert_eq!(
        store
            .alarm_by_public_id(public_id)
            .await
            .expect("alarm")
            .expect("exists"),
        resolved
    );
    assert!(
        store
            .unresolved_alarms()
            .await
            .expect("unresolved")
            .is_empty()
    );
    let kinds: Vec<AlarmEventKind> = store
        .alarm_events(public_id)
        .await
        .expect("alarm events")
        .iter()
        .map(|event| event.event)
        .collect();
    assert_eq!(kinds.last(), Some(&AlarmEventKind::Resolved));
    assert_eq!(kinds.len(), 4);
    drop(store);

    // Tampering with an entry version 4 wrote is still caught, and named.
    {
        let connection = rusqlite::Connection::open(&path).expect("reopen");
        connection
            .execute_batch("DROP TRIGGER audit_event_no_update")
            .expect("drop the trigger");
        let changed = connection
            .execute(
                "UPDATE audit_event SET detail = 'code 99504-3'
                 WHERE key = 12 AND chain_version = 1",
                [],
            )
            .expect("tamper");
        assert_eq!(changed, 1);
    }
    let store = SqliteStore::open(SqliteOptions::new(
        &path,
        wardline_store::testsuite::audit_key(),
    ))
    .await
    .expect("reopen migrated");
    match store.verify_audit_chain().await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.ends_with("at event 12"), "{message}");
        }
        other => panic!("tampering went unnoticed: {other:?}"),
    }
}

/// Version 6 cancels what a removed channel still had waiting: deliveries that earlier
/// versions kept retrying for a day after the channel was removed.
#[tokio::test]
async fn migrating_cancels_the_pending_deliveries_of_removed_channels() {
    let (_folder, path) = v4_database(|connection| {
        connection
            .execute_batch(
                "INSERT INTO notification_channel
                     (key, id, team_key, kind, target, minimal, created_ms, removed_ms)
                 VALUES (1, 'ch-live', 1, 'email', 'ward@example.org', 1, 1796296037610, NULL),
                        (2, 'ch-gone', 1, 'email', 'old@example.org', 1, 1796296037610, 1796296090000);
                 INSERT INTO notification
                     (idempotency_key, channel_key, alarm_key, payload, status, attempts,
                      created_ms, next_attempt_ms)
                 VALUES ('live', 1, 1, '{}', 'pending', 1, 1796296068855, 1796296100000),
                        ('gone', 2, 1, '{}', 'pending', 3, 1796296068855, 1796296100000),
                        ('gone-done', 2, 1, '{}', 'delivered', 1, 1796296068855, 1796296068855);",
            )
            .expect("deliveries as version 4 left them");
    });
    let store = SqliteStore::open(SqliteOptions::new(
        &path,
        wardline_store::testsuite::audit_key(),
    ))
    .await
    .expect("open and migrate");
    let all = store
        .notifications(NotificationQuery {
            limit: 10,
            ..NotificationQuery::default()
        })
        .await
        .expect("notifications");
    let mut statuses: Vec<(&str, DeliveryStatus)> = all
        .iter()
        .map(|notification| (notification.idempotency_key.as_str(), notification.status))
        .collect();
    statuses.sort_unstable_by_key(|(key, _)| *key);
    assert_eq!(
        statuses,
        [
            ("gone", DeliveryStatus::Cancelled),
            ("gone-done", DeliveryStatus::Delivered),
            ("live", DeliveryStatus::Pending)
        ]
    );
    let due = store
        .claim_due_outbox(
            Utc.timestamp_millis_opt(1796296200000)
                .single()
                .expect("time"),
            10,
            Utc.timestamp_millis_opt(1796296260000)
                .single()
                .expect("time"),
        )
        .await
        .expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].idempotency_key, "live");
}

/// Version 7 finds each device's newest stored reading, so that an assignment cannot be
/// backdated over what version 4 stored.
#[tokio::test]
async fn migrating_keeps_each_devices_newest_reading_against_backdating() {
    let (_folder, path) = v4_database(|_| {});
    let store = SqliteStore::open(SqliteOptions::new(
        &path,
        wardline_store::testsuite::audit_key(),
    ))
    .await
    .expect("open and migrate");
    let device = DeviceId::parse("dev_693284aa9f984f6c").expect("device id");
    let patient: PatientId = "fb78653d-5de6-4ac7-b733-011c48281f37"
        .parse()
        .expect("patient id");
    let at = |ms: i64| Utc.timestamp_millis_opt(ms).single().expect("time");
    let audit = || AuditEvent {
        time: at(1796296100000),
        actor: None,
        actor_label: "cli".into(),
        action: "devices.assign".into(),
        patient_id: Some(patient),
        outcome: AuditOutcome::Allowed,
        remote_addr: None,
        detail: None,
    };
    // After the assignment's start, before the newest reading (1796296068000).
    match store
        .assign_device(&device, patient, at(1796296060000), audit())
        .await
    {
        Err(StoreError::Invalid(message)) => {
            assert!(message.contains("newest reading"), "{message}")
        }
        other => panic!("a backdated assignment was accepted: {other:?}"),
    }
    store
        .assign_device(&device, patient, at(1796296069000), audit())
        .await
        .expect("an assignment after the newest reading");
}

/// A database as version 4 wrote it (the fixture), with `then` applied before any
/// migration; the folder lives as long as the returned guard.
fn v4_database(
    then: impl FnOnce(&rusqlite::Connection),
) -> (tempfile::TempDir, std::path::PathBuf) {
    let folder = tempfile::tempdir().expect("temp dir");
    let path = folder.path().join("wardline.db");
    let connection = rusqlite::Connection::open(&path).expect("create v4 database");
    connection
        .execute_batch(FIXTURE_V4)
        .expect("fixture builds");
    then(&connection);
    (folder, path)
}
