//! Secrets: people's passwords (Argon2id at OWASP's minimum, 19 MiB, 2 passes, 1 lane,
//! on a blocking thread so a login never stalls other requests), session tokens and
//! device secrets (256 random bits each, stored only as SHA-256: a fast hash is enough
//! because the secret has full entropy, and it lets every request be checked cheaply).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::Error;

/// Session tokens start with this, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "wst_";

fn argon2() -> Result<Argon2<'static>, Error> {
    let params =
        Params::new(19 * 1024, 2, 1, None).map_err(|error| Error::Internal(error.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password into a PHC string.
pub async fn hash_password(password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || {
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
    .map_err(|error| Error::Internal(error.to_string()))?
}

/// Checks a password against a stored PHC string.
pub async fn verify_password(password: String, stored_hash: String) -> Result<bool, Error> {
    tokio::task::spawn_blocking(move || {
        let parsed =
            PasswordHash::new(&stored_hash).map_err(|error| Error::Internal(error.to_string()))?;
        Ok(argon2()?
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|error| Error::Internal(error.to_string()))?
}

/// Why a new password is refused; NIST SP 800-63B asks for length, not composition rules.
pub fn check_password_strength(password: &str) -> Result<(), Error> {
    if password.chars().count() < 12 {
        return Err(Error::invalid("password", "must be at least 12 characters"));
    }
    if password.len() > 1024 {
        return Err(Error::invalid("password", "must be at most 1024 bytes"));
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
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest::digest(&digest::SHA256, secret).as_ref());
    hash
}

/// Equal without an early exit, so a comparison's time tells nothing about the secret.
pub fn equal_in_constant_time(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b)
        .fold(0u8, |difference, (x, y)| difference | (x ^ y))
        == 0
}
