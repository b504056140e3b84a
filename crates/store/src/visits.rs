//! Telehealth: video visits between a patient and their care team, what came of them
//! (the signed note, its addenda, treatment orders, care plan changes made in the visit),
//! the text chat beside the video, and the clinician time spent on a patient's remote
//! monitoring, which the eligibility ledger counts.
//!
//! Every change is committed with its audit entry. A signed note is never changed again:
//! what follows it is an addendum.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use uuid::Uuid;
use wardline_domain::{DeviceId, ObservationCode, PatientId, Role, UserId};

use crate::audit::AuditEvent;
use crate::error::StoreError;

/// Where a visit stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitStatus {
    Scheduled,
    Cancelled,
    /// The patient did not come.
    NoShow,
    /// Held, and closed by the care team.
    Completed,
}

impl VisitStatus {
    pub const ALL: [VisitStatus; 4] = [
        VisitStatus::Scheduled,
        VisitStatus::Cancelled,
        VisitStatus::NoShow,
        VisitStatus::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VisitStatus::Scheduled => "scheduled",
            VisitStatus::Cancelled => "cancelled",
            VisitStatus::NoShow => "no_show",
            VisitStatus::Completed => "completed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// A care team member who attends a visit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VisitAttendee {
    pub user_id: UserId,
    pub display_name: String,
    pub role: Role,
}

/// A scheduled video visit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Visit {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub patient_name: String,
    pub scheduled_by: UserId,
    pub created: DateTime<Utc>,
    pub start: DateTime<Utc>,
    pub duration_minutes: u32,
    /// Why the visit is held, as the scheduler wrote it; shown to the patient.
    pub reason: String,
    /// The care team members who attend (the patient always does).
    pub attendees: Vec<VisitAttendee>,
    pub status: VisitStatus,
    /// When the status last changed from scheduled, and why (a cancellation's reason).
    pub status_changed: Option<DateTime<Utc>>,
    pub status_reason: Option<String>,
    /// The care plan versions made in this visit.
    pub care_plan_versions: Vec<u32>,
    /// When the patient's reminder was queued.
    pub reminded: Option<DateTime<Utc>>,
}

impl Visit {
    pub fn end(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::minutes(i64::from(self.duration_minutes))
    }

    pub fn is_attendee(&self, user: UserId) -> bool {
        self.attendees
            .iter()
            .any(|attendee| attendee.user_id == user)
    }
}

#[derive(Debug, Clone)]
pub struct NewVisit {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub scheduled_by: UserId,
    pub created: DateTime<Utc>,
    pub start: DateTime<Utc>,
    pub duration_minutes: u32,
    pub reason: String,
    pub attendees: Vec<UserId>,
}

/// Which visits to list.
#[derive(Debug, Clone, Default)]
pub struct VisitQuery {
    pub patient: Option<PatientId>,
    /// Visits this care team member attends.
    pub attendee: Option<UserId>,
    /// Visits that end after this.
    pub ending_after: Option<DateTime<Utc>>,
    /// Visits that start before this.
    pub starting_before: Option<DateTime<Utc>>,
    pub status: Option<VisitStatus>,
    /// Only visits not reminded of at their present time (the reminder pass's).
    pub unreminded: bool,
    pub limit: u32,
}

/// Someone entering or leaving a visit's room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Joined,
    Left,
}

/// One stay of one person in a visit's room.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceSpan {
    pub user_id: UserId,
    pub joined: DateTime<Utc>,
    /// Still in the room while `None`.
    pub left: Option<DateTime<Utc>>,
}

/// A message of a visit's text chat.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct VisitMessage {
    /// Increasing within the visit.
    pub seq: i64,
    pub author: UserId,
    pub author_name: String,
    pub sent: DateTime<Utc>,
    pub text: String,
}

/// The structured part of a visit note.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisitNoteText {
    pub reason: String,
    pub findings: String,
    pub plan: String,
}

/// Text added to a note after it was signed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VisitAddendum {
    pub author: UserId,
    pub author_name: String,
    pub written: DateTime<Utc>,
    pub text: String,
}

