//! The PostgreSQL backend, for Wardline as several workers over one database.
//!
//! Every store method is one transaction on a pooled connection; a caller is answered
//! after PostgreSQL's commit, which is durable under its default `synchronous_commit`.
//!
//! Two orders must hold across workers, and each is kept by a transaction-scoped advisory
//! lock taken before the rows it orders are written and held until commit:
//! - the **audit lock**: appends to the hash-chained audit trail read the chain's head and
//!   write the next entry, so they run one at a time and the chain stays one chain;
//! - the **event lock**: the event log's readers read observations, waveform chunks and
//!   listed events "after key k", so a transaction that adds such rows draws their keys
//!   and commits while no other such transaction can, and keys become visible in order.
//!
//! A transaction that needs both takes the event lock first (a transaction that adds
//! event rows takes it before anything else), so two transactions never wait for each
//! other.
//!
//! The **evaluation fence** keeps a worker that has lost the evaluation lease (and may
//! not know it yet) from committing what its engine or analysis evaluated after another
//! worker took over: see [`EvaluationFence`]. Its lock is taken before the event lock; a
//! worker taking the lease holds it alone and for nothing else, so no wait goes round.
//!
//! A third, per patient, orders Nightscout uploads: two overlapping uploads (an app's
//! retry beside its next upload) insert the same documents in different orders, and
//! without it each would wait on the other's unique-index entry until PostgreSQL broke
//! the deadlock by failing one of them.

mod alarms;
mod audit;
mod backend_clients;
mod bulk_exports;
mod clinical;
mod devices;
mod emergency;
mod events;
mod gateways;
mod ingest;
mod nightscout;
mod outbox;
mod people;
mod rows;
mod shares;
mod templates;
mod visits;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::audit::AuditKey;
use crate::error::StoreError;

/// Versioned migrations; the index + 1 is the version each produces. A released
/// migration never changes: fixes go into a new one.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_initial.sql"),
    include_str!("../migrations/postgres/0002_login_failures.sql"),
    include_str!("../migrations/postgres/0003_visits.sql"),
    include_str!("../migrations/postgres/0004_visit_reminders.sql"),
    include_str!("../migrations/postgres/0005_bulk_exports.sql"),
    include_str!("../migrations/postgres/0006_backend_clients.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Advisory lock ids, in one space of 64-bit keys; "WARD" in the high bytes keeps them
/// apart from any other application's locks in the same database.
const LOCK_BASE: i64 = 0x5741_5244 << 32;
const MIGRATION_LOCK: i64 = LOCK_BASE | 1;
pub(crate) const AUDIT_LOCK: i64 = LOCK_BASE | 2;
pub(crate) const EVENT_LOCK: i64 = LOCK_BASE | 3;
const EVALUATION_LOCK: i64 = LOCK_BASE | 4;
/// Held shared by each fenced commit, and exclusively for a moment by a worker that has
/// just taken the lease (see [`EvaluationFence`]).
const FENCE_LOCK: i64 = LOCK_BASE | 5;
/// Per patient: this in the high half, the patient's key in the low half.
const NIGHTSCOUT_UPLOAD_LOCKS: i64 = 0x574E_5355 << 32;

/// The lock that orders one patient's Nightscout uploads (see the module's
/// documentation). Keys beyond 32 bits share a lock with another patient's, which only
/// orders two uploads that need not be.
pub(crate) fn nightscout_upload_lock(patient_key: i64) -> i64 {
    NIGHTSCOUT_UPLOAD_LOCKS | (patient_key & 0xFFFF_FFFF)
}

/// The channel on which a commit of event rows is announced to every worker's readers
/// (`NOTIFY` is delivered only if, and when, the transaction commits).
const COMMITS_CHANNEL: &str = "wardline_commits";

/// How the database is reached.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// A libpq-style connection string or `postgres://` URL.
    pub url: String,
    /// Certificate authorities (PEM) of the database server's certificate: connections
    /// then use TLS and verify the server's certificate and name. `None`: plain TCP.
    pub ca_pem: Option<Arc<Vec<u8>>>,
    /// Links the audit chain; the same key on every worker.
    pub audit_key: Arc<AuditKey>,
    /// Most connections this process holds open.
    pub pool_size: usize,
    /// How long a caller waits for a connection (or for the database to answer a new
    /// one) before it is told the database is unavailable.
    pub connect_timeout: Duration,
    /// Most device messages in one ingest commit; bounds a transaction's size and an
    /// acknowledgement's wait.
    pub max_items_per_commit: usize,
    /// Set by this process's evaluation lease (see [`LeaseCandidate`]).
    pub evaluation_fence: EvaluationFence,
}

