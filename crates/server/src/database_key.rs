//! The key that encrypts the database at rest: where it is found, how a new installation
//! gets one, and how it is replaced (`wardline admin rotate-database-key`).
//!
//! A rotation with a key file writes the new key beside the old one first
//! (`database.key.next`), then rewrites the database under it, then puts the new key in
//! the old one's place. A crash between the last two steps leaves a database that only
//! the next key opens; opening tries that key when the current one fails and then
//! finishes the rotation, so no crash locks the data away.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use wardline_store::StoreError;
use wardline_store::sqlite::{DatabaseKey, encryption};

use crate::config::{Config, DatabaseKeySource};
use crate::keys;

/// The database file in the data folder.
pub fn database_path(config: &Config) -> PathBuf {
    config.data_dir.join("wardline.db")
}

/// The key to open the database with, and the key a crash may have left half-way
/// through a rotation.
#[derive(Debug)]
pub struct Keys {
    pub current: Option<DatabaseKey>,
    pub unfinished_rotation: Option<(DatabaseKey, PathBuf)>,
}

/// Finds (or, for a new or still unencrypted database with a key file, makes) the key.
pub fn resolve(config: &Config) -> anyhow::Result<Keys> {
    let database = database_path(config);
    Ok(match &config.database_key {
        DatabaseKeySource::Off => Keys {
            current: None,
            unfinished_rotation: None,
        },
        DatabaseKeySource::Given(key) => Keys {
            current: Some(key.clone()),
            unfinished_rotation: None,
        },
        DatabaseKeySource::Command(command) => Keys {
            current: Some(from_command(command)?),
            unfinished_rotation: None,
        },
        DatabaseKeySource::File(path) => {
            let next = next_key_file(path);
            let unfinished_rotation = read_key_file(&next)?.map(|key| (key, next));
            let current = match read_key_file(path)? {
                Some(key) => key,
                None => {
                    if encryption::is_plaintext(&database)? == Some(false) {
                        bail!(
                            "the database {} is encrypted, and its key file {} is missing; restore the key file (or set the key's source) and start again",
                            database.display(),
                            path.display()
                        );
                    }
                    let key = DatabaseKey::generate()?;
                    if let Some(folder) = path.parent() {
                        keys::prepare_folder(folder)?;
                    }
                    keys::write_private(path, key.to_hex().as_bytes())?;
                    tracing::info!(path = %path.display(), "created the database key");
                    key
                }
            };
            Keys {
                current: Some(current),
                unfinished_rotation,
            }
        }
    })
}

/// After the database opened with `opened_with`: a rotation interrupted after the
/// database was rewritten is finished (its key takes the key file's place); one
/// interrupted before is abandoned (its key is removed).
pub fn settle(
    config: &Config,
    keys: &Keys,
    opened_with: Option<&DatabaseKey>,
) -> anyhow::Result<()> {
    let (DatabaseKeySource::File(path), Some((next, next_path))) =
        (&config.database_key, &keys.unfinished_rotation)
    else {
        return Ok(());
    };
    if opened_with == Some(next) {
        std::fs::rename(next_path, path)
            .with_context(|| format!("finishing the key rotation: {}", path.display()))?;
        tracing::warn!("finished a database key rotation that was interrupted");
    } else {
        std::fs::remove_file(next_path)
            .with_context(|| format!("removing {}", next_path.display()))?;
        tracing::warn!(
            "abandoned a database key rotation that was interrupted before the database was rewritten"
        );
    }
    Ok(())
}

/// Whether an error opening the store means the key did not fit.
pub fn is_wrong_key(error: &StoreError) -> bool {
    matches!(error, StoreError::DatabaseKey { .. })
}

/// Replaces the database key: with a key file, by a new random key; with a key given in
/// the environment or by a command, by `new_key` (which the operator then gives the
/// server in place of the old one). The server must be stopped.
pub fn rotate(config: &Config, new_key: Option<DatabaseKey>) -> anyhow::Result<String> {
    let database = database_path(config);
    match encryption::is_plaintext(&database)? {
        None => bail!(
            "there is no database at {} to rotate the key of",
            database.display()
        ),
        // Before `resolve`, which would make a key file for it.
        Some(true) => bail!(
            "the database at {} is not encrypted yet; start the server once (it encrypts it), stop it, then rotate",
            database.display()
        ),
        Some(false) => {}
    }
    let keys = resolve(config)?;
    if keys.unfinished_rotation.is_some() {
        bail!(
            "an earlier rotation was interrupted; start the server once to settle it, stop it, then rotate again"
        );
    }
    let old = keys.current;
    match &config.database_key {
        DatabaseKeySource::Off => {
            bail!("database encryption is off in the configuration; there is no key to rotate")
        }
        DatabaseKeySource::Given(_) | DatabaseKeySource::Command(_) => {
            let new = new_key.context(
                "the database key comes from the environment or a command: give the new key on standard input (--new-key-stdin)",
            )?;
            encryption::rewrite(&database, old.as_ref(), Some(&new))?;
            Ok(
                "the database is encrypted under the new key; give the server the new key \
                (WARDLINE_DATABASE_KEY or the key command) before starting it"
                    .into(),
            )
        }
        DatabaseKeySource::File(path) => {
            if new_key.is_some() {
                bail!(
                    "the database key is kept in {}; rotation makes the new key itself",
                    path.display()
                );
            }
            let new = DatabaseKey::generate()?;
            let next = next_key_file(path);
            keys::write_private(&next, new.to_hex().as_bytes())?;
            encryption::rewrite(&database, old.as_ref(), Some(&new))?;
            std::fs::rename(&next, path)
                .with_context(|| format!("putting the new key in {}", path.display()))?;
            if let Some(folder) = path.parent() {
                std::fs::File::open(folder)
                    .and_then(|folder| folder.sync_all())
                    .with_context(|| format!("syncing {}", folder.display()))?;
            }
            Ok(format!(
                "the database is encrypted under a new key, kept in {}",
                path.display()
            ))
        }
    }
}

/// Reads a new key from standard input.
pub fn key_from_stdin() -> anyhow::Result<DatabaseKey> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the new key")?;
    DatabaseKey::from_hex(&text).context("the new key on standard input")
}

fn next_key_file(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".next");
    PathBuf::from(name)
}

fn read_key_file(path: &Path) -> anyhow::Result<Option<DatabaseKey>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(DatabaseKey::from_hex(&text).with_context(|| {
            format!("the database key file {}", path.display())
        })?)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => {
            Err(error).with_context(|| format!("reading the database key file {}", path.display()))
        }
    }
}

/// Runs the key command. Its output is the key and is never logged; what it printed on
/// standard error is shown when it fails.
fn from_command(command: &str) -> anyhow::Result<DatabaseKey> {
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running the database key command")?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        bail!(
            "the database key command failed ({}): {}",
            output.status,
            said.lines()
                .next()
                .unwrap_or("it printed nothing on standard error")
        );
    }
    let text = String::from_utf8(output.stdout).map_err(|_| {
        anyhow::anyhow!("the database key command printed something that is not text")
    })?;
    DatabaseKey::from_hex(&text).context("what the database key command printed")
}
