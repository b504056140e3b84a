//! Care plans, alarms and their notifications. Every read of a patient's plan or alarms
//! goes through the access module; acting on an alarm needs the patient's care team.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::Utc;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use wardline_alarms::CarePlanRequest;
use wardline_alerting::EscalationPolicy;
use wardline_domain::{CareTeamId, PatientId, Role, UserId};
use wardline_store::{
    AlarmQuery, AlarmRecord, AuditOutcome, NotificationChannel, NotificationQuery,
    NotificationRecord,
};

use super::{Body, Params, optional_time, parse_id, users_by_id};
use crate::access::{audit, authorize_own_patients, authorize_patient, require_admin};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub(crate) struct AtParams {
    at: Option<String>,
}

pub(crate) async fn get_care_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient_id): Path<String>,
    Params(params): Params<AtParams>,
) -> Result<Json<Value>, ApiError> {
    let patient_id: PatientId = parse_id("patient_id", &patient_id)?;
    let at = optional_time("at", params.at.as_deref())?;
    let access = authorize_patient(&state, &caller, patient_id, "care_plan.read", None).await?;
    let versions = state.store.care_plan_versions(access.patient_id()).await?;
    let version = match at {
        Some(at) => versions.into_iter().rev().find(|v| v.effective <= at),
        None => versions.into_iter().last(),
    };
    version
        .map(|version| Json(json!(version)))
        .ok_or_else(|| ApiError::NotFound("care plan".into()))
}

pub(crate) async fn care_plan_versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let patient_id: PatientId = parse_id("patient_id", &patient_id)?;
    let access = authorize_patient(&state, &caller, patient_id, "care_plan.versions", None).await?;
    let versions = state.store.care_plan_versions(access.patient_id()).await?;
    Ok(Json(json!({ "versions": versions })))
}

/// A programme's defaults (clinician or nurse on the care team, or an admin), or one rule
/// edit (clinician or nurse on the care team), always with a reason.
pub(crate) async fn put_care_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient_id): Path<String>,
    Body(request): Body<CarePlanRequest>,
) -> Result<Json<Value>, ApiError> {
    let patient_id: PatientId = parse_id("patient_id", &patient_id)?;
    let assigning_program = request.program.is_some() && request.edit.is_none();
    match caller.user.role {
        Role::Admin if assigning_program => {
            if state.store.patient(patient_id).await?.is_none() {
                return Err(ApiError::NotFound("patient".into()));
            }
            audit(
                &state,
                &caller,
                "care_plan.assign",
                Some(patient_id),
                AuditOutcome::Allowed,
                None,
            )
            .await?;
        }
        Role::Clinician | Role::Nurse => {
            authorize_patient(&state, &caller, patient_id, "care_plan.change", None).await?;
        }
        Role::Admin | Role::Patient => {
            audit(
                &state,
                &caller,
                "care_plan.change",
                Some(patient_id),
                AuditOutcome::Denied,
                None,
            )
            .await?;
            return Err(ApiError::Forbidden);
        }
    }
    let record = state
        .alarms
        .set_care_plan(
            patient_id,
            request,
            Some(caller.user.id),
            caller.user.username.clone(),
        )
        .await?;
    Ok(Json(json!(record)))
}

#[derive(Deserialize)]
pub(crate) struct InboxParams {
    state: Option<String>,
    limit: Option<u32>,
}

fn states(filter: Option<&str>) -> Result<Vec<String>, ApiError> {
    let known = ["open", "acknowledged", "snoozed", "resolved"];
    match filter {
        None | Some("all") => Ok(Vec::new()),
        Some("unresolved") => Ok(vec!["open".into(), "acknowledged".into(), "snoozed".into()]),
        Some(list) => list
            .split(',')
            .map(|state| {
                if known.contains(&state) {
                    Ok(state.to_owned())
                } else {
                    Err(ApiError::invalid(
                        "state",
                        "open, acknowledged, snoozed, resolved, unresolved or all",
                    ))
                }
            })
            .collect(),
    }
}

