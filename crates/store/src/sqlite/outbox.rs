//! [`OutboxStore`] on SQLite: channels and the durable outbox.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Row, params};
use wardline_domain::CareTeamId;

use super::audit::append;
use super::rows::*;
use super::{SqliteStore, from_ms, to_ms};
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::outbox::*;

const CHANNEL_COLUMNS: &str =
    "c.id, t.id, c.kind, c.target, c.sealed_secret, c.minimal, c.created_ms";
const CHANNEL_FROM: &str = "notification_channel c JOIN care_team t ON t.key = c.team_key";

fn channel_from_row(row: &Row<'_>, offset: usize) -> Result<NotificationChannel, StoreError> {
    let team: String = row.get(offset + 1)?;
    Ok(NotificationChannel {
        id: row.get(offset)?,
        team_id: parse_uuid::<CareTeamId>(&team, "care team")?,
        kind: {
            let kind: String = row.get(offset + 2)?;
            ChannelKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("channel kind {kind:?}")))?
        },
        target: row.get(offset + 3)?,
        sealed_secret: row.get(offset + 4)?,
        minimal: row.get(offset + 5)?,
        created: from_ms(row.get(offset + 6)?)?,
    })
}

const NOTIFICATION_COLUMNS: &str = "n.key, n.idempotency_key, a.public_id, p.id, n.payload, n.status, n.attempts, n.created_ms, n.next_attempt_ms, n.last_attempt_ms, n.delivered_ms, n.last_error, c.id, t.id, c.kind, c.target, c.sealed_secret, c.minimal, c.created_ms, v.id, n.email_to";
/// An alarm's notification (alarm and channel) or a visit's reminder (visit and address).
const NOTIFICATION_FROM: &str = "notification n
    LEFT JOIN alarm a ON a.key = n.alarm_key
    LEFT JOIN visit v ON v.key = n.visit_key
    JOIN patient p ON p.key = coalesce(a.patient_key, v.patient_key)
    LEFT JOIN notification_channel c ON c.key = n.channel_key
    LEFT JOIN care_team t ON t.key = c.team_key";

