//! The committed event log: everything that rule evaluation and analysis must see, read
//! back from what was durably stored, by a cursor the reader keeps with its own results.
//!
//! A reader that falls behind reads the backlog instead of losing it, and a reader that
//! restarts resumes at the cursor it last stored with its results, so every committed
//! reading is evaluated exactly once in effect, under overload and after `kill -9`. The
//! embedded backend reads committed rows in commit order; a message bus can stand behind
//! the same trait.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use wardline_domain::{DeviceId, Observation, PatientId};

use crate::error::StoreError;
use crate::model::{DeviceReport, News2Record, RhythmEventRecord, StoredWaveform};

/// A position in the event log. Opaque: only the backend that made it reads it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventCursor(pub String);

/// Which events a reader wants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventFilter {
    /// Device readings and derived observations.
    pub observations: bool,
    /// Stored waveform chunks, without their samples.
    pub waveforms: bool,
    /// With `waveforms`: include each chunk's encoded samples.
    pub waveform_samples: bool,
    pub news2: bool,
    pub rhythm_events: bool,
    pub device_reports: bool,
    /// Only events of these patients; `None` for everyone's. The events of others are
    /// passed over unread (counted in [`EventBatch::passed_over`]) and the cursor moves
    /// past them, so a reader that cares for a few patients does not decode everyone's.
    pub patients: Option<Arc<HashSet<PatientId>>>,
}

impl EventFilter {
    /// Every kind of event, waveforms without their samples.
    pub fn all() -> Self {
        Self {
            observations: true,
            waveforms: true,
            waveform_samples: false,
            news2: true,
            rhythm_events: true,
            device_reports: true,
            patients: None,
        }
    }

    /// Whether the filter lets a patient's events through.
    pub fn admits(&self, patient: &PatientId) -> bool {
        self.patients
            .as_ref()
            .is_none_or(|patients| patients.contains(patient))
    }
}

/// A stored waveform chunk and whose it is.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedWaveform {
    pub patient_id: PatientId,
    pub received: DateTime<Utc>,
    /// `encoded` is empty unless the reader asked for samples.
    pub chunk: StoredWaveform,
}

impl CommittedWaveform {
    pub fn device_id(&self) -> &DeviceId {
        &self.chunk.device_id
    }
}

/// Something committed that rule evaluation or analysis must see.
#[derive(Debug, Clone, PartialEq)]
pub enum CommittedEvent {
    Observation(Observation),
    Waveform(CommittedWaveform),
    /// A NEWS2 result as stored (a recomputation for the same time appears again).
    News2(News2Record),
    /// A rhythm event as stored (an event that grows appears again with its later end).
    Rhythm(RhythmEventRecord),
    DeviceReport(DeviceReport),
}

impl CommittedEvent {
    pub fn patient_id(&self) -> PatientId {
        match self {
            CommittedEvent::Observation(observation) => observation.patient_id,
            CommittedEvent::Waveform(waveform) => waveform.patient_id,
            CommittedEvent::News2(score) => score.patient_id,
            CommittedEvent::Rhythm(event) => event.patient_id,
            CommittedEvent::DeviceReport(report) => report.patient_id,
        }
    }
}

/// Events after a cursor, in commit order per kind, and where the next read starts.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBatch {
    pub events: Vec<CommittedEvent>,
    /// Events of patients outside [`EventFilter::patients`] that the cursor moved past.
    pub passed_over: PassedOver,
    pub next: EventCursor,
}

/// How many events of which kind a batch passed over for the filter's patient scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassedOver {
    /// Device readings and derived observations.
    pub observations: u64,
    /// Waveform chunks, NEWS2 results, rhythm events and device reports.
    pub other: u64,
}

impl PassedOver {
    pub fn total(&self) -> u64 {
        self.observations + self.other
    }
}

#[async_trait]
pub trait EventLog: Send + Sync {
    /// The position after everything committed so far.
    async fn event_tail(&self) -> Result<EventCursor, StoreError>;
    /// Up to `limit` events after `cursor` (of each kind asked for), oldest first; with a
    /// patient scope, `limit` counts the events passed over too.
    /// `Invalid` for a cursor this backend did not make.
    async fn events_after(
        &self,
        cursor: &EventCursor,
        filter: EventFilter,
        limit: u32,
    ) -> Result<EventBatch, StoreError>;
    /// As [`EventLog::events_after`], but only events at or before `through`, a position
    /// this log handed out: a reader replays a stretch it has read before, and
    /// `next` never passes `through`.
    async fn events_between(
        &self,
        after: &EventCursor,
        through: &EventCursor,
        filter: EventFilter,
        limit: u32,
    ) -> Result<EventBatch, StoreError>;
    /// Where the named reader last stored its position, if it ever did.
    async fn checkpoint(&self, consumer: &str) -> Result<Option<EventCursor>, StoreError>;
    /// Changes after every commit of this process, so a reader waits instead of polling.
    /// Writes by another process (the admin command line) are not announced; readers
    /// also look every second.
    fn commits(&self) -> tokio::sync::watch::Receiver<u64>;
}
