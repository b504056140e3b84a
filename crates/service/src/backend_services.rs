//! SMART Backend Services (docs/fhir.md, "System-to-system access"): a hospital's
//! integration engine, registered by an administrator with its public keys (a JSON Web
//! Key Set) and the care teams it serves, gets an access token for minutes by signing an
//! assertion with its private key (`client_credentials` with `private_key_jwt`, RS384 or
//! ES384), and with it bulk exports those teams' patients. No secret of the client's is
//! ever held here; a token is kept as its hash; each assertion is taken once.

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use wardline_domain::CareTeamId;
use wardline_store::{BackendClient, NewBackendClient};

use crate::Wardline;
use crate::actor::{Actor, BackendCaller};
use crate::bulk_export::EXPORT_TYPES;
use crate::credentials::token_hash;
use crate::error::Error;

/// How long an access token lives.
pub const TOKEN_LIFETIME: Duration = Duration::minutes(5);
/// The furthest in the future an assertion may expire (SMART: five minutes).
pub const ASSERTION_LIFETIME: Duration = Duration::minutes(5);
/// Clock difference allowed between the client and Wardline.
const LEEWAY_SECONDS: i64 = 30;
/// Access tokens of backend clients begin with this, session tokens with another.
pub const CLIENT_TOKEN_PREFIX: &str = "wbt_";
/// What `client_assertion_type` must say.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Keys one client may register.
const MAX_KEYS: usize = 10;
/// Care teams one client may serve.
const MAX_TEAMS: usize = 100;

/// A client as an administrator registers it.
#[derive(Debug, Clone)]
pub struct ClientRegistration {
    pub name: String,
    /// Its public keys: a JSON Web Key Set.
    pub jwks: serde_json::Value,
    pub care_teams: Vec<CareTeamId>,
}

/// What a client sends to the token endpoint (form-encoded).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

/// An access token given to a client.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: i64,
    /// The scopes granted, space-separated.
    pub scope: String,
}

/// The claims of a client's assertion this reads.
#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: i64,
    jti: String,
}

/// The public keys of a registered key set, each usable, or the first problem found.
fn read_key_set(jwks: &serde_json::Value) -> Result<JwkSet, Error> {
    let set: JwkSet = serde_json::from_value(jwks.clone()).map_err(|error| {
        Error::invalid(
            "jwks",
            format!("is not a JSON Web Key Set of RSA or EC public keys: {error}"),
        )
    })?;
    if set.keys.is_empty() || set.keys.len() > MAX_KEYS {
        return Err(Error::invalid(
            "jwks.keys",
            format!("must hold 1 to {MAX_KEYS} keys"),
        ));
    }
    let mut kids = Vec::new();
    for (index, key) in set.keys.iter().enumerate() {
        let field = |name: &str| format!("jwks.keys[{index}].{name}");
        let kid = key
            .common
            .key_id
            .as_deref()
            .filter(|kid| !kid.is_empty() && kid.len() <= 200)
            .ok_or_else(|| {
                Error::invalid(
                    field("kid"),
                    "every key needs a kid (1 to 200 characters): assertions name their key by it",
                )
            })?;
        if kids.contains(&kid) {
            return Err(Error::invalid(
                field("kid"),
                format!("{kid:?} names two keys"),
            ));
        }
        kids.push(kid);
        match (&key.algorithm, key.common.key_algorithm) {
            (AlgorithmParameters::RSA(rsa), None | Some(KeyAlgorithm::RS384)) => {
                let modulus = base64::Engine::decode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    rsa.n.trim_end_matches('='),
                )
                .map_err(|_| Error::invalid(field("n"), "is not base64url"))?;
                let bits = modulus.iter().skip_while(|byte| **byte == 0).count() * 8;
                if bits < 2048 {
                    return Err(Error::invalid(
                        field("n"),
                        format!("an RSA key of {bits} bits; at least 2048 are needed"),
                    ));
                }
            }
            (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES384))
                if ec.curve == EllipticCurve::P384 => {}
            (AlgorithmParameters::EllipticCurve(_), None | Some(KeyAlgorithm::ES384)) => {
                return Err(Error::invalid(
                    field("crv"),
                    "ES384 keys are on P-384, the curve SMART Backend Services names",
                ));
            }
            (AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_), Some(_)) => {
                return Err(Error::invalid(
                    field("alg"),
                    "RS384 (RSA) or ES384 (EC P-384) only",
                ));
            }
            _ => {
                return Err(Error::invalid(
                    field("kty"),
                    "a public RSA or EC key only (no symmetric or private keys)",
                ));
            }
        }
        DecodingKey::from_jwk(key)
            .map_err(|error| Error::invalid(field("kty"), format!("is not usable: {error}")))?;
    }
    Ok(set)
}

