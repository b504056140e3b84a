//! The server's TLS identity. By default Wardline's own certificate authority: on first
//! start Wardline creates a CA (its certificate in the data folder, its key in the keys
//! folder, owner-only) and, at every start, a fresh server certificate for the configured
//! host names, signed by that CA. Devices and browsers trust `tls/ca.pem`, whose
//! fingerprint is printed so it can be checked out of band. A hospital that issues its
//! own certificates gives Wardline one instead ([`load_identity`]).

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, SanType,
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

const CA_KEY_FILE: &str = "ca.key";
const SERVER_KEY_FILE: &str = "server.key";

/// The names the server answers to: the configured ones, and this machine's.
fn installation_names(hostnames: &[String]) -> Vec<String> {
    let mut names = hostnames.to_vec();
    for always in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|name| name == always) {
            names.push(always.to_owned());
        }
    }
    names
}

/// A name as a name constraint: a DNS name covers itself and the names below it, an
/// address only itself.
fn subtree(name: &str) -> GeneralSubtree {
    match name.parse::<IpAddr>() {
        Ok(ip @ IpAddr::V4(_)) => GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(ip, 32)),
        Ok(ip @ IpAddr::V6(_)) => GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(ip, 128)),
        Err(_) => GeneralSubtree::DnsName(name.to_ascii_lowercase()),
    }
}

/// The CA may certify only `names`: if its key leaks, or a hospital trusts it widely,
/// it still cannot vouch for anyone else's server.
fn ca_params(names: &[String]) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: names.iter().map(|name| subtree(name)).collect(),
        excluded_subtrees: Vec::new(),
    });
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

/// SHA-256 of the certificate's DER, as colon-separated hex.
pub fn fingerprint(der: &[u8]) -> String {
    digest::digest(&digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Loads the CA, creating it on first start, and issues the server certificate for
/// `hostnames`. The certificates are in the data folder's `tls/`; their keys are in the
/// keys folder (a CA key that an earlier version kept in `tls/` moves there).
pub fn ensure_identity(
    data_dir: &Path,
    keys_dir: &Path,
    hostnames: &[String],
    devices: &DeviceAuthority,
) -> anyhow::Result<TlsIdentity> {
    let folder = data_dir.join("tls");
    fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    crate::keys::adopt(&folder.join(CA_KEY_FILE), keys_dir, CA_KEY_FILE, "CA key")?;
    // The server key is made anew at every start; an old copy in the data folder is
    // worthless, but it is still a private key.
    match fs::remove_file(folder.join(SERVER_KEY_FILE)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).context("removing tls/server.key");
        }
        _ => {}
    }
    let ca_path = folder.join("ca.pem");
    let names = installation_names(hostnames);
    let mut created = None;
    let ca_pem_key = crate::keys::read_or_create(keys_dir, CA_KEY_FILE, "CA key", || {
        let key = KeyPair::generate()?;
        let certificate = ca_params(&names).self_signed(&key)?;
        created = Some(certificate.pem());
        Ok(key.serialize_pem().into_bytes())
    })?;
    let ca_key =
        KeyPair::from_pem(std::str::from_utf8(&ca_pem_key).context("the CA key is not PEM text")?)
            .context("reading the CA key")?;
    if let Some(certificate) = created {
        fs::write(&ca_path, certificate)?;
        tracing::info!(path = %ca_path.display(), "created a certificate authority");
    }
    let ca_pem = fs::read_to_string(&ca_path).context("reading tls/ca.pem")?;
    let ca_der = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .next()
        .context("tls/ca.pem holds no certificate")??;

    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
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
    let issuer = Issuer::new(ca_params(&names), ca_key);
    let server_certificate = params.signed_by(&server_key, &issuer)?;
    check_names(&ca_der, &issuer, server_certificate.der(), &names)?;
    crate::keys::write_private(
        &keys_dir.join(SERVER_KEY_FILE),
        server_key.serialize_pem().as_bytes(),
    )?;
    fs::write(folder.join("server.pem"), server_certificate.pem())?;

    let chain = vec![server_certificate.der().clone(), ca_der.clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let build = |alpn: Vec<Vec<u8>>| -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(devices.client_verifier()?)
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

const DEVICE_CA_KEY_FILE: &str = "device-ca.key";

/// The certificate authority for devices' client certificates: its certificate in the
/// data folder's `tls/device-ca.pem`, its key in the keys folder (owner-only), both made
/// at the first start. Apart from the server's CA, so that a server certificate never
/// passes for a device, nor a device's for a server.
#[derive(Debug)]
pub struct DeviceAuthority {
    pub ca: Arc<wardline_service::device_certificates::DeviceCa>,
    pub certificate: CertificateDer<'static>,
    pub path: PathBuf,
}

impl DeviceAuthority {
    /// Asks every TLS client for a certificate and takes one only if the device CA issued
    /// it and it is valid now; a client without one (a browser, a device with a secret)
    /// goes on, and is authenticated otherwise.
    fn client_verifier(
        &self,
    ) -> anyhow::Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.certificate.clone())?;
        Ok(rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .allow_unauthenticated()
        .build()?)
    }
}

