//! Alarm lifecycle, de-duplication on the board, and escalation timing.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use wardline_alerting::alarm::EscalationCause;
use wardline_alerting::{
    AlarmBoard, AlarmSignal, AlarmState, AlarmUpdate, AlertingError, EscalationPolicy,
    EscalationStep, NotificationReason, Recipient, Resolution, due_notifications,
    escalation_status, next_deadline,
};
use wardline_domain::{CareTeamId, UserId};

/// Urgent low raised at minute 0 (latching), then the CGM's other signals ignored.
fn urgent_low_board() -> (
    AlarmBoard,
    wardline_alerting::AlarmId,
    wardline_alerting::PatientMonitor,
) {
    let mut monitor = diabetes_monitor();
    let mut board = AlarmBoard::new();
    let signals = glucose(&mut monitor, 0.0, 50.0);
    let AlarmUpdate::Opened { alarm_id } = board.apply(&signals[0]) else {
        panic!("opened");
    };
    (board, alarm_id, monitor)
}

fn apply_all(board: &mut AlarmBoard, signals: &[AlarmSignal]) -> Vec<AlarmUpdate> {
    signals.iter().map(|s| board.apply(s)).collect()
}

#[test]
fn open_acknowledged_resolved_and_the_illegal_ways() {
    let (mut board, id, _) = urgent_low_board();
    let nurse = UserId::random();
    let alarm = board.acknowledge(&id, nurse, at(2.0)).unwrap();
    assert!(matches!(alarm.state, AlarmState::Acknowledged { by, .. } if by == nurse));
    assert!(matches!(
        board.acknowledge(&id, nurse, at(3.0)),
        Err(AlertingError::IllegalTransition {
            action: "acknowledge",
            state: "acknowledged",
            ..
        })
    ));
    assert!(
        board.resolve(&id, nurse, "  ", at(4.0)).is_err(),
        "a note is required"
    );
    let mut resolved = board
        .resolve(&id, nurse, "treated with 15 g glucose", at(4.0))
        .unwrap();
    assert!(matches!(
        &resolved.state,
        AlarmState::Resolved { resolution: Resolution::Person { note, .. }, .. } if note.contains("15 g")
    ));
    assert!(board.unresolved().is_empty());
    assert!(matches!(
        board.acknowledge(&id, nurse, at(5.0)),
        Err(AlertingError::UnknownAlarm(_))
    ));
    assert!(matches!(
        resolved.acknowledge(nurse, at(5.0)),
        Err(AlertingError::IllegalTransition {
            state: "resolved",
            ..
        })
    ));
    assert!(resolved.resolve(nurse, "again", at(5.0)).is_err());
    assert!(resolved.snooze(nurse, at(5.0), 60).is_err());
    let json = serde_json::to_string(&resolved).unwrap();
    assert_eq!(
        serde_json::from_str::<wardline_alerting::Alarm>(&json).unwrap(),
        resolved
    );
}

#[test]
fn alarms_resolve_on_clear_only_when_the_rule_says_so() {
    let (mut board, urgent_id, mut monitor) = urgent_low_board();
    let mut updates = Vec::new();
    for minute in [5.0, 10.0, 15.0, 20.0, 25.0, 30.0] {
        updates.extend(apply_all(&mut board, &glucose(&mut monitor, minute, 50.0)));
    }
    // Low (< 70 for 15 min) opens once; urgent low, never cleared, stays the one alarm.
    assert_eq!(
        updates
            .iter()
            .filter(|u| matches!(u, AlarmUpdate::Opened { .. }))
            .count(),
        1
    );
    assert_eq!(board.unresolved().len(), 2);
    let updates = apply_all(&mut board, &glucose(&mut monitor, 35.0, 120.0));
    // Low resolves by itself; urgent low is latching and waits for a person.
    assert!(
        updates.iter().any(
            |u| matches!(u, AlarmUpdate::Resolved { alarm } if alarm.rule_id.as_str() == "low")
        )
    );
    assert!(updates.iter().any(
        |u| matches!(u, AlarmUpdate::ConditionCleared { alarm_id } if *alarm_id == urgent_id)
    ));
    let urgent = board.get(&urgent_id).unwrap();
    assert!(!urgent.condition_active && urgent.state == AlarmState::Open);
}

