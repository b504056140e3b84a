//! Secrets: people's passwords (Argon2id at OWASP's minimum, 19 MiB, 2 passes, 1 lane,
//! on a blocking thread so a login never stalls other requests), session tokens and
//! device secrets (256 random bits each, stored only as SHA-256: a fast hash is enough
//! because the secret has full entropy, and it lets every request be checked cheaply).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::Error;

/// Session tokens start with this, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "wst_";

fn argon2() -> Result<Argon2<'static>, Error> {
    let params =
        Params::new(19 * 1024, 2, 1, None).map_err(|error| Error::Internal(error.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// How many Argon2id computations run at once: one per core. Each takes 19 MiB and a
/// core's worth of time, so more at once only adds memory (a flood of logins with random
/// usernames once took the server to gigabytes) without answering anyone sooner.
fn hashing_slots() -> usize {
    std::thread::available_parallelism()
        .map_or(2, std::num::NonZeroUsize::get)
        .max(1)
}

static HASHING: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(hashing_slots()));

type HashingJob = Box<dyn FnOnce() + Send>;

/// The threads that run Argon2id, one per slot. Always the same few threads: the memory
/// allocator keeps a freed 19 MiB block in the arena of the thread that used it, so
/// hashing on whichever blocking thread was free left a block in dozens of arenas (a
/// flood of logins reached 780 MiB resident).
static HASHERS: LazyLock<Mutex<std::sync::mpsc::Sender<HashingJob>>> = LazyLock::new(|| {
    let (jobs, queue) = std::sync::mpsc::channel::<HashingJob>();
    let queue = Arc::new(Mutex::new(queue));
    for index in 0..hashing_slots() {
        let queue = Arc::clone(&queue);
        let spawned = std::thread::Builder::new()
            .name(format!("wardline-hashing-{index}"))
            .spawn(move || {
                loop {
                    let job = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "could not start a password hashing thread");
        }
    }
    Mutex::new(jobs)
});

/// How long a login waits for a free slot before it is answered `unavailable` (503 with
/// `Retry-After`): under a flood, a quick refusal is kinder than a queue nobody leaves.
const HASHING_WAIT: Duration = Duration::from_secs(2);

/// Runs one Argon2id computation in a slot of [`HASHING`] on a thread of [`HASHERS`].
async fn in_hashing_slot<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let permit = tokio::time::timeout(HASHING_WAIT, HASHING.acquire())
        .await
        .map_err(|_| {
            metrics::counter!("wardline_password_hashing_refused_total").increment(1);
            Error::Unavailable
        })?
        .map_err(|_| Error::Unavailable)?;
    let (answer, answered) = tokio::sync::oneshot::channel();
    let job: HashingJob = Box::new(move || {
        let result = work();
        // The slot is free before the caller hears back.
        drop(permit);
        let _ = answer.send(result);
    });
    HASHERS
        .lock()
        .map_err(|_| Error::Unavailable)?
        .send(job)
        .map_err(|_| Error::Unavailable)?;
    answered.await.map_err(|_| Error::Unavailable)?
}

/// Hashes a password into a PHC string.
pub async fn hash_password(password: String) -> Result<String, Error> {
    in_hashing_slot(move || {
        let mut salt_bytes = [0u8; 16];
        SystemRandom::new()
            .fill(&mut salt_bytes)
            .map_err(|_| Error::Internal("no randomness".into()))?;
        let salt = SaltString::encode_b64(&salt_bytes)
            .map_err(|error| Error::Internal(error.to_string()))?;
        argon2()?
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| Error::Internal(error.to_string()))
    })
    .await
}

/// Whether a password is the one stored. A full hashing queue is "try again"
/// (`unavailable`), never a wrong password; a stored hash that cannot be read matches
/// nothing.
pub async fn password_matches(password: String, stored_hash: String) -> Result<bool, Error> {
    match verify_password(password, stored_hash).await {
        Ok(verified) => Ok(verified),
        Err(Error::Unavailable) => Err(Error::Unavailable),
        Err(_) => Ok(false),
    }
}

