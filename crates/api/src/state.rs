//! What every handler can reach.

use std::sync::Arc;

use chrono::Duration;
use wardline_service::Wardline;

/// Settings of the HTTP API itself (everything else belongs to the service).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Marks the session cookie `Secure`; on whenever the API is served over TLS.
    pub secure_cookies: bool,
    pub session_lifetime: Duration,
    /// What devices are told to connect to, shown when a device is enrolled.
    pub mqtt_url: String,
    pub http_url: String,
    /// Longest a request may take before it is answered 503 (live streams excepted).
    pub request_timeout: std::time::Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            secure_cookies: true,
            session_lifetime: Duration::hours(12),
            mqtt_url: String::new(),
            http_url: String::new(),
            request_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// Renders the Prometheus exposition text.
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
pub struct AppState {
    pub service: Wardline,
    pub settings: Arc<ApiSettings>,
    /// `/metrics` for admins; `None` where no recorder is installed.
    pub metrics: Option<MetricsRenderer>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("service", &self.service)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
