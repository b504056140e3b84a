//! Storing what devices send.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::model::{IngestItem, IngestOutcome};

#[async_trait]
pub trait IngestStore: Send + Sync {
    /// Stores a batch of device messages in one durable commit. Returns when the commit is
    /// on disk, with one outcome per item in order. Items whose `(device, seq)` was stored
    /// before are reported as duplicates and not stored again. What is stored reaches
    /// rule evaluation through the [`EventLog`](crate::EventLog).
    async fn ingest(&self, items: Vec<IngestItem>) -> Result<Vec<IngestOutcome>, StoreError>;
    /// Like [`IngestStore::ingest`], but all or nothing: every item is stored (or found
    /// stored before) in one durable commit, or, when any item is refused, nothing of
    /// any is stored. Returns whether the items were stored, and the outcomes, which say
    /// why when they were not (an item that would have been stored says `Stored`). A FHIR
    /// transaction is taken this way.
    async fn ingest_all_or_none(
        &self,
        items: Vec<IngestItem>,
    ) -> Result<(bool, Vec<IngestOutcome>), StoreError>;
}
