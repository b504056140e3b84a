//! [`AuditStore`] on PostgreSQL. Every write that changes something a person asked for
//! calls [`append`] inside its own transaction, so the change and its audit entry commit
//! together or not at all.
//!
//! Entries are numbered 1, 2, 3 … without gaps (`verify-audit` takes a gap for a
//! deletion), so an append does not draw its number from a sequence, which would leave a
//! gap behind every rolled-back transaction: it takes the audit lock, reads the head of
//! the chain and writes the next number itself.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::rows::*;
use super::{AUDIT_LOCK, PostgresStore, lock};
use crate::audit::{
    AuditEvent, AuditKey, AuditOutcome, AuditQuery, AuditRecord, AuditStore, CHAIN_VERSION,
    chain_hash,
};
use crate::error::StoreError;

/// For a change that may find nothing to change: appends `events` when `changed` rows
/// were changed, and says whether any were. A change that did nothing leaves no entry.
pub(crate) async fn append_if_changed(
    transaction: &deadpool_postgres::Transaction<'_>,
    audit_key: &AuditKey,
    changed: u64,
    events: &[AuditEvent],
) -> Result<bool, StoreError> {
    if changed == 0 {
        return Ok(false);
    }
    append(transaction, audit_key, events).await?;
    Ok(true)
}

/// Appends `events` to the chain inside the caller's transaction.
pub(crate) async fn append(
    transaction: &deadpool_postgres::Transaction<'_>,
    audit_key: &AuditKey,
    events: &[AuditEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    lock(transaction, AUDIT_LOCK).await?;
    let head = transaction
        .prepare_cached("SELECT key, chain_hash FROM audit_event ORDER BY key DESC LIMIT 1")
        .await?;
    let (mut key, mut previous): (i64, Vec<u8>) = match transaction.query_opt(&head, &[]).await? {
        Some(row) => (row.try_get(0)?, row.try_get(1)?),
        None => (0, Vec::new()),
    };
    let insert = transaction
        .prepare_cached(
            "INSERT INTO audit_event (key, time_ms, actor_key, actor_label, action, patient_key,
                outcome, remote_addr, detail, chain_hash, chain_version, actor_id, patient_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .await?;
    for event in events {
        let actor_key = match event.actor {
            Some(actor) => user_key(transaction, actor).await?,
            None => None,
        };
        // A refused read of a patient who does not exist is still audited, by the id
        // that was asked for.
        let patient_key = match event.patient_id {
            Some(patient) => patient_key(transaction, patient).await?,
            None => None,
        };
        let hash = chain_hash(audit_key, &previous, event);
        key += 1;
        transaction
            .execute(
                &insert,
                &[
                    &key,
                    &to_ms(event.time),
                    &actor_key,
                    &event.actor_label,
                    &event.action,
                    &patient_key,
                    &event.outcome.as_str(),
                    &event.remote_addr,
                    &event.detail,
                    &hash.as_slice(),
                    &i32::from(CHAIN_VERSION),
                    &event.actor.map(|id| id.0),
                    &event.patient_id.map(|id| id.0),
                ],
            )
            .await?;
        previous = hash.to_vec();
    }
    Ok(())
}

/// Records the audit key's fingerprint on first use, and refuses a different key after.
pub(crate) async fn remember_key(
    client: &impl GenericClient,
    key: &AuditKey,
) -> Result<(), StoreError> {
    // Two workers starting together both insert; the loser reads the winner's row.
    client
        .execute(
            "INSERT INTO audit_key (id, fingerprint) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
            &[&key.fingerprint().as_slice()],
        )
        .await?;
    let known: Vec<u8> = client
        .query_one("SELECT fingerprint FROM audit_key WHERE id = 1", &[])
        .await?
        .try_get(0)?;
    if known == key.fingerprint() {
        Ok(())
    } else {
        Err(StoreError::Invalid(
            "the audit key given is not the one this database's audit trail is linked with; \
             restore the original key file"
                .into(),
        ))
    }
}

fn outcome(text: &str) -> Result<AuditOutcome, StoreError> {
    AuditOutcome::parse(text).ok_or_else(|| StoreError::Corrupt(format!("audit outcome {text:?}")))
}

fn event_from_row(row: &tokio_postgres::Row) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        time: from_ms(row.try_get("time_ms")?)?,
        actor: row
            .try_get::<_, Option<Uuid>>("actor_id")?
            .map(wardline_domain::UserId),
        actor_label: row.try_get("actor_label")?,
        action: row.try_get("action")?,
        patient_id: row
            .try_get::<_, Option<Uuid>>("patient_id")?
            .map(wardline_domain::PatientId),
        outcome: outcome(row.try_get("outcome")?)?,
        remote_addr: row.try_get("remote_addr")?,
        detail: row.try_get("detail")?,
    })
}

