//! [`BackendClientStore`] on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::audit::append;
use super::rows::{key_of, parse_uuid, to_json, unique_violation};
use super::{SqliteStore, from_ms, to_ms};
use crate::audit::AuditEvent;
use crate::backend_clients::*;
use crate::error::StoreError;

const COLUMNS: &str =
    "c.id, c.name, c.jwks, c.care_teams, c.created_ms, c.created_by, c.revoked_ms";

fn client_from_row(row: &Row<'_>) -> Result<BackendClient, StoreError> {
    let teams: String = row.get(3)?;
    Ok(BackendClient {
        id: row.get(0)?,
        name: row.get(1)?,
        jwks: row.get(2)?,
        care_teams: super::ids_from_json(&teams, "care team")?,
        created: from_ms(row.get(4)?)?,
        created_by: row
            .get::<_, Option<String>>(5)?
            .map(|id| parse_uuid(&id, "user"))
            .transpose()?,
        revoked: row.get::<_, Option<i64>>(6)?.map(from_ms).transpose()?,
    })
}

fn client_by_id(connection: &Connection, id: &str) -> Result<Option<BackendClient>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM backend_client c WHERE c.id = ?1"
    ))?;
    let mut rows = statement.query([id])?;
    match rows.next()? {
        Some(row) => client_from_row(row).map(Some),
        None => Ok(None),
    }
}

#[async_trait]
impl BackendClientStore for SqliteStore {
    async fn create_backend_client(
        &self,
        client: NewBackendClient,
        audit: AuditEvent,
    ) -> Result<BackendClient, StoreError> {
        let teams = to_json(
            &client
                .care_teams
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        )?;
        self.write(move |connection| {
            for team in &client.care_teams {
                key_of(connection, "care_team", &team.to_string(), "care team")?;
            }
            connection
                .execute(
                    "INSERT INTO backend_client (id, name, jwks, care_teams, created_ms, created_by)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        client.id,
                        client.name,
                        client.jwks,
                        teams,
                        to_ms(client.created),
                        client.created_by.map(|user| user.to_string())
                    ],
                )
                .map_err(|error| unique_violation(error, format!("backend client {}", client.id)))?;
            append(connection, &[audit])?;
            client_by_id(connection, &client.id)?
                .ok_or_else(|| StoreError::not_found(format!("backend client {}", client.id)))
        })
        .await
    }

    async fn backend_client(&self, id: &str) -> Result<Option<BackendClient>, StoreError> {
        let id = id.to_owned();
        self.read(move |connection| client_by_id(connection, &id))
            .await
    }

    async fn backend_clients(&self) -> Result<Vec<BackendClient>, StoreError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM backend_client c ORDER BY c.created_ms, c.key"
            ))?;
            let mut rows = statement.query([])?;
            let mut clients = Vec::new();
            while let Some(row) = rows.next()? {
                clients.push(client_from_row(row)?);
            }
            Ok(clients)
        })
        .await
    }

    async fn revoke_backend_client(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |connection| {
            let changed = connection.execute(
                "UPDATE backend_client SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
                params![id, to_ms(at)],
            )?;
            if changed == 0 {
                return Ok(false);
            }
            connection.execute(
                "DELETE FROM client_token
                 WHERE client_key = (SELECT key FROM backend_client WHERE id = ?1)",
                [&id],
            )?;
            append(connection, &[audit])?;
            Ok(true)
        })
        .await
    }

    async fn record_client_assertion(
        &self,
        client: &str,
        jti: &str,
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (client, jti) = (client.to_owned(), jti.to_owned());
        self.write(move |connection| {
            connection.execute(
                "DELETE FROM client_assertion WHERE expires_ms <= ?1",
                [to_ms(now)],
            )?;
            let client_key = key_of(connection, "backend_client", &client, "backend client")?;
            let seen = connection
                .prepare_cached(
                    "SELECT 1 FROM client_assertion WHERE client_key = ?1 AND jti = ?2",
                )?
                .query_row(params![client_key, jti], |_| Ok(()))
                .optional()?
                .is_some();
            if seen {
                return Ok(false);
            }
            connection.execute(
                "INSERT INTO client_assertion (client_key, jti, expires_ms) VALUES (?1, ?2, ?3)",
                params![client_key, jti, to_ms(expires)],
            )?;
            Ok(true)
        })
        .await
    }

    async fn create_client_token(
        &self,
        token_hash: [u8; 32],
        client: &str,
        scopes: String,
        expires: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let client = client.to_owned();
        self.write(move |connection| {
            // Tokens that ended are of no use to anyone: they go as new ones come.
            connection.execute(
                "DELETE FROM client_token WHERE expires_ms <= ?1",
                [to_ms(audit.time)],
            )?;
            let client_key = key_of(connection, "backend_client", &client, "backend client")?;
            connection.execute(
                "INSERT INTO client_token (token_hash, client_key, scopes, expires_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![token_hash.to_vec(), client_key, scopes, to_ms(expires)],
            )?;
            append(connection, &[audit])?;
            Ok(())
        })
        .await
    }

    async fn client_token(
        &self,
        token_hash: [u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<ClientToken>, StoreError> {
        self.read(move |connection| {
            let found: Option<(String, String, i64)> = connection
                .prepare_cached(
                    "SELECT c.id, t.scopes, t.expires_ms FROM client_token t
                     JOIN backend_client c ON c.key = t.client_key
                     WHERE t.token_hash = ?1 AND t.expires_ms > ?2 AND c.revoked_ms IS NULL",
                )?
                .query_row(params![token_hash.to_vec(), to_ms(now)], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()?;
            let Some((client, scopes, expires)) = found else {
                return Ok(None);
            };
            let Some(client) = client_by_id(connection, &client)? else {
                return Ok(None);
            };
            Ok(Some(ClientToken {
                client,
                scopes,
                expires: from_ms(expires)?,
            }))
        })
        .await
    }
}
