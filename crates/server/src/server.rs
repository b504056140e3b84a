//! `wardline serve`: storage, TLS, the MQTT endpoint and the HTTP API in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use wardline_alarms::SystemClock;
use wardline_analysis::AnalysisSettings;
use wardline_api::extract::ClientCertificate;
use wardline_api::{ApiSettings, AppState, MetricsRenderer};
use wardline_domain::PayloadLimits;
use wardline_mqtt::{MqttEndpoint, MqttSettings};
use wardline_service::device_certificates::certificate_fingerprint;
use wardline_service::{LiveFeed, ServiceSettings, Wardline};
use wardline_store::postgres::{LeaseCandidate, PostgresOptions, PostgresStore};
use wardline_store::sqlite::{SqliteOptions, SqliteStore};
use wardline_store::{AuditKey, EvaluationFence, Store};

use crate::config::{Config, StoreLocation};
use crate::http_limits::{
    Activity, ConnectionGate, HttpLimits, Watched, client_address, until_idle,
};
use crate::tls;

/// The key that seals webhook secrets and makes alarm handles, in the keys folder.
const NOTIFY_KEY_FILE: &str = "notify.key";
/// The key that signs messages between workers (`wardline-bus`), in the keys folder.
const BUS_KEY_FILE: &str = "bus.key";

/// Where a started server listens, written to `--listen-file` for tests and tools.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ListenReport {
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    /// The metrics listener, when one is configured.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    pub tls: bool,
    pub ca_path: Option<PathBuf>,
}

/// Opens the configured store, creating the data folder (owner-only) if needed, with
/// the audit key from the keys folder (created on first use; every worker on one
/// PostgreSQL database must be given the same key).
pub async fn open_store(config: &Config) -> anyhow::Result<(Arc<dyn Store>, AuditKey)> {
    open_store_for_lease(config)
        .await
        .map(|(store, key, _)| (store, key))
}

/// [`open_store`], and on PostgreSQL this process's way to the evaluation lease, whose
/// fence the store's evaluation commits go through.
async fn open_store_for_lease(
    config: &Config,
) -> anyhow::Result<(Arc<dyn Store>, AuditKey, Option<LeaseCandidate>)> {
    match &config.store {
        StoreLocation::Embedded => {
            let (store, key) = open_embedded_store(config).await?;
            Ok((Arc::new(store), key, None))
        }
        StoreLocation::Postgres { url, pool_size, .. } => {
            prepare_data_dir(config)?;
            let audit_key = crate::audit::load_or_create_key(&config.keys_dir)?;
            let mut options = PostgresOptions::new(url.clone(), audit_key.clone());
            options.pool_size = *pool_size;
            let ca = database_ca(config)?;
            let fence = EvaluationFence::default();
            options.ca_pem = ca.clone().map(Arc::new);
            options.evaluation_fence = fence.clone();
            let store = PostgresStore::open(options).await.with_context(|| {
                format!(
                    "opening the PostgreSQL database {}",
                    crate::config::redact_password(url)
                )
            })?;
            let candidate = LeaseCandidate::new(url, ca.as_deref(), &fence);
            Ok((Arc::new(store), audit_key, Some(candidate)))
        }
    }
}

/// The certificate authorities of the PostgreSQL server's certificate, when TLS to it is
/// configured (`store.ca_file`).
pub fn database_ca(config: &Config) -> anyhow::Result<Option<Vec<u8>>> {
    match &config.store {
        StoreLocation::Postgres {
            ca_file: Some(path),
            ..
        } => Ok(Some(std::fs::read(path).with_context(|| {
            format!(
                "reading the database server's certificate authority {}",
                path.display()
            )
        })?)),
        _ => Ok(None),
    }
}

/// The data folder holds certificates (and, embedded, the database): owner-only.
fn prepare_data_dir(config: &Config) -> anyhow::Result<()> {
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data folder {}", data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", data_dir.display()))?;
    }
    Ok(())
}

