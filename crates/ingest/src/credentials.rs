//! Device secrets: 256 random bits shown once at enrolment and stored only as SHA-256.
//! A fast hash suffices because the secret has full entropy (nothing to guess), and it
//! lets every HTTP request and MQTT connect be checked without a slow KDF.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use wardline_domain::DeviceId;
use wardline_store::{Device, DeviceStatus, Store, StoreError};

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

fn equal_in_constant_time(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b)
        .fold(0u8, |difference, (x, y)| difference | (x ^ y))
        == 0
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceAuthError {
    /// Unknown device and wrong secret look alike, so a probe learns nothing.
    #[error("unknown device or wrong secret")]
    BadCredentials,
    #[error("device {0} is revoked")]
    Revoked(DeviceId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a device's identifier and secret.
pub async fn authenticate_device(
    store: &dyn Store,
    device_id: &str,
    secret: &[u8],
) -> Result<Device, DeviceAuthError> {
    let Ok(device_id) = DeviceId::parse(device_id) else {
        return Err(DeviceAuthError::BadCredentials);
    };
    let presented = hash_secret(secret);
    let Some(credentials) = store.device_credentials(&device_id).await? else {
        return Err(DeviceAuthError::BadCredentials);
    };
    if !equal_in_constant_time(&presented, &credentials.secret_hash) {
        return Err(DeviceAuthError::BadCredentials);
    }
    if credentials.device.status == DeviceStatus::Revoked {
        return Err(DeviceAuthError::Revoked(device_id));
    }
    Ok(credentials.device)
}
