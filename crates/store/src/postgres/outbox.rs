//! [`OutboxStore`] on PostgreSQL: channels and the durable outbox, shared by every worker.
//!
//! A delivery's outcome is recorded only while the notification is still pending, and a
//! channel's removal and the writes that add or revive its notifications take its row
//! lock (exclusive and shared), so no pending notification survives its channel's
//! removal, whichever worker wrote it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;
use wardline_domain::{CareTeamId, PatientId};

use super::PostgresStore;
use super::audit::append;
use super::rows::{from_json, from_ms, key_of, to_ms, unique_violation};
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::outbox::{
    ChannelKind, DeliveryOutcome, DeliveryStatus, NotificationChannel, NotificationQuery,
    NotificationRecord, OutboxStore, Recipient,
};

const CHANNEL_COLUMNS: &str =
    "c.id, t.id, c.kind, c.target, c.sealed_secret, c.minimal, c.created_ms";
const CHANNEL_FROM: &str = "notification_channel c JOIN care_team t ON t.key = c.team_key";

fn channel_from_row(row: &Row, offset: usize) -> Result<NotificationChannel, StoreError> {
    let kind: &str = row.try_get(offset + 2)?;
    Ok(NotificationChannel {
        id: row.try_get(offset)?,
        team_id: CareTeamId(row.try_get(offset + 1)?),
        kind: ChannelKind::parse(kind)
            .ok_or_else(|| StoreError::Corrupt(format!("channel kind {kind:?}")))?,
        target: row.try_get(offset + 3)?,
        sealed_secret: row.try_get(offset + 4)?,
        minimal: row.try_get(offset + 5)?,
        created: from_ms(row.try_get(offset + 6)?)?,
    })
}

const NOTIFICATION_COLUMNS: &str = "n.key, n.idempotency_key, a.public_id, p.id, n.payload, \
    n.status, n.attempts, n.created_ms, n.next_attempt_ms, n.last_attempt_ms, n.delivered_ms, \
    n.last_error, c.id, t.id, c.kind, c.target, c.sealed_secret, c.minimal, c.created_ms, \
    v.id, n.email_to";
/// An alarm's notification (alarm and channel) or a visit's reminder (visit and address).
const NOTIFICATION_FROM: &str = "notification n
    LEFT JOIN alarm a ON a.key = n.alarm_key
    LEFT JOIN visit v ON v.key = n.visit_key
    JOIN patient p ON p.key = coalesce(a.patient_key, v.patient_key)
    LEFT JOIN notification_channel c ON c.key = n.channel_key
    LEFT JOIN care_team t ON t.key = c.team_key";

