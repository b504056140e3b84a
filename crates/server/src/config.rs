//! Configuration: built-in defaults < TOML file < environment (`WARDLINE_…`) < command
//! line, resolved by one pure function so that every layer can be tested without touching
//! the process environment.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use wardline_store::sqlite::DatabaseKey;

/// A server certificate the hospital issued, used instead of Wardline's own CA.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnCertificate {
    /// PEM: the server certificate first, then any intermediates.
    pub certificate_file: PathBuf,
    /// PEM: its private key. Outside the data folder.
    pub key_file: PathBuf,
    /// PEM: the CA certificate(s) devices and browsers trust; the server checks its
    /// certificate against them at start, for every configured host name.
    pub ca_file: PathBuf,
}

/// The settings a running server uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Keys that must not travel with a copy of the data folder (the audit key); outside
    /// it, by default beside it as `<data folder>-keys`.
    pub keys_dir: PathBuf,
    /// Signed checkpoints of the audit chain are appended to this file, outside the data
    /// folder (by default beside it); in production, storage that cannot be rewritten.
    pub audit_checkpoint_file: PathBuf,
    /// How often the server signs and exports the chain's head, if it moved.
    pub audit_checkpoint_seconds: u64,
    pub mqtt_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// TLS on both listeners. Off only when asked for, and then only on loopback.
    pub tls: bool,
    /// Names (and addresses) the server certificate is issued for.
    pub hostnames: Vec<String>,
    /// The hospital's own certificate, instead of one from Wardline's own CA.
    pub own_certificate: Option<OwnCertificate>,
    pub max_payload_bytes: usize,
    pub max_future_skew_seconds: i64,
    pub session_hours: i64,
    /// A session its person has not used for this many minutes ends; 0 turns this off.
    pub session_idle_minutes: i64,
    /// How long an emergency ("break-the-glass") access lasts.
    pub emergency_access_minutes: i64,
    /// Accounts of these roles must log in with a second factor (administrators unless
    /// configured otherwise).
    pub second_factor_roles: Vec<wardline_domain::Role>,
    /// The longest a patient's share with a specialist may last, in days.
    pub max_share_days: i64,
    pub log_filter: String,
    pub log_json: bool,
    /// NEWS2 scores the latest value of each vital sign taken within this many minutes
    /// before the newest one.
    pub news2_window_minutes: i64,
    /// SMTP server for e-mail notifications; none means e-mail channels stay queued.
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    pub smtp_from: String,
    pub smtp_starttls: bool,
    /// First retry of a failed notification after this many milliseconds, doubling...
    pub notify_retry_base_ms: u64,
    /// ...up to this many seconds between attempts...
    pub notify_retry_max_seconds: u64,
    /// ...and a dead letter once this many seconds have passed since it was queued.
    pub notify_retry_horizon_seconds: i64,
    pub webhook_timeout_seconds: u64,
    /// Webhooks may go to this machine (a receiver beside the server); off by default.
    /// Link-local and cloud metadata addresses are refused whatever this says.
    pub allow_loopback_webhooks: bool,
    /// Without a care team escalation policy, a high-priority alarm nobody acknowledges
    /// is notified again this often.
    pub alarm_repeat_minutes: i64,
    /// A listener serving only `/metrics`, without a login, for Prometheus; none by
    /// default (an admin reads `/metrics` on the API listener).
    pub metrics_listen: Option<SocketAddr>,
    /// Longest a request answered once may take (live streams excepted).
    pub request_timeout_seconds: u64,
    /// Where visits' browsers find each other (STUN, TURN).
    pub telehealth: TelehealthConfig,
    /// A request's headers (and, over TLS, the handshake) must arrive within this long.
    pub http_header_read_timeout_seconds: u64,
    /// An HTTP connection that moves no byte for this long is closed; longer than any
    /// request may take, and than a live stream's keep-alive interval.
    pub http_idle_timeout_seconds: u64,
    /// HTTP connections held at once, in total and per source address; beyond them a
    /// connection is closed unread, and devices on MQTT are unaffected.
    pub http_max_connections: usize,
    pub http_max_connections_per_address: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client (for the audit trail and
    /// login throttling); they are held only to the total connection cap.
    pub http_trusted_proxies: Vec<IpAddr>,
    /// Connections from `http_trusted_proxies` start with a PROXY protocol header (v1 or
    /// v2) naming the client, as a TCP (layer 4) balancer sends it; one without it is
    /// closed. Connections from other addresses are taken as they come.
    pub http_proxy_protocol: bool,
    /// Where the key that encrypts the database at rest comes from.
    pub database_key: DatabaseKeySource,
    /// Where everything is stored: the embedded database in the data folder, or a
    /// PostgreSQL server shared by several workers.
    pub store: StoreLocation,
    /// The message bus between workers on one PostgreSQL database; `None` for one server.
    pub bus: Option<BusLocation>,
    /// `[fhir]`: where bulk exports are written and how long they are kept.
    pub fhir: FhirConfig,
    /// For tests only (`WARDLINE_TEST_ALARM_EVALUATION_DELAY_US`): a pause per event the
    /// alarm engine evaluates, to show that a slow engine loses nothing.
    pub test_alarm_evaluation_delay_us: u64,
}

/// Where the database key comes from. The default, a key file in the keys folder made
/// on first start, encrypts every installation without any setting.
#[derive(Debug, Clone, PartialEq)]
pub enum DatabaseKeySource {
    /// A file holding the key as 64 hexadecimal digits; made (owner-only, with a new
    /// random key) when the database is new or still unencrypted.
    File(PathBuf),
    /// The key itself, from `WARDLINE_DATABASE_KEY` (for a secret store that sets
    /// environment variables).
    Given(DatabaseKey),
    /// A command whose standard output is the key (run with `sh -c`), so that a key
    /// management system can hand it over at start and it is never on disk.
    Command(String),
    /// Not encrypted: only where the operator chose so (`encryption = "off"`), for
    /// example on a volume the platform already encrypts.
    Off,
}

/// Where the records live.
#[derive(Clone, PartialEq)]
pub enum StoreLocation {
    /// SQLite in the data folder: one machine, nothing else to run.
    Embedded,
    /// A PostgreSQL server, for any number of workers.
    Postgres {
        /// A `postgres://` URL; it may carry a password, so it is never printed whole.
        url: String,
        /// Connections this process holds open at most.
        pool_size: usize,
        /// The certificate authorities (PEM file) of the database server's certificate:
        /// connections use TLS and verify the server. `None`: plain TCP.
        ca_file: Option<PathBuf>,
    },
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded => f.write_str("Embedded"),
            Self::Postgres {
                url,
                pool_size,
                ca_file,
            } => f
                .debug_struct("Postgres")
                .field("url", &redact_password(url))
                .field("pool_size", pool_size)
                .field("ca_file", ca_file)
                .finish(),
        }
    }
}

/// Where the workers of one installation meet: a NATS server and the subjects they use.
#[derive(Clone, PartialEq)]
pub struct BusLocation {
    /// A `nats://` URL (or several, comma-separated, for a cluster); it may carry a
    /// password or token, so it is never printed whole.
    pub url: String,
    /// The first part of every subject: installations (or tests) sharing one NATS server
    /// keep apart by giving each its own.
    pub subject_prefix: String,
}

impl std::fmt::Debug for BusLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.url.split(',').map(redact_password).collect();
        f.debug_struct("BusLocation")
            .field("url", &urls.join(","))
            .field("subject_prefix", &self.subject_prefix)
            .finish()
    }
}

