//! People's credentials and sessions.
//!
//! Passwords are hashed with Argon2id at OWASP's minimum (19 MiB, 2 passes, 1 lane), on a
//! blocking thread so that a login never stalls other requests. A session token is 256
//! random bits; only its SHA-256 is stored, so the database cannot be used to log in.

use std::net::SocketAddr;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use wardline_store::{NewSession, User};

use crate::error::ApiError;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "wardline_session";
/// The header the web app sends with every request. A request that changes state and
/// is authenticated by the session cookie (not by a bearer token) must carry it: a form
/// or link from another site cannot set a custom header, so this backs up the cookie's
/// `SameSite=Strict` against cross-site request forgery.
pub const CSRF_HEADER: &str = "x-wardline-request";
const TOKEN_PREFIX: &str = "wst_";

fn argon2() -> Result<Argon2<'static>, ApiError> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|error| ApiError::Internal(error.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password into a PHC string.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let mut salt_bytes = [0u8; 16];
        SystemRandom::new()
            .fill(&mut salt_bytes)
            .map_err(|_| ApiError::Internal("no randomness".into()))?;
        let salt = SaltString::encode_b64(&salt_bytes)
            .map_err(|error| ApiError::Internal(error.to_string()))?;
        argon2()?
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| ApiError::Internal(error.to_string()))
    })
    .await
    .map_err(|error| ApiError::Internal(error.to_string()))?
}

/// Checks a password against a stored PHC string.
pub async fn verify_password(password: String, stored_hash: String) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&stored_hash)
            .map_err(|error| ApiError::Internal(error.to_string()))?;
        Ok(argon2()?
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|error| ApiError::Internal(error.to_string()))?
}

/// Why a new password is refused; NIST SP 800-63B asks for length, not composition rules.
pub fn check_password_strength(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 12 {
        return Err(ApiError::invalid(
            "password",
            "must be at least 12 characters",
        ));
    }
    if password.len() > 1024 {
        return Err(ApiError::invalid("password", "must be at most 1024 bytes"));
    }
    Ok(())
}

/// A random password for generated accounts, printed once.
pub fn generate_password() -> Result<String, ApiError> {
    let mut bytes = [0u8; 18];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::Internal("no randomness".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

pub fn token_hash(token: &str) -> [u8; 32] {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    hash
}

/// Opens a session; returns the token, which is shown to the client once.
pub async fn open_session(
    state: &AppState,
    user: &User,
) -> Result<(String, chrono::DateTime<Utc>), ApiError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::Internal("no randomness".into()))?;
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let created = Utc::now();
    let expires = created + state.settings.session_lifetime;
    state
        .store
        .create_session(NewSession {
            token_hash: token_hash(&token),
            user_id: user.id,
            created,
            expires,
        })
        .await?;
    Ok((token, expires))
}

/// The authenticated person making a request, and from where.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub token_hash: [u8; 32],
    pub remote_addr: Option<String>,
}

/// The token from `Authorization: Bearer` or, for the web app, the session cookie.
pub fn presented_token(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION)
        && let Ok(text) = value.to_str()
        && let Some(token) = text.strip_prefix("Bearer ")
    {
        return Some(token.trim().to_owned());
    }
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

pub fn remote_addr(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = presented_token(parts).ok_or(ApiError::Unauthenticated)?;
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|text| text.starts_with("Bearer "));
        if !bearer && !parts.method.is_safe() && !parts.headers.contains_key(CSRF_HEADER) {
            return Err(ApiError::invalid(
                CSRF_HEADER,
                "a request that changes state with the session cookie must send `X-Wardline-Request: 1`",
            ));
        }
        let hash = token_hash(&token);
        let session = state
            .store
            .session(hash, Utc::now())
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        Ok(Caller {
            user: session.user,
            token_hash: hash,
            remote_addr: remote_addr(parts),
        })
    }
}

/// The device presenting its secret as `Authorization: Bearer`, for every route a device
/// calls. Unknown, wrong and revoked all answer `unauthenticated`, so a probe learns
/// nothing, and each refusal is counted.
pub async fn authenticated_device(
    state: &AppState,
    device_id: &str,
    headers: &axum::http::HeaderMap,
) -> Result<wardline_store::Device, ApiError> {
    let secret = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthenticated)?;
    match wardline_ingest::authenticate_device(
        state.store.as_ref(),
        device_id,
        secret.trim().as_bytes(),
    )
    .await
    {
        Ok(device) => Ok(device),
        Err(wardline_ingest::DeviceAuthError::Store(error)) => Err(error.into()),
        Err(
            wardline_ingest::DeviceAuthError::BadCredentials
            | wardline_ingest::DeviceAuthError::Revoked(_),
        ) => {
            metrics::counter!("wardline_http_device_auth_failed_total").increment(1);
            Err(ApiError::Unauthenticated)
        }
    }
}
