//! Shares: a patient opens part of their record (categories of data measured within a
//! window) to one person outside their care teams until an expiry, and may revoke it.
//! Each is consent recorded as data: who consented, when, to what and for how long.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;
use wardline_domain::sharing::{ShareCategory, ShareScope};
use wardline_domain::{PatientId, UserId};

use crate::audit::AuditEvent;
use crate::error::StoreError;

/// A share, live or past.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Share {
    pub id: Uuid,
    pub patient_id: PatientId,
    /// Who may read through it.
    pub grantee_id: UserId,
    /// The grantee's display name, for the patient's list.
    pub grantee_name: String,
    /// The account that consented (the patient's own).
    pub consented_by: UserId,
    pub created: DateTime<Utc>,
    pub categories: Vec<ShareCategory>,
    /// The data it opens was measured in `[data_from, data_to)`.
    pub data_from: DateTime<Utc>,
    pub data_to: DateTime<Utc>,
    /// Reads are allowed until then.
    pub expires: DateTime<Utc>,
    pub message: Option<String>,
    pub revoked: Option<DateTime<Utc>>,
}

impl Share {
    /// Whether reads through it are allowed at `now`.
    pub fn live_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked.is_none() && now < self.expires
    }

    pub fn scope(&self) -> ShareScope {
        ShareScope {
            categories: self.categories.clone(),
            from: self.data_from,
            to: self.data_to,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewShare {
    /// Chosen by the caller, so that the share's audit entry can name it.
    pub id: Uuid,
    pub patient_id: PatientId,
    pub grantee_id: UserId,
    pub consented_by: UserId,
    pub created: DateTime<Utc>,
    pub categories: Vec<ShareCategory>,
    pub data_from: DateTime<Utc>,
    pub data_to: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub message: Option<String>,
}

#[async_trait]
pub trait ShareStore: Send + Sync {
    /// Stores a share with its audit entry, in one commit. `NotFound` for an unknown
    /// patient or account.
    async fn create_share(&self, share: NewShare, audit: AuditEvent) -> Result<Share, StoreError>;
    async fn share(&self, id: Uuid) -> Result<Option<Share>, StoreError>;
    /// Every share of the patient's record, newest first.
    async fn shares_of_patient(&self, patient: PatientId) -> Result<Vec<Share>, StoreError>;
    /// The shares of the patient's record with the grantee that are live at `now`.
    async fn live_shares(
        &self,
        grantee: UserId,
        patient: PatientId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Share>, StoreError>;
    /// The patients who have a share live at `now` with the grantee.
    async fn patients_sharing_with(
        &self,
        grantee: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<PatientId>, StoreError>;
    /// Ends a share at `at`, with its audit entry in the same commit. `false`, and
    /// nothing audited, when it was revoked already. `NotFound` for an unknown share.
    async fn revoke_share(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;
}
