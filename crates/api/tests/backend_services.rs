//! SMART Backend Services over the API: an administrator registers a hospital's system
//! with its public key; the system signs its assertion (ES384, here with ring, apart from
//! the verifier's JWT library), gets an access token, and bulk exports its care team's
//! patients with it; every way an assertion can be wrong is refused, and the client's
//! token does nothing but export.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::BodyExt;
use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use tower::ServiceExt;
use wardline_service::ServiceSettings;
use wardline_service::bulk_export::BulkExportSettings;

use crate::common::{Hospital, hospital_with};
use crate::fhir::{ada_vitals, validate};

/// A client's key pair: what it keeps (to sign) and the public JWK it registers.
struct ClientKey {
    pair: EcdsaKeyPair,
    kid: String,
}

impl ClientKey {
    fn generate(kid: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Self {
            pair,
            kid: kid.to_owned(),
        }
    }

    /// The public key as a JWK: the uncompressed point's two coordinates.
    fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        assert_eq!(point.len(), 97);
        json!({"kty": "EC", "crv": "P-384", "kid": self.kid, "use": "sig", "alg": "ES384",
               "x": URL_SAFE_NO_PAD.encode(&point[1..49]),
               "y": URL_SAFE_NO_PAD.encode(&point[49..])})
    }

    /// A JWS (compact) of `claims`, signed ES384 under `kid`.
    fn sign(&self, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": "ES384", "typ": "JWT", "kid": kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

fn settings(folder: &std::path::Path) -> ServiceSettings {
    ServiceSettings {
        bulk_exports: BulkExportSettings {
            directory: Some(folder.to_path_buf()),
            ..BulkExportSettings::default()
        },
        ..ServiceSettings::default()
    }
}

async fn send(h: &Hospital, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = h.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, body)
}

/// Posts the token form.
async fn token_request(h: &Hospital, fields: &[(&str, &str)]) -> (StatusCode, Value) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let (status, _, answer) = send(
        h,
        Request::builder()
            .method(Method::POST)
            .uri("/api/v1/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap(),
    )
    .await;
    (status, answer)
}

/// The assertion's claims: `iss` and `sub` the client, `aud` the endpoint, five minutes.
fn claims(client: &str, audience: &str) -> Value {
    json!({"iss": client, "sub": client, "aud": audience,
           "exp": chrono::Utc::now().timestamp() + 240,
           "jti": uuid::Uuid::new_v4().to_string()})
}

async fn token_with(h: &Hospital, assertion: &str, scope: &str) -> (StatusCode, Value) {
    token_request(
        h,
        &[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ],
    )
    .await
}

async fn get(
    h: &Hospital,
    token: &str,
    path: &str,
    prefer: bool,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("authorization", format!("Bearer {token}"));
    if prefer {
        request = request.header("prefer", "respond-async");
    }
    send(h, request.body(Body::empty()).unwrap()).await
}

