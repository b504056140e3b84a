//! A store that notes every method called on it, and the list of methods there are: the
//! conformance suite's check that no store method goes untested.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use wardline_alerting::EscalationPolicy;
use wardline_domain::{CareTeamId, DeviceId, Observation, PatientId, Role, UserId};

use crate::*;

/// The methods called so far, shared by every [`Recorded`] store of one run.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<BTreeSet<String>>>);

impl Recorder {
    fn note(&self, method: &str) {
        if let Ok(mut called) = self.0.lock() {
            called.insert(method.to_owned());
        }
    }

    /// Whether `Trait::method` was called.
    pub fn called(&self, method: &str) -> bool {
        self.0.lock().is_ok_and(|called| called.contains(method))
    }
}

/// A store that passes every call on to `inner` and notes it in the recorder.
#[derive(Debug)]
pub struct Recorded<S> {
    inner: S,
    recorder: Recorder,
}

impl<S> Recorded<S> {
    pub fn new(inner: S, recorder: Recorder) -> Self {
        Self { inner, recorder }
    }
}

/// Every method of every capability trait, as `Trait::method`, read from the traits'
/// own source so that a method added there is expected here at once.
pub fn trait_methods() -> Vec<String> {
    let sources = [
        include_str!("../people.rs"),
        include_str!("../emergency.rs"),
        include_str!("../shares.rs"),
        include_str!("../devices.rs"),
        include_str!("../ingest.rs"),
        include_str!("../clinical.rs"),
        include_str!("../audit.rs"),
        include_str!("../alarms.rs"),
        include_str!("../outbox.rs"),
        include_str!("../gateways.rs"),
        include_str!("../nightscout.rs"),
        include_str!("../templates.rs"),
        include_str!("../visits.rs"),
        include_str!("../bulk_exports.rs"),
        include_str!("../backend_clients.rs"),
        include_str!("../events.rs"),
    ];
    let mut methods = Vec::new();
    for source in sources {
        let mut current: Option<String> = None;
        for line in source.lines() {
            let code = line.trim();
            if code.starts_with("//") {
                continue;
            }
            if let Some(rest) = code.strip_prefix("pub trait ") {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                current = Some(name);
                continue;
            }
            if line == "}" {
                current = None;
                continue;
            }
            let Some(trait_name) = &current else {
                continue;
            };
            let signature = code.strip_prefix("async ").unwrap_or(code);
            if let Some(rest) = signature.strip_prefix("fn ") {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                methods.push(format!("{trait_name}::{name}"));
            }
        }
    }
    methods
}

macro_rules! recorded {
    ($trait:ident { $(async fn $name:ident(&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty;)* }) => {
        #[async_trait]
        impl<S: Store> $trait for Recorded<S> {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.recorder.note(concat!(stringify!($trait), "::", stringify!($name)));
                    self.inner.$name($($arg),*).await
                }
            )*
        }
    };
}

type R<T> = Result<T, StoreError>;