/// Opens the data folder's SQLite database, encrypted with the configured key.
async fn open_embedded_store(config: &Config) -> anyhow::Result<(SqliteStore, AuditKey)> {
    prepare_data_dir(config)?;
    let data_dir = &config.data_dir;
    let audit_key = crate::audit::load_or_create_key(&config.keys_dir)?;
    let keys = crate::database_key::resolve(config)?;
    let options = |key: Option<&wardline_store::sqlite::DatabaseKey>| {
        let mut options = SqliteOptions::new(
            crate::database_key::database_path(config),
            audit_key.clone(),
        );
        options.key = key.cloned();
        options
    };
    let mut opened_with = keys.current.as_ref();
    let mut opened = SqliteStore::open(options(opened_with)).await;
    if let (Err(error), Some((next, _))) = (&opened, &keys.unfinished_rotation)
        && crate::database_key::is_wrong_key(error)
    {
        opened_with = Some(next);
        opened = SqliteStore::open(options(opened_with)).await;
    }
    let store =
        opened.with_context(|| format!("opening the database in {}", data_dir.display()))?;
    crate::database_key::settle(config, &keys, opened_with)?;
    Ok((store, audit_key))
}

/// What one HTTP client may hold, from the configuration.
pub fn http_limits(config: &Config) -> HttpLimits {
    HttpLimits {
        header_read_timeout: std::time::Duration::from_secs(
            config.http_header_read_timeout_seconds,
        ),
        idle_timeout: std::time::Duration::from_secs(config.http_idle_timeout_seconds),
        max_connections: config.http_max_connections,
        max_connections_per_address: config.http_max_connections_per_address,
    }
}

/// The service's settings from the configuration.
pub fn service_settings(config: &Config) -> anyhow::Result<ServiceSettings> {
    let telehealth = &config.telehealth;
    let turn_secret = match &telehealth.turn_secret_file {
        Some(path) => {
            let secret = std::fs::read(path).map_err(|error| {
                anyhow::anyhow!("reading the TURN secret file {}: {error}", path.display())
            })?;
            // A secret file usually ends with a line break that is not part of it.
            let secret = secret.trim_ascii().to_vec();
            anyhow::ensure!(
                secret.len() >= 16,
                "the TURN secret in {} is shorter than 16 bytes",
                path.display()
            );
            Some(secret)
        }
        None => None,
    };
    Ok(ServiceSettings {
        session_lifetime: chrono::Duration::hours(config.session_hours),
        session_idle_timeout: (config.session_idle_minutes > 0)
            .then(|| chrono::Duration::minutes(config.session_idle_minutes)),
        emergency_access: chrono::Duration::minutes(config.emergency_access_minutes),
        payload_limits: PayloadLimits {
            max_bytes: config.max_payload_bytes,
            max_future_skew: chrono::Duration::seconds(config.max_future_skew_seconds),
            ..PayloadLimits::default()
        },
        allow_loopback_webhooks: config.allow_loopback_webhooks,
        second_factor_roles: config.second_factor_roles.clone(),
        max_share_days: config.max_share_days,
        // Set once the server knows its address (`Wardline::with_invitation_mail`).
        invitation_mail: None,
        ice: wardline_service::visits::IceSettings {
            stun_urls: telehealth.stun_urls.clone(),
            turn_urls: telehealth.turn_urls.clone(),
            turn_secret,
            turn_credential_lifetime: chrono::Duration::minutes(telehealth.turn_credential_minutes),
            relay_only: telehealth.relay_only,
        },
        practice_time_zone: telehealth.practice_time_zone,
        bulk_exports: wardline_service::bulk_export::BulkExportSettings {
            directory: Some(config.fhir.export_dir.clone()),
            retention: chrono::Duration::hours(config.fhir.export_retention_hours),
            lines_per_file: config.fhir.export_lines_per_file,
            ..wardline_service::bulk_export::BulkExportSettings::default()
        },
    })
}

/// The operations over the data folder's store, without a running engine: for the
/// command line and tools working beside (or before) a server.
pub async fn offline_service(config: &Config) -> anyhow::Result<Wardline> {
    let store = open_store(config).await?.0;
    Ok(Wardline::new(store, service_settings(config)?))
}