#[test]
fn one_unresolved_alarm_per_condition_and_an_acknowledged_one_reopens_on_a_new_episode() {
    let (mut board, id, mut monitor) = urgent_low_board();
    board.acknowledge(&id, UserId::random(), at(1.0)).unwrap();
    apply_all(&mut board, &glucose(&mut monitor, 5.0, 120.0));
    let updates = apply_all(&mut board, &glucose(&mut monitor, 10.0, 50.0));
    assert!(matches!(
        &updates[..],
        [AlarmUpdate::Reoccurred { alarm_id, reopened: true }] if *alarm_id == id
    ));
    let alarm = board.get(&id).unwrap();
    assert_eq!((alarm.occurrences, &alarm.state), (2, &AlarmState::Open));
    assert_eq!(alarm.escalation.cause, EscalationCause::Reoccurred);
    assert_eq!(board.unresolved().len(), 1);
}

#[test]
fn snooze_is_time_limited_by_priority_and_an_expired_snooze_notifies_again() {
    let (mut board, id, _) = urgent_low_board();
    let nurse = UserId::random();
    assert!(matches!(
        board.snooze(&id, nurse, at(1.0), 45 * 60),
        Err(AlertingError::SnoozeTooLong { max_secs: 1800, .. })
    ));
    assert!(board.snooze(&id, nurse, at(1.0), 0).is_err());
    let policy = policy();
    let alarm = board.snooze(&id, nurse, at(1.0), 30 * 60).unwrap().clone();
    assert!(due_notifications(&alarm, &policy, at(30.0)).is_empty());
    assert_eq!(next_deadline(&alarm, &policy), Some(at(31.0)));
    let due = due_notifications(&alarm, &policy, at(31.0));
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].reason, due[0].level),
        (NotificationReason::SnoozeExpired, 1)
    );
    assert_eq!(board.expire_snoozes(at(31.0)), std::slice::from_ref(&id));
    assert_eq!(board.get(&id).unwrap().state, AlarmState::Open);
    // An acknowledged alarm notifies nobody, so it cannot be snoozed.
    board.acknowledge(&id, nurse, at(32.0)).unwrap();
    assert!(board.snooze(&id, nurse, at(33.0), 60).is_err());
}

fn policy() -> EscalationPolicy {
    EscalationPolicy {
        steps: vec![
            EscalationStep {
                after_secs: 0,
                notify: vec![Recipient::CareTeam {
                    care_team_id: CareTeamId::random(),
                }],
            },
            EscalationStep {
                after_secs: 10 * 60,
                notify: vec![Recipient::User {
                    user_id: UserId::random(),
                }],
            },
        ],
        repeat_after_secs: Some(15 * 60),
        max_rounds: 2,
    }
}

#[test]
fn escalation_steps_fall_due_in_order_repeat_and_stop_when_acknowledged() {
    let (mut board, id, _) = urgent_low_board();
    let policy = policy();
    policy.validate().unwrap();
    let mut sent = Vec::new();
    let mut tick = |board: &mut AlarmBoard, minute: f64| {
        let alarm = board.get(&id).unwrap().clone();
        let due = due_notifications(&alarm, &policy, at(minute));
        board.record_notified(&due);
        sent.extend(due.iter().map(|n| (n.due_at, n.level, n.round, n.reason)));
        (due.len(), next_deadline(board.get(&id).unwrap(), &policy))
    };
    assert_eq!(tick(&mut board, 0.0), (1, Some(at(10.0))));
    assert_eq!(tick(&mut board, 9.0), (0, Some(at(10.0))));
    // A timer that was late catches up with everything due, once.
    assert_eq!(tick(&mut board, 26.0), (2, Some(at(35.0))));
    assert_eq!(tick(&mut board, 26.0), (0, Some(at(35.0))));
    assert_eq!(tick(&mut board, 35.0), (1, None));
    assert_eq!(tick(&mut board, 500.0), (0, None));
    use NotificationReason::*;
    assert_eq!(
        sent,
        [
            (at(0.0), 1, 0, Raised),
            (at(10.0), 2, 0, Escalated),
            (at(25.0), 1, 1, Repeated),
            (at(35.0), 2, 1, Repeated),
        ]
    );

    let (mut board, id, _) = urgent_low_board();
    board.acknowledge(&id, UserId::random(), at(5.0)).unwrap();
    let alarm = board.get(&id).unwrap();
    assert!(due_notifications(alarm, &policy, at(60.0)).is_empty());
    assert_eq!(next_deadline(alarm, &policy), None);
}

