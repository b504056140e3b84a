//! Nightscout sites: the management routes a patient or their care team uses (enable,
//! list, revoke), and the Nightscout API v1 that uploader and follower apps call under
//! the site's URL (`/ns/{site}/api/v1/…`), authenticated by the site's API secret. The
//! rules are the service's (`wardline_service::nightscout`).

use axum::Json;
use axum::extract::FromRequestParts;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_domain::PatientId;
use wardline_domain::nightscout::query::parse_query;
use wardline_domain::nightscout::{Collection, is_object_id};
use wardline_service::{Actor, Error};
use wardline_store::{DeviceStatus, NightscoutSite};

use crate::error::ApiError;
use crate::extract::{Caller, Id, remote_addr};
use crate::state::AppState;

/// The most bytes one upload may have: a hundred Loop device statuses with their
/// predictions.
pub(crate) const MAX_UPLOAD_BYTES: usize = 8 * 1024 * 1024;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enable_site, list_sites))
        .routes(routes!(revoke_site))
        .routes(routes!(patient_documents))
}

pub(crate) fn protocol_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(read_resource, upload))
        .routes(routes!(read_resource_part))
}

/// A site as its patient and care team see it (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SiteBody {
    /// The name in the site's URL.
    site: String,
    /// What the uploader apps are given as their Nightscout URL.
    url: String,
    /// The uploader device that holds the credential.
    device_id: String,
    created: DateTime<Utc>,
    /// Uploads measured before this are refused.
    accepts_from: DateTime<Utc>,
    revoked: bool,
}

fn site_body(state: &AppState, site: NightscoutSite) -> SiteBody {
    SiteBody {
        url: format!("{}/ns/{}", state.settings.http_url, site.id),
        site: site.id,
        device_id: site.device_id.to_string(),
        created: site.created,
        accepts_from: site.accepts_from,
        revoked: site.device_status == DeviceStatus::Revoked,
    }
}

/// A new site and its secret, shown only now.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EnabledSiteBody {
    #[serde(flatten)]
    site: SiteBody,
    /// The API secret to type into the app (xDrip+, AndroidAPS, Loop, Trio) with the
    /// URL; Wardline keeps only hashes of it.
    api_secret: String,
}

/// Enables a Nightscout site for the patient (the patient, or a clinician or nurse of
/// their care team): the URL and API secret for their uploader apps, the secret shown
/// only now.
#[utoipa::path(post, path = "/api/v1/patients/{patient_id}/nightscout-sites", tag = "nightscout",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    responses((status = 201, description = "The site and its secret", body = EnabledSiteBody)))]
pub(crate) async fn enable_site(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
) -> Result<(StatusCode, Json<EnabledSiteBody>), ApiError> {
    let enabled = state
        .service
        .enable_nightscout(&caller.actor(), patient_id)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(EnabledSiteBody {
            api_secret: enabled.secret.expose().to_owned(),
            site: site_body(&state, enabled.site),
        }),
    ))
}

/// The patient's Nightscout sites, live and revoked.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/nightscout-sites", tag = "nightscout",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    responses((status = 200, description = "Newest first", body = Vec<SiteBody>)))]
pub(crate) async fn list_sites(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
) -> Result<Json<Vec<SiteBody>>, ApiError> {
    let sites = state
        .service
        .nightscout_sites(&caller.actor(), patient_id)
        .await?;
    Ok(Json(
        sites
            .into_iter()
            .map(|site| site_body(&state, site))
            .collect(),
    ))
}

/// Ends a site: its secret stops working at once; what it uploaded stays.
#[utoipa::path(post, path = "/api/v1/patients/{patient_id}/nightscout-sites/{site}/revoke", tag = "nightscout",
    params(("patient_id" = PatientId, Path, description = "The patient"),
        ("site" = String, Path, description = "The site's name")),
    responses((status = 204, description = "Revoked")))]
pub(crate) async fn revoke_site(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Path((_, site)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .revoke_nightscout_site(&caller.actor(), patient_id, &site)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DocumentParams {
    /// How many, newest first (default 20, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    count: Option<u32>,
    /// RFC 3339: only documents of this time or later.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
}

/// What the patient's diabetes apps uploaded, as the patient and their care team read
/// it: `treatments` (insulin, carbohydrate, temporary basal, overrides, notes),
/// `devicestatus` (pump battery and reservoir, loop state), `entries` or `profile`,
/// newest first. Never through a share.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/nightscout/{collection}", tag = "nightscout",
    params(("patient_id" = PatientId, Path, description = "The patient"),
        ("collection" = String, Path, description = "treatments, devicestatus, entries or profile",
            pattern = "^(treatments|devicestatus|entries|profile)$"),
        DocumentParams),
    responses((status = 200, description = "The documents as the apps sent them, newest first", body = Vec<Object>)))]
