//! Devices with certificates: mutual TLS beside device secrets. Wardline's device CA (its
//! own, apart from the one that certifies the server, so that no server certificate
//! passes for a device and no device certificate for a server) signs a certificate from a
//! device's certificate signing request. The certificate names the device (subject common
//! name and a `urn:wardline:device:` URI), is for client authentication only, and is
//! recorded by its SHA-256 fingerprint: the TLS layer checks the chain and validity, this
//! module finds the device, and the device's status decides, so revoking the device
//! refuses all its certificates at once.

use chrono::{DateTime, Datelike, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use serde::Serialize;
use wardline_domain::DeviceId;
use wardline_store::{DeviceCertificate, DeviceStatus};

use crate::Wardline;
use crate::actor::Actor;
use crate::devices::DeviceAuthError;
use crate::error::Error;

/// The largest certificate signing request taken, as PEM text: an RSA-4096 request is
/// under 2 kB.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// How long a device certificate is valid.
const VALIDITY_DAYS: i64 = 365;

/// The certificate authority for devices: its certificate and key, in memory.
pub struct DeviceCa {
    issuer: Issuer<'static, KeyPair>,
    certificate_pem: String,
}

impl std::fmt::Debug for DeviceCa {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("DeviceCa(…)")
    }
}

/// A new device CA's certificate and key, as PEM, for the caller to keep.
pub struct NewDeviceCa {
    pub certificate_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for NewDeviceCa {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("NewDeviceCa(…)")
    }
}

/// A certificate just issued to a device.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct IssuedDeviceCertificate {
    pub device_id: DeviceId,
    /// The device's certificate, PEM.
    pub certificate_pem: String,
    /// The device CA's certificate, PEM: what the device's certificate chains to.
    pub ca_pem: String,
    /// SHA-256 of the certificate's DER encoding, in hex.
    pub fingerprint: String,
    pub serial: String,
    pub not_after: DateTime<Utc>,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Wardline");
    name.push(DnType::CommonName, "Wardline device certificate authority");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2026, 1, 1);
    params.not_after = rcgen::date_time_ymd(2046, 1, 1);
    params
}

/// SHA-256 of a certificate's DER encoding: how a device certificate is known.
pub fn certificate_fingerprint(der: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(digest.as_ref());
    bytes
}