/// The resource types a set of requested scopes lets a client read, and the scopes
/// granted: `system/[type or *].[read | rs | r | s]` for the types Wardline exports.
/// Anything else (writes, patient or user scopes, other types) is not granted.
pub fn granted_scopes(requested: &str) -> (Vec<String>, Vec<String>) {
    let mut types = Vec::new();
    let mut granted = Vec::new();
    for scope in requested.split_whitespace() {
        let Some(rest) = scope.strip_prefix("system/") else {
            continue;
        };
        let Some((resource, permission)) = rest.split_once('.') else {
            continue;
        };
        let reads = permission == "read"
            || (!permission.is_empty() && permission.chars().all(|c| c == 'r' || c == 's'));
        let known = resource == "*" || EXPORT_TYPES.contains(&resource);
        if reads && known {
            if !types.iter().any(|listed| listed == resource) {
                types.push(resource.to_owned());
            }
            granted.push(scope.to_owned());
        }
    }
    (types, granted)
}

fn invalid_client(why: &str) -> Error {
    tracing::info!(reason = why, "a backend client's assertion was refused");
    Error::Unauthenticated
}

impl Wardline {
    /// Registers a backend client (administrators): its keys are checked to be public
    /// RS384 or ES384 keys, each with its `kid`, its care teams to exist. Audited.
    pub async fn register_backend_client(
        &self,
        actor: &Actor,
        registration: ClientRegistration,
    ) -> Result<BackendClient, Error> {
        let name = registration.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(Error::invalid("name", "1 to 200 characters"));
        }
        read_key_set(&registration.jwks)?;
        let mut teams = registration.care_teams;
        teams.sort_by_key(ToString::to_string);
        teams.dedup();
        if teams.is_empty() || teams.len() > MAX_TEAMS {
            return Err(Error::invalid(
                "care_team_ids",
                format!("1 to {MAX_TEAMS} care teams whose patients the client may export"),
            ));
        }
        let mut id_bytes = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id_bytes)
            .map_err(|_| Error::Internal("no randomness".into()))?;
        let id = format!("cl_{}", hex::encode(id_bytes));
        let detail = format!(
            "{name}: care teams {}",
            teams
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        let allowed = self
            .require_admin(actor, "backend_clients.register", None, Some(detail))
            .await?;
        let client = self
            .store
            .create_backend_client(
                NewBackendClient {
                    id,
                    name,
                    jwks: registration.jwks.to_string(),
                    care_teams: teams,
                    created: self.now(),
                    created_by: actor.user_id(),
                },
                allowed.audit,
            )
            .await?;
        Ok(client)
    }

    /// Every registered client (administrators).
    pub async fn backend_clients(&self, actor: &Actor) -> Result<Vec<BackendClient>, Error> {
        self.require_admin(actor, "backend_clients.list", None, None)
            .await?;
        Ok(self.store.backend_clients().await?)
    }

    /// Revokes a client (administrators): no token from then on, and its tokens end at
    /// once. Audited.
    pub async fn revoke_backend_client(&self, actor: &Actor, id: &str) -> Result<(), Error> {
        let allowed = self
            .require_admin(actor, "backend_clients.revoke", None, Some(id.to_owned()))
            .await?;
        let revoked = self
            .store
            .revoke_backend_client(id, self.now(), allowed.audit)
            .await?;
        if revoked {
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "backend client {id} (or revoked already)"
            )))
        }
    }

    /// The token endpoint: a client's signed assertion (`private_key_jwt`) for an access
    /// token. `token_endpoint` is this endpoint's URL, which the assertion's `aud` must be.
    /// A client that is not registered, revoked, or whose assertion does not verify, has
    /// expired, lives longer than five minutes or was used before, is refused as
    /// unauthenticated (each refusal of a registered client audited).
    pub async fn backend_token(
        &self,
        request: TokenRequest,
        token_endpoint: &str,
        remote_addr: Option<String>,
    ) -> Result<IssuedToken, Error> {
        if request.grant_type.as_deref() != Some("client_credentials") {
            return Err(Error::invalid(
                "grant_type",
                "must be client_credentials (SMART Backend Services)",
            ));
        }
        if request.client_assertion_type.as_deref() != Some(JWT_BEARER) {
            return Err(Error::invalid(
                "client_assertion_type",
                format!("must be {JWT_BEARER}"),
            ));
        }
        let assertion = request
            .client_assertion
            .as_deref()
            .filter(|assertion| !assertion.is_empty() && assertion.len() <= 16 * 1024)
            .ok_or_else(|| {
                Error::invalid(
                    "client_assertion",
                    "required: the signed JWT, at most 16 KiB",
                )
            })?;
        let requested = request
            .scope
            .as_deref()
            .filter(|scope| !scope.trim().is_empty())
            .ok_or_else(|| Error::invalid("scope", "required, as system/*.rs"))?;
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|_| invalid_client("the assertion is not a JWT"))?;
        if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
            return Err(invalid_client(
                "the assertion is not signed with RS384 or ES384",
            ));
        }
        // The client is named inside the assertion; which key verifies it depends on
        // the client, so its issuer is read before the signature is checked, and
        // trusted only once it is.
        let issuer = unverified_issuer(assertion)
            .ok_or_else(|| invalid_client("the assertion names no issuer"))?;
        let Some(client) = self.store.backend_client(&issuer).await? else {
            return Err(invalid_client("no such client"));
        };
        let caller = Actor::Client(BackendCaller {
            client_id: client.id.clone(),
            name: client.name.clone(),
            care_teams: client.care_teams.clone(),
            readable: Vec::new(),
            remote_addr,
        });
        match self
            .verify_assertion(&client, assertion, &header, token_endpoint)
            .await
        {
            Ok(()) => {}
            Err(reason) => {
                self.audit(caller.audit(
                    "backend_clients.token",
                    None,
                    wardline_store::AuditOutcome::Denied,
                    Some(reason.to_owned()),
                    self.now(),
                ))
                .await?;
                return Err(invalid_client(reason));
            }
        }
        let (_, granted) = granted_scopes(requested);
        if granted.is_empty() {
            return Err(Error::invalid(
                "scope",
                format!(
                    "grants nothing: a backend client reads by system scopes of the types \
                     Wardline exports (system/*.rs, system/Observation.rs; {})",
                    EXPORT_TYPES.join(", ")
                ),
            ));
        }
        let scope = granted.join(" ");
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| Error::Internal("no randomness".into()))?;
        let access_token = format!(
            "{CLIENT_TOKEN_PREFIX}{}",
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
        );
        let now = self.now();
        self.store
            .create_client_token(
                token_hash(&access_token),
                &client.id,
                scope.clone(),
                now + TOKEN_LIFETIME,
                caller.audit(
                    "backend_clients.token",
                    None,
                    wardline_store::AuditOutcome::Allowed,
                    Some(scope.clone()),
                    now,
                ),
            )
            .await?;
        Ok(IssuedToken {
            access_token,
            expires_in: TOKEN_LIFETIME.num_seconds(),
            scope,
        })
    }

    /// Checks a registered client's assertion; the reason it is refused otherwise.
    async fn verify_assertion(
        &self,
        client: &BackendClient,
        assertion: &str,
        header: &jsonwebtoken::Header,
        token_endpoint: &str,
    ) -> Result<(), &'static str> {
        if client.revoked.is_some() {
            return Err("the client is revoked");
        }
        let jwks: serde_json::Value =
            serde_json::from_str(&client.jwks).map_err(|_| "the client's keys are unreadable")?;
        let set = read_key_set(&jwks).map_err(|_| "the client's keys are unreadable")?;
        let kid = header
            .kid
            .as_deref()
            .ok_or("the assertion names no key (kid)")?;
        let key: &Jwk = set.find(kid).ok_or("no key of the client has that kid")?;
        let expected = match key.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS384,
            _ => Algorithm::ES384,
        };
        if header.alg != expected {
            return Err("the assertion's alg does not match its key");
        }
        let decoding = DecodingKey::from_jwk(key).map_err(|_| "the key is unusable")?;
        let mut validation = Validation::new(expected);
        validation.set_audience(&[token_endpoint]);
        validation.set_issuer(&[client.id.as_str()]);
        validation.sub = Some(client.id.clone());
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        // Expiry is judged below by Wardline's clock.
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &decoding, &validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    "the assertion's aud is not this token endpoint"
                }
                jsonwebtoken::errors::ErrorKind::InvalidIssuer
                | jsonwebtoken::errors::ErrorKind::InvalidSubject => {
                    "the assertion's iss and sub must both be the client id"
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    "the assertion's signature does not verify"
                }
                _ => "the assertion is malformed",
            })?
            .claims;
        if claims.iss != client.id || claims.sub != client.id {
            return Err("the assertion's iss and sub must both be the client id");
        }
        let now = self.now();
        let expires = DateTime::<Utc>::from_timestamp(claims.exp, 0)
            .ok_or("the assertion's exp is not a time")?;
        if expires + Duration::seconds(LEEWAY_SECONDS) <= now {
            return Err("the assertion has expired");
        }
        if expires > now + ASSERTION_LIFETIME + Duration::seconds(LEEWAY_SECONDS) {
            return Err("the assertion expires more than five minutes ahead");
        }
        if claims.jti.is_empty() || claims.jti.len() > 200 {
            return Err("the assertion's jti must be 1 to 200 characters");
        }
        let fresh = self
            .store
            .record_client_assertion(
                &client.id,
                &claims.jti,
                expires + Duration::seconds(LEEWAY_SECONDS),
                now,
            )
            .await
            .map_err(|_| "the assertion could not be recorded")?;
        if fresh {
            Ok(())
        } else {
            Err("the assertion was used before (its jti)")
        }
    }

    /// The backend client an access token was given to, while the token lives and the
    /// client is not revoked.
    pub async fn authenticate_backend_client(
        &self,
        token: &str,
        remote_addr: Option<String>,
    ) -> Result<Actor, Error> {
        let found = self
            .store
            .client_token(token_hash(token), self.now())
            .await?
            .ok_or(Error::Unauthenticated)?;
        let (readable, _) = granted_scopes(&found.scopes);
        Ok(Actor::Client(BackendCaller {
            client_id: found.client.id,
            name: found.client.name,
            care_teams: found.client.care_teams,
            readable,
            remote_addr,
        }))
    }
}

