//! [`AuditStore`] on SQLite. Every write job that changes something a person asked for
//! calls [`append`] inside its own transaction, so the change and its audit entry commit
//! together or not at all.

use async_trait::async_trait;
use ring::digest;
use rusqlite::{OptionalExtension, params};

use super::rows::{optional_key_of, parse_uuid};
use super::writer::Writing;
use super::{SqliteStore, from_ms, to_ms};
use crate::audit::{
    AuditEvent, AuditKey, AuditOutcome, AuditQuery, AuditRecord, AuditStore, CHAIN_VERSION,
    chain_hash, unkeyed_chain_hash,
};
use crate::error::StoreError;

/// For a change that may find nothing to change: appends `events` when `changed` rows
/// were changed, and says whether any were. A change that did nothing leaves no entry.
pub(super) fn append_if_changed(
    connection: &Writing<'_>,
    changed: usize,
    events: &[AuditEvent],
) -> Result<bool, StoreError> {
    if changed == 0 {
        return Ok(false);
    }
    append(connection, events)?;
    Ok(true)
}

/// Appends `events` to the chain inside the caller's transaction.
pub(super) fn append(connection: &Writing<'_>, events: &[AuditEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut previous: Vec<u8> = connection
        .prepare_cached("SELECT chain_hash FROM audit_event ORDER BY key DESC LIMIT 1")?
        .query_row([], |row| row.get(0))
        .optional()?
        .unwrap_or_default();
    let mut insert = connection.prepare_cached(
        "INSERT INTO audit_event (time_ms, actor_key, actor_label, action, patient_key, outcome,
            remote_addr, detail, chain_hash, chain_version, actor_id, patient_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    for event in events {
        let actor_key = optional_key_of(
            connection,
            "app_user",
            event.actor.map(|id| id.to_string()),
            "user",
        )
        .or_else(unknown_is_none)?;
        // A refused read of a patient who does not exist is still audited, by the id
        // that was asked for.
        let patient_key = optional_key_of(
            connection,
            "patient",
            event.patient_id.map(|id| id.to_string()),
            "patient",
        )
        .or_else(unknown_is_none)?;
        let hash = chain_hash(connection.audit_key, &previous, event);
        insert.execute(params![
            to_ms(event.time),
            actor_key,
            event.actor_label,
            event.action,
            patient_key,
            event.outcome.as_str(),
            event.remote_addr,
            event.detail,
            hash.as_slice(),
            CHAIN_VERSION,
            event.actor.map(|id| id.to_string()),
            event.patient_id.map(|id| id.to_string()),
        ])?;
        previous = hash.to_vec();
    }
    Ok(())
}

/// Records the audit key's fingerprint on first use, and refuses a different key after.
pub(super) fn remember_key(
    connection: &rusqlite::Connection,
    key: &AuditKey,
) -> Result<(), StoreError> {
    let known: Option<Vec<u8>> = connection
        .query_row(
            "SELECT fingerprint FROM audit_key WHERE id = 1",
            [],
            |row| row.get(0),
        )
        .optional()?;
    match known {
        Some(fingerprint) if fingerprint == key.fingerprint() => Ok(()),
        Some(_) => Err(StoreError::Invalid(
            "the audit key given is not the one this database's audit trail is linked with; \
             restore the original key file"
                .into(),
        )),
        None => {
            connection.execute(
                "INSERT INTO audit_key (id, fingerprint) VALUES (1, ?1)",
                [key.fingerprint().as_slice()],
            )?;
            Ok(())
        }
    }
}

fn unknown_is_none(error: StoreError) -> Result<Option<i64>, StoreError> {
    match error {
        StoreError::NotFound { .. } => Ok(None),
        other => Err(other),
    }
}

/// The chain function of schema versions 1 to 4, which hashed SQLite's internal keys;
/// kept only to verify entries written then.
fn legacy_chain_hash(
    previous: &[u8],
    event: &AuditEvent,
    actor_key: Option<i64>,
    patient_key: Option<i64>,
) -> Vec<u8> {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(previous);
    let mut field = |bytes: &[u8]| {
        context.update(&(bytes.len() as u64).to_le_bytes());
        context.update(bytes);
    };
    field(&to_ms(event.time).to_le_bytes());
    field(&actor_key.unwrap_or(-1).to_le_bytes());
    field(event.actor_label.as_bytes());
    field(event.action.as_bytes());
    field(&patient_key.unwrap_or(-1).to_le_bytes());
    field(event.outcome.as_str().as_bytes());
    field(event.remote_addr.as_deref().unwrap_or("").as_bytes());
    field(event.detail.as_deref().unwrap_or("").as_bytes());
    context.finish().as_ref().to_vec()
}

fn outcome(text: &str) -> Result<AuditOutcome, StoreError> {
    AuditOutcome::parse(text).ok_or_else(|| StoreError::Corrupt(format!("audit outcome {text:?}")))
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.write(move |connection| append(connection, &events))
            .await
    }

    async fn audit_events(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT e.key, e.time_ms, coalesce(e.actor_id, u.id), e.actor_label, e.action,
                        coalesce(e.patient_id, p.id), e.outcome, e.remote_addr, e.detail, e.chain_hash
                 FROM audit_event e LEFT JOIN app_user u ON u.key = e.actor_key LEFT JOIN patient p ON p.key = e.patient_key
                 WHERE (?1 IS NULL OR e.patient_key = (SELECT key FROM patient WHERE id = ?1))
                   AND (?2 IS NULL OR e.actor_key = (SELECT key FROM app_user WHERE id = ?2))
                   AND (?3 IS NULL OR e.action = ?3)
                   AND e.key < ?4
                 ORDER BY e.key DESC LIMIT ?5",
            )?;
            let rows = statement.query_map(
                params![
                    query.patient_id.map(|id| id.to_string()),
                    query.actor.map(|id| id.to_string()),
                    query.action,
                    query.before.unwrap_or(i64::MAX),
                    query.limit.clamp(1, 10_000)
                ],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, Option<String>>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, Option<String>>(5)?,
                        row.get::<_, String>(6)?,
                        row.get::<_, Option<String>>(7)?,
                        row.get::<_, Option<String>>(8)?,
                        row.get::<_, Vec<u8>>(9)?,
                    ))
                },
            )?;
            rows.map(|row| {
                let (key, time, actor, label, action, patient, result, remote, detail, hash) =
                    row?;
                Ok(AuditRecord {
                    sequence: key,
                    time: from_ms(time)?,
                    actor: actor.map(|id| parse_uuid(&id, "user")).transpose()?,
                    actor_label: label,
                    action,
                    patient_id: patient.map(|id| parse_uuid(&id, "patient")).transpose()?,
                    outcome: outcome(&result)?,
                    remote_addr: remote,
                    detail,
                    chain_hash: hex::encode(hash),
                })
            })
            .collect()
        })
        .await
    }

    async fn verify_audit_chain(&self) -> Result<u64, StoreError> {
        let audit_key = std::sync::Arc::clone(&self.audit_key);
        self.read(move |connection| {
            let mut statement = connection.prepare(
                "SELECT key, time_ms, actor_key, actor_label, action, patient_key, outcome,
                        remote_addr, detail, chain_hash, chain_version, actor_id, patient_id
                 FROM audit_event ORDER BY key",
            )?;
            let mut rows = statement.query([])?;
            let mut previous: Vec<u8> = Vec::new();
            let mut previous_key: Option<i64> = None;
            let mut newest_version = 0u8;
            let mut verified = 0;
            while let Some(row) = rows.next()? {
                let key: i64 = row.get(0)?;
                // Entries are numbered from 1 without gaps; a gap is a deletion even where
                // the chain was recomputed around it.
                let expected_key = previous_key.map_or(1, |previous| previous + 1);
                if key != expected_key {
                    return Err(StoreError::Corrupt(format!(
                        "audit events {expected_key} to {} are missing",
                        key - 1
                    )));
                }
                previous_key = Some(key);
                let actor: Option<String> = row.get(11)?;
                let patient: Option<String> = row.get(12)?;
                let event = AuditEvent {
                    time: from_ms(row.get(1)?)?,
                    actor: actor.map(|id| parse_uuid(&id, "user")).transpose()?,
                    actor_label: row.get(3)?,
                    action: row.get(4)?,
                    patient_id: patient.map(|id| parse_uuid(&id, "patient")).transpose()?,
                    outcome: outcome(&row.get::<_, String>(6)?)?,
                    remote_addr: row.get(7)?,
                    detail: row.get(8)?,
                };
                let stored: Vec<u8> = row.get(9)?;
                let version: u8 = row.get(10)?;
                // Old chain functions are accepted only for entries written before the
                // newer one was in use: an entry cannot step back to an unkeyed hash.
                if version < newest_version {
                    return Err(StoreError::Corrupt(format!(
                        "audit event {key} uses chain version {version} after version {newest_version}"
                    )));
                }
                newest_version = version;
                let expected = match version {
                    1 => legacy_chain_hash(&previous, &event, row.get(2)?, row.get(5)?),
                    2 => unkeyed_chain_hash(&previous, &event).to_vec(),
                    CHAIN_VERSION => chain_hash(&audit_key, &previous, &event).to_vec(),
                    other => {
                        return Err(StoreError::Corrupt(format!(
                            "audit event {key} has unknown chain version {other}"
                        )));
                    }
                };
                if stored != expected {
                    return Err(StoreError::Corrupt(format!(
                        "audit chain broken at event {key}"
                    )));
                }
                previous = stored;
                verified += 1;
            }
            Ok(verified)
        })
        .await
    }
}
