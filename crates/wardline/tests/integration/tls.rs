//! The hospital's own server certificate instead of Wardline's CA: served on HTTPS and
//! MQTTS, reported for clients to trust, and checked at start.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rumqttc::AsyncClient;

use crate::support::{TestServer, await_pubacks, mqtt_v311, publish_qos1, reading};

/// The hospital's CA, and server certificates it issues.
pub(crate) struct HospitalCa {
    folder: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
}

impl HospitalCa {
    pub(crate) fn new() -> Self {
        let folder = tempfile::tempdir().expect("temp dir");
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "St Elsewhere Hospital Root CA");
        let certificate = params.self_signed(&key).expect("CA certificate");
        std::fs::write(folder.path().join("hospital-ca.pem"), certificate.pem()).expect("CA file");
        Self {
            folder,
            issuer: Issuer::new(params, key),
        }
    }

    pub(crate) fn ca_file(&self) -> PathBuf {
        self.folder.path().join("hospital-ca.pem")
    }

    /// A server certificate for `names` and its key, as files named after `label`.
    pub(crate) fn issue(&self, label: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
        )
        .expect("params");
        let certificate = params.signed_by(&key, &self.issuer).expect("certificate");
        let certificate_file = self.folder.path().join(format!("{label}.pem"));
        let key_file = self.folder.path().join(format!("{label}.key"));
        std::fs::write(&certificate_file, certificate.pem()).expect("certificate file");
        std::fs::write(&key_file, key.serialize_pem()).expect("key file");
        (certificate_file, key_file)
    }
}

fn env<'a>(certificate: &'a Path, key: &'a Path, ca: &'a Path) -> [(&'static str, &'a str); 3] {
    [
        (
            "WARDLINE_TLS_CERTIFICATE_FILE",
            certificate.to_str().expect("utf-8"),
        ),
        ("WARDLINE_TLS_KEY_FILE", key.to_str().expect("utf-8")),
        ("WARDLINE_TLS_CA_FILE", ca.to_str().expect("utf-8")),
    ]
}

/// Starts `wardline serve` expecting it to refuse; returns what it said on stderr.
pub(crate) fn refused_start(env: &[(&str, &str)]) -> String {
    let data = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wardline"))
        .args([
            "serve",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path().join("server"))
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wardline");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(!status.success(), "the start is refused");
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
                .expect("stderr");
            return stderr;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wardline started where it should have refused to");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// With the hospital's certificate, clients that trust only the hospital's CA reach the
/// server over HTTPS and MQTTS, the server makes no CA of its own, and a certificate
/// for another host or a key that is not the certificate's stops the start, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hospitals_own_certificate_is_served_and_checked_at_start() {
    let hospital = HospitalCa::new();
    let ca = hospital.ca_file();
    let (certificate, key) = hospital.issue("wardline", &["localhost"]);
    let server = TestServer::start_with_env(&env(&certificate, &key, &ca)).await;
    assert_eq!(
        server.report.ca_path.as_deref(),
        Some(ca.as_path()),
        "clients are told to trust the hospital's CA"
    );
    assert!(
        !std::fs::exists(server.data.path().join("server/tls/ca.pem")).expect("exists"),
        "no CA of Wardline's own"
    );
    // The harness's HTTPS client trusts only the reported CA: the ward's set-up and the
    // reading below went through the hospital's certificate.
    let ward = server.ward().await;
    let (client, mut eventloop) =
        AsyncClient::new(mqtt_v311(&server, &ward.device, &ward.device.secret), 10);
    publish_qos1(&client, &ward.device, reading(1, "99504-3", 112.0, "mg/dL")).await;
    assert_eq!(await_pubacks(&mut eventloop, 1).await.len(), 1, "MQTTS too");

    let (elsewhere, elsewhere_key) = hospital.issue("elsewhere", &["elsewhere.example"]);
    let said = refused_start(&env(&elsewhere, &elsewhere_key, &ca));
    assert!(said.contains("clients would refuse"), "{said}");
    assert!(said.contains("localhost"), "names the host: {said}");
    let said = refused_start(&env(&certificate, &elsewhere_key, &ca));
    assert!(
        said.contains("does not go with"),
        "a key of another certificate: {said}"
    );
    let said = refused_start(&[(
        "WARDLINE_TLS_CERTIFICATE_FILE",
        certificate.to_str().expect("utf-8"),
    )]);
    assert!(said.contains("go together"), "{said}");
}
