//! The audit key on disk, and the signed checkpoints of the audit chain exported outside
//! the database.
//!
//! The key lives in the keys folder (outside the data folder), owner-only. The server
//! signs the chain's head when it starts, every `audit.checkpoint_seconds` while it
//! runs (if the head moved) and when it stops, appending one JSON line per checkpoint to
//! the checkpoint file. `verify-audit` reads that file back: every line must carry a
//! valid signature, and the newest must still be in the trail, so deleting the newest
//! entries, deleting all of them or rewriting them all is noticed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use wardline_store::{AUDIT_SECRET_BYTES, AuditCheckpoint, AuditKey, AuditQuery, Store};

const AUDIT_KEY_FILE: &str = "audit.key";

/// The audit key from the keys folder, created (owner-only) on first use.
pub fn load_or_create_key(keys_dir: &Path) -> anyhow::Result<AuditKey> {
    let secret = crate::keys::read_or_create(keys_dir, AUDIT_KEY_FILE, "audit key", || {
        Ok(AuditKey::generate_secret()?.to_vec())
    })?;
    if secret.len() < AUDIT_SECRET_BYTES {
        anyhow::bail!(
            "the audit key {} is shorter than {AUDIT_SECRET_BYTES} bytes",
            keys_dir.join(AUDIT_KEY_FILE).display()
        );
    }
    Ok(AuditKey::from_secret(&secret)?)
}

/// Appends a checkpoint of the chain's head to `file`, unless the head is `last`.
/// Returns the head's sequence number.
pub async fn export_checkpoint(
    store: &dyn Store,
    key: &AuditKey,
    file: &Path,
    last: Option<i64>,
) -> anyhow::Result<Option<i64>> {
    let newest = store
        .audit_events(AuditQuery {
            limit: 1,
            ..AuditQuery::default()
        })
        .await?
        .into_iter()
        .next();
    let Some(newest) = newest else {
        return Ok(last);
    };
    if last == Some(newest.sequence) {
        return Ok(last);
    }
    let checkpoint = key.checkpoint(newest.sequence, &newest.chain_hash, chrono::Utc::now());
    let mut line = serde_json::to_vec(&checkpoint)?;
    line.push(b'\n');
    let path = file.to_owned();
    tokio::task::spawn_blocking(move || append_line(&path, &line)).await??;
    metrics::counter!("wardline_audit_checkpoints_exported_total").increment(1);
    Ok(Some(newest.sequence))
}

fn append_line(path: &Path, line: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("opening the audit checkpoint file {}", path.display()))?;
    file.write_all(line)?;
    // A checkpoint that a crash could lose would not anchor anything.
    file.sync_all()?;
    Ok(())
}

/// Exports a checkpoint now, then every `every` while the head moves, and once more
/// when `shutdown` is cancelled. Failures are logged and counted, and retried next time.
pub fn spawn_checkpoints(
    store: Arc<dyn Store>,
    key: AuditKey,
    file: PathBuf,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = None;
        loop {
            match export_checkpoint(store.as_ref(), &key, &file, last).await {
                Ok(head) => last = head,
                Err(error) => {
                    metrics::counter!("wardline_audit_checkpoint_failed_total").increment(1);
                    tracing::error!(error = %format!("{error:#}"), "could not export an audit checkpoint");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
        }
        if let Err(error) = export_checkpoint(store.as_ref(), &key, &file, last).await {
            tracing::error!(error = %format!("{error:#}"), "could not export the last audit checkpoint");
        }
    })
}

/// The newest checkpoint in `file`, every line of which must be one this key signed.
pub fn newest_checkpoint(key: &AuditKey, file: &Path) -> anyhow::Result<AuditCheckpoint> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "no audit checkpoints at {} (the server writes them when it starts and every \
             audit.checkpoint_seconds); without one, deleted entries cannot be noticed",
            file.display()
        )
    })?;
    let mut newest: Option<AuditCheckpoint> = None;
    for (index, line) in text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
    {
        let number = index + 1;
        let checkpoint: AuditCheckpoint = serde_json::from_str(line)
            .with_context(|| format!("audit checkpoint line {number} is not a checkpoint"))?;
        if !key.signed(&checkpoint) {
            anyhow::bail!(
                "audit checkpoint line {number} (entry {}) is not signed with this installation's audit key",
                checkpoint.sequence
            );
        }
        if newest
            .as_ref()
            .is_none_or(|newest| checkpoint.sequence >= newest.sequence)
        {
            newest = Some(checkpoint);
        }
    }
    newest.with_context(|| format!("the audit checkpoint file {} is empty", file.display()))
}
