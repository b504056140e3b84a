//! Sessions, accounts, care teams and the audit trail.

use axum::Json;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_domain::{CareTeamId, PatientId, Role, UserId};
use wardline_service::people::{
    AccessLogEntry, CreatedAccount, LoggedIn, NewAccount, PatientCareTeamView,
};
use wardline_service::second_factor::SecondFactorSetup;
use wardline_store::{AuditQuery, AuditRecord, CareTeam, User};

use crate::error::ApiError;
use crate::extract::{AccountCaller, Body, Caller, Id, Params, Remote, SESSION_COOKIE};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(list_users, create_user))
        .routes(routes!(disable_user))
        .routes(routes!(change_password))
        .routes(routes!(reset_password))
        .routes(routes!(begin_second_factor))
        .routes(routes!(confirm_second_factor))
        .routes(routes!(reset_second_factor))
        .routes(routes!(list_care_teams, create_care_team))
        .routes(routes!(add_care_team_member))
        .routes(routes!(add_care_team_patient))
        .routes(routes!(remove_care_team_member))
        .routes(routes!(remove_care_team_patient))
        .routes(routes!(audit_log))
        .routes(routes!(patient_care_teams))
        .routes(routes!(patient_access_log))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct LoginRequest {
    #[schema(max_length = 200)]
    username: String,
    #[schema(max_length = 1024)]
    password: String,
    /// The authenticator app's current code, for an account with a second factor: six
    /// digits (spaces between them are ignored).
    #[schema(min_length = 6, max_length = 16, pattern = "^ *([0-9] *){6}$")]
    one_time_code: Option<String>,
}

/// Logs in with username and password (and, for an account with a second factor, the
/// authenticator app's current code: without it the answer is `second_factor_required`,
/// after which the client asks for the code and sends all three again). Returns a
/// session token and sets it as an HttpOnly cookie. Failures are throttled per account,
/// per address and overall.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "sessions",
    request_body = LoginRequest,
    responses((status = 200, description = "A new session", body = LoggedIn)))]
pub(crate) async fn login(
    State(state): State<AppState>,
    Remote(remote): Remote,
    Body(request): Body<LoginRequest>,
) -> Result<Response, ApiError> {
    let address = remote.unwrap_or_else(|| "unknown".into());
    let logged_in = state
        .service
        .login(
            &request.username,
            request.password,
            request.one_time_code.as_deref(),
            &address,
        )
        .await?;
    let mut headers = HeaderMap::new();
    let secure = if state.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        logged_in.token,
        state.settings.session_lifetime.num_seconds()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.insert(SET_COOKIE, value);
    }
    Ok((headers, Json(logged_in)).into_response())
}

/// Ends the current session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "sessions",
    responses((status = 204, description = "The session is revoked")))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    caller: AccountCaller,
) -> Result<Response, ApiError> {
    state.service.logout(&caller.0).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        SET_COOKIE,
        HeaderValue::from_static("wardline_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok((headers, StatusCode::NO_CONTENT).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PasswordChange {
    #[schema(max_length = 1024)]
    current_password: String,
    /// At least 12 characters, and not easy to guess (common or leaked passwords, words,
    /// patterns and the account's own names are refused).
    #[schema(min_length = 12, max_length = 1024)]
    new_password: String,
}

/// Changes the caller's password; every other session of the account ends. An account
/// whose password was generated, reset or set by an administrator must do this first:
/// until it does, every other operation but reading `/api/v1/me` and logging out
/// answers `password_change_required`.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "sessions",
    request_body = PasswordChange,
    responses((status = 204, description = "Changed")))]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    caller: AccountCaller,
    Body(request): Body<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .change_password(&caller.0, request.current_password, request.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NewPassword {
    /// The account's new password, shown only now.
    password: String,
}

/// Gives an account a new generated password (admin; not one's own): every session of
/// the account ends.
#[utoipa::path(post, path = "/api/v1/users/{user_id}/reset-password", tag = "accounts",
    params(("user_id" = UserId, Path, description = "The account")),
    responses((status = 200, description = "The new password, shown once", body = NewPassword)))]
pub(crate) async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    Id(user_id): Id<UserId>,
) -> Result<Json<NewPassword>, ApiError> {
    let password = state
        .service
        .reset_password(&caller.actor(), user_id)
        .await?;
    Ok(Json(NewPassword { password }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct OneTimeCode {
    /// The authenticator app's current code: six digits (spaces between them are ignored).
    #[schema(min_length = 6, max_length = 16, pattern = "^ *([0-9] *){6}$")]
    one_time_code: String,
}

/// Starts setting up the caller's second factor: a new secret for an authenticator app,
/// shown this once (as text and as an `otpauth://` address for a QR code). Logging in
/// asks for codes once one is confirmed (`/api/v1/me/second-factor/confirm`). Starting
/// again replaces a secret not yet confirmed; a confirmed one is `conflict` (an
/// administrator resets it).
#[utoipa::path(post, path = "/api/v1/me/second-factor", tag = "sessions",
    responses((status = 200, description = "The secret, shown once", body = SecondFactorSetup)))]
pub(crate) async fn begin_second_factor(
    State(state): State<AppState>,
    caller: AccountCaller,
) -> Result<Json<SecondFactorSetup>, ApiError> {
    Ok(Json(state.service.begin_second_factor(&caller.0).await?))
}

/// Confirms the second factor being set up with a code from the authenticator app: from
/// now on logging in takes a code too.
#[utoipa::path(post, path = "/api/v1/me/second-factor/confirm", tag = "sessions",
    request_body = OneTimeCode,
    responses((status = 200, description = "The account, now with a second factor", body = User)))]