/// `bus.url` / `WARDLINE_BUS` / `--bus`: none (the default) or NATS URLs; only beside a
/// PostgreSQL store, the one kind of store several workers share.
fn bus_location(
    cli: Option<&str>,
    env: &BTreeMap<String, String>,
    file: &BusSection,
    store: &StoreLocation,
) -> Result<Option<BusLocation>, ConfigError> {
    let given = cli
        .map(str::to_owned)
        .or_else(|| env.get("WARDLINE_BUS").cloned())
        .or_else(|| file.url.clone());
    let url = match given.as_deref().map(str::trim) {
        None | Some("" | "none") => return Ok(None),
        Some(url) => url.to_owned(),
    };
    for one in url.split(',') {
        let parsed = url::Url::parse(one.trim())
            .map_err(|error| ConfigError::Invalid(format!("bus: not a valid NATS URL: {error}")))?;
        if !["nats", "tls"].contains(&parsed.scheme()) {
            return Err(ConfigError::Invalid(format!(
                "bus: expected nats:// or tls:// URLs, not {:?}",
                redact_password(one)
            )));
        }
    }
    if *store == StoreLocation::Embedded {
        return Err(ConfigError::Invalid(
            "bus: a message bus joins workers on one PostgreSQL database; give store as a \
             postgres:// URL too (the embedded database has one server)"
                .into(),
        ));
    }
    let subject_prefix = env
        .get("WARDLINE_BUS_SUBJECT_PREFIX")
        .cloned()
        .or_else(|| file.subject_prefix.clone())
        .unwrap_or_else(|| "wardline".into());
    if subject_prefix.is_empty()
        || subject_prefix.len() > 64
        || !subject_prefix.split('.').all(|token| {
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
    {
        return Err(ConfigError::Invalid(format!(
            "bus.subject_prefix: 1 to 64 characters, dot-separated words of letters, digits, \
             '-' and '_', not {subject_prefix:?}"
        )));
    }
    Ok(Some(BusLocation {
        url,
        subject_prefix,
    }))
}

/// The URL with its password (if any) replaced, for messages and logs.
pub fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only a URL that cannot have a password refuses one; this one has one.
            let _ = parsed.set_password(Some("********"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(not a URL)".into(),
    }
}

/// `store.url` / `WARDLINE_STORE` / `--store`: `embedded` (the default) or a PostgreSQL URL.
fn store_location(
    cli: Option<&str>,
    env: &BTreeMap<String, String>,
    file: &StoreSection,
) -> Result<StoreLocation, ConfigError> {
    let pool_size = env_value(env, "WARDLINE_STORE_POOL_SIZE")?
        .or(file.pool_size)
        .unwrap_or(16);
    if pool_size == 0 {
        return Err(ConfigError::Invalid(
            "store.pool_size must be at least 1".into(),
        ));
    }
    let given = cli
        .map(str::to_owned)
        .or_else(|| env.get("WARDLINE_STORE").cloned())
        .or_else(|| file.url.clone());
    match given.as_deref().map(str::trim) {
        None | Some("" | "embedded" | "sqlite") => Ok(StoreLocation::Embedded),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            url::Url::parse(url).map_err(|error| {
                ConfigError::Invalid(format!("store: not a valid PostgreSQL URL: {error}"))
            })?;
            Ok(StoreLocation::Postgres {
                url: url.to_owned(),
                pool_size,
                ca_file: env
                    .get("WARDLINE_STORE_CA_FILE")
                    .map(PathBuf::from)
                    .or_else(|| file.ca_file.clone()),
            })
        }
        Some(other) => Err(ConfigError::Invalid(format!(
            "store: expected `embedded` or a postgres:// URL, not {:?}",
            redact_password(other)
        ))),
    }
}

/// The name of the default database key file in the keys folder.
pub const DATABASE_KEY_FILE: &str = "database.key";

/// `[fhir]`: FHIR bulk exports' files.
#[derive(Debug, Clone, PartialEq)]
pub struct FhirConfig {
    /// Where bulk exports' NDJSON files are written (owner-only), by default
    /// `fhir-exports` in the data folder. Workers on one PostgreSQL database must share
    /// it: the worker that writes an export need not be the one that serves it.
    pub export_dir: PathBuf,
    /// How long a finished export's files are kept.
    pub export_retention_hours: i64,
    /// Lines per file before an export's next file of the same type.
    pub export_lines_per_file: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirSection {
    pub export_dir: Option<PathBuf>,
    pub export_retention_hours: Option<i64>,
    pub export_lines_per_file: Option<u64>,
}

fn fhir_config(
    file: &FhirSection,
    env: &BTreeMap<String, String>,
    data_dir: &std::path::Path,
) -> Result<FhirConfig, ConfigError> {
    let export_dir = env_value(env, "WARDLINE_FHIR_EXPORT_DIR")?
        .or_else(|| file.export_dir.clone())
        .unwrap_or_else(|| data_dir.join("fhir-exports"));
    let export_retention_hours = env_value(env, "WARDLINE_FHIR_EXPORT_RETENTION_HOURS")?
        .or(file.export_retention_hours)
        .unwrap_or(24);
    if !(1..=24 * 30).contains(&export_retention_hours) {
        return Err(ConfigError::Invalid(
            "fhir.export_retention_hours must be 1 to 720".into(),
        ));
    }
    let export_lines_per_file = env_value(env, "WARDLINE_FHIR_EXPORT_LINES_PER_FILE")?
        .or(file.export_lines_per_file)
        .unwrap_or(100_000);
    if !(1..=100_000_000).contains(&export_lines_per_file) {
        return Err(ConfigError::Invalid(
            "fhir.export_lines_per_file must be 1 to 100000000".into(),
        ));
    }
    Ok(FhirConfig {
        export_dir,
        export_retention_hours,
        export_lines_per_file,
    })
}

/// `[telehealth]`: the STUN and TURN servers video visits use, and the practice's time
/// zone for the remote-monitoring ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct TelehealthConfig {
    pub stun_urls: Vec<String>,
    pub turn_urls: Vec<String>,
    /// A file holding the TURN server's shared secret (coturn's `static-auth-secret`),
    /// from which per-person credentials limited in time are made. The secret itself is
    /// never in the configuration, so that it is never printed with it.
    pub turn_secret_file: Option<PathBuf>,
    pub turn_credential_minutes: i64,
    /// Media only through TURN (see `IceSettings::relay_only`).
    pub relay_only: bool,
    pub practice_time_zone: chrono_tz::Tz,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelehealthSection {
    pub stun_urls: Option<Vec<String>>,
    pub turn_urls: Option<Vec<String>>,
    pub turn_secret_file: Option<PathBuf>,
    pub turn_credential_minutes: Option<i64>,
    pub relay_only: Option<bool>,
    pub time_zone: Option<String>,
}

fn telehealth_config(
    file: &TelehealthSection,
    env: &BTreeMap<String, String>,
) -> Result<TelehealthConfig, ConfigError> {
    let list = |name: &'static str, from_file: &Option<Vec<String>>| -> Vec<String> {
        env.get(name)
            .map(|text| {
                text.split(',')
                    .map(str::trim)
                    .filter(|url| !url.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .or_else(|| from_file.clone())
            .unwrap_or_default()
    };
    let stun_urls = list("WARDLINE_STUN_URLS", &file.stun_urls);
    let turn_urls = list("WARDLINE_TURN_URLS", &file.turn_urls);
    for url in &stun_urls {
        if !url.starts_with("stun:") && !url.starts_with("stuns:") {
            return Err(ConfigError::Invalid(format!(
                "telehealth.stun_urls: {url:?} is not a stun: or stuns: URL"
            )));
        }
    }
    for url in &turn_urls {
        if !url.starts_with("turn:") && !url.starts_with("turns:") {
            return Err(ConfigError::Invalid(format!(
                "telehealth.turn_urls: {url:?} is not a turn: or turns: URL"
            )));
        }
    }
    let turn_secret_file = env
        .get("WARDLINE_TURN_SECRET_FILE")
        .map(PathBuf::from)
        .or_else(|| file.turn_secret_file.clone());
    if !turn_urls.is_empty() && turn_secret_file.is_none() {
        return Err(ConfigError::Invalid(
            "telehealth.turn_urls needs telehealth.turn_secret_file (the TURN server's shared secret)"
                .into(),
        ));
    }
    let turn_credential_minutes = env_value(env, "WARDLINE_TURN_CREDENTIAL_MINUTES")?
        .or(file.turn_credential_minutes)
        .unwrap_or(12 * 60);
    if !(5..=7 * 24 * 60).contains(&turn_credential_minutes) {
        return Err(ConfigError::Invalid(
            "telehealth.turn_credential_minutes must be 5 to 10080".into(),
        ));
    }
    let relay_only = env_value(env, "WARDLINE_TURN_RELAY_ONLY")?
        .or(file.relay_only)
        .unwrap_or(false);
    if relay_only && turn_urls.is_empty() {
        return Err(ConfigError::Invalid(
            "telehealth.relay_only needs telehealth.turn_urls: without TURN no media could flow"
                .into(),
        ));
    }
    let zone_name = env
        .get("WARDLINE_PRACTICE_TIME_ZONE")
        .cloned()
        .or_else(|| file.time_zone.clone())
        .unwrap_or_else(|| "UTC".into());
    let practice_time_zone = zone_name.parse().map_err(|_| {
        ConfigError::Invalid(format!(
            "telehealth.time_zone: {zone_name:?} is not an IANA time zone (e.g. America/New_York)"
        ))
    })?;
    Ok(TelehealthConfig {
        stun_urls,
        turn_urls,
        turn_secret_file,
        turn_credential_minutes,
        relay_only,
        practice_time_zone,
    })
}

/// Defaults: TLS ports that collide with nothing already running on these machines
/// (Mosquitto 1883, NATS 4222, PostgreSQL 5432, Redis 6379).
pub const DEFAULT_MQTT_PORT: u16 = 8883;
pub const DEFAULT_HTTP_PORT: u16 = 8443;

/// The TOML file's shape; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub mqtt: ListenSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub ingest: IngestSection,
    #[serde(default)]
    pub sessions: SessionSection,
    #[serde(default)]
    pub access: AccessSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub analytics: AnalyticsSection,
    #[serde(default)]
    pub smtp: SmtpSection,
    #[serde(default)]
    pub notifications: NotificationsSection,
    #[serde(default)]
    pub alarms: AlarmsSection,
    #[serde(default)]
    pub metrics: ListenSection,
    #[serde(default)]
    pub keys: KeysSection,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub database: DatabaseSection,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub bus: BusSection,
    #[serde(default)]
    pub telehealth: TelehealthSection,
    #[serde(default)]
    pub fhir: FhirSection,
}

/// `[bus]`: the message bus between workers (see [`BusLocation`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSection {
    pub url: Option<String>,
    pub subject_prefix: Option<String>,
}

/// `[store]`: where the records live (see [`StoreLocation`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    pub url: Option<String>,
    pub pool_size: Option<usize>,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// `on` (the default) or `off`.
    pub encryption: Option<Switch>,
    pub key_file: Option<PathBuf>,
    pub key_command: Option<String>,
}

/// A setting that is on or off, spelled as such in the file and the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    On,
    Off,
}

