//! The conformance suite every backend must pass, one module per capability.
//!
//! Each check is a plain async function over `&dyn Store`. A backend's test crate
//! instantiates them all with [`store_conformance_suite!`](crate::store_conformance_suite),
//! which gives each check a fresh, empty store and adds one more test: every check again,
//! through [`Recorded`], which notes each trait method called; a method of any capability
//! trait that no check calls fails it. A new store method therefore needs a check before
//! the suite passes.

mod alarms;
mod audit;
mod backend_clients;
mod bulk_exports;
mod clinical;
mod devices;
mod emergency;
mod events;
mod gateways;
mod ingest;
mod nightscout;
mod outbox;
mod people;
pub mod postgres;
mod recorded;
mod shares;
mod templates;
mod visits;

use chrono::{DateTime, Duration, TimeZone, Utc};
use wardline_domain::{DeviceId, DeviceKind, ObservationCode, PatientId, Reading, Role, UserId};

pub use alarms::*;
pub use audit::*;
pub use backend_clients::*;
pub use bulk_exports::*;
pub use clinical::*;
pub use devices::*;
pub use emergency::*;
pub use events::*;
pub use gateways::*;
pub use ingest::*;
pub use nightscout::*;
pub use outbox::*;
pub use people::*;
pub use recorded::{Recorded, Recorder, trait_methods};
pub use shares::*;
pub use templates::*;
pub use visits::*;

use crate::{AuditEvent, AuditOutcome, NewDevice, NewPatient, NewUser, Store};

/// The audit key of stores under test: always the same, so that a test can reopen its
/// store.
pub fn audit_key() -> crate::AuditKey {
    crate::AuditKey::from_secret(b"the conformance suite's audit key").expect("audit key")
}

/// Instantiates every conformance check as a `#[tokio::test]`, plus the test that the
/// checks together call every method of every capability trait. `$fresh` is an async
/// expression giving a new, empty store (and whatever guard keeps it alive).
#[macro_export]
macro_rules! store_conformance_suite {
    ($fresh:expr) => {
        $crate::store_conformance_suite!(@tests $fresh;
            users_and_credentials, sessions_expire_and_revoke, a_new_password_ends_the_other_sessions,
            failed_logins_are_counted_per_account_and_address,
            a_second_factor_is_confirmed_and_each_code_used_once,
            care_teams_decide_membership, emergency_access_opens_expires_and_is_reviewed_once,
            shares_open_until_they_expire_or_are_revoked, share_links_count_openings_and_wrong_passcodes,
            a_referral_opens_nothing_until_the_patient_accepts, an_invitation_makes_one_account_once,
            an_invitation_links_an_existing_account,
            people_changes_are_audited_in_the_same_commit,
            devices_and_assignments, enrolment_for_an_unknown_patient_leaves_nothing,
            device_certificates_identify_their_device,
            device_reports_are_kept, ingest_stores_once, ingest_refuses_unassigned_and_revoked,
            ingest_all_or_none_stores_nothing_when_one_item_is_refused,
            one_call_of_many_devices_decides_each_message_alone,
            a_reused_seq_with_other_content_is_refused, readings_a_device_cannot_take_are_refused, an_assignment_is_not_backdated_over_stored_readings,
            reassigned_device_keeps_patients_apart, observations_page_by_time,
            latest_observation_per_code, waveform_chunks_by_window, audit_trail_is_chained,
            derived_observations_have_their_own_seq, latest_observations_within_a_window,
            rhythm_events_grow_and_are_found_by_overlap, news2_results_replace_per_time,
            care_plans_are_versioned, alarms_with_history_and_checkpoint,
            escalation_policies_per_team, channels_and_the_outbox,
            observation_summary_per_bucket, gateways_report_and_list,
            event_log_reads_every_commit_once, event_log_reads_a_patient_scope,
            event_log_resumes_from_a_checkpoint,
            nightscout_sites_live_with_their_device, nightscout_documents_are_kept_once_per_key,
            overlapping_nightscout_uploads_both_succeed,
            mapping_templates_are_versioned_one_in_force_per_model,
            visits_are_scheduled_moved_and_closed_once, the_room_counts_stays_and_keeps_its_chat,
            contact_addresses_are_the_patients_own,
            a_signed_note_changes_only_by_addenda,
            orders_and_monitoring_time_stay_with_their_patient,
            bulk_exports_are_claimed_once_and_end_once,
            backend_clients_take_each_assertion_once_and_lose_tokens_when_revoked);
    };
    (@tests $fresh:expr; $($check:ident),*) => {
        $crate::store_conformance_checks!($fresh; $($check),*);

        /// Every method of every capability trait is called by some check.
        #[tokio::test]
        async fn every_store_method_has_a_conformance_check() {
            let recorder = $crate::testsuite::Recorder::default();
            $(
                {
                    let (store, _guard) = $fresh.await;
                    let recorded = $crate::testsuite::Recorded::new(store, recorder.clone());
                    $crate::testsuite::$check(&recorded).await;
                }
            )*
            let missing: Vec<String> = $crate::testsuite::trait_methods()
                .into_iter()
                .filter(|method| !recorder.called(method))
                .collect();
            assert!(missing.is_empty(), "store methods no conformance check calls: {missing:?}");
        }
    };
}

