//! Backend clients (SMART Backend Services): a hospital's system registered with its
//! public keys and the care teams it serves, the assertions it signed (kept until they
//! expire, so that none is taken twice), and the short-lived access tokens it was given
//! (kept hashed).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wardline_domain::{CareTeamId, UserId};

use crate::audit::AuditEvent;
use crate::error::StoreError;

/// A client as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBackendClient {
    /// `client_id`, which the client names itself by in its assertions.
    pub id: String,
    pub name: String,
    /// Its public keys, a JSON Web Key Set as registered.
    pub jwks: String,
    /// Whose records it may read: the patients of these care teams.
    pub care_teams: Vec<CareTeamId>,
    pub created: DateTime<Utc>,
    pub created_by: Option<UserId>,
}

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendClient {
    pub id: String,
    pub name: String,
    pub jwks: String,
    pub care_teams: Vec<CareTeamId>,
    pub created: DateTime<Utc>,
    pub created_by: Option<UserId>,
    /// When an administrator revoked it: it gets no token from then on, and its tokens
    /// stop working.
    pub revoked: Option<DateTime<Utc>>,
}

/// A live access token's holder and what it was granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientToken {
    pub client: BackendClient,
    /// The scopes granted, space-separated as in OAuth.
    pub scopes: String,
    pub expires: DateTime<Utc>,
}

/// Backend clients.
#[async_trait]
pub trait BackendClientStore: Send + Sync {
    /// Registers a client with its audit entry, in one commit; `NotFound` for a care
    /// team that does not exist.
    async fn create_backend_client(
        &self,
        client: NewBackendClient,
        audit: AuditEvent,
    ) -> Result<BackendClient, StoreError>;

    async fn backend_client(&self, id: &str) -> Result<Option<BackendClient>, StoreError>;

    /// Every client, revoked ones included, oldest first.
    async fn backend_clients(&self) -> Result<Vec<BackendClient>, StoreError>;

    /// Revokes a client and ends its tokens, with the audit entry, in one commit.
    /// `false` when it was revoked already (or does not exist).
    async fn revoke_backend_client(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Keeps the `jti` of an assertion the client signed until `expires`; `false` when
    /// the client used it before (a replayed assertion). Forgets assertions expired by
    /// `now`.
    async fn record_client_assertion(
        &self,
        client: &str,
        jti: &str,
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Keeps an access token (its SHA-256) given to the client, with the audit entry of
    /// its issue, in one commit.
    async fn create_client_token(
        &self,
        token_hash: [u8; 32],
        client: &str,
        scopes: String,
        expires: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    /// The token with this hash, while it lives and its client is not revoked.
    async fn client_token(
        &self,
        token_hash: [u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<ClientToken>, StoreError>;
}