recorded!(PeopleStore {
    async fn create_user(&self, user: NewUser, audit: AuditEvent) -> R<User>;
    async fn user(&self, id: UserId) -> R<Option<User>>;
    async fn user_credentials(&self, username: &str) -> R<Option<UserCredentials>>;
    async fn users(&self) -> R<Vec<User>>;
    async fn count_users_with_role(&self, role: Role) -> R<u64>;
    async fn set_user_disabled(&self, id: UserId, disabled: bool, at: DateTime<Utc>, audit: AuditEvent) -> R<()>;
    async fn set_password(&self, id: UserId, password_hash: String, change_required: bool, keep: Option<[u8; 32]>, at: DateTime<Utc>, audit: AuditEvent) -> R<()>;
    async fn set_second_factor(&self, id: UserId, sealed: Option<Vec<u8>>, audit: AuditEvent) -> R<()>;
    async fn accept_second_factor_step(&self, id: UserId, sealed: Vec<u8>, step: i64, audit: Option<AuditEvent>) -> R<bool>;
    async fn record_session_activity(&self, token_hash: [u8; 32], at: DateTime<Utc>) -> R<()>;
    async fn create_session(&self, session: NewSession, audit: AuditEvent) -> R<()>;
    async fn session(&self, token_hash: [u8; 32], now: DateTime<Utc>) -> R<Option<Session>>;
    async fn revoke_session(&self, token_hash: [u8; 32], now: DateTime<Utc>, audit: AuditEvent) -> R<bool>;
    async fn record_login_failure(&self, username: &str, address: &str, at: DateTime<Utc>, forget_before: DateTime<Utc>) -> R<()>;
    async fn login_failures(&self, username: &str, address: &str, since: DateTime<Utc>, limit: u32) -> R<Vec<LoginFailure>>;
    async fn forget_login_failure(&self, username: &str, address: &str, at: DateTime<Utc>) -> R<()>;
    async fn clear_login_failures(&self, username: &str, address: &str) -> R<()>;
    async fn create_patient(&self, patient: NewPatient, audit: AuditEvent) -> R<Patient>;
    async fn patient(&self, id: PatientId) -> R<Option<Patient>>;
    async fn patients(&self) -> R<Vec<Patient>>;
    async fn create_care_team(&self, team: NewCareTeam, audit: AuditEvent) -> R<CareTeam>;
    async fn add_care_team_member(&self, team: CareTeamId, user: UserId, audit: AuditEvent) -> R<()>;
    async fn add_care_team_patient(&self, team: CareTeamId, patient: PatientId, audit: AuditEvent) -> R<()>;
    async fn remove_care_team_member(&self, team: CareTeamId, user: UserId, audit: AuditEvent) -> R<bool>;
    async fn remove_care_team_patient(&self, team: CareTeamId, patient: PatientId, audit: AuditEvent) -> R<bool>;
    async fn care_teams(&self) -> R<Vec<CareTeam>>;
    async fn care_teams_of_patient(&self, patient: PatientId) -> R<Vec<CareTeamId>>;
    async fn patients_of_care_team_member(&self, user: UserId) -> R<Vec<PatientId>>;
    async fn is_on_care_team_of(&self, user: UserId, patient: PatientId) -> R<bool>;
    async fn set_contact_email(&self, user: UserId, email: Option<String>, at: DateTime<Utc>, audit: AuditEvent) -> R<()>;
    async fn contact_email(&self, user: UserId) -> R<Option<String>>;
    async fn patient_contact_emails(&self, patient: PatientId) -> R<Vec<String>>;
});

recorded!(EmergencyAccessStore {
    async fn open_emergency_access(&self, access: NewEmergencyAccess, audit: AuditEvent) -> R<EmergencyAccess>;
    async fn open_emergency_access_of(&self, user: UserId, patient: PatientId, now: DateTime<Utc>) -> R<Option<EmergencyAccess>>;
    async fn emergency_accesses(&self, unreviewed_only: bool, limit: u32) -> R<Vec<EmergencyAccess>>;
    async fn review_emergency_access(&self, id: uuid::Uuid, reviewer: UserId, note: String, at: DateTime<Utc>, audit: AuditEvent) -> R<EmergencyAccess>;
});

recorded!(ShareStore {
    async fn create_invitation(&self, invitation: NewInvitation, audit: AuditEvent) -> R<Invitation>;
    async fn invitation_by_token(&self, token_hash: [u8; 32]) -> R<Option<Invitation>>;
    async fn accept_invitation(&self, id: uuid::Uuid, account: InvitedAccount, at: DateTime<Utc>, audit: AuditEvent) -> R<User>;
    async fn create_share(&self, share: NewShare, audit: AuditEvent) -> R<Share>;
    async fn share(&self, id: uuid::Uuid) -> R<Option<Share>>;
    async fn shares_of_patient(&self, patient: PatientId) -> R<Vec<Share>>;
    async fn live_shares(&self, grantee: UserId, patient: PatientId, now: DateTime<Utc>) -> R<Vec<Share>>;
    async fn patients_sharing_with(&self, grantee: UserId, now: DateTime<Utc>) -> R<Vec<PatientId>>;
    async fn accept_share(&self, id: uuid::Uuid, consented_by: UserId, at: DateTime<Utc>, expires: DateTime<Utc>, audit: AuditEvent) -> R<bool>;
    async fn expired_unrecorded_shares(&self, now: DateTime<Utc>) -> R<Vec<Share>>;
    async fn record_share_expiries(&self, expiries: Vec<(uuid::Uuid, AuditEvent)>, at: DateTime<Utc>) -> R<u32>;
    async fn share_by_link(&self, token_hash: [u8; 32]) -> R<Option<(Share, String)>>;
    async fn record_link_attempt(&self, id: uuid::Uuid, attempt: LinkAttempt, at: DateTime<Utc>, audit: AuditEvent) -> R<Share>;
    async fn revoke_share(&self, id: uuid::Uuid, at: DateTime<Utc>, audit: AuditEvent) -> R<bool>;
});