impl PostgresOptions {
    pub fn new(url: impl Into<String>, audit_key: AuditKey) -> Self {
        Self {
            url: url.into(),
            ca_pem: None,
            audit_key: Arc::new(audit_key),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            max_items_per_commit: 4096,
            evaluation_fence: EvaluationFence::default(),
        }
    }
}

/// Fences this process's evaluation commits (alarm changes and analysis results, each
/// with its checkpoint) to the evaluation lease it holds.
///
/// A worker may lose the lease without knowing it for a moment (its lease connection
/// failed a second ago); meanwhile another worker takes the lease and resumes from the
/// committed checkpoints. Were the first worker's next commit to land after that, an
/// alarm would be raised twice, or a checkpoint moved back. So each fenced commit takes
/// the fence lock shared and checks, in its own transaction, that the lease lock is
/// still held by this process's lease session; and a worker that has just taken the
/// lease takes the fence lock exclusively once before it reads any checkpoint, which
/// waits for a commit that passed its check a moment before the lease changed hands.
/// Either a late commit lands before the new holder reads, or it is refused.
///
/// A store whose fence was never set (one process on its own, the tests) commits
/// unfenced; once set, a process that does not hold the lease commits nothing fenced.
#[derive(Debug, Clone, Default)]
pub struct EvaluationFence(Arc<std::sync::Mutex<FenceState>>);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum FenceState {
    /// Never set: commits go through unchecked.
    #[default]
    Unfenced,
    /// This process holds no lease: fenced commits are refused.
    NotHeld,
    /// Held by this process's lease `lease` (a number of this process's own, so that a
    /// lease session that ends cannot release a later one's, whatever process id the
    /// database gives it), whose database session has process id `backend`.
    Held { lease: u64, backend: i32 },
}

/// Numbers each connection made for the lease in this process.
static NEXT_LEASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl EvaluationFence {
    fn locked(&self) -> std::sync::MutexGuard<'_, FenceState> {
        // A poisoned lock still holds a whole state (it is only ever assigned).
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn held_by(&self, lease: u64, backend: i32) {
        *self.locked() = FenceState::Held { lease, backend };
    }

    /// Lease `lease` ended; a later lease's setting stays.
    fn released_by(&self, lease: u64) {
        let mut state = self.locked();
        if matches!(*state, FenceState::Held { lease: held, .. } if held == lease) {
            *state = FenceState::NotHeld;
        }
    }

    /// Refuses the commit of `transaction` unless this process holds the lease (or the
    /// fence was never set).
    pub(crate) async fn check(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
    ) -> Result<(), StoreError> {
        let state = *self.locked();
        match state {
            FenceState::Unfenced => Ok(()),
            FenceState::NotHeld => Err(StoreError::Unavailable(
                "this worker does not hold the evaluation lease; its evaluation is not kept".into(),
            )),
            FenceState::Held { backend, .. } => {
                // The fence lock first, then the check: in this order a new holder's
                // wait covers everything after a check that passed.
                transaction
                    .execute("SELECT pg_advisory_xact_lock_shared($1)", &[&FENCE_LOCK])
                    .await?;
                let holds: bool = transaction
                    .query_one(
                        "SELECT EXISTS (
                             SELECT 1 FROM pg_locks
                             WHERE locktype = 'advisory' AND granted AND pid = $1
                               AND objsubid = 1 AND classid::bigint = $2 AND objid::bigint = $3)",
                        &[
                            &backend,
                            &(EVALUATION_LOCK >> 32),
                            &(EVALUATION_LOCK & 0xFFFF_FFFF),
                        ],
                    )
                    .await?
                    .try_get(0)?;
                if holds {
                    Ok(())
                } else {
                    Err(StoreError::Unavailable(
                        "the evaluation lease has passed to another worker; this worker's \
                         evaluation is not kept"
                            .into(),
                    ))
                }
            }
        }
    }
}