/// Checks a password against a stored PHC string.
pub async fn verify_password(password: String, stored_hash: String) -> Result<bool, Error> {
    in_hashing_slot(move || {
        let parsed =
            PasswordHash::new(&stored_hash).map_err(|error| Error::Internal(error.to_string()))?;
        Ok(argon2()?
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
}

/// Why a new password (sent as `field`) is refused. NIST SP 800-63B asks for length and
/// a check against passwords known to be common or breached, not composition rules; the
/// check is zxcvbn's (offline: common and leaked passwords, names, words, keyboard
/// patterns, repeats, dates), which must rate it at least "very unguessable" (3 of 4),
/// also given the account's own names (`about`).
pub fn check_password_strength(field: &str, password: &str, about: &[&str]) -> Result<(), Error> {
    if password.chars().count() < 12 {
        return Err(Error::invalid(field, "must be at least 12 characters"));
    }
    if password.len() > 1024 {
        return Err(Error::invalid(field, "must be at most 1024 bytes"));
    }
    // zxcvbn's work grows with length; past 100 characters a password is long enough.
    let judged: String = password.chars().take(100).collect();
    let estimate = zxcvbn::zxcvbn(&judged, about);
    if (estimate.score() as u8) < 3 {
        let why = estimate
            .feedback()
            .and_then(|feedback| feedback.warning())
            .map(|warning| format!(" ({warning})"))
            .unwrap_or_default();
        return Err(Error::invalid(
            field,
            format!(
                "is too easy to guess{why}; a few uncommon words together make a strong password"
            ),
        ));
    }
    Ok(())
}

/// A random password for generated accounts, printed once.
pub fn generate_password() -> Result<String, Error> {
    let mut bytes = [0u8; 18];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Internal("no randomness".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A new session token: shown to the client once, stored only as its hash.
pub fn new_session_token() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Internal("no randomness".into()))?;
    Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

pub fn token_hash(token: &str) -> [u8; 32] {
    hash_secret(token.as_bytes())
}

/// A freshly generated device secret; printable once, then only its hash is kept.
#[derive(Clone)]
pub struct DeviceSecret(String);

impl std::fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceSecret(..)")
    }
}

impl DeviceSecret {
    pub const PREFIX: &'static str = "wds_";

    pub fn generate() -> Result<Self, ring::error::Unspecified> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes)?;
        Ok(Self(format!(
            "{}{}",
            Self::PREFIX,
            URL_SAFE_NO_PAD.encode(bytes)
        )))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> [u8; 32] {
        hash_secret(self.0.as_bytes())
    }
}

pub fn hash_secret(secret: &[u8]) -> [u8; 32] {
    wardline_domain::local_device::secret_hash(secret)
}

/// Equal without an early exit, so a comparison's time tells nothing about the secret.
pub fn equal_in_constant_time(a: &[u8; 32], b: &[u8; 32]) -> bool {
    wardline_domain::local_device::same(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_guessable_and_personal_passwords_are_refused() {
        for (password, about) in [
            ("aaaaaaaaaaaa", &[][..]),
            ("password1234", &[]),
            ("qwertyuiop12", &[]),
            ("123456789012", &[]),
            ("Password2026!", &[]),
            ("nora.nurse2026", &["nora.nurse", "Nora Nurse"]),
        ] {
            let refused = check_password_strength("password", password, about);
            assert!(
                matches!(&refused, Err(Error::InvalidRequest { field: Some(field), .. }) if field == "password"),
                "{password}: {refused:?}"
            );
        }
        for password in [
            "ferry lantern cobalt drizzle",
            "Tulip-Orbit-9-Marsh",
            "x7#Lq9!vTz2@Wm",
        ] {
            assert!(
                check_password_strength("password", password, &["nora"]).is_ok(),
                "{password}"
            );
        }
        assert!(check_password_strength("password", "short", &[]).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_waits_for_a_slot_and_refuses_when_none_frees() {
        let stored = hash_password("correct horse battery staple".into())
            .await
            .expect("hash");
        // More verifications than slots: they queue and all finish.
        let checks = (0..3 * HASHING.available_permits().max(1))
            .map(|_| verify_password("correct horse battery staple".into(), stored.clone()));
        for verified in futures_util::future::join_all(checks).await {
            assert!(verified.expect("verified"));
        }
        // Every slot taken for longer than a login waits: unavailable, not a wrong password.
        let all = u32::try_from(HASHING.available_permits()).expect("slots");
        let taken = HASHING.acquire_many(all).await.expect("slots");
        let refused = verify_password("correct horse battery staple".into(), stored.clone()).await;
        assert!(matches!(refused, Err(Error::Unavailable)), "{refused:?}");
        drop(taken);
        assert!(
            verify_password("correct horse battery staple".into(), stored)
                .await
                .expect("verified")
        );
    }
}