fn notification_from_row(row: &Row) -> Result<NotificationRecord, StoreError> {
    let status: &str = row.try_get(5)?;
    let attempts: i32 = row.try_get(6)?;
    Ok(NotificationRecord {
        key: row.try_get(0)?,
        idempotency_key: row.try_get(1)?,
        recipient: match row.try_get::<_, Option<String>>(2)? {
            Some(alarm_public_id) => Recipient::Alarm {
                channel: channel_from_row(row, 12)?,
                alarm_public_id,
            },
            None => Recipient::VisitReminder {
                visit_id: row.try_get(19)?,
                email: row.try_get(20)?,
            },
        },
        patient_id: PatientId(row.try_get::<_, Uuid>(3)?),
        payload: from_json(row.try_get(4)?, "notification")?,
        status: DeliveryStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery status {status:?}")))?,
        attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
        created: from_ms(row.try_get(7)?)?,
        next_attempt: from_ms(row.try_get(8)?)?,
        last_attempt: row.try_get::<_, Option<i64>>(9)?.map(from_ms).transpose()?,
        delivered: row
            .try_get::<_, Option<i64>>(10)?
            .map(from_ms)
            .transpose()?,
        last_error: row.try_get(11)?,
    })
}

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn create_notification_channel(
        &self,
        channel: NotificationChannel,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let team = channel.team_id;
        let team_key = key_of(
            &transaction,
            "care_team",
            &team.0,
            &format!("care team {team}"),
        )
        .await?;
        transaction
            .execute(
                "INSERT INTO notification_channel (id, team_key, kind, target, sealed_secret,
                    minimal, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &channel.id,
                    &team_key,
                    &channel.kind.as_str(),
                    &channel.target,
                    &channel.sealed_secret,
                    &channel.minimal,
                    &to_ms(channel.created),
                ],
            )
            .await
            .map_err(|error| {
                unique_violation(error, format!("notification channel {}", channel.id))
            })?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn remove_notification_channel(
        &self,
        team: CareTeamId,
        id: &str,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // The update waits for the commits that hold the channel under a share lock;
        // the cancellation after it, a statement of its own, then sees what they stored.
        let removed = transaction
            .query_opt(
                "UPDATE notification_channel SET removed_ms = $3
                 WHERE id = $1 AND removed_ms IS NULL
                   AND team_key = (SELECT key FROM care_team WHERE id = $2)
                 RETURNING key",
                &[&id, &team.0, &to_ms(at)],
            )
            .await?;
        if let Some(row) = &removed {
            let channel_key: i64 = row.try_get(0)?;
            // What still waits for delivery through the channel is never sent.
            transaction
                .execute(
                    "UPDATE notification SET status = 'cancelled', last_error = 'channel removed'
                     WHERE status = 'pending' AND channel_key = $1",
                    &[&channel_key],
                )
                .await?;
        }
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(removed.is_some())
    }

    async fn notification_channels(
        &self,
        team: Option<CareTeamId>,
    ) -> Result<Vec<NotificationChannel>, StoreError> {
        self.read_all(
            &format!(
                "SELECT {CHANNEL_COLUMNS} FROM {CHANNEL_FROM}
                 WHERE c.removed_ms IS NULL AND ($1::uuid IS NULL OR t.id = $1) ORDER BY c.key"
            ),
            &[&team.map(|team| team.0)],
            |row| channel_from_row(row, 0),
        )
        .await
    }

    async fn claim_due_outbox(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // Rows another worker is claiming are passed over, not waited for: each worker
        // takes its own.
        let statement = transaction
            .prepare_cached(&format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM {NOTIFICATION_FROM}
                 WHERE n.status = 'pending' AND n.next_attempt_ms <= $1
                 ORDER BY n.next_attempt_ms, n.key LIMIT $2
                 FOR UPDATE OF n SKIP LOCKED"
            ))
            .await?;
        let due = transaction
            .query(&statement, &[&to_ms(now), &i64::from(limit.max(1))])
            .await?
            .iter()
            .map(notification_from_row)
            .collect::<Result<Vec<_>, StoreError>>()?;
        let keys: Vec<i64> = due.iter().map(|notification| notification.key).collect();
        let lease = transaction
            .prepare_cached("UPDATE notification SET next_attempt_ms = $2 WHERE key = ANY($1)")
            .await?;
        transaction
            .execute(&lease, &[&keys, &to_ms(lease_until)])
            .await?;
        transaction.commit().await?;
        Ok(due)
    }

    async fn next_outbox_attempt(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT min(next_attempt_ms) FROM notification WHERE status = 'pending'",
            )
            .await?;
        let next: Option<i64> = client.query_one(&statement, &[]).await?.try_get(0)?;
        next.map(from_ms).transpose()
    }

    async fn record_delivery(
        &self,
        key: i64,
        claimed_until: DateTime<Utc>,
        at: DateTime<Utc>,
        outcome: DeliveryOutcome,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let at = to_ms(at);
        let (status, delivered, next_attempt, error) = match outcome {
            DeliveryOutcome::Delivered => ("delivered", Some(at), at, None),
            DeliveryOutcome::Retry {
                next_attempt,
                error,
            } => ("pending", None, to_ms(next_attempt), Some(error)),
            DeliveryOutcome::Dead { error } => ("dead", None, at, Some(error)),
        };
        // One statement: an outcome counts only while the notification is pending, so one
        // that was cancelled or delivered meanwhile keeps what it became; a failure counts
        // only under the latest claim, whose lease is the next attempt (see the trait).
        let statement = client
            .prepare_cached(
                "UPDATE notification SET status = $2, attempts = attempts + 1,
                    last_attempt_ms = $3, delivered_ms = $4, next_attempt_ms = $5, last_error = $6
                 WHERE key = $1 AND status = 'pending'
                   AND ($2 = 'delivered' OR next_attempt_ms = $7)",
            )
            .await?;
        client
            .execute(
                &statement,
                &[
                    &key,
                    &status,
                    &at,
                    &delivered,
                    &next_attempt,
                    &error,
                    &to_ms(claimed_until),
                ],
            )
            .await?;
        Ok(())
    }

    async fn notifications(
        &self,
        query: NotificationQuery,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM {NOTIFICATION_FROM}
                 WHERE ($1::text IS NULL OR a.public_id = $1) AND ($2::text IS NULL OR n.status = $2)
                 ORDER BY n.key DESC LIMIT $3"
            ))
            .await?;
        client
            .query(
                &statement,
                &[
                    &query.alarm_public_id,
                    &query.status.map(DeliveryStatus::as_str),
                    &i64::from(query.limit.max(1)),
                ],
            )
            .await?
            .iter()
            .map(notification_from_row)
            .collect()
    }

    async fn retry_notification(
        &self,
        key: i64,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // The channel is held under a share lock while its dead letter is revived, so a
        // removal either happened before (and the letter stays dead) or cancels it after.
        // A visit's reminder has no channel: it goes to its address.
        let reminder = transaction
            .query_opt(
                "SELECT 1 FROM notification WHERE key = $1 AND channel_key IS NULL",
                &[&key],
            )
            .await?
            .is_some();
        let channel_in_use = reminder
            || transaction
                .query_opt(
                    "SELECT 1 FROM notification_channel
                     WHERE key = (SELECT channel_key FROM notification WHERE key = $1)
                       AND removed_ms IS NULL
                     FOR SHARE",
                    &[&key],
                )
                .await?
                .is_some();
        let changed = if channel_in_use {
            transaction
                .execute(
                    "UPDATE notification SET status = 'pending', next_attempt_ms = $2, created_ms = $2
                     WHERE key = $1 AND status = 'dead'",
                    &[&key, &to_ms(at)],
                )
                .await?
        } else {
            0
        };
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(changed > 0)
    }
}
