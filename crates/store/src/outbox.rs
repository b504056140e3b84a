//! Where notifications go (a care team's channels) and the durable outbox that delivers
//! them at least once.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;
use wardline_domain::{CareTeamId, PatientId};

use crate::audit::AuditEvent;
use crate::error::StoreError;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Webhook,
    Email,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Email => "email",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [ChannelKind::Webhook, ChannelKind::Email]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationChannel {
    pub id: String,
    pub team_id: CareTeamId,
    pub kind: ChannelKind,
    /// The webhook URL, or comma-separated e-mail addresses.
    pub target: String,
    /// A webhook's signing secret, sealed by the caller; never serialised.
    #[serde(skip)]
    pub sealed_secret: Option<Vec<u8>>,
    /// Send only "alarm X for patient Y, open Wardline", no values.
    pub minimal: bool,
    pub created: DateTime<Utc>,
}

/// A notification to deliver once the change holding it is committed.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    /// Unique; sent to receivers so that they can drop a repeated delivery.
    pub idempotency_key: String,
    pub channel_id: String,
    pub payload: Value,
    pub next_attempt: DateTime<Utc>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Given up after the retry horizon: a dead letter for an admin to look at.
    Dead,
    /// Not delivered because its channel was removed first.
    Cancelled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Dead, Self::Cancelled]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// One entry of the outbox.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationRecord {
    pub key: i64,
    pub idempotency_key: String,
    pub recipient: Recipient,
    pub patient_id: PatientId,
    pub payload: Value,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub created: DateTime<Utc>,
    pub next_attempt: DateTime<Utc>,
    pub last_attempt: Option<DateTime<Utc>>,
    pub delivered: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// Whom an entry of the outbox is for, and why.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recipient {
    /// A care team's channel, told of an alarm.
    Alarm {
        channel: NotificationChannel,
        alarm_public_id: String,
    },
    /// A patient, reminded of a video visit at their contact address.
    VisitReminder { visit_id: Uuid, email: String },
}

impl Recipient {
    /// The channel, for an alarm's notification.
    pub fn channel(&self) -> Option<&NotificationChannel> {
        match self {
            Recipient::Alarm { channel, .. } => Some(channel),
            Recipient::VisitReminder { .. } => None,
        }
    }

    /// The alarm's public handle, for an alarm's notification.
    pub fn alarm_public_id(&self) -> Option<&str> {
        match self {
            Recipient::Alarm {
                alarm_public_id, ..
            } => Some(alarm_public_id),
            Recipient::VisitReminder { .. } => None,
        }
    }
}

/// A visit's reminder for the outbox, queued in the same commit as the visit records it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVisitReminder {
    pub idempotency_key: String,
    pub email: String,
    pub payload: Value,
    pub next_attempt: DateTime<Utc>,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    Delivered,
    Retry {
        next_attempt: DateTime<Utc>,
        error: String,
    },
    /// Given up (the retry horizon passed): a dead letter for an admin to look at.
    Dead {
        error: String,
    },
}

#[derive(Debug, Clone, Default)]
pub struct NotificationQuery {
    pub alarm_public_id: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub limit: u32,
}

#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// `Conflict` when a channel has the same id.
    async fn create_notification_channel(
        &self,
        channel: NotificationChannel,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;
    /// Stops using a channel: its past deliveries stay, those still pending are cancelled
    /// and it gets no new ones; `false` if there was none.
    async fn remove_notification_channel(
        &self,
        team: CareTeamId,
        id: &str,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Channels in use, of one team or of all.
    async fn notification_channels(
        &self,
        team: Option<CareTeamId>,
    ) -> Result<Vec<NotificationChannel>, StoreError>;

    /// Claims the pending notifications due at `now` for delivery, oldest first, and
    /// returns them as they were. Their next attempt moves to `lease_until` in the same
    /// commit: no other worker takes them meanwhile, and one whose delivery is never
    /// recorded (its worker died) is due again when the lease ends.
    async fn claim_due_outbox(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<NotificationRecord>, StoreError>;
    /// When the next pending notification is due.
    async fn next_outbox_attempt(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Records the outcome of a delivery attempt made under the claim that set the
    /// notification's lease to `claimed_until`. A retry or a dead letter counts only while
    /// that claim is the notification's latest: a worker whose lease ran out (and whose
    /// notification another worker has claimed since) must not move the other's lease or
    /// end what the other is sending. A delivery counts while the notification is pending,
    /// whoever claimed it, since it happened.
    async fn record_delivery(
        &self,
        key: i64,
        claimed_until: DateTime<Utc>,
        at: DateTime<Utc>,
        outcome: DeliveryOutcome,
    ) -> Result<(), StoreError>;
    /// Notifications, newest first.
    async fn notifications(
        &self,
        query: NotificationQuery,
    ) -> Result<Vec<NotificationRecord>, StoreError>;
    /// Puts a dead letter back in the outbox, due at `at`; `false` if it is not dead or
    /// its channel has been removed.
    async fn retry_notification(
        &self,
        key: i64,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;
}
