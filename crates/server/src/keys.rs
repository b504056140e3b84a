//! The keys folder: every secret key Wardline makes for itself (the audit key, the key
//! that seals webhook secrets and makes alarm handles, the certificate authority's and
//! the server's TLS keys) lives here, outside the data folder, so that a copy of the data
//! folder (a backup, a stolen disk image of the database volume) carries none of them.
//! The folder is the owner's only (0700), each key file too (0600), and a key file is
//! written whole and synced before it is used.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Creates the keys folder if need be, and makes it the owner's only.
pub fn prepare_folder(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating keys folder {}", dir.display()))?;
    restrict(dir, 0o700)
}

/// Sets a file's or folder's permission bits (on Unix).
pub fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Writes `bytes` to `path`, readable by the owner only, replacing what was there. The
/// bytes go to a new file beside it first, which is synced and then renamed over `path`,
/// so a crash leaves the old key or the new one, never half of one.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let mut partial = name.to_os_string();
    partial.push(".new");
    let partial = path.with_file_name(partial);
    // A leftover of a crash half-way through writing is not a key.
    match std::fs::remove_file(&partial) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("removing {}", partial.display()));
        }
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The key in `dir/name`, created with `generate` (and the folder with it) on first use.
/// `what` names the key in messages.
pub fn read_or_create(
    dir: &Path,
    name: &str,
    what: &str,
    generate: impl FnOnce() -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            prepare_folder(dir)?;
            let bytes = generate()?;
            write_private(&path, &bytes)?;
            tracing::info!(path = %path.display(), "created the {what}");
            Ok(bytes)
        }
        Err(error) => Err(error).with_context(|| format!("reading the {what} {}", path.display())),
    }
}

/// Moves a key that an earlier version kept inside the data folder to the keys folder,
/// once: if `dir/name` does not exist yet and `old` does, `old`'s bytes are written to
/// the keys folder and then `old` is removed. What was sealed or signed with the key
/// stays readable.
pub fn adopt(old: &Path, dir: &Path, name: &str, what: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    if path
        .try_exists()
        .with_context(|| format!("looking for {}", path.display()))?
    {
        if old.try_exists().unwrap_or(false) {
            tracing::warn!(
                old = %old.display(),
                "the {what} is in the keys folder and another copy is still in the data folder; remove that copy"
            );
        }
        return Ok(());
    }
    let bytes = match std::fs::read(old) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error).with_context(|| format!("reading {}", old.display())),
    };
    prepare_folder(dir)?;
    write_private(&path, &bytes)?;
    std::fs::remove_file(old).with_context(|| format!("removing {}", old.display()))?;
    tracing::warn!(
        from = %old.display(),
        to = %path.display(),
        "moved the {what} out of the data folder"
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_key_is_created_once_owner_only_and_read_back() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("keys");
        let first = read_or_create(&dir, "a.key", "test key", || Ok(vec![1, 2, 3])).unwrap();
        let second = read_or_create(&dir, "a.key", "test key", || Ok(vec![9])).unwrap();
        assert_eq!(first, vec![1, 2, 3]);
        assert_eq!(second, first, "an existing key is never replaced");
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join("a.key")), 0o600);
        }
        assert!(!dir.join("a.key.new").try_exists().unwrap());
    }

    #[test]
    fn writing_replaces_a_key_whole_and_ignores_a_leftover() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("server.key");
        std::fs::write(root.path().join("server.key.new"), b"half of a crash").unwrap();
        write_private(&path, b"first").unwrap();
        write_private(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_key_from_the_data_folder_moves_to_the_keys_folder_once() {
        let root = tempfile::tempdir().unwrap();
        let old = root.path().join("data/keys/notify.key");
        std::fs::create_dir_all(old.parent().unwrap()).unwrap();
        std::fs::write(&old, b"sealing key").unwrap();
        let dir = root.path().join("data-keys");
        adopt(&old, &dir, "notify.key", "notification key").unwrap();
        assert!(
            !old.try_exists().unwrap(),
            "no copy is left in the data folder"
        );
        assert_eq!(
            std::fs::read(dir.join("notify.key")).unwrap(),
            b"sealing key"
        );
        #[cfg(unix)]
        assert_eq!(mode(&dir.join("notify.key")), 0o600);
        // A key already in the keys folder wins; nothing to move is not an error.
        std::fs::write(&old, b"another").unwrap();
        adopt(&old, &dir, "notify.key", "notification key").unwrap();
        assert_eq!(
            std::fs::read(dir.join("notify.key")).unwrap(),
            b"sealing key"
        );
        adopt(&root.path().join("none"), &dir, "other.key", "other").unwrap();
        assert!(!dir.join("other.key").try_exists().unwrap());
    }
}
