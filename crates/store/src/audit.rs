//! The audit trail: who did what to whose data, when and from where, as an append-only
//! chain in which every entry's hash covers the one before it.
//!
//! The chain is computed here, over the entry's public fields only (the actor's and the
//! patient's public identifiers, never a backend's internal keys), so every backend
//! computes the same chain and `verify-audit` means the same thing on each.
//!
//! Since chain version 3 each link is an HMAC under the audit key, which is kept outside
//! the data folder: someone with the database file alone can delete or edit entries but
//! cannot compute a chain that verifies. Deleting the newest entries (or all of them)
//! leaves a chain that still verifies, so the chain's head is also signed now and then
//! as an [`AuditCheckpoint`] and exported outside the database; `verify-audit` checks
//! that the newest exported checkpoint is still in the trail.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ring::{digest, hmac};
use serde::{Deserialize, Serialize};
use wardline_domain::{PatientId, UserId};

use crate::error::StoreError;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Allowed,
    Denied,
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Allowed => "allowed",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }
}

/// One entry of the audit trail: who did what to whose data, when, from where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub time: DateTime<Utc>,
    pub actor: Option<UserId>,
    /// Username or device id, kept even when the actor is unknown (a failed login).
    pub actor_label: String,
    /// Dotted action name, e.g. `observations.read`, `login.failed`.
    pub action: String,
    pub patient_id: Option<PatientId>,
    pub outcome: AuditOutcome,
    pub remote_addr: Option<String>,
    /// Free text without health data, e.g. the code and range that were read.
    pub detail: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub sequence: i64,
    pub time: DateTime<Utc>,
    pub actor: Option<UserId>,
    pub actor_label: String,
    pub action: String,
    pub patient_id: Option<PatientId>,
    pub outcome: AuditOutcome,
    pub remote_addr: Option<String>,
    pub detail: Option<String>,
    pub chain_hash: String,
}

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub patient_id: Option<PatientId>,
    pub actor: Option<UserId>,
    pub action: Option<String>,
    /// Only events with a smaller sequence number (for paging backwards).
    pub before: Option<i64>,
    pub limit: u32,
}

impl AuditOutcome {
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Allowed, Self::Denied, Self::Failed]
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
    }
}

/// The version of the chain function that [`chain_hash`] computes; stored with each
/// entry so that a verifier knows how an old entry was hashed.
pub const CHAIN_VERSION: u8 = 3;

/// The secret behind the audit chain and its checkpoints. Two keys are derived from it,
/// one per use, so that a checkpoint's signature is never also a valid link.
#[derive(Clone)]
pub struct AuditKey {
    chain: hmac::Key,
    checkpoints: hmac::Key,
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

/// Shortest secret accepted, in bytes.
pub const AUDIT_SECRET_BYTES: usize = 32;

impl AuditKey {
    /// From a secret of at least [`AUDIT_SECRET_BYTES`] random bytes.
    pub fn from_secret(secret: &[u8]) -> Result<Self, StoreError> {
        if secret.len() < AUDIT_SECRET_BYTES {
            return Err(StoreError::Invalid(format!(
                "the audit key must be at least {AUDIT_SECRET_BYTES} bytes"
            )));
        }
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derive =
            |purpose: &[u8]| hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, purpose).as_ref());
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(hmac::sign(&root, b"wardline audit key fingerprint").as_ref());
        Ok(Self {
            chain: derive(b"wardline audit chain v3"),
            checkpoints: derive(b"wardline audit checkpoint v1"),
            fingerprint,
        })
    }

    /// Names the key without revealing it: a database remembers which key links its
    /// trail, and refuses another.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// A new random secret, for a new installation (the caller stores it) or a test.
    pub fn generate_secret() -> Result<[u8; AUDIT_SECRET_BYTES], StoreError> {
        use ring::rand::SecureRandom;
        let mut secret = [0u8; AUDIT_SECRET_BYTES];
        ring::rand::SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| StoreError::Invalid("no random numbers for the audit key".into()))?;
        Ok(secret)
    }

    /// A key from a new random secret that is not kept: for a store that is opened once.
    pub fn generate() -> Result<Self, StoreError> {
        Self::from_secret(&Self::generate_secret()?)
    }

    /// Signs the head of the chain as it is now.
    pub fn checkpoint(
        &self,
        sequence: i64,
        chain_hash: &str,
        time: DateTime<Utc>,
    ) -> AuditCheckpoint {
        let signature = hmac::sign(
            &self.checkpoints,
            &checkpoint_bytes(sequence, chain_hash, time),
        );
        AuditCheckpoint {
            sequence,
            chain_hash: chain_hash.to_owned(),
            time,
            signature: hex::encode(signature.as_ref()),
        }
    }

    /// Whether this key signed the checkpoint as it reads.
    pub fn signed(&self, checkpoint: &AuditCheckpoint) -> bool {
        let Ok(signature) = hex::decode(&checkpoint.signature) else {
            return false;
        };
        hmac::verify(
            &self.checkpoints,
            &checkpoint_bytes(checkpoint.sequence, &checkpoint.chain_hash, checkpoint.time),
            &signature,
        )
        .is_ok()
    }
}

fn checkpoint_bytes(sequence: i64, chain_hash: &str, time: DateTime<Utc>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(96);
    for field in [
        &sequence.to_le_bytes()[..],
        chain_hash.as_bytes(),
        &time.timestamp_millis().to_le_bytes()[..],
    ] {
        bytes.extend_from_slice(&(field.len() as u64).to_le_bytes());
        bytes.extend_from_slice(field);
    }
    bytes
}

