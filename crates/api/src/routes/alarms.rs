//! Care plans, alarms and their notifications.

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use utoipa::openapi::{RefOr, schema::Schema};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_alarms::{AlarmAction, CarePlanRequest};
use wardline_alerting::EscalationPolicy;
use wardline_domain::{CareTeamId, PatientId};
use wardline_service::Error;
use wardline_service::alarms::{AlarmStreamEvent, AlarmView, DeliveryView, NewChannel};
use wardline_store::{CarePlanVersionRecord, NotificationChannel};

use super::clinical::window;
use crate::error::ApiError;
use crate::extract::{
    AlarmPath, Body, Caller, ChannelPath, Id, NotificationPath, Params, optional_time,
};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_care_plan, put_care_plan))
        .routes(routes!(care_plan_versions))
        .routes(routes!(new_care_plan_defaults))
        .routes(routes!(patient_alarms))
        .routes(routes!(inbox))
        .routes(routes!(get_alarm))
        .routes(routes!(acknowledge))
        .routes(routes!(resolve))
        .routes(routes!(snooze))
        .routes(routes!(get_escalation_policy, put_escalation_policy))
        .routes(routes!(list_channels, create_channel))
        .routes(routes!(remove_channel))
        .routes(routes!(dead_letters))
        .routes(routes!(retry_dead_letter))
}

pub(crate) fn stream_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AtParams {
    /// RFC 3339: the version in force then; the newest when absent.
    #[param(value_type = Option<String>, format = DateTime)]
    at: Option<String>,
}

/// The rules the patient's programme has by default that their care plan has never had
/// (added to the programme after the patient was enrolled, such as a new rhythm finding):
/// for the care team to add with `PUT …/care-plan` (`edit: {add: …}`) if they choose.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/care-plan/new-defaults", tag = "care plans",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    responses((status = 200, description = "Rules to consider", body = [wardline_alerting::Rule])))]
pub(crate) async fn new_care_plan_defaults(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
) -> Result<Json<Vec<wardline_alerting::Rule>>, ApiError> {
    Ok(Json(
        state
            .service
            .new_care_plan_defaults(&caller.actor(), patient_id)
            .await?,
    ))
}

/// The patient's care plan (the version in force at a time, or the newest).
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/care-plan", tag = "care plans",
    params(("patient_id" = PatientId, Path, description = "The patient"), AtParams),
    responses((status = 200, description = "A version of the care plan", body = CarePlanVersionRecord)))]