/// Runs the server until `shutdown` is cancelled.
pub async fn serve(
    config: Config,
    listen_file: Option<PathBuf>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("wardline_http_request_duration_seconds".into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )
        .context("setting the latency histogram's buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    crate::metrics_catalog::describe();
    let (store, audit_key, mut candidate) = open_store_for_lease(&config).await?;
    let bus = match &config.bus {
        Some(bus) => {
            // Signs what workers tell each other; the same file on every worker.
            let key = crate::keys::read_or_create(
                &config.keys_dir,
                BUS_KEY_FILE,
                "message bus key",
                || {
                    let mut key = vec![0; 32];
                    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
                        .map_err(|_| anyhow::anyhow!("no randomness for the message bus key"))?;
                    Ok(key)
                },
            )?;
            Some(
                wardline_bus::Bus::connect(&bus.url, &bus.subject_prefix, &key)
                    .await
                    .context("connecting to the message bus")?,
            )
        }
        None => None,
    };
    // Without a bus a server on PostgreSQL is the only one on its database: it takes the
    // evaluation lease now or does not start, so that a second server cannot go
    // unnoticed (its alarm actions and streams would miss the first's engine).
    let first_lease = match (&mut candidate, &bus) {
        (Some(candidate), None) => Some(
            candidate
                .try_take()
                .await
                .context("taking the evaluation lease")?
                .context(
                    "another server runs on this PostgreSQL database: several servers on one \
                     database work together only through a message bus (--bus nats://…)",
                )?,
        ),
        _ => None,
    };
    let bare = Wardline::new(Arc::clone(&store), service_settings(&config)?);
    first_admin(&bare, &config.keys_dir).await?;
    // Before any device connects: a model's messages are read with its template from
    // the first one on.
    let templates = bare
        .load_mapping_templates()
        .await
        .context("loading the mapping templates in force")?;
    tracing::info!(templates, "mapping templates in force");
    let checkpoints = crate::audit::spawn_checkpoints(
        Arc::clone(&store),
        audit_key,
        config.audit_checkpoint_file.clone(),
        std::time::Duration::from_secs(config.audit_checkpoint_seconds),
        shutdown.clone(),
    );

    let devices = tls::ensure_device_authority(&config.data_dir, &config.keys_dir)?;
    let identity = match (&config.own_certificate, config.tls) {
        (_, false) => None,
        (Some(own), true) => Some(tls::load_identity(own, &config.hostnames, &devices)?),
        (None, true) => Some(tls::ensure_identity(
            &config.data_dir,
            &config.keys_dir,
            &config.hostnames,
            &devices,
        )?),
    };
    let mqtt_listener = TcpListener::bind(config.mqtt_listen)
        .await
        .with_context(|| format!("binding MQTT to {}", config.mqtt_listen))?;
    let http_listener = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("binding HTTP to {}", config.http_listen))?;
    let metrics_listener = match config.metrics_listen {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .with_context(|| format!("binding the metrics listener to {address}"))?,
        ),
        None => None,
    };
    let mqtt_address = mqtt_listener.local_addr()?;
    let http_address = http_listener.local_addr()?;
    let metrics_address = metrics_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
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
    let http_url = format!("{http_scheme}://{host}:{}", http_address.port());
    let _ = rustls::crypto::ring::default_provider().install_default();
    crate::keys::adopt(
        &config.data_dir.join("keys").join(NOTIFY_KEY_FILE),
        &config.keys_dir,
        NOTIFY_KEY_FILE,
        "notification key",
    )?;
    let notify_key = crate::keys::read_or_create(
        &config.keys_dir,
        NOTIFY_KEY_FILE,
        "notification key",
        || Ok(wardline_alarms::Sealer::generate_key()?),
    )?;
    let sealer = Arc::new(
        wardline_alarms::Sealer::from_key(&notify_key).context("loading the notification key")?,
    );
    let alarms = wardline_alarms::AlarmService::standby(
        sealer,
        bus.as_ref().map(wardline_bus::Bus::forwarder),
    );
    let (live, _live_task) = LiveFeed::start(Arc::clone(&store), 8192);
    let mut service = bare
        .with_alarms(alarms.clone())
        .with_live(live)
        .with_device_ca(Arc::clone(&devices.ca));
    if let Some(bus) = &bus {
        service = service.with_peers(bus.peers());
        service.set_room_peers(bus.room_peers());
        bus.relay(service.clone(), alarms.clone())
            .await
            .context("joining the other workers")?;
    }
    // Rule evaluation, analysis, escalation timers, notification delivery and the
    // recording of shares' expiries run in one process at a time.
    let duties = EvaluationDuties {
        store: Arc::clone(&store),
        config: config.clone(),
        public_url: http_url.clone(),
        service: service.clone(),
        alarms: alarms.clone(),
        bus: bus.clone(),
        shutdown: shutdown.clone(),
    };
    let evaluation = match candidate {
        None => Evaluation::Here(duties.start().await?),
        Some(candidate) => {
            Evaluation::ByLease(tokio::spawn(duties.hold_lease(candidate, first_lease)))
        }
    };
    // FHIR bulk exports are written by whichever worker claims them (every worker asks),
    // and their files removed once cancelled or expired.
    tokio::spawn(run_bulk_exports(service.clone(), shutdown.clone()));
    // Mapping templates put in force or retired by another process (the command line)
    // take effect within ten seconds; the API's changes take effect at once.
    {
        let service = service.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = tick.tick() => match service.refresh_mapping_templates().await {
                        Ok(true) => tracing::info!("mapping templates in force changed"),
                        Ok(false) => {}
                        Err(error) => tracing::warn!(%error, "could not read the mapping templates in force"),
                    },
                    () = shutdown.cancelled() => return,
                }
            }
        });
    }
    if let Some(smtp) = alarm_settings(&config, &http_url).smtp {
        service = service.with_invitation_mail(wardline_service::sharing::InvitationMail {
            smtp,
            app_url: http_url.clone(),
        });
    }
    let mqtt = MqttEndpoint::new(
        service.clone(),
        identity
            .as_ref()
            .map(|identity| TlsAcceptor::from(Arc::clone(&identity.mqtt_config))),
        MqttSettings::default(),
    );
    let render: MetricsRenderer = Arc::new(move || prometheus.render());
    let state = AppState {
        service,
        settings: Arc::new(ApiSettings {
            secure_cookies: config.tls,
            session_lifetime: chrono::Duration::hours(config.session_hours),
            mqtt_url: format!("{mqtt_scheme}://{host}:{}", mqtt_address.port()),
            http_url: http_url.clone(),
            request_timeout: std::time::Duration::from_secs(config.request_timeout_seconds),
        }),
        metrics: Some(Arc::clone(&render)),
    };
    let app = wardline_api::compressed(wardline_web::pages_for_unknown_addresses(
        wardline_api::router(state).merge(wardline_web::router()),
    ));
    let app = if config.tls {
        wardline_api::strict_transport(app)
    } else {
        app
    };

    println!("wardline {} serving", env!("CARGO_PKG_VERSION"));
    // The address people open: by the host name the certificate names, never 0.0.0.0.
    println!("  Open  {http_url}/  (the web app)");
    println!("  MQTT  {mqtt_scheme}://{mqtt_address}  (devices)");
    println!("  HTTP  {http_scheme}://{http_address}  (API, /api/v1/openapi.json)");
    if let Some(address) = metrics_address {
        println!("  metrics http://{address}/metrics  (Prometheus)");
    }
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
            metrics: metrics_address,
            tls: config.tls,
            ca_path: identity.as_ref().map(|identity| identity.ca_path.clone()),
        };
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, serde_json::to_vec(&report)?)?;
        std::fs::rename(&temporary, &path)?;
    }

    let mqtt_task = tokio::spawn(Arc::clone(&mqtt).serve(mqtt_listener, shutdown.clone()));
    if let Some(listener) = metrics_listener {
        let metrics_app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let render = Arc::clone(&render);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        render(),
                    )
                }
            }),
        );
        tokio::spawn(serve_http(
            listener,
            None,
            metrics_app,
            http_limits(&config),
            Arc::new(config.http_trusted_proxies.clone()),
            // Scraped on the workers' own network, not through the balancer.
            false,
            shutdown.clone(),
        ));
    }
    let http_acceptor = identity.map(|identity| TlsAcceptor::from(identity.server_config));
    serve_http(
        http_listener,
        http_acceptor,
        app,
        http_limits(&config),
        Arc::new(config.http_trusted_proxies.clone()),
        config.http_proxy_protocol,
        shutdown.clone(),
    )
    .await;
    let _ = mqtt_task.await;
    // The analysis stops at its next wait; its last batch is committed or not at all.
    match evaluation {
        Evaluation::Here(running) => running.finish().await,
        Evaluation::ByLease(task) => {
            let _ = task.await;
        }
    }
    let _ = checkpoints.await;
    tracing::info!("stopped");
    Ok(())
}