recorded!(VisitStore {
    async fn create_visit(&self, visit: NewVisit, audit: AuditEvent) -> R<Visit>;
    async fn visit(&self, id: uuid::Uuid) -> R<Option<Visit>>;
    async fn visits(&self, query: VisitQuery) -> R<Vec<Visit>>;
    async fn reschedule_visit(&self, id: uuid::Uuid, start: DateTime<Utc>, duration_minutes: u32, audit: AuditEvent) -> R<Visit>;
    async fn close_visit(&self, id: uuid::Uuid, status: VisitStatus, at: DateTime<Utc>, reason: Option<String>, audit: AuditEvent) -> R<Visit>;
    async fn record_presence(&self, id: uuid::Uuid, user: UserId, presence: Presence, at: DateTime<Utc>, count_time: bool, audit: AuditEvent) -> R<Vec<PresenceSpan>>;
    async fn visit_presence(&self, id: uuid::Uuid) -> R<Vec<PresenceSpan>>;
    async fn add_visit_message(&self, id: uuid::Uuid, author: UserId, at: DateTime<Utc>, text: String, audit: AuditEvent) -> R<VisitMessage>;
    async fn visit_messages(&self, id: uuid::Uuid, after: i64) -> R<Vec<VisitMessage>>;
    async fn save_visit_note(&self, id: uuid::Uuid, author: UserId, text: VisitNoteText, at: DateTime<Utc>, audit: AuditEvent) -> R<VisitNote>;
    async fn sign_visit_note(&self, id: uuid::Uuid, author: UserId, at: DateTime<Utc>, audit: AuditEvent) -> R<VisitNote>;
    async fn add_visit_addendum(&self, id: uuid::Uuid, author: UserId, at: DateTime<Utc>, text: String, audit: AuditEvent) -> R<VisitNote>;
    async fn visit_note(&self, id: uuid::Uuid) -> R<Option<VisitNote>>;
    async fn link_care_plan_version(&self, id: uuid::Uuid, version: u32, audit: AuditEvent) -> R<Visit>;
    async fn queue_visit_reminder(&self, id: uuid::Uuid, reminder: NewVisitReminder, at: DateTime<Utc>, audit: AuditEvent) -> R<bool>;
    async fn create_treatment_order(&self, order: NewTreatmentOrder, audit: AuditEvent) -> R<TreatmentOrder>;
    async fn treatment_orders(&self, patient: PatientId) -> R<Vec<TreatmentOrder>>;
    async fn record_monitoring_time(&self, time: NewMonitoringTime, audit: AuditEvent) -> R<MonitoringTime>;
    async fn monitoring_time(&self, patient: PatientId, from: DateTime<Utc>, to: DateTime<Utc>) -> R<Vec<MonitoringTime>>;
    async fn reading_quarters(&self, patient: PatientId, from: DateTime<Utc>, to: DateTime<Utc>) -> R<Vec<ReadingQuarter>>;
});

recorded!(BackendClientStore {
    async fn create_backend_client(&self, client: NewBackendClient, audit: AuditEvent) -> R<BackendClient>;
    async fn backend_client(&self, id: &str) -> R<Option<BackendClient>>;
    async fn backend_clients(&self) -> R<Vec<BackendClient>>;
    async fn revoke_backend_client(&self, id: &str, at: DateTime<Utc>, audit: AuditEvent) -> R<bool>;
    async fn record_client_assertion(&self, client: &str, jti: &str, expires: DateTime<Utc>, now: DateTime<Utc>) -> R<bool>;
    async fn create_client_token(&self, token_hash: [u8; 32], client: &str, scopes: String, expires: DateTime<Utc>, audit: AuditEvent) -> R<()>;
    async fn client_token(&self, token_hash: [u8; 32], now: DateTime<Utc>) -> R<Option<ClientToken>>;
});

