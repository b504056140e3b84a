//! [`BackendClientStore`] on PostgreSQL. An assertion's `jti` is kept by its primary key,
//! so that two workers taking the same assertion at once cannot both succeed: the second
//! insert finds the first's row.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;
use wardline_domain::UserId;

use super::PostgresStore;
use super::audit::append;
use super::rows::*;
use crate::audit::AuditEvent;
use crate::backend_clients::*;
use crate::error::StoreError;

const COLUMNS: &str =
    "c.id, c.name, c.jwks, c.care_teams, c.created_ms, c.created_by, c.revoked_ms";

fn client_from_row(row: &Row) -> Result<BackendClient, StoreError> {
    let teams: &str = row.try_get(3)?;
    Ok(BackendClient {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        jwks: row.try_get(2)?,
        care_teams: ids_from_json(teams, "care team")?,
        created: from_ms(row.try_get(4)?)?,
        created_by: row.try_get::<_, Option<Uuid>>(5)?.map(UserId),
        revoked: row.try_get::<_, Option<i64>>(6)?.map(from_ms).transpose()?,
    })
}

async fn client_by_id(
    client: &impl GenericClient,
    id: &str,
) -> Result<Option<BackendClient>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM backend_client c WHERE c.id = $1"
        ))
        .await?;
    client
        .query_opt(&statement, &[&id])
        .await?
        .map(|row| client_from_row(&row))
        .transpose()
}

async fn client_key(client: &impl GenericClient, id: &str) -> Result<i64, StoreError> {
    key_of(
        client,
        "backend_client",
        &id,
        &format!("backend client {id}"),
    )
    .await
}

#[async_trait]
impl BackendClientStore for PostgresStore {
    async fn create_backend_client(
        &self,
        new: NewBackendClient,
        audit: AuditEvent,
    ) -> Result<BackendClient, StoreError> {
        let teams = to_json(
            &new.care_teams
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        )?;
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        for team in &new.care_teams {
            key_of(
                &transaction,
                "care_team",
                &team.0,
                &format!("care team {team}"),
            )
            .await?;
        }
        let insert = transaction
            .prepare_cached(
                "INSERT INTO backend_client (id, name, jwks, care_teams, created_ms, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .await?;
        transaction
            .execute(
                &insert,
                &[
                    &new.id,
                    &new.name,
                    &new.jwks,
                    &teams,
                    &to_ms(new.created),
                    &new.created_by.map(|user| user.0),
                ],
            )
            .await
            .map_err(|error| unique_violation(error, format!("backend client {}", new.id)))?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        let created = client_by_id(&transaction, &new.id)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("backend client {}", new.id)))?;
        transaction.commit().await?;
        Ok(created)
    }

    async fn backend_client(&self, id: &str) -> Result<Option<BackendClient>, StoreError> {
        let client = self.client().await?;
        client_by_id(&client, id).await
    }

    async fn backend_clients(&self) -> Result<Vec<BackendClient>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM backend_client c ORDER BY c.created_ms, c.key"
            ))
            .await?;
        client
            .query(&statement, &[])
            .await?
            .iter()
            .map(client_from_row)
            .collect()
    }

    async fn revoke_backend_client(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let revoke = transaction
            .prepare_cached(
                "UPDATE backend_client SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL
                 RETURNING key",
            )
            .await?;
        let Some(row) = transaction.query_opt(&revoke, &[&id, &to_ms(at)]).await? else {
            return Ok(false);
        };
        let key: i64 = row.try_get(0)?;
        let end_tokens = transaction
            .prepare_cached("DELETE FROM client_token WHERE client_key = $1")
            .await?;
        transaction.execute(&end_tokens, &[&key]).await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(true)
    }

    async fn record_client_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let forget = client
            .prepare_cached("DELETE FROM client_assertion WHERE expires_ms <= $1")
            .await?;
        client.execute(&forget, &[&to_ms(now)]).await?;
        let key = client_key(&client, client_id).await?;
        let insert = client
            .prepare_cached(
                "INSERT INTO client_assertion (client_key, jti, expires_ms) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        let inserted = client
            .execute(&insert, &[&key, &jti, &to_ms(expires)])
            .await?;
        Ok(inserted == 1)
    }

    async fn create_client_token(
        &self,
        token_hash: [u8; 32],
        client_id: &str,
        scopes: String,
        expires: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // Tokens that ended are of no use to anyone: they go as new ones come.
        let forget = transaction
            .prepare_cached("DELETE FROM client_token WHERE expires_ms <= $1")
            .await?;
        transaction.execute(&forget, &[&to_ms(audit.time)]).await?;
        let key = client_key(&transaction, client_id).await?;
        let insert = transaction
            .prepare_cached(
                "INSERT INTO client_token (token_hash, client_key, scopes, expires_ms)
                 VALUES ($1, $2, $3, $4)",
            )
            .await?;
        transaction
            .execute(
                &insert,
                &[&token_hash.as_slice(), &key, &scopes, &to_ms(expires)],
            )
            .await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn client_token(
        &self,
        token_hash: [u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<ClientToken>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT c.id, t.scopes, t.expires_ms FROM client_token t
                 JOIN backend_client c ON c.key = t.client_key
                 WHERE t.token_hash = $1 AND t.expires_ms > $2 AND c.revoked_ms IS NULL",
            )
            .await?;
        let Some(row) = client
            .query_opt(&statement, &[&token_hash.as_slice(), &to_ms(now)])
            .await?
        else {
            return Ok(None);
        };
        let id: String = row.try_get(0)?;
        let Some(found) = client_by_id(&client, &id).await? else {
            return Ok(None);
        };
        Ok(Some(ClientToken {
            client: found,
            scopes: row.try_get(1)?,
            expires: from_ms(row.try_get(2)?)?,
        }))
    }
}