async fn register(h: &Hospital, name: &str, key: &ClientKey, teams: &[&str]) -> String {
    let (status, client) = h
        .as_(
            "admin",
            Method::POST,
            "/api/v1/backend-clients",
            Some(json!({"name": name, "jwks": {"keys": [key.jwk()]}, "care_team_ids": teams})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    client["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_registered_system_exports_its_care_teams_patients_with_a_signed_assertion() {
    let folder = tempfile::tempdir().unwrap();
    let h = hospital_with(settings(folder.path())).await;
    ada_vitals(&h, 5).await;

    // The SMART configuration says where and how.
    let (status, _, configuration) = send(
        &h,
        Request::builder()
            .uri("/fhir/R4/.well-known/smart-configuration")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        configuration["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );
    assert_eq!(
        configuration["grant_types_supported"],
        json!(["client_credentials"])
    );
    let endpoint = configuration["token_endpoint"].as_str().unwrap().to_owned();
    assert!(endpoint.ends_with("/api/v1/oauth/token"));

    // Only an administrator registers, and only public keys of the right kind.
    let key = ClientKey::generate("engine-2026");
    let (status, _) = h
        .as_(
            "clinician",
            Method::POST,
            "/api/v1/backend-clients",
            Some(json!({"name": "x", "jwks": {"keys": [key.jwk()]}, "care_team_ids": [h.team]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, refused) = h
        .as_(
            "admin",
            Method::POST,
            "/api/v1/backend-clients",
            Some(
                json!({"name": "x", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "a"}]},
                        "care_team_ids": [h.team]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"]["field"], "jwks.keys[0].kty");
    let client = register(&h, "Ward 7 integration engine", &key, &[&h.team]).await;
    let (_, listed) = h
        .as_("admin", Method::GET, "/api/v1/backend-clients", None)
        .await;
    assert_eq!(listed[0]["id"], client.as_str());
    assert_eq!(listed[0]["jwks"]["keys"][0]["kid"], "engine-2026");

    // A token for a signed assertion.
    let (status, issued) = token_with(
        &h,
        &key.sign(&key.kid, &claims(&client, &endpoint)),
        "system/*.rs",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert_eq!(issued["token_type"], "bearer");
    assert_eq!(issued["expires_in"], 300);
    assert_eq!(issued["scope"], "system/*.rs");
    let token = issued["access_token"].as_str().unwrap().to_owned();

    // With it, the care team's export: kick-off, status, every file.
    let (status, headers, body) = get(
        &h,
        &token,
        &format!("/fhir/R4/Group/{}/$export", h.team),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let status_path = headers["content-location"].to_str().unwrap().to_owned();
    while h.service.run_one_bulk_export().await.unwrap() {}
    let (status, _, manifest) = get(&h, &token, &status_path, false).await;
    assert_eq!(status, StatusCode::OK, "{manifest}");
    let mut resources = Vec::new();
    for output in manifest["output"].as_array().unwrap() {
        let url = output["url"].as_str().unwrap();
        let (status, _, body) = get(&h, &token, url, false).await;
        assert_eq!(status, StatusCode::OK);
        // A file of one line reads as one JSON document.
        match body {
            Value::String(text) => resources.extend(
                text.lines()
                    .map(|line| serde_json::from_str::<Value>(line).unwrap()),
            ),
            one => resources.push(one),
        }
    }
    validate(&resources);
    let observations: Vec<&Value> = resources
        .iter()
        .filter(|resource| resource["resourceType"] == "Observation")
        .collect();
    assert_eq!(observations.len(), 6, "Ada's five heart rates and her SpO2");
    assert!(
        observations
            .iter()
            .all(|observation| observation["subject"]["reference"] == format!("Patient/{}", h.ada))
    );
    // A person cannot follow the client's export.
    let (status, _, _) = get(&h, &h.tokens["clinician"], &status_path, false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The token exports and does nothing else.
    let (status, _, _) = get(
        &h,
        &token,
        &format!("/fhir/R4/Observation?patient={}&code=8867-4", h.ada),
        false,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = get(&h, &token, "/api/v1/patients", false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A token of narrower scopes exports only those types.
    let (status, narrow) = token_with(
        &h,
        &key.sign(&key.kid, &claims(&client, &endpoint)),
        "system/Patient.rs patient/*.rs system/Observation.write",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{narrow}");
    assert_eq!(narrow["scope"], "system/Patient.rs");
    let narrow = narrow["access_token"].as_str().unwrap().to_owned();
    let (status, _, body) = get(&h, &narrow, "/fhir/R4/$export?_type=Observation", true).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["issue"][0]["expression"][0], "_type");
    let (status, headers, _) = get(&h, &narrow, "/fhir/R4/$export", true).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let status_path = headers["content-location"].to_str().unwrap().to_owned();
    while h.service.run_one_bulk_export().await.unwrap() {}
    let (_, _, manifest) = get(&h, &narrow, &status_path, false).await;
    let types: Vec<&str> = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|output| output["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Patient"]);

    // A client of another care team cannot export this one's.
    let (status, other_team) = h
        .as_(
            "admin",
            Method::POST,
            "/api/v1/care-teams",
            Some(json!({"name": "Ward 9"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{other_team}");
    let other_key = ClientKey::generate("other");
    let other = register(
        &h,
        "Ward 9 engine",
        &other_key,
        &[other_team["id"].as_str().unwrap()],
    )
    .await;
    let (_, issued) = token_with(
        &h,
        &other_key.sign("other", &claims(&other, &endpoint)),
        "system/*.rs",
    )
    .await;
    let other_token = issued["access_token"].as_str().unwrap().to_owned();
    let (status, _, _) = get(
        &h,
        &other_token,
        &format!("/fhir/R4/Group/{}/$export", h.team),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = get(&h, &other_token, &status_path, false).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another client's export does not exist for it"
    );

    // Revoked: the tokens end at once, and no new one is given.
    let (status, _) = h
        .as_(
            "admin",
            Method::DELETE,
            &format!("/api/v1/backend-clients/{client}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = get(&h, &token, "/fhir/R4/$export", true).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, refused) = token_with(
        &h,
        &key.sign(&key.kid, &claims(&client, &endpoint)),
        "system/*.rs",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused["error"], "invalid_client");
}

#[tokio::test]
async fn an_assertion_that_is_not_right_in_every_way_gets_no_token() {
    let folder = tempfile::tempdir().unwrap();
    let h = hospital_with(settings(folder.path())).await;
    let key = ClientKey::generate("k1");
    let client = register(&h, "Engine", &key, &[&h.team]).await;
    let endpoint = "/api/v1/oauth/token";
    let good = claims(&client, endpoint);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = claims(&client, endpoint);
        change(&mut claims);
        claims
    };
    let impostor = ClientKey::generate("k1");
    let now = chrono::Utc::now().timestamp();
    let cases: Vec<(&str, String)> = vec![
        (
            "another key under the client's kid",
            impostor.sign("k1", &good),
        ),
        ("a kid the client did not register", key.sign("k2", &good)),
        (
            "another audience",
            key.sign(
                "k1",
                &with(&|c| c["aud"] = json!("https://elsewhere/token")),
            ),
        ),
        (
            "another subject",
            key.sign("k1", &with(&|c| c["sub"] = json!("cl_someone"))),
        ),
        (
            "expired",
            key.sign("k1", &with(&|c| c["exp"] = json!(now - 120))),
        ),
        (
            "more than five minutes ahead",
            key.sign("k1", &with(&|c| c["exp"] = json!(now + 3600))),
        ),
        (
            "no jti",
            key.sign(
                "k1",
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("jti");
                }),
            ),
        ),
        (
            "an unknown client",
            key.sign(
                "k1",
                &with(&|c| {
                    c["iss"] = json!("cl_nobody");
                    c["sub"] = json!("cl_nobody");
                }),
            ),
        ),
        ("not a JWT", "not.a.jwt".to_owned()),
    ];
    for (what, assertion) in &cases {
        let (status, answer) = token_with(&h, assertion, "system/*.rs").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {answer}");
        assert_eq!(answer["error"], "invalid_client", "{what}");
    }
    // The good one works once; the same assertion again is a replay.
    let assertion = key.sign("k1", &good);
    let (status, answer) = token_with(&h, &assertion, "system/*.rs").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = token_with(&h, &assertion, "system/*.rs").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a replayed assertion: {answer}"
    );

    // The form's other fields, each named.
    let fresh = || key.sign("k1", &claims(&client, endpoint));
    let (status, answer) = token_with(&h, &fresh(), "patient/*.rs user/*.rs").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    let assertion = fresh();
    let (status, answer) = token_request(
        &h,
        &[
            ("grant_type", "password"),
            ("scope", "system/*.rs"),
            ("client_assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let (status, answer) = token_request(&h, &[("grant_type", "client_credentials")]).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, _, _) = send(
        &h,
        Request::builder()
            .method(Method::POST)
            .uri("/api/v1/oauth/token")
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Each refusal of the registered client is in the audit trail, with its reason.
    let (_, audit) = h
        .as_(
            "admin",
            Method::GET,
            "/api/v1/audit?action=backend_clients.token&limit=100",
            None,
        )
        .await;
    let reasons: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["outcome"] == "denied")
        .map(|entry| entry["detail"].as_str().unwrap())
        .collect();
    for reason in [
        "the assertion's signature does not verify",
        "no key of the client has that kid",
        "the assertion's aud is not this token endpoint",
        "the assertion has expired",
        "the assertion was used before (its jti)",
    ] {
        assert!(reasons.contains(&reason), "{reason} in {reasons:?}");
    }
}