/// Writes the bulk exports waiting for a worker, one after another, asking again every
/// second, and removes ended exports' files every minute.
async fn run_bulk_exports(service: Wardline, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut last_clear = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        loop {
            let wrote = tokio::select! {
                wrote = service.run_one_bulk_export() => wrote,
                // An export cut short here is taken over by a worker once its lease ends.
                () = shutdown.cancelled() => return,
            };
            match wrote {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    tracing::warn!(%error, "could not run a bulk export");
                    break;
                }
            }
        }
        if last_clear.elapsed() >= std::time::Duration::from_secs(60) {
            last_clear = std::time::Instant::now();
            if let Err(error) = service.clear_ended_bulk_exports().await {
                tracing::warn!(%error, "could not remove ended bulk exports");
            }
        }
    }
}

/// The alarm runtime's settings from the configuration.
/// What one process at a time does for all patients: analysis, rule evaluation with its
/// timers, notification delivery, recording shares' expiries, and (among several
/// workers) answering the others' alarm commands.
struct EvaluationDuties {
    store: Arc<dyn wardline_store::Store>,
    config: Config,
    public_url: String,
    service: Wardline,
    alarms: wardline_alarms::AlarmService,
    bus: Option<wardline_bus::Bus>,
    shutdown: CancellationToken,
}