pub(crate) async fn get_care_plan(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Params(params): Params<AtParams>,
) -> Result<Json<CarePlanVersionRecord>, ApiError> {
    let at = optional_time("at", params.at.as_deref())?;
    Ok(Json(
        state
            .service
            .care_plan(&caller.actor(), patient_id, at)
            .await?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CarePlanVersions {
    /// Oldest first.
    versions: Vec<CarePlanVersionRecord>,
}

/// Every version of the patient's care plan, with who changed what, when and why.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/care-plan/versions", tag = "care plans",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    responses((status = 200, description = "The versions", body = CarePlanVersions)))]
pub(crate) async fn care_plan_versions(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
) -> Result<Json<CarePlanVersions>, ApiError> {
    Ok(Json(CarePlanVersions {
        versions: state
            .service
            .care_plan_versions(&caller.actor(), patient_id)
            .await?,
    }))
}

/// Changes the care plan: a programme's defaults (a clinician or nurse on the care team,
/// or an admin) or one rule edit (a clinician or nurse on the care team), always with a
/// reason. Evaluated from now on.
#[utoipa::path(put, path = "/api/v1/patients/{patient_id}/care-plan", tag = "care plans",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    request_body = CarePlanRequest,
    responses((status = 200, description = "The new version", body = CarePlanVersionRecord)))]
pub(crate) async fn put_care_plan(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Body(request): Body<CarePlanRequest>,
) -> Result<Json<CarePlanVersionRecord>, ApiError> {
    Ok(Json(
        state
            .service
            .set_care_plan(&caller.actor(), patient_id, request)
            .await?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AlarmList {
    alarms: Vec<AlarmView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InboxParams {
    /// `open`, `acknowledged`, `snoozed`, `resolved` (comma-separated), `unresolved`
    /// (the default) or `all`.
    #[param(
        pattern = "^(all|unresolved|(open|acknowledged|snoozed|resolved)(,(open|acknowledged|snoozed|resolved))*)$"
    )]
    state: Option<String>,
    /// 1 to 1000 (default 200).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// The caller's alarm inbox across their patients, newest first.
#[utoipa::path(get, path = "/api/v1/alarms", tag = "alarms",
    params(InboxParams),
    responses((status = 200, description = "Alarms", body = AlarmList)))]
pub(crate) async fn inbox(
    State(state): State<AppState>,
    caller: Caller,
    Params(params): Params<InboxParams>,
) -> Result<Json<AlarmList>, ApiError> {
    Ok(Json(AlarmList {
        alarms: state
            .service
            .inbox(&caller.actor(), params.state.as_deref(), params.limit)
            .await?,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryParams {
    /// RFC 3339: raised at or after.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// RFC 3339: raised before.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// As for the inbox; every state when absent.
    #[param(
        pattern = "^(all|unresolved|(open|acknowledged|snoozed|resolved)(,(open|acknowledged|snoozed|resolved))*)$"
    )]
    state: Option<String>,
    /// 1 to 500 (default 100): the newest this many; with every state, every unresolved
    /// alarm of the period besides, however old.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// A patient's alarms raised in a period, newest first, each with its history. Without
/// a state filter every unresolved alarm is listed whatever the limit, so that a flood of
/// newer resolved ones never hides an open one.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/alarms", tag = "alarms",
    params(("patient_id" = PatientId, Path, description = "The patient"), HistoryParams),
    responses((status = 200, description = "Alarms with their events", body = AlarmList)))]
pub(crate) async fn patient_alarms(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Params(params): Params<HistoryParams>,
) -> Result<Json<AlarmList>, ApiError> {
    let window = window(params.from.as_deref(), params.to.as_deref())?;
    Ok(Json(AlarmList {
        alarms: state
            .service
            .patient_alarms(
                &caller.actor(),
                patient_id,
                window,
                params.state.as_deref(),
                params.limit,
            )
            .await?,
    }))
}

/// One alarm with its history, its deliveries and the care plan version that raised it.
#[utoipa::path(get, path = "/api/v1/alarms/{alarm_id}", tag = "alarms",
    params(("alarm_id" = String, Path, description = "The alarm's handle (its `id`)", pattern = "^[0-9A-Fa-f]{1,64}$")),
    responses((status = 200, description = "The alarm", body = AlarmView)))]
pub(crate) async fn get_alarm(
    State(state): State<AppState>,
    caller: Caller,
    AlarmPath(alarm_id): AlarmPath,
) -> Result<Json<AlarmView>, ApiError> {
    Ok(Json(state.service.alarm(&caller.actor(), &alarm_id).await?))
}

/// Acknowledges an alarm (a clinician, nurse or admin of the patient's care team): its
/// escalation stops.
#[utoipa::path(post, path = "/api/v1/alarms/{alarm_id}/acknowledge", tag = "alarms",
    params(("alarm_id" = String, Path, description = "The alarm's handle (its `id`)", pattern = "^[0-9A-Fa-f]{1,64}$")),
    responses((status = 200, description = "The alarm, acknowledged", body = AlarmView)))]
pub(crate) async fn acknowledge(
    State(state): State<AppState>,
    caller: Caller,
    AlarmPath(alarm_id): AlarmPath,
) -> Result<Json<AlarmView>, ApiError> {
    Ok(Json(
        state
            .service
            .act_on_alarm(&caller.actor(), &alarm_id, AlarmAction::Acknowledge)
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ResolveRequest {
    /// Why it is resolved: 1 to 2000 characters once trimmed of white space.
    #[schema(schema_with = crate::schemas::trimmed_text::<2000>)]
    note: String,
}

/// Resolves an alarm, with a note.
#[utoipa::path(post, path = "/api/v1/alarms/{alarm_id}/resolve", tag = "alarms",
    params(("alarm_id" = String, Path, description = "The alarm's handle (its `id`)", pattern = "^[0-9A-Fa-f]{1,64}$")),
    request_body = ResolveRequest,
    responses((status = 200, description = "The alarm, resolved", body = AlarmView)))]
pub(crate) async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    AlarmPath(alarm_id): AlarmPath,
    Body(request): Body<ResolveRequest>,
) -> Result<Json<AlarmView>, ApiError> {
    Ok(Json(
        state
            .service
            .act_on_alarm(
                &caller.actor(),
                &alarm_id,
                AlarmAction::Resolve { note: request.note },
            )
            .await?,
    ))
}

