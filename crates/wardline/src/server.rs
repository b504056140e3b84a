//! `wardline serve`: storage, TLS, the MQTT endpoint and the HTTP API in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::PrometheusBuilder;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use wardline_api::{ApiSettings, AppState, DeviceDisconnector};
use wardline_domain::{DeviceId, PayloadLimits, Role};
use wardline_ingest::mqtt::{MqttEndpoint, MqttSettings};
use wardline_ingest::{AnalysisSettings, IngestService, LiveFeed, spawn_analysis};
use wardline_store::sqlite::{SqliteOptions, SqliteStore};
use wardline_store::{NewUser, Store};

use crate::config::Config;
use crate::tls;

/// Where a started server listens, written to `--listen-file` for tests and tools.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ListenReport {
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    pub tls: bool,
    pub ca_path: Option<PathBuf>,
}

/// Opens the data folder's database, creating the folder (owner-only) if needed.
pub async fn open_store(data_dir: &std::path::Path) -> anyhow::Result<SqliteStore> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data folder {}", data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", data_dir.display()))?;
    }
    SqliteStore::open(SqliteOptions::new(data_dir.join("wardline.db")))
        .await
        .with_context(|| format!("opening the database in {}", data_dir.display()))
}

/// Creates the first admin if there is none, and prints its one-time password.
async fn bootstrap_admin(store: &dyn Store) -> anyhow::Result<()> {
    if store.count_users_with_role(Role::Admin).await? > 0 {
        return Ok(());
    }
    let password =
        wardline_api::auth::generate_password().map_err(|error| anyhow::anyhow!("{error}"))?;
    let password_hash = wardline_api::auth::hash_password(password.clone())
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    store
        .create_user(NewUser {
            username: "admin".into(),
            display_name: "Administrator".into(),
            role: Role::Admin,
            password_hash,
            patient_id: None,
        })
        .await?;
    // Printed once to the operator's terminal, never logged.
    println!("created the first administrator: username `admin`, password `{password}`");
    println!("  (shown only now; create named accounts and disable this one)");
    Ok(())
}

#[derive(Debug)]
struct MqttDisconnector(Arc<MqttEndpoint>);

impl DeviceDisconnector for MqttDisconnector {
    fn disconnect(&self, device_id: &DeviceId) {
        self.0.disconnect_device(device_id);
    }
}

