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
pub mod backend_services;
pub mod bulk_export;
pub mod clinical;
pub mod credentials;
pub mod device_certificates;
pub mod devices;
pub mod emergency;
mod error;
pub mod export;
pub mod fhir;
pub mod fhir_resources;
pub mod gateways;
pub mod imports;
pub mod ingest;
pub mod ledger;
pub mod live;
pub mod nightscout;
pub mod people;
pub mod second_factor;
pub mod sharing;
pub mod templates;
pub mod throttle;
pub mod visits;

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration, Utc};
use wardline_alarms::AlarmService;
use wardline_domain::{DeviceId, PayloadLimits, Role};
use wardline_store::Store;

pub use access::{AccessBasis, PatientAccess};
pub use actor::{Actor, Person};
pub use error::{Error, ErrorSpec};
pub use ingest::{IngestService, MessageVerdict, Rejection};
pub use live::LiveFeed;
pub use people::SessionUse;

/// Settings of the operations.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub session_lifetime: Duration,
    /// A session that its person has not used for this long ends (`None`: never for
    /// idleness, only at `session_lifetime`). Screens refreshing themselves do not count
    /// as use.
    pub session_idle_timeout: Option<Duration>,
    /// How long an emergency ("break-the-glass") access lasts.
    pub emergency_access: Duration,
    pub payload_limits: PayloadLimits,
    /// Webhook channels may point at this machine (a receiver beside the server).
    pub allow_loopback_webhooks: bool,
    /// Accounts of these roles must log in with a second factor: until they have set one
    /// up, they may do nothing else (see [`second_factor`]).
    pub second_factor_roles: Vec<Role>,
    /// The longest a patient's share may last, in days.
    pub max_share_days: i64,
    /// How invitations reach specialists: by e-mail through this SMTP server, with links
    /// to this address of the web app. None: the inviter is given the link to send.
    pub invitation_mail: Option<sharing::InvitationMail>,
    /// The STUN and TURN servers visits' browsers use.
    pub ice: visits::IceSettings,
    /// The practice's time zone: the remote-monitoring ledger counts its days and months.
    pub practice_time_zone: chrono_tz::Tz,
    /// Where FHIR bulk exports are written, and for how long they are kept.
    pub bulk_exports: bulk_export::BulkExportSettings,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            session_lifetime: Duration::hours(12),
            session_idle_timeout: Some(Duration::minutes(15)),
            emergency_access: Duration::minutes(60),
            payload_limits: PayloadLimits::default(),
            allow_loopback_webhooks: false,
            second_factor_roles: vec![Role::Admin],
            max_share_days: wardline_domain::sharing::DEFAULT_MAX_SHARE_DAYS,
            invitation_mail: None,
            ice: visits::IceSettings::default(),
            practice_time_zone: chrono_tz::UTC,
            bulk_exports: bulk_export::BulkExportSettings::default(),
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
    /// The other workers on the same database, told when a device is revoked here.
    peers: Option<Arc<dyn DeviceSessions>>,
    logins: Arc<throttle::LoginThrottle>,
    invitations: Arc<throttle::InvitationThrottle>,
    /// Signs devices' certificates; none for the command line and tools.
    device_ca: Option<Arc<device_certificates::DeviceCa>>,
    /// What "now" is for expiries (sessions, emergency access, shares): the system's
    /// clock, or a test's.
    clock: Arc<dyn wardline_alarms::Clock>,
    /// Share-link openings, one at a time (see [`Wardline::open_share_link`]).
    link_opens: Arc<tokio::sync::Mutex<()>>,
    /// The visits' rooms open in this process.
    rooms: Arc<visits::VisitRooms>,
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
            peers: None,
            logins: Arc::new(throttle::LoginThrottle::default()),
            invitations: Arc::new(throttle::InvitationThrottle::default()),
            device_ca: None,
            clock: Arc::new(wardline_alarms::SystemClock),
            link_opens: Arc::new(tokio::sync::Mutex::new(())),
            rooms: Arc::new(visits::VisitRooms::default()),
        }
    }

    /// Invitations go out by e-mail through this server, linking to this address.
    pub fn with_invitation_mail(mut self, mail: sharing::InvitationMail) -> Self {
        let mut settings = (*self.settings).clone();
        settings.invitation_mail = Some(mail);
        self.settings = Arc::new(settings);
        self
    }

    /// Expiries are judged by this clock from now on (tests move it).
    pub fn with_clock(mut self, clock: Arc<dyn wardline_alarms::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Device certificates are issued by this CA from now on.
    pub fn with_device_ca(mut self, ca: Arc<device_certificates::DeviceCa>) -> Self {
        self.device_ca = Some(ca);
        self
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

    /// A revoked device's connections to other workers end too: `peers` carries the word.
    pub fn with_peers(mut self, peers: Arc<dyn DeviceSessions>) -> Self {
        self.peers = Some(peers);
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
        self.clock.now()
    }

    fn disconnect(&self, device_id: &DeviceId) {
        self.disconnect_here(device_id);
        if let Some(peers) = &self.peers {
            peers.disconnect(device_id);
        }
    }

    /// Ends a device's connections to this process (another worker revoked it).
    pub fn disconnect_here(&self, device_id: &DeviceId) {
        if let Ok(all) = self.device_sessions.read() {
            for sessions in all.iter() {
                sessions.disconnect(device_id);
            }
        }
    }
}

/// Checks a text's length in characters, naming the field when it is wrong.
pub fn bounded(field: &str, text: &str, max: usize) -> Result<String, Error> {
    let text = clean_text(field, text, max)?;
    if text.is_empty() {
        return Err(Error::invalid(field, format!("1 to {max} characters")));
    }
    Ok(text)
}

/// A person's text (a name, a reason, a note) as it is stored: trimmed and in Unicode
/// normal form C, so that the same name typed on two keyboards is the same name. Control
/// characters (NUL, line breaks, escapes) and the bidirectional overrides and isolates are
/// refused, naming the character: they forge log lines and audit entries, and make a
/// name read differently on screen from what it is. Empty is allowed here (an optional
/// note); [`bounded`] requires some text.
pub fn clean_text(field: &str, text: &str, max: usize) -> Result<String, Error> {
    let text = text.trim();
    if let Some(refused) = text
        .chars()
        .find(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    {
        return Err(Error::invalid(
            field,
            format!(
                "contains U+{:04X}, a control or text-direction character; write plain text",
                u32::from(refused)
            ),
        ));
    }
    // The length is the text's as sent, as the API's schema states it.
    if text.chars().count() > max {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    Ok(icu_normalizer::ComposingNormalizerBorrowed::new_nfc()
        .normalize(text)
        .into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(text: &str) -> String {
        match clean_text("name", text, 200) {
            Err(Error::InvalidRequest { field, message }) => {
                assert_eq!(field.as_deref(), Some("name"));
                message
            }
            other => panic!("{text:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn controls_and_direction_overrides_are_refused_by_name() {
        assert!(refusal("Ada\u{0}Lovelace").contains("U+0000"));
        assert!(refusal("Ada\r\nadmin logged in").contains("U+000D"));
        assert!(refusal("Ada\u{1b}[31m").contains("U+001B"));
        // "Ada" followed by a right-to-left override that makes later text read backwards.
        assert!(refusal("Ada \u{202e}gnp.exe").contains("U+202E"));
        assert!(refusal("\u{2066}Ada").contains("U+2066"));
    }

    #[test]
    fn text_is_trimmed_and_composed() {
        // "Zoë" typed as "e" plus a combining diaeresis is stored as one "ë".
        let composed = clean_text("name", "  Zoe\u{308} ", 200).expect("clean");
        assert_eq!(composed, "Zo\u{eb}");
        assert_eq!(bounded("name", "  ", 200).ok(), None, "blank");
        assert!(clean_text("note", "", 10).expect("empty note").is_empty());
        // Length counts the characters as sent.
        assert!(clean_text("name", "abc", 3).is_ok());
        assert!(clean_text("name", "abcd", 3).is_err());
    }
}