/// The `iss` of a JWT, read without checking anything.
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        payload.trim_end_matches('='),
    )
    .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["iss"].as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_system_read_scopes_of_exported_types_are_granted() {
        let (types, granted) = granted_scopes(
            "system/*.rs system/Observation.read patient/*.rs system/Patient.cruds \
             system/Medication.rs system/Device.r launch",
        );
        assert_eq!(types, ["*", "Observation", "Device"]);
        assert_eq!(
            granted,
            ["system/*.rs", "system/Observation.read", "system/Device.r"]
        );
        assert!(granted_scopes("user/*.rs system/*.write").1.is_empty());
    }

    #[test]
    fn a_key_set_is_refused_with_the_key_and_field_at_fault() {
        let refused =
            |jwks: serde_json::Value| read_key_set(&jwks).unwrap_err().field().map(str::to_owned);
        assert_eq!(
            refused(serde_json::json!({"keys": []})).as_deref(),
            Some("jwks.keys")
        );
        assert_eq!(
            refused(serde_json::json!({"nope": 1})).as_deref(),
            Some("jwks")
        );
        // A symmetric key would be a shared secret.
        assert_eq!(
            refused(serde_json::json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "a"}]}))
                .as_deref(),
            Some("jwks.keys[0].kty")
        );
        // A short RSA key.
        assert_eq!(
            refused(
                serde_json::json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "a"}]})
            )
            .as_deref(),
            Some("jwks.keys[0].n")
        );
        // P-256 is not ES384's curve.
        assert_eq!(
            refused(
                serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "a",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]})
            )
            .as_deref(),
            Some("jwks.keys[0].crv")
        );
    }
}