fn notification_from_row(row: &Row<'_>) -> Result<NotificationRecord, StoreError> {
    let patient: String = row.get(3)?;
    let payload: String = row.get(4)?;
    Ok(NotificationRecord {
        key: row.get(0)?,
        idempotency_key: row.get(1)?,
        recipient: match row.get::<_, Option<String>>(2)? {
            Some(alarm_public_id) => Recipient::Alarm {
                channel: channel_from_row(row, 12)?,
                alarm_public_id,
            },
            None => {
                let visit: String = row.get(19)?;
                Recipient::VisitReminder {
                    visit_id: parse_uuid(&visit, "visit")?,
                    email: row.get(20)?,
                }
            }
        },
        patient_id: parse_uuid(&patient, "patient")?,
        payload: from_json(&payload, "notification")?,
        status: {
            let status: String = row.get(5)?;
            DeliveryStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("delivery status {status:?}")))?
        },
        attempts: count(row.get(6)?),
        created: from_ms(row.get(7)?)?,
        next_attempt: from_ms(row.get(8)?)?,
        last_attempt: row.get::<_, Option<i64>>(9)?.map(from_ms).transpose()?,
        delivered: row.get::<_, Option<i64>>(10)?.map(from_ms).transpose()?,
        last_error: row.get(11)?,
    })
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn create_notification_channel(
        &self,
        channel: NotificationChannel,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        self.write(move |connection| {
            let team_key = key_of(
                connection,
                "care_team",
                &channel.team_id.to_string(),
                "care team",
            )?;
            connection
                .prepare_cached(
                    "INSERT INTO notification_channel (id, team_key, kind, target, sealed_secret,
                        minimal, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    channel.id,
                    team_key,
                    channel.kind.as_str(),
                    channel.target,
                    channel.sealed_secret,
                    channel.minimal,
                    to_ms(channel.created),
                ])
                .map_err(|error| {
                    unique_violation(error, format!("notification channel {}", channel.id))
                })?;
            append(connection, &[audit])
        })
        .await
    }

    async fn remove_notification_channel(
        &self,
        team: CareTeamId,
        id: &str,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |connection| {
            let changed = connection
                .prepare_cached(
                    "UPDATE notification_channel SET removed_ms = ?3
                     WHERE id = ?1 AND removed_ms IS NULL
                       AND team_key = (SELECT key FROM care_team WHERE id = ?2)",
                )?
                .execute(params![id, team.to_string(), to_ms(at)])?;
            if changed > 0 {
                // What still waits for delivery through the channel is never sent.
                connection
                    .prepare_cached(
                        "UPDATE notification SET status = 'cancelled', last_error = 'channel removed'
                         WHERE status = 'pending'
                           AND channel_key = (SELECT key FROM notification_channel WHERE id = ?1)",
                    )?
                    .execute([&id])?;
            }
            append(connection, &[audit])?;
            Ok(changed > 0)
        })
        .await
    }

    async fn notification_channels(
        &self,
        team: Option<CareTeamId>,
    ) -> Result<Vec<NotificationChannel>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {CHANNEL_COLUMNS} FROM {CHANNEL_FROM}
                 WHERE c.removed_ms IS NULL AND (?1 IS NULL OR t.id = ?1) ORDER BY c.key"
            ))?;
            let mut rows = statement.query([team.map(|team| team.to_string())])?;
            let mut channels = Vec::new();
            while let Some(row) = rows.next()? {
                channels.push(channel_from_row(row, 0)?);
            }
            Ok(channels)
        })
        .await
    }

    async fn claim_due_outbox(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        self.write(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM {NOTIFICATION_FROM}
                 WHERE n.status = 'pending' AND n.next_attempt_ms <= ?1
                 ORDER BY n.next_attempt_ms, n.key LIMIT ?2"
            ))?;
            let mut rows = statement.query(params![to_ms(now), i64::from(limit.max(1))])?;
            let mut due = Vec::new();
            while let Some(row) = rows.next()? {
                due.push(notification_from_row(row)?);
            }
            let mut lease = connection
                .prepare_cached("UPDATE notification SET next_attempt_ms = ?2 WHERE key = ?1")?;
            for notification in &due {
                lease.execute(params![notification.key, to_ms(lease_until)])?;
            }
            Ok(due)
        })
        .await
    }

    async fn next_outbox_attempt(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(move |connection| {
            let next: Option<i64> = connection
                .prepare_cached(
                    "SELECT min(next_attempt_ms) FROM notification WHERE status = 'pending'",
                )?
                .query_row([], |row| row.get(0))?;
            next.map(from_ms).transpose()
        })
        .await
    }

    async fn record_delivery(
        &self,
        key: i64,
        claimed_until: DateTime<Utc>,
        at: DateTime<Utc>,
        outcome: DeliveryOutcome,
    ) -> Result<(), StoreError> {
        self.write(move |connection| {
            let at = to_ms(at);
            let claim = to_ms(claimed_until);
            // An outcome counts only while the notification is pending; a failure only
            // under the latest claim, whose lease is the next attempt (see the trait).
            let mut statement = connection.prepare_cached(
                "UPDATE notification SET status = ?2, attempts = attempts + 1,
                    last_attempt_ms = ?3, delivered_ms = ?4, next_attempt_ms = ?5, last_error = ?6
                 WHERE key = ?1 AND status = 'pending' AND (?2 = 'delivered' OR next_attempt_ms = ?7)",
            )?;
            match outcome {
                DeliveryOutcome::Delivered => statement.execute(params![
                    key,
                    "delivered",
                    at,
                    Some(at),
                    at,
                    None::<String>,
                    claim
                ])?,
                DeliveryOutcome::Retry {
                    next_attempt,
                    error,
                } => statement.execute(params![
                    key,
                    "pending",
                    at,
                    None::<i64>,
                    to_ms(next_attempt),
                    Some(error),
                    claim
                ])?,
                DeliveryOutcome::Dead { error } => {
                    statement.execute(params![
                    key,
                    "dead",
                    at,
                    None::<i64>,
                    at,
                    Some(error),
                    claim
                ])?
                }
            };
            Ok(())
        })
        .await
    }

    async fn notifications(
        &self,
        query: NotificationQuery,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM {NOTIFICATION_FROM}
                 WHERE (?1 IS NULL OR a.public_id = ?1) AND (?2 IS NULL OR n.status = ?2)
                 ORDER BY n.key DESC LIMIT ?3"
            ))?;
            let mut rows = statement.query(params![
                query.alarm_public_id,
                query.status.map(DeliveryStatus::as_str),
                i64::from(query.limit.max(1)),
            ])?;
            let mut found = Vec::new();
            while let Some(row) = rows.next()? {
                found.push(notification_from_row(row)?);
            }
            Ok(found)
        })
        .await
    }

    async fn retry_notification(
        &self,
        key: i64,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        self.write(move |connection| {
            let changed = connection
                .prepare_cached(
                    "UPDATE notification SET status = 'pending', next_attempt_ms = ?2, created_ms = ?2
                     WHERE key = ?1 AND status = 'dead'
                       AND (channel_key IS NULL
                            OR channel_key IN (SELECT key FROM notification_channel WHERE removed_ms IS NULL))",
                )?
                .execute(params![key, to_ms(at)])?;
            append(connection, &[audit])?;
            Ok(changed > 0)
        })
        .await
    }
}