/// Where the evaluation duties run: here for good (the embedded store), or whenever
/// this worker holds the evaluation lease.
enum Evaluation {
    Here(RunningDuties),
    ByLease(tokio::task::JoinHandle<()>),
}

/// The duties running in this process; they stop when this is dropped.
struct RunningDuties {
    stop: CancellationToken,
    analysis: Option<tokio::task::JoinHandle<()>>,
    engine: Option<wardline_alarms::RunningEngine>,
    answering: Option<wardline_bus::Answering>,
}

impl Drop for RunningDuties {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RunningDuties {
    /// Stops the duties and waits for the analysis: its last batch is committed or not
    /// at all.
    async fn finish(mut self) {
        self.stop.cancel();
        // The engine and the answering stop at once; the analysis is awaited after them.
        self.answering.take();
        self.engine.take();
        if let Some(analysis) = self.analysis.take() {
            let _ = analysis.await;
        }
    }
}

impl EvaluationDuties {
    async fn start(&self) -> anyhow::Result<RunningDuties> {
        let stop = self.shutdown.child_token();
        // Analysis and rule evaluation read the committed event log from their own stored
        // cursors: they never delay an acknowledgement, and never miss a committed reading.
        let analysis = wardline_analysis::spawn_analysis(
            Arc::clone(&self.store),
            AnalysisSettings {
                news2_window: chrono::Duration::minutes(self.config.news2_window_minutes),
                ..AnalysisSettings::default()
            },
            stop.clone(),
        )
        .await
        .context("starting the analysis")?;
        let mut running = RunningDuties {
            stop,
            analysis: Some(analysis),
            engine: None,
            answering: None,
        };
        // Whatever started stops again, and is waited for, if a later step fails: no
        // analysis batch of this start commits after the lease is given up (and, it may
        // be, taken again by this worker).
        match self.start_the_rest(&mut running).await {
            Ok(()) => Ok(running),
            Err(error) => {
                running.finish().await;
                Err(error)
            }
        }
    }

