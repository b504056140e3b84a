//! Webhook signing secrets are stored sealed with AES-256-GCM under a key kept in the
//! keys folder, outside the data folder (mode 0600), so a copy of the database alone does not let anyone forge
//! Wardline's signatures. The same key, through a derived HMAC key, makes alarms'
//! public handles, so that nobody can compute an alarm's handle from what they know of it.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::AlarmsError;

pub struct Sealer {
    key: LessSafeKey,
    /// What keys for other purposes are derived from ([`Sealer::for_purpose`]).
    root: hmac::Key,
    handles: hmac::Key,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A new random key for [`Sealer::from_key`].
    pub fn generate_key() -> Result<Vec<u8>, AlarmsError> {
        let mut bytes = vec![0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| AlarmsError::Crypto)?;
        Ok(bytes)
    }

    pub fn from_key(bytes: &[u8]) -> Result<Self, AlarmsError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| AlarmsError::Crypto)?;
        let root = hmac::Key::new(hmac::HMAC_SHA256, bytes);
        let handles = hmac::Key::new(
            hmac::HMAC_SHA256,
            hmac::sign(&root, b"wardline alarm handles").as_ref(),
        );
        Ok(Self {
            key: LessSafeKey::new(key),
            root,
            handles,
            random: SystemRandom::new(),
        })
    }

    /// The public handle of an alarm: 12 bytes of an HMAC of its internal id, in hex.
    /// Stable for the alarm, and unguessable without this installation's key.
    pub fn alarm_handle(&self, alarm_id: &str) -> String {
        let tag = hmac::sign(&self.handles, alarm_id.as_bytes());
        hex::encode(&tag.as_ref()[..12])
    }

    /// A sealer with its own key derived from this one's, for another kind of secret
    /// (accounts' second factors): one key file, and no secret of one kind opens with the
    /// key of another.
    pub fn for_purpose(&self, purpose: &str) -> Result<Self, AlarmsError> {
        let label = format!("wardline sealing key: {purpose}");
        Self::from_key(hmac::sign(&self.root, label.as_bytes()).as_ref())
    }

    /// Nonce || ciphertext || tag.
    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, AlarmsError> {
        self.seal_bound(plain, &[])
    }

    /// As [`Sealer::seal`], bound to `context` (the id of what the secret belongs to):
    /// it opens only with the same context, so a sealed secret copied to another record
    /// is useless there.
    pub fn seal_bound(&self, plain: &[u8], context: &[u8]) -> Result<Vec<u8>, AlarmsError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| AlarmsError::Crypto)?;
        let mut data = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut data,
            )
            .map_err(|_| AlarmsError::Crypto)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, AlarmsError> {
        self.open_bound(sealed, &[])
    }

    /// Opens what [`Sealer::seal_bound`] sealed with the same context.
    pub fn open_bound(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, AlarmsError> {
        if sealed.len() < NONCE_LEN {
            return Err(AlarmsError::Crypto);
        }
        let (nonce, data) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| AlarmsError::Crypto)?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context), &mut data)
            .map_err(|_| AlarmsError::Crypto)?;
        Ok(plain.to_vec())
    }

    /// A new random secret, as text (64 hex digits).
    pub fn generate_secret(&self) -> Result<String, AlarmsError> {
        let mut bytes = [0u8; 32];
        self.random
            .fill(&mut bytes)
            .map_err(|_| AlarmsError::Crypto)?;
        Ok(format!("whsec_{}", hex::encode(bytes)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_purpose_key_and_a_context_each_keep_secrets_apart() {
        let sealer = Sealer::from_key(&[7u8; 32]).unwrap();
        let accounts = sealer.for_purpose("second factors").unwrap();
        let sealed = accounts.seal_bound(b"totp secret", b"user-1").unwrap();
        assert_eq!(
            accounts.open_bound(&sealed, b"user-1").unwrap(),
            b"totp secret"
        );
        assert!(accounts.open_bound(&sealed, b"user-2").is_err());
        assert!(accounts.open(&sealed).is_err());
        assert!(sealer.open_bound(&sealed, b"user-1").is_err());
        let again = Sealer::from_key(&[7u8; 32])
            .unwrap()
            .for_purpose("second factors")
            .unwrap();
        assert_eq!(
            again.open_bound(&sealed, b"user-1").unwrap(),
            b"totp secret"
        );
        assert!(
            sealer
                .for_purpose("other")
                .unwrap()
                .open_bound(&sealed, b"user-1")
                .is_err()
        );
    }

    #[test]
    fn alarm_handles_are_stable_and_depend_on_the_key() {
        let sealer = Sealer::from_key(&[7u8; 32]).unwrap();
        let handle = sealer.alarm_handle("alarm-1");
        assert_eq!(handle.len(), 24);
        assert_eq!(handle, sealer.alarm_handle("alarm-1"));
        assert_ne!(handle, sealer.alarm_handle("alarm-2"));
        let other = Sealer::from_key(&[8u8; 32]).unwrap();
        assert_ne!(handle, other.alarm_handle("alarm-1"));
        // Not the unkeyed digest that handles were before.
        let unkeyed = ring::digest::digest(&ring::digest::SHA256, b"alarm-1");
        assert_ne!(handle, hex::encode(&unkeyed.as_ref()[..12]));
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key() {
        let key = Sealer::generate_key().unwrap();
        assert_ne!(key, Sealer::generate_key().unwrap());
        let sealer = Sealer::from_key(&key).unwrap();
        let sealed = sealer.seal(b"whsec_x").unwrap();
        assert_ne!(&sealed[NONCE_LEN..], b"whsec_x");
        let again = Sealer::from_key(&key).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), b"whsec_x");
        let other = Sealer::from_key(&[9u8; 32]).unwrap();
        assert!(other.open(&sealed).is_err());
        assert!(sealer.open(&sealed[..5]).is_err());
    }
}