/// PostgreSQL-backed [`crate::Store`].
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    fence: EvaluationFence,
    audit_key: Arc<AuditKey>,
    /// Counts this process's commits of rows the event log reads; see
    /// [`crate::EventLog::commits`].
    commits: Arc<tokio::sync::watch::Sender<u64>>,
    ingest_queue: ingest::IngestQueue,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's status, never the connection string (it may hold a password).
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects, migrates (one worker at a time) and checks the audit key.
    pub async fn open(options: PostgresOptions) -> Result<Self, StoreError> {
        let (mut config, tls) =
            connection_settings(&options.url, options.ca_pem.as_deref().map(Vec::as_slice))?;
        // The commit listener reads only; it connects as the pool does.
        let listen_config = config.clone();
        // A device hears "stored" after the commit, so the commit must be on disk
        // whatever the server's default: a database tuned with `synchronous_commit = off`
        // would lose acknowledged readings to a crash.
        let options_given = config.get_options().unwrap_or_default().to_owned();
        config.options(format!("{options_given} -c synchronous_commit=on").trim());
        let manager = Manager::from_config(
            config,
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|error| StoreError::Invalid(format!("the PostgreSQL pool: {error}")))?;
        let commits = Arc::new(tokio::sync::watch::Sender::new(0));
        let store = Self {
            ingest_queue: ingest::IngestQueue::spawn(
                pool.clone(),
                Arc::clone(&commits),
                options.max_items_per_commit,
            ),
            pool,
            fence: options.evaluation_fence,
            audit_key: options.audit_key,
            commits,
        };
        store.migrate().await?;
        audit::remember_key(&store.client().await?, &store.audit_key).await?;
        tokio::spawn(listen_for_commits(
            listen_config,
            tls,
            Arc::downgrade(&store.commits),
        ));
        Ok(store)
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Every row of one read statement on a pooled connection, each decoded by `decode`.
    pub(crate) async fn read_all<T>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        decode: impl Fn(&tokio_postgres::Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await?;
        client
            .query(&statement, params)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    /// The row of one read statement, if there is one, decoded by `decode`.
    pub(crate) async fn read_optional<T>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        decode: impl Fn(&tokio_postgres::Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await?;
        client
            .query_opt(&statement, params)
            .await?
            .as_ref()
            .map(decode)
            .transpose()
    }

    /// Tells the event log's readers in this process that rows they read were committed.
    pub(crate) fn announce_commit(&self) {
        self.commits
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        // A session lock: workers that start together migrate one after the other, and
        // the later ones find nothing left to do.
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let migrated = apply(&mut client).await;
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await?;
        migrated
    }
}

async fn apply(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version    bigint PRIMARY KEY,
                 applied_ms bigint NOT NULL
             )",
        )
        .await?;
    let current: i64 = client
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await?
        .try_get(0)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        let transaction = client.transaction().await?;
        transaction
            .batch_execute(sql)
            .await
            .map_err(|error| StoreError::Migration(format!("to version {version}: {error}")))?;
        transaction
            .execute(
                "INSERT INTO schema_version (version, applied_ms) VALUES ($1, $2)",
                &[&version, &chrono::Utc::now().timestamp_millis()],
            )
            .await?;
        transaction.commit().await?;
        tracing::info!(version, "PostgreSQL database migrated");
    }
    Ok(())
}

/// Wakes this process's event log readers when any worker commits event rows: a
/// connection of its own `LISTEN`s for the commits' `NOTIFY`, and is made again after it
/// is lost (readers also look every second, so a lost notification costs a second, never
/// an event). Ends when the store is dropped.
async fn listen_for_commits(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    commits: std::sync::Weak<tokio::sync::watch::Sender<u64>>,
) {
    use futures_util::StreamExt;
    let mut failures = 0u32;
    loop {
        let Some(sender) = commits.upgrade() else {
            return;
        };
        drop(sender);
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let mut messages =
                    futures_util::stream::poll_fn(move |context| connection.poll_message(context));
                let statement = format!("LISTEN {COMMITS_CHANNEL}");
                let listening = client.batch_execute(&statement);
                tokio::pin!(listening);
                // The LISTEN is answered through the connection, which the stream drives.
                let listened = loop {
                    tokio::select! {
                        listened = &mut listening => break listened.is_ok(),
                        message = messages.next() => if !matches!(message, Some(Ok(_))) {
                            break false;
                        },
                    }
                };
                if listened {
                    failures = 0;
                    // Commits while no one listened are found by the readers' next look.
                    announce(&commits);
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                                if !announce(&commits) {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                }
            }
            Err(error) => {
                if failures == 0 {
                    tracing::warn!(%error, "cannot listen for other workers' commits; readers look every second meanwhile");
                }
            }
        }
        failures = failures.saturating_add(1);
        tokio::time::sleep(Duration::from_millis(250 * u64::from(failures.min(20)))).await;
    }
}

