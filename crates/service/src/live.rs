//! The live feed for screens: observations and NEWS2 results as they are committed, read
//! from the event log like everything else and broadcast to the open streams. A slow
//! screen loses its place (and is told, so it re-reads) rather than slowing anything;
//! rule evaluation never reads from here.

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use wardline_domain::Observation;
use wardline_store::{CommittedEvent, EventFilter, News2Record, Store};

/// What open streams subscribe to.
#[derive(Debug, Clone)]
pub struct LiveFeed {
    observations: broadcast::Sender<Arc<Observation>>,
    news2: broadcast::Sender<Arc<News2Record>>,
}

const WANTED: EventFilter = EventFilter {
    observations: true,
    waveforms: false,
    waveform_samples: false,
    news2: true,
    rhythm_events: false,
    device_reports: false,
    patients: None,
};

/// How often an unwatched feed reads the log's tail.
const IDLE_TAIL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

impl LiveFeed {
    /// A feed that nothing publishes to (for tools that serve no screens).
    pub fn idle() -> Self {
        let (observations, _) = broadcast::channel(16);
        let (news2, _) = broadcast::channel(16);
        Self {
            observations,
            news2,
        }
    }

    /// Starts following the log's tail; buffers `capacity` events per subscriber.
    pub fn start(store: Arc<dyn Store>, capacity: usize) -> (Self, JoinHandle<()>) {
        let (observations, _) = broadcast::channel(capacity.max(16));
        let (news2, _) = broadcast::channel(capacity.max(16));
        let feed = Self {
            observations,
            news2,
        };
        let task = tokio::spawn(feed.clone().follow(store));
        (feed, task)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Observation>> {
        self.observations.subscribe()
    }

    pub fn subscribe_news2(&self) -> broadcast::Receiver<Arc<News2Record>> {
        self.news2.subscribe()
    }

    fn listened_to(&self) -> bool {
        self.observations.receiver_count() > 0 || self.news2.receiver_count() > 0
    }

    async fn follow(self, store: Arc<dyn Store>) {
        let mut commits = store.commits();
        let mut cursor = None;
        let mut tail_read = tokio::time::Instant::now();
        loop {
            if !self.listened_to() {
                // Nobody is watching: keep a recent position of the tail (read at most
                // four times a second, not at every commit), so that a screen that opens
                // starts from before the moment it opened and misses nothing after it.
                if cursor.is_none() || tail_read.elapsed() >= IDLE_TAIL_INTERVAL {
                    cursor = store.event_tail().await.ok();
                    tail_read = tokio::time::Instant::now();
                }
            } else {
                let from = match cursor.take() {
                    Some(cursor) => Ok(cursor),
                    None => store.event_tail().await,
                };
                match from {
                    Ok(from) => match store.events_after(&from, WANTED, 4096).await {
                        Ok(batch) => {
                            let more = !batch.events.is_empty();
                            for event in batch.events {
                                match event {
                                    CommittedEvent::Observation(observation) => {
                                        let _ = self.observations.send(Arc::new(observation));
                                    }
                                    CommittedEvent::News2(score) => {
                                        let _ = self.news2.send(Arc::new(score));
                                    }
                                    _ => {}
                                }
                            }
                            cursor = Some(batch.next);
                            if more {
                                continue;
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "the live feed could not read the event log");
                            cursor = Some(from);
                        }
                    },
                    Err(error) => {
                        tracing::warn!(%error, "the live feed could not read the event log")
                    }
                }
            }
            tokio::select! {
                changed = commits.changed() => if changed.is_err() {
                    return;
                },
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        }
    }
}
