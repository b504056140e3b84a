//! The live feed: every observation right after its commit, for SSE streams and, later,
//! real-time rules. A slow subscriber loses its place (and is told) rather than slowing
//! ingest.

use std::sync::Arc;

use tokio::sync::broadcast;
use wardline_domain::Observation;

#[derive(Debug, Clone)]
pub struct LiveFeed {
    sender: broadcast::Sender<Arc<Observation>>,
}

impl LiveFeed {
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(16));
        Self { sender }
    }

    pub fn publish(&self, observation: Observation) {
        // No subscribers is normal; nothing to do then.
        let _ = self.sender.send(Arc::new(observation));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Observation>> {
        self.sender.subscribe()
    }
}
