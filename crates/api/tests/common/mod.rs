//! The API in-process: the real router over a real SQLite file, the service layer and a
//! running alarm engine, called with `tower::ServiceExt::oneshot` (no sockets, no TLS:
//! what those add is tested against the binary).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wardline_api::{ApiSettings, AppState};
use wardline_domain::{PatientId, Role};
use wardline_service::people::{NewAccount, PatientDetails};
use wardline_service::{Actor, ServiceSettings, Wardline};
use wardline_store::Store;
use wardline_store::sqlite::{SqliteOptions, SqliteStore};

pub const PASSWORD: &str = "correct horse battery staple";

/// A hospital in miniature: a care team with a clinician and a nurse looking after Ada;
/// Bob on no team; an admin on no team; and Ada's and Bob's own accounts.
pub struct Hospital {
    pub app: Router,
    pub service: Wardline,
    pub ada: PatientId,
    pub bob: PatientId,
    pub team: String,
    pub tokens: std::collections::HashMap<&'static str, String>,
    /// The admin's second-factor secret (base 32), as its authenticator app holds it.
    pub admin_second_factor: Option<String>,
    _folder: tempfile::TempDir,
}

pub async fn hospital() -> Hospital {
    hospital_with(ServiceSettings::default()).await
}

/// [`hospital`] with other service settings (a short session lifetime, say).
pub async fn hospital_with(settings: ServiceSettings) -> Hospital {
    hospital_with_clock(settings, Arc::new(wardline_alarms::SystemClock)).await
}

/// [`hospital`] whose service judges expiries (sessions, emergency access, shares) by
/// `clock`, which the test moves.
pub async fn hospital_with_clock(
    settings: ServiceSettings,
    clock: Arc<dyn wardline_alarms::Clock>,
) -> Hospital {
    let folder = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(SqliteOptions::new(
            folder.path().join("wardline.db"),
            wardline_store::AuditKey::generate().unwrap(),
        ))
        .await
        .unwrap(),
    );
    let sealer = Arc::new(
        wardline_alarms::Sealer::from_key(&wardline_alarms::Sealer::generate_key().unwrap())
            .unwrap(),
    );
    let (alarms, _) = wardline_alarms::AlarmService::start(
        Arc::clone(&store),
        wardline_alarms::AlarmSettings::default(),
        sealer,
        Arc::new(wardline_alarms::SystemClock),
    )
    .await
    .unwrap();
    let device_ca = wardline_service::device_certificates::DeviceCa::generate().unwrap();
    // The live feed reads committed readings from the store, as the server's does, so
    // streams carry real events.
    let (live, _live_task) = wardline_service::LiveFeed::start(Arc::clone(&store), 1024);
    let service = Wardline::new(store, settings)
        .with_live(live)
        .with_clock(clock)
        .with_alarms(alarms)
        .with_device_ca(Arc::new(
            wardline_service::device_certificates::DeviceCa::load(
                &device_ca.certificate_pem,
                &device_ca.key_pem,
            )
            .unwrap(),
        ));
    let cli = Actor::CommandLine;
    let patient = |name: &str| PatientDetails {
        display_name: name.into(),
        birth_date: None,
        mrn: None,
    };
    let ada = service
        .create_patient(&cli, patient("Ada"))
        .await
        .unwrap()
        .id;
    let bob = service
        .create_patient(&cli, patient("Bob"))
        .await
        .unwrap()
        .id;
    let team = service.create_care_team(&cli, "Ward 7").await.unwrap();
    service
        .add_care_team_patient(&cli, team.id, ada)
        .await
        .unwrap();
    let accounts = [
        ("admin", Role::Admin, None),
        ("clinician", Role::Clinician, None),
        ("nurse", Role::Nurse, None),
        ("outsider", Role::Clinician, None),
        // A specialist with whom nobody has shared anything.
        ("specialist", Role::Specialist, None),
        ("ada", Role::Patient, Some(ada)),
        ("bob", Role::Patient, Some(bob)),
    ];
    for (name, role, patient_id) in accounts {
        let user = service
            .create_user(
                &cli,
                NewAccount {
                    username: name.into(),
                    display_name: name.to_uppercase(),
                    role,
                    password: Some(PASSWORD.into()),
                    patient_id,
                    password_change_required: None,
                },
            )
            .await
            .unwrap()
            .user;
        if matches!(name, "clinician" | "nurse") {
            service
                .add_care_team_member(&cli, team.id, user.id)
                .await
                .unwrap();
        }
    }
    let app = wardline_api::router(AppState {
        service: service.clone(),
        settings: Arc::new(ApiSettings {
            secure_cookies: false,
            ..ApiSettings::default()
        }),
        metrics: Some(Arc::new(|| {
            "# HELP up Whether the server is up.\n# TYPE up gauge\nup 1\n".to_owned()
        })),
    });
    let mut hospital = Hospital {
        app,
        service,
        ada,
        bob,
        team: team.id.to_string(),
        tokens: std::collections::HashMap::new(),
        admin_second_factor: None,
        _folder: folder,
    };
    for (name, _, _) in accounts {
        let token = hospital.login(name).await;
        hospital.tokens.insert(name, token);
    }
    // Administrators must have a second factor before they may do anything else: the
    // admin sets one up from the session just opened, which then serves.
    let admin = hospital.tokens["admin"].clone();
    let secret = hospital.set_up_second_factor(&admin).await;
    hospital.admin_second_factor = Some(secret);
    hospital
}

