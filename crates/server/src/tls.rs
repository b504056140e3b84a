//! The server's own certificate authority. On first start Wardline creates a CA in the
//! data folder (key readable only by its owner) and, at every start, a fresh server
//! certificate for the configured host names, signed by that CA. Devices and browsers
//! trust `tls/ca.pem`, whose fingerprint is printed so it can be checked out of band.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use ring::digest;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The files and fingerprint of the server's TLS identity.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    pub ca_path: PathBuf,
    pub ca_fingerprint: String,
    pub server_config: Arc<rustls::ServerConfig>,
    pub mqtt_config: Arc<rustls::ServerConfig>,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Wardline");
    name.push(DnType::CommonName, "Wardline local certificate authority");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2026, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    params
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// SHA-256 of the certificate's DER, as colon-separated hex.
pub fn fingerprint(der: &[u8]) -> String {
    digest::digest(&digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Loads the CA from the data folder, creating it on first start, and issues the server
/// certificate for `hostnames`.
pub fn ensure_identity(data_dir: &Path, hostnames: &[String]) -> anyhow::Result<TlsIdentity> {
    let folder = data_dir.join("tls");
    fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let ca_key_path = folder.join("ca.key");
    let ca_path = folder.join("ca.pem");
    let ca_key = match fs::read_to_string(&ca_key_path) {
        Ok(pem) => KeyPair::from_pem(&pem).context("reading tls/ca.key")?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate()?;
            let certificate = ca_params().self_signed(&key)?;
            write_private(&ca_key_path, &key.serialize_pem())?;
            fs::write(&ca_path, certificate.pem())?;
            tracing::info!(path = %ca_path.display(), "created a certificate authority");
            key
        }
        Err(error) => return Err(error).context("reading tls/ca.key"),
    };
    let ca_pem = fs::read_to_string(&ca_path).context("reading tls/ca.pem")?;
    let ca_der = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .next()
        .context("tls/ca.pem holds no certificate")??;

    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut names = hostnames.to_vec();
    for always in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|name| name == always) {
            names.push(always.to_owned());
        }
    }
    for name in &names {
        params.subject_alt_names.push(match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                name.clone()
                    .try_into()
                    .with_context(|| format!("host name {name:?}"))?,
            ),
        });
    }
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].clone());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params);
    let issuer = Issuer::new(ca_params(), ca_key);
    let server_certificate = params.signed_by(&server_key, &issuer)?;
    write_private(&folder.join("server.key"), &server_key.serialize_pem())?;
    fs::write(folder.join("server.pem"), server_certificate.pem())?;

    let chain = vec![server_certificate.der().clone(), ca_der.clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let build = |alpn: Vec<Vec<u8>>| -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())?;
        config.alpn_protocols = alpn;
        Ok(Arc::new(config))
    };
    Ok(TlsIdentity {
        ca_fingerprint: fingerprint(ca_der.as_ref()),
        ca_path,
        server_config: build(vec![b"h2".to_vec(), b"http/1.1".to_vec()])?,
        mqtt_config: build(Vec::new())?,
    })
}

/// From yesterday (clients' clocks drift) to a year on; the certificate is reissued at
/// every start, so it never lapses on a server that restarts now and then.
fn set_validity(params: &mut CertificateParams) {
    use chrono::Datelike;
    let day = |date: chrono::NaiveDate| {
        rcgen::date_time_ymd(date.year(), date.month() as u8, date.day() as u8)
    };
    let today = chrono::Utc::now().date_naive();
    params.not_before = day(today - chrono::Duration::days(1));
    params.not_after = day(today + chrono::Duration::days(365));
}

/// Reads a CA file for clients (tests, the bench, the gateway).
pub fn load_ca(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .context("parsing CA certificates")
}
