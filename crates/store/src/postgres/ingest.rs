//! [`IngestStore`] on PostgreSQL: not ported yet; every method says so.

// Placeholders until the port: remove with the last of them.
#![allow(unused_variables, unused_imports)]

use crate::*;

use super::PostgresStore;
use crate::error::StoreError;
use crate::ingest::IngestStore;
use crate::model::{IngestItem, IngestOutcome};
use async_trait::async_trait;

#[async_trait]
impl IngestStore for PostgresStore {
    async fn ingest(&self, items: Vec<IngestItem>) -> Result<Vec<IngestOutcome>, StoreError> {
        Err(StoreError::Unported("IngestStore::ingest"))
    }

    async fn ingest_all_or_none(
        &self,
        items: Vec<IngestItem>,
    ) -> Result<(bool, Vec<IngestOutcome>), StoreError> {
        Err(StoreError::Unported("IngestStore::ingest_all_or_none"))
    }
}
