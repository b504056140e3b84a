//! [`ShareStore`] on PostgreSQL: not ported yet; every method says so.

// Placeholders until the port: remove with the last of them.
#![allow(unused_variables, unused_imports)]

use crate::*;

use super::PostgresStore;
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::shares::ShareStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;
use wardline_domain::sharing::{ShareCategory, ShareScope};
use wardline_domain::{PatientId, UserId};

#[async_trait]
impl ShareStore for PostgresStore {
    async fn create_invitation(
        &self,
        invitation: NewInvitation,
        audit: AuditEvent,
    ) -> Result<Invitation, StoreError> {
        Err(StoreError::Unported("ShareStore::create_invitation"))
    }

    async fn invitation_by_token(
        &self,
        token_hash: [u8; 32],
    ) -> Result<Option<Invitation>, StoreError> {
        Err(StoreError::Unported("ShareStore::invitation_by_token"))
    }

    async fn accept_invitation(
        &self,
        id: Uuid,
        account: InvitedAccount,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<crate::model::User, StoreError> {
        Err(StoreError::Unported("ShareStore::accept_invitation"))
    }

    async fn create_share(&self, share: NewShare, audit: AuditEvent) -> Result<Share, StoreError> {
        Err(StoreError::Unported("ShareStore::create_share"))
    }

    async fn share(&self, id: Uuid) -> Result<Option<Share>, StoreError> {
        Err(StoreError::Unported("ShareStore::share"))
    }

    async fn shares_of_patient(&self, patient: PatientId) -> Result<Vec<Share>, StoreError> {
        Err(StoreError::Unported("ShareStore::shares_of_patient"))
    }

    async fn live_shares(
        &self,
        grantee: UserId,
        patient: PatientId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Share>, StoreError> {
        Err(StoreError::Unported("ShareStore::live_shares"))
    }

    async fn patients_sharing_with(
        &self,
        grantee: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<PatientId>, StoreError> {
        Err(StoreError::Unported("ShareStore::patients_sharing_with"))
    }

    async fn accept_share(
        &self,
        id: Uuid,
        consented_by: UserId,
        at: DateTime<Utc>,
        expires: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Unported("ShareStore::accept_share"))
    }

    async fn expired_unrecorded_shares(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<Share>, StoreError> {
        Err(StoreError::Unported(
            "ShareStore::expired_unrecorded_shares",
        ))
    }

    async fn record_share_expiries(
        &self,
        expiries: Vec<(Uuid, AuditEvent)>,
        at: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        Err(StoreError::Unported("ShareStore::record_share_expiries"))
    }

    async fn share_by_link(
        &self,
        token_hash: [u8; 32],
    ) -> Result<Option<(Share, String)>, StoreError> {
        Err(StoreError::Unported("ShareStore::share_by_link"))
    }

    async fn record_link_attempt(
        &self,
        id: Uuid,
        attempt: LinkAttempt,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<Share, StoreError> {
        Err(StoreError::Unported("ShareStore::record_link_attempt"))
    }

    async fn revoke_share(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Unported("ShareStore::revoke_share"))
    }
}