/// Bumps the commit counter; false once the store is gone.
fn announce(commits: &std::sync::Weak<tokio::sync::watch::Sender<u64>>) -> bool {
    match commits.upgrade() {
        Some(sender) => {
            sender.send_modify(|count| *count = count.wrapping_add(1));
            true
        }
        None => false,
    }
}

/// The right to evaluate every patient's rules and analyse their readings, held by one
/// worker at a time for as long as this lives and its connection stays up.
///
/// It is a session advisory lock on a connection of its own, so it needs no expiry to be
/// chosen: PostgreSQL releases it the moment that session ends, whether the worker
/// stopped, was killed (`kill -9` closes its sockets) or lost the database. The holder
/// checks the connection every second and stops evaluating as soon as it fails
/// ([`EvaluationLease::lost`]); a standby worker takes the lock within a second of its
/// release and resumes from the checkpoints the last holder committed.
#[derive(Debug)]
pub struct EvaluationLease {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    lost: tokio::sync::watch::Receiver<bool>,
    fence: EvaluationFence,
    lease: u64,
}

impl Drop for EvaluationLease {
    fn drop(&mut self) {
        self.fence.released_by(self.lease);
        // Closing the connection releases the lock.
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl EvaluationLease {
    /// Completes when the lease is no longer held (its connection failed or closed).
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        // An error means the watcher ended: the lease is gone too.
        let _ = lost.wait_for(|lost| *lost).await;
    }

    /// Whether the lease is still held, as far as the last check knows.
    pub fn held(&self) -> bool {
        !*self.lost.borrow()
    }
}

/// Takes the evaluation lease if no other worker holds it; `None` when one does. `ca_pem`
/// as in [`PostgresOptions::ca_pem`]. While the lease is held, `fence` (the one given to
/// this process's store) lets its evaluation commits through; see [`EvaluationFence`].
pub async fn try_evaluation_lease(
    url: &str,
    ca_pem: Option<&[u8]>,
    fence: &EvaluationFence,
) -> Result<Option<EvaluationLease>, StoreError> {
    LeaseCandidate::new(url, ca_pem, fence).try_take().await
}

/// A worker that asks for the evaluation lease again and again (a standby): it keeps
/// one connection for its asking, instead of opening one a second, and the connection
/// becomes the lease's when the lock is granted.
#[derive(Debug)]
pub struct LeaseCandidate {
    url: String,
    ca_pem: Option<Vec<u8>>,
    fence: EvaluationFence,
    connection: Option<LeaseConnection>,
}

/// A connection to ask for (and then hold) the lease on.
#[derive(Debug)]
struct LeaseConnection {
    client: tokio_postgres::Client,
    /// Drives the connection; ends when it closes.
    task: tokio::task::JoinHandle<()>,
    lost_sender: Arc<tokio::sync::watch::Sender<bool>>,
    lost: tokio::sync::watch::Receiver<bool>,
    /// This connection's number in this process (see [`FenceState::Held`]).
    lease: u64,
}

impl Drop for LeaseCandidate {
    fn drop(&mut self) {
        if let Some(connection) = &self.connection {
            connection.task.abort();
        }
    }
}

impl LeaseCandidate {
    pub fn new(url: &str, ca_pem: Option<&[u8]>, fence: &EvaluationFence) -> Self {
        Self {
            url: url.to_owned(),
            ca_pem: ca_pem.map(<[u8]>::to_vec),
            fence: fence.clone(),
            connection: None,
        }
    }