impl std::str::FromStr for Switch {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            other => Err(format!("{other:?} is neither on nor off")),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub from: Option<String>,
    pub starttls: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsSection {
    pub retry_base_ms: Option<u64>,
    pub retry_max_seconds: Option<u64>,
    pub retry_horizon_seconds: Option<i64>,
    pub webhook_timeout_seconds: Option<u64>,
    pub allow_loopback_webhooks: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmsSection {
    pub repeat_minutes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    pub checkpoint_file: Option<PathBuf>,
    pub checkpoint_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsSection {
    pub news2_window_minutes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub listen: Option<SocketAddr>,
    pub request_timeout_seconds: Option<u64>,
    pub header_read_timeout_seconds: Option<u64>,
    pub idle_timeout_seconds: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_address: Option<usize>,
    pub trusted_proxies: Option<Vec<IpAddr>>,
    pub proxy_protocol: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub enabled: Option<bool>,
    pub hostnames: Option<Vec<String>>,
    pub certificate_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    pub max_payload_bytes: Option<usize>,
    pub max_future_skew_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSection {
    pub hours: Option<i64>,
    pub idle_minutes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    /// How long an emergency ("break-the-glass") access lasts.
    pub emergency_minutes: Option<i64>,
    /// Roles whose accounts must log in with a second factor (default `["admin"]`; `[]`
    /// for none).
    pub second_factor_roles: Option<Vec<String>>,
    /// The longest a patient's share with a specialist may last, in days.
    pub max_share_days: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub filter: Option<String>,
    pub json: Option<bool>,
}

/// Settings given on the command line (highest precedence).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    /// `--store`: `embedded` or a PostgreSQL URL.
    pub store: Option<String>,
    /// `--bus`: NATS URLs.
    pub bus: Option<String>,
    pub keys_dir: Option<PathBuf>,
    pub mqtt_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub plaintext: bool,
    pub hostnames: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file: {0}")]
    File(#[from] toml::de::Error),
    #[error("environment variable {name}: {reason}")]
    Env { name: &'static str, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// `tls.certificate_file`, `tls.key_file` and `tls.ca_file` (or `WARDLINE_TLS_CERTIFICATE_FILE`,
/// `WARDLINE_TLS_KEY_FILE`, `WARDLINE_TLS_CA_FILE`): all three, or none.
fn own_certificate(
    file: &TlsSection,
    env: &BTreeMap<String, String>,
) -> Result<Option<OwnCertificate>, ConfigError> {
    let path = |name: &str, from_file: &Option<PathBuf>| {
        env.get(name)
            .map(PathBuf::from)
            .or_else(|| from_file.clone())
    };
    let certificate = path("WARDLINE_TLS_CERTIFICATE_FILE", &file.certificate_file);
    let key = path("WARDLINE_TLS_KEY_FILE", &file.key_file);
    let ca = path("WARDLINE_TLS_CA_FILE", &file.ca_file);
    match (certificate, key, ca) {
        (None, None, None) => Ok(None),
        (Some(certificate_file), Some(key_file), Some(ca_file)) => Ok(Some(OwnCertificate {
            certificate_file,
            key_file,
            ca_file,
        })),
        _ => Err(ConfigError::Invalid(
            "tls.certificate_file, tls.key_file and tls.ca_file go together: give all three to use the hospital's certificate, or none for Wardline's own CA".into(),
        )),
    }
}

fn env_value<T: std::str::FromStr>(
    env: &BTreeMap<String, String>,
    name: &'static str,
) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    env.get(name)
        .map(|text| {
            text.parse::<T>().map_err(|error| ConfigError::Env {
                name,
                reason: error.to_string(),
            })
        })
        .transpose()
}

/// Resolves the configuration from its layers.
pub fn load(
    file_text: Option<&str>,
    env: &BTreeMap<String, String>,
    cli: &Overrides,
) -> Result<Config, ConfigError> {
    let file: ConfigFile = match file_text {
        Some(text) => toml::from_str(text)?,
        None => ConfigFile::default(),
    };
    let data_dir = cli
        .data_dir
        .clone()
        .or(env_value(env, "WARDLINE_DATA_DIR")?)
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("wardline-data"));
    // Beside the data folder, never inside it: a copy of the folder must not carry them.
    let beside = |suffix: &str| {
        let mut name = data_dir
            .file_name()
            .map(|name| name.to_os_string())
            .unwrap_or_else(|| "wardline-data".into());
        name.push(suffix);
        data_dir.with_file_name(name)
    };
    let keys_dir = cli
        .keys_dir
        .clone()
        .or(env_value(env, "WARDLINE_KEYS_DIR")?)
        .or(file.keys.dir)
        .unwrap_or_else(|| beside("-keys"));
    let audit_checkpoint_file = env_value(env, "WARDLINE_AUDIT_CHECKPOINT_FILE")?
        .or(file.audit.checkpoint_file)
        .unwrap_or_else(|| beside("-audit-checkpoints.jsonl"));
    let audit_checkpoint_seconds = env_value(env, "WARDLINE_AUDIT_CHECKPOINT_SECONDS")?
        .or(file.audit.checkpoint_seconds)
        .unwrap_or(300);
    let mqtt_listen = cli
        .mqtt_listen
        .or(env_value(env, "WARDLINE_MQTT_LISTEN")?)
        .or(file.mqtt.listen)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], DEFAULT_MQTT_PORT)));
    let http_listen = cli
        .http_listen
        .or(env_value(env, "WARDLINE_HTTP_LISTEN")?)
        .or(file.http.listen)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], DEFAULT_HTTP_PORT)));
    let plaintext_env: Option<bool> = env_value(env, "WARDLINE_PLAINTEXT")?;
    let tls = if cli.plaintext || plaintext_env == Some(true) {
        false
    } else {
        file.tls.enabled.unwrap_or(true)
    };
    let own_certificate = own_certificate(&file.tls, env)?;
    let hostnames = if !cli.hostnames.is_empty() {
        cli.hostnames.clone()
    } else if let Some(names) = env.get("WARDLINE_HOSTNAMES") {
        names
            .split(',')
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect()
    } else {
        file.tls
            .hostnames
            .unwrap_or_else(|| vec!["localhost".into()])
    };
    let database_key = database_key_source(&file.database, env, &keys_dir)?;
    let store = store_location(cli.store.as_deref(), env, &file.store)?;
    let bus = bus_location(cli.bus.as_deref(), env, &file.bus, &store)?;
    let fhir = fhir_config(&file.fhir, env, &data_dir)?;
    let config = Config {
        fhir,
        data_dir,
        keys_dir,
        audit_checkpoint_file,
        audit_checkpoint_seconds,
        mqtt_listen,
        http_listen,
        tls,
        hostnames,
        own_certificate,
        max_payload_bytes: env_value(env, "WARDLINE_MAX_PAYLOAD_BYTES")?
            .or(file.ingest.max_payload_bytes)
            .unwrap_or(256 * 1024),
        max_future_skew_seconds: file.ingest.max_future_skew_seconds.unwrap_or(300),
        session_hours: file.sessions.hours.unwrap_or(12),
        session_idle_minutes: file.sessions.idle_minutes.unwrap_or(15),
        emergency_access_minutes: file.access.emergency_minutes.unwrap_or(60),
        second_factor_roles: second_factor_roles(&file.access, env)?,
        max_share_days: file
            .access
            .max_share_days
            .unwrap_or(wardline_domain::sharing::DEFAULT_MAX_SHARE_DAYS),
        log_filter: env
            .get("RUST_LOG")
            .cloned()
            .or(file.log.filter)
            .unwrap_or_else(|| "info".into()),
        log_json: env_value(env, "WARDLINE_LOG_JSON")?
            .or(file.log.json)
            .unwrap_or(false),
        news2_window_minutes: file.analytics.news2_window_minutes.unwrap_or(60),
        smtp_host: env_value::<String>(env, "WARDLINE_SMTP_HOST")?
            .or(file.smtp.host)
            .filter(|host| !host.trim().is_empty()),
        smtp_port: env_value(env, "WARDLINE_SMTP_PORT")?
            .or(file.smtp.port)
            .unwrap_or(587),
        smtp_from: env_value(env, "WARDLINE_SMTP_FROM")?
            .or(file.smtp.from)
            .unwrap_or_else(|| "wardline@localhost".into()),
        smtp_starttls: env_value(env, "WARDLINE_SMTP_STARTTLS")?
            .or(file.smtp.starttls)
            .unwrap_or(true),
        notify_retry_base_ms: env_value(env, "WARDLINE_NOTIFY_RETRY_BASE_MS")?
            .or(file.notifications.retry_base_ms)
            .unwrap_or(10_000),
        notify_retry_max_seconds: env_value(env, "WARDLINE_NOTIFY_RETRY_MAX_SECONDS")?
            .or(file.notifications.retry_max_seconds)
            .unwrap_or(1_800),
        notify_retry_horizon_seconds: env_value(env, "WARDLINE_NOTIFY_RETRY_HORIZON_SECONDS")?
            .or(file.notifications.retry_horizon_seconds)
            .unwrap_or(86_400),
        webhook_timeout_seconds: file.notifications.webhook_timeout_seconds.unwrap_or(10),
        allow_loopback_webhooks: env_value(env, "WARDLINE_ALLOW_LOOPBACK_WEBHOOKS")?
            .or(file.notifications.allow_loopback_webhooks)
            .unwrap_or(false),
        alarm_repeat_minutes: file.alarms.repeat_minutes.unwrap_or(5),
        metrics_listen: cli
            .metrics_listen
            .or(env_value(env, "WARDLINE_METRICS_LISTEN")?)
            .or(file.metrics.listen),
        request_timeout_seconds: env_value(env, "WARDLINE_HTTP_REQUEST_TIMEOUT_SECONDS")?
            .or(file.http.request_timeout_seconds)
            .unwrap_or(30),
        telehealth: telehealth_config(&file.telehealth, env)?,
        http_header_read_timeout_seconds: env_value(
            env,
            "WARDLINE_HTTP_HEADER_READ_TIMEOUT_SECONDS",
        )?
        .or(file.http.header_read_timeout_seconds)
        .unwrap_or(10),
        http_idle_timeout_seconds: env_value(env, "WARDLINE_HTTP_IDLE_TIMEOUT_SECONDS")?
            .or(file.http.idle_timeout_seconds)
            .unwrap_or(120),
        http_max_connections: env_value(env, "WARDLINE_HTTP_MAX_CONNECTIONS")?
            .or(file.http.max_connections)
            .unwrap_or(1024),
        http_max_connections_per_address: env_value(
            env,
            "WARDLINE_HTTP_MAX_CONNECTIONS_PER_ADDRESS",
        )?
        .or(file.http.max_connections_per_address)
        .unwrap_or(128),
        http_trusted_proxies: match env.get("WARDLINE_HTTP_TRUSTED_PROXIES") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| {
                    item.parse().map_err(|_| ConfigError::Env {
                        name: "WARDLINE_HTTP_TRUSTED_PROXIES",
                        reason: format!("{item:?} is not an IP address"),
                    })
                })
                .collect::<Result<_, _>>()?,
            None => file.http.trusted_proxies.unwrap_or_default(),
        },
        http_proxy_protocol: env_value(env, "WARDLINE_HTTP_PROXY_PROTOCOL")?
            .or(file.http.proxy_protocol)
            .unwrap_or(false),
        database_key,
        store,
        bus,
        test_alarm_evaluation_delay_us: env_value(env, "WARDLINE_TEST_ALARM_EVALUATION_DELAY_US")?
            .unwrap_or(0),
    };
    validate(&config)?;
    Ok(config)
}

