//! [`EventLog`] on PostgreSQL: not ported yet; every method says so.

// Placeholders until the port: remove with the last of them.
#![allow(unused_variables, unused_imports)]

use crate::*;

use super::PostgresStore;
use crate::error::StoreError;
use crate::events::EventLog;
use crate::model::{DeviceReport, News2Record, RhythmEventRecord, StoredWaveform};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use wardline_domain::{DeviceId, Observation, PatientId};

#[async_trait]
impl EventLog for PostgresStore {
    async fn event_tail(&self) -> Result<EventCursor, StoreError> {
        Err(StoreError::Unported("EventLog::event_tail"))
    }

    async fn events_after(
        &self,
        cursor: &EventCursor,
        filter: EventFilter,
        limit: u32,
    ) -> Result<EventBatch, StoreError> {
        Err(StoreError::Unported("EventLog::events_after"))
    }

    async fn events_between(
        &self,
        after: &EventCursor,
        through: &EventCursor,
        filter: EventFilter,
        limit: u32,
    ) -> Result<EventBatch, StoreError> {
        Err(StoreError::Unported("EventLog::events_between"))
    }

    async fn checkpoint(&self, consumer: &str) -> Result<Option<EventCursor>, StoreError> {
        Err(StoreError::Unported("EventLog::checkpoint"))
    }

    fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.subscribe()
    }
}