pub(crate) async fn confirm_second_factor(
    State(state): State<AppState>,
    caller: AccountCaller,
    Body(request): Body<OneTimeCode>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(
        state
            .service
            .confirm_second_factor(&caller.0, &request.one_time_code)
            .await?,
    ))
}

/// Removes an account's second factor, for a lost or replaced phone (admin; not one's
/// own). Its next login takes the password alone; an account whose role requires a
/// second factor must then set up a new one before anything else.
#[utoipa::path(post, path = "/api/v1/users/{user_id}/reset-second-factor", tag = "accounts",
    params(("user_id" = UserId, Path, description = "The account")),
    responses((status = 204, description = "Removed")))]
pub(crate) async fn reset_second_factor(
    State(state): State<AppState>,
    caller: Caller,
    Id(user_id): Id<UserId>,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .reset_second_factor(&caller.actor(), user_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account of the session (also while its password must be changed, which
/// `password_change_required` says, or a second factor set up, which
/// `second_factor_setup_required` says).
#[utoipa::path(get, path = "/api/v1/me", tag = "sessions",
    responses((status = 200, description = "The caller's account", body = Me)))]
pub(crate) async fn me(State(state): State<AppState>, caller: AccountCaller) -> Json<Me> {
    Json(Me {
        second_factor_setup_required: state.service.second_factor_missing(&caller.0.user),
        user: caller.0.user,
    })
}

/// The caller's account, and what it must do before anything else.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Me {
    #[serde(flatten)]
    user: User,
    /// The account's role requires a second factor and it has none: it may only set one
    /// up (`POST /api/v1/me/second-factor`), change its password, read itself and log
    /// out until it does.
    second_factor_setup_required: bool,
}

/// Every account (admin).
#[utoipa::path(get, path = "/api/v1/users", tag = "accounts",
    responses((status = 200, description = "Accounts by username", body = Vec<User>)))]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(state.service.list_users(&caller.actor()).await?))
}

/// An account to create; its schema is written out in `schemas`, as a patient account
/// and the others differ in `patient_id`.
#[derive(Debug, Deserialize)]
pub(crate) struct CreateUserRequest {
    username: String,
    display_name: String,
    role: Role,
    password: Option<String>,
    patient_id: Option<PatientId>,
    password_change_required: Option<bool>,
}

impl utoipa::PartialSchema for CreateUserRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schemas::create_user_request()
    }
}

impl ToSchema for CreateUserRequest {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((PatientId::name().into(), PatientId::schema()));
        <PatientId as ToSchema>::schemas(schemas);
    }
}

