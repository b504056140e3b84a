//! A patient's shares with specialists outside their care teams. The rules are the
//! service's (`wardline_service::sharing`); reads through a share go through the same
//! patient routes as everyone's, cut to the share by the one access check.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_domain::PatientId;
use wardline_domain::sharing::ShareCategory;
use wardline_service::sharing::{
    CreatedInvitation, CreatedShare, ShareRequest, ShareTo, SharedRecord,
};
use wardline_store::{Share, User};

use crate::error::ApiError;
use crate::extract::{Body, Caller, Id, Remote, SharePath};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_share, own_shares))
        .routes(routes!(revoke_share))
        .routes(routes!(open_share_link))
        .routes(routes!(shares_with_me))
        .routes(routes!(propose_referral))
        .routes(routes!(accept_share))
        .routes(routes!(invite_specialist))
        .routes(routes!(accept_invitation))
        .routes(routes!(link_invitation))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct InviteSpecialist {
    /// Where the invitation goes.
    #[schema(min_length = 3, max_length = 254)]
    email: String,
    /// The specialist's name as Wardline shows it.
    #[schema(schema_with = wardline_domain::text_schema::trimmed_text_between::<1, 200>)]
    display_name: String,
}

/// Invites a specialist to make a Wardline account (patients, clinicians, nurses,
/// administrators): a link that works once, for 7 days, e-mailed when an SMTP server is
/// configured (`emailed`), and in the answer this once either way.
#[utoipa::path(post, path = "/api/v1/specialist-invitations", tag = "sharing",
    request_body = InviteSpecialist,
    responses((status = 201, description = "The invitation and its link's token", body = CreatedInvitation)))]
pub(crate) async fn invite_specialist(
    State(state): State<AppState>,
    caller: Caller,
    Body(request): Body<InviteSpecialist>,
) -> Result<(StatusCode, Json<CreatedInvitation>), ApiError> {
    let created = state
        .service
        .invite_specialist(&caller.actor(), &request.email, &request.display_name)
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct AcceptInvitation {
    /// The token from the invitation's link.
    #[schema(min_length = 1, max_length = 200)]
    token: String,
    #[schema(min_length = 3, max_length = 64)]
    username: String,
    /// At least 12 characters, and not easy to guess.
    #[schema(min_length = 12, max_length = 1024)]
    password: String,
}

impl std::fmt::Debug for AcceptInvitation {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AcceptInvitation")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Makes the invited specialist's account with the invitation's link (no account
/// needed): a user name and a password of their own. The link works once, until it
/// expires (`invitation_closed` says which).
#[utoipa::path(post, path = "/api/v1/specialist-invitations/accept", tag = "sharing",
    request_body = AcceptInvitation,
    responses((status = 201, description = "The new specialist account", body = User)))]
pub(crate) async fn accept_invitation(
    State(state): State<AppState>,
    Remote(remote): Remote,
    Body(request): Body<AcceptInvitation>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let user = state
        .service
        .accept_invitation(&request.token, &request.username, request.password, remote)
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct LinkInvitation {
    /// The token from the invitation's link.
    #[schema(min_length = 1, max_length = 200)]
    token: String,
}

/// Takes up an invitation with the specialist account the caller is logged in with,
/// instead of making a second account (a specialist invited again, by another patient).
/// The link works once, until it expires (`invitation_closed` says which); other roles
/// get `not_permitted`.
#[utoipa::path(post, path = "/api/v1/me/specialist-invitations/accept", tag = "sharing",
    request_body = LinkInvitation,
    responses((status = 200, description = "The account the invitation is now linked to", body = User)))]
pub(crate) async fn link_invitation(
    State(state): State<AppState>,
    caller: Caller,
    Body(request): Body<LinkInvitation>,
) -> Result<Json<User>, ApiError> {
    let user = state
        .service
        .link_invitation(&caller.actor(), &request.token)
        .await?;
    Ok(Json(user))
}

/// Proposes a share of a patient's record with a specialist (clinicians and nurses of
/// the patient's care team): a referral, which opens nothing until the patient accepts
/// it (`POST /api/v1/me/shares/{share_id}/accept`); its expiry counts from then.
#[utoipa::path(post, path = "/api/v1/patients/{patient_id}/referrals", tag = "sharing",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    request_body = CreateShare,
    responses((status = 201, description = "The proposed share, waiting for the patient", body = Share)))]
pub(crate) async fn propose_referral(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Body(request): Body<CreateShare>,
) -> Result<(StatusCode, Json<Share>), ApiError> {
    let request = request.into_service()?;
    let share = state
        .service
        .propose_referral(&caller.actor(), patient_id, request)
        .await?;
    Ok((StatusCode::CREATED, Json(share)))
}

/// Accepts a referral the care team proposed (patients): it opens from now.
#[utoipa::path(post, path = "/api/v1/me/shares/{share_id}/accept", tag = "sharing",
    params(("share_id" = uuid::Uuid, Path, description = "The share")),
    responses((status = 200, description = "The share, now open", body = Share)))]
pub(crate) async fn accept_share(
    State(state): State<AppState>,
    caller: Caller,
    SharePath(share_id): SharePath,
) -> Result<Json<Share>, ApiError> {
    Ok(Json(
        state
            .service
            .accept_share(&caller.actor(), share_id)
            .await?,
    ))
}

