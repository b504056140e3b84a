//! How a home gateway checks the devices that send to it, without holding anything that
//! would let it, or anyone who copies it, act as them towards the server.
//!
//! The server keeps the SHA-256 of each device's secret. For a gateway it derives, per
//! device the gateway may speak for, a verifier: HMAC-SHA-256 keyed with that hash, over
//! a label and the gateway's id. A device presents its own secret to the gateway as it
//! would to the server; the gateway derives the same verifier and compares. A verifier
//! is of no use at another gateway (the id differs), and neither it nor the hash is a
//! secret the server accepts.

use ring::{digest, hmac};

use crate::DeviceId;

const LABEL: &[u8] = b"wardline local device verifier v1:";

/// The SHA-256 of a device secret, as the server stores it.
pub fn secret_hash(secret: &[u8]) -> [u8; 32] {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest::digest(&digest::SHA256, secret).as_ref());
    hash
}

/// The verifier a gateway holds for a device, from the hash the server stores.
pub fn verifier_from_hash(gateway: &DeviceId, secret_hash: &[u8; 32]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret_hash);
    let mut context = hmac::Context::with_key(&key);
    context.update(LABEL);
    context.update(gateway.as_str().as_bytes());
    let mut verifier = [0u8; 32];
    verifier.copy_from_slice(context.sign().as_ref());
    verifier
}

/// The verifier for the secret a device presents to `gateway`.
pub fn verifier(gateway: &DeviceId, secret: &[u8]) -> [u8; 32] {
    verifier_from_hash(gateway, &secret_hash(secret))
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
    fn a_verifier_belongs_to_one_gateway_and_one_secret() {
        let home = DeviceId::parse("gw-home-1").expect("id");
        let other = DeviceId::parse("gw-home-2").expect("id");
        let secret = b"wds_the device's secret";
        let held = verifier_from_hash(&home, &secret_hash(secret));
        assert!(same(&verifier(&home, secret), &held));
        assert!(!same(&verifier(&home, b"wds_another secret"), &held));
        assert!(!same(&verifier(&other, secret), &held));
        // Neither the verifier nor the hash is the secret's own hash's hash.
        assert_ne!(held, secret_hash(&secret_hash(secret)));
        assert_ne!(held, secret_hash(secret));
    }
}
