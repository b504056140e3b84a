//! Login, accounts and care teams.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use wardline_domain::{CareTeamId, PatientId, Role, UserId};
use wardline_store::{AuditEvent, AuditOutcome, AuditQuery, AuditRecord, CareTeam, NewUser, User};

use super::{Body, Params, parse_id, users_by_id};
use crate::access::{audit, authorize_patient, require_admin};
use crate::auth::{self, Caller, SESSION_COOKIE};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub(crate) struct LoginRequest {
    username: String,
    password: String,
}

#[derive(Serialize)]
pub(crate) struct LoginResponse {
    token: String,
    expires: DateTime<Utc>,
    user: User,
}

/// A fixed hash to verify against when the user is unknown, so that a login for an unknown
/// name takes as long as one with a wrong password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Yq8b0o7ohd0vJg9C8d3s7H1l1Q7v2m9Zb6bN3S5v6bI";

pub(crate) async fn login(
    State(state): State<AppState>,
    request_parts: axum::extract::ConnectInfo<std::net::SocketAddr>,
    Body(request): Body<LoginRequest>,
) -> Result<Response, ApiError> {
    let address = request_parts.0.ip().to_string();
    let remote = Some(address.clone());
    if request.username.len() > 200 || request.password.len() > 1024 {
        return Err(ApiError::BadLogin);
    }
    if let Some(wait) = state
        .logins
        .locked(&request.username, &address, std::time::Instant::now())
    {
        metrics::counter!("wardline_logins_throttled_total").increment(1);
        return Err(ApiError::TooManyAttempts {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    let credentials = state.store.user_credentials(&request.username).await?;
    let (stored_hash, user) = match credentials {
        Some(credentials) if !credentials.user.disabled => {
            (credentials.password_hash, Some(credentials.user))
        }
        _ => (DUMMY_HASH.to_owned(), None),
    };
    let verified = auth::verify_password(request.password, stored_hash)
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| verified) else {
        let locked_out =
            state
                .logins
                .failed(&request.username, &address, std::time::Instant::now());
        state
            .store
            .append_audit(vec![AuditEvent {
                time: Utc::now(),
                actor: None,
                actor_label: request.username.chars().take(200).collect(),
                action: "login.failed".into(),
                patient_id: None,
                outcome: AuditOutcome::Denied,
                remote_addr: remote,
                detail: locked_out.then(|| "locked out for 15 min after 5 failures".to_owned()),
            }])
            .await?;
        metrics::counter!("wardline_logins_failed_total").increment(1);
        return Err(ApiError::BadLogin);
    };
    state.logins.succeeded(&request.username, &address);
    let (token, expires) = auth::open_session(&state, &user).await?;
    let caller = Caller {
        user: user.clone(),
        token_hash: auth::token_hash(&token),
        remote_addr: remote,
    };
    audit(&state, &caller, "login", None, AuditOutcome::Allowed, None).await?;
    let mut headers = HeaderMap::new();
    let secure = if state.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        state.settings.session_lifetime.num_seconds()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.insert(SET_COOKIE, value);
    }
    Ok((
        headers,
        Json(LoginResponse {
            token,
            expires,
            user,
        }),
    )
        .into_response())
}

pub(crate) async fn logout(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    state
        .store
        .revoke_session(caller.token_hash, Utc::now())
        .await?;
    audit(&state, &caller, "logout", None, AuditOutcome::Allowed, None).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        SET_COOKIE,
        HeaderValue::from_static("wardline_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok((headers, axum::http::StatusCode::NO_CONTENT).into_response())
}

pub(crate) async fn me(caller: Caller) -> Json<User> {
    Json(caller.user)
}

pub(crate) async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<User>>, ApiError> {
    require_admin(&state, &caller, "users.list", None).await?;
    Ok(Json(state.store.users().await?))
}

/// Disables an account (someone who left): their sessions end at once and they cannot log
/// in again. Accounts are never deleted, so the audit trail keeps its names.
pub(crate) async fn disable_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user_id: UserId = parse_id("user_id", &user_id)?;
    require_admin(&state, &caller, "users.disable", Some(user_id.to_string())).await?;
    if user_id == caller.user.id {
        return Err(ApiError::invalid(
            "user_id",
            "an admin cannot disable their own account (ask another admin)",
        ));
    }
    // The store answers "not found" for an unknown id.
    state.store.set_user_disabled(user_id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct CreateUserRequest {
    username: String,
    display_name: String,
    role: String,
    /// When absent, a password is generated and returned once.
    password: Option<String>,
    patient_id: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct CreatedUser {
    user: User,
    #[serde(skip_serializing_if = "Option::is_none")]
    generated_password: Option<String>,
}

pub(crate) fn check_username(username: &str) -> Result<(), ApiError> {
    let valid = (3..=64).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "username",
            "3 to 64 characters from letters, digits, '.', '_', '-' and '@'",
        ))
    }
}

pub(crate) async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    Body(request): Body<CreateUserRequest>,
) -> Result<(axum::http::StatusCode, Json<CreatedUser>), ApiError> {
    require_admin(
        &state,
        &caller,
        "users.create",
        Some(request.username.clone()),
    )
    .await?;
    check_username(&request.username)?;
    if request.display_name.trim().is_empty() || request.display_name.len() > 200 {
        return Err(ApiError::invalid("display_name", "1 to 200 characters"));
    }
    let role: Role = parse_id("role", &request.role)?;
    let patient_id: Option<PatientId> = request
        .patient_id
        .as_deref()
        .map(|id| parse_id("patient_id", id))
        .transpose()?;
    if (role == Role::Patient) != patient_id.is_some() {
        return Err(ApiError::invalid(
            "patient_id",
            "required for a patient account, and only for one",
        ));
    }
    let (password, generated_password) = match request.password {
        Some(password) => {
            auth::check_password_strength(&password)?;
            (password, None)
        }
        None => {
            let generated = auth::generate_password()?;
            (generated.clone(), Some(generated))
        }
    };
    let password_hash = auth::hash_password(password).await?;
    let user = state
        .store
        .create_user(NewUser {
            username: request.username,
            display_name: request.display_name,
            role,
            password_hash,
            patient_id,
        })
        .await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(CreatedUser {
            user,
            generated_password,
        }),
    ))
}

