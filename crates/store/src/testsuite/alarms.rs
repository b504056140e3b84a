//! Checks of [`AlarmStore`](crate::AlarmStore).

use serde_json::json;
use wardline_alerting::{
    Alarm, AlarmKind, AlarmSignal, CarePlan, ConditionKey, EscalationPolicy, EscalationStep,
    PatientBaseline, Priority, Program, Recipient, RuleId, escalation_status,
};
use wardline_domain::{CareTeamId, PatientId};

use super::{at, audit, patient};
use crate::*;

fn version(patient_id: PatientId, version: u32, minute: i64) -> CarePlanVersionRecord {
    let mut plan = CarePlan::from_program(
        patient_id,
        Program::Diabetes,
        &PatientBaseline::default(),
        at(minute),
    );
    plan.version = version;
    let changed = plan.rules[0].clone();
    CarePlanVersionRecord {
        patient_id,
        version,
        effective: at(minute),
        author: None,
        author_label: "cli".into(),
        reason: "enrolled".into(),
        plan,
        old_rule: None,
        new_rule: (version > 1).then_some(changed),
    }
}

pub async fn care_plans_are_versioned(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let append = |record| store.append_care_plan_version(record, audit("care_plan.assign"));
    append(version(alice, 1, 0)).await.expect("v1");
    append(version(alice, 2, 10)).await.expect("v2");
    append(version(bob, 1, 5)).await.expect("bob v1");
    assert!(
        matches!(
            append(version(alice, 2, 20)).await,
            Err(StoreError::Conflict { .. })
        ),
        "versions are numbered once"
    );
    assert!(matches!(
        append(version(PatientId::random(), 1, 0)).await,
        Err(StoreError::NotFound { .. })
    ));
    let versions = store.care_plan_versions(alice).await.expect("versions");
    assert_eq!(versions, vec![version(alice, 1, 0), version(alice, 2, 10)]);
    assert!(versions[1].new_rule.is_some());
    let mut current = store.current_care_plans().await.expect("current");
    current.sort_by_key(|record| record.effective);
    assert_eq!(current, vec![version(bob, 1, 5), version(alice, 2, 10)]);
}

fn raised(patient_id: PatientId, rule: &str, minute: i64) -> Alarm {
    Alarm::from_signal(&AlarmSignal::Raise {
        condition: ConditionKey {
            patient_id,
            rule_id: RuleId::new(rule),
        },
        priority: Priority::High,
        kind: AlarmKind::Physiological,
        message: "Low glucose: 52 mg/dL".into(),
        rule_id: RuleId::new(rule),
        care_plan_version: 1,
        resolve_on_clear: false,
        at: at(minute),
    })
    .expect("a raise opens an alarm")
}

fn policy(team: CareTeamId) -> EscalationPolicy {
    EscalationPolicy {
        steps: vec![EscalationStep {
            after_secs: 0,
            notify: vec![Recipient::CareTeam { care_team_id: team }],
        }],
        repeat_after_secs: Some(300),
        max_rounds: 3,
    }
}

fn record(alarm: &Alarm, public_id: &str, minute: i64) -> AlarmRecord {
    AlarmRecord {
        public_id: public_id.into(),
        escalation: escalation_status(alarm, &policy(CareTeamId::random())),
        alarm: alarm.clone(),
        updated: at(minute),
    }
}

fn change(record: AlarmRecord, event: AlarmEventKind, minute: i64) -> AlarmChange {
    AlarmChange {
        alarm: record,
        events: vec![NewAlarmEvent {
            time: at(minute),
            event,
            actor: None,
            detail: Some(json!({"minute": minute})),
        }],
        notifications: vec![],
    }
}

/// The alarm engine's stored resume and applied positions.
async fn positions(store: &dyn Store) -> (EventCursor, EventCursor) {
    let resume = store.checkpoint("alarms").await.expect("resume");
    let applied = store
        .checkpoint(&applied_marker("alarms"))
        .await
        .expect("applied");
    (
        resume.expect("a resume position"),
        applied.expect("an applied position"),
    )
}

