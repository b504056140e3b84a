//! The engine driven step by step against a real SQLite store, with a clock the tests
//! move: durations, escalation, snooze, silence and restarts without waiting.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use wardline_alerting::{CarePlan, PatientBaseline, Program};
use wardline_domain::{CareTeamId, DeviceId, DeviceKind, ObservationCode, PatientId, Reading};
use wardline_store::prelude::*;
use wardline_store::sqlite::{SqliteOptions, SqliteStore};
use wardline_store::{
    AlarmEventKind, AlarmQuery, AlarmRecord, AuditEvent, AuditOutcome, CarePlanVersionRecord,
    IngestItem, IngestPayload, InitialAssignment, NewCareTeam, NewDevice, NewPatient,
};

use super::*;
use crate::clock::ManualClock;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap()
}

fn at(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

fn audit(action: &str) -> AuditEvent {
    AuditEvent {
        time: t0(),
        actor: None,
        actor_label: "test".into(),
        action: action.into(),
        patient_id: None,
        outcome: AuditOutcome::Allowed,
        remote_addr: None,
        detail: None,
    }
}

struct Ward {
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    patient: PatientId,
    cgm: DeviceId,
    _folder: tempfile::TempDir,
}

/// A patient, from an hour before `t0`, with a CGM of theirs.
async fn patient_with_cgm(store: &SqliteStore, name: &str, cgm: &DeviceId) -> PatientId {
    let patient = PatientId::random();
    store
        .create_patient(
            NewPatient {
                id: patient,
                display_name: name.into(),
                birth_date: None,
                mrn: None,
                created: at(-60),
            },
            audit("patients.create"),
        )
        .await
        .unwrap();
    store
        .enrol_device(
            NewDevice {
                id: cgm.clone(),
                kind: DeviceKind::Cgm,
                model: "G7".into(),
                serial: cgm.to_string(),
                secret_hash: [1; 32],
                created: at(-60),
            },
            Some(InitialAssignment {
                patient_id: patient,
                from: at(-60),
            }),
            audit("devices.enrol"),
        )
        .await
        .unwrap();
    patient
}

/// A patient on the diabetes programme from an hour before `t0`, with a CGM, on a care
/// team; the clock at `t0`.
async fn ward() -> Ward {
    let folder = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(SqliteOptions::new(
            folder.path().join("wardline.db"),
            wardline_store::AuditKey::generate().unwrap(),
        ))
        .await
        .unwrap(),
    );
    let cgm = DeviceId::parse("cgm-001").unwrap();
    let patient = patient_with_cgm(&store, "Pat", &cgm).await;
    let team = CareTeamId::random();
    store
        .create_care_team(
            NewCareTeam {
                id: team,
                name: "Ward".into(),
                created: at(-60),
            },
            audit("care_teams.create"),
        )
        .await
        .unwrap();
    store
        .add_care_team_patient(team, patient, audit("care_teams.add_patient"))
        .await
        .unwrap();
    let plan = CarePlan::from_program(
        patient,
        Program::Diabetes,
        &PatientBaseline::default(),
        at(-60),
    );
    store
        .append_care_plan_version(
            CarePlanVersionRecord {
                patient_id: patient,
                version: 1,
                effective: at(-60),
                author: None,
                author_label: "test".into(),
                reason: "enrolled".into(),
                plan,
                old_rule: None,
                new_rule: None,
            },
            audit("care_plan.assign"),
        )
        .await
        .unwrap();
    Ward {
        store,
        clock: Arc::new(ManualClock::new(t0())),
        patient,
        cgm,
        _folder: folder,
    }
}

/// Every batch is committed with its checkpoint, as if the interval had passed.
fn settings() -> AlarmSettings {
    AlarmSettings {
        checkpoint_interval: std::time::Duration::ZERO,
        ..AlarmSettings::default()
    }
}

impl Ward {
    async fn engine(&self, settings: AlarmSettings) -> Engine {
        let (events, _) = broadcast::channel(1024);
        let store: Arc<dyn Store> = self.store.clone();
        let mut engine = Engine::new(
            store,
            settings,
            Arc::new(crate::Sealer::from_key(&[3u8; 32]).unwrap()),
            self.clock.clone(),
            events,
            Arc::new(Notify::new()),
        );
        engine.load().await.unwrap();
        engine
    }

