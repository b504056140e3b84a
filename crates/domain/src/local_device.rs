//! How a home gateway checks the devices that send to it, without holding or seeing
//! anything that would let anyone act as them towards the server.
//!
//! The server keeps the SHA-256 of each device's secret. A device does not send its
//! secret to a gateway (the home network is plain HTTP): it sends a *local credential*,
//! HMAC-SHA-256 keyed with the SHA-256 of its secret over a label and the gateway's id,
//! in hex. The server sends the gateway, per device it may speak for, the SHA-256 of that
//! credential (the verifier), which it can compute from the hash it keeps. So a local
//! credential sniffed on the home network works only at that gateway, and neither it nor
//! a verifier is a secret the server accepts.

use ring::{digest, hmac};

use crate::DeviceId;

const LABEL: &[u8] = b"wardline local device credential v1:";

/// The SHA-256 of a device secret, as the server stores it.
pub fn secret_hash(secret: &[u8]) -> [u8; 32] {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest::digest(&digest::SHA256, secret).as_ref());
    hash
}

/// What a device sends a gateway instead of its secret, from its secret's hash.
pub fn local_credential(gateway: &DeviceId, secret_hash: &[u8; 32]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret_hash);
    let mut context = hmac::Context::with_key(&key);
    context.update(LABEL);
    context.update(gateway.as_str().as_bytes());
    context
        .sign()
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// What a gateway holds to check a presented local credential against.
pub fn verifier(credential: &str) -> [u8; 32] {
    secret_hash(credential.as_bytes())
}

/// The verifier for a device's credential at `gateway`, from the hash the server keeps.
pub fn verifier_from_hash(gateway: &DeviceId, secret_hash: &[u8; 32]) -> [u8; 32] {
    verifier(&local_credential(gateway, secret_hash))
}

/// Equal without an early exit, so that a comparison's time tells nothing.
pub fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b)
        .fold(0u8, |difference, (x, y)| difference | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_credential_belongs_to_one_gateway_and_one_secret() {
        let home = DeviceId::parse("gw-home-1").expect("id");
        let other = DeviceId::parse("gw-home-2").expect("id");
        let secret = b"wds_the device's secret";
        let held = verifier_from_hash(&home, &secret_hash(secret));
        let credential = local_credential(&home, &secret_hash(secret));
        assert_eq!(credential.len(), 64, "hex of 32 bytes");
        assert!(same(&verifier(&credential), &held));
        assert!(!same(
            &verifier(&local_credential(
                &home,
                &secret_hash(b"wds_another secret")
            )),
            &held
        ));
        assert!(!same(
            &verifier(&local_credential(&other, &secret_hash(secret))),
            &held
        ));
        // The secret itself is not the credential, and the credential is not the secret.
        assert!(!same(&verifier("wds_the device's secret"), &held));
        assert_ne!(credential.as_bytes(), secret.as_slice());
    }
}
