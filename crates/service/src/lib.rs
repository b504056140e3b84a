//! Wardline's business operations, each written once. The transports (MQTT, the REST API,
//! the command line, the demo and the benchmarks) parse what they receive and call these;
//! none of them writes to the store itself.
//!
//! Every operation that changes something makes one store call that commits the change
//! with its audit entry. Every read of a patient's data goes through the one access check
//! in [`access`], which audits the decision before any data is read.

pub mod access;
pub mod actor;
pub mod alarms;
pub mod clinical;
pub mod credentials;
pub mod devices;
mod error;
pub mod gateways;
pub mod ingest;
pub mod live;
pub mod people;
pub mod throttle;

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration, Utc};
use wardline_alarms::AlarmService;
use wardline_domain::{DeviceId, PayloadLimits};
use wardline_store::Store;

pub use access::{AccessBasis, PatientAccess};
pub use actor::{Actor, Person};
pub use error::{Error, ErrorSpec};
pub use ingest::{IngestService, MessageVerdict, Rejection};
pub use live::LiveFeed;

/// Settings of the operations.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub session_lifetime: Duration,
    pub payload_limits: PayloadLimits,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            session_lifetime: Duration::hours(12),
            payload_limits: PayloadLimits::default(),
        }
    }
}

/// Ends a device's live connections, e.g. when its credential is revoked.
pub trait DeviceSessions: Send + Sync + std::fmt::Debug {
    fn disconnect(&self, device_id: &DeviceId);
}

/// The operations, over one store. Cheap to clone.
#[derive(Clone)]
pub struct Wardline {
    store: Arc<dyn Store>,
    alarms: Option<AlarmService>,
    live: LiveFeed,
    ingest: IngestService,
    settings: Arc<ServiceSettings>,
    device_sessions: Arc<RwLock<Vec<Arc<dyn DeviceSessions>>>>,
    logins: Arc<throttle::LoginThrottle>,
}

impl std::fmt::Debug for Wardline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wardline")
            .field("store", &self.store)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Wardline {
    /// Operations without a running alarm engine or live feed (the command line, tools):
    /// care plan changes are stored for the server's engine to adopt.
    pub fn new(store: Arc<dyn Store>, settings: ServiceSettings) -> Self {
        Self {
            ingest: IngestService::new(store.clone(), settings.payload_limits),
            store,
            alarms: None,
            live: LiveFeed::idle(),
            settings: Arc::new(settings),
            device_sessions: Arc::new(RwLock::new(Vec::new())),
            logins: Arc::new(throttle::LoginThrottle::default()),
        }
    }

    /// Care plan changes and alarm actions go through this engine from now on.
    pub fn with_alarms(mut self, alarms: AlarmService) -> Self {
        self.alarms = Some(alarms);
        self
    }

    pub fn with_live(mut self, live: LiveFeed) -> Self {
        self.live = live;
        self
    }

    /// Someone holding live device connections, told when a device is revoked.
    pub fn add_device_sessions(&self, sessions: Arc<dyn DeviceSessions>) {
        if let Ok(mut all) = self.device_sessions.write() {
            all.push(sessions);
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn ingest(&self) -> &IngestService {
        &self.ingest
    }

    pub fn live(&self) -> &LiveFeed {
        &self.live
    }

    pub fn alarm_service(&self) -> Option<&AlarmService> {
        self.alarms.as_ref()
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn disconnect(&self, device_id: &DeviceId) {
        if let Ok(all) = self.device_sessions.read() {
            for sessions in all.iter() {
                sessions.disconnect(device_id);
            }
        }
    }
}

/// Checks a text's length in characters, naming the field when it is wrong.
pub fn bounded(field: &str, text: &str, max: usize) -> Result<(), Error> {
    if text.trim().is_empty() || text.chars().count() > max {
        return Err(Error::invalid(field, format!("1 to {max} characters")));
    }
    Ok(())
}