    /// A CGM reading at `minute`, stored as ingest would; the clock moves to it.
    async fn glucose(&self, seq: i64, minute: i64, value: f64) {
        self.store
            .ingest(vec![IngestItem {
                device_id: self.cgm.clone(),
                received: at(minute),
                payload: IngestPayload::Readings(vec![Reading {
                    seq,
                    code: ObservationCode::GlucoseCgm,
                    value,
                    original: None,
                    effective: at(minute),
                }]),
            }])
            .await
            .unwrap();
        self.clock.set(at(minute));
    }

    async fn alarms(&self) -> Vec<AlarmRecord> {
        self.store
            .alarms(AlarmQuery {
                patients: vec![self.patient],
                limit: 100,
                ..AlarmQuery::default()
            })
            .await
            .unwrap()
    }

    async fn alarms_of(&self, rule: &str) -> Vec<AlarmRecord> {
        self.alarms()
            .await
            .into_iter()
            .filter(|record| record.alarm.rule_id.0 == rule)
            .collect()
    }

    async fn history(&self, record: &AlarmRecord) -> Vec<AlarmEventKind> {
        self.store
            .alarm_events(&record.public_id)
            .await
            .unwrap()
            .into_iter()
            .map(|event| event.event)
            .collect()
    }
}

async fn drain(engine: &mut Engine) {
    while engine.evaluate_next_batch().await.unwrap() > 0 {}
}

#[tokio::test]
async fn a_low_held_for_its_duration_is_raised_once_at_the_reading_that_completes_it() {
    let ward = ward().await;
    let mut engine = ward.engine(settings()).await;
    for (seq, minute) in [(1, 0), (2, 5), (3, 10)] {
        ward.glucose(seq, minute, 65.0).await;
        drain(&mut engine).await;
        assert!(ward.alarms_of("low").await.is_empty(), "minute {minute}");
    }
    ward.glucose(4, 15, 65.0).await;
    drain(&mut engine).await;
    let low = ward.alarms_of("low").await;
    assert_eq!(low.len(), 1);
    assert_eq!(low[0].alarm.raised_at, at(15));
    ward.glucose(5, 20, 64.0).await;
    drain(&mut engine).await;
    assert_eq!(
        ward.alarms_of("low").await.len(),
        1,
        "one alarm, not a storm"
    );
}

/// `kill -9` half-way through the 15 minutes, before and after the evaluator's state was
/// checkpointed: either way the alarm comes at minute 15, once.
#[tokio::test]
async fn a_restart_half_way_through_a_duration_raises_once_at_the_right_reading() {
    for checkpointed in [true, false] {
        let ward = ward().await;
        let mut first = ward
            .engine(if checkpointed {
                settings()
            } else {
                AlarmSettings {
                    checkpoint_interval: std::time::Duration::from_secs(3600),
                    ..AlarmSettings::default()
                }
            })
            .await;
        ward.glucose(1, 0, 65.0).await;
        ward.glucose(2, 5, 66.0).await;
        drain(&mut first).await;
        assert_eq!(first.evaluated_readings, 2);
        drop(first);
        // Readings keep arriving while the engine is down.
        ward.glucose(3, 10, 64.0).await;
        let mut second = ward.engine(settings()).await;
        drain(&mut second).await;
        assert_eq!(
            second.evaluated_readings,
            if checkpointed { 1 } else { 3 },
            "resumes at its checkpoint"
        );
        assert!(ward.alarms_of("low").await.is_empty(), "only 10 min so far");
        ward.glucose(4, 15, 65.0).await;
        drain(&mut second).await;
        let low = ward.alarms_of("low").await;
        assert_eq!(low.len(), 1, "checkpointed: {checkpointed}");
        assert_eq!(
            low[0].alarm.raised_at,
            at(15),
            "checkpointed: {checkpointed}"
        );
        assert_eq!(ward.history(&low[0]).await[0], AlarmEventKind::Opened);
    }
}

#[tokio::test]
async fn an_alarm_committed_before_a_crash_is_not_raised_again() {
    let ward = ward().await;
    let mut first = ward
        .engine(AlarmSettings {
            checkpoint_interval: std::time::Duration::from_secs(3600),
            ..AlarmSettings::default()
        })
        .await;
    ward.glucose(1, 0, 50.0).await;
    drain(&mut first).await;
    assert_eq!(ward.alarms_of("urgent-low").await.len(), 1);
    drop(first);
    ward.glucose(2, 5, 48.0).await;
    let mut second = ward.engine(settings()).await;
    drain(&mut second).await;
    assert_eq!(
        (second.replayed_readings, second.evaluated_readings),
        (1, 1),
        "the alarm's commit held its position in the log; the reading before it is replayed"
    );
    let urgent = ward.alarms_of("urgent-low").await;
    assert_eq!(urgent.len(), 1);
    let opened = ward
        .history(&urgent[0])
        .await
        .into_iter()
        .filter(|event| *event == AlarmEventKind::Opened)
        .count();
    assert_eq!(opened, 1);
}