fn view(record: &AlarmRecord) -> Value {
    let mut value = record.alarm.clone();
    if let Value::Object(map) = &mut value {
        map.insert("alarm_id".into(), json!(record.alarm_id));
        map.insert("id".into(), json!(record.public_id));
        map.insert("patient_id".into(), json!(record.patient_id));
        map.insert("state_name".into(), json!(record.state));
        map.insert("next_deadline".into(), json!(record.next_deadline));
        map.insert("updated".into(), json!(record.updated));
    }
    value
}

/// The people and care teams an alarm mentions: who acknowledged, snoozed or resolved it,
/// who acted in its history, and whom its escalation notifies next.
fn mentioned(alarm: &Value) -> (Vec<&str>, Vec<&str>) {
    let mut people: Vec<&Value> = vec![
        &alarm["state"]["by"],
        &alarm["state"]["resolution"]["user_id"],
    ];
    let mut teams: Vec<&Value> = Vec::new();
    if let Some(events) = alarm["events"].as_array() {
        people.extend(events.iter().map(|event| &event["actor"]));
    }
    if let Some(notify) = alarm["escalation_status"]["next"]["notify"].as_array() {
        for recipient in notify {
            people.push(&recipient["user_id"]);
            teams.push(&recipient["care_team_id"]);
        }
    }
    (
        people.into_iter().filter_map(Value::as_str).collect(),
        teams.into_iter().filter_map(Value::as_str).collect(),
    )
}

/// Names by id, so that a screen can say who acknowledged an alarm and whom its
/// escalation notifies next.
struct Names(HashMap<String, String>);

impl Names {
    /// Everyone's and every team's: for a stream, whose alarms are still to come.
    async fn everyone(state: &AppState) -> Result<Self, ApiError> {
        let mut names = HashMap::new();
        for user in state.store.users().await? {
            names.insert(user.id.to_string(), user.display_name);
        }
        for team in state.store.care_teams().await? {
            names.insert(team.id.to_string(), team.name);
        }
        Ok(Self(names))
    }

    /// Only the names these alarms mention.
    async fn mentioned_in(state: &AppState, alarms: &[Value]) -> Result<Self, ApiError> {
        let mut people = Vec::new();
        let mut any_team = false;
        for alarm in alarms {
            let (ids, teams) = mentioned(alarm);
            people.extend(ids.into_iter().filter_map(|id| id.parse::<UserId>().ok()));
            any_team |= !teams.is_empty();
        }
        let mut names: HashMap<String, String> = users_by_id(state, people)
            .await?
            .into_iter()
            .map(|(id, user)| (id.to_string(), user.display_name))
            .collect();
        if any_team {
            for team in state.store.care_teams().await? {
                names.insert(team.id.to_string(), team.name);
            }
        }
        Ok(Self(names))
    }

    /// Adds `names`: {id: name} for every person or team the alarm mentions.
    fn attach(&self, alarm: &mut Value) {
        let (people, teams) = mentioned(alarm);
        let names: serde_json::Map<String, Value> = people
            .into_iter()
            .chain(teams)
            .filter_map(|id| {
                self.0
                    .get(id)
                    .map(|name| (id.to_owned(), Value::String(name.clone())))
            })
            .collect();
        alarm["names"] = Value::Object(names);
    }
}

/// The caller's alarm inbox across their patients, newest first.
pub(crate) async fn inbox(
    State(state): State<AppState>,
    caller: Caller,
    Params(params): Params<InboxParams>,
) -> Result<Json<Value>, ApiError> {
    let states = states(params.state.as_deref().or(Some("unresolved")))?;
    let limit = params.limit.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "1 to 1000"));
    }
    let patients: Vec<PatientId> = authorize_own_patients(&state, &caller, "alarms.inbox")
        .await?
        .iter()
        .map(|access| access.patient_id())
        .collect();
    let alarms = state
        .store
        .alarms(AlarmQuery {
            patients,
            states,
            limit,
            ..AlarmQuery::default()
        })
        .await?;
    let mut views: Vec<Value> = alarms.iter().map(view).collect();
    let names = Names::mentioned_in(&state, &views).await?;
    views.iter_mut().for_each(|alarm| names.attach(alarm));
    Ok(Json(json!({ "alarms": views })))
}