impl DeviceCa {
    /// A new CA: its key pair (ECDSA P-256) and self-signed certificate.
    pub fn generate() -> Result<NewDeviceCa, Error> {
        let key = KeyPair::generate().map_err(|error| Error::Internal(error.to_string()))?;
        let certificate = ca_params()
            .self_signed(&key)
            .map_err(|error| Error::Internal(error.to_string()))?;
        Ok(NewDeviceCa {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The CA from its certificate and key (PEM).
    pub fn load(certificate_pem: &str, key_pem: &str) -> Result<Self, Error> {
        let key = KeyPair::from_pem(key_pem)
            .map_err(|error| Error::Internal(format!("the device CA's key: {error}")))?;
        let issuer = Issuer::from_ca_cert_pem(certificate_pem, key)
            .map_err(|error| Error::Internal(format!("the device CA's certificate: {error}")))?;
        Ok(Self {
            issuer,
            certificate_pem: certificate_pem.to_owned(),
        })
    }

    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// Signs a certificate for `device_id` with the public key of `request`, whose own
    /// signature must verify (the device holds the key). Only the key is taken from the
    /// request: the names, usages and validity are Wardline's.
    fn issue(
        &self,
        request_pem: &str,
        device_id: &DeviceId,
        now: DateTime<Utc>,
    ) -> Result<(String, DeviceCertificate), Error> {
        let field = "certificate_signing_request";
        if request_pem.len() > MAX_REQUEST_BYTES {
            return Err(Error::invalid(
                field,
                format!("at most {MAX_REQUEST_BYTES} bytes of PEM"),
            ));
        }
        let mut request = CertificateSigningRequestParams::from_pem(request_pem).map_err(|error| {
            Error::invalid(
                field,
                match error {
                    rcgen::Error::InvalidCertificationRequestSignature => {
                        "its signature does not verify: sign it with the device's own key".to_owned()
                    }
                    rcgen::Error::UnsupportedExtension => {
                        "asks for an extension Wardline does not take: send a request with the device's key and no extensions".to_owned()
                    }
                    other => format!("is not a PEM certificate signing request (PKCS #10): {other}"),
                },
            )
        })?;
        let mut serial = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
            .map_err(|_| Error::Internal("no randomness".into()))?;
        // A positive serial number of at most 20 bytes, as RFC 5280 asks.
        serial[0] &= 0x7f;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "Wardline");
        name.push(DnType::CommonName, device_id.as_str());
        params.distinguished_name = name;
        params.subject_alt_names = vec![SanType::URI(
            format!("urn:wardline:device:{device_id}")
                .try_into()
                .map_err(|_| Error::Internal("a device URI".into()))?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        // Months and days are 1 to 31, so they fit in a byte.
        let day = |date: chrono::NaiveDate| {
            rcgen::date_time_ymd(date.year(), date.month() as u8, date.day() as u8)
        };
        let today = now.date_naive();
        // From yesterday, for devices whose clocks run behind.
        params.not_before = day(today - Duration::days(1));
        let not_after = today + Duration::days(VALIDITY_DAYS);
        params.not_after = day(not_after);
        request.params = params;
        let certificate = request
            .signed_by(&self.issuer)
            .map_err(|error| Error::Internal(format!("signing a device certificate: {error}")))?;
        let fingerprint = certificate_fingerprint(certificate.der());
        let not_after = not_after
            .and_hms_opt(0, 0, 0)
            .map(|time| time.and_utc())
            .ok_or_else(|| Error::Internal("a certificate's end".into()))?;
        Ok((
            certificate.pem(),
            DeviceCertificate {
                fingerprint,
                serial: hex::encode(serial),
                issued: now,
                not_after,
            },
        ))
    }
}

impl Wardline {
    /// Issues a certificate to an enrolled, not revoked device from its certificate
    /// signing request (admin), and records it: from now on the device may authenticate
    /// over TLS with it instead of its secret. A device may hold several (a renewal
    /// leaves the earlier one valid until it lapses); revoking the device refuses all.
    pub async fn issue_device_certificate(
        &self,
        actor: &Actor,
        device_id: &DeviceId,
        request_pem: &str,
    ) -> Result<IssuedDeviceCertificate, Error> {
        let allowed = self
            .require_admin(
                actor,
                "devices.issue_certificate",
                None,
                Some(device_id.to_string()),
            )
            .await?;
        let ca = self
            .device_ca
            .as_ref()
            .ok_or_else(|| Error::Internal("no device certificate authority".into()))?;
        let device = self
            .store
            .device(device_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("device {device_id}")))?;
        if device.status == DeviceStatus::Revoked {
            return Err(Error::InvalidState(format!(
                "device {device_id} is revoked; enrol the device again"
            )));
        }
        let (certificate_pem, certificate) = ca.issue(request_pem, device_id, self.now())?;
        let mut audit = allowed.audit;
        audit.detail = Some(format!(
            "device {device_id}, certificate serial {}",
            certificate.serial
        ));
        self.store
            .add_device_certificate(device_id, certificate.clone(), audit)
            .await?;
        Ok(IssuedDeviceCertificate {
            device_id: device_id.clone(),
            certificate_pem,
            ca_pem: ca.certificate_pem().to_owned(),
            fingerprint: hex::encode(certificate.fingerprint),
            serial: certificate.serial,
            not_after: certificate.not_after,
        })
    }

    /// The device a client certificate (by the SHA-256 of its DER) identifies, which the
    /// TLS layer has already checked against the device CA. An unknown or lapsed
    /// certificate is `BadCredentials`; a revoked device, `Revoked`.
    pub async fn check_device_certificate(
        &self,
        fingerprint: [u8; 32],
    ) -> Result<wardline_store::Device, DeviceAuthError> {
        let Some(certified) = self
            .store
            .device_by_certificate(fingerprint)
            .await
            .map_err(Error::from)?
        else {
            return Err(DeviceAuthError::BadCredentials);
        };
        if certified.certificate.not_after <= self.now() {
            return Err(DeviceAuthError::BadCredentials);
        }
        if certified.device.status == DeviceStatus::Revoked {
            return Err(DeviceAuthError::Revoked(certified.device.id));
        }
        Ok(certified.device)
    }

    /// A device calling over HTTPS with a client certificate instead of a secret: the
    /// certificate's device must be the one the path names. Refusals answer
    /// `unauthenticated`, as for secrets.
    pub async fn authenticate_device_by_certificate(
        &self,
        device_id: &str,
        fingerprint: [u8; 32],
    ) -> Result<wardline_store::Device, Error> {
        match self.check_device_certificate(fingerprint).await {
            Ok(device) if device.id.as_str() == device_id => Ok(device),
            Err(DeviceAuthError::Service(error)) => Err(error),
            Ok(_) | Err(DeviceAuthError::BadCredentials | DeviceAuthError::Revoked(_)) => {
                metrics::counter!("wardline_http_device_auth_failed_total").increment(1);
                Err(Error::Unauthenticated)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(key: &KeyPair, common_name: &str) -> String {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .serialize_request(key)
            .expect("request")
            .pem()
            .expect("pem")
    }

    #[test]
    fn a_certificate_names_the_device_not_what_the_request_asks() {
        let new = DeviceCa::generate().expect("ca");
        let ca = DeviceCa::load(&new.certificate_pem, &new.key_pem).expect("load");
        let key = KeyPair::generate().expect("key");
        let device = DeviceId::parse("dev_0123").expect("id");
        let now = Utc::now();
        let (pem, certificate) = ca
            .issue(&request(&key, "somebody-else"), &device, now)
            .expect("issue");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let der = rustls_pki_types_der(&pem);
        assert_eq!(
            ring::digest::digest(&ring::digest::SHA256, &der).as_ref(),
            certificate.fingerprint
        );
        let text = String::from_utf8_lossy(&der);
        assert!(text.contains("dev_0123"));
        assert!(text.contains("urn:wardline:device:dev_0123"));
        assert!(!text.contains("somebody-else"));
        assert!(certificate.not_after > now + Duration::days(VALIDITY_DAYS - 1));
        assert_eq!(certificate.serial.len(), 32);
    }

    #[test]
    fn requests_that_are_not_the_devices_own_are_refused_with_the_reason() {
        let new = DeviceCa::generate().expect("ca");
        let ca = DeviceCa::load(&new.certificate_pem, &new.key_pem).expect("load");
        let device = DeviceId::parse("dev_0123").expect("id");
        let key = KeyPair::generate().expect("key");
        let good = request(&key, "dev_0123");
        // A byte of the signed part changed: the signature no longer verifies.
        let mut der = rustls_pki_types_der_of(&good, "CERTIFICATE REQUEST");
        let middle = der.len() / 3;
        der[middle] ^= 0x01;
        let tampered = pem_of(&der, "CERTIFICATE REQUEST");
        for (text, expected) in [
            ("not pem at all", "is not a PEM certificate signing request"),
            (tampered.as_str(), "signature"),
            (&"A".repeat(MAX_REQUEST_BYTES + 1), "at most"),
        ] {
            match ca.issue(text, &device, Utc::now()) {
                Err(Error::InvalidRequest { field, message }) => {
                    assert_eq!(field.as_deref(), Some("certificate_signing_request"));
                    assert!(message.contains(expected), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    fn rustls_pki_types_der(pem: &str) -> Vec<u8> {
        rustls_pki_types_der_of(pem, "CERTIFICATE")
    }

    fn rustls_pki_types_der_of(pem: &str, label: &str) -> Vec<u8> {
        use base64::Engine;
        let body: String = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        assert!(pem.contains(label));
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("base64")
    }

    fn pem_of(der: &[u8], label: &str) -> String {
        use base64::Engine;
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    }
}
