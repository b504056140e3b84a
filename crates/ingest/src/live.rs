//! The live feed: every observation right after its commit, for SSE streams and, later,
//! real-time rules; and every NEWS2 result as it is stored. A slow subscriber loses its
//! place (and is told) rather than slowing ingest.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use wardline_domain::{DeviceId, Observation, PatientId};
use wardline_store::{News2Record, RhythmEventRecord};

#[derive(Debug, Clone)]
pub struct LiveFeed {
    sender: broadcast::Sender<Arc<Observation>>,
    news2: broadcast::Sender<Arc<News2Record>>,
    rhythm: broadcast::Sender<Arc<RhythmEventRecord>>,
    contacts: broadcast::Sender<Arc<DeviceContact>>,
}

/// A device was heard from by something other than a reading (a stored waveform chunk),
/// for device-silence rules.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceContact {
    pub patient_id: PatientId,
    pub device_id: DeviceId,
    pub at: DateTime<Utc>,
}

impl LiveFeed {
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(16));
        let (news2, _) = broadcast::channel(capacity.max(16));
        let (rhythm, _) = broadcast::channel(capacity.max(16));
        let (contacts, _) = broadcast::channel(capacity.max(16));
        Self {
            sender,
            news2,
            rhythm,
            contacts,
        }
    }

    pub fn publish(&self, observation: Observation) {
        // No subscribers is normal; nothing to do then.
        let _ = self.sender.send(Arc::new(observation));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Observation>> {
        self.sender.subscribe()
    }

    pub fn publish_news2(&self, score: News2Record) {
        let _ = self.news2.send(Arc::new(score));
    }

    pub fn subscribe_news2(&self) -> broadcast::Receiver<Arc<News2Record>> {
        self.news2.subscribe()
    }

    /// A rhythm event as the ECG analysis stored it (an event that grows is published
    /// again with its later end).
    pub fn publish_rhythm(&self, event: RhythmEventRecord) {
        let _ = self.rhythm.send(Arc::new(event));
    }

    pub fn subscribe_rhythm(&self) -> broadcast::Receiver<Arc<RhythmEventRecord>> {
        self.rhythm.subscribe()
    }

    pub fn publish_contact(&self, contact: DeviceContact) {
        let _ = self.contacts.send(Arc::new(contact));
    }

    pub fn subscribe_contacts(&self) -> broadcast::Receiver<Arc<DeviceContact>> {
        self.contacts.subscribe()
    }
}