#[derive(Deserialize)]
pub(crate) struct HistoryParams {
    from: Option<String>,
    to: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
}

/// A patient's alarms raised in a period, each with its history.
pub(crate) async fn patient_alarms(
    State(state): State<AppState>,
    caller: Caller,
    Path(patient_id): Path<String>,
    Params(params): Params<HistoryParams>,
) -> Result<Json<Value>, ApiError> {
    let patient_id: PatientId = parse_id("patient_id", &patient_id)?;
    let from = optional_time("from", params.from.as_deref())?;
    let to = optional_time("to", params.to.as_deref())?;
    let states = states(params.state.as_deref())?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "1 to 500"));
    }
    let access = authorize_patient(&state, &caller, patient_id, "alarms.read", None).await?;
    let alarms = state
        .store
        .alarms(AlarmQuery {
            patients: vec![access.patient_id()],
            states,
            raised_from: from,
            raised_to: to,
            limit,
        })
        .await?;
    let mut out = Vec::with_capacity(alarms.len());
    for alarm in &alarms {
        let events = state.store.alarm_events(&alarm.public_id).await?;
        let mut value = view(alarm);
        value["events"] = json!(events);
        out.push(value);
    }
    let names = Names::mentioned_in(&state, &out).await?;
    out.iter_mut().for_each(|alarm| names.attach(alarm));
    Ok(Json(json!({ "alarms": out })))
}

async fn authorized_alarm(
    state: &AppState,
    caller: &Caller,
    alarm_id: &str,
    action: &'static str,
) -> Result<AlarmRecord, ApiError> {
    if alarm_id.is_empty()
        || alarm_id.len() > 64
        || !alarm_id.chars().all(|c| c.is_ascii_hexdigit())
    {
        return Err(ApiError::NotFound("alarm".into()));
    }
    let record = state
        .store
        .alarm_by_public_id(alarm_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("alarm".into()))?;
    authorize_patient(
        state,
        caller,
        record.patient_id,
        action,
        Some(record.public_id.clone()),
    )
    .await?;
    Ok(record)
}

fn delivery_view(record: &NotificationRecord, with_payload: bool) -> Value {
    let mut value = json!({
        "id": record.key,
        "idempotency_key": record.idempotency_key,
        "alarm_id": record.alarm_public_id,
        "patient_id": record.patient_id,
        "channel": {"id": record.channel.id, "kind": record.channel.kind, "team_id": record.channel.team_id},
        "status": record.status,
        "attempts": record.attempts,
        "created": record.created,
        "next_attempt": record.next_attempt,
        "last_attempt": record.last_attempt,
        "delivered": record.delivered,
        "last_error": record.last_error,
    });
    if with_payload {
        value["payload"] = record.payload.clone();
    }
    value
}