/// An alarm's commit carries the position it was evaluated at, not its patient's rule
/// state; after `kill -9` the readings since the last resume point are replayed into the
/// evaluator, so it knows the condition is on and clears the alarm when it ends, and
/// nothing is raised or notified again.
#[tokio::test]
async fn after_a_restart_the_replayed_evaluator_clears_the_alarm_raised_before_it() {
    let ward = ward().await;
    let hourly = AlarmSettings {
        checkpoint_interval: std::time::Duration::from_secs(3600),
        ..AlarmSettings::default()
    };
    let mut first = ward.engine(hourly.clone()).await;
    let states_at_start = ward.store.monitor_states().await.unwrap();
    let resume_at_start = ward.store.checkpoint(CONSUMER).await.unwrap();
    ward.glucose(1, 0, 50.0).await;
    drain(&mut first).await;
    let urgent = ward.alarms_of("urgent-low").await;
    assert_eq!(urgent.len(), 1);
    assert_eq!(
        ward.store.monitor_states().await.unwrap(),
        states_at_start,
        "the alarm's commit carried no rule state"
    );
    assert_eq!(
        ward.store.checkpoint(CONSUMER).await.unwrap(),
        resume_at_start
    );
    assert_ne!(
        ward.store
            .checkpoint(&applied_marker(CONSUMER))
            .await
            .unwrap(),
        resume_at_start,
        "but the position it was evaluated at"
    );
    let history_before = ward.history(&urgent[0]).await;
    drop(first);

    let mut second = ward.engine(hourly).await;
    drain(&mut second).await;
    assert_eq!(second.replayed_readings, 1);
    assert_eq!(
        ward.history(&urgent[0]).await,
        history_before,
        "nothing raised or notified again"
    );
    ward.glucose(2, 5, 120.0).await;
    drain(&mut second).await;
    let cleared = ward.alarms_of("urgent-low").await;
    assert_eq!(cleared.len(), 1);
    assert!(
        cleared[0].alarm.condition_cleared_at.is_some(),
        "the replayed evaluator knew the condition was on, and saw it end: {:?}",
        ward.history(&cleared[0]).await
    );
    assert_eq!(second.evaluated_readings, 1);

    // A third start after the second's resume point replays nothing.
    second.flush(true).await;
    drop(second);
    let third = ward.engine(settings()).await;
    assert_eq!(third.replay_through, None);
}

fn notified(history: &[AlarmEventKind]) -> usize {
    history
        .iter()
        .filter(|event| **event == AlarmEventKind::Notified)
        .count()
}

#[tokio::test]
async fn a_high_alarm_repeats_until_acknowledged() {
    let ward = ward().await;
    let mut engine = ward.engine(settings()).await;
    ward.glucose(1, 0, 50.0).await;
    drain(&mut engine).await;
    let urgent = ward.alarms_of("urgent-low").await.remove(0);
    assert_eq!(
        notified(&ward.history(&urgent).await),
        1,
        "notified when raised"
    );
    assert_eq!(urgent.next_deadline(), Some(at(5)), "repeats after 5 min");
    ward.clock.set(at(4));
    engine.tick().await;
    assert_eq!(notified(&ward.history(&urgent).await), 1, "not yet");
    ward.clock.set(at(5));
    engine.tick().await;
    assert_eq!(
        notified(&ward.history(&urgent).await),
        2,
        "round 2 at minute 5"
    );
    let nurse = wardline_domain::UserId::random();
    let acknowledged = engine
        .act(
            urgent.clone(),
            nurse,
            AlarmAction::Acknowledge,
            audit("alarms.acknowledge"),
        )
        .await
        .unwrap();
    assert_eq!(acknowledged.alarm.state.name(), "acknowledged");
    assert_eq!(acknowledged.next_deadline(), None);
    for minute in [10, 15, 60] {
        ward.clock.set(at(minute));
        engine.tick().await;
    }
    let history = ward.history(&urgent).await;
    assert_eq!(notified(&history), 2, "acknowledging stops it: {history:?}");
    assert!(history.contains(&AlarmEventKind::Acknowledged));
    let again = engine
        .act(
            urgent,
            nurse,
            AlarmAction::Acknowledge,
            audit("alarms.acknowledge"),
        )
        .await;
    assert!(matches!(again, Err(AlarmsError::Alerting(_))), "{again:?}");
}