/// The device CA, made on first use.
pub fn ensure_device_authority(
    data_dir: &Path,
    keys_dir: &Path,
) -> anyhow::Result<DeviceAuthority> {
    use wardline_service::device_certificates::DeviceCa;
    let folder = data_dir.join("tls");
    fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let path = folder.join("device-ca.pem");
    let mut created = None;
    let key_pem =
        crate::keys::read_or_create(keys_dir, DEVICE_CA_KEY_FILE, "device CA key", || {
            let new = DeviceCa::generate().map_err(|error| anyhow::anyhow!("{error}"))?;
            created = Some(new.certificate_pem);
            Ok(new.key_pem.into_bytes())
        })?;
    if let Some(certificate) = created {
        fs::write(&path, certificate)?;
        tracing::info!(path = %path.display(), "created a certificate authority for devices");
    }
    let certificate_pem =
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let key_pem = std::str::from_utf8(&key_pem).context("the device CA key is not PEM text")?;
    let ca = DeviceCa::load(&certificate_pem, key_pem)
        .map_err(|error| anyhow::anyhow!("loading the device CA: {error}"))?;
    let certificate = CertificateDer::pem_slice_iter(certificate_pem.as_bytes())
        .next()
        .with_context(|| format!("{} holds no certificate", path.display()))??;
    Ok(DeviceAuthority {
        ca: Arc::new(ca),
        certificate,
        path,
    })
}

/// A client's check of server certificates against the CAs that clients trust (Wardline's
/// own, or the hospital's).
struct ClientCheck(Arc<rustls::client::WebPkiServerVerifier>);

impl ClientCheck {
    fn new(ca_der: &CertificateDer<'static>) -> anyhow::Result<Self> {
        Self::trusting(std::slice::from_ref(ca_der))
    }

    fn trusting(cas: &[CertificateDer<'static>]) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in cas {
            roots.add(ca.clone())?;
        }
        Ok(Self(
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(rustls::crypto::ring::default_provider()),
            )
            .build()?,
        ))
    }

    fn verify(&self, certificate: &CertificateDer<'static>, name: &str) -> anyhow::Result<()> {
        self.verify_chain(certificate, &[], name)
    }

    fn verify_chain(
        &self,
        certificate: &CertificateDer<'static>,
        intermediates: &[CertificateDer<'static>],
        name: &str,
    ) -> anyhow::Result<()> {
        let server_name = rustls::pki_types::ServerName::try_from(name.to_owned())?;
        rustls::client::danger::ServerCertVerifier::verify_server_cert(
            self.0.as_ref(),
            certificate,
            intermediates,
            &server_name,
            &[],
            rustls::pki_types::UnixTime::now(),
        )?;
        Ok(())
    }
}

/// The hospital's own server certificate, with its key and the CA that devices and
/// browsers trust. Checked at start the way clients will check it, for every configured
/// host name (issued by that CA, in date, naming the host), and the key must be the
/// certificate's: a mistake stops the start with what is wrong, instead of failing in
/// every client.
pub fn load_identity(
    own: &crate::config::OwnCertificate,
    hostnames: &[String],
    devices: &DeviceAuthority,
) -> anyhow::Result<TlsIdentity> {
    let read = |path: &Path, what: &str| {
        fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
    };
    let certificates = |path: &Path, what: &str| -> anyhow::Result<Vec<CertificateDer<'static>>> {
        let pem = read(path, what)?;
        let found = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{what} {} is not PEM certificates", path.display()))?;
        anyhow::ensure!(
            !found.is_empty(),
            "{what} {} holds no certificate",
            path.display()
        );
        Ok(found)
    };
    let chain = certificates(&own.certificate_file, "tls.certificate_file")?;
    let cas = certificates(&own.ca_file, "tls.ca_file")?;
    let key = PrivateKeyDer::from_pem_slice(&read(&own.key_file, "tls.key_file")?).with_context(
        || {
            format!(
                "tls.key_file {} is not a PEM private key",
                own.key_file.display()
            )
        },
    )?;
    let check = ClientCheck::trusting(&cas)?;
    for name in hostnames {
        check
            .verify_chain(&chain[0], &chain[1..], name)
            .with_context(|| {
                format!(
                    "clients would refuse tls.certificate_file {} for {name} under the CA in tls.ca_file {}",
                    own.certificate_file.display(),
                    own.ca_file.display()
                )
            })?;
    }
    let build = |alpn: Vec<Vec<u8>>| -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(devices.client_verifier()?)
        .with_single_cert(chain.clone(), key.clone_key())
        .with_context(|| {
            format!(
                "tls.key_file {} does not go with tls.certificate_file {}",
                own.key_file.display(),
                own.certificate_file.display()
            )
        })?;
        config.alpn_protocols = alpn;
        Ok(Arc::new(config))
    };
    Ok(TlsIdentity {
        ca_path: own.ca_file.clone(),
        ca_fingerprint: fingerprint(cas[0].as_ref()),
        server_config: build(vec![b"h2".to_vec(), b"http/1.1".to_vec()])?,
        mqtt_config: build(Vec::new())?,
    })
}

