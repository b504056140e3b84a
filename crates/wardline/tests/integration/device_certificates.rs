//! Devices with certificates, over real sockets: a certificate issued from the device's
//! own request logs the device in over MQTT and HTTPS without its secret, only for itself,
//! until the device is revoked; certificates from anywhere else fail the handshake.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet as Packet5};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

use crate::support::{
    EnrolledDevice, TestServer, await_pubacks, glucose_at, publish_qos1, reading,
    revoke_and_see_it_dropped,
};

/// A key the device makes and keeps, and its certificate signing request.
fn device_key_and_request() -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let request = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .expect("request")
        .pem()
        .expect("pem");
    (key, request)
}

/// TLS for a device holding `certificate_pem` and its key, trusting the server's CA.
fn device_tls(
    server: &TestServer,
    certificate_pem: &str,
    key: &rcgen::KeyPair,
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&server.ca_pem()) {
        roots.add(certificate.expect("ca pem")).expect("add root");
    }
    let chain = CertificateDer::pem_slice_iter(certificate_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate pem");
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key pem");
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client certificate")
}

/// MQTT 5 options for a device with a certificate and no password.
fn mqtt_with(
    server: &TestServer,
    client_id: &str,
    tls: rustls::ClientConfig,
) -> rumqttc::v5::MqttOptions {
    let mut options = rumqttc::v5::MqttOptions::new(client_id, "localhost", server.mqtt_port());
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    options
}

/// The CONNACK's code, or the refusal's.
async fn connack(options: rumqttc::v5::MqttOptions) -> Result<ConnectReturnCode, String> {
    let (_client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 10);
    match tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
        .await
        .expect("answer in time")
    {
        Ok(rumqttc::v5::Event::Incoming(Packet5::ConnAck(ack))) => Ok(ack.code),
        Ok(other) => panic!("unexpected {other:?}"),
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => Ok(code),
        Err(other) => Err(other.to_string()),
    }
}