/// The roles that must log in with a second factor: `WARDLINE_SECOND_FACTOR_ROLES` (a
/// comma-separated list, or `none`), else the file's `access.second_factor_roles`, else
/// administrators.
fn second_factor_roles(
    access: &AccessSection,
    env: &BTreeMap<String, String>,
) -> Result<Vec<wardline_domain::Role>, ConfigError> {
    let names: Vec<String> = match env.get("WARDLINE_SECOND_FACTOR_ROLES") {
        Some(list) if list.trim() == "none" => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect(),
        None => match &access.second_factor_roles {
            Some(names) => names.clone(),
            None => return Ok(vec![wardline_domain::Role::Admin]),
        },
    };
    let mut roles = Vec::new();
    for name in names {
        let role = name.parse::<wardline_domain::Role>().map_err(|_| {
            ConfigError::Invalid(format!(
                "access.second_factor_roles: {name:?} is not a role (admin, clinician, nurse or patient)"
            ))
        })?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    Ok(roles)
}

/// The database key's source: encryption is on unless turned off; the key given in the
/// environment comes before a key command, which comes before a key file (environment
/// before file in each).
fn database_key_source(
    file: &DatabaseSection,
    env: &BTreeMap<String, String>,
    keys_dir: &Path,
) -> Result<DatabaseKeySource, ConfigError> {
    let given = env
        .get("WARDLINE_DATABASE_KEY")
        .map(|text| {
            DatabaseKey::from_hex(text).map_err(|error| ConfigError::Env {
                name: "WARDLINE_DATABASE_KEY",
                reason: error.to_string(),
            })
        })
        .transpose()?;
    let command = env
        .get("WARDLINE_DATABASE_KEY_COMMAND")
        .cloned()
        .or_else(|| file.key_command.clone())
        .filter(|command| !command.trim().is_empty());
    let key_file: Option<PathBuf> =
        env_value(env, "WARDLINE_DATABASE_KEY_FILE")?.or_else(|| file.key_file.clone());
    let switch: Option<Switch> =
        env_value(env, "WARDLINE_DATABASE_ENCRYPTION")?.or(file.encryption);
    if switch == Some(Switch::Off) {
        if given.is_some() || command.is_some() || key_file.is_some() {
            return Err(ConfigError::Invalid(
                "database encryption is off, yet a database key is configured; remove one of the two".into(),
            ));
        }
        return Ok(DatabaseKeySource::Off);
    }
    Ok(match (given, command) {
        (Some(key), _) => DatabaseKeySource::Given(key),
        (None, Some(command)) => DatabaseKeySource::Command(command),
        (None, None) => {
            DatabaseKeySource::File(key_file.unwrap_or_else(|| keys_dir.join(DATABASE_KEY_FILE)))
        }
    })
}

/// `path` with `.` components dropped and `..` applied where a named component precedes it.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn is_loopback(address: &SocketAddr) -> bool {
    match address.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback(),
    }
}