pub async fn alarms_with_history_and_checkpoint(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let nurse = store
        .create_user(
            super::user("nora", wardline_domain::Role::Nurse, None),
            audit("users.create"),
        )
        .await
        .expect("nurse");
    let low = raised(alice, "low", 3);
    let opened = record(&low, "a1", 3);
    assert!(opened.next_deadline().is_some(), "an open alarm escalates");
    let tail = store.event_tail().await.expect("tail");
    let checkpoint = EvaluationCheckpoint {
        consumer: "alarms".into(),
        applied: tail.clone(),
        resume: Some(ResumePoint {
            cursor: tail.clone(),
            monitors: vec![(alice, json!({"rules": 1}))],
        }),
        saved: at(3),
    };
    store
        .save_alarm_changes(
            vec![change(opened.clone(), AlarmEventKind::Opened, 3)],
            Some(checkpoint.clone()),
            vec![],
        )
        .await
        .expect("save alarm");
    assert_eq!(positions(store).await, (tail.clone(), tail.clone()));
    assert_eq!(
        store.monitor_states().await.expect("states"),
        vec![(alice, json!({"rules": 1}))]
    );
    // A second unresolved alarm of the same condition is refused, and with it the
    // checkpoint of the same commit.
    let twin = record(&raised(alice, "low", 4), "a2", 4);
    let refused = store
        .save_alarm_changes(
            vec![change(twin, AlarmEventKind::Opened, 4)],
            Some(EvaluationCheckpoint {
                resume: Some(ResumePoint {
                    cursor: tail.clone(),
                    monitors: vec![(alice, json!({"rules": 2}))],
                }),
                ..checkpoint.clone()
            }),
            vec![audit("alarms.twin")],
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "{refused:?}"
    );
    assert_eq!(
        store.monitor_states().await.expect("states"),
        vec![(alice, json!({"rules": 1}))],
        "nothing of a refused commit is kept"
    );
    // An alarm committed with the position it was evaluated at moves only that position:
    // the resume cursor and the evaluators' state stay where they were.
    let bobs = record(&raised(bob, "low", 5), "b1", 5);
    let bobs_cgm = super::assigned_device(store, "cgm-bob", bob).await;
    store
        .ingest(vec![super::readings(
            &bobs_cgm,
            vec![super::glucose(1, 5, 61.0)],
        )])
        .await
        .expect("bob's reading");
    let later = store.event_tail().await.expect("tail");
    assert_ne!(later, tail);
    store
        .save_alarm_changes(
            vec![change(bobs, AlarmEventKind::Opened, 5)],
            Some(EvaluationCheckpoint {
                consumer: "alarms".into(),
                applied: later.clone(),
                resume: None,
                saved: at(5),
            }),
            vec![],
        )
        .await
        .expect("bob's alarm");
    assert_eq!(positions(store).await, (tail.clone(), later));
    assert_eq!(
        store.monitor_states().await.expect("states"),
        vec![(alice, json!({"rules": 1}))]
    );
    let unresolved = store.unresolved_alarms().await.expect("unresolved");
    assert_eq!(unresolved.len(), 2);
    assert_eq!(unresolved[0], opened, "typed and whole, oldest first");

    // Acknowledged, then resolved: the history grows, the alarm is updated in place.
    let mut acknowledged = low.clone();
    acknowledged
        .acknowledge(nurse.id, at(6))
        .expect("acknowledge");
    let mut ack_change = change(
        record(&acknowledged, "a1", 6),
        AlarmEventKind::Acknowledged,
        6,
    );
    ack_change.events[0].actor = Some(nurse.id);
    let mut resolved = acknowledged.clone();
    resolved
        .resolve(nurse.id, "treated with juice", at(9))
        .expect("resolve");
    store
        .save_alarm_changes(
            vec![
                ack_change,
                change(record(&resolved, "a1", 9), AlarmEventKind::Resolved, 9),
            ],
            None,
            vec![
                crate::AuditEvent {
                    patient_id: Some(alice),
                    ..audit("alarms.acknowledge")
                },
                crate::AuditEvent {
                    patient_id: Some(alice),
                    ..audit("alarms.resolve")
                },
            ],
        )
        .await
        .expect("acknowledge and resolve");
    let unresolved = store.unresolved_alarms().await.expect("unresolved");
    assert_eq!(unresolved.len(), 1);
    assert_eq!(unresolved[0].patient_id(), bob);
    let found = store
        .alarms(AlarmQuery {
            patients: vec![alice],
            states: vec!["resolved".into()],
            limit: 10,
            ..AlarmQuery::default()
        })
        .await
        .expect("alarms");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].alarm, resolved);
    assert!(
        found[0].next_deadline().is_none(),
        "a resolved alarm escalates no more"
    );
    assert!(
        store
            .alarms(AlarmQuery {
                patients: vec![alice],
                states: vec!["open".into()],
                limit: 10,
                ..AlarmQuery::default()
            })
            .await
            .expect("alarms")
            .is_empty()
    );
    assert!(
        store
            .alarms(AlarmQuery {
                patients: vec![],
                limit: 10,
                ..AlarmQuery::default()
            })
            .await
            .expect("alarms")
            .is_empty(),
        "no patients, no alarms"
    );
    let both = store
        .alarms(AlarmQuery {
            patients: vec![alice, bob],
            raised_from: Some(at(4)),
            limit: 10,
            ..AlarmQuery::default()
        })
        .await
        .expect("alarms");
    assert_eq!(both.len(), 1, "raised from minute 4: Bob's only");
    // Alarms raised at the same moment (one reading beyond two limits) come in one
    // order every time, the later stored first, so that pages of alarms can end between
    // them and go on where they ended.
    store
        .save_alarm_changes(
            vec![
                change(
                    record(&raised(bob, "high", 7), "b2", 7),
                    AlarmEventKind::Opened,
                    7,
                ),
                change(
                    record(&raised(bob, "urgent-high", 7), "b3", 7),
                    AlarmEventKind::Opened,
                    7,
                ),
            ],
            None,
            vec![],
        )
        .await
        .expect("two alarms at once");
    let tied: Vec<String> = store
        .alarms(AlarmQuery {
            patients: vec![bob],
            raised_from: Some(at(7)),
            limit: 10,
            ..AlarmQuery::default()
        })
        .await
        .expect("alarms")
        .into_iter()
        .map(|record| record.public_id)
        .collect();
    assert_eq!(tied, ["b3", "b2"], "the later stored first");
    let history = store.alarm_events("a1").await.expect("events");
    let kinds: Vec<AlarmEventKind> = history.iter().map(|event| event.event).collect();
    assert_eq!(
        kinds,
        [
            AlarmEventKind::Opened,
            AlarmEventKind::Acknowledged,
            AlarmEventKind::Resolved
        ]
    );
    assert_eq!(history[1].actor, Some(nurse.id));
    assert_eq!(history[2].detail, Some(json!({"minute": 9})));
    let stored = |public_id: &'static str| async move {
        store
            .alarm_by_public_id(public_id)
            .await
            .expect("by id")
            .map(|record| record.alarm)
    };
    assert_eq!(stored("a1").await, Some(resolved.clone()));
    assert!(stored("zz").await.is_none());
    // A resolved alarm stays resolved: an open alarm under its id (a new episode given
    // the same id by a worker whose clock is behind) is refused, not written over it.
    assert!(matches!(
        store
            .save_alarm_changes(
                vec![change(record(&low, "a1", 10), AlarmEventKind::Opened, 10)],
                None,
                vec![]
            )
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        stored("a1").await,
        Some(resolved),
        "still the resolved alarm"
    );
    let audited: Vec<String> = store
        .audit_events(AuditQuery {
            patient_id: Some(alice),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("audit")
        .into_iter()
        .map(|event| event.action)
        .collect();
    assert_eq!(
        audited,
        ["alarms.resolve", "alarms.acknowledge"],
        "the people's actions, committed with their changes; nothing of the refused twin"
    );
}

pub async fn escalation_policies_per_team(store: &dyn Store) {
    let team = store
        .create_care_team(
            NewCareTeam {
                id: CareTeamId::random(),
                name: "Ward 7".into(),
                created: at(0),
            },
            audit("care_teams.create"),
        )
        .await
        .expect("team");
    assert!(store.escalation_policies().await.expect("none").is_empty());
    let set = |policy| {
        store.set_escalation_policy(team.id, policy, at(1), audit("escalation_policy.set"))
    };
    set(policy(team.id)).await.expect("policy");
    let mut shorter = policy(team.id);
    shorter.max_rounds = 1;
    set(shorter.clone()).await.expect("replace");
    assert_eq!(
        store.escalation_policies().await.expect("policies"),
        vec![(team.id, shorter.clone())]
    );
    assert!(matches!(
        store
            .set_escalation_policy(
                CareTeamId::random(),
                shorter,
                at(1),
                audit("escalation_policy.set")
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
}