#[tokio::test]
async fn a_snooze_ends_and_the_alarm_notifies_again() {
    let ward = ward().await;
    let mut engine = ward.engine(settings()).await;
    ward.glucose(1, 0, 50.0).await;
    drain(&mut engine).await;
    let urgent = ward.alarms_of("urgent-low").await.remove(0);
    let nurse = wardline_domain::UserId::random();
    let snoozed = engine
        .act(
            urgent.clone(),
            nurse,
            AlarmAction::Snooze { secs: 120 },
            audit("alarms.snooze"),
        )
        .await
        .unwrap();
    assert_eq!(snoozed.alarm.state.name(), "snoozed");
    ward.clock.set(at(1));
    engine.tick().await;
    assert_eq!(
        ward.alarms_of("urgent-low").await[0].alarm.state.name(),
        "snoozed"
    );
    ward.clock.set(at(2));
    engine.tick().await;
    let now = ward.alarms_of("urgent-low").await.remove(0);
    assert_eq!(now.alarm.state.name(), "open");
    let history = ward.history(&now).await;
    assert!(
        history.contains(&AlarmEventKind::SnoozeExpired),
        "{history:?}"
    );
    assert_eq!(
        notified(&history),
        2,
        "notified again when the snooze ended"
    );
    let too_long = engine
        .act(
            now,
            nurse,
            AlarmAction::Snooze { secs: 24 * 3600 },
            audit("alarms.snooze"),
        )
        .await;
    assert!(too_long.is_err(), "a high alarm snoozes 30 min at most");
}

#[tokio::test]
async fn a_silent_device_raises_a_technical_alarm_after_twenty_minutes() {
    let ward = ward().await;
    let mut engine = ward.engine(settings()).await;
    ward.glucose(1, 0, 120.0).await;
    drain(&mut engine).await;
    ward.clock.set(at(19));
    engine.tick().await;
    assert!(ward.alarms_of("cgm-silent").await.is_empty());
    ward.clock.set(at(21));
    engine.tick().await;
    let silent = ward.alarms_of("cgm-silent").await;
    assert_eq!(silent.len(), 1);
    assert_eq!(
        silent[0].alarm.kind,
        wardline_alerting::AlarmKind::Technical
    );
    // The device speaks again: the condition clears and the alarm resolves itself.
    ward.glucose(2, 22, 118.0).await;
    drain(&mut engine).await;
    assert_eq!(
        ward.alarms_of("cgm-silent").await[0].alarm.state.name(),
        "resolved"
    );
}

/// Ingest far ahead of a slow engine: every reading is still evaluated, in order, and the
/// one low among thousands raises its alarm once.
#[tokio::test]
async fn a_slow_engine_falls_behind_and_evaluates_everything() {
    let ward = ward().await;
    let mut engine = ward
        .engine(AlarmSettings {
            batch_size: 64,
            evaluation_delay: std::time::Duration::from_micros(20),
            ..settings()
        })
        .await;
    let mut seq = 0;
    for message in 0..50 {
        let readings: Vec<Reading> = (0..100)
            .map(|i| {
                seq += 1;
                let second = message * 100 + i;
                Reading {
                    seq,
                    code: ObservationCode::GlucoseCgm,
                    value: if second == 2_345 { 45.0 } else { 130.0 },
                    original: None,
                    effective: t0() + Duration::seconds(second),
                }
            })
            .collect();
        ward.store
            .ingest(vec![IngestItem {
                device_id: ward.cgm.clone(),
                received: t0(),
                payload: IngestPayload::Readings(readings),
            }])
            .await
            .unwrap();
    }
    ward.clock.set(t0() + Duration::seconds(5000));
    drain(&mut engine).await;
    assert_eq!(
        engine.evaluated_readings,
        ward.store.count_observations().await.unwrap()
    );
    assert_eq!(engine.evaluated_readings, 5000);
    let urgent = ward.alarms_of("urgent-low").await;
    assert_eq!(urgent.len(), 1);
}

