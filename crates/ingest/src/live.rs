//! The live feed: every observation right after its commit, for SSE streams and, later,
//! real-time rules; and every NEWS2 result as it is stored. A slow subscriber loses its
//! place (and is told) rather than slowing ingest.

use std::sync::Arc;

use tokio::sync::broadcast;
use wardline_domain::Observation;
use wardline_store::News2Record;

#[derive(Debug, Clone)]
pub struct LiveFeed {
    sender: broadcast::Sender<Arc<Observation>>,
    news2: broadcast::Sender<Arc<News2Record>>,
}

impl LiveFeed {
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(16));
        let (news2, _) = broadcast::channel(capacity.max(16));
        Self { sender, news2 }
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
}