    async fn start_the_rest(&self, running: &mut RunningDuties) -> anyhow::Result<()> {
        running.engine = Some(
            self.alarms
                .run_here(
                    Arc::clone(&self.store),
                    alarm_settings(&self.config, &self.public_url),
                    Arc::new(SystemClock),
                )
                .await
                .context("starting the alarm engine")?,
        );
        if let Some(bus) = &self.bus {
            running.answering = Some(
                bus.answer_commands(self.service.clone(), self.alarms.clone())
                    .await
                    .context("answering the other workers' alarm commands")?,
            );
        }
        // Shares' ends by expiry go into the audit trail, and visits' reminders into the
        // outbox, within half a minute.
        let service = self.service.clone();
        let stop = running.stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(error) = service.record_share_expiries().await {
                            tracing::warn!(%error, "could not record the shares that expired");
                        }
                        if let Err(error) = service.queue_visit_reminders().await {
                            tracing::warn!(%error, "could not queue visit reminders");
                        }
                    }
                    () = stop.cancelled() => return,
                }
            }
        });
        Ok(())
    }

    /// Runs the duties whenever this worker holds the evaluation lease, until shutdown:
    /// a standby worker asks every second, and takes over within a second or two of
    /// the holder's end, from the checkpoints the holder committed.
    async fn hold_lease(
        self,
        mut candidate: LeaseCandidate,
        mut first: Option<wardline_store::postgres::EvaluationLease>,
    ) {
        loop {
            let lease = match first.take() {
                Some(lease) => lease,
                None => loop {
                    match candidate.try_take().await {
                        Ok(Some(lease)) => break lease,
                        Ok(None) => {}
                        Err(error) => {
                            tracing::warn!(%error, "could not ask for the evaluation lease");
                        }
                    }
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        () = self.shutdown.cancelled() => return,
                    }
                },
            };
            // Not abandoned halfway when the lease is lost meanwhile: what started is
            // stopped and waited for below before the lease is given up, so nothing of
            // it commits under a later lease of this worker. (Its commits meanwhile are
            // refused by the fence.)
            let started = tokio::select! {
                started = self.start() => started,
                () = self.shutdown.cancelled() => return,
            };
            let running = match started {
                Ok(running) if !lease.held() => {
                    tracing::warn!(
                        "the evaluation lease was lost while evaluation started; trying again"
                    );
                    running.finish().await;
                    drop(lease);
                    continue;
                }
                Ok(running) => running,
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "could not take up evaluation; trying again");
                    drop(lease);
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                        () = self.shutdown.cancelled() => return,
                    }
                }
            };
            tracing::info!("this worker evaluates every patient's rules now");
            metrics::gauge!("wardline_evaluation_lease_held").set(1.0);
            tokio::select! {
                () = lease.lost() => {
                    tracing::warn!("the evaluation lease is lost; evaluation stops here until it is taken again");
                }
                () = self.shutdown.cancelled() => {}
            }
            running.finish().await;
            drop(lease);
            metrics::gauge!("wardline_evaluation_lease_held").set(0.0);
            if self.shutdown.is_cancelled() {
                return;
            }
        }
    }
}

pub fn alarm_settings(config: &Config, public_url: &str) -> wardline_alarms::AlarmSettings {
    wardline_alarms::AlarmSettings {
        retry_base: std::time::Duration::from_millis(config.notify_retry_base_ms),
        retry_max: std::time::Duration::from_secs(config.notify_retry_max_seconds),
        retry_horizon: chrono::Duration::seconds(config.notify_retry_horizon_seconds),
        webhook_timeout: std::time::Duration::from_secs(config.webhook_timeout_seconds),
        allow_loopback_webhooks: config.allow_loopback_webhooks,
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
        evaluation_delay: std::time::Duration::from_micros(config.test_alarm_evaluation_delay_us),
        ..wardline_alarms::AlarmSettings::default()
    }
}