/// `minutes` or `seconds`, not both; its schema is written out in `schemas`.
#[derive(Debug, Deserialize)]
pub(crate) struct SnoozeRequest {
    minutes: Option<f64>,
    seconds: Option<i64>,
}

impl utoipa::PartialSchema for SnoozeRequest {
    fn schema() -> RefOr<Schema> {
        crate::schemas::snooze_request()
    }
}

impl ToSchema for SnoozeRequest {}

/// Pauses an alarm's notifications for a while (at most 30, 60 or 240 minutes for high,
/// medium and low priority); it comes back, notified again, when the snooze ends.
#[utoipa::path(post, path = "/api/v1/alarms/{alarm_id}/snooze", tag = "alarms",
    params(("alarm_id" = String, Path, description = "The alarm's handle (its `id`)", pattern = "^[0-9A-Fa-f]{1,64}$")),
    request_body = SnoozeRequest,
    responses((status = 200, description = "The alarm, snoozed", body = AlarmView)))]
pub(crate) async fn snooze(
    State(state): State<AppState>,
    caller: Caller,
    AlarmPath(alarm_id): AlarmPath,
    Body(request): Body<SnoozeRequest>,
) -> Result<Json<AlarmView>, ApiError> {
    let secs = match (request.seconds, request.minutes) {
        (Some(secs), None) => secs,
        (None, Some(minutes)) if minutes.is_finite() && minutes > 0.0 && minutes < 1e6 => {
            (minutes * 60.0).round() as i64
        }
        _ => {
            return Err(Error::invalid(
                "minutes",
                "give `minutes` or `seconds`, a positive duration",
            )
            .into());
        }
    };
    Ok(Json(
        state
            .service
            .act_on_alarm(&caller.actor(), &alarm_id, AlarmAction::Snooze { secs })
            .await?,
    ))
}

/// Server-Sent Events: an `alarm` event for each change to an alarm of the caller's
/// patients, `lagged` when the client fell behind and should re-read its inbox, and
/// `ended` last when the session or the access to one of the patients ended.
#[utoipa::path(get, path = "/api/v1/alarms/stream", tag = "alarms",
    responses((status = 200, description = "An event stream of AlarmStreamEvent", content_type = "text/event-stream", body = AlarmStreamEvent)))]
pub(crate) async fn stream(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let opened = state.service.open_alarm_stream(&caller.actor()).await?;
    let ended = state
        .service
        .stream_ended(caller.0, opened.patients.clone());
    let feed = BroadcastStream::new(opened.events.resubscribe());
    let events = feed.filter_map(move |item| match item {
        Ok(event) => opened.view(&event).map(|view| {
            Ok(Event::default()
                .event("alarm")
                .json_data(&view)
                .unwrap_or_else(|_| Event::default().event("error")))
        }),
        // The client fell behind; it should re-read its inbox.
        Err(BroadcastStreamRecvError::Lagged(skipped)) => Some(Ok(Event::default()
            .event("lagged")
            .data(skipped.to_string()))),
    });
    // Until the caller's session or access to any of the patients ends.
    let events = crate::streams::live_stream(events, ended);
    Ok(Sse::new(events))
}

/// Sets a care team's escalation policy (admin).
#[utoipa::path(put, path = "/api/v1/care-teams/{team_id}/escalation-policy", tag = "care teams",
    params(("team_id" = CareTeamId, Path, description = "The care team")),
    request_body = EscalationPolicy,
    responses((status = 200, description = "The policy in force", body = EscalationPolicy)))]
pub(crate) async fn put_escalation_policy(
    State(state): State<AppState>,
    caller: Caller,
    Id(team): Id<CareTeamId>,
    Body(policy): Body<EscalationPolicy>,
) -> Result<Json<EscalationPolicy>, ApiError> {
    Ok(Json(
        state
            .service
            .set_escalation_policy(&caller.actor(), team, policy)
            .await?,
    ))
}

/// A care team's escalation policy (admin).
#[utoipa::path(get, path = "/api/v1/care-teams/{team_id}/escalation-policy", tag = "care teams",
    params(("team_id" = CareTeamId, Path, description = "The care team")),
    responses((status = 200, description = "The policy", body = EscalationPolicy)))]
pub(crate) async fn get_escalation_policy(
    State(state): State<AppState>,
    caller: Caller,
    Id(team): Id<CareTeamId>,
) -> Result<Json<EscalationPolicy>, ApiError> {
    Ok(Json(
        state
            .service
            .escalation_policy(&caller.actor(), team)
            .await?,
    ))
}