const EVENT_COLUMNS: &str = "key, time_ms, actor_id, actor_label, action, patient_id, outcome, \
                             remote_addr, detail, chain_hash, chain_version";

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        append(&transaction, &self.audit_key, &events).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn audit_events(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM audit_event
                 WHERE ($1::uuid IS NULL OR patient_id = $1)
                   AND ($2::uuid IS NULL OR actor_id = $2)
                   AND ($3::text IS NULL OR action = $3)
                   AND key < $4
                 ORDER BY key DESC LIMIT $5"
            ))
            .await?;
        let limit = i64::from(query.limit.clamp(1, 10_000));
        let rows = client
            .query(
                &statement,
                &[
                    &query.patient_id.map(|id| id.0),
                    &query.actor.map(|id| id.0),
                    &query.action,
                    &query.before.unwrap_or(i64::MAX),
                    &limit,
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let event = event_from_row(row)?;
                Ok(AuditRecord {
                    sequence: row.try_get("key")?,
                    time: event.time,
                    actor: event.actor,
                    actor_label: event.actor_label,
                    action: event.action,
                    patient_id: event.patient_id,
                    outcome: event.outcome,
                    remote_addr: event.remote_addr,
                    detail: event.detail,
                    chain_hash: hex::encode(row.try_get::<_, Vec<u8>>("chain_hash")?),
                })
            })
            .collect()
    }

    async fn verify_audit_chain(&self) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        // One snapshot for the whole walk, read in pages so a long trail is not held in
        // memory at once.
        let transaction = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let page = transaction
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM audit_event WHERE key > $1 ORDER BY key LIMIT 10000"
            ))
            .await?;
        let mut previous: Vec<u8> = Vec::new();
        let mut last_key = 0i64;
        let mut verified = 0u64;
        loop {
            let rows = transaction.query(&page, &[&last_key]).await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let key: i64 = row.try_get("key")?;
                // Entries are numbered from 1 without gaps; a gap is a deletion even where
                // the chain was recomputed around it.
                if key != last_key + 1 {
                    return Err(StoreError::Corrupt(format!(
                        "audit events {} to {} are missing",
                        last_key + 1,
                        key - 1
                    )));
                }
                last_key = key;
                // This backend has only ever written the keyed chain.
                let version: i32 = row.try_get("chain_version")?;
                if version != i32::from(CHAIN_VERSION) {
                    return Err(StoreError::Corrupt(format!(
                        "audit event {key} has chain version {version}; this database only \
                         ever wrote version {CHAIN_VERSION}"
                    )));
                }
                let stored: Vec<u8> = row.try_get("chain_hash")?;
                if stored != chain_hash(&self.audit_key, &previous, &event_from_row(row)?) {
                    return Err(StoreError::Corrupt(format!(
                        "audit chain broken at event {key}"
                    )));
                }
                previous = stored;
                verified += 1;
            }
        }
        transaction.commit().await?;
        Ok(verified)
    }
}
