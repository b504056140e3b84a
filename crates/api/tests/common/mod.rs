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
    _folder: tempfile::TempDir,
}

pub async fn hospital() -> Hospital {
    hospital_with(ServiceSettings::default()).await
}

/// [`hospital`] with other service settings (a short session lifetime, say).
pub async fn hospital_with(settings: ServiceSettings) -> Hospital {
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
    let service = Wardline::new(store, settings).with_alarms(alarms);
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
        _folder: folder,
    };
    for (name, _, _) in accounts {
        let (status, body) = hospital
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"username": name, "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{name} logs in: {body}");
        hospital
            .tokens
            .insert(name, body["token"].as_str().unwrap().to_owned());
    }
    hospital
}

impl Hospital {
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
