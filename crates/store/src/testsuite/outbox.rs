//! Checks of [`OutboxStore`](crate::OutboxStore).

use chrono::{DateTime, Utc};
use serde_json::json;
use wardline_alerting::{
    Alarm, AlarmKind, AlarmSignal, ConditionKey, EscalationStatus, Priority, RuleId,
};
use wardline_domain::CareTeamId;

use super::{at, audit, patient};
use crate::*;

pub async fn channels_and_the_outbox(store: &dyn Store) {
    let patient_id = patient(store, "Alarm Patient").await;
    let team = store
        .create_care_team(
            NewCareTeam {
                id: CareTeamId::random(),
                name: "Alarm Team".into(),
                created: at(0),
            },
            audit("care_teams.create"),
        )
        .await
        .expect("team");
    let channel = NotificationChannel {
        id: "ch-1".into(),
        team_id: team.id,
        kind: ChannelKind::Webhook,
        target: "https://example.org/hook".into(),
        sealed_secret: Some(vec![1, 2, 3]),
        minimal: true,
        created: at(0),
    };
    store
        .create_notification_channel(channel.clone(), audit("notification_channel.create"))
        .await
        .expect("channel");
    assert!(matches!(
        store
            .create_notification_channel(channel.clone(), audit("notification_channel.create"))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    let email = NotificationChannel {
        id: "ch-2".into(),
        kind: ChannelKind::Email,
        target: "ward7@example.org".into(),
        sealed_secret: None,
        ..channel.clone()
    };
    store
        .create_notification_channel(email.clone(), audit("notification_channel.create"))
        .await
        .expect("email channel");
    assert_eq!(
        store.notification_channels(None).await.expect("channels"),
        vec![channel.clone(), email]
    );

    // An alarm with a notification, committed together.
    let alarm = Alarm::from_signal(&AlarmSignal::Raise {
        condition: ConditionKey {
            patient_id,
            rule_id: RuleId::new("low"),
        },
        priority: Priority::High,
        kind: AlarmKind::Physiological,
        message: "low".into(),
        rule_id: RuleId::new("low"),
        care_plan_version: 1,
        resolve_on_clear: false,
        at: at(3),
    })
    .expect("alarm");
    let notify = |key: &str, second: i64| AlarmChange {
        alarm: AlarmRecord {
            public_id: "a1".into(),
            alarm: alarm.clone(),
            escalation: EscalationStatus {
                levels: 1,
                rounds: 1,
                level: Some(1),
                round: Some(1),
                next: None,
            },
            updated: at(second),
        },
        events: vec![],
        notifications: vec![NewNotification {
            idempotency_key: key.into(),
            channel_id: "ch-1".into(),
            payload: json!({"alarm": "a1"}),
            next_attempt: at(second),
        }],
    };
    store
        .save_alarm_changes(vec![notify("a1/0/ch-1", 3)], None, vec![])
        .await
        .expect("save alarm");
    let due = store.claim_due_outbox(at(3), 10, at(5)).await.expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].recipient.channel(), Some(&channel));
    assert_eq!(
        due[0]
            .recipient
            .channel()
            .and_then(|c| c.sealed_secret.clone()),
        Some(vec![1, 2, 3])
    );
    assert_eq!(
        (
            due[0].recipient.alarm_public_id().unwrap_or_default(),
            due[0].patient_id,
            due[0].status
        ),
        ("a1", patient_id, DeliveryStatus::Pending)
    );
    nothing_due(store, at(2), at(5)).await;
    // Claimed: nobody else takes it while the lease lasts; unrecorded (its worker died),
    // it is due again when the lease ends.
    nothing_due(store, at(4), at(6)).await;
    assert_eq!(
        store.next_outbox_attempt().await.expect("next"),
        Some(at(5))
    );
    let again = store
        .claim_due_outbox(at(5), 10, at(7))
        .await
        .expect("due again");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].key, due[0].key);
    // The first claim's worker, late: its failures change nothing under the new claim.
    for stale in [
        DeliveryOutcome::Retry {
            next_attempt: at(5),
            error: "timed out".into(),
        },
        DeliveryOutcome::Dead {
            error: "timed out".into(),
        },
    ] {
        store
            .record_delivery(due[0].key, at(5), at(5), stale)
            .await
            .expect("stale outcome");
    }
    assert_eq!(
        store.next_outbox_attempt().await.expect("next"),
        Some(at(7)),
        "the second claim's lease stands"
    );
    nothing_due(store, at(6), at(8)).await;
    store
        .record_delivery(
            due[0].key,
            at(7),
            at(5),
            DeliveryOutcome::Retry {
                next_attempt: at(6),
                error: "503".into(),
            },
        )
        .await
        .expect("retry");
    assert_eq!(
        store.next_outbox_attempt().await.expect("next"),
        Some(at(6))
    );
    let third = store
        .claim_due_outbox(at(6), 10, at(8))
        .await
        .expect("due after the retry");
    assert_eq!(third.len(), 1);
    store
        .record_delivery(
            due[0].key,
            at(8),
            at(7),
            DeliveryOutcome::Dead {
                error: "gone".into(),
            },
        )
        .await
        .expect("dead");
    let dead = store
        .notifications(NotificationQuery {
            status: Some(DeliveryStatus::Dead),
            limit: 10,
            ..NotificationQuery::default()
        })
        .await
        .expect("dead letters");
    assert_eq!((dead.len(), dead[0].attempts), (1, 2));
    assert_eq!(dead[0].last_error.as_deref(), Some("gone"));
    assert!(
        !store
            .retry_notification(dead[0].key + 1000, at(8), audit("notifications.retry"))
            .await
            .expect("retry unknown"),
        "no such dead letter"
    );
    assert!(
        store
            .retry_notification(dead[0].key, at(8), audit("notifications.retry"))
            .await
            .expect("retry")
    );
    store
        .record_delivery(dead[0].key, at(1), at(8), DeliveryOutcome::Delivered)
        .await
        .expect("delivered");
    assert_eq!(store.next_outbox_attempt().await.expect("none"), None);
    let of_alarm = store
        .notifications(NotificationQuery {
            alarm_public_id: Some("a1".into()),
            limit: 10,
            ..NotificationQuery::default()
        })
        .await
        .expect("deliveries");
    assert_eq!(of_alarm[0].status, DeliveryStatus::Delivered);
    assert_eq!(of_alarm[0].delivered, Some(at(8)));

    // Before the channel goes: one delivery waits for its next attempt, one is dead.
    store
        .save_alarm_changes(
            vec![notify("a1/1/ch-1", 9), notify("a1/2/ch-1", 9)],
            None,
            vec![],
        )
        .await
        .expect("two more notifications");
    let waiting = store
        .claim_due_outbox(at(9), 10, at(10))
        .await
        .expect("due");
    assert_eq!(waiting.len(), 2);
    store
        .record_delivery(
            waiting[1].key,
            at(10),
            at(9),
            DeliveryOutcome::Dead {
                error: "gone".into(),
            },
        )
        .await
        .expect("dead");

    assert!(
        store
            .remove_notification_channel(
                team.id,
                "ch-1",
                at(10),
                audit("notification_channel.remove")
            )
            .await
            .expect("remove")
    );
    assert!(
        !store
            .remove_notification_channel(
                team.id,
                "ch-1",
                at(11),
                audit("notification_channel.remove")
            )
            .await
            .expect("remove again")
    );
    assert_eq!(
        store
            .notification_channels(Some(team.id))
            .await
            .expect("channels")
            .len(),
        1
    );

    // Nothing more goes out through the removed channel: the waiting delivery is
    // cancelled, the dead letter cannot be put back, and a later alarm's notification for
    // it is stored cancelled.
    nothing_due(store, at(100), at(101)).await;
    assert_eq!(store.next_outbox_attempt().await.expect("next"), None);
    assert!(
        !store
            .retry_notification(waiting[1].key, at(12), audit("notifications.retry"))
            .await
            .expect("retry"),
        "a dead letter of a removed channel stays dead"
    );
    store
        .save_alarm_changes(vec![notify("a1/3/ch-1", 13)], None, vec![])
        .await
        .expect("a notification after the removal");
    let cancelled = store
        .notifications(NotificationQuery {
            status: Some(DeliveryStatus::Cancelled),
            limit: 10,
            ..NotificationQuery::default()
        })
        .await
        .expect("cancelled");
    let mut keys: Vec<&str> = cancelled
        .iter()
        .map(|notification| notification.idempotency_key.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["a1/1/ch-1", "a1/3/ch-1"]);
    assert!(
        cancelled
            .iter()
            .all(|notification| notification.last_error.as_deref() == Some("channel removed"))
    );
    nothing_due(store, at(100), at(101)).await;
}

/// Claims at `now` and finds nothing to send.
async fn nothing_due(store: &dyn Store, now: DateTime<Utc>, lease_until: DateTime<Utc>) {
    let claimed = store
        .claim_due_outbox(now, 10, lease_until)
        .await
        .expect("claim");
    assert!(claimed.is_empty(), "nothing due at {now}: {claimed:?}");
}