/// Checks the new server certificate the way clients will, for each of its names, so
/// that a name the CA may not certify (a host name added since the CA was made) stops
/// the start with a useful message instead of failing in every client. A CA of an
/// earlier version, made without constraints, is used as it is, with a warning.
fn check_names(
    ca_der: &CertificateDer<'static>,
    issuer: &Issuer<'_, KeyPair>,
    server: &CertificateDer<'static>,
    names: &[String],
) -> anyhow::Result<()> {
    let verifier = ClientCheck::new(ca_der)?;
    let verify =
        |certificate: &CertificateDer<'static>, name: &str| verifier.verify(certificate, name);
    for name in names {
        if let Err(error) = verify(server, name) {
            anyhow::bail!(
                "clients would refuse the server certificate for {name} ({error}): the certificate authority in tls/ca.pem may certify only the names it was made for; move tls/ca.pem and ca.key (in the keys folder) aside to create a new one for all of tls.hostnames, and give devices and browsers the new tls/ca.pem"
            );
        }
    }
    // A name nobody configured: a CA with constraints refuses it.
    const ELSEWHERE: &str = "not-this-server.invalid";
    let mut params = CertificateParams::new(vec![ELSEWHERE.to_owned()])?;
    set_validity(&mut params);
    let elsewhere = params.signed_by(&KeyPair::generate()?, issuer)?;
    if verify(elsewhere.der(), ELSEWHERE).is_ok() {
        tracing::warn!(
            "the certificate authority in tls/ca.pem has no name constraints: it can vouch for any server name; move it and its key aside to create one limited to tls.hostnames"
        );
    }
    Ok(())
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn devices(data: &Path, keys: &Path) -> DeviceAuthority {
        ensure_device_authority(data, keys).unwrap()
    }

    fn accepted(ca_pem: &[u8], certificate: &CertificateDer<'static>, name: &str) -> bool {
        let ca = CertificateDer::pem_slice_iter(ca_pem)
            .next()
            .unwrap()
            .unwrap();
        ClientCheck::new(&ca)
            .unwrap()
            .verify(certificate, name)
            .is_ok()
    }

    /// What the CA's key could sign for any name it likes.
    fn forged(keys: &Path, name: &str) -> CertificateDer<'static> {
        let pem = fs::read_to_string(keys.join(CA_KEY_FILE)).unwrap();
        let issuer = Issuer::new(
            ca_params(&[name.to_owned()]),
            KeyPair::from_pem(&pem).unwrap(),
        );
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        set_validity(&mut params);
        params
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap()
            .der()
            .clone()
    }

    #[test]
    fn the_ca_certifies_only_this_servers_names() {
        let root = tempfile::tempdir().unwrap();
        let (data, keys) = (root.path().join("data"), root.path().join("data-keys"));
        let names = vec!["wardline.example.org".to_owned()];
        ensure_identity(&data, &keys, &names, &devices(&data, &keys)).unwrap();
        let ca = fs::read(data.join("tls/ca.pem")).unwrap();
        let server = load_ca(&data.join("tls/server.pem")).unwrap().remove(0);
        for name in ["wardline.example.org", "localhost", "127.0.0.1"] {
            assert!(accepted(&ca, &server, name), "{name}");
        }
        // Even with the CA's key, a certificate for another server is refused by clients.
        assert!(!accepted(
            &ca,
            &forged(&keys, "bank.example.com"),
            "bank.example.com"
        ));
        assert!(accepted(
            &ca,
            &forged(&keys, "api.wardline.example.org"),
            "api.wardline.example.org"
        ));

        // A host name the CA was not made for stops the start, saying what to do.
        let error = ensure_identity(
            &data,
            &keys,
            &["ward.example.net".to_owned()],
            &devices(&data, &keys),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            error.contains("ward.example.net") && error.contains("aside"),
            "{error}"
        );
        ensure_identity(&data, &keys, &names, &devices(&data, &keys)).unwrap();
    }

    #[test]
    fn a_ca_of_an_earlier_version_without_constraints_still_serves() {
        let root = tempfile::tempdir().unwrap();
        let (data, keys) = (root.path().join("data"), root.path().join("data-keys"));
        fs::create_dir_all(data.join("tls")).unwrap();
        crate::keys::prepare_folder(&keys).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = ca_params(&[]);
        params.name_constraints = None;
        fs::write(
            data.join("tls/ca.pem"),
            params.self_signed(&key).unwrap().pem(),
        )
        .unwrap();
        crate::keys::write_private(&keys.join(CA_KEY_FILE), key.serialize_pem().as_bytes())
            .unwrap();
        ensure_identity(
            &data,
            &keys,
            &["any.example.net".to_owned()],
            &devices(&data, &keys),
        )
        .unwrap();
    }
}