/// Runs the server until `shutdown` is cancelled.
pub async fn serve(
    config: Config,
    listen_file: Option<PathBuf>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let store: Arc<dyn Store> = Arc::new(open_store(&config.data_dir).await?);
    bootstrap_admin(store.as_ref()).await?;

    let identity = if config.tls {
        Some(tls::ensure_identity(&config.data_dir, &config.hostnames)?)
    } else {
        None
    };
    let limits = PayloadLimits {
        max_bytes: config.max_payload_bytes,
        max_future_skew: chrono::Duration::seconds(config.max_future_skew_seconds),
        ..PayloadLimits::default()
    };
    let live = LiveFeed::new(8192);
    // Analysis of committed data runs on its own task, behind a bounded queue, so that it
    // never delays an acknowledgement (see wardline_ingest::derived).
    let (analysis, _analysis_task) = spawn_analysis(
        Arc::clone(&store),
        live.clone(),
        AnalysisSettings {
            news2_window: chrono::Duration::minutes(config.news2_window_minutes),
            ..AnalysisSettings::default()
        },
    );
    let ingest = IngestService::new(Arc::clone(&store), limits, live).with_analysis(analysis);
    let mqtt = MqttEndpoint::new(
        ingest.clone(),
        Arc::clone(&store),
        identity
            .as_ref()
            .map(|identity| TlsAcceptor::from(Arc::clone(&identity.mqtt_config))),
        MqttSettings::default(),
    );

    let mqtt_listener = TcpListener::bind(config.mqtt_listen)
        .await
        .with_context(|| format!("binding MQTT to {}", config.mqtt_listen))?;
    let http_listener = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("binding HTTP to {}", config.http_listen))?;
    let mqtt_address = mqtt_listener.local_addr()?;
    let http_address = http_listener.local_addr()?;
    let host = config
        .hostnames
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let (mqtt_scheme, http_scheme) = if config.tls {
        ("mqtts", "https")
    } else {
        ("mqtt", "http")
    };
    let settings = ApiSettings {
        session_lifetime: chrono::Duration::hours(config.session_hours),
        secure_cookies: config.tls,
        mqtt_url: format!("{mqtt_scheme}://{host}:{}", mqtt_address.port()),
        http_url: format!("{http_scheme}://{host}:{}", http_address.port()),
    };
    // Alarms: rules evaluated after commit on their own task, notifications through a
    // durable outbox (see wardline_alarms).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sealer = Arc::new(
        wardline_alarms::Sealer::load_or_create(&config.data_dir.join("keys").join("notify.key"))
            .context("loading the notification key")?,
    );
    let (alarms, _alarm_tasks) = wardline_alarms::AlarmService::start(
        Arc::clone(&store),
        ingest.live(),
        alarm_settings(&config, &settings.http_url),
        sealer,
    )
    .await
    .context("starting the alarm service")?;
    let state = AppState {
        store: Arc::clone(&store),
        ingest,
        devices: Arc::new(MqttDisconnector(Arc::clone(&mqtt))),
        settings: Arc::new(settings.clone()),
        metrics: Arc::new(move || prometheus.render()),
        alarms,
        logins: Arc::new(wardline_api::throttle::LoginThrottle::default()),
    };
    let app = wardline_api::router(state);

    println!("wardline {} serving", env!("CARGO_PKG_VERSION"));
    println!("  MQTT  {mqtt_scheme}://{mqtt_address}  (devices)");
    println!("  HTTP  {http_scheme}://{http_address}  (API, /api/v1/openapi.json)");
    println!("  data  {}", config.data_dir.display());
    match &identity {
        Some(identity) => {
            println!(
                "  CA    {}  (devices and browsers trust this file)",
                identity.ca_path.display()
            );
            println!("        SHA-256 {}", identity.ca_fingerprint);
        }
        None => println!("  TLS   off: plaintext on loopback only, as asked"),
    }
    if let Some(path) = listen_file {
        let report = ListenReport {
            mqtt: mqtt_address,
            http: http_address,
            tls: config.tls,
            ca_path: identity.as_ref().map(|identity| identity.ca_path.clone()),
        };
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, serde_json::to_vec(&report)?)?;
        std::fs::rename(&temporary, &path)?;
    }

    let mqtt_task = tokio::spawn(Arc::clone(&mqtt).serve(mqtt_listener, shutdown.clone()));
    let http_acceptor = identity.map(|identity| TlsAcceptor::from(identity.server_config));
    serve_http(http_listener, http_acceptor, app, shutdown.clone()).await;
    let _ = mqtt_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// The alarm runtime's settings from the configuration.
pub fn alarm_settings(config: &Config, public_url: &str) -> wardline_alarms::AlarmSettings {
    wardline_alarms::AlarmSettings {
        retry_base: std::time::Duration::from_millis(config.notify_retry_base_ms),
        retry_max: std::time::Duration::from_secs(config.notify_retry_max_seconds),
        retry_horizon: chrono::Duration::seconds(config.notify_retry_horizon_seconds),
        webhook_timeout: std::time::Duration::from_secs(config.webhook_timeout_seconds),
        smtp: config
            .smtp_host
            .as_ref()
            .map(|host| wardline_alarms::SmtpSettings {
                host: host.clone(),
                port: config.smtp_port,
                from: config.smtp_from.clone(),
                starttls: config.smtp_starttls,
            }),
        public_url: public_url.to_owned(),
        default_repeat_secs: config.alarm_repeat_minutes * 60,
        ..wardline_alarms::AlarmSettings::default()
    }
}

/// One accept loop for HTTP/1.1 and HTTP/2, with or without TLS.
async fn serve_http(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    app.clone().oneshot(request)
                },
            );
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let served = match tls {
                Some(acceptor) => match tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    acceptor.accept(tcp),
                )
                .await
                {
                    Ok(Ok(stream)) => {
                        builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await
                    }
                    _ => return,
                },
                None => {
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                        .await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%error, "http connection ended with an error");
            }
        });
    }
}