fn uuid_suffix() -> String {
    wardline_domain::UserId::random().to_string()[..8].to_owned()
}

/// The current six-digit code of a base-32 TOTP secret (RFC 6238 with SHA-1, as
/// authenticator apps compute it), `steps` 30-second steps from now.
pub fn one_time_code(secret: &str, steps: i64) -> String {
    let totp = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(secret).unwrap())
        .build()
        .unwrap();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    totp.generate(u64::try_from(now + steps * 30).unwrap())
        .to_string()
}

impl Hospital {
    /// A new session of an account with [`PASSWORD`] (and no second factor): its token.
    pub async fn login(&self, username: &str) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"username": username, "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{username} logs in: {body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// An account with [`PASSWORD`], created from the command line (so no password change
    /// is due).
    pub async fn add_account(&self, username: &str, role: Role) {
        self.service
            .create_user(
                &Actor::CommandLine,
                NewAccount {
                    username: username.into(),
                    display_name: format!("{role:?} {username}"),
                    role,
                    password: Some(PASSWORD.into()),
                    patient_id: None,
                    password_change_required: Some(false),
                },
            )
            .await
            .unwrap();
    }

    /// A session of a new administrator, with a second factor set up: for a test that
    /// needs an admin after the hospital's own admin session may have ended (a second
    /// login of the same admin would need the authenticator's next code).
    pub async fn fresh_admin(&self) -> String {
        let username = format!("admin-{}", &uuid_suffix());
        self.add_account(&username, Role::Admin).await;
        let token = self.login(&username).await;
        self.set_up_second_factor(&token).await;
        token
    }

    /// Sets up a second factor for the session's account, confirming it with the
    /// authenticator app's current code (a login then takes the next one: each code is
    /// good once): returns its secret.
    pub async fn set_up_second_factor(&self, token: &str) -> String {
        let (status, setup) = self
            .call(Method::POST, "/api/v1/me/second-factor", Some(token), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{setup}");
        let secret = setup["secret"].as_str().unwrap().to_owned();
        let (status, account) = self
            .call(
                Method::POST,
                "/api/v1/me/second-factor/confirm",
                Some(token),
                Some(json!({"one_time_code": one_time_code(&secret, 0)})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{account}");
        assert_eq!(account["second_factor"], true);
        secret
    }

    /// One request through the router: `(status, JSON body or Null)`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        self.send(request).await
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, body)
    }

    /// A CGM enrolled for Ada by the admin: `(device id, secret)`.
    pub async fn ada_cgm(&self) -> (String, String) {
        let (status, enrolled) = self
            .as_(
                "admin",
                Method::POST,
                "/api/v1/devices",
                Some(json!({"kind": "cgm", "model": "G7", "serial": "1", "patient_id": self.ada})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{enrolled}");
        (
            enrolled["device"]["id"].as_str().unwrap().to_owned(),
            enrolled["secret"].as_str().unwrap().to_owned(),
        )
    }

    /// A CGM of Ada's assigned to her since `from` (so that it may send readings of that
    /// past): `(device id, secret)`.
    pub async fn ada_cgm_since(&self, from: chrono::DateTime<chrono::Utc>) -> (String, String) {
        let (status, enrolled) = self
            .as_(
                "admin",
                Method::POST,
                "/api/v1/devices",
                Some(json!({"kind": "cgm", "model": "G7", "serial": format!("since-{from}")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{enrolled}");
        let device = enrolled["device"]["id"].as_str().unwrap().to_owned();
        let (status, body) = self
            .as_(
                "admin",
                Method::POST,
                &format!("/api/v1/devices/{device}/assignments"),
                Some(json!({"patient_id": self.ada, "from": from})),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        (device, enrolled["secret"].as_str().unwrap().to_owned())
    }

    /// A documented path with its parameters filled in: Ada, her care team, and ids of
    /// things that do not exist.
    pub fn concrete(&self, path: &str) -> String {
        path.replace("{patient_id}", &self.ada.to_string())
            .replace("{team_id}", &self.team)
            .replace("{user_id}", &wardline_domain::UserId::random().to_string())
            .replace("{device_id}", "dev_0000000000000000")
            .replace("{gateway_id}", "gw-0000")
            .replace("{alarm_id}", "0123abcd")
            .replace("{channel_id}", "ch_0")
            .replace("{notification_id}", "1")
            .replace("{share_id}", "00000000-0000-4000-8000-000000000000")
            .replace("{site}", "0000000000000000")
            .replace("{resource}", "entries")
            .replace("{part}", "current")
            .replace("{collection}", "treatments")
            .replace("{template_id}", "00000000000000000000000000000000")
            .replace("{visit_id}", "00000000-0000-4000-8000-000000000000")
    }

    /// A request as `who` (a key of `tokens`, or `anonymous`).
    pub async fn as_(
        &self,
        who: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = self.tokens.get(who).map(String::as_str);
        self.call(method, path, token, body).await
    }
}