/// The head of the chain at a time, signed with the audit key: exported outside the
/// database so that entries deleted after it are noticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditCheckpoint {
    /// The newest entry's sequence number.
    pub sequence: i64,
    /// Its chain hash, hexadecimal.
    pub chain_hash: String,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub time: DateTime<Utc>,
    /// HMAC-SHA256 under the checkpoint key, hexadecimal.
    pub signature: String,
}

/// Feeds each field to `update`, length-prefixed so that no two different entries
/// serialise alike.
fn chain_fields(mut update: impl FnMut(&[u8]), label: &[u8], event: &AuditEvent) {
    let mut field = |bytes: &[u8]| {
        update(&(bytes.len() as u64).to_le_bytes());
        update(bytes);
    };
    field(label);
    field(&event.time.timestamp_millis().to_le_bytes());
    field(
        event
            .actor
            .map(|id| id.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    field(event.actor_label.as_bytes());
    field(event.action.as_bytes());
    field(
        event
            .patient_id
            .map(|id| id.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    field(event.outcome.as_str().as_bytes());
    field(event.remote_addr.as_deref().unwrap_or("").as_bytes());
    field(event.detail.as_deref().unwrap_or("").as_bytes());
}

/// The hash of `event` as the entry after one whose hash is `previous` (empty for the
/// first entry): HMAC-SHA256 under the audit key over the previous hash and each field.
pub fn chain_hash(key: &AuditKey, previous: &[u8], event: &AuditEvent) -> [u8; 32] {
    let mut context = hmac::Context::with_key(&key.chain);
    context.update(previous);
    chain_fields(|bytes| context.update(bytes), b"wardline-audit-v3", event);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(context.sign().as_ref());
    hash
}

/// The unkeyed chain function of version 2 (SHA-256), kept only to verify entries
/// written then.
pub fn unkeyed_chain_hash(previous: &[u8], event: &AuditEvent) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(previous);
    chain_fields(|bytes| context.update(bytes), b"wardline-audit-v2", event);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(context.finish().as_ref());
    hash
}

/// Writing and reading the audit trail.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends events to the chain in one durable commit. Changes that people make are
    /// audited by the store method that makes them, in the same commit; this is for what
    /// is audited alone (reads, refused attempts, failed logins).
    async fn append_audit(&self, events: Vec<AuditEvent>) -> Result<(), StoreError>;
    /// Events matching the query, newest first.
    async fn audit_events(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;
    /// Recomputes the hash chain; `Ok(n)` is the number of events verified.
    async fn verify_audit_chain(&self) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event() -> AuditEvent {
        AuditEvent {
            time: Utc
                .timestamp_millis_opt(1_800_000_000_000)
                .single()
                .unwrap_or_default(),
            actor: Some(UserId::random()),
            actor_label: "nora".into(),
            action: "observations.read".into(),
            patient_id: Some(PatientId::random()),
            outcome: AuditOutcome::Allowed,
            remote_addr: Some("10.0.0.7".into()),
            detail: Some("code 8867-4".into()),
        }
    }

    fn key() -> AuditKey {
        AuditKey::from_secret(&[7u8; 32]).unwrap()
    }

    #[test]
    fn every_field_the_previous_hash_and_the_key_change_the_chain() {
        let base = event();
        let key = key();
        let hash = chain_hash(&key, b"", &base);
        assert_eq!(hash, chain_hash(&key, b"", &base.clone()));
        assert_ne!(hash, chain_hash(&key, b"x", &base));
        let other = AuditKey::from_secret(&[8u8; 32]).unwrap();
        assert_ne!(hash, chain_hash(&other, b"", &base));
        assert_ne!(hash, unkeyed_chain_hash(b"", &base));
        let variants = [
            AuditEvent {
                time: base.time + chrono::Duration::milliseconds(1),
                ..base.clone()
            },
            AuditEvent {
                actor: None,
                ..base.clone()
            },
            AuditEvent {
                actor_label: "nor".into(),
                ..base.clone()
            },
            AuditEvent {
                action: "observations.reads".into(),
                ..base.clone()
            },
            AuditEvent {
                patient_id: None,
                ..base.clone()
            },
            AuditEvent {
                outcome: AuditOutcome::Denied,
                ..base.clone()
            },
            AuditEvent {
                remote_addr: None,
                ..base.clone()
            },
            AuditEvent {
                detail: Some("code 8867-".into()),
                ..base.clone()
            },
        ];
        for variant in variants {
            assert_ne!(chain_hash(&key, b"", &variant), hash, "{variant:?}");
        }
    }

    #[test]
    fn fields_cannot_slide_into_each_other() {
        let mut one = event();
        let mut two = event();
        one.actor_label = "ab".into();
        one.action = "c".into();
        two.actor_label = "a".into();
        two.action = "bc".into();
        assert_ne!(chain_hash(&key(), b"", &one), chain_hash(&key(), b"", &two));
    }

    #[test]
    fn a_checkpoint_verifies_only_as_signed_and_only_under_its_key() {
        let key = key();
        let checkpoint = key.checkpoint(41, "ab12", event().time);
        assert!(key.signed(&checkpoint));
        let other = AuditKey::from_secret(&[8u8; 32]).unwrap();
        assert!(!other.signed(&checkpoint));
        for forged in [
            AuditCheckpoint {
                sequence: 40,
                ..checkpoint.clone()
            },
            AuditCheckpoint {
                chain_hash: "ab13".into(),
                ..checkpoint.clone()
            },
            AuditCheckpoint {
                time: checkpoint.time + chrono::Duration::milliseconds(1),
                ..checkpoint.clone()
            },
            AuditCheckpoint {
                signature: "00".into(),
                ..checkpoint.clone()
            },
        ] {
            assert!(!key.signed(&forged), "{forged:?}");
        }
        assert!(AuditKey::from_secret(&[1u8; 31]).is_err(), "too short");
    }
}