pub(crate) async fn patient_documents(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Path((_, collection)): Path<(String, String)>,
    crate::extract::Params(params): crate::extract::Params<DocumentParams>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let collection = Collection::parse(&collection).ok_or_else(|| {
        Error::invalid(
            "collection",
            format!("{collection:?} is not a Nightscout collection (treatments, devicestatus, entries, profile)"),
        )
    })?;
    let count = params.count.unwrap_or(20);
    if !(1..=1000).contains(&count) {
        return Err(Error::invalid("count", "1 to 1000").into());
    }
    let mut query = parse_query(collection, &[], None).map_err(Error::from)?;
    query.count = count as usize;
    query.from_ms = crate::extract::optional_time("from", params.from.as_deref())?
        .map(|from| from.timestamp_millis());
    Ok(Json(
        state
            .service
            .nightscout_read(&caller.actor(), patient_id, collection, &query, None)
            .await?,
    ))
}

/// An uploader app, authenticated by its site's API secret: the SHA-1 or SHA-512 of it
/// in hexadecimal, in the `api-secret` header or the `secret` or `token` query
/// parameter (Nightscout's three places).
pub(crate) struct Uploader(Actor);

/// What the request presents as the site's secret, if anything.
fn presented_secret(parts: &Parts) -> Option<String> {
    if let Some(header) = parts
        .headers
        .get("api-secret")
        .and_then(|value| value.to_str().ok())
    {
        return Some(header.trim().to_owned());
    }
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        .ok()?
        .0
        .into_iter()
        .find(|(name, _)| name == "secret" || name == "token")
        .map(|(_, value)| value)
}

async fn site_of(parts: &mut Parts, state: &AppState) -> Result<String, ApiError> {
    crate::extract::path_text(parts, state, "site").await
}

impl FromRequestParts<AppState> for Uploader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let site = site_of(parts, state).await?;
        let actor = state
            .service
            .authenticate_nightscout(
                &site,
                presented_secret(parts).as_deref(),
                remote_addr(parts),
            )
            .await?;
        Ok(Uploader(actor))
    }
}

/// The uploader's patient.
fn patient_of(actor: &Actor) -> Result<PatientId, Error> {
    match actor {
        Actor::Uploader(uploader) => Ok(uploader.patient_id),
        _ => Err(Error::Unauthenticated),
    }
}

/// What `/api/v1/{resource}` names, `.json` or not.
enum Resource {
    Documents(Collection),
    Status,
    VerifyAuth,
}

fn resource(name: &str) -> Result<Resource, Error> {
    let name = name.strip_suffix(".json").unwrap_or(name);
    if let Some(collection) = Collection::parse(name) {
        return Ok(Resource::Documents(collection));
    }
    match name {
        "status" => Ok(Resource::Status),
        "verifyauth" => Ok(Resource::VerifyAuth),
        _ => Err(Error::NotFound(format!(
            "Nightscout resource {name:?} (entries, treatments, devicestatus, profile, status and verifyauth are served)"
        ))),
    }
}

/// What a live site says about itself, as Nightscout's `status.json` does.
fn status_body() -> Value {
    let now = Utc::now();
    json!({
        "status": "ok",
        "name": "Wardline",
        "version": env!("CARGO_PKG_VERSION"),
        "serverTime": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "serverTimeEpoch": now.timestamp_millis(),
        "apiEnabled": true,
        "careportalEnabled": false,
        "boluscalcEnabled": false,
        "settings": {
            "units": "mg/dl",
            "timeFormat": 24,
            "authDefaultRoles": "denied",
            "enable": ["careportal"],
        },
        "extendedSettings": {},
        "authorized": null,
    })
}

/// Reads a collection (`entries`, `treatments`, `devicestatus`, `profile`, each also
/// with `.json`) with Nightscout's `count` and `find[field]`, `find[field][$gte]`, …
/// parameters, newest first; or the site's `status`, or `verifyauth`.
#[utoipa::path(get, path = "/ns/{site}/api/v1/{resource}", tag = "nightscout",
    params(("site" = String, Path, description = "The site's name"),
        ("resource" = String, Path, description = "entries, treatments, devicestatus, profile, status or verifyauth, each also with .json"),
        ("count" = Option<u32>, Query, description = "How many documents (default 10 for entries and device status, 100 otherwise)")),
    responses((status = 200, description = "Documents newest first, or the status", body = Object)),
    security(("nightscout_secret" = [])))]
