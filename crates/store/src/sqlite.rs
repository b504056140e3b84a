//! The embedded SQLite backend.
//!
//! One writer thread owns the only writing connection and commits in groups: every job
//! queued while the previous commit was syncing goes into the next transaction, each
//! under its own savepoint so one failing job does not undo the others. A caller is
//! answered only after the commit that holds its job is durable (`synchronous=FULL`), so
//! an acknowledgement sent on that answer survives `kill -9` and power loss. Reads use a
//! small pool of read-only connections, which WAL lets run beside the writer.

mod alarms;
mod audit;
mod backend_clients;
mod bulk_exports;
mod clinical;
mod devices;
mod emergency;
pub mod encryption;
mod events;
mod gateways;
mod ingest;
mod migrations;
mod nightscout;
mod outbox;
mod people;
mod rows;
mod shares;
mod templates;
mod visits;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use crate::audit::AuditKey;
use crate::error::StoreError;

pub use encryption::{DatabaseKey, DatabaseKeyError};
pub use migrations::SCHEMA_VERSION;

/// How the SQLite file is opened.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    /// Links the audit chain; kept outside the data folder by whoever opens the store.
    pub audit_key: Arc<AuditKey>,
    pub read_connections: usize,
    /// Most jobs in one commit; bounds a transaction's size and an ack's wait.
    pub max_jobs_per_commit: usize,
    /// Encrypts the file at rest (SQLCipher); `None` leaves it unencrypted. An
    /// unencrypted file opened with a key is encrypted first, in place.
    pub key: Option<DatabaseKey>,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>, audit_key: AuditKey) -> Self {
        Self {
            path: path.into(),
            audit_key: Arc::new(audit_key),
            read_connections: 4,
            max_jobs_per_commit: 4096,
            key: None,
        }
    }
}

/// SQLite-backed [`crate::Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: writer::WriterHandle,
    readers: Arc<ReaderPool>,
    ids: Arc<events::IdCache>,
    audit_key: Arc<AuditKey>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database.
    pub async fn open(options: SqliteOptions) -> Result<Self, StoreError> {
        let writer_options = options.clone();
        let writer_connection = tokio::task::spawn_blocking(move || {
            let path = &writer_options.path;
            let key = writer_options.key.as_ref();
            if key.is_some() && encryption::is_plaintext(path)? == Some(true) {
                tracing::info!(path = %path.display(), "encrypting the database at rest");
                encryption::rewrite(path, None, key)?;
            }
            let mut connection = open_connection(path, false, key)?;
            migrations::migrate(&mut connection)?;
            audit::remember_key(&connection, &writer_options.audit_key)?;
            Ok::<_, StoreError>(connection)
        })
        .await
        .map_err(|_| StoreError::Closed)??;
        let writer = writer::spawn(
            writer_connection,
            options.max_jobs_per_commit,
            Arc::clone(&options.audit_key),
        )?;
        let mut readers = Vec::with_capacity(options.read_connections);
        for _ in 0..options.read_connections.max(1) {
            readers.push(open_connection(&options.path, true, options.key.as_ref())?);
        }
        Ok(Self {
            writer,
            readers: Arc::new(ReaderPool::new(readers)),
            ids: Arc::new(events::IdCache::default()),
            audit_key: options.audit_key,
            path: options.path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn read<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        let _permit = readers
            .available
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = Arc::clone(&readers);
        tokio::task::spawn_blocking(move || {
            let connection = pool.take()?;
            let result = operation(&connection);
            pool.give_back(connection);
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    async fn write<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&writer::Writing<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.run(operation).await
    }

    /// A write that a care team is waiting to hear of; see `WriterHandle::run_urgent`.
    async fn write_urgent<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&writer::Writing<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.run_urgent(operation).await
    }
}

#[derive(Debug)]
struct ReaderPool {
    connections: Mutex<Vec<Connection>>,
    available: Semaphore,
}

impl ReaderPool {
    fn new(connections: Vec<Connection>) -> Self {
        let count = connections.len();
        Self {
            connections: Mutex::new(connections),
            available: Semaphore::new(count),
        }
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let mut connections = self
            .connections
            .lock()
            .map_err(|_| StoreError::Corrupt("reader pool lock poisoned".into()))?;
        // The semaphore guarantees a connection is there.
        connections.pop().ok_or(StoreError::Closed)
    }

    fn give_back(&self, connection: Connection) {
        if let Ok(mut connections) = self.connections.lock() {
            connections.push(connection);
        }
    }
}

fn open_connection(
    path: &Path,
    read_only: bool,
    key: Option<&DatabaseKey>,
) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let connection = Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    encryption::unlock(&connection, path, key)?;
    if !read_only {
        connection.pragma_update(None, "journal_mode", "WAL")?;
    }
    // FULL: a commit is on disk before the caller hears of it, even across power loss.
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    connection.set_prepared_statement_cache_capacity(64);
    // Without the query planner stability guarantee, SQLite's planner may read some
    // bound values while planning (a `LIMIT ?`, for one) and then re-prepares the cached
    // statement whenever such a parameter is bound again: the event log's readers,
    // which bind their parameters on every read, spent a few percent of the CPU
    // re-preparing. Our queries are planned for their shape, not for particular values.
    connection.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(connection)
}

/// A JSON column holding an array of ids (patients, care teams) as text, read back.
pub(crate) fn ids_from_json<T: std::str::FromStr>(
    text: &str,
    what: &str,
) -> Result<Vec<T>, StoreError> {
    let texts: Vec<String> =
        serde_json::from_str(text).map_err(|error| StoreError::Undecodable {
            what: format!("{what} ids"),
            reason: error.to_string(),
        })?;
    texts
        .iter()
        .map(|id| {
            id.parse()
                .map_err(|_| StoreError::Corrupt(format!("{what} id {id:?} is not a UUID")))
        })
        .collect()
}

pub(crate) fn to_ms(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} ms is out of range")))
}