/// Just the named checks, each as a `#[tokio::test]` on a fresh store.
#[macro_export]
macro_rules! store_conformance_checks {
    ($fresh:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let (store, _guard) = $fresh.await;
                $crate::testsuite::$check(&store).await;
            }
        )*
    };
}

/// A fixed instant plus `minutes`, so that checks do not depend on the clock.
pub fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0)
        .single()
        .expect("valid time")
        + Duration::minutes(minutes)
}

/// An audit entry by the command line, for changes made in checks.
pub fn audit(action: &str) -> AuditEvent {
    AuditEvent {
        time: at(0),
        actor: None,
        actor_label: "conformance".into(),
        action: action.into(),
        patient_id: None,
        outcome: AuditOutcome::Allowed,
        remote_addr: None,
        detail: None,
    }
}

pub async fn patient(store: &dyn Store, name: &str) -> PatientId {
    let id = PatientId::random();
    store
        .create_patient(
            NewPatient {
                id,
                display_name: name.into(),
                birth_date: None,
                mrn: None,
                created: at(0),
            },
            audit("patients.create"),
        )
        .await
        .expect("create patient")
        .id
}

/// A device of the kind its id begins with (`ecg-…`, `cuff-…`, `monitor-…`, `gateway-…`; a CGM
/// otherwise): ingest refuses readings a device's kind does not measure.
pub fn new_device(id: &DeviceId) -> NewDevice {
    let kind = match id.as_str().split('-').next() {
        Some("ecg") => DeviceKind::Ecg,
        Some("cuff") => DeviceKind::BloodPressureCuff,
        Some("monitor") => DeviceKind::VitalSignsMonitor,
        Some("gateway") => DeviceKind::Gateway,
        _ => DeviceKind::Cgm,
    };
    NewDevice {
        id: id.clone(),
        kind,
        model: "G7".into(),
        serial: format!("SN-{id}"),
        secret_hash: [7; 32],
        created: at(0),
    }
}

pub async fn device(store: &dyn Store, id: &str) -> DeviceId {
    let id = DeviceId::parse(id).expect("device id");
    store
        .enrol_device(new_device(&id), None, audit("devices.enrol"))
        .await
        .expect("enrol device");
    id
}

/// Enrols `id` and assigns it to `patient` from minute 0.
pub async fn assigned_device(store: &dyn Store, id: &str, patient: PatientId) -> DeviceId {
    let id = device(store, id).await;
    store
        .assign_device(&id, patient, at(0), audit("devices.assign"))
        .await
        .expect("assign");
    id
}

pub fn glucose(seq: i64, minute: i64, value: f64) -> Reading {
    Reading {
        seq,
        code: ObservationCode::GlucoseCgm,
        value,
        original: None,
        effective: at(minute),
    }
}

/// A device's heart-rate reading.
pub fn heart_rate(seq: i64, minute: i64, value: f64) -> Reading {
    Reading {
        code: ObservationCode::HeartRate,
        ..glucose(seq, minute, value)
    }
}

pub fn readings(device: &DeviceId, readings: Vec<Reading>) -> crate::IngestItem {
    crate::IngestItem {
        device_id: device.clone(),
        received: at(10_000),
        payload: crate::IngestPayload::Readings(readings),
    }
}

pub fn user(username: &str, role: Role, patient_id: Option<PatientId>) -> NewUser {
    NewUser {
        id: UserId::random(),
        username: username.into(),
        display_name: username.to_uppercase(),
        role,
        password_hash: "$argon2id$fake".into(),
        patient_id,
        created: at(0),
        password_change_required: false,
    }
}
