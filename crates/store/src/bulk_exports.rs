//! Bulk exports (FHIR Bulk Data Access): a request to write a set of patients' records as
//! NDJSON files, kept from the request until its files expire. Whichever worker claims
//! a job writes it; the claim is a lease with an attempt number, so a worker that died
//! mid-way is replaced after its lease and a slow one that outlived its lease can no
//! longer record anything for the job.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wardline_domain::PatientId;

use crate::audit::AuditEvent;
use crate::error::StoreError;

/// Where an export stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BulkExportStatus {
    /// Waiting for a worker.
    Pending,
    /// A worker is writing it (or held it and its lease has not yet run out).
    Running,
    /// Its files are ready until it expires.
    Completed,
    /// It could not be written; the reason is kept until it expires.
    Failed,
    /// Its requester cancelled it (or deleted it once complete): it is gone for them.
    Cancelled,
}

impl BulkExportStatus {
    pub const ALL: [BulkExportStatus; 5] = [
        BulkExportStatus::Pending,
        BulkExportStatus::Running,
        BulkExportStatus::Completed,
        BulkExportStatus::Failed,
        BulkExportStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BulkExportStatus::Pending => "pending",
            BulkExportStatus::Running => "running",
            BulkExportStatus::Completed => "completed",
            BulkExportStatus::Failed => "failed",
            BulkExportStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// One file of a completed export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkExportOutput {
    /// The FHIR resource type of every line.
    pub resource_type: String,
    /// The file's name within the export.
    pub file: String,
    /// Its lines.
    pub count: u64,
}

/// An export as requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBulkExport {
    pub id: Uuid,
    /// Who asked (`user:<id>`, `client:<id>`): only they may follow, cancel or download it.
    pub requester: String,
    /// The request as received, which the manifest repeats.
    pub request: String,
    /// When it was asked for: the export holds what was committed before this.
    pub created: DateTime<Utc>,
    /// The FHIR resource types to write, in the order written.
    pub types: Vec<String>,
    /// Only what changed after this.
    pub since: Option<DateTime<Utc>>,
    /// Whose records, decided by the access check when it was asked for.
    pub patients: Vec<PatientId>,
}

/// An export and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkExport {
    pub id: Uuid,
    pub requester: String,
    pub request: String,
    pub created: DateTime<Utc>,
    pub types: Vec<String>,
    pub since: Option<DateTime<Utc>>,
    pub patients: Vec<PatientId>,
    pub status: BulkExportStatus,
    /// Claims so far: the running worker's claim is this number.
    pub attempt: u32,
    /// How far the running worker is, in words.
    pub progress: Option<String>,
    /// Until when the running worker's claim holds.
    pub lease_until: Option<DateTime<Utc>>,
    pub outputs: Vec<BulkExportOutput>,
    /// Why it failed.
    pub error: Option<String>,
    pub finished: Option<DateTime<Utc>>,
    /// When its files go (completed or failed).
    pub expires: Option<DateTime<Utc>>,
}

/// How a claimed export ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkExportEnd {
    Completed(Vec<BulkExportOutput>),
    Failed(String),
}

/// Bulk exports.
#[async_trait]
pub trait BulkExportStore: Send + Sync {
    /// Records a requested export with its audit entry, in one commit.
    async fn create_bulk_export(
        &self,
        export: NewBulkExport,
        audit: AuditEvent,
    ) -> Result<BulkExport, StoreError>;

    async fn bulk_export(&self, id: Uuid) -> Result<Option<BulkExport>, StoreError>;

    /// The requester's exports that are still pending or running.
    async fn open_bulk_exports_of(&self, requester: &str) -> Result<Vec<BulkExport>, StoreError>;

    /// Claims the oldest export waiting for a worker (pending, or running under a lease
    /// that ran out before `now`) until `lease_until`, and returns it with its new
    /// attempt number; `None` when there is none.
    async fn claim_bulk_export(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<BulkExport>, StoreError>;

    /// Records the progress of the claim `attempt` and extends its lease. `false` when
    /// that claim no longer holds the export (cancelled, or claimed again after its lease
    /// ran out): the worker stops.
    async fn record_bulk_export_progress(
        &self,
        id: Uuid,
        attempt: u32,
        progress: String,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Ends the claim `attempt`'s export at `at`, its files kept until `expires`.
    /// `false` (and nothing changed) when that claim no longer holds it.
    async fn finish_bulk_export(
        &self,
        id: Uuid,
        attempt: u32,
        end: BulkExportEnd,
        at: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Cancels an export that is not cancelled yet, with its audit entry, in one commit.
    /// `false` when it was already cancelled (or does not exist).
    async fn cancel_bulk_export(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Exports whose files may go: cancelled ones, and completed or failed ones that
    /// expired by `now`.
    async fn ended_bulk_exports(&self, now: DateTime<Utc>) -> Result<Vec<Uuid>, StoreError>;

    /// Forgets an export whose files are gone.
    async fn delete_bulk_export(&self, id: Uuid) -> Result<(), StoreError>;
}
