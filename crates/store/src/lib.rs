//! Wardline's storage. Everything the server keeps goes through the [`Store`] trait, and
//! every backend must pass the one conformance suite in [`conformance`]. SQLite is the
//! embedded backend; PostgreSQL will be the scale-out one.

mod alarms;
pub mod conformance;
mod error;
mod gateways;
mod model;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wardline_domain::{CareTeamId, DeviceId, PatientId, Role, UserId};

pub use alarms::*;
pub use error::StoreError;
pub use gateways::{GatewayReport, GatewayStatus, GatewayStore};
pub use model::*;
pub use sqlite::SqliteStore;

/// Everything Wardline stores. Methods that read patient data do not check access: the
/// API's access layer does that, in one place, before it calls them.
#[async_trait]
pub trait Store: GatewayStore + AlarmStore + Send + Sync + std::fmt::Debug + 'static {
    // People.
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError>;
    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError>;
    async fn user_credentials(&self, username: &str)
    -> Result<Option<UserCredentials>, StoreError>;
    async fn users(&self) -> Result<Vec<User>, StoreError>;
    async fn count_users_with_role(&self, role: Role) -> Result<u64, StoreError>;
    async fn set_user_disabled(&self, id: UserId, disabled: bool) -> Result<(), StoreError>;

    // Sessions, looked up by the SHA-256 of their token.
    async fn create_session(&self, session: NewSession) -> Result<(), StoreError>;
    /// The live session for a token hash: not expired at `now`, not revoked, user enabled.
    async fn session(
        &self,
        token_hash: [u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, StoreError>;
    async fn revoke_session(
        &self,
        token_hash: [u8; 32],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    // Patients and care teams.
    async fn create_patient(&self, patient: NewPatient) -> Result<Patient, StoreError>;
    async fn patient(&self, id: PatientId) -> Result<Option<Patient>, StoreError>;
    async fn patients(&self) -> Result<Vec<Patient>, StoreError>;
    async fn create_care_team(&self, name: &str) -> Result<CareTeam, StoreError>;
    async fn add_care_team_member(&self, team: CareTeamId, user: UserId) -> Result<(), StoreError>;
    async fn add_care_team_patient(
        &self,
        team: CareTeamId,
        patient: PatientId,
    ) -> Result<(), StoreError>;
    async fn care_teams(&self) -> Result<Vec<CareTeam>, StoreError>;
    /// The patients on any care team the user belongs to.
    async fn patients_of_care_team_member(
        &self,
        user: UserId,
    ) -> Result<Vec<PatientId>, StoreError>;
    async fn is_on_care_team_of(
        &self,
        user: UserId,
        patient: PatientId,
    ) -> Result<bool, StoreError>;

    // Devices.
    async fn create_device(&self, device: NewDevice) -> Result<Device, StoreError>;
    async fn device(&self, id: &DeviceId) -> Result<Option<Device>, StoreError>;
    async fn device_credentials(
        &self,
        id: &DeviceId,
    ) -> Result<Option<DeviceCredentials>, StoreError>;
    async fn devices(&self) -> Result<Vec<Device>, StoreError>;
    async fn set_device_status(
        &self,
        id: &DeviceId,
        status: DeviceStatus,
    ) -> Result<(), StoreError>;
    /// Assigns the device to a patient from `from` on, ending any assignment open then.
    async fn assign_device(
        &self,
        device: &DeviceId,
        patient: PatientId,
        from: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn device_assignments(
        &self,
        device: &DeviceId,
    ) -> Result<Vec<DeviceAssignment>, StoreError>;
    async fn devices_of_patient(&self, patient: PatientId) -> Result<Vec<Device>, StoreError>;

    /// Stores a batch of device messages in one durable commit. Returns when the commit is
    /// on disk, with one outcome per item in order. Items whose `(device, seq)` was stored
    /// before are reported as duplicates and not stored again.
    async fn ingest(&self, items: Vec<IngestItem>) -> Result<Vec<IngestOutcome>, StoreError>;

    // Health data.
    /// How many observations are stored in all; for operations, not for patient views.
    async fn count_observations(&self) -> Result<u64, StoreError>;
    async fn observations(&self, query: ObservationQuery) -> Result<ObservationPage, StoreError>;
    /// Count, minimum, maximum and mean per time bucket, oldest first.
    async fn observation_summary(
        &self,
        query: ObservationSummaryQuery,
    ) -> Result<Vec<ObservationBucket>, StoreError>;
    /// The newest observation of each code for a patient.
    async fn latest_observations(
        &self,
        patient: PatientId,
    ) -> Result<Vec<wardline_domain::Observation>, StoreError>;
    async fn waveforms(&self, query: WaveformQuery) -> Result<Vec<StoredWaveform>, StoreError>;
    /// The newest observation of each code with `from <= effective <= until` (device
    /// readings and derived observations alike).
    async fn latest_observations_between(
        &self,
        patient: PatientId,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<wardline_domain::Observation>, StoreError>;

    // What Wardline derives.
    /// Stores derived observations in one commit; returns those newly stored (an
    /// observation whose `(device, seq)` was derived before is left out).
    async fn store_derived_observations(
        &self,
        observations: Vec<NewDerivedObservation>,
    ) -> Result<Vec<wardline_domain::Observation>, StoreError>;
    /// Stores rhythm events, extending any stored with the same device, signal, kind
    /// and onset.
    async fn record_rhythm_events(&self, events: Vec<RhythmEventRecord>) -> Result<(), StoreError>;
    async fn rhythm_events(
        &self,
        query: RhythmEventQuery,
    ) -> Result<Vec<RhythmEventRecord>, StoreError>;
    /// Stores a NEWS2 result, replacing one stored for the same patient and time.
    async fn record_news2(&self, score: News2Record) -> Result<(), StoreError>;
    /// NEWS2 results with `from <= time < to`, oldest first.
    async fn news2_scores(&self, query: News2Query) -> Result<Vec<News2Record>, StoreError>;
    async fn latest_news2(&self, patient: PatientId) -> Result<Option<News2Record>, StoreError>;

    // Audit trail.
    async fn append_audit(&self, events: Vec<AuditEvent>) -> Result<(), StoreError>;
    async fn audit_events(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;
    /// Recomputes the audit hash chain; `Ok(n)` is the number of events verified.
    async fn verify_audit_chain(&self) -> Result<u64, StoreError>;
}