fn validate(config: &Config) -> Result<(), ConfigError> {
    if !config.tls {
        for (name, address) in [("MQTT", config.mqtt_listen), ("HTTP", config.http_listen)] {
            if !is_loopback(&address) {
                return Err(ConfigError::Invalid(format!(
                    "plaintext was asked for, but the {name} listener {address} is not a loopback address; \
                     health data crosses networks only over TLS"
                )));
            }
        }
    }
    if config.http_proxy_protocol && config.http_trusted_proxies.is_empty() {
        return Err(ConfigError::Invalid(
            "http.proxy_protocol is read only from the balancers in http.trusted_proxies; \
             name them"
                .into(),
        ));
    }
    if !(1024..=16 * 1024 * 1024).contains(&config.max_payload_bytes) {
        return Err(ConfigError::Invalid(
            "ingest.max_payload_bytes must be 1 KiB to 16 MiB".into(),
        ));
    }
    if !(0..=86_400).contains(&config.max_future_skew_seconds) {
        return Err(ConfigError::Invalid(
            "ingest.max_future_skew_seconds must be 0 to 86400".into(),
        ));
    }
    if !(1..=24 * 30).contains(&config.session_hours) {
        return Err(ConfigError::Invalid(
            "sessions.hours must be 1 to 720".into(),
        ));
    }
    if !(1..=365).contains(&config.max_share_days) {
        return Err(ConfigError::Invalid(
            "access.max_share_days must be 1 to 365".into(),
        ));
    }
    if !(5..=12 * 60).contains(&config.emergency_access_minutes) {
        return Err(ConfigError::Invalid(
            "access.emergency_minutes must be 5 to 720".into(),
        ));
    }
    if !(0..=24 * 60).contains(&config.session_idle_minutes) {
        return Err(ConfigError::Invalid(
            "sessions.idle_minutes must be 0 (off) to 1440".into(),
        ));
    }
    if !(1..=24 * 60).contains(&config.news2_window_minutes) {
        return Err(ConfigError::Invalid(
            "analytics.news2_window_minutes must be 1 to 1440".into(),
        ));
    }
    if !(1..=3_600_000).contains(&config.notify_retry_base_ms) {
        return Err(ConfigError::Invalid(
            "notifications.retry_base_ms must be 1 to 3600000".into(),
        ));
    }
    if !(1..=86_400).contains(&config.notify_retry_max_seconds) {
        return Err(ConfigError::Invalid(
            "notifications.retry_max_seconds must be 1 to 86400".into(),
        ));
    }
    if !(1..=30 * 86_400).contains(&config.notify_retry_horizon_seconds) {
        return Err(ConfigError::Invalid(
            "notifications.retry_horizon_seconds must be 1 s to 30 days".into(),
        ));
    }
    if !(1..=300).contains(&config.webhook_timeout_seconds) {
        return Err(ConfigError::Invalid(
            "notifications.webhook_timeout_seconds must be 1 to 300".into(),
        ));
    }
    if !(1..=24 * 60).contains(&config.alarm_repeat_minutes) {
        return Err(ConfigError::Invalid(
            "alarms.repeat_minutes must be 1 to 1440".into(),
        ));
    }
    if !(1..=3600).contains(&config.request_timeout_seconds) {
        return Err(ConfigError::Invalid(
            "http.request_timeout_seconds must be 1 to 3600".into(),
        ));
    }
    if !(1..=300).contains(&config.http_header_read_timeout_seconds) {
        return Err(ConfigError::Invalid(
            "http.header_read_timeout_seconds must be 1 to 300".into(),
        ));
    }
    // Live streams send a keep-alive every 15 s; a request in progress may be silent for
    // as long as it is allowed to take.
    if config.http_idle_timeout_seconds <= config.request_timeout_seconds.max(15)
        || config.http_idle_timeout_seconds > 86_400
    {
        return Err(ConfigError::Invalid(format!(
            "http.idle_timeout_seconds must be longer than http.request_timeout_seconds ({} s) and than 15 s, and at most 86400",
            config.request_timeout_seconds
        )));
    }
    if !(1..=1_000_000).contains(&config.http_max_connections)
        || !(1..=config.http_max_connections).contains(&config.http_max_connections_per_address)
    {
        return Err(ConfigError::Invalid(
            "http.max_connections must be 1 to 1000000, and http.max_connections_per_address 1 to http.max_connections".into(),
        ));
    }
    if !(1..=86_400).contains(&config.audit_checkpoint_seconds) {
        return Err(ConfigError::Invalid(
            "audit.checkpoint_seconds must be 1 to 86400".into(),
        ));
    }
    let data_dir = lexical(&config.data_dir);
    if !matches!(
        data_dir.components().next_back(),
        Some(Component::Normal(_))
    ) {
        return Err(ConfigError::Invalid(format!(
            "data_dir ({}) must name a folder (for example wardline-data), so that the keys and audit checkpoints can live beside it",
            config.data_dir.display()
        )));
    }
    let mut outside = vec![
        ("keys.dir", &config.keys_dir),
        ("audit.checkpoint_file", &config.audit_checkpoint_file),
    ];
    if let DatabaseKeySource::File(key_file) = &config.database_key {
        outside.push(("database.key_file", key_file));
    }
    if let Some(own) = &config.own_certificate {
        outside.push(("tls.key_file", &own.key_file));
    }
    for (name, path) in outside {
        // Spellings of one place compare alike; a relative path and an absolute one
        // cannot be compared without the working directory, which this does not read.
        let path = lexical(path);
        if path.is_absolute() == data_dir.is_absolute() && path.starts_with(&data_dir) {
            return Err(ConfigError::Invalid(format!(
                "{name} ({}) must be outside the data folder ({}): a copy of the folder must not carry it",
                path.display(),
                config.data_dir.display()
            )));
        }
    }
    if config.hostnames.is_empty() {
        return Err(ConfigError::Invalid(
            "tls.hostnames must name at least one host".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_tls_on_ports_that_collide_with_nothing() {
        let config = load(None, &BTreeMap::new(), &Overrides::default()).unwrap();
        assert!(config.tls);
        assert_eq!(config.mqtt_listen.port(), 8883);
        assert_eq!(config.http_listen.port(), 8443);
        for taken in [1883, 4222, 5432, 6379] {
            assert_ne!(config.mqtt_listen.port(), taken);
            assert_ne!(config.http_listen.port(), taken);
        }
    }

    #[test]
    fn keys_and_audit_checkpoints_live_beside_the_data_folder_never_inside() {
        let config = load(
            None,
            &env(&[("WARDLINE_DATA_DIR", "/srv/wardline/data")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.keys_dir, PathBuf::from("/srv/wardline/data-keys"));
        assert_eq!(
            config.audit_checkpoint_file,
            PathBuf::from("/srv/wardline/data-audit-checkpoints.jsonl")
        );
        let inside = load(
            Some("[keys]\ndir = \"/srv/wardline/data/keys\"\n"),
            &env(&[("WARDLINE_DATA_DIR", "/srv/wardline/data")]),
            &Overrides::default(),
        );
        assert!(
            matches!(&inside, Err(ConfigError::Invalid(message)) if message.contains("keys.dir")),
            "{inside:?}"
        );
        // Other spellings of a place inside are refused too, and a data folder without a
        // name of its own has no "beside".
        let spelled = load(
            Some("[keys]\ndir = \"/srv/wardline/./other/../data/keys\"\n"),
            &env(&[("WARDLINE_DATA_DIR", "/srv/wardline/data/")]),
            &Overrides::default(),
        );
        assert!(spelled.is_err(), "{spelled:?}");
        for unnamed in [".", "/", "data/.."] {
            let refused = load(
                None,
                &env(&[("WARDLINE_DATA_DIR", unnamed)]),
                &Overrides::default(),
            );
            assert!(
                matches!(&refused, Err(ConfigError::Invalid(message)) if message.contains("must name a folder")),
                "{unnamed}: {refused:?}"
            );
        }
        let cli = Overrides {
            keys_dir: Some("/run/secrets/wardline".into()),
            ..Overrides::default()
        };
        let from_cli = load(
            Some("[keys]\ndir = \"/etc/wardline/keys\"\n"),
            &env(&[("WARDLINE_KEYS_DIR", "/var/lib/keys")]),
            &cli,
        )
        .unwrap();
        assert_eq!(from_cli.keys_dir, PathBuf::from("/run/secrets/wardline"));
    }

    #[test]
    fn a_bus_joins_workers_on_postgresql_only_and_its_password_is_never_shown() {
        let data = ("WARDLINE_DATA_DIR", "/srv/wardline/data");
        let store = ("WARDLINE_STORE", "postgres://db/wardline");
        let config = load(None, &env(&[data, store]), &Overrides::default()).unwrap();
        assert_eq!(config.bus, None);
        let file = "[bus]\nurl = \"nats://file-nats:4222\"\nsubject_prefix = \"ward-3\"\n";
        let config = load(Some(file), &env(&[data, store]), &Overrides::default()).unwrap();
        assert_eq!(
            config.bus,
            Some(BusLocation {
                url: "nats://file-nats:4222".into(),
                subject_prefix: "ward-3".into()
            })
        );
        // The environment over the file, the command line over both.
        let secret = "nats://wardline:t0ken-word@nats-1:4222,nats://nats-2:4222";
        let config = load(
            Some(file),
            &env(&[data, store, ("WARDLINE_BUS", secret)]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            config.bus.as_ref().map(|bus| bus.url.as_str()),
            Some(secret)
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("t0ken-word"), "{shown}");
        assert!(shown.contains("nats-2:4222"), "{shown}");
        let cli = Overrides {
            bus: Some("nats://cli:4222".into()),
            ..Overrides::default()
        };
        let config = load(
            Some(file),
            &env(&[data, store, ("WARDLINE_BUS", secret)]),
            &cli,
        )
        .unwrap();
        assert_eq!(
            config.bus.map(|bus| bus.url),
            Some("nats://cli:4222".to_owned())
        );
        for (wrong, said) in [
            (vec![("WARDLINE_BUS", "redis://cache:6379")], "bus:"),
            (vec![("WARDLINE_BUS", "nats://[broken")], "bus:"),
            (
                vec![
                    ("WARDLINE_BUS", "nats://n:4222"),
                    ("WARDLINE_BUS_SUBJECT_PREFIX", "a..b"),
                ],
                "bus.subject_prefix",
            ),
            (
                vec![
                    ("WARDLINE_BUS", "nats://n:4222"),
                    ("WARDLINE_BUS_SUBJECT_PREFIX", "a b>"),
                ],
                "bus.subject_prefix",
            ),
        ] {
            let mut given = vec![data, store];
            given.extend(wrong.iter().copied());
            let refused = load(None, &env(&given), &Overrides::default());
            assert!(
                matches!(&refused, Err(ConfigError::Invalid(message)) if message.starts_with(said)),
                "{wrong:?}: {refused:?}"
            );
        }
        // Beside the embedded database, a bus has nothing to join.
        let refused = load(
            None,
            &env(&[data, ("WARDLINE_BUS", "nats://n:4222")]),
            &Overrides::default(),
        );
        assert!(
            matches!(&refused, Err(ConfigError::Invalid(message)) if message.contains("PostgreSQL")),
            "{refused:?}"
        );
    }

    #[test]
    fn the_store_is_embedded_unless_a_postgres_url_is_given_and_its_password_is_never_shown() {
        let data = ("WARDLINE_DATA_DIR", "/srv/wardline/data");
        let config = load(None, &env(&[data]), &Overrides::default()).unwrap();
        assert_eq!(config.store, StoreLocation::Embedded);
        let file = "[store]\nurl = \"postgres://wardline@db-file/wardline\"\npool_size = 8\n";
        let config = load(Some(file), &env(&[data]), &Overrides::default()).unwrap();
        assert_eq!(
            config.store,
            StoreLocation::Postgres {
                url: "postgres://wardline@db-file/wardline".into(),
                pool_size: 8,
                ca_file: None
            }
        );
        // The environment over the file, the command line over both.
        let secret = "postgresql://wardline:s3cret-word@db-env:5433/wardline";
        let config = load(
            Some(file),
            &env(&[data, ("WARDLINE_STORE", secret)]),
            &Overrides::default(),
        )
        .unwrap();
        assert!(
            matches!(&config.store, StoreLocation::Postgres { url, pool_size: 8, .. } if url == secret)
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret-word"), "{shown}");
        assert!(shown.contains("db-env:5433"), "{shown}");
        let cli = Overrides {
            store: Some("embedded".into()),
            ..Overrides::default()
        };
        let config = load(Some(file), &env(&[data, ("WARDLINE_STORE", secret)]), &cli).unwrap();
        assert_eq!(config.store, StoreLocation::Embedded);
        for wrong in [
            "mysql://db/wardline",
            "postgres://[broken",
            "/var/lib/wardline.db",
        ] {
            let refused = load(
                None,
                &env(&[data, ("WARDLINE_STORE", wrong)]),
                &Overrides::default(),
            );
            assert!(
                matches!(&refused, Err(ConfigError::Invalid(message)) if message.starts_with("store:")),
                "{wrong}: {refused:?}"
            );
        }
        let refused = load(
            Some("[store]\nurl = \"postgres://db:5432/w\"\npool_size = 0\n"),
            &env(&[data]),
            &Overrides::default(),
        );
        assert!(
            matches!(&refused, Err(ConfigError::Invalid(message)) if message.contains("pool_size")),
            "{refused:?}"
        );
    }

    #[test]
    fn the_hospitals_certificate_takes_three_files_and_its_key_stays_out_of_the_data_folder() {
        let data = ("WARDLINE_DATA_DIR", "/srv/wardline/data");
        let file = "[tls]\ncertificate_file = \"/etc/pki/wardline.pem\"\nkey_file = \"/etc/pki/private/wardline.key\"\nca_file = \"/etc/pki/hospital-ca.pem\"\n";
        let config = load(Some(file), &env(&[data]), &Overrides::default()).unwrap();
        assert_eq!(
            config.own_certificate,
            Some(OwnCertificate {
                certificate_file: "/etc/pki/wardline.pem".into(),
                key_file: "/etc/pki/private/wardline.key".into(),
                ca_file: "/etc/pki/hospital-ca.pem".into(),
            })
        );
        // The environment names a file over the configuration file.
        let config = load(
            Some(file),
            &env(&[data, ("WARDLINE_TLS_KEY_FILE", "/run/secrets/wardline.key")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            config.own_certificate.map(|own| own.key_file),
            Some(PathBuf::from("/run/secrets/wardline.key"))
        );
        let alone = load(
            Some("[tls]\ncertificate_file = \"/etc/pki/wardline.pem\"\n"),
            &env(&[data]),
            &Overrides::default(),
        );
        assert!(
            matches!(&alone, Err(ConfigError::Invalid(message)) if message.contains("go together")),
            "{alone:?}"
        );
        let inside = load(
            Some(file),
            &env(&[
                data,
                ("WARDLINE_TLS_KEY_FILE", "/srv/wardline/data/tls.key"),
            ]),
            &Overrides::default(),
        );
        assert!(
            matches!(&inside, Err(ConfigError::Invalid(message)) if message.contains("tls.key_file")),
            "{inside:?}"
        );
        assert_eq!(
            load(None, &env(&[data]), &Overrides::default())
                .unwrap()
                .own_certificate,
            None
        );
    }

    #[test]
    fn second_factor_roles_default_to_administrators_and_may_be_widened_or_turned_off() {
        use wardline_domain::Role;
        let roles = |file: Option<&str>, pairs: &[(&str, &str)]| {
            load(file, &env(pairs), &Overrides::default()).map(|config| config.second_factor_roles)
        };
        assert_eq!(roles(None, &[]).unwrap(), vec![Role::Admin]);
        let file = "[access]\nsecond_factor_roles = [\"admin\", \"clinician\", \"nurse\"]\n";
        assert_eq!(
            roles(Some(file), &[]).unwrap(),
            vec![Role::Admin, Role::Clinician, Role::Nurse]
        );
        assert_eq!(
            roles(Some(file), &[("WARDLINE_SECOND_FACTOR_ROLES", "none")]).unwrap(),
            Vec::<Role>::new(),
            "the environment over the file"
        );
        assert_eq!(
            roles(
                None,
                &[("WARDLINE_SECOND_FACTOR_ROLES", " admin, nurse ,admin")]
            )
            .unwrap(),
            vec![Role::Admin, Role::Nurse]
        );
        assert_eq!(
            roles(Some("[access]\nsecond_factor_roles = []\n"), &[]).unwrap(),
            Vec::<Role>::new()
        );
        let wrong = roles(None, &[("WARDLINE_SECOND_FACTOR_ROLES", "admin,doctor")])
            .unwrap_err()
            .to_string();
        assert!(wrong.contains("\"doctor\" is not a role"), "{wrong}");
    }

    #[test]
    fn the_database_key_comes_from_the_environment_a_command_or_a_file() {
        let none = load(None, &BTreeMap::new(), &Overrides::default()).unwrap();
        assert_eq!(
            none.database_key,
            DatabaseKeySource::File(PathBuf::from("wardline-data-keys/database.key")),
            "encrypted by default, with a key file in the keys folder"
        );
        let hex = "ab".repeat(32);
        let file = "[database]\nkey_command = \"vault read key\"\nkey_file = \"/etc/k\"\n";
        let from_file = load(Some(file), &BTreeMap::new(), &Overrides::default()).unwrap();
        assert_eq!(
            from_file.database_key,
            DatabaseKeySource::Command("vault read key".into()),
            "a command before a file"
        );
        let given = load(
            Some(file),
            &env(&[("WARDLINE_DATABASE_KEY", &hex)]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            given.database_key,
            DatabaseKeySource::Given(DatabaseKey::from_hex(&hex).unwrap())
        );
        assert!(
            !format!("{given:?}").contains(&hex),
            "the configuration's debug form shows no key"
        );
        let bad = load(
            None,
            &env(&[("WARDLINE_DATABASE_KEY", "not a key")]),
            &Overrides::default(),
        );
        assert!(
            matches!(&bad, Err(ConfigError::Env { name: "WARDLINE_DATABASE_KEY", reason }) if reason.contains("64 hexadecimal digits") && !reason.contains("not a key")),
            "{bad:?}"
        );
        let off = load(
            Some("[database]\nencryption = \"off\"\n"),
            &BTreeMap::new(),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(off.database_key, DatabaseKeySource::Off);
        let contradictory = load(
            Some("[database]\nencryption = \"off\"\n"),
            &env(&[("WARDLINE_DATABASE_KEY", &hex)]),
            &Overrides::default(),
        );
        assert!(matches!(contradictory, Err(ConfigError::Invalid(_))));
        let inside = load(
            Some("data_dir = \"/srv/data\"\n[database]\nkey_file = \"/srv/data/database.key\"\n"),
            &BTreeMap::new(),
            &Overrides::default(),
        );
        assert!(
            matches!(&inside, Err(ConfigError::Invalid(message)) if message.contains("database.key_file")),
            "{inside:?}"
        );
    }

    #[test]
    fn file_then_environment_then_command_line() {
        let file = "data_dir = \"/from/file\"\n[mqtt]\nlisten = \"127.0.0.1:9001\"\n[http]\nlisten = \"127.0.0.1:9002\"\n";
        let from_file = load(Some(file), &BTreeMap::new(), &Overrides::default()).unwrap();
        assert_eq!(from_file.data_dir, PathBuf::from("/from/file"));
        assert_eq!(from_file.mqtt_listen.port(), 9001);
        let environment = env(&[
            ("WARDLINE_DATA_DIR", "/from/env"),
            ("WARDLINE_MQTT_LISTEN", "127.0.0.1:9101"),
        ]);
        let from_env = load(Some(file), &environment, &Overrides::default()).unwrap();
        assert_eq!(from_env.data_dir, PathBuf::from("/from/env"));
        assert_eq!(from_env.mqtt_listen.port(), 9101);
        assert_eq!(
            from_env.http_listen.port(),
            9002,
            "untouched layers still apply"
        );
        let cli = Overrides {
            data_dir: Some("/from/cli".into()),
            ..Overrides::default()
        };
        let from_cli = load(Some(file), &environment, &cli).unwrap();
        assert_eq!(from_cli.data_dir, PathBuf::from("/from/cli"));
        assert_eq!(from_cli.mqtt_listen.port(), 9101);
    }

    #[test]
    fn the_metrics_listener_and_request_deadline_follow_the_same_layers() {
        let file = "[metrics]\nlisten = \"127.0.0.1:9201\"\n[http]\nrequest_timeout_seconds = 20\n";
        let none = load(None, &BTreeMap::new(), &Overrides::default()).unwrap();
        assert_eq!(none.metrics_listen, None, "off unless asked for");
        assert_eq!(none.request_timeout_seconds, 30);
        let from_file = load(Some(file), &BTreeMap::new(), &Overrides::default()).unwrap();
        assert_eq!(from_file.metrics_listen.map(|a| a.port()), Some(9201));
        assert_eq!(from_file.request_timeout_seconds, 20);
        let environment = env(&[
            ("WARDLINE_METRICS_LISTEN", "127.0.0.1:9202"),
            ("WARDLINE_HTTP_REQUEST_TIMEOUT_SECONDS", "10"),
        ]);
        let from_env = load(Some(file), &environment, &Overrides::default()).unwrap();
        assert_eq!(from_env.metrics_listen.map(|a| a.port()), Some(9202));
        assert_eq!(from_env.request_timeout_seconds, 10);
        let cli = Overrides {
            metrics_listen: Some("127.0.0.1:9203".parse().unwrap()),
            ..Overrides::default()
        };
        let from_cli = load(Some(file), &environment, &cli).unwrap();
        assert_eq!(from_cli.metrics_listen.map(|a| a.port()), Some(9203));
        let error = load(
            None,
            &env(&[("WARDLINE_HTTP_REQUEST_TIMEOUT_SECONDS", "0")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("request_timeout_seconds"),
            "{error}"
        );
    }

    #[test]
    fn plaintext_only_on_loopback() {
        let cli = Overrides {
            plaintext: true,
            ..Overrides::default()
        };
        let error = load(None, &BTreeMap::new(), &cli).unwrap_err();
        assert!(
            error.to_string().contains("not a loopback address"),
            "{error}"
        );
        let loopback = Overrides {
            plaintext: true,
            mqtt_listen: Some("127.0.0.1:0".parse().unwrap()),
            http_listen: Some("[::1]:0".parse().unwrap()),
            ..Overrides::default()
        };
        assert!(!load(None, &BTreeMap::new(), &loopback).unwrap().tls);
    }

    #[test]
    fn bad_settings_are_named() {
        let error = load(
            Some("[mqtt]\nlisten = \"nowhere\"\n"),
            &BTreeMap::new(),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("listen"), "{error}");
        let error = load(
            Some("surprise = 1\n"),
            &BTreeMap::new(),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("surprise"), "{error}");
        let error = load(
            None,
            &env(&[("WARDLINE_HTTP_LISTEN", "x")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("WARDLINE_HTTP_LISTEN"),
            "{error}"
        );
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// The documented example must stay loadable and equal to the defaults it claims.
    #[test]
    fn the_example_file_is_the_defaults() {
        let text = include_str!("../../../docs/wardline.example.toml");
        let from_file = load(Some(text), &BTreeMap::new(), &Overrides::default()).unwrap();
        let defaults = load(None, &BTreeMap::new(), &Overrides::default()).unwrap();
        assert_eq!(from_file, defaults);
    }

    /// Bulk exports' folder defaults into the data folder; the environment overrides
    /// the file; a retention outside its bounds is refused naming the setting.
    #[test]
    fn fhir_exports_follow_file_then_environment() {
        let file = "data_dir = \"/srv/wardline\"\n[fhir]\nexport_dir = \"/srv/exports\"\nexport_retention_hours = 6\n";
        let defaults = load(
            Some("data_dir = \"/srv/wardline\""),
            &BTreeMap::new(),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            defaults.fhir.export_dir,
            PathBuf::from("/srv/wardline/fhir-exports")
        );
        let from_file = load(Some(file), &BTreeMap::new(), &Overrides::default()).unwrap();
        assert_eq!(from_file.fhir.export_dir, PathBuf::from("/srv/exports"));
        assert_eq!(from_file.fhir.export_retention_hours, 6);
        let env: BTreeMap<String, String> = [
            (
                "WARDLINE_FHIR_EXPORT_DIR".to_owned(),
                "/mnt/shared".to_owned(),
            ),
            (
                "WARDLINE_FHIR_EXPORT_RETENTION_HOURS".to_owned(),
                "48".to_owned(),
            ),
        ]
        .into();
        let from_env = load(Some(file), &env, &Overrides::default()).unwrap();
        assert_eq!(from_env.fhir.export_dir, PathBuf::from("/mnt/shared"));
        assert_eq!(from_env.fhir.export_retention_hours, 48);
        let error = load(
            Some("[fhir]\nexport_retention_hours = 0\n"),
            &BTreeMap::new(),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("fhir.export_retention_hours"),
            "{error}"
        );
    }

    /// The worker configuration of the deployment document loads, and says what it
    /// claims: a PostgreSQL store, a bus of three NATS servers, the hospital's certificate.
    #[test]
    fn the_deployment_worker_file_loads() {
        let text = include_str!("../../../deploy/wardline-worker.toml");
        let config = load(Some(text), &BTreeMap::new(), &Overrides::default()).unwrap();
        assert!(matches!(
            &config.store,
            StoreLocation::Postgres { pool_size: 16, .. }
        ));
        let bus = config.bus.expect("a bus");
        assert_eq!(bus.url.split(',').count(), 3);
        assert_eq!(bus.subject_prefix, "wardline");
        assert!(config.own_certificate.is_some());
        assert_eq!(config.keys_dir, PathBuf::from("/etc/wardline/keys"));
    }
}