/// A patient without a care plan has no rule to meet: the engine passes over their
/// readings without decoding them, counts them as evaluated, and raises nothing; once a
/// plan is assigned, their next readings are evaluated against it.
#[tokio::test]
async fn readings_without_a_care_plan_count_as_evaluated_until_a_plan_arrives() {
    let ward = ward().await;
    let mut engine = ward.engine(settings()).await;
    let other_cgm = DeviceId::parse("cgm-002").unwrap();
    let other = patient_with_cgm(&ward.store, "Other", &other_cgm).await;
    let lows = |from: i64, minutes: std::ops::Range<i64>| IngestItem {
        device_id: other_cgm.clone(),
        received: at(minutes.end),
        payload: IngestPayload::Readings(
            minutes
                .clone()
                .map(|minute| Reading {
                    seq: from + minute,
                    code: ObservationCode::GlucoseCgm,
                    value: 45.0,
                    original: None,
                    effective: at(minute),
                })
                .collect(),
        ),
    };
    ward.store.ingest(vec![lows(0, 0..30)]).await.unwrap();
    ward.glucose(1, 30, 130.0).await;
    drain(&mut engine).await;
    assert_eq!(engine.evaluated_readings, 31, "all counted");
    assert!(
        engine.evaluated_readings == ward.store.count_observations().await.unwrap(),
        "every stored reading counted"
    );
    let other_alarms = || async {
        ward.store
            .alarms(AlarmQuery {
                patients: vec![other],
                limit: 100,
                ..AlarmQuery::default()
            })
            .await
            .unwrap()
    };
    assert!(other_alarms().await.is_empty(), "no plan, no alarm");
    // A batch of unwatched readings only still moves the stored cursor, so a restart
    // does not read them again.
    ward.store.ingest(vec![lows(200, 30..31)]).await.unwrap();
    drain(&mut engine).await;
    assert_eq!(engine.evaluated_readings, 32);
    assert_eq!(
        ward.store.checkpoint(CONSUMER).await.unwrap().as_ref(),
        Some(&engine.cursor)
    );

    ward.store
        .append_care_plan_version(
            CarePlanVersionRecord {
                patient_id: other,
                version: 1,
                effective: at(30),
                author: None,
                author_label: "test".into(),
                reason: "enrolled".into(),
                plan: CarePlan::from_program(
                    other,
                    Program::Diabetes,
                    &PatientBaseline::default(),
                    at(30),
                ),
                old_rule: None,
                new_rule: None,
            },
            audit("care_plan.assign"),
        )
        .await
        .unwrap();
    engine.adopt_new_care_plans().await.unwrap();
    ward.store.ingest(vec![lows(100, 31..33)]).await.unwrap();
    ward.clock.set(at(33));
    drain(&mut engine).await;
    assert_eq!(engine.evaluated_readings, 34);
    let raised: Vec<String> = other_alarms()
        .await
        .into_iter()
        .map(|record| record.alarm.rule_id.0)
        .collect();
    assert!(
        raised.iter().any(|rule| rule == "urgent-low"),
        "the plan's urgent low is raised once the patient is watched: {raised:?}"
    );
}

/// A CGM that uses a seq again for another reading (its counter went back) is refused,
/// and the fault the store records in the same commit raises the care plan's device-fault
/// alarm, a technical one.
#[tokio::test]
async fn a_reused_seq_raises_the_device_fault_alarm() {
    let ward = ward().await;
    let mut engine = ward.engine(settings()).await;
    ward.glucose(1, 0, 120.0).await;
    drain(&mut engine).await;
    assert!(ward.alarms_of("cgm-fault").await.is_empty());
    let outcome = ward
        .store
        .ingest(vec![IngestItem {
            device_id: ward.cgm.clone(),
            received: at(1),
            payload: IngestPayload::Readings(vec![Reading {
                seq: 1,
                code: ObservationCode::GlucoseCgm,
                value: 60.0,
                original: None,
                effective: at(1),
            }]),
        }])
        .await
        .unwrap();
    assert!(
        matches!(
            outcome[0],
            wardline_store::IngestOutcome::SeqConflict { seq: 1, .. }
        ),
        "{outcome:?}"
    );
    ward.clock.set(at(1));
    drain(&mut engine).await;
    let fault = ward.alarms_of("cgm-fault").await;
    assert_eq!(fault.len(), 1, "{:?}", ward.alarms().await);
    assert_eq!(fault[0].alarm.kind, wardline_alerting::AlarmKind::Technical);
    assert!(
        ward.alarms_of("low").await.is_empty(),
        "the refused 60 mg/dL is not a reading"
    );
}
