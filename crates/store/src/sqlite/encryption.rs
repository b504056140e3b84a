//! The database file encrypted at rest with SQLCipher: every page (the WAL's too) is
//! AES-256 encrypted with its own HMAC, so a copied file, a stolen disk or a backup tape
//! shows no patient's name or reading, and a changed page is detected when it is read.
//!
//! The key is 256 random bits, given to SQLCipher raw (`x'…'`), so opening a connection
//! costs no key derivation; where the key comes from (a file outside the data folder, the
//! environment, a command a key management system answers) is the caller's business.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::error::StoreError;

/// The first 16 bytes of every unencrypted SQLite database file.
const PLAINTEXT_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// A 256-bit database key. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseKey([u8; 32]);

impl std::fmt::Debug for DatabaseKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("DatabaseKey(…)")
    }
}

/// Why a text is not a database key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a database key is 64 hexadecimal digits (256 bits); this one {0}")]
pub struct DatabaseKeyError(String);

impl DatabaseKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Self, StoreError> {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| StoreError::Invalid("the random source failed".into()))?;
        Ok(Self(bytes))
    }

    /// Reads the key's text form: 64 hexadecimal digits, surrounding white space ignored
    /// (a key file may end with a newline; a command's answer usually does).
    pub fn from_hex(text: &str) -> Result<Self, DatabaseKeyError> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(DatabaseKeyError(format!(
                "has {} characters",
                text.chars().count()
            )));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|_| DatabaseKeyError("has a character that is not a hex digit".into()))?;
        Ok(Self(bytes))
    }

    /// The text form [`DatabaseKey::from_hex`] reads.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The key as SQLCipher takes it: a raw key, not a passphrase to derive one from.
    fn sql_literal(&self) -> String {
        format!("\"x'{}'\"", self.to_hex())
    }
}

/// Whether the file at `path` is an unencrypted SQLite database (`Some(false)` for an
/// encrypted one, `None` when there is no file or it is empty).
pub fn is_plaintext(path: &Path) -> Result<Option<bool>, StoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let mut header = Vec::with_capacity(PLAINTEXT_HEADER.len());
    file.take(PLAINTEXT_HEADER.len() as u64)
        .read_to_end(&mut header)?;
    Ok((!header.is_empty()).then(|| header == PLAINTEXT_HEADER))
}

/// Gives a freshly opened connection its key, and checks that the key opens the file:
/// SQLCipher only finds out at the first read.
pub(crate) fn unlock(
    connection: &Connection,
    path: &Path,
    key: Option<&DatabaseKey>,
) -> Result<(), StoreError> {
    give_key(connection, key)?;
    check_key(connection, path, key)
}

/// Gives a connection opened by other code (a tool, a test playing someone who holds
/// the key) the key and the settings Wardline encrypts with.
pub fn key_connection(connection: &Connection, key: &DatabaseKey) -> Result<(), StoreError> {
    give_key(connection, Some(key))
}

/// The cipher settings first, whether or not a key follows: a database attached later
/// under a key (a rewrite's target) takes them too.
fn give_key(connection: &Connection, key: Option<&DatabaseKey>) -> Result<(), StoreError> {
    cipher_settings(connection)?;
    if let Some(key) = key {
        connection.execute_batch(&format!("PRAGMA key = {};", key.sql_literal()))?;
    }
    Ok(())
}

/// SQLCipher's settings for every database it keys from here on in this process (the
/// main one and any attached): its defaults except the page HMAC, which is SHA-256
/// instead of SHA-512, because current processors compute SHA-256 in hardware and the
/// HMAC of every page written is the largest part of encryption's cost. A file keeps
/// the settings it was written with: these must stay as they are, or an existing
/// database is rewritten under the new ones.
fn cipher_settings(connection: &Connection) -> Result<(), StoreError> {
    connection.execute_batch("PRAGMA cipher_default_hmac_algorithm = HMAC_SHA256;")?;
    Ok(())
}