pub(crate) async fn list_care_teams(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<CareTeam>>, ApiError> {
    require_admin(&state, &caller, "care_teams.list", None).await?;
    Ok(Json(state.store.care_teams().await?))
}

#[derive(Deserialize)]
pub(crate) struct CreateCareTeamRequest {
    name: String,
}

pub(crate) async fn create_care_team(
    State(state): State<AppState>,
    caller: Caller,
    Body(request): Body<CreateCareTeamRequest>,
) -> Result<(axum::http::StatusCode, Json<CareTeam>), ApiError> {
    require_admin(
        &state,
        &caller,
        "care_teams.create",
        Some(request.name.clone()),
    )
    .await?;
    if request.name.trim().is_empty() || request.name.len() > 200 {
        return Err(ApiError::invalid("name", "1 to 200 characters"));
    }
    Ok((
        axum::http::StatusCode::CREATED,
        Json(state.store.create_care_team(request.name.trim()).await?),
    ))
}

#[derive(Deserialize)]
pub(crate) struct MemberRequest {
    user_id: String,
}

pub(crate) async fn add_care_team_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(team_id): Path<String>,
    Body(request): Body<MemberRequest>,
) -> Result<axum::http::StatusCode, ApiError> {
    let team: CareTeamId = parse_id("team_id", &team_id)?;
    let user: UserId = parse_id("user_id", &request.user_id)?;
    require_admin(
        &state,
        &caller,
        "care_teams.add_member",
        Some(format!("team {team} user {user}")),
    )
    .await?;
    state.store.add_care_team_member(team, user).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct CareTeamPatientRequest {
    patient_id: String,
}

pub(crate) async fn add_care_team_patient(
    State(state): State<AppState>,
    caller: Caller,
    Path(team_id): Path<String>,
    Body(request): Body<CareTeamPatientRequest>,
) -> Result<axum::http::StatusCode, ApiError> {
    let team: CareTeamId = parse_id("team_id", &team_id)?;
    let patient: PatientId = parse_id("patient_id", &request.patient_id)?;
    require_admin(
        &state,
        &caller,
        "care_teams.add_patient",
        Some(format!("team {team}")),
    )
    .await?;
    state.store.add_care_team_patient(team, patient).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct AuditParams {
    patient_id: Option<String>,
    user_id: Option<String>,
    action: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

pub(crate) async fn audit_log(
    State(state): State<AppState>,
    caller: Caller,
    Params(params): Params<AuditParams>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    require_admin(&state, &caller, "audit.read", None).await?;
    let query = AuditQuery {
        patient_id: params
            .patient_id
            .as_deref()
            .map(|id| parse_id("patient_id", id))
            .transpose()?,
        actor: params
            .user_id
            .as_deref()
            .map(|id| parse_id("user_id", id))
            .transpose()?,
        action: params.action,
        before: params.before,
        limit: params.limit.unwrap_or(100).min(1000),
    };
    Ok(Json(state.store.audit_events(query).await?))
}

#[derive(Serialize)]
pub(crate) struct CareTeamMemberView {
    display_name: String,
    role: Role,
}

#[derive(Serialize)]
pub(crate) struct PatientCareTeamView {
    id: CareTeamId,
    name: String,
    members: Vec<CareTeamMemberView>,
}

/// Who can see a patient's data besides the patient: the active members of the patient's
/// care teams, by name and role.
pub(crate) async fn patient_care_teams(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient_id): Path<String>,
) -> Result<Json<Vec<PatientCareTeamView>>, ApiError> {
    let patient_id: PatientId = parse_id("patient_id", &patient_id)?;
    let access = authorize_patient(&state, &caller, patient_id, "care_teams.read", None).await?;
    let teams: Vec<CareTeam> = state
        .store
        .care_teams()
        .await?
        .into_iter()
        .filter(|team| team.patients.contains(&access.patient_id()))
        .collect();
    let users = users_by_id(&state, teams.iter().flat_map(|team| team.members.clone())).await?;
    let teams = teams
        .into_iter()
        .map(|team| PatientCareTeamView {
            id: team.id,
            name: team.name,
            members: team
                .members
                .iter()
                .filter_map(|id| users.get(id))
                .filter(|user| !user.disabled)
                .map(|user| CareTeamMemberView {
                    display_name: user.display_name.clone(),
                    role: user.role,
                })
                .collect(),
        })
        .collect();
    Ok(Json(teams))
}

#[derive(Deserialize)]
pub(crate) struct AccessLogParams {
    before: Option<i64>,
    limit: Option<u32>,
}

#[derive(Serialize)]
pub(crate) struct AccessLogEntry {
    sequence: i64,
    time: DateTime<Utc>,
    /// The person's display name, or the account name when the account is gone.
    who: String,
    role: Option<Role>,
    action: String,
    outcome: AuditOutcome,
}

/// Every recorded look at a patient's data and every refused attempt, newest first: the
/// audit trail as the patient (or their care team) may see it, without addresses or
/// details.
pub(crate) async fn patient_access_log(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient_id): Path<String>,
    Params(params): Params<AccessLogParams>,
) -> Result<Json<Vec<AccessLogEntry>>, ApiError> {
    let patient_id: PatientId = parse_id("patient_id", &patient_id)?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "1 to 500"));
    }
    let access = authorize_patient(&state, &caller, patient_id, "access_log.read", None).await?;
    let events = state
        .store
        .audit_events(AuditQuery {
            patient_id: Some(access.patient_id()),
            actor: None,
            action: None,
            before: params.before,
            limit,
        })
        .await?;
    let users = users_by_id(&state, events.iter().filter_map(|event| event.actor)).await?;
    Ok(Json(
        events
            .into_iter()
            .map(|event| {
                let user = event.actor.and_then(|id| users.get(&id));
                AccessLogEntry {
                    sequence: event.sequence,
                    time: event.time,
                    who: user.map_or(event.actor_label, |user| user.display_name.clone()),
                    role: user.map(|user| user.role),
                    action: event.action,
                    outcome: event.outcome,
                }
            })
            .collect(),
    ))
}