    async fn connect(&self) -> Result<LeaseConnection, StoreError> {
        let (config, tls) = connection_settings(&self.url, self.ca_pem.as_deref())?;
        let (client, connection) =
            tokio::time::timeout(Duration::from_secs(5), config.connect(tls))
                .await
                .map_err(|_| {
                    StoreError::Unavailable("connecting for the evaluation lease timed out".into())
                })??;
        let (lost_sender, lost) = tokio::sync::watch::channel(false);
        let lost_sender = Arc::new(lost_sender);
        let on_close = Arc::clone(&lost_sender);
        let lease = NEXT_LEASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let fence = self.fence.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "the evaluation lease's connection failed");
            }
            fence.released_by(lease);
            on_close.send_replace(true);
        });
        Ok(LeaseConnection {
            client,
            task,
            lost_sender,
            lost,
            lease,
        })
    }

    /// Asks for the lease once; `None` while another worker holds it.
    pub async fn try_take(&mut self) -> Result<Option<EvaluationLease>, StoreError> {
        if self
            .connection
            .as_ref()
            .is_some_and(|connection| *connection.lost.borrow())
        {
            self.connection = None;
        }
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        // A kept connection to a server that stopped answering must not hold the
        // standby up: asked again on a new one next time.
        let asked = tokio::time::timeout(
            Duration::from_secs(5),
            connection
                .client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&EVALUATION_LOCK]),
        )
        .await;
        let taken = match asked {
            Ok(Ok(row)) => row.try_get::<_, bool>(0),
            Ok(Err(error)) => {
                connection.task.abort();
                return Err(error.into());
            }
            Err(_) => {
                connection.task.abort();
                return Err(StoreError::Unavailable(
                    "asking for the evaluation lease timed out".into(),
                ));
            }
        };
        match taken {
            Ok(true) => {}
            Ok(false) => {
                // Kept for the next time.
                self.connection = Some(connection);
                return Ok(None);
            }
            Err(error) => {
                connection.task.abort();
                return Err(error.into());
            }
        }
        match self.hold(&connection).await {
            Ok(()) => Ok(Some(self.lease(connection))),
            Err(error) => {
                // Closing the connection gives the lock back.
                connection.task.abort();
                Err(error)
            }
        }
    }

    /// Once the lock is granted: sets the fence to this lease, after a commit of the last
    /// holder that passed its fence check just before the lease changed hands has ended
    /// (it holds the fence lock shared until then), so that the checkpoints read after
    /// this include it.
    async fn hold(&self, connection: &LeaseConnection) -> Result<(), StoreError> {
        let pid: i32 = connection
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .try_get(0)?;
        connection
            .client
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({FENCE_LOCK}); COMMIT"
            ))
            .await?;
        self.fence.held_by(connection.lease, pid);
        Ok(())
    }

    fn lease(&self, connection: LeaseConnection) -> EvaluationLease {
        let LeaseConnection {
            client,
            task,
            lost_sender,
            lost,
            lease,
        } = connection;
        // A connection that stops answering (a network partition, a frozen server) is
        // taken as lost, though the socket is not yet closed: the lock may be released on
        // the server's side at any moment.
        let check_fence = self.fence.clone();
        let check = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let answered =
                    tokio::time::timeout(Duration::from_secs(2), client.simple_query("SELECT 1"))
                        .await;
                if !matches!(answered, Ok(Ok(_))) {
                    tracing::warn!("the connection holding the evaluation lease stopped answering");
                    check_fence.released_by(lease);
                    lost_sender.send_replace(true);
                    return;
                }
            }
        });
        EvaluationLease {
            tasks: vec![task, check],
            lost,
            fence: self.fence.clone(),
            lease,
        }
    }
}