/// A visit's note: a draft until signed, read-only after.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VisitNote {
    pub visit_id: Uuid,
    #[serde(flatten)]
    pub text: VisitNoteText,
    pub author: UserId,
    pub author_name: String,
    pub updated: DateTime<Utc>,
    pub signed: Option<DateTime<Utc>>,
    pub addenda: Vec<VisitAddendum>,
}

/// A medication order written for a patient, shaped as FHIR's MedicationRequest.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreatmentOrder {
    pub id: Uuid,
    pub patient_id: PatientId,
    /// The visit it was written in, if any.
    pub visit_id: Option<Uuid>,
    pub ordered_by: UserId,
    pub ordered_by_name: String,
    pub created: DateTime<Utc>,
    pub medication: String,
    /// E.g. "500 mg".
    pub dose: String,
    /// E.g. "twice a day".
    pub frequency: String,
    pub start: NaiveDate,
    pub stop: Option<NaiveDate>,
    /// For the patient, in plain words.
    pub instructions: String,
}

#[derive(Debug, Clone)]
pub struct NewTreatmentOrder {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub visit_id: Option<Uuid>,
    pub ordered_by: UserId,
    pub created: DateTime<Utc>,
    pub medication: String,
    pub dose: String,
    pub frequency: String,
    pub start: NaiveDate,
    pub stop: Option<NaiveDate>,
    pub instructions: String,
}

/// Where a stretch of monitoring time comes from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitoringSource {
    /// Time in a visit's room, from joining to leaving.
    Visit,
    /// The timer on the patient's pages.
    Timer,
    /// A correction of earlier time (may be negative), with its reason.
    Correction,
}

impl MonitoringSource {
    pub const ALL: [MonitoringSource; 3] = [
        MonitoringSource::Visit,
        MonitoringSource::Timer,
        MonitoringSource::Correction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MonitoringSource::Visit => "visit",
            MonitoringSource::Timer => "timer",
            MonitoringSource::Correction => "correction",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|source| source.as_str() == text)
    }
}

/// Clinician time spent on one patient's remote monitoring.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonitoringTime {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub user_id: UserId,
    pub user_name: String,
    /// When the time was spent (its start).
    pub started: DateTime<Utc>,
    pub seconds: i64,
    pub source: MonitoringSource,
    pub visit_id: Option<Uuid>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewMonitoringTime {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub user_id: UserId,
    pub started: DateTime<Utc>,
    pub seconds: i64,
    pub source: MonitoringSource,
    pub visit_id: Option<Uuid>,
    pub reason: Option<String>,
}

/// That a device sent readings of a code within a quarter of an hour: the days of device
/// data are counted from these, in any time zone (every zone's offset is a whole number
/// of quarter hours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadingQuarter {
    pub start: DateTime<Utc>,
    pub device_id: DeviceId,
    pub code: ObservationCode,
}

/// The length of a [`ReadingQuarter`], in milliseconds.
pub const QUARTER_MS: i64 = 15 * 60 * 1000;

