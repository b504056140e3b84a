//! [`EmergencyAccessStore`] on PostgreSQL: not ported yet; every method says so.

// Placeholders until the port: remove with the last of them.
#![allow(unused_variables, unused_imports)]

use crate::*;

use super::PostgresStore;
use crate::audit::AuditEvent;
use crate::emergency::EmergencyAccessStore;
use crate::error::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;
use wardline_domain::{PatientId, UserId};

#[async_trait]
impl EmergencyAccessStore for PostgresStore {
    async fn open_emergency_access(
        &self,
        access: NewEmergencyAccess,
        audit: AuditEvent,
    ) -> Result<EmergencyAccess, StoreError> {
        Err(StoreError::Unported(
            "EmergencyAccessStore::open_emergency_access",
        ))
    }

    async fn open_emergency_access_of(
        &self,
        user: UserId,
        patient: PatientId,
        now: DateTime<Utc>,
    ) -> Result<Option<EmergencyAccess>, StoreError> {
        Err(StoreError::Unported(
            "EmergencyAccessStore::open_emergency_access_of",
        ))
    }

    async fn emergency_accesses(
        &self,
        unreviewed_only: bool,
        limit: u32,
    ) -> Result<Vec<EmergencyAccess>, StoreError> {
        Err(StoreError::Unported(
            "EmergencyAccessStore::emergency_accesses",
        ))
    }

    async fn review_emergency_access(
        &self,
        id: Uuid,
        reviewer: UserId,
        note: String,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<EmergencyAccess, StoreError> {
        Err(StoreError::Unported(
            "EmergencyAccessStore::review_emergency_access",
        ))
    }
}