/// One accept loop for HTTP/1.1 and HTTP/2, with or without TLS.
async fn serve_http(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    limits: HttpLimits,
    trusted_proxies: Arc<Vec<std::net::IpAddr>>,
    proxy_protocol: bool,
    shutdown: CancellationToken,
) {
    let gate = ConnectionGate::new(&limits);
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
        // Over a cap, the connection is closed at once: nothing is read from it.
        let from_proxy = trusted_proxies.contains(&peer.ip());
        let admitted = match gate.admit(peer.ip(), from_proxy) {
            Ok(admitted) => admitted,
            Err(refused) => {
                metrics::counter!("wardline_http_connections_refused_total", "cap" => refused.as_str())
                    .increment(1);
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let trusted_proxies = Arc::clone(&trusted_proxies);
        tokio::spawn(async move {
            let _admitted = admitted;
            let mut tcp = tcp;
            // Behind a TCP balancer, the client is the one its PROXY header names.
            let peer = if proxy_protocol && from_proxy {
                match crate::proxy_protocol::read_proxy_header(&mut tcp, limits.header_read_timeout)
                    .await
                {
                    Ok(Some(client)) => client,
                    Ok(None) => peer,
                    Err(error) => {
                        metrics::counter!("wardline_http_proxy_headers_refused_total").increment(1);
                        tracing::debug!(%error, "closed a balancer's connection");
                        return;
                    }
                }
            } else {
                peer
            };
            let service = |certificate: Option<ClientCertificate>| {
                hyper::service::service_fn(
                    move |mut request: hyper::Request<hyper::body::Incoming>| {
                        // Everything after this (audit, login throttling) sees the client.
                        let client = client_address(peer.ip(), request.headers(), &trusted_proxies);
                        request
                            .extensions_mut()
                            .insert(ConnectInfo(SocketAddr::new(client, peer.port())));
                        if let Some(certificate) = certificate {
                            request.extensions_mut().insert(certificate);
                        }
                        app.clone().oneshot(request)
                    },
                )
            };
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let activity = Activity::default();
            let served = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp))
                        .await
                    {
                        Ok(Ok(stream)) => {
                            // A device's certificate, which the handshake checked against
                            // the device CA.
                            let certificate = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|leaf| ClientCertificate(certificate_fingerprint(leaf)));
                            let connection = builder.serve_connection_with_upgrades(
                                TokioIo::new(Watched::new(stream, activity.clone())),
                                service(certificate),
                            );
                            until_idle(connection, &activity, limits.idle_timeout).await
                        }
                        _ => return,
                    }
                }
                None => {
                    let connection = builder.serve_connection_with_upgrades(
                        TokioIo::new(Watched::new(tcp, activity.clone())),
                        service(None),
                    );
                    until_idle(connection, &activity, limits.idle_timeout).await
                }
            };
            if let Some(Err(error)) = served {
                tracing::debug!(%error, "http connection ended with an error");
            }
        });
    }
}

/// Where the first administrator's one-time password is left for the operator.
pub const FIRST_ADMIN_PASSWORD_FILE: &str = "first-admin-password";

/// Creates the first administrator when there is none. Its generated password goes to a
/// file only the server's user can read, in the keys folder (never to the terminal or
/// the log, which are often collected); the account must change it at the first login.
/// Once it has been changed (or the account disabled), the file is removed at the next
/// start.
async fn first_admin(service: &Wardline, keys_dir: &std::path::Path) -> anyhow::Result<()> {
    let file = keys_dir.join(FIRST_ADMIN_PASSWORD_FILE);
    // The service shows an internal error as such; the operator is told its cause.
    let mut undelivered = None;
    let created = service
        .bootstrap_admin(|password| {
            crate::keys::prepare_folder(keys_dir)
                .and_then(|()| {
                    crate::keys::write_private(&file, format!("{password}\n").as_bytes())
                })
                .map_err(|error| {
                    let text = format!("{error:#}");
                    undelivered = Some(text.clone());
                    text
                })
        })
        .await
        .map_err(|error| match undelivered.take() {
            Some(cause) => anyhow::anyhow!(
                "creating the first administrator: its password could not be written ({cause}); no account was made"
            ),
            None => anyhow::anyhow!("creating the first administrator: {error}"),
        })?;
    if created {
        println!(
            "created the first administrator `admin`; its one-time password is in {} \
             (readable by this user only) and must be changed at the first login",
            file.display()
        );
        return Ok(());
    }
    if std::fs::exists(&file).unwrap_or(false) {
        let changed = match service.user_named("admin").await {
            Ok(admin) => admin.disabled || !admin.password_change_required,
            Err(wardline_service::Error::NotFound(_)) => true,
            Err(error) => {
                return Err(anyhow::anyhow!("reading the first administrator: {error}"));
            }
        };
        if changed {
            std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
            tracing::info!(
                "removed the first administrator's one-time password file: the password was changed"
            );
        }
    }
    Ok(())
}