#[async_trait]
pub trait VisitStore: Send + Sync {
    /// Stores a visit with its audit entry. `NotFound` for an unknown patient or account.
    async fn create_visit(&self, visit: NewVisit, audit: AuditEvent) -> Result<Visit, StoreError>;
    async fn visit(&self, id: Uuid) -> Result<Option<Visit>, StoreError>;
    /// The visits matching `query`, by start time.
    async fn visits(&self, query: VisitQuery) -> Result<Vec<Visit>, StoreError>;
    /// Moves a scheduled visit, with its audit entry, and forgets its reminder (the new
    /// time gets one). `Conflict` unless it is scheduled; `NotFound` for an unknown one.
    async fn reschedule_visit(
        &self,
        id: Uuid,
        start: DateTime<Utc>,
        duration_minutes: u32,
        audit: AuditEvent,
    ) -> Result<Visit, StoreError>;
    /// Closes a scheduled visit as cancelled, no-show or completed, with its audit entry.
    /// `Conflict` unless it is scheduled (or `status` is scheduled); `NotFound` for an
    /// unknown one.
    async fn close_visit(
        &self,
        id: Uuid,
        status: VisitStatus,
        at: DateTime<Utc>,
        reason: Option<String>,
        audit: AuditEvent,
    ) -> Result<Visit, StoreError>;
    /// Records someone entering or leaving the room, with its audit entry. Joining while
    /// in the room, or leaving while not, changes nothing but the audit. Leaving adds the
    /// stay to the patient's monitoring time when `count_time` (a care team member's).
    /// Returns the room's stays.
    async fn record_presence(
        &self,
        id: Uuid,
        user: UserId,
        presence: Presence,
        at: DateTime<Utc>,
        count_time: bool,
        audit: AuditEvent,
    ) -> Result<Vec<PresenceSpan>, StoreError>;
    /// Everyone's stays in the room, by when they joined.
    async fn visit_presence(&self, id: Uuid) -> Result<Vec<PresenceSpan>, StoreError>;
    /// Adds a chat message, with its audit entry.
    async fn add_visit_message(
        &self,
        id: Uuid,
        author: UserId,
        at: DateTime<Utc>,
        text: String,
        audit: AuditEvent,
    ) -> Result<VisitMessage, StoreError>;
    /// The chat's messages with a `seq` above `after`, in order.
    async fn visit_messages(&self, id: Uuid, after: i64) -> Result<Vec<VisitMessage>, StoreError>;
    /// Writes (or rewrites) the note's draft, with its audit entry. `Conflict` once it is
    /// signed.
    async fn save_visit_note(
        &self,
        id: Uuid,
        author: UserId,
        text: VisitNoteText,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<VisitNote, StoreError>;
    /// Signs the note as its author, with its audit entry. `Conflict` when it was signed
    /// before, or another wrote the draft; `NotFound` without a draft.
    async fn sign_visit_note(
        &self,
        id: Uuid,
        author: UserId,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<VisitNote, StoreError>;
    /// Adds an addendum to a signed note, with its audit entry. `Conflict` while it is a
    /// draft; `NotFound` without a note.
    async fn add_visit_addendum(
        &self,
        id: Uuid,
        author: UserId,
        at: DateTime<Utc>,
        text: String,
        audit: AuditEvent,
    ) -> Result<VisitNote, StoreError>;
    async fn visit_note(&self, id: Uuid) -> Result<Option<VisitNote>, StoreError>;
    /// Notes that a care plan version was made in the visit.
    async fn link_care_plan_version(
        &self,
        id: Uuid,
        version: u32,
        audit: AuditEvent,
    ) -> Result<Visit, StoreError>;
    /// Queues the patient's reminder of a scheduled visit in the outbox and marks the
    /// visit reminded, with the audit entry, in one commit; `false`, and nothing queued
    /// or audited, when it was reminded before or is not scheduled.
    async fn queue_visit_reminder(
        &self,
        id: Uuid,
        reminder: crate::outbox::NewVisitReminder,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Stores a treatment order with its audit entry. `NotFound` for an unknown patient,
    /// account or visit.
    async fn create_treatment_order(
        &self,
        order: NewTreatmentOrder,
        audit: AuditEvent,
    ) -> Result<TreatmentOrder, StoreError>;
    /// The patient's orders, newest first.
    async fn treatment_orders(&self, patient: PatientId)
    -> Result<Vec<TreatmentOrder>, StoreError>;
    /// Stores monitoring time with its audit entry.
    async fn record_monitoring_time(
        &self,
        time: NewMonitoringTime,
        audit: AuditEvent,
    ) -> Result<MonitoringTime, StoreError>;
    /// The patient's monitoring time started in `[from, to)`, by start.
    async fn monitoring_time(
        &self,
        patient: PatientId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<MonitoringTime>, StoreError>;
    /// The quarter hours in `[from, to)` in which the patient's devices sent readings (of
    /// what they measured, not what Wardline derived), by start.
    async fn reading_quarters(
        &self,
        patient: PatientId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ReadingQuarter>, StoreError>;
}
