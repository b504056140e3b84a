//! Conformance checks of [`crate::VisitStore`].

use chrono::NaiveDate;
use uuid::Uuid;
use wardline_domain::{ObservationCode, PatientId, Role, UserId};

use super::{assigned_device, at, audit, glucose, heart_rate, patient, readings, user};
use crate::{
    AuditQuery, MonitoringSource, NewMonitoringTime, NewTreatmentOrder, NewVisit, Presence, Store,
    StoreError, VisitNoteText, VisitQuery, VisitStatus,
};

async fn account(store: &dyn Store, name: &str, role: Role, patient: Option<PatientId>) -> UserId {
    store
        .create_user(user(name, role, patient), audit("users.create"))
        .await
        .expect("account")
        .id
}

async fn entries_of(store: &dyn Store, action: &str) -> usize {
    store
        .audit_events(AuditQuery {
            action: Some(action.into()),
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .expect("audit")
        .len()
}

fn new_visit(patient_id: PatientId, by: UserId, start: i64, attendees: Vec<UserId>) -> NewVisit {
    NewVisit {
        id: Uuid::new_v4(),
        patient_id,
        scheduled_by: by,
        created: at(0),
        start: at(start),
        duration_minutes: 20,
        reason: "review of the blood pressure diary".into(),
        attendees,
    }
}

pub async fn visits_are_scheduled_moved_and_closed_once(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let adams = account(store, "adams", Role::Clinician, None).await;
    let nurse = account(store, "nurse", Role::Nurse, None).await;
    let first = store
        .create_visit(
            new_visit(alice, adams, 60, vec![adams, nurse]),
            audit("visits.schedule"),
        )
        .await
        .expect("schedule");
    assert_eq!(first.patient_name, "Alice");
    assert_eq!(first.status, VisitStatus::Scheduled);
    assert_eq!(first.end(), at(80));
    assert!(first.is_attendee(adams) && first.is_attendee(nurse));
    assert_eq!(first.attendees.len(), 2);
    let later = store
        .create_visit(
            new_visit(alice, adams, 600, vec![adams]),
            audit("visits.schedule"),
        )
        .await
        .expect("schedule");
    let bobs = store
        .create_visit(
            new_visit(bob, nurse, 30, vec![nurse]),
            audit("visits.schedule"),
        )
        .await
        .expect("schedule");
    assert_eq!(entries_of(store, "visits.schedule").await, 3);
    assert_eq!(
        store.visit(first.id).await.expect("read"),
        Some(first.clone())
    );
    assert_eq!(store.visit(Uuid::new_v4()).await.expect("read"), None);

    let ids = |visits: Vec<crate::Visit>| visits.into_iter().map(|v| v.id).collect::<Vec<_>>();
    let of_alice = store
        .visits(VisitQuery {
            patient: Some(alice),
            limit: 10,
            ..VisitQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(ids(of_alice), vec![first.id, later.id], "by start");
    let of_adams = store
        .visits(VisitQuery {
            attendee: Some(adams),
            limit: 10,
            ..VisitQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(ids(of_adams), vec![first.id, later.id]);
    let of_nurse = store
        .visits(VisitQuery {
            attendee: Some(nurse),
            limit: 10,
            ..VisitQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(ids(of_nurse), vec![bobs.id, first.id]);
    // Visits ending after minute 80 (the first ends then) and starting before 700.
    let window = store
        .visits(VisitQuery {
            ending_after: Some(at(80)),
            starting_before: Some(at(700)),
            limit: 10,
            ..VisitQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(ids(window), vec![later.id]);
    let one = store
        .visits(VisitQuery {
            limit: 1,
            ..VisitQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(ids(one), vec![bobs.id], "the limit holds");

    // Moving forgets the reminder, so that the new time gets one.
    let reminder = |key: &str| crate::NewVisitReminder {
        idempotency_key: key.into(),
        email: "ada@example.org".into(),
        payload: serde_json::json!({"subject": "Your video visit", "text": "tomorrow"}),
        next_attempt: at(1),
    };
    assert!(
        store
            .queue_visit_reminder(first.id, reminder("r1"), at(1), audit("visits.remind"))
            .await
            .expect("remind")
    );
    assert!(
        !store
            .queue_visit_reminder(first.id, reminder("r2"), at(2), audit("visits.remind"))
            .await
            .expect("remind again"),
        "a reminder is queued once"
    );
    assert_eq!(entries_of(store, "visits.remind").await, 1);
    // The reminder pass asks only for visits not yet reminded: however many were, the
    // others are never crowded out of its page.
    let unreminded = store
        .visits(VisitQuery {
            unreminded: true,
            limit: 100,
            ..VisitQuery::default()
        })
        .await
        .expect("unreminded");
    assert!(
        unreminded
            .iter()
            .all(|visit| visit.id != first.id && visit.reminded.is_none()),
        "{unreminded:?}"
    );
    // The reminder waits in the outbox for its address, beside alarms' notifications.
    let due = store
        .claim_due_outbox(at(5), 10, at(6))
        .await
        .expect("claim");
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].patient_id, alice);
    assert_eq!(due[0].idempotency_key, "r1");
    assert_eq!(
        due[0].recipient,
        crate::Recipient::VisitReminder {
            visit_id: first.id,
            email: "ada@example.org".into()
        }
    );
    assert!(due[0].recipient.channel().is_none());
    store
        .record_delivery(
            due[0].key,
            at(6),
            at(5),
            crate::DeliveryOutcome::Dead {
                error: "mailbox unavailable".into(),
            },
        )
        .await
        .expect("dead");
    assert!(
        store
            .retry_notification(due[0].key, at(7), audit("notifications.retry"))
            .await
            .expect("retry"),
        "a reminder's dead letter is retried: it has no channel to have been removed"
    );
    let moved = store
        .reschedule_visit(first.id, at(120), 30, audit("visits.reschedule"))
        .await
        .expect("move");
    assert_eq!(
        (moved.start, moved.duration_minutes, moved.reminded),
        (at(120), 30, None)
    );

    let cancelled = store
        .close_visit(
            first.id,
            VisitStatus::Cancelled,
            at(5),
            Some("the patient is in hospital".into()),
            audit("visits.cancel"),
        )
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, VisitStatus::Cancelled);
    assert_eq!(cancelled.status_changed, Some(at(5)));
    assert_eq!(
        cancelled.status_reason.as_deref(),
        Some("the patient is in hospital")
    );
    let scheduled = store
        .visits(VisitQuery {
            patient: Some(alice),
            status: Some(VisitStatus::Scheduled),
            limit: 10,
            ..VisitQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(ids(scheduled), vec![later.id]);
    for refused in [
        store
            .close_visit(
                first.id,
                VisitStatus::NoShow,
                at(6),
                None,
                audit("visits.no_show"),
            )
            .await,
        store
            .reschedule_visit(first.id, at(200), 20, audit("visits.reschedule"))
            .await,
        store
            .close_visit(
                later.id,
                VisitStatus::Scheduled,
                at(6),
                None,
                audit("visits.close"),
            )
            .await,
    ] {
        assert!(
            matches!(refused, Err(StoreError::Conflict { .. })),
            "{refused:?}"
        );
    }
    assert!(
        !store
            .queue_visit_reminder(first.id, reminder("r3"), at(7), audit("visits.remind"))
            .await
            .expect("remind"),
        "a cancelled visit is not reminded of"
    );
    assert!(matches!(
        store
            .reschedule_visit(Uuid::new_v4(), at(1), 20, audit("visits.reschedule"))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let mut unknown = new_visit(alice, adams, 1, vec![UserId::random()]);
    unknown.reason = "unknown attendee".into();
    assert!(matches!(
        store
            .create_visit(unknown.clone(), audit("visits.schedule"))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store.visit(unknown.id).await.expect("read"),
        None,
        "nothing of a refused visit is stored"
    );
    let completed = store
        .close_visit(
            later.id,
            VisitStatus::Completed,
            at(630),
            None,
            audit("visits.complete"),
        )
        .await
        .expect("complete");
    assert_eq!(completed.status, VisitStatus::Completed);
}

pub async fn contact_addresses_are_the_patients_own(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let alice_account = account(store, "alice", Role::Patient, Some(alice)).await;
    let bob_account = account(store, "bob", Role::Patient, Some(bob)).await;
    assert_eq!(
        store.contact_email(alice_account).await.expect("read"),
        None
    );
    store
        .set_contact_email(
            alice_account,
            Some("alice@example.org".into()),
            at(1),
            audit("me.contact_email"),
        )
        .await
        .expect("set");
    store
        .set_contact_email(
            alice_account,
            Some("alice@home.example".into()),
            at(2),
            audit("me.contact_email"),
        )
        .await
        .expect("change");
    store
        .set_contact_email(
            bob_account,
            Some("bob@example.org".into()),
            at(2),
            audit("me.contact_email"),
        )
        .await
        .expect("set");
    assert_eq!(
        store
            .contact_email(alice_account)
            .await
            .expect("read")
            .as_deref(),
        Some("alice@home.example")
    );
    assert_eq!(
        store.patient_contact_emails(alice).await.expect("emails"),
        vec!["alice@home.example".to_owned()]
    );
    store
        .set_contact_email(alice_account, None, at(3), audit("me.contact_email"))
        .await
        .expect("forget");
    assert!(
        store
            .patient_contact_emails(alice)
            .await
            .expect("emails")
            .is_empty()
    );
    assert_eq!(
        store
            .patient_contact_emails(bob)
            .await
            .expect("emails")
            .len(),
        1
    );
    assert_eq!(entries_of(store, "me.contact_email").await, 4);
    assert!(matches!(
        store
            .set_contact_email(
                UserId::random(),
                Some("x@example.org".into()),
                at(4),
                audit("me.contact_email")
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn the_room_counts_stays_and_keeps_its_chat(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let adams = account(store, "adams", Role::Clinician, None).await;
    let alice_account = account(store, "alice", Role::Patient, Some(alice)).await;
    let visit = store
        .create_visit(
            new_visit(alice, adams, 0, vec![adams]),
            audit("visits.schedule"),
        )
        .await
        .expect("schedule");
    let join = |user, minute, count| {
        store.record_presence(
            visit.id,
            user,
            Presence::Joined,
            at(minute),
            count,
            audit("visits.join"),
        )
    };
    join(adams, 1, true).await.expect("join");
    join(alice_account, 2, false).await.expect("join");
    // Joining again (a second tab, a reconnect) keeps the one stay.
    let spans = join(adams, 3, true).await.expect("join again");
    assert_eq!(spans.len(), 2, "{spans:?}");
    let spans = store
        .record_presence(
            visit.id,
            adams,
            Presence::Left,
            at(13),
            true,
            audit("visits.leave"),
        )
        .await
        .expect("leave");
    assert_eq!(spans[0].user_id, adams);
    assert_eq!((spans[0].joined, spans[0].left), (at(1), Some(at(13))));
    assert_eq!(spans[1].left, None, "the patient is still in the room");
    store
        .record_presence(
            visit.id,
            alice_account,
            Presence::Left,
            at(14),
            false,
            audit("visits.leave"),
        )
        .await
        .expect("leave");
    // Leaving twice changes nothing.
    store
        .record_presence(
            visit.id,
            adams,
            Presence::Left,
            at(20),
            true,
            audit("visits.leave"),
        )
        .await
        .expect("leave again");
    assert_eq!(
        store
            .visit_presence(visit.id)
            .await
            .expect("presence")
            .len(),
        2
    );
    assert_eq!(entries_of(store, "visits.join").await, 3);
    assert_eq!(entries_of(store, "visits.leave").await, 3);
    // The clinician's stay is monitoring time of the patient; the patient's is not.
    let time = store
        .monitoring_time(alice, at(-60), at(60))
        .await
        .expect("time");
    assert_eq!(time.len(), 1, "{time:?}");
    assert_eq!(time[0].user_id, adams);
    assert_eq!(time[0].seconds, 12 * 60);
    assert_eq!(time[0].source, MonitoringSource::Visit);
    assert_eq!(time[0].visit_id, Some(visit.id));
    assert_eq!(time[0].started, at(1));

    let first = store
        .add_visit_message(
            visit.id,
            adams,
            at(2),
            "Can you hear me?".into(),
            audit("visits.chat"),
        )
        .await
        .expect("message");
    assert_eq!(first.author_name, "ADAMS");
    let second = store
        .add_visit_message(
            visit.id,
            alice_account,
            at(3),
            "No sound; typing here".into(),
            audit("visits.chat"),
        )
        .await
        .expect("message");
    assert!(second.seq > first.seq);
    let all = store.visit_messages(visit.id, 0).await.expect("chat");
    assert_eq!(all, vec![first.clone(), second.clone()]);
    let after = store
        .visit_messages(visit.id, first.seq)
        .await
        .expect("chat");
    assert_eq!(after, vec![second]);
    assert!(matches!(
        store.visit_messages(Uuid::new_v4(), 0).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn a_signed_note_changes_only_by_addenda(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let adams = account(store, "adams", Role::Clinician, None).await;
    let nurse = account(store, "nurse", Role::Nurse, None).await;
    let visit = store
        .create_visit(
            new_visit(alice, adams, 0, vec![adams, nurse]),
            audit("visits.schedule"),
        )
        .await
        .expect("schedule");
    assert_eq!(store.visit_note(visit.id).await.expect("note"), None);
    assert!(matches!(
        store
            .sign_visit_note(visit.id, adams, at(1), audit("visits.note.sign"))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let text = |plan: &str| VisitNoteText {
        reason: "raised home readings".into(),
        findings: "mean systolic 152 over two weeks".into(),
        plan: plan.into(),
    };
    store
        .save_visit_note(
            visit.id,
            adams,
            text("first draft"),
            at(10),
            audit("visits.note.save"),
        )
        .await
        .expect("draft");
    let draft = store
        .save_visit_note(
            visit.id,
            adams,
            text("raise the dose"),
            at(11),
            audit("visits.note.save"),
        )
        .await
        .expect("draft again");
    assert_eq!(draft.text.plan, "raise the dose");
    assert_eq!((draft.updated, draft.signed), (at(11), None));
    assert!(matches!(
        store
            .add_visit_addendum(
                visit.id,
                adams,
                at(12),
                "too early".into(),
                audit("visits.note.addendum")
            )
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(
        matches!(
            store
                .sign_visit_note(visit.id, nurse, at(12), audit("visits.note.sign"))
                .await,
            Err(StoreError::Conflict { .. })
        ),
        "only the note's author signs it"
    );
    let signed = store
        .sign_visit_note(visit.id, adams, at(15), audit("visits.note.sign"))
        .await
        .expect("sign");
    assert_eq!(signed.signed, Some(at(15)));
    assert_eq!(signed.author_name, "ADAMS");
    for refused in [
        store
            .save_visit_note(
                visit.id,
                adams,
                text("changed after"),
                at(16),
                audit("visits.note.save"),
            )
            .await,
        store
            .sign_visit_note(visit.id, adams, at(16), audit("visits.note.sign"))
            .await,
    ] {
        assert!(
            matches!(refused, Err(StoreError::Conflict { .. })),
            "{refused:?}"
        );
    }
    let amended = store
        .add_visit_addendum(
            visit.id,
            nurse,
            at(20),
            "home cuff replaced".into(),
            audit("visits.note.addendum"),
        )
        .await
        .expect("addendum");
    assert_eq!(
        amended.text.plan, "raise the dose",
        "the signed text stands"
    );
    assert_eq!(amended.addenda.len(), 1);
    assert_eq!(amended.addenda[0].author, nurse);
    assert_eq!(amended.addenda[0].written, at(20));
    assert_eq!(
        store.visit_note(visit.id).await.expect("note"),
        Some(amended)
    );
    assert_eq!(entries_of(store, "visits.note.sign").await, 1);

    let linked = store
        .link_care_plan_version(visit.id, 3, audit("visits.care_plan"))
        .await
        .expect("link");
    let linked_again = store
        .link_care_plan_version(visit.id, 3, audit("visits.care_plan"))
        .await
        .expect("link again");
    assert_eq!(linked.care_plan_versions, vec![3]);
    assert_eq!(linked_again.care_plan_versions, vec![3]);
}

pub async fn orders_and_monitoring_time_stay_with_their_patient(store: &dyn Store) {
    let alice = patient(store, "Alice").await;
    let bob = patient(store, "Bob").await;
    let adams = account(store, "adams", Role::Clinician, None).await;
    let visit = store
        .create_visit(
            new_visit(alice, adams, 0, vec![adams]),
            audit("visits.schedule"),
        )
        .await
        .expect("schedule");
    let order = |patient_id, visit_id, minute, medication: &str| NewTreatmentOrder {
        id: Uuid::new_v4(),
        patient_id,
        visit_id,
        ordered_by: adams,
        created: at(minute),
        medication: medication.into(),
        dose: "5 mg".into(),
        frequency: "once a day".into(),
        start: NaiveDate::from_ymd_opt(2026, 11, 2).expect("date"),
        stop: NaiveDate::from_ymd_opt(2026, 12, 2),
        instructions: "in the morning, with water".into(),
    };
    let first = store
        .create_treatment_order(
            order(alice, Some(visit.id), 1, "amlodipine"),
            audit("orders.create"),
        )
        .await
        .expect("order");
    assert_eq!(first.visit_id, Some(visit.id));
    assert_eq!(first.ordered_by_name, "ADAMS");
    assert_eq!(first.stop, NaiveDate::from_ymd_opt(2026, 12, 2));
    let second = store
        .create_treatment_order(order(alice, None, 2, "ramipril"), audit("orders.create"))
        .await
        .expect("order");
    store
        .create_treatment_order(order(bob, None, 3, "metformin"), audit("orders.create"))
        .await
        .expect("order");
    assert_eq!(
        store.treatment_orders(alice).await.expect("orders"),
        vec![second, first],
        "newest first, the patient's own"
    );
    assert!(matches!(
        store
            .create_treatment_order(
                order(alice, Some(Uuid::new_v4()), 4, "x"),
                audit("orders.create")
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));

    let time = |patient_id, minute, seconds, source, reason: Option<&str>| NewMonitoringTime {
        id: Uuid::new_v4(),
        patient_id,
        user_id: adams,
        started: at(minute),
        seconds,
        source,
        visit_id: None,
        reason: reason.map(str::to_owned),
    };
    store
        .record_monitoring_time(
            time(alice, 10, 300, MonitoringSource::Timer, None),
            audit("monitoring.time"),
        )
        .await
        .expect("time");
    let correction = store
        .record_monitoring_time(
            time(
                alice,
                20,
                -120,
                MonitoringSource::Correction,
                Some("timer left running"),
            ),
            audit("monitoring.time"),
        )
        .await
        .expect("correction");
    assert_eq!(
        (correction.seconds, correction.reason.as_deref()),
        (-120, Some("timer left running"))
    );
    store
        .record_monitoring_time(
            time(bob, 10, 600, MonitoringSource::Timer, None),
            audit("monitoring.time"),
        )
        .await
        .expect("time");
    let of_alice = store
        .monitoring_time(alice, at(0), at(20))
        .await
        .expect("time");
    assert_eq!(
        of_alice.len(),
        1,
        "[from, to): the correction at 20 is outside"
    );
    let all = store
        .monitoring_time(alice, at(0), at(21))
        .await
        .expect("time");
    assert_eq!(all.iter().map(|t| t.seconds).sum::<i64>(), 180);
    assert_eq!(entries_of(store, "monitoring.time").await, 3);

    // Readings by quarter hour: two in one quarter count once; another patient's never.
    let cuff = assigned_device(store, "monitor-1", alice).await;
    let cgm = assigned_device(store, "cgm-2", bob).await;
    store
        .ingest(vec![
            readings(
                &cuff,
                vec![
                    heart_rate(1, 1, 70.0),
                    heart_rate(2, 5, 72.0),
                    heart_rate(3, 40, 71.0),
                ],
            ),
            readings(&cgm, vec![glucose(1, 2, 6.0)]),
        ])
        .await
        .expect("ingest");
    let quarters = store
        .reading_quarters(alice, at(0), at(60))
        .await
        .expect("quarters");
    assert_eq!(quarters.len(), 2, "{quarters:?}");
    assert_eq!(quarters[0].start, at(0));
    assert_eq!(quarters[1].start, at(30));
    assert_eq!(quarters[0].device_id, cuff);
    assert_eq!(quarters[0].code, ObservationCode::HeartRate);
    assert!(
        store
            .reading_quarters(alice, at(41), at(60))
            .await
            .expect("quarters")
            .is_empty()
    );
    assert!(
        store
            .reading_quarters(PatientId::random(), at(0), at(60))
            .await
            .expect("quarters")
            .is_empty()
    );
}
