//! Turning rows into the store's types, and the small lookups every module needs.

use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use wardline_domain::{DeviceId, PatientId, UserId};

use crate::error::StoreError;

pub(crate) use crate::sqlite::{from_ms, ids_from_json, to_ms};

pub(crate) fn parse_device_id(text: &str) -> Result<DeviceId, StoreError> {
    DeviceId::parse(text).map_err(|error| StoreError::Corrupt(error.to_string()))
}

/// A JSON column as one of our types; `Undecodable` names what could not be read.
pub(crate) fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Undecodable {
        what: what.to_owned(),
        reason: error.to_string(),
    })
}

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::Invalid(error.to_string()))
}

/// The internal key of the row whose public `id` is `id` in `table`, if there is one.
pub(crate) async fn find_key(
    client: &impl GenericClient,
    table: &str,
    id: &(dyn ToSql + Sync),
) -> Result<Option<i64>, StoreError> {
    let statement = client
        .prepare_cached(&format!("SELECT key FROM {table} WHERE id = $1"))
        .await?;
    Ok(client
        .query_opt(&statement, &[id])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?)
}

/// The internal key of the row with public `id` in `table`; `NotFound` names `what`.
pub(crate) async fn key_of(
    client: &impl GenericClient,
    table: &str,
    id: &(dyn ToSql + Sync),
    what: &str,
) -> Result<i64, StoreError> {
    find_key(client, table, id)
        .await?
        .ok_or_else(|| StoreError::not_found(what))
}

pub(crate) async fn patient_key(
    client: &impl GenericClient,
    patient: PatientId,
) -> Result<Option<i64>, StoreError> {
    find_key(client, "patient", &patient.0).await
}

pub(crate) async fn user_key(
    client: &impl GenericClient,
    user: UserId,
) -> Result<Option<i64>, StoreError> {
    find_key(client, "app_user", &user.0).await
}

pub(crate) fn is_unique_violation(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// `Conflict { what }` for a uniqueness violation, the error as it is otherwise.
pub(crate) fn unique_violation(
    error: tokio_postgres::Error,
    what: impl Into<String>,
) -> StoreError {
    if is_unique_violation(&error) {
        StoreError::Conflict { what: what.into() }
    } else {
        error.into()
    }
}
