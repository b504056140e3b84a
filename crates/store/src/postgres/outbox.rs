//! [`OutboxStore`] on PostgreSQL: not ported yet; every method says so.

// Placeholders until the port: remove with the last of them.
#![allow(unused_variables, unused_imports)]

use crate::*;

use super::PostgresStore;
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::outbox::OutboxStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wardline_domain::{CareTeamId, PatientId};

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn create_notification_channel(
        &self,
        channel: NotificationChannel,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unported(
            "OutboxStore::create_notification_channel",
        ))
    }

    async fn remove_notification_channel(
        &self,
        team: CareTeamId,
        id: &str,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Unported(
            "OutboxStore::remove_notification_channel",
        ))
    }

    async fn notification_channels(
        &self,
        team: Option<CareTeamId>,
    ) -> Result<Vec<NotificationChannel>, StoreError> {
        Err(StoreError::Unported("OutboxStore::notification_channels"))
    }

    async fn due_outbox(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        Err(StoreError::Unported("OutboxStore::due_outbox"))
    }

    async fn next_outbox_attempt(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Err(StoreError::Unported("OutboxStore::next_outbox_attempt"))
    }

    async fn record_delivery(
        &self,
        key: i64,
        at: DateTime<Utc>,
        outcome: DeliveryOutcome,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unported("OutboxStore::record_delivery"))
    }

    async fn notifications(
        &self,
        query: NotificationQuery,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        Err(StoreError::Unported("OutboxStore::notifications"))
    }

    async fn retry_notification(
        &self,
        key: i64,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Unported("OutboxStore::retry_notification"))
    }
}
