//! The audit trail: who did what to whose data, when and from where, as an append-only
//! chain in which every entry's hash covers the one before it.
//!
//! The chain is computed here, over the entry's public fields only (the actor's and the
//! patient's public identifiers, never a backend's internal keys), so every backend
//! computes the same chain and `verify-audit` means the same thing on each.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ring::digest;
use serde::Serialize;
use wardline_domain::{PatientId, UserId};

use crate::error::StoreError;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq)]
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
pub const CHAIN_VERSION: u8 = 2;

/// The hash of `event` as the entry after one whose hash is `previous` (empty for the
/// first entry): SHA-256 over the previous hash and each field, every field
/// length-prefixed so that no two different entries serialise alike.
pub fn chain_hash(previous: &[u8], event: &AuditEvent) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(previous);
    let mut field = |bytes: &[u8]| {
        context.update(&(bytes.len() as u64).to_le_bytes());
        context.update(bytes);
    };
    field(b"wardline-audit-v2");
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

    #[test]
    fn every_field_and_the_previous_hash_change_the_chain() {
        let base = event();
        let hash = chain_hash(b"", &base);
        assert_eq!(hash, chain_hash(b"", &base.clone()));
        assert_ne!(hash, chain_hash(b"x", &base));
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
            assert_ne!(chain_hash(b"", &variant), hash, "{variant:?}");
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
        assert_ne!(chain_hash(b"", &one), chain_hash(b"", &two));
    }
}