pub(crate) async fn read_resource(
    State(state): State<AppState>,
    Path((site, name)): Path<(String, String)>,
    parts: Parts,
) -> Result<Json<Value>, ApiError> {
    let resource = resource(&name)?;
    let authenticated = state
        .service
        .authenticate_nightscout(
            &site,
            presented_secret(&parts).as_deref(),
            remote_addr(&parts),
        )
        .await;
    let actor = match (resource, authenticated) {
        // Nightscout answers an unauthorised verifyauth with a message, not a 401:
        // uploaders read it to tell the user their secret is wrong.
        (Resource::VerifyAuth, Err(Error::Unauthenticated)) => {
            return Ok(Json(json!({"status": 200, "message": {
                "message": "UNAUTHORIZED", "rolefound": "NOTFOUND", "isAdmin": false,
                "canRead": false, "canWrite": false, "permissions": "DEFAULT"}})));
        }
        (_, Err(error)) => return Err(error.into()),
        (Resource::VerifyAuth, Ok(_)) => {
            return Ok(Json(json!({"status": 200, "message": {
                "message": "OK", "rolefound": "FOUND", "isAdmin": false,
                "canRead": true, "canWrite": true, "permissions": "ROLE"}})));
        }
        (Resource::Status, Ok(_)) => return Ok(Json(status_body())),
        (Resource::Documents(collection), Ok(actor)) => (collection, actor),
    };
    let (collection, actor) = actor;
    let query = parse_query(collection, &crate::extract::query_pairs(&parts.uri)?, None)
        .map_err(Error::from)?;
    let documents = state
        .service
        .nightscout_read(&actor, patient_of(&actor)?, collection, &query, None)
        .await?;
    Ok(Json(Value::Array(documents)))
}

/// Reads part of a collection: `entries/current` (the newest sensor glucose),
/// `entries/sgv`, `entries/mbg`, `entries/cal` (each also with `.json`, and the query
/// parameters of the collection), a document by its `_id`
/// (`entries/65a5…`, `treatments/65a5…`), or `experiments/test`, which uploaders call to
/// check their secret.
#[utoipa::path(get, path = "/ns/{site}/api/v1/{resource}/{part}", tag = "nightscout",
    params(("site" = String, Path, description = "The site's name"),
        ("resource" = String, Path, description = "entries, treatments, devicestatus, profile or experiments"),
        ("part" = String, Path, description = "current, sgv, mbg, cal, an _id, or test (experiments)")),
    responses((status = 200, description = "Documents newest first", body = Object)),
    security(("nightscout_secret" = [])))]
pub(crate) async fn read_resource_part(
    State(state): State<AppState>,
    Path((_, name, part)): Path<(String, String, String)>,
    Uploader(actor): Uploader,
    parts: Parts,
) -> Result<Json<Value>, ApiError> {
    if name == "experiments" && part == "test" {
        return Ok(Json(json!({"status": "ok"})));
    }
    let Resource::Documents(collection) = resource(&name)? else {
        return Err(Error::NotFound(format!("Nightscout resource {name}/{part}")).into());
    };
    let part = part.strip_suffix(".json").unwrap_or(&part);
    let pairs = crate::extract::query_pairs(&parts.uri)?;
    let (query, id) = match (collection, part) {
        (Collection::Entries, "current") => {
            let mut query = parse_query(collection, &pairs, Some("sgv")).map_err(Error::from)?;
            query.count = 1;
            (query, None)
        }
        (Collection::Entries, kind @ ("sgv" | "mbg" | "cal")) => (
            parse_query(collection, &pairs, Some(kind)).map_err(Error::from)?,
            None,
        ),
        (_, id) if is_object_id(id) => (
            parse_query(collection, &[], None).map_err(Error::from)?,
            Some(id.to_ascii_lowercase()),
        ),
        _ => {
            return Err(Error::NotFound(format!(
                "Nightscout {}/{part} (current, sgv, mbg, cal or a 24-digit _id)",
                collection.as_str()
            ))
            .into());
        }
    };
    let documents = state
        .service
        .nightscout_read(
            &actor,
            patient_of(&actor)?,
            collection,
            &query,
            id.as_deref(),
        )
        .await?;
    Ok(Json(Value::Array(documents)))
}

/// Uploads one document or an array of them (at most 1,000, 8 MiB) to `entries`,
/// `treatments`, `devicestatus` or `profile` (one), each also with `.json`. Answers
/// only after the durable commit, with an array in the request's order: each document
/// as kept, with its `_id` (a re-sent one as it was kept the first time), or, in the
/// place of a refused one, `{"ok": 0, "field", "message"}`. When every document is
/// refused the upload is refused (400) naming the first one's field and reason.
#[utoipa::path(post, path = "/ns/{site}/api/v1/{resource}", tag = "nightscout",
    params(("site" = String, Path, description = "The site's name"),
        ("resource" = String, Path, description = "entries, treatments, devicestatus or profile, each also with .json")),
    request_body(content = Object, description = "A Nightscout document or an array of them", content_type = "application/json"),
    responses((status = 200, description = "Durably stored, in the request's order", body = Object)),
    security(("nightscout_secret" = [])))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    Path((_, name)): Path<(String, String)>,
    Uploader(actor): Uploader,
    body: axum::body::Body,
) -> Result<Json<Value>, ApiError> {
    let Resource::Documents(collection) = resource(&name)? else {
        return Err(Error::MethodNotAllowed.into());
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_UPLOAD_BYTES).await else {
        return Err(Error::PayloadTooLarge {
            limit: MAX_UPLOAD_BYTES,
        }
        .into());
    };
    let answer = state
        .service
        .nightscout_upload(&actor, collection, &body)
        .await?;
    Ok(Json(Value::Array(answer)))
}