/// Creates an account (admin).
#[utoipa::path(post, path = "/api/v1/users", tag = "accounts",
    request_body = CreateUserRequest,
    responses((status = 201, description = "The account, and its password when generated", body = CreatedAccount)))]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    Body(request): Body<CreateUserRequest>,
) -> Result<(StatusCode, Json<CreatedAccount>), ApiError> {
    let created = state
        .service
        .create_user(
            &caller.actor(),
            NewAccount {
                username: request.username,
                display_name: request.display_name,
                role: request.role,
                password: request.password,
                patient_id: request.patient_id,
                password_change_required: request.password_change_required,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Disables an account (admin; never one's own): its sessions end at once.
#[utoipa::path(post, path = "/api/v1/users/{user_id}/disable", tag = "accounts",
    params(("user_id" = UserId, Path, description = "The account")),
    responses((status = 204, description = "Disabled")))]
pub(crate) async fn disable_user(
    State(state): State<AppState>,
    caller: Caller,
    Id(user_id): Id<UserId>,
) -> Result<StatusCode, ApiError> {
    state.service.disable_user(&caller.actor(), user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every care team with its members and patients (admin).
#[utoipa::path(get, path = "/api/v1/care-teams", tag = "care teams",
    responses((status = 200, description = "Care teams by name", body = Vec<CareTeam>)))]
pub(crate) async fn list_care_teams(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<CareTeam>>, ApiError> {
    Ok(Json(state.service.list_care_teams(&caller.actor()).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CreateCareTeamRequest {
    /// 1 to 200 characters once trimmed of white space, unique.
    #[schema(schema_with = crate::schemas::trimmed_text::<200>)]
    name: String,
}

/// Creates a care team (admin).
#[utoipa::path(post, path = "/api/v1/care-teams", tag = "care teams",
    request_body = CreateCareTeamRequest,
    responses((status = 201, description = "The new team", body = CareTeam)))]
pub(crate) async fn create_care_team(
    State(state): State<AppState>,
    caller: Caller,
    Body(request): Body<CreateCareTeamRequest>,
) -> Result<(StatusCode, Json<CareTeam>), ApiError> {
    let team = state
        .service
        .create_care_team(&caller.actor(), &request.name)
        .await?;
    Ok((StatusCode::CREATED, Json(team)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct MemberRequest {
    user_id: UserId,
}

/// Adds a clinician or nurse to a care team (admin).
#[utoipa::path(post, path = "/api/v1/care-teams/{team_id}/members", tag = "care teams",
    params(("team_id" = CareTeamId, Path, description = "The care team")),
    request_body = MemberRequest,
    responses((status = 204, description = "A member now")))]
pub(crate) async fn add_care_team_member(
    State(state): State<AppState>,
    caller: Caller,
    Id(team): Id<CareTeamId>,
    Body(request): Body<MemberRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .add_care_team_member(&caller.actor(), team, request.user_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CareTeamPatientRequest {
    patient_id: PatientId,
}

/// Puts a patient in a care team's care (admin).
#[utoipa::path(post, path = "/api/v1/care-teams/{team_id}/patients", tag = "care teams",
    params(("team_id" = CareTeamId, Path, description = "The care team")),
    request_body = CareTeamPatientRequest,
    responses((status = 204, description = "In the team's care now")))]
pub(crate) async fn add_care_team_patient(
    State(state): State<AppState>,
    caller: Caller,
    Id(team): Id<CareTeamId>,
    Body(request): Body<CareTeamPatientRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .add_care_team_patient(&caller.actor(), team, request.patient_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Takes a clinician or nurse off a care team (admin): their access to its patients ends
/// at once, and their open streams of them within a second.
#[utoipa::path(delete, path = "/api/v1/care-teams/{team_id}/members/{user_id}", tag = "care teams",
    params(("team_id" = CareTeamId, Path, description = "The care team"), ("user_id" = UserId, Path, description = "The member")),
    responses((status = 204, description = "No longer a member")))]
pub(crate) async fn remove_care_team_member(
    State(state): State<AppState>,
    caller: Caller,
    Id(team): Id<CareTeamId>,
    Id(user): Id<UserId>,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .remove_care_team_member(&caller.actor(), team, user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends a care team's care of a patient (admin): the team's members lose access to the
/// patient's data at once, and their open streams of it within a second.
#[utoipa::path(delete, path = "/api/v1/care-teams/{team_id}/patients/{patient_id}", tag = "care teams",
    params(("team_id" = CareTeamId, Path, description = "The care team"), ("patient_id" = PatientId, Path, description = "The patient")),
    responses((status = 204, description = "No longer in the team's care")))]
pub(crate) async fn remove_care_team_patient(
    State(state): State<AppState>,
    caller: Caller,
    Id(team): Id<CareTeamId>,
    Id(patient): Id<PatientId>,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .remove_care_team_patient(&caller.actor(), team, patient)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// Only entries about this patient.
    patient_id: Option<PatientId>,
    /// Only entries by this account.
    user_id: Option<UserId>,
    /// Only this action, e.g. `observations.read`.
    action: Option<String>,
    /// Only entries older than this sequence number (the next page).
    before: Option<i64>,
    /// At most this many: 1 to 1000 (default 100); a number outside is taken as the
    /// nearer of the two.
    limit: Option<u32>,
}

/// The audit trail, newest first (admin).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    params(AuditParams),
    responses((status = 200, description = "Audit entries with their chain hashes", body = Vec<AuditRecord>)))]
pub(crate) async fn audit_log(
    State(state): State<AppState>,
    caller: Caller,
    Params(params): Params<AuditParams>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    let query = AuditQuery {
        patient_id: params.patient_id,
        actor: params.user_id,
        action: params.action,
        before: params.before,
        limit: params.limit.unwrap_or(100),
    };
    Ok(Json(state.service.audit_log(&caller.actor(), query).await?))
}

/// Who can see a patient's data: the active members of the patient's care teams.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/care-teams", tag = "patients",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    responses((status = 200, description = "The patient's care teams", body = Vec<PatientCareTeamView>)))]
pub(crate) async fn patient_care_teams(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
) -> Result<Json<Vec<PatientCareTeamView>>, ApiError> {
    Ok(Json(
        state
            .service
            .patient_care_teams(&caller.actor(), patient_id)
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AccessLogParams {
    /// Only entries older than this sequence number (the next page).
    before: Option<i64>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// Every look at the patient's data and every refused attempt, newest first; as the
/// patient may see it, without addresses or details.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/access-log", tag = "patients",
    params(("patient_id" = PatientId, Path, description = "The patient"), AccessLogParams),
    responses((status = 200, description = "Who looked at the patient's data", body = Vec<AccessLogEntry>)))]
pub(crate) async fn patient_access_log(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Params(params): Params<AccessLogParams>,
) -> Result<Json<Vec<AccessLogEntry>>, ApiError> {
    Ok(Json(
        state
            .service
            .patient_access_log(&caller.actor(), patient_id, params.before, params.limit)
            .await?,
    ))
}