#[test]
fn the_escalation_status_names_the_level_reached_and_the_next_step() {
    let (mut board, id, _) = urgent_low_board();
    let policy = policy();
    let status = |board: &AlarmBoard| escalation_status(board.get(&id).unwrap(), &policy);
    let before = status(&board);
    assert_eq!((before.levels, before.rounds), (2, 2));
    assert_eq!((before.level, before.round), (None, None));
    let next = before.next.unwrap();
    assert_eq!((next.level, next.round, next.due_at), (1, 1, at(0.0)));
    assert_eq!(next.notify, policy.steps[0].notify);

    let notify = |board: &mut AlarmBoard, minute: f64| {
        let due = due_notifications(board.get(&id).unwrap(), &policy, at(minute));
        board.record_notified(&due);
    };
    notify(&mut board, 0.0);
    let first = status(&board);
    assert_eq!((first.level, first.round), (Some(1), Some(1)));
    let next = first.next.unwrap();
    assert_eq!((next.level, next.round, next.due_at), (2, 1, at(10.0)));
    assert_eq!(next.notify, policy.steps[1].notify);

    // Into the second round: level 1 again, round 2.
    notify(&mut board, 26.0);
    let repeated = status(&board);
    assert_eq!((repeated.level, repeated.round), (Some(1), Some(2)));
    assert_eq!(repeated.next.unwrap().due_at, at(35.0));
    notify(&mut board, 35.0);
    let last = status(&board);
    assert_eq!(
        (last.level, last.round, last.next),
        (Some(2), Some(2), None)
    );

    // Acknowledging stops it where it was.
    let (mut board, id, _) = urgent_low_board();
    let due = due_notifications(board.get(&id).unwrap(), &policy, at(12.0));
    board.record_notified(&due);
    board.acknowledge(&id, UserId::random(), at(13.0)).unwrap();
    let stopped = escalation_status(board.get(&id).unwrap(), &policy);
    assert_eq!(
        (stopped.level, stopped.round, stopped.next),
        (Some(2), Some(1), None)
    );
}

#[test]
fn nonsense_escalation_policies_are_refused() {
    let mut no_one = policy();
    no_one.steps[1].notify.clear();
    assert!(no_one.validate().is_err());
    let mut none = policy();
    none.steps.clear();
    assert!(none.validate().is_err());
    let mut forever = policy();
    forever.max_rounds = 0;
    assert!(forever.validate().is_err());
}

#[test]
fn a_condition_that_clears_and_starts_again_within_a_millisecond_opens_a_second_alarm() {
    // Events evaluated together as the engine catches up after an outage: the raise, the
    // clear and the raise again are all evaluated at one `now`.
    let condition = wardline_alerting::ConditionKey {
        patient_id: wardline_domain::PatientId::random(),
        rule_id: wardline_alerting::RuleId::new("glucose-high"),
    };
    let raise = |value: u32| AlarmSignal::Raise {
        condition: condition.clone(),
        priority: wardline_alerting::Priority::High,
        kind: wardline_alerting::AlarmKind::Physiological,
        message: format!("glucose {value}"),
        rule_id: condition.rule_id.clone(),
        care_plan_version: 1,
        resolve_on_clear: true,
        at: at(1.0),
    };
    let clear = AlarmSignal::Clear {
        condition: condition.clone(),
        at: at(1.0),
    };
    let mut board = AlarmBoard::new();
    let updates = apply_all(&mut board, &[raise(350), clear.clone(), raise(360), clear]);
    let opened: Vec<_> = updates
        .iter()
        .filter_map(|update| match update {
            AlarmUpdate::Opened { alarm_id } => Some(alarm_id.clone()),
            _ => None,
        })
        .collect();
    let resolved: Vec<_> = updates
        .iter()
        .filter_map(|update| match update {
            AlarmUpdate::Resolved { alarm } => Some(alarm.id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(opened.len(), 2);
    assert_ne!(opened[0], opened[1], "each episode is an alarm of its own");
    assert_eq!(resolved, opened);
}