/// How this process connects to the database at `url`: over TLS when `ca_pem` holds the
/// certificate authorities of the server's certificate (verified, with its host name;
/// the URL's `sslmode=prefer`, the default, becomes `require`, so that a worker never
/// falls back to plain text), else over plain TCP (a URL asking for `sslmode=require`
/// without them is refused: there is nothing to verify the server with).
pub fn connection_settings(
    url: &str,
    ca_pem: Option<&[u8]>,
) -> Result<(tokio_postgres::Config, MakeRustlsConnect), StoreError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|error| StoreError::Invalid(format!("the PostgreSQL address: {error}")))?;
    // A worker's host that vanishes (power, kernel, network) closes no socket. Both ends
    // find out within seconds instead of the kernel's two hours: the server ends the
    // session, releasing its locks (the event lock a commit was holding, the evaluation
    // lease) and rolling back its transaction; this side fails the connection. A
    // transaction left idle (a stuck client) is ended after 10 s.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(10));
    let options_given = config.get_options().unwrap_or_default().to_owned();
    config.options(
        format!(
            "{options_given} -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 \
             -c tcp_keepalives_count=3 -c tcp_user_timeout=10000 \
             -c idle_in_transaction_session_timeout=10000"
        )
        .trim(),
    );
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        None => {
            if config.get_ssl_mode() == SslMode::Require {
                return Err(StoreError::Invalid(
                    "sslmode=require needs the certificate authority of the database \
                     server's certificate (store.ca_file) to verify it with"
                        .into(),
                ));
            }
            config.ssl_mode(SslMode::Disable);
        }
        Some(pem) => {
            if config.get_ssl_mode() == SslMode::Disable {
                return Err(StoreError::Invalid(
                    "the URL says sslmode=disable, but a certificate authority for the \
                     database server is given: drop one or the other"
                        .into(),
                ));
            }
            let invalid = |error: &dyn std::fmt::Display| {
                StoreError::Invalid(format!(
                    "the database server's certificate authority: {error}"
                ))
            };
            for certificate in CertificateDer::pem_slice_iter(pem) {
                let certificate = certificate.map_err(|error| invalid(&error))?;
                roots.add(certificate).map_err(|error| invalid(&error))?;
            }
            if roots.is_empty() {
                return Err(invalid(&"the file holds no certificate"));
            }
            config.ssl_mode(SslMode::Require);
        }
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| StoreError::Invalid(format!("TLS to the database: {error}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok((config, MakeRustlsConnect::new(client)))
}

/// Takes the event lock (see the module's documentation) and announces the commit to
/// every worker's event log readers: the notification is delivered when, and only if,
/// the transaction commits.
pub(crate) async fn lock_events(
    transaction: &deadpool_postgres::Transaction<'_>,
) -> Result<(), StoreError> {
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock($1), pg_notify($2, '')",
            &[&EVENT_LOCK, &COMMITS_CHANNEL],
        )
        .await?;
    Ok(())
}

/// Takes a transaction-scoped advisory lock (see the module's documentation).
pub(crate) async fn lock(
    transaction: &deadpool_postgres::Transaction<'_>,
    lock: i64,
) -> Result<(), StoreError> {
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&lock])
        .await?;
    Ok(())
}

pub(crate) fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    match error {
        deadpool_postgres::PoolError::Backend(error) => error.into(),
        other => StoreError::Unavailable(other.to_string()),
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        // The database being away (a lost or refused connection, a server shutting down or
        // starting, too many connections) and a transaction it chose to abort (a deadlock,
        // a serialisation failure, a cancelled statement) are "try again later" for
        // callers: a device is not acknowledged and sends again. Anything else is
        // reported as it is.
        let away = error.is_closed()
            || std::error::Error::source(&error)
                .is_some_and(|source| source.is::<std::io::Error>())
            || error.code().is_some_and(|code| {
                let code = code.code();
                code.starts_with("08")
                    || code.starts_with("57P")
                    || ["40001", "40P01", "57014", "53300"].contains(&code)
            });
        if away {
            // With its causes: "error performing TLS handshake" alone does not say that the
            // server's certificate was not trusted.
            let mut described = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                described.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            StoreError::Unavailable(described)
        } else {
            StoreError::Postgres(error)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn refusal(url: &str, ca: Option<&[u8]>) -> String {
        match connection_settings(url, ca) {
            Err(StoreError::Invalid(message)) => message,
            other => panic!(
                "{url} was not refused: {:?}",
                other.map(|(config, _)| config)
            ),
        }
    }

    #[test]
    fn tls_is_used_exactly_when_a_certificate_authority_is_given() {
        // Without one: plain TCP, whatever the URL's default.
        let (config, _) = connection_settings("postgres://db/wardline", None).unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
        // Asking for TLS without anything to verify the server with is refused, and so is
        // a URL that turns TLS off beside a certificate authority.
        assert!(refusal("postgres://db/w?sslmode=require", None).contains("store.ca_file"));
        assert!(refusal("postgres://db/w?sslmode=disable", Some(b"")).contains("sslmode=disable"));
        // A file that holds no certificate, or a broken one.
        assert!(refusal("postgres://db/w", Some(b"not a certificate")).contains("no certificate"));
        let broken = b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        assert!(refusal("postgres://db/w", Some(broken)).contains("certificate authority"));
    }

    #[test]
    fn a_dead_peer_is_noticed_within_seconds() {
        let (config, _) = connection_settings("postgres://db/wardline", None).unwrap();
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_secs(10))
        );
        let options = config.get_options().unwrap_or_default();
        for setting in [
            "tcp_keepalives_idle=5",
            "tcp_user_timeout=10000",
            "idle_in_transaction_session_timeout=10000",
        ] {
            assert!(options.contains(setting), "{options}");
        }
    }
}
