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
}