fn https_with(tls: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

async fn post_reading(
    server: &TestServer,
    client: &reqwest::Client,
    device_id: &str,
    body: &Value,
) -> Result<reqwest::StatusCode, reqwest::Error> {
    client
        .post(server.url(&format!("/api/v1/devices/{device_id}/readings")))
        .json(body)
        .send()
        .await
        .map(|response| response.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_with_a_certificate_sends_over_mqtt_and_https_until_it_is_revoked() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let other = server
        .enrol(&ward.admin, "cgm", Some(&ward.patient_id))
        .await;
    let (key, request) = device_key_and_request();
    let issued = server
        .post(
            &ward.admin,
            &format!("/api/v1/devices/{}/certificate", ward.device.id),
            json!({"certificate_signing_request": request}),
        )
        .await;
    assert_eq!(issued.status(), 201);
    let issued: Value = issued.json().await.expect("issued");
    let certificate_pem = issued["certificate_pem"].as_str().expect("certificate");
    // The CA the certificate chains to is the one in the data folder, apart from the
    // server's.
    let device_ca = std::fs::read_to_string(server.data.path().join("server/tls/device-ca.pem"))
        .expect("device CA file");
    assert_eq!(issued["ca_pem"].as_str(), Some(device_ca.as_str()));
    assert_ne!(device_ca.as_bytes(), server.ca_pem().as_slice());
    let audit: Value = server
        .get(
            &ward.admin,
            "/api/v1/audit?action=devices.issue_certificate",
        )
        .await
        .json()
        .await
        .expect("audit");
    assert_eq!(audit.as_array().map(Vec::len), Some(1), "{audit}");

    // MQTT without a password: the certificate is the credential.
    let tls = device_tls(&server, certificate_pem, &key);
    assert_eq!(
        connack(mqtt_with(&server, &ward.device.id, tls.clone())).await,
        Ok(ConnectReturnCode::Success)
    );
    // It logs in as its own device only.
    assert_eq!(
        connack(mqtt_with(&server, &other.id, tls.clone())).await,
        Ok(ConnectReturnCode::ClientIdentifierNotValid)
    );
    let mut options =
        rumqttc::MqttOptions::new(ward.device.id.clone(), "localhost", server.mqtt_port());
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
            Arc::new(tls.clone()),
        )));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    publish_qos1(&client, &ward.device, reading(1, "99504-3", 111.0, "mg/dL")).await;
    await_pubacks(&mut eventloop, 1).await;

    // HTTPS without a bearer secret, on its own path only.
    let https = https_with(tls);
    let glucose = glucose_at(2, 112.0, chrono::Utc::now());
    assert_eq!(
        post_reading(&server, &https, &ward.device.id, &glucose)
            .await
            .expect("post"),
        200
    );
    assert_eq!(
        post_reading(&server, &https, &other.id, &glucose)
            .await
            .expect("post"),
        401,
        "a certificate speaks for its own device, not another"
    );
    let latest: Value = server
        .get(
            &ward.clinician,
            &format!(
                "/api/v1/patients/{}/observations?code=99504-3",
                ward.patient_id
            ),
        )
        .await
        .json()
        .await
        .expect("observations");
    let values: Vec<f64> = latest["observations"]
        .as_array()
        .expect("observations")
        .iter()
        .filter_map(|observation| observation["value"].as_f64())
        .collect();
    assert!(
        values.contains(&111.0) && values.contains(&112.0),
        "{latest}"
    );

    // Revoked: the live connection ends, and the certificate opens nothing more.
    revoke_and_see_it_dropped(&server, &ward.admin, &ward.device.id, &mut eventloop).await;
    let tls = device_tls(&server, certificate_pem, &key);
    assert_eq!(
        connack(mqtt_with(&server, &ward.device.id, tls.clone())).await,
        Ok(ConnectReturnCode::NotAuthorized)
    );
    assert_eq!(
        post_reading(&server, &https_with(tls), &ward.device.id, &glucose)
            .await
            .expect("post"),
        401
    );
    // And a revoked device gets no new certificate.
    let (_, request) = device_key_and_request();
    let refused = server
        .post(
            &ward.admin,
            &format!("/api/v1/devices/{}/certificate", ward.device.id),
            json!({"certificate_signing_request": request}),
        )
        .await;
    assert_eq!(refused.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_elsewhere_fail_the_handshake_and_bad_requests_say_why() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let device: &EnrolledDevice = &ward.device;
    // A certificate the device made itself, naming the device: not the device CA's.
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, device.id.as_str());
    let forged = params.self_signed(&key).expect("self-signed").pem();
    let tls = device_tls(&server, &forged, &key);
    assert!(
        connack(mqtt_with(&server, &device.id, tls.clone()))
            .await
            .is_err(),
        "the handshake fails"
    );
    let glucose = glucose_at(1, 100.0, chrono::Utc::now());
    assert!(
        post_reading(&server, &https_with(tls), &device.id, &glucose)
            .await
            .is_err(),
        "the handshake fails"
    );

    // Requests the CA will not sign, each with its reason.
    let path = format!("/api/v1/devices/{}/certificate", device.id);
    let (_, good) = device_key_and_request();
    for (request, reason) in [
        (
            "not a request".to_owned(),
            "is not a PEM certificate signing request",
        ),
        ("A".repeat(16 * 1024 + 1), "16384"),
    ] {
        let answer = server
            .post(
                &ward.admin,
                &path,
                json!({"certificate_signing_request": request}),
            )
            .await;
        assert_eq!(answer.status(), 400);
        let body: Value = answer.json().await.expect("error");
        assert_eq!(
            body["error"]["field"], "certificate_signing_request",
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(reason),
            "{body}"
        );
    }
    // Only administrators issue certificates, and only to enrolled devices.
    let answer = server
        .post(
            &ward.clinician,
            &path,
            json!({"certificate_signing_request": good}),
        )
        .await;
    assert_eq!(answer.status(), 403);
    let answer = server
        .post(
            &ward.admin,
            "/api/v1/devices/dev_unknown/certificate",
            json!({"certificate_signing_request": good}),
        )
        .await;
    assert_eq!(answer.status(), 404);
    // The secret still works beside certificates.
    server.device_post(device, glucose).await;
}
