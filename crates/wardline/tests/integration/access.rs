//! Who may connect, publish and read.

use std::time::Duration;

use rumqttc::AsyncClient;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet as Packet5, PubAckReason};
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_publish_to_another_devices_topic() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let other_patient = server
        .post_ok(
            &ward.admin,
            "/api/v1/patients",
            json!({"display_name": "Bea Other"}),
        )
        .await;
    let other_patient_id = other_patient["id"].as_str().unwrap().to_owned();
    let device_b = server
        .enrol(&ward.admin, "pulse_oximeter", Some(&other_patient_id))
        .await;
    server
        .post_ok(
            &ward.admin,
            &format!("/api/v1/care-teams/{}/patients", ward.team_id),
            json!({"patient_id": other_patient_id}),
        )
        .await;

    // MQTT 5: refused with Not Authorized in the PUBACK.
    let (client, mut eventloop) =
        rumqttc::v5::AsyncClient::new(mqtt_v5(&server, &ward.device, &ward.device.secret), 10);
    client
        .publish(
            topic(&device_b),
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            reading(1, "59408-5", 97.0, "%"),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let ack = loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("ack in time")
            .expect("connection");
        if let rumqttc::v5::Event::Incoming(Packet5::PubAck(ack)) = event {
            break ack;
        }
    };
    assert_eq!(ack.reason, PubAckReason::NotAuthorized);

    // MQTT 3.1.1 has no negative PUBACK: the connection is closed instead.
    let (client, mut eventloop) =
        AsyncClient::new(mqtt_v311(&server, &ward.device, &ward.device.secret), 10);
    publish_qos1(&client, &device_b, reading(2, "59408-5", 97.0, "%")).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("closed in time")
        {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                panic!("a foreign-topic publish was acknowledged")
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(
        server
            .observations(&ward.clinician, &other_patient_id, "59408-5")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secrets_and_revoked_devices_cannot_connect() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let connect = |secret: String| {
        let options = mqtt_v5(&server, &ward.device, &secret);
        async move {
            let (_client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 10);
            match tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
                .await
                .expect("answer in time")
            {
                Ok(rumqttc::v5::Event::Incoming(Packet5::ConnAck(ack))) => Ok(ack.code),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => Err(code),
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
    };
    assert_eq!(
        connect(ward.device.secret.clone()).await,
        Ok(ConnectReturnCode::Success)
    );
    assert_eq!(
        connect("wds_wrong".into()).await,
        Err(ConnectReturnCode::BadUserNamePassword)
    );

    // A connected device is dropped when revoked, and cannot come back.
    let (client, mut eventloop) =
        AsyncClient::new(mqtt_v311(&server, &ward.device, &ward.device.secret), 10);
    publish_qos1(&client, &ward.device, reading(1, "99504-3", 100.0, "mg/dL")).await;
    await_pubacks(&mut eventloop, 1).await;
    revoke_and_see_it_dropped(&server, &ward.admin, &ward.device.id, &mut eventloop).await;
    assert_eq!(
        connect(ward.device.secret.clone()).await,
        Err(ConnectReturnCode::NotAuthorized)
    );
    let http = server
        .send_readings(&ward.device, reading(2, "99504-3", 100.0, "mg/dL"))
        .await;
    assert_eq!(http.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_care_team_and_the_patient_read_a_patients_data() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let response = server
        .send_readings(&ward.device, reading(1, "99504-3", 140.0, "mg/dL"))
        .await;
    assert_eq!(response.status(), 200);

    let password = "another long passphrase";
    let outsider = server
        .post_ok(&ward.admin, "/api/v1/users", json!({"username": "xavier", "display_name": "Dr X", "role": "clinician", "password": password, "password_change_required": false}))
        .await;
    let outsider_id = outsider["user"]["id"].as_str().unwrap().to_owned();
    let xavier = server.login("xavier", password).await;
    let observations_path = format!(
        "/api/v1/patients/{}/observations?code=99504-3",
        ward.patient_id
    );
    for path in [
        observations_path.clone(),
        format!("/api/v1/patients/{}", ward.patient_id),
        format!("/api/v1/patients/{}/observations/latest", ward.patient_id),
        format!("/api/v1/patients/{}/observations/stream", ward.patient_id),
        format!("/api/v1/patients/{}/waveforms", ward.patient_id),
        format!("/api/v1/patients/{}/care-teams", ward.patient_id),
        format!("/api/v1/patients/{}/access-log", ward.patient_id),
    ] {
        let response = server.get(&xavier, &path).await;
        assert_eq!(response.status(), 403, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], json!("forbidden"));
    }
    let listed: Value = server
        .get(&xavier, "/api/v1/patients")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([]), "an outsider lists no patients");

    // The admin manages the record but is not on the care team: no clinical data.
    assert_eq!(
        server.get(&ward.admin, &observations_path).await.status(),
        403
    );
    assert_eq!(
        server
            .get(&ward.clinician, &observations_path)
            .await
            .status(),
        200
    );

    // The patient reads their own record, and nobody else's.
    let patient_password = "my own long password";
    server
        .post_ok(&ward.admin, "/api/v1/users", json!({"username": "ada", "display_name": "Ada", "role": "patient", "password": patient_password, "password_change_required": false, "patient_id": ward.patient_id}))
        .await;
    let ada = server.login("ada", patient_password).await;
    assert_eq!(server.get(&ada, &observations_path).await.status(), 200);
    let other = server
        .post_ok(
            &ward.admin,
            "/api/v1/patients",
            json!({"display_name": "Someone Else"}),
        )
        .await;
    let other_path = format!(
        "/api/v1/patients/{}/observations?code=99504-3",
        other["id"].as_str().unwrap()
    );
    assert_eq!(server.get(&ada, &other_path).await.status(), 403);
    assert_eq!(
        server.get(&ada, "/api/v1/users").await.status(),
        403,
        "patients do not administer"
    );

    // Every attempt is in the audit trail, denied ones included, with who and from where.
    let denied: Value = server
        .get(
            &ward.admin,
            &format!("/api/v1/audit?user_id={outsider_id}&action=observations.read"),
        )
        .await
        .json()
        .await
        .unwrap();
    let denied = denied.as_array().unwrap();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["outcome"], json!("denied"));
    assert_eq!(denied[0]["patient_id"], json!(ward.patient_id));
    assert_eq!(denied[0]["remote_addr"], json!("127.0.0.1"));
    let allowed: Value = server
        .get(
            &ward.admin,
            &format!(
                "/api/v1/audit?user_id={}&action=observations.read",
                ward.clinician.user_id
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(allowed[0]["outcome"], json!("allowed"));
}

/// A patient sees who can see their data (their care team, by name) and every recorded
/// look at it, refused attempts included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_sees_their_care_team_and_who_looked_at_their_data() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let patient_password = "my own long password";
    server
        .post_ok(&ward.admin, "/api/v1/users", json!({"username": "ada", "display_name": "Ada", "role": "patient", "password": patient_password, "password_change_required": false, "patient_id": ward.patient_id}))
        .await;
    let nurse = server
        .post_ok(&ward.admin, "/api/v1/users", json!({"username": "nurse.joy", "display_name": "Nurse Joy", "role": "nurse", "password": patient_password, "password_change_required": false}))
        .await;
    server
        .post_ok(
            &ward.admin,
            &format!("/api/v1/care-teams/{}/members", ward.team_id),
            json!({"user_id": nurse["user"]["id"]}),
        )
        .await;
    // A member who left: disabled accounts no longer see anything, so they are not listed.
    let gone = server
        .post_ok(&ward.admin, "/api/v1/users", json!({"username": "dr.gone", "display_name": "Dr Gone", "role": "clinician", "password": patient_password, "password_change_required": false}))
        .await;
    server
        .post_ok(
            &ward.admin,
            &format!("/api/v1/care-teams/{}/members", ward.team_id),
            json!({"user_id": gone["user"]["id"]}),
        )
        .await;
    let gone_path = format!(
        "/api/v1/users/{}/disable",
        gone["user"]["id"].as_str().unwrap()
    );
    assert_eq!(
        server
            .post(&ward.clinician, &gone_path, json!({}))
            .await
            .status(),
        403,
        "only admins disable accounts"
    );
    assert_eq!(
        server
            .post(&ward.admin, &gone_path, json!({}))
            .await
            .status(),
        204
    );
    let own = format!("/api/v1/users/{}/disable", ward.admin.user_id);
    assert_eq!(
        server.post(&ward.admin, &own, json!({})).await.status(),
        400
    );
    let outsider = "xavier";
    server
        .post_ok(&ward.admin, "/api/v1/users", json!({"username": outsider, "display_name": "Dr X", "role": "clinician", "password": patient_password, "password_change_required": false}))
        .await;
    let xavier = server.login(outsider, patient_password).await;
    let latest = format!("/api/v1/patients/{}/observations/latest", ward.patient_id);
    assert_eq!(server.get(&xavier, &latest).await.status(), 403);
    assert_eq!(server.get(&ward.clinician, &latest).await.status(), 200);

    let ada = server.login("ada", patient_password).await;
    let teams: Value = server
        .get(
            &ada,
            &format!("/api/v1/patients/{}/care-teams", ward.patient_id),
        )
        .await
        .json()
        .await
        .unwrap();
    let teams = teams.as_array().unwrap();
    assert_eq!(teams.len(), 1, "{teams:?}");
    assert_eq!(teams[0]["name"], json!(format!("Team {}", ward.patient_id)));
    let mut members: Vec<(String, String)> = teams[0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| {
            (
                member["display_name"].as_str().unwrap().to_owned(),
                member["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    members.sort();
    assert_eq!(
        members,
        [
            ("Dr Clinician".to_owned(), "clinician".to_owned()),
            ("Nurse Joy".to_owned(), "nurse".to_owned()),
        ]
    );

    let log: Value = server
        .get(
            &ada,
            &format!("/api/v1/patients/{}/access-log?limit=500", ward.patient_id),
        )
        .await
        .json()
        .await
        .unwrap();
    let log = log.as_array().unwrap();
    let entry = |who: &str, action: &str| {
        log.iter()
            .find(|entry| entry["who"] == json!(who) && entry["action"] == json!(action))
            .cloned()
    };
    let clinician_read =
        entry("Dr Clinician", "observations.read_latest").expect("the clinician's read");
    assert_eq!(clinician_read["outcome"], json!("allowed"));
    assert_eq!(clinician_read["role"], json!("clinician"));
    let refused = entry("Dr X", "observations.read_latest").expect("the outsider's attempt");
    assert_eq!(refused["outcome"], json!("denied"));
    assert!(
        log.iter()
            .all(|entry| entry.get("remote_addr").is_none() && entry.get("detail").is_none()),
        "addresses and details stay with the admins"
    );
    // Newest first, and paging back goes further into the past.
    let sequences: Vec<i64> = log
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert!(
        sequences.windows(2).all(|pair| pair[0] > pair[1]),
        "{sequences:?}"
    );
    let oldest = sequences[sequences.len() / 2];
    let older: Value = server
        .get(
            &ada,
            &format!(
                "/api/v1/patients/{}/access-log?before={oldest}",
                ward.patient_id
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        older
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["sequence"].as_i64().unwrap() < oldest)
    );
    let too_many = server
        .get(
            &ada,
            &format!(
                "/api/v1/patients/{}/access-log?limit=100000",
                ward.patient_id
            ),
        )
        .await;
    assert_eq!(too_many.status(), 400);
    let body: Value = too_many.json().await.unwrap();
    assert_eq!(body["error"]["field"], json!("limit"), "{body}");
}

/// The audit entries of one action, newest first, as an admin reads them.
async fn audited(server: &TestServer, admin: &Session, action: &str) -> Value {
    server
        .get(admin, &format!("/api/v1/audit?action={action}"))
        .await
        .json()
        .await
        .expect("audit entries")
}

/// A login as the admin with a wrong password, with extra headers.
async fn wrong_admin_login(server: &TestServer, headers: &[(&str, &str)]) -> u16 {
    let mut request = server
        .client
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": "guess guess guess"}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .send()
        .await
        .expect("login answered")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_audited_and_sessions_end_at_logout() {
    let server = TestServer::start().await;
    assert_eq!(wrong_admin_login(&server, &[]).await, 401);
    let admin = server.admin_login().await;
    let failed = audited(&server, &admin, "login.failed").await;
    assert_eq!(failed.as_array().unwrap().len(), 1);
    assert_eq!(failed[0]["actor_label"], json!("admin"));
    // The harness's first login (to change the one-time password) and this one.
    let logins = audited(&server, &admin, "login").await;
    assert_eq!(logins.as_array().unwrap().len(), 2);
    let logout = server.post(&admin, "/api/v1/auth/logout", json!({})).await;
    assert_eq!(logout.status(), 204);
    assert_eq!(
        server.get(&admin, "/api/v1/me").await.status(),
        401,
        "the token is dead after logout"
    );
}

/// Behind a trusted proxy the audit trail names the client the proxy saw, not the proxy;
/// a client's own claim in `X-Forwarded-For` is passed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_forwarded_client_is_audited() {
    let server =
        TestServer::start_with_env(&[("WARDLINE_HTTP_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let forwarded = [("x-forwarded-for", "198.51.100.1, 203.0.113.9")];
    assert_eq!(wrong_admin_login(&server, &forwarded).await, 401);
    let admin = server.admin().await;
    let failed = audited(&server, &admin, "login.failed").await;
    assert_eq!(failed[0]["remote_addr"], json!("203.0.113.9"), "{failed}");
    let logins = audited(&server, &admin, "login").await;
    assert_eq!(
        logins[0]["remote_addr"],
        json!("127.0.0.1"),
        "without the header, the proxy's own address"
    );
}

/// A wrong admin login sent the way a TCP balancer passes it on: from 127.0.0.2, with
/// `proxy_header` (if any) before the TLS handshake. The answer's status, or `None`
/// when the server closed the connection instead.
async fn login_through_tcp_balancer(
    server: &TestServer,
    proxy_header: Option<&[u8]>,
) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("address"))
        .expect("bind the balancer's address");
    let mut tcp = socket
        .connect(std::net::SocketAddr::new(
            [127, 0, 0, 1].into(),
            server.report.http.port(),
        ))
        .await
        .expect("connect");
    if let Some(header) = proxy_header {
        tcp.write_all(header).await.expect("send the PROXY header");
    }
    let ca = std::fs::read(server.report.ca_path.as_deref().expect("tls on")).expect("ca");
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls_client_config(&ca)));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.ok()?;
    let body = r#"{"username": "admin", "password": "guess guess guess"}"#;
    let request = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
}

/// Behind a TCP balancer that sends the PROXY protocol, the audit trail names the client
/// its header names; a connection from the balancer without the header is closed unread,
/// and a header from anyone else is not taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_balancers_proxy_header_names_the_audited_client() {
    let server = TestServer::start_with_env(&[
        ("WARDLINE_HTTP_TRUSTED_PROXIES", "127.0.0.2"),
        ("WARDLINE_HTTP_PROXY_PROTOCOL", "true"),
    ])
    .await;
    assert_eq!(
        login_through_tcp_balancer(
            &server,
            Some(b"PROXY TCP4 203.0.113.77 127.0.0.1 40000 8443\r\n")
        )
        .await,
        Some(401)
    );
    let admin = server.admin().await;
    let failed = audited(&server, &admin, "login.failed").await;
    assert_eq!(failed[0]["remote_addr"], json!("203.0.113.77"), "{failed}");
    assert_eq!(
        login_through_tcp_balancer(&server, None).await,
        None,
        "no header from the balancer: closed"
    );
    // The harness connects from 127.0.0.1, not a listed balancer: no header is read
    // from it, and its requests are served as they come.
    assert_eq!(wrong_admin_login(&server, &[]).await, 401);
    let failed = audited(&server, &admin, "login.failed").await;
    assert_eq!(failed[0]["remote_addr"], json!("127.0.0.1"), "{failed}");
    assert_eq!(
        metric(
            &server.metrics().await,
            "wardline_http_proxy_headers_refused_total"
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_passwords_slow_the_login_down() {
    let server = TestServer::start().await;
    let attempt = |password: String| {
        server
            .client
            .post(server.url("/api/v1/auth/login"))
            .json(&json!({"username": "admin", "password": password}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(
            attempt("wrong wrong wrong".into()).await.unwrap().status(),
            401
        );
    }
    // The account must wait now: even the right password is refused until then.
    let held = attempt(server.admin_password.clone()).await.unwrap();
    assert_eq!(held.status(), 429);
    let retry_after: u64 = held.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let body: Value = held.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("too_many_attempts"));
    // A wait, not a lockout: after it, the right password (with the second factor's
    // code) logs in.
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    let code = server.admin_code().await;
    let logged_in = server
        .client
        .post(server.url("/api/v1/auth/login"))
        .json(
            &json!({"username": "admin", "password": server.admin_password, "one_time_code": code}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(logged_in.status(), 200);
}

/// Over HTTPS every answer, the API's and the web app's, tells the browser to use
/// nothing but TLS for this host (HSTS), and the API's answers are not cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_answers_pin_tls_and_api_answers_are_not_cached() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let api = server
        .get(
            &ward.clinician,
            &format!("/api/v1/patients/{}/observations/latest", ward.patient_id),
        )
        .await;
    assert_eq!(api.status(), 200);
    let page = server.client.get(server.url("/")).send().await.unwrap();
    for (what, response) in [("API", &api), ("web app", &page)] {
        assert_eq!(
            response
                .headers()
                .get("strict-transport-security")
                .and_then(|value| value.to_str().ok()),
            Some("max-age=31536000"),
            "{what}"
        );
    }
    assert_eq!(
        api.headers()
            .get("cache-control")
            .and_then(|value| value.to_str().ok()),
        Some("no-store")
    );
}

/// The first administrator's password is never printed: it is in an owner-only file in
/// the keys folder, the account can do nothing but change it at the first login, and the
/// file is gone at the first start after the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_administrators_password_is_in_an_owner_only_file_and_must_be_changed() {
    use std::os::unix::fs::PermissionsExt;

    let mut server = TestServer::start_first(&[]);
    let file = server.first_admin_password_file();
    let mode = std::fs::metadata(&file)
        .expect("the password file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "readable by the server's user only");
    let first = server.login("admin", &server.admin_password).await;
    let refused = server.get(&first, "/api/v1/users").await;
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("password_change_required"));
    // A restart before the change keeps the file: the password is still the one in it.
    server.kill_hard();
    server.restart();
    assert!(
        std::fs::exists(&file).unwrap(),
        "kept until the password changes"
    );
    let first = server.login("admin", &server.admin_password).await;
    let changed = server
        .post(
            &first,
            "/api/v1/me/password",
            json!({"current_password": server.admin_password, "new_password": "tall cedar by the north gate"}),
        )
        .await;
    assert_eq!(changed.status(), 204);
    // An administrator logs in with a second factor: nothing else until it is set up.
    let refused = server.get(&first, "/api/v1/users").await;
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("second_factor_setup_required"));
    server.set_up_second_factor(&first).await;
    assert_eq!(server.get(&first, "/api/v1/users").await.status(), 200);
    server.kill_hard();
    server.restart();
    assert!(
        !std::fs::exists(&file).unwrap(),
        "removed at the first start after the change"
    );
}

/// The last administrator loses their phone: the operator removes the second factor from
/// the command line (audited), the password alone then logs in, and the account must set
/// up a new second factor before anything else; the old authenticator's codes are not
/// needed and open nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_resets_the_last_administrators_second_factor() {
    let mut server = TestServer::start().await;
    let refused = server
        .client
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": server.admin_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("second_factor_required"));

    server.kill_hard();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wardline"))
        .args(["admin", "--data-dir"])
        .arg(server.data.path().join("server"))
        .arg("reset-second-factor")
        .args(["--username", "admin"])
        .output()
        .expect("run wardline admin reset-second-factor");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    server.restart();

    let session = server.login("admin", &server.admin_password).await;
    let held = server.get(&session, "/api/v1/devices").await;
    assert_eq!(held.status(), 403);
    let body: Value = held.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("second_factor_setup_required"));
    server.set_up_second_factor(&session).await;
    let audit: Value = server
        .get(&session, "/api/v1/audit?limit=50")
        .await
        .json()
        .await
        .unwrap();
    let reset = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["action"] == json!("users.reset_second_factor"))
        .expect("the reset is audited");
    assert_eq!(reset["outcome"], json!("allowed"));
}
