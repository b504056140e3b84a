//! What every handler can reach.

use std::sync::Arc;

use chrono::Duration;
use wardline_domain::DeviceId;
use wardline_ingest::IngestService;
use wardline_store::Store;

/// Ends a live device connection, e.g. when its credential is revoked.
pub trait DeviceDisconnector: Send + Sync + std::fmt::Debug {
    fn disconnect(&self, device_id: &DeviceId);
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub session_lifetime: Duration,
    /// Marks the session cookie `Secure`; on whenever the API is served over TLS.
    pub secure_cookies: bool,
    /// What devices are told to connect to, shown when a device is enrolled.
    pub mqtt_url: String,
    pub http_url: String,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            session_lifetime: Duration::hours(12),
            secure_cookies: true,
            mqtt_url: String::new(),
            http_url: String::new(),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ingest: IngestService,
    pub devices: Arc<dyn DeviceDisconnector>,
    pub settings: Arc<ApiSettings>,
    /// Renders the Prometheus exposition text.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// Care plans, alarms and notifications.
    pub alarms: wardline_alarms::AlarmService,
    /// Failed logins per username and address.
    pub logins: Arc<crate::throttle::LoginThrottle>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
