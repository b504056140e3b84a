/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} already exists")]
    Conflict { what: String },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error(
        "the database is from a newer Wardline (schema version {found}, this build knows up to {known})"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("commit failed: {0}")]
    CommitFailed(String),
    #[error("the storage writer has stopped")]
    Closed,
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(tokio_postgres::Error),
    /// The database cannot be reached now (a server-based backend); retrying later may
    /// succeed.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A stored value this build cannot read back (a row written by a newer Wardline, or
    /// damaged).
    #[error("stored {what} cannot be read: {reason}")]
    Undecodable { what: String, reason: String },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The database file cannot be opened with the key given (or without one).
    #[error("cannot open the database {}: {reason}", path.display())]
    DatabaseKey {
        path: std::path::PathBuf,
        reason: &'static str,
    },
}

impl StoreError {
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }
}