/// The shares live now with the caller (specialists), each with its patient, categories,
/// window and expiry.
#[utoipa::path(get, path = "/api/v1/me/shared-with-me", tag = "sharing",
    responses((status = 200, description = "Live shares with the caller", body = Vec<Share>)))]
pub(crate) async fn shares_with_me(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Share>>, ApiError> {
    Ok(Json(state.service.shares_with_me(&caller.actor()).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CreateShare {
    /// The specialist's Wardline user name; or leave it out and set `link`.
    #[schema(min_length = 3, max_length = 64)]
    grantee_username: Option<String>,
    /// A link with a passcode for someone without an account, instead of a specialist.
    link: Option<LinkOptions>,
    /// What the specialist may see.
    #[schema(min_items = 1)]
    categories: Vec<ShareCategory>,
    /// The data measured in the last so many days, and from then on while the share
    /// lasts. Give this, or `data_from` and `data_to`.
    #[schema(minimum = 1, maximum = 3650)]
    data_last_days: Option<i64>,
    /// The start of a fixed window of data (with `data_to`).
    data_from: Option<DateTime<Utc>>,
    /// The end of a fixed window of data (with `data_from`).
    data_to: Option<DateTime<Utc>>,
    /// Days until the share ends (default 30; at most the server's `access.max_share_days`).
    #[schema(minimum = 1, maximum = 365)]
    expires_in_days: Option<i64>,
    /// A note for the specialist.
    #[schema(schema_with = wardline_domain::text_schema::trimmed_text_between::<0, 500>)]
    message: Option<String>,
}

impl CreateShare {
    /// The service's request: to a specialist or by a link (one of the two), and a
    /// fixed window given whole.
    fn into_service(self) -> Result<ShareRequest, ApiError> {
        let to = match (self.grantee_username, self.link) {
            (Some(username), None) => ShareTo::Specialist(username),
            (None, Some(link)) => ShareTo::Link {
                single_use: link.single_use,
            },
            _ => {
                return Err(wardline_service::Error::invalid(
                    "grantee_username",
                    "give a specialist's user name or `link`, one of the two",
                )
                .into());
            }
        };
        let data_range = match (self.data_from, self.data_to) {
            (Some(from), Some(to)) => Some((from, to)),
            (None, None) => None,
            _ => {
                return Err(wardline_service::Error::invalid(
                    "data_from",
                    "data_from and data_to go together",
                )
                .into());
            }
        };
        Ok(ShareRequest {
            to,
            categories: self.categories,
            data_last_days: self.data_last_days,
            data_range,
            expires_in_days: self.expires_in_days,
            message: self.message,
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct LinkOptions {
    /// The link opens once.
    #[serde(default)]
    single_use: bool,
}

/// Shares part of the caller's own record (patients) with a specialist, or by a link
/// with a passcode: categories of data, a window of time the data was measured in, and
/// an expiry. A link's token and passcode are in the answer this once; give them
/// separately. Reads through a share are audited with its id and appear in the
/// patient's access log.
#[utoipa::path(post, path = "/api/v1/me/shares", tag = "sharing",
    request_body = CreateShare,
    responses((status = 201, description = "The share, live until `expires`", body = CreatedShare)))]
pub(crate) async fn create_share(
    State(state): State<AppState>,
    caller: Caller,
    Body(request): Body<CreateShare>,
) -> Result<(StatusCode, Json<CreatedShare>), ApiError> {
    let request = request.into_service()?;
    let share = state.service.create_share(&caller.actor(), request).await?;
    Ok((StatusCode::CREATED, Json(share)))
}

/// Every share of the caller's own record (patients), newest first: live, expired and
/// revoked.
#[utoipa::path(get, path = "/api/v1/me/shares", tag = "sharing",
    responses((status = 200, description = "The shares", body = Vec<Share>)))]
pub(crate) async fn own_shares(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Share>>, ApiError> {
    Ok(Json(state.service.own_shares(&caller.actor()).await?))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct OpenLink {
    /// The token from the link's address.
    #[schema(min_length = 1, max_length = 200)]
    token: String,
    /// The passcode the patient gave separately.
    #[schema(min_length = 1, max_length = 100)]
    passcode: String,
}

impl std::fmt::Debug for OpenLink {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("OpenLink(…)")
    }
}

/// Opens a share link with its passcode, without an account: exactly the shared
/// categories, measured in the shared window. A wrong passcode answers `bad_passcode`
/// with the attempts left; the fifth disables the link. An expired, revoked, used
/// (single-use) or disabled link answers `share_link_closed`, saying which.
#[utoipa::path(post, path = "/api/v1/share-links/open", tag = "sharing",
    request_body = OpenLink,
    responses((status = 200, description = "What the link shares", body = SharedRecord)))]
pub(crate) async fn open_share_link(
    State(state): State<AppState>,
    Remote(remote): Remote,
    Body(request): Body<OpenLink>,
) -> Result<Json<SharedRecord>, ApiError> {
    Ok(Json(
        state
            .service
            .open_share_link(&request.token, request.passcode, remote)
            .await?,
    ))
}

/// Ends one of the caller's shares at once (patients).
#[utoipa::path(post, path = "/api/v1/me/shares/{share_id}/revoke", tag = "sharing",
    params(("share_id" = uuid::Uuid, Path, description = "The share")),
    responses((status = 204, description = "Revoked")))]
pub(crate) async fn revoke_share(
    State(state): State<AppState>,
    caller: Caller,
    SharePath(share_id): SharePath,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .revoke_share(&caller.actor(), share_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