/// One alarm with its history, its deliveries and the care plan version that raised it.
pub(crate) async fn get_alarm(
    State(state): State<AppState>,
    caller: Caller,
    Path(alarm_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = authorized_alarm(&state, &caller, &alarm_id, "alarms.read").await?;
    let events = state.store.alarm_events(&record.public_id).await?;
    let deliveries = state
        .store
        .notifications(NotificationQuery {
            alarm_public_id: Some(record.public_id.clone()),
            status: None,
            limit: 1000,
        })
        .await?;
    let plan_version = record.alarm["care_plan_version"].as_u64();
    let care_plan = state
        .store
        .care_plan_versions(record.patient_id)
        .await?
        .into_iter()
        .find(|version| Some(u64::from(version.version)) == plan_version);
    let mut value = view(&record);
    value["events"] = json!(events);
    value["deliveries"] = json!(
        deliveries
            .iter()
            .map(|d| delivery_view(d, false))
            .collect::<Vec<_>>()
    );
    value["care_plan"] = json!(care_plan);
    Names::mentioned_in(&state, std::slice::from_ref(&value))
        .await?
        .attach(&mut value);
    Ok(Json(value))
}

fn care_team_member(caller: &Caller) -> Result<(), ApiError> {
    match caller.user.role {
        Role::Clinician | Role::Nurse | Role::Admin => Ok(()),
        Role::Patient => Err(ApiError::Forbidden),
    }
}

pub(crate) async fn acknowledge(
    State(state): State<AppState>,
    caller: Caller,
    Path(alarm_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    care_team_member(&caller)?;
    let record = authorized_alarm(&state, &caller, &alarm_id, "alarms.acknowledge").await?;
    Ok(Json(
        state.alarms.acknowledge(&record, caller.user.id).await?,
    ))
}

#[derive(Deserialize)]
pub(crate) struct ResolveRequest {
    note: String,
}

pub(crate) async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path(alarm_id): Path<String>,
    Body(request): Body<ResolveRequest>,
) -> Result<Json<Value>, ApiError> {
    care_team_member(&caller)?;
    let record = authorized_alarm(&state, &caller, &alarm_id, "alarms.resolve").await?;
    Ok(Json(
        state
            .alarms
            .resolve(&record, caller.user.id, request.note)
            .await?,
    ))
}

#[derive(Deserialize)]
pub(crate) struct SnoozeRequest {
    minutes: Option<f64>,
    seconds: Option<i64>,
}

pub(crate) async fn snooze(
    State(state): State<AppState>,
    caller: Caller,
    Path(alarm_id): Path<String>,
    Body(request): Body<SnoozeRequest>,
) -> Result<Json<Value>, ApiError> {
    care_team_member(&caller)?;
    let secs = match (request.seconds, request.minutes) {
        (Some(secs), None) => secs,
        (None, Some(minutes)) if minutes.is_finite() && minutes > 0.0 && minutes < 1e6 => {
            (minutes * 60.0).round() as i64
        }
        _ => {
            return Err(ApiError::invalid(
                "minutes",
                "give `minutes` or `seconds`, a positive duration",
            ));
        }
    };
    let record = authorized_alarm(&state, &caller, &alarm_id, "alarms.snooze").await?;
    Ok(Json(
        state.alarms.snooze(&record, caller.user.id, secs).await?,
    ))
}

/// Server-Sent Events: `alarm` events for the caller's patients as alarms change.
pub(crate) async fn stream(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let patients: HashSet<PatientId> = authorize_own_patients(&state, &caller, "alarms.stream")
        .await?
        .iter()
        .map(|access| access.patient_id())
        .collect();
    // Names as they were when the stream opened; a screen re-reads after a reconnect.
    let names = Names::everyone(&state).await?;
    let feed = BroadcastStream::new(state.alarms.subscribe());
    let events = feed.filter_map(move |item| match item {
        Ok(event) if patients.contains(&event.patient_id) => {
            let mut event = event.as_ref().clone();
            names.attach(&mut event.alarm);
            Some(Ok(Event::default()
                .event("alarm")
                .json_data(&event)
                .unwrap_or_else(|_| Event::default().event("error"))))
        }
        Ok(_) => None,
        // The client fell behind; it should re-read its inbox.
        Err(BroadcastStreamRecvError::Lagged(skipped)) => Some(Ok(Event::default()
            .event("lagged")
            .data(skipped.to_string()))),
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

pub(crate) async fn put_escalation_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(team_id): Path<String>,
    Body(policy): Body<EscalationPolicy>,
) -> Result<Json<Value>, ApiError> {
    let team: CareTeamId = parse_id("team_id", &team_id)?;
    require_admin(
        &state,
        &caller,
        "escalation_policy.set",
        Some(team.to_string()),
    )
    .await?;
    policy
        .validate()
        .map_err(|error| ApiError::invalid("steps", error.to_string()))?;
    let value = serde_json::to_value(&policy).map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .store
        .set_escalation_policy(team, value.clone(), Utc::now())
        .await?;
    state.alarms.reload().await?;
    Ok(Json(value))
}

pub(crate) async fn get_escalation_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(team_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let team: CareTeamId = parse_id("team_id", &team_id)?;
    require_admin(
        &state,
        &caller,
        "escalation_policy.read",
        Some(team.to_string()),
    )
    .await?;
    state
        .store
        .escalation_policies()
        .await?
        .into_iter()
        .find(|(id, _)| *id == team)
        .map(|(_, policy)| Json(policy))
        .ok_or_else(|| ApiError::NotFound("escalation policy".into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelRequest {
    kind: String,
    url: Option<String>,
    recipients: Option<Vec<String>>,
    /// Send only "alarm X for patient Y, open Wardline" (the default).
    minimal: Option<bool>,
}

fn check_webhook_url(url: &str) -> Result<(), ApiError> {
    let bad = || {
        ApiError::invalid(
            "url",
            "an https:// URL (http:// only to localhost), at most 2000 characters",
        )
    };
    if url.len() > 2000 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return Err(bad());
    }
    match scheme {
        "https" => Ok(()),
        "http" if matches!(host, "localhost" | "127.0.0.1" | "::1") => Ok(()),
        _ => Err(bad()),
    }
}

fn check_address(address: &str) -> Result<(), ApiError> {
    let valid = address.len() <= 254
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        && address
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "recipients",
            "e-mail addresses like nurse@example.org",
        ))
    }
}

fn channel_view(channel: &NotificationChannel) -> Value {
    json!(channel)
}

/// Adds a webhook or e-mail channel to a care team (admin). A webhook's signing secret is
/// generated here and returned only in this response.
pub(crate) async fn create_channel(
    State(state): State<AppState>,
    caller: Caller,
    Path(team_id): Path<String>,
    Body(request): Body<ChannelRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let team: CareTeamId = parse_id("team_id", &team_id)?;
    require_admin(
        &state,
        &caller,
        "notification_channel.create",
        Some(team.to_string()),
    )
    .await?;
    let (target, secret) = match request.kind.as_str() {
        "webhook" => {
            let url = request
                .url
                .ok_or_else(|| ApiError::invalid("url", "a webhook needs a url"))?;
            check_webhook_url(&url)?;
            let secret = state
                .alarms
                .sealer()
                .generate_secret()
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            (url, Some(secret))
        }
        "email" => {
            let recipients = request.recipients.unwrap_or_default();
            if recipients.is_empty() || recipients.len() > 50 {
                return Err(ApiError::invalid("recipients", "1 to 50 addresses"));
            }
            for address in &recipients {
                check_address(address)?;
            }
            (recipients.join(","), None)
        }
        _ => return Err(ApiError::invalid("kind", "webhook or email")),
    };
    let sealed = secret
        .as_ref()
        .map(|secret| state.alarms.sealer().seal(secret.as_bytes()))
        .transpose()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let channel = NotificationChannel {
        id: format!("ch_{}", uuid::Uuid::new_v4().simple()),
        team_id: team,
        kind: request.kind,
        target,
        sealed_secret: sealed,
        minimal: request.minimal.unwrap_or(true),
        created: Utc::now(),
    };
    state
        .store
        .create_notification_channel(channel.clone())
        .await?;
    state.alarms.reload().await?;
    let mut body = json!({ "channel": channel_view(&channel) });
    if let Some(secret) = secret {
        // Shown once; only a sealed copy is kept.
        body["secret"] = json!(secret);
    }
    Ok((StatusCode::CREATED, Json(body)))
}

pub(crate) async fn list_channels(
    State(state): State<AppState>,
    caller: Caller,
    Path(team_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let team: CareTeamId = parse_id("team_id", &team_id)?;
    require_admin(
        &state,
        &caller,
        "notification_channel.list",
        Some(team.to_string()),
    )
    .await?;
    let channels = state.store.notification_channels(Some(team)).await?;
    Ok(Json(
        json!({ "channels": channels.iter().map(channel_view).collect::<Vec<_>>() }),
    ))
}

pub(crate) async fn remove_channel(
    State(state): State<AppState>,
    caller: Caller,
    Path((team_id, channel_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let team: CareTeamId = parse_id("team_id", &team_id)?;
    require_admin(
        &state,
        &caller,
        "notification_channel.remove",
        Some(channel_id.clone()),
    )
    .await?;
    if !state
        .store
        .remove_notification_channel(team, &channel_id, Utc::now())
        .await?
    {
        return Err(ApiError::NotFound("notification channel".into()));
    }
    state.alarms.reload().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct DeadLetterParams {
    limit: Option<u32>,
}

/// Notifications given up after the retry horizon (admin); without their content, which
/// may hold health data.
pub(crate) async fn dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    Params(params): Params<DeadLetterParams>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &caller, "notifications.dead_letters", None).await?;
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let dead = state
        .store
        .notifications(NotificationQuery {
            alarm_public_id: None,
            status: Some("dead".into()),
            limit,
        })
        .await?;
    Ok(Json(json!({
        "dead_letters": dead.iter().map(|d| delivery_view(d, false)).collect::<Vec<_>>()
    })))
}

pub(crate) async fn retry_dead_letter(
    State(state): State<AppState>,
    caller: Caller,
    Path(notification_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key: i64 = parse_id("notification_id", &notification_id)?;
    require_admin(
        &state,
        &caller,
        "notifications.retry",
        Some(key.to_string()),
    )
    .await?;
    if !state.store.retry_notification(key, Utc::now()).await? {
        return Err(ApiError::NotFound("dead letter".into()));
    }
    state.alarms.wake_outbox();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceStatusRequest {
    /// Remaining battery, 0 to 100 %.
    battery_percent: Option<f64>,
    /// The device's fault, or null when it reports none.
    fault: Option<String>,
}

/// A device reports its battery and faults (device credential), for the technical
/// alarms of its patient's care plan. Not stored; 202 once handed to the alarm engine.
pub(crate) async fn device_status(
    State(state): State<AppState>,
    Path(device_id): Path<String>,
    headers: axum::http::HeaderMap,
    Body(request): Body<DeviceStatusRequest>,
) -> Result<StatusCode, ApiError> {
    let device = crate::auth::authenticated_device(&state, &device_id, &headers).await?;
    if let Some(battery) = request.battery_percent
        && !(battery.is_finite() && (0.0..=100.0).contains(&battery))
    {
        return Err(ApiError::invalid("battery_percent", "0 to 100"));
    }
    if let Some(fault) = &request.fault
        && (fault.is_empty() || fault.len() > 200 || fault.chars().any(char::is_control))
    {
        return Err(ApiError::invalid("fault", "1 to 200 printable characters"));
    }
    let now = Utc::now();
    let patient = state
        .store
        .device_assignments(&device.id)
        .await?
        .into_iter()
        .find(|assignment| assignment.start <= now && assignment.end.is_none_or(|end| end > now))
        .map(|assignment| assignment.patient_id)
        .ok_or_else(|| {
            ApiError::DeviceNotAssigned(format!("device {} has no patient now", device.id))
        })?;
    state.alarms.device_status(
        patient,
        wardline_alerting::DeviceStatusReport {
            device_id: device.id,
            at: now,
            battery_percent: request.battery_percent,
            fault: request.fault,
        },
    )?;
    Ok(StatusCode::ACCEPTED)
}
