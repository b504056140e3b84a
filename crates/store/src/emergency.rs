//! Emergency ("break-the-glass") access: a clinician or nurse outside a patient's care
//! teams reads the patient's data for a limited time, for a reason they give, and an
//! administrator reviews every such access afterwards.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;
use wardline_domain::{PatientId, UserId};

use crate::audit::AuditEvent;
use crate::error::StoreError;

/// An emergency access, open or past, and its review once there is one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmergencyAccess {
    pub id: Uuid,
    pub user_id: UserId,
    /// The account that opened it, by name (for the reviewer).
    pub username: String,
    pub patient_id: PatientId,
    /// Why, in the person's words.
    pub reason: String,
    pub opened: DateTime<Utc>,
    /// Reads are allowed until then.
    pub expires: DateTime<Utc>,
    pub review: Option<EmergencyAccessReview>,
}

/// An administrator's review of an emergency access.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmergencyAccessReview {
    pub reviewer_id: UserId,
    pub reviewer: String,
    pub reviewed: DateTime<Utc>,
    pub note: String,
}

#[derive(Debug, Clone)]
pub struct NewEmergencyAccess {
    /// Chosen by the caller, so that the opening's audit entry can name it.
    pub id: Uuid,
    pub user_id: UserId,
    pub patient_id: PatientId,
    pub reason: String,
    pub opened: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

#[async_trait]
pub trait EmergencyAccessStore: Send + Sync {
    /// Stores a new emergency access with its audit entry, in one commit. `NotFound` for
    /// an unknown user or patient.
    async fn open_emergency_access(
        &self,
        access: NewEmergencyAccess,
        audit: AuditEvent,
    ) -> Result<EmergencyAccess, StoreError>;
    /// The user's emergency access to the patient that is open at `now` (the one that
    /// lasts longest, if several are), if any.
    async fn open_emergency_access_of(
        &self,
        user: UserId,
        patient: PatientId,
        now: DateTime<Utc>,
    ) -> Result<Option<EmergencyAccess>, StoreError>;
    /// Emergency accesses, newest first: all of them, or only those not reviewed yet.
    async fn emergency_accesses(
        &self,
        unreviewed_only: bool,
        limit: u32,
    ) -> Result<Vec<EmergencyAccess>, StoreError>;
    /// Records the review of an access with its audit entry, in one commit. `NotFound`
    /// for an unknown access, `Conflict` for one already reviewed (a review is never
    /// rewritten).
    async fn review_emergency_access(
        &self,
        id: Uuid,
        reviewer: UserId,
        note: String,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<EmergencyAccess, StoreError>;
}