/// A webhook or an e-mail channel; its schema is written out in `schemas`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelRequest {
    /// `webhook` or `email`.
    kind: String,
    /// For a webhook: an https:// URL (http:// only to localhost).
    url: Option<String>,
    /// For e-mail: 1 to 50 addresses.
    recipients: Option<Vec<String>>,
    /// Send only "alarm X for patient Y, open Wardline" (the default).
    minimal: Option<bool>,
}

impl utoipa::PartialSchema for ChannelRequest {
    fn schema() -> RefOr<Schema> {
        crate::schemas::channel_request()
    }
}

impl ToSchema for ChannelRequest {}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedChannel {
    channel: NotificationChannel,
    /// A webhook's signing secret, shown only now.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChannelList {
    channels: Vec<NotificationChannel>,
}

/// Adds a webhook or e-mail channel to a care team (admin). A webhook's signing secret
/// is generated and returned only in this response.
#[utoipa::path(post, path = "/api/v1/care-teams/{team_id}/notification-channels", tag = "care teams",
    params(("team_id" = CareTeamId, Path, description = "The care team")),
    request_body = ChannelRequest,
    responses((status = 201, description = "The channel", body = CreatedChannel)))]
pub(crate) async fn create_channel(
    State(state): State<AppState>,
    caller: Caller,
    Id(team): Id<CareTeamId>,
    Body(request): Body<ChannelRequest>,
) -> Result<(StatusCode, Json<CreatedChannel>), ApiError> {
    let minimal = request.minimal.unwrap_or(true);
    let channel = match request.kind.as_str() {
        "webhook" => NewChannel::Webhook {
            url: request
                .url
                .ok_or_else(|| Error::invalid("url", "a webhook needs a url"))?,
            minimal,
        },
        "email" => NewChannel::Email {
            recipients: request.recipients.unwrap_or_default(),
            minimal,
        },
        _ => return Err(Error::invalid("kind", "webhook or email").into()),
    };
    let (channel, secret) = state
        .service
        .create_channel(&caller.actor(), team, channel)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedChannel { channel, secret }),
    ))
}

/// A care team's channels in use (admin).
#[utoipa::path(get, path = "/api/v1/care-teams/{team_id}/notification-channels", tag = "care teams",
    params(("team_id" = CareTeamId, Path, description = "The care team")),
    responses((status = 200, description = "Channels", body = ChannelList)))]
pub(crate) async fn list_channels(
    State(state): State<AppState>,
    caller: Caller,
    Id(team): Id<CareTeamId>,
) -> Result<Json<ChannelList>, ApiError> {
    Ok(Json(ChannelList {
        channels: state.service.channels(&caller.actor(), team).await?,
    }))
}

/// Stops using a channel (admin); its past deliveries stay.
#[utoipa::path(delete, path = "/api/v1/care-teams/{team_id}/notification-channels/{channel_id}", tag = "care teams",
    params(("team_id" = CareTeamId, Path, description = "The care team"), ("channel_id" = String, Path, description = "The channel")),
    responses((status = 204, description = "Removed")))]
pub(crate) async fn remove_channel(
    State(state): State<AppState>,
    caller: Caller,
    Id(team): Id<CareTeamId>,
    ChannelPath(channel_id): ChannelPath,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .remove_channel(&caller.actor(), team, &channel_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeadLetterParams {
    /// 1 to 1000 (default 100); a number outside is taken as the nearer of the two.
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetters {
    dead_letters: Vec<DeliveryView>,
}

/// Notifications given up after the retry horizon (admin), without their content.
#[utoipa::path(get, path = "/api/v1/notifications/dead-letters", tag = "notifications",
    params(DeadLetterParams),
    responses((status = 200, description = "Dead letters, newest first", body = DeadLetters)))]
pub(crate) async fn dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    Params(params): Params<DeadLetterParams>,
) -> Result<Json<DeadLetters>, ApiError> {
    Ok(Json(DeadLetters {
        dead_letters: state
            .service
            .dead_letters(&caller.actor(), params.limit)
            .await?,
    }))
}

/// Puts a dead letter back in the outbox (admin).
#[utoipa::path(post, path = "/api/v1/notifications/{notification_id}/retry", tag = "notifications",
    params(("notification_id" = i64, Path, description = "The outbox entry")),
    responses((status = 204, description = "Queued again")))]
pub(crate) async fn retry_dead_letter(
    State(state): State<AppState>,
    caller: Caller,
    NotificationPath(key): NotificationPath,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .retry_dead_letter(&caller.actor(), key)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
