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
    /// Who may read through it: a specialist's account, or nobody's (a link).
    pub grantee_id: Option<UserId>,
    /// The grantee's display name, for the patient's list.
    pub grantee_name: Option<String>,
    /// For a link: how it has been used.
    pub link: Option<ShareLinkState>,
    /// The account that consented (the patient's own), and when; none for a referral
    /// not yet accepted.
    pub consented_by: Option<UserId>,
    pub accepted: Option<DateTime<Utc>>,
    /// The care team member who proposed it, for a referral.
    pub proposed_by: Option<UserId>,
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

/// How a share link has been used.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShareLinkState {
    pub single_use: bool,
    /// Times it was opened with the right passcode.
    pub opened: u32,
    /// Wrong passcodes so far.
    pub passcode_failures: u32,
    /// Disabled for too many wrong passcodes, then.
    pub disabled: Option<DateTime<Utc>>,
}

/// Who a new share is for.
#[derive(Debug, Clone)]
pub enum ShareGrantee {
    /// A specialist's account.
    Person(UserId),
    /// Whoever holds the link and its passcode.
    Link {
        /// SHA-256 of the link's token.
        token_hash: [u8; 32],
        /// Argon2id hash (PHC string) of the passcode.
        passcode_hash: String,
        single_use: bool,
    },
}

/// A link's attempt to open its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAttempt {
    /// The right passcode: counts an opening.
    Opened,
    /// A wrong passcode: counts a failure, and disables the link at the `limit`th.
    WrongPasscode { limit: u32 },
}

impl Share {
    /// Whether reads through it are allowed at `now`.
    pub fn live_at(&self, now: DateTime<Utc>) -> bool {
        self.accepted.is_some()
            && self.revoked.is_none()
            && now < self.expires
            && self
                .link
                .as_ref()
                .is_none_or(|link| link.disabled.is_none())
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
    pub grantee: ShareGrantee,
    /// The patient's account, consenting now; none for a referral the care team proposes
    /// (`proposed_by`), which waits for the patient.
    pub consented_by: Option<UserId>,
    pub proposed_by: Option<UserId>,
    pub created: DateTime<Utc>,
    pub categories: Vec<ShareCategory>,
    pub data_from: DateTime<Utc>,
    pub data_to: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub message: Option<String>,
}

/// An invitation for a specialist to make their Wardline account.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Invitation {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub invited_by: UserId,
    pub created: DateTime<Utc>,
    /// It works until then, once.
    pub expires: DateTime<Utc>,
    pub accepted: Option<DateTime<Utc>>,
    /// The account it made.
    pub user_id: Option<UserId>,
}

#[derive(Debug, Clone)]
pub struct NewInvitation {
    pub id: Uuid,
    /// SHA-256 of the link's token.
    pub token_hash: [u8; 32],
    pub email: String,
    pub display_name: String,
    pub invited_by: UserId,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

/// Who takes up an invitation: a new account made with it, or one the specialist has
/// already (invited again, by another patient).
#[derive(Debug, Clone)]
pub enum InvitedAccount {
    New(crate::model::NewUser),
    Existing(UserId),
}

#[async_trait]
pub trait ShareStore: Send + Sync {
    /// Stores an invitation with its audit entry. `NotFound` for an unknown inviter.
    async fn create_invitation(
        &self,
        invitation: NewInvitation,
        audit: AuditEvent,
    ) -> Result<Invitation, StoreError>;
    /// The invitation a link's token (by its SHA-256) belongs to, whatever its state.
    async fn invitation_by_token(
        &self,
        token_hash: [u8; 32],
    ) -> Result<Option<Invitation>, StoreError>;
    /// Marks the invitation used by the account, made here or existing, with the audit
    /// entry, in one commit. `Conflict` when it was used before (nothing made) or a new
    /// account's user name is taken; `NotFound` for an unknown existing account.
    async fn accept_invitation(
        &self,
        id: Uuid,
        account: InvitedAccount,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<crate::model::User, StoreError>;
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
    /// The patient accepts a proposed referral: it opens from `at` until `expires`,
    /// with its audit entry in one commit. `false`, and nothing audited, when it was
    /// accepted or revoked before. `NotFound` for an unknown share or account.
    async fn accept_share(
        &self,
        id: Uuid,
        consented_by: UserId,
        at: DateTime<Utc>,
        expires: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Shares that expired by `now` (accepted, not revoked before) whose end is not yet
    /// in the audit trail. (Accepting a referral sets its expiry anew, and its end is
    /// recorded when that comes.)
    async fn expired_unrecorded_shares(&self, now: DateTime<Utc>)
    -> Result<Vec<Share>, StoreError>;
    /// Records that these shares' ends are in the audit trail, with the entries, in one
    /// commit; a share recorded before is left as it is (its entry is not written again).
    async fn record_share_expiries(
        &self,
        expiries: Vec<(Uuid, AuditEvent)>,
        at: DateTime<Utc>,
    ) -> Result<u32, StoreError>;
    /// The share a link token (by its SHA-256) opens, whatever its state, and the hash of
    /// its passcode.
    async fn share_by_link(
        &self,
        token_hash: [u8; 32],
    ) -> Result<Option<(Share, String)>, StoreError>;
    /// Counts a link's attempt, with its audit entry, in one commit, and returns the
    /// share as it now is: an opening (refused with `Conflict`, and nothing stored, when
    /// a single-use link has opened before, or the link is disabled, revoked or expired
    /// at `at`), or a wrong passcode (the `limit`th disables the link). `NotFound` for an
    /// unknown share.
    async fn record_link_attempt(
        &self,
        id: Uuid,
        attempt: LinkAttempt,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<Share, StoreError>;
    /// Ends a share at `at`, with its audit entry in the same commit. `false`, and
    /// nothing audited, when it was revoked already. `NotFound` for an unknown share.
    async fn revoke_share(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;
}