fn check_key(
    connection: &Connection,
    path: &Path,
    key: Option<&DatabaseKey>,
) -> Result<(), StoreError> {
    match connection.query_row("SELECT count(*) FROM sqlite_schema", [], |row| {
        row.get::<_, i64>(0)
    }) {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(error, _))
            if error.code == rusqlite::ErrorCode::NotADatabase =>
        {
            Err(StoreError::DatabaseKey {
                path: path.to_owned(),
                reason: match key {
                    Some(_) => {
                        "the key does not open it (a different key, or not a Wardline database)"
                    }
                    None => "it is encrypted, and no key was given",
                },
            })
        }
        Err(error) => Err(error.into()),
    }
}

/// Rewrites the database at `path` under `new_key` (`None`: unencrypted), reading it
/// with `old_key`. Nothing else may have the database open: the rewrite takes an
/// exclusive lock first and refuses if it cannot. The rewritten copy is made beside the
/// file, synced, and renamed over it, so a crash leaves either the old file whole or the
/// new one.
pub fn rewrite(
    path: &Path,
    old_key: Option<&DatabaseKey>,
    new_key: Option<&DatabaseKey>,
) -> Result<(), StoreError> {
    let staged = sibling(path, ".rekeying");
    match std::fs::remove_file(&staged) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error.into()),
    }
    {
        let connection = Connection::open(path)?;
        connection.busy_timeout(std::time::Duration::from_secs(2))?;
        give_key(&connection, old_key)?;
        // Exclusive before the first read and until the close: in WAL mode that first
        // read must then lock the whole file, which fails while a server has it open, so
        // the rewrite can never race a server's commits.
        connection.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        check_key(&connection, path, old_key).map_err(|error| match error {
            StoreError::Sqlite(error) => in_use(error),
            other => other,
        })?;
        connection
            .execute_batch("BEGIN EXCLUSIVE; COMMIT")
            .map_err(in_use)?;
        let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let target_key = new_key.map_or_else(|| "''".to_owned(), DatabaseKey::sql_literal);
        connection.execute(
            &format!("ATTACH DATABASE ?1 AS rewritten KEY {target_key}"),
            [staged.to_string_lossy()],
        )?;
        connection.query_row("SELECT sqlcipher_export('rewritten')", [], |_| Ok(()))?;
        connection.execute_batch(&format!("PRAGMA rewritten.user_version = {version}"))?;
        connection.execute_batch("DETACH DATABASE rewritten")?;
        // Closing checkpoints the write-ahead log into the old file and removes it.
        connection
            .close()
            .map_err(|(_, error)| StoreError::from(error))?;
    }
    // A log with frames in it would be replayed into the new file: never rename over one.
    let log = sibling(path, "-wal");
    match std::fs::metadata(&log) {
        Ok(metadata) if metadata.len() > 0 => {
            return Err(StoreError::Invalid(format!(
                "{} still holds unwritten changes; open and close the database once, then retry",
                log.display()
            )));
        }
        Ok(_) | Err(_) => {}
    }
    for leftover in [log, sibling(path, "-shm")] {
        match std::fs::remove_file(&leftover) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error.into()),
        }
    }
    File::open(&staged)?.sync_all()?;
    std::fs::rename(&staged, path)?;
    if let Some(folder) = path.parent() {
        File::open(folder)?.sync_all()?;
    }
    Ok(())
}

fn in_use(error: rusqlite::Error) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == rusqlite::ErrorCode::DatabaseBusy
                || failure.code == rusqlite::ErrorCode::DatabaseLocked =>
        {
            StoreError::Invalid(
                "the database is in use (is the server running?); stop it first".into(),
            )
        }
        _ => error.into(),
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings are applied: a misspelt pragma would be ignored without an error.
    #[test]
    fn a_keyed_connection_uses_sha256_page_hmacs() {
        let folder = tempfile::tempdir().expect("temp dir");
        let connection = Connection::open(folder.path().join("keyed.db")).expect("open");
        let key = DatabaseKey::generate().expect("key");
        key_connection(&connection, &key).expect("key");
        let algorithm: String = connection
            .query_row("PRAGMA cipher_hmac_algorithm", [], |row| row.get(0))
            .expect("algorithm");
        assert_eq!(algorithm, "HMAC_SHA256");
    }
}