recorded!(BulkExportStore {
    async fn create_bulk_export(&self, export: NewBulkExport, audit: AuditEvent) -> R<BulkExport>;
    async fn bulk_export(&self, id: uuid::Uuid) -> R<Option<BulkExport>>;
    async fn open_bulk_exports_of(&self, requester: &str) -> R<Vec<BulkExport>>;
    async fn claim_bulk_export(&self, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> R<Option<BulkExport>>;
    async fn record_bulk_export_progress(&self, id: uuid::Uuid, attempt: u32, progress: String, lease_until: DateTime<Utc>) -> R<bool>;
    async fn finish_bulk_export(&self, id: uuid::Uuid, attempt: u32, end: BulkExportEnd, at: DateTime<Utc>, expires: DateTime<Utc>) -> R<bool>;
    async fn cancel_bulk_export(&self, id: uuid::Uuid, at: DateTime<Utc>, audit: AuditEvent) -> R<bool>;
    async fn ended_bulk_exports(&self, now: DateTime<Utc>) -> R<Vec<uuid::Uuid>>;
    async fn delete_bulk_export(&self, id: uuid::Uuid) -> R<()>;
});

recorded!(DeviceStore {
    async fn enrol_device(&self, device: NewDevice, assignment: Option<InitialAssignment>, audit: AuditEvent) -> R<Device>;
    async fn device(&self, id: &DeviceId) -> R<Option<Device>>;
    async fn device_credentials(&self, id: &DeviceId) -> R<Option<DeviceCredentials>>;
    async fn add_device_certificate(&self, id: &DeviceId, certificate: DeviceCertificate, audit: AuditEvent) -> R<()>;
    async fn device_by_certificate(&self, fingerprint: [u8; 32]) -> R<Option<CertifiedDevice>>;
    async fn devices(&self) -> R<Vec<Device>>;
    async fn set_device_status(&self, id: &DeviceId, status: DeviceStatus, audit: AuditEvent) -> R<()>;
    async fn assign_device(&self, device: &DeviceId, patient: PatientId, from: DateTime<Utc>, audit: AuditEvent) -> R<()>;
    async fn device_assignments(&self, device: &DeviceId) -> R<Vec<DeviceAssignment>>;
    async fn assignments_of_patient(&self, patient: PatientId) -> R<Vec<DeviceAssignment>>;
    async fn devices_of_patient(&self, patient: PatientId) -> R<Vec<Device>>;
    async fn record_device_report(&self, report: DeviceReport) -> R<()>;
});

recorded!(IngestStore {
    async fn ingest(&self, items: Vec<IngestItem>) -> R<Vec<IngestOutcome>>;
    async fn ingest_all_or_none(&self, items: Vec<IngestItem>) -> R<(bool, Vec<IngestOutcome>)>;
});

recorded!(ClinicalStore {
    async fn count_observations(&self) -> R<u64>;
    async fn observations(&self, query: ObservationQuery) -> R<ObservationPage>;
    async fn observation_summary(&self, query: ObservationSummaryQuery) -> R<Vec<ObservationBucket>>;
    async fn latest_observations(&self, patient: PatientId) -> R<Vec<Observation>>;
    async fn observation_by_seq(&self, device: &DeviceId, derived: bool, seq: i64) -> R<Option<Observation>>;
    async fn latest_observations_between(&self, patient: PatientId, from: DateTime<Utc>, until: DateTime<Utc>) -> R<Vec<Observation>>;
    async fn waveforms(&self, query: WaveformQuery) -> R<Vec<StoredWaveform>>;
    async fn waveform_by_seq(&self, device: &DeviceId, seq: i64) -> R<Option<(PatientId, StoredWaveform)>>;
    async fn record_analysis(&self, results: AnalysisResults) -> R<Vec<Observation>>;
    async fn rhythm_events(&self, query: RhythmEventQuery) -> R<Vec<RhythmEventRecord>>;
    async fn news2_scores(&self, query: News2Query) -> R<Vec<News2Record>>;
    async fn latest_news2(&self, patient: PatientId) -> R<Option<News2Record>>;
});

recorded!(AuditStore {
    async fn append_audit(&self, events: Vec<AuditEvent>) -> R<()>;
    async fn audit_events(&self, query: AuditQuery) -> R<Vec<AuditRecord>>;
    async fn verify_audit_chain(&self) -> R<u64>;
});

recorded!(AlarmStore {
    async fn append_care_plan_version(&self, record: CarePlanVersionRecord, audit: AuditEvent) -> R<()>;
    async fn care_plan_versions(&self, patient: PatientId) -> R<Vec<CarePlanVersionRecord>>;
    async fn current_care_plans(&self) -> R<Vec<CarePlanVersionRecord>>;
    async fn monitor_states(&self) -> R<Vec<(PatientId, Value)>>;
    async fn save_alarm_changes(&self, changes: Vec<AlarmChange>, checkpoint: Option<EvaluationCheckpoint>, audit: Vec<AuditEvent>) -> R<()>;
    async fn alarm_by_public_id(&self, public_id: &str) -> R<Option<AlarmRecord>>;
    async fn unresolved_alarms(&self) -> R<Vec<AlarmRecord>>;
    async fn alarms(&self, query: AlarmQuery) -> R<Vec<AlarmRecord>>;
    async fn alarm_events(&self, public_id: &str) -> R<Vec<AlarmEventRecord>>;
    async fn set_escalation_policy(&self, team: CareTeamId, policy: EscalationPolicy, at: DateTime<Utc>, audit: AuditEvent) -> R<()>;
    async fn escalation_policies(&self) -> R<Vec<(CareTeamId, EscalationPolicy)>>;
});

recorded!(OutboxStore {
    async fn create_notification_channel(&self, channel: NotificationChannel, audit: AuditEvent) -> R<()>;
    async fn remove_notification_channel(&self, team: CareTeamId, id: &str, at: DateTime<Utc>, audit: AuditEvent) -> R<bool>;
    async fn notification_channels(&self, team: Option<CareTeamId>) -> R<Vec<NotificationChannel>>;
    async fn claim_due_outbox(&self, now: DateTime<Utc>, limit: u32, lease_until: DateTime<Utc>) -> R<Vec<NotificationRecord>>;
    async fn next_outbox_attempt(&self) -> R<Option<DateTime<Utc>>>;
    async fn record_delivery(&self, key: i64, claimed_until: DateTime<Utc>, at: DateTime<Utc>, outcome: DeliveryOutcome) -> R<()>;
    async fn notifications(&self, query: NotificationQuery) -> R<Vec<NotificationRecord>>;
    async fn retry_notification(&self, key: i64, at: DateTime<Utc>, audit: AuditEvent) -> R<bool>;
});

recorded!(GatewayStore {
    async fn gateway_devices(&self, gateway: &DeviceId) -> R<Vec<DeviceId>>;
    async fn record_gateway_contact(&self, report: GatewayReport) -> R<()>;
    async fn gateway_statuses(&self) -> R<Vec<GatewayStatus>>;
});

recorded!(NightscoutStore {
    async fn create_nightscout_site(&self, site: NewNightscoutSite, audit: AuditEvent) -> R<NightscoutSite>;
    async fn nightscout_site(&self, id: &str) -> R<Option<NightscoutSite>>;
    async fn nightscout_sites_of_patient(&self, patient: PatientId) -> R<Vec<NightscoutSite>>;
    async fn store_nightscout_documents(&self, site: &str, documents: Vec<NewNightscoutDocument>) -> R<Vec<NightscoutDocument>>;
    async fn nightscout_documents(&self, query: NightscoutDocumentQuery) -> R<Vec<NightscoutDocument>>;
});

recorded!(TemplateStore {
    async fn add_mapping_template(&self, template: NewMappingTemplate, audit: AuditEvent) -> R<MappingTemplate>;
    async fn mapping_template(&self, id: &str) -> R<Option<MappingTemplate>>;
    async fn mapping_templates(&self) -> R<Vec<MappingTemplate>>;
    async fn put_mapping_template_in_force(&self, id: &str, at: DateTime<Utc>, audit: AuditEvent) -> R<MappingTemplate>;
    async fn retire_mapping_template(&self, id: &str, at: DateTime<Utc>, audit: AuditEvent) -> R<MappingTemplate>;
    async fn mapping_templates_in_force(&self) -> R<Vec<MappingTemplate>>;
});

#[async_trait]
impl<S: Store> EventLog for Recorded<S> {
    async fn event_tail(&self) -> R<EventCursor> {
        self.recorder.note("EventLog::event_tail");
        self.inner.event_tail().await
    }

    async fn events_after(
        &self,
        cursor: &EventCursor,
        filter: EventFilter,
        limit: u32,
    ) -> R<EventBatch> {
        self.recorder.note("EventLog::events_after");
        self.inner.events_after(cursor, filter, limit).await
    }

    async fn events_between(
        &self,
        after: &EventCursor,
        through: &EventCursor,
        filter: EventFilter,
        limit: u32,
    ) -> R<EventBatch> {
        self.recorder.note("EventLog::events_between");
        self.inner
            .events_between(after, through, filter, limit)
            .await
    }

    async fn checkpoint(&self, consumer: &str) -> R<Option<EventCursor>> {
        self.recorder.note("EventLog::checkpoint");
        self.inner.checkpoint(consumer).await
    }

    fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.recorder.note("EventLog::commits");
        self.inner.commits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_list_is_read_from_the_traits() {
        let methods = trait_methods();
        for expected in [
            "PeopleStore::create_user",
            "DeviceStore::record_device_report",
            "IngestStore::ingest",
            "ClinicalStore::record_analysis",
            "AuditStore::verify_audit_chain",
            "AlarmStore::escalation_policies",
            "OutboxStore::retry_notification",
            "GatewayStore::gateway_statuses",
            "EventLog::commits",
        ] {
            assert!(
                methods.iter().any(|m| m == expected),
                "{expected} in {methods:?}"
            );
        }
        // Helper functions beside a trait are not methods of it.
        assert!(
            !methods.iter().any(|m| m.ends_with("::chain_hash")),
            "{methods:?}"
        );
        assert_eq!(methods.len(), 153, "{methods:?}");
    }
}
