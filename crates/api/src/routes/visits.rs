//! Telehealth visits: scheduling, the room (signalling, chat, presence), the note, treatment
//! orders and care plan changes made in a visit, and the clinician time on a patient's
//! monitoring. The rules are the service's (`wardline_service::visits`).

use std::collections::HashSet;
use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_alarms::CarePlanRequest;
use wardline_domain::PatientId;
use wardline_service::ledger::PatientLedger;
use wardline_service::visits::{
    MonitoringTimeRequest, RoomEntry, SignalRequest, TreatmentOrderRequest, VisitClosing,
    VisitRecord, VisitRequest,
};
use wardline_service::{Actor, Wardline};
use wardline_store::{
    CarePlanVersionRecord, MonitoringTime, PresenceSpan, TreatmentOrder, Visit, VisitMessage,
    VisitNote, VisitNoteText,
};

use crate::error::ApiError;
use crate::extract::{Body, Caller, Id, Params, VisitPath};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(schedule_visit, visits_of_patient))
        .routes(routes!(my_visits))
        .routes(routes!(visit_record))
        .routes(routes!(reschedule_visit))
        .routes(routes!(close_visit))
        .routes(routes!(enter_room))
        .routes(routes!(leave_room))
        .routes(routes!(signal))
        .routes(routes!(post_message, messages))
        .routes(routes!(save_note))
        .routes(routes!(sign_note))
        .routes(routes!(add_addendum))
        .routes(routes!(change_care_plan))
        .routes(routes!(order_treatment, treatment_orders))
        .routes(routes!(record_monitoring_time))
        .routes(routes!(contact_email, set_contact_email))
        .routes(routes!(patient_ledger))
        .routes(routes!(care_team_ledgers))
        .routes(routes!(care_team_ledgers_csv))
}

/// The room's event stream has no deadline.
pub(crate) fn stream_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(room_events))
}

/// Schedules a video visit with the patient (a clinician or nurse of the patient's care
/// team, who attends; `attendees` adds other members of the team).
#[utoipa::path(post, path = "/api/v1/patients/{patient_id}/visits", tag = "visits",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    request_body = VisitRequest,
    responses((status = 201, description = "Scheduled", body = Visit)))]
pub(crate) async fn schedule_visit(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Body(request): Body<VisitRequest>,
) -> Result<(StatusCode, Json<Visit>), ApiError> {
    let visit = state
        .service
        .schedule_visit(&caller.actor(), patient_id, request)
        .await?;
    Ok((StatusCode::CREATED, Json(visit)))
}

/// The patient's visits, past and future, by start.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/visits", tag = "visits",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    responses((status = 200, description = "Visits", body = [Visit])))]
pub(crate) async fn visits_of_patient(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
) -> Result<Json<Vec<Visit>>, ApiError> {
    Ok(Json(
        state
            .service
            .visits_of_patient(&caller.actor(), patient_id)
            .await?,
    ))
}

/// The caller's scheduled visits that have not ended: a patient's own, or those a care
/// team member attends.
#[utoipa::path(get, path = "/api/v1/me/visits", tag = "visits",
    responses((status = 200, description = "Visits", body = [Visit])))]
pub(crate) async fn my_visits(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Visit>>, ApiError> {
    Ok(Json(state.service.upcoming_visits(&caller.actor()).await?))
}

/// A visit with its note (for the patient, once signed), its orders and who was in the
/// room.
#[utoipa::path(get, path = "/api/v1/visits/{visit_id}", tag = "visits",
    params(("visit_id" = uuid::Uuid, Path, description = "The visit")),
    responses((status = 200, description = "The visit", body = VisitRecord)))]
pub(crate) async fn visit_record(
    State(state): State<AppState>,
    caller: Caller,
    VisitPath(visit_id): VisitPath,
) -> Result<Json<VisitRecord>, ApiError> {
    Ok(Json(
        state
            .service
            .visit_record(&caller.actor(), visit_id)
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reschedule {
    start: DateTime<Utc>,
    /// 5 to 240.
    #[schema(minimum = 5, maximum = 240)]
    duration_minutes: u32,
}

/// Moves a scheduled visit (its reminder goes out again for the new time).
#[utoipa::path(post, path = "/api/v1/visits/{visit_id}/reschedule", tag = "visits",
    params(("visit_id" = uuid::Uuid, Path, description = "The visit")),
    request_body = Reschedule,
    responses((status = 200, description = "Moved", body = Visit)))]
pub(crate) async fn reschedule_visit(
    State(state): State<AppState>,
    caller: Caller,
    VisitPath(visit_id): VisitPath,
    Body(request): Body<Reschedule>,
) -> Result<Json<Visit>, ApiError> {
    Ok(Json(
        state
            .service
            .reschedule_visit(
                &caller.actor(),
                visit_id,
                request.start,
                request.duration_minutes,
            )
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CloseVisit {
    status: VisitClosing,
    /// Why (a cancellation's reason), up to 500 characters.
    #[serde(default)]
    reason: Option<String>,
}

/// Cancels a scheduled visit, marks it no-show, or completes it.
#[utoipa::path(post, path = "/api/v1/visits/{visit_id}/close", tag = "visits",
    params(("visit_id" = uuid::Uuid, Path, description = "The visit")),
    request_body = CloseVisit,
    responses((status = 200, description = "Closed", body = Visit)))]
pub(crate) async fn close_visit(
    State(state): State<AppState>,
    caller: Caller,
    VisitPath(visit_id): VisitPath,
    Body(request): Body<CloseVisit>,
) -> Result<Json<Visit>, ApiError> {
    Ok(Json(
        state
            .service
            .close_visit(&caller.actor(), visit_id, request.status, request.reason)
            .await?,
    ))
}

/// Enters the visit's room (its participants, from 15 minutes before the start): the
/// ICE servers with this person's TURN credentials, who is there, and the chat so far.
#[utoipa::path(post, path = "/api/v1/visits/{visit_id}/room/enter", tag = "visits",
    params(("visit_id" = uuid::Uuid, Path, description = "The visit")),
    responses((status = 200, description = "In the room", body = RoomEntry)))]
pub(crate) async fn enter_room(
    State(state): State<AppState>,
    caller: Caller,
    VisitPath(visit_id): VisitPath,
) -> Result<Json<RoomEntry>, ApiError> {
    Ok(Json(
        state.service.enter_room(&caller.actor(), visit_id).await?,
    ))
}

/// Leaves the room (closing its event stream does too).
#[utoipa::path(post, path = "/api/v1/visits/{visit_id}/room/leave", tag = "visits",
    params(("visit_id" = uuid::Uuid, Path, description = "The visit")),
    responses((status = 200, description = "Everyone's stays", body = [PresenceSpan])))]
pub(crate) async fn leave_room(
    State(state): State<AppState>,
    caller: Caller,
    VisitPath(visit_id): VisitPath,
) -> Result<Json<Vec<PresenceSpan>>, ApiError> {
    Ok(Json(
        state.service.leave_room(&caller.actor(), visit_id).await?,
    ))
}

/// Passes a WebRTC signalling message (an offer, answer or ICE candidate, a hello or
/// bye, or the sender's connection quality) to the room's other participants.
#[utoipa::path(post, path = "/api/v1/visits/{visit_id}/room/signal", tag = "visits",
    params(("visit_id" = uuid::Uuid, Path, description = "The visit")),
    request_body = SignalRequest,
    responses((status = 204, description = "Passed on")))]
pub(crate) async fn signal(
    State(state): State<AppState>,
    caller: Caller,
    VisitPath(visit_id): VisitPath,
    Body(request): Body<SignalRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .signal(&caller.actor(), visit_id, request)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Server-Sent Events of the room: `room` events (signalling, presence, chat, changes),
/// `lagged` when the client fell behind (it should re-enter), heartbeats, and `ended` when
/// the caller's session or access ended or the visit was closed (after its `closed`
/// room event). Closing the stream leaves the room.
#[utoipa::path(get, path = "/api/v1/visits/{visit_id}/room/events", tag = "visits",
    params(("visit_id" = uuid::Uuid, Path, description = "The visit")),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream", body = String)))]
pub(crate) async fn room_events(
    State(state): State<AppState>,
    caller: Caller,
    VisitPath(visit_id): VisitPath,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let subscription = state.service.subscribe_room(&caller.0, visit_id).await?;
    let me = caller.0.user.id;
    let ended = state.service.stream_ended(
        subscription.person.clone(),
        HashSet::from([subscription.patient_id]),
    );
    // A closed visit's room is closed: its event is the stream's last.
    let events = futures_util::stream::unfold(
        (BroadcastStream::new(subscription.events), false),
        |(mut inner, closed)| async move {
            if closed {
                return None;
            }
            let item = inner.next().await?;
            let closing = matches!(
                &item,
                Ok(event) if matches!(event.as_ref(), wardline_service::visits::RoomEvent::Closed { .. })
            );
            Some((item, (inner, closing)))
        },
    )
        .filter_map(move |item| async move {
        match item {
            Ok(event) => {
                // Signalling meant for someone else, or one's own, is not sent back.
                if let wardline_service::visits::RoomEvent::Signal { from, to, .. } = event.as_ref()
                    && (*from == me || to.is_some_and(|to| to != me))
                {
                    return None;
                }
                Some(Ok(Event::default()
                    .event("room")
                    .json_data(event.as_ref())
                    .unwrap_or_else(|_| Event::default().event("error"))))
            }
            Err(BroadcastStreamRecvError::Lagged(skipped)) => Some(Ok(Event::default()
                .event("lagged")
                .data(skipped.to_string()))),
        }
    });
    let leaving = LeaveOnDrop {
        service: state.service.clone(),
        actor: caller.actor(),
        visit_id,
    };
    let events = crate::streams::live_stream(events, ended).map(move |event| {
        let _ = &leaving;
        event
    });
    Ok(Sse::new(events))
}

/// Leaves the room when its event stream closes: a closed tab or a lost network ends
/// the stay, so that visit time is counted as it was spent.
struct LeaveOnDrop {
    service: Wardline,
    actor: Actor,
    visit_id: uuid::Uuid,
}

impl Drop for LeaveOnDrop {
    fn drop(&mut self) {
        let service = self.service.clone();
        let actor = self.actor.clone();
        let visit_id = self.visit_id;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = service.room_stream_closed(&actor, visit_id).await {
                    tracing::debug!(%error, "leaving a room whose stream closed");
                }
            });
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChatMessage {
    /// 1 to 2000 characters.
    #[schema(schema_with = wardline_domain::text_schema::trimmed_text::<2000>)]
    text: String,
}

/// Posts to the visit's text chat (its participants).
#[utoipa::path(post, path = "/api/v1/visits/{visit_id}/messages", tag = "visits",
    params(("visit_id" = uuid::Uuid, Path, description = "The visit")),
    request_body = ChatMessage,
    responses((status = 201, description = "Posted", body = VisitMessage)))]
pub(crate) async fn post_message(
    State(state): State<AppState>,
    caller: Caller,
    VisitPath(visit_id): VisitPath,
    Body(request): Body<ChatMessage>,
) -> Result<(StatusCode, Json<VisitMessage>), ApiError> {
    let message = state
        .service
        .post_visit_message(&caller.actor(), visit_id, &request.text)
        .await?;
    Ok((StatusCode::CREATED, Json(message)))
}

#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct After {
    /// Messages after this `seq` (0: all).
    #[serde(default)]
    after: i64,
}

/// The visit's chat.
#[utoipa::path(get, path = "/api/v1/visits/{visit_id}/messages", tag = "visits",
    params(("visit_id" = uuid::Uuid, Path, description = "The visit"), After),
    responses((status = 200, description = "Messages", body = [VisitMessage])))]
pub(crate) async fn messages(
    State(state): State<AppState>,
    caller: Caller,
    VisitPath(visit_id): VisitPath,
    Params(query): Params<After>,
) -> Result<Json<Vec<VisitMessage>>, ApiError> {
    Ok(Json(
        state
            .service
            .visit_messages(&caller.actor(), visit_id, query.after)
            .await?,
    ))
}

/// Writes the visit note's draft (reason, findings, plan).
#[utoipa::path(put, path = "/api/v1/visits/{visit_id}/note", tag = "visits",
    params(("visit_id" = uuid::Uuid, Path, description = "The visit")),
    request_body = VisitNoteText,
    responses((status = 200, description = "The draft", body = VisitNote)))]
pub(crate) async fn save_note(
    State(state): State<AppState>,
    caller: Caller,
    VisitPath(visit_id): VisitPath,
    Body(request): Body<VisitNoteText>,
) -> Result<Json<VisitNote>, ApiError> {
    Ok(Json(
        state
            .service
            .save_visit_note(&caller.actor(), visit_id, request)
            .await?,
    ))
}

/// Signs the note (its author): read-only from now on, and shown to the patient.
#[utoipa::path(post, path = "/api/v1/visits/{visit_id}/note/sign", tag = "visits",
    params(("visit_id" = uuid::Uuid, Path, description = "The visit")),
    responses((status = 200, description = "Signed", body = VisitNote)))]
pub(crate) async fn sign_note(
    State(state): State<AppState>,
    caller: Caller,
    VisitPath(visit_id): VisitPath,
) -> Result<Json<VisitNote>, ApiError> {
    Ok(Json(
        state
            .service
            .sign_visit_note(&caller.actor(), visit_id)
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Addendum {
    text: String,
}

/// Adds an addendum to a signed note.
#[utoipa::path(post, path = "/api/v1/visits/{visit_id}/note/addenda", tag = "visits",
    params(("visit_id" = uuid::Uuid, Path, description = "The visit")),
    request_body = Addendum,
    responses((status = 201, description = "The note with it", body = VisitNote)))]
pub(crate) async fn add_addendum(
    State(state): State<AppState>,
    caller: Caller,
    VisitPath(visit_id): VisitPath,
    Body(request): Body<Addendum>,
) -> Result<(StatusCode, Json<VisitNote>), ApiError> {
    let note = state
        .service
        .add_visit_addendum(&caller.actor(), visit_id, &request.text)
        .await?;
    Ok((StatusCode::CREATED, Json(note)))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CarePlanInVisit {
    version: CarePlanVersionRecord,
    visit: Visit,
}

/// Changes the patient's care plan from the visit: in force at once, its reason naming
/// the visit, and the version listed on the visit.
#[utoipa::path(post, path = "/api/v1/visits/{visit_id}/care-plan", tag = "visits",
    params(("visit_id" = uuid::Uuid, Path, description = "The visit")),
    request_body = CarePlanRequest,
    responses((status = 200, description = "The new version and the visit", body = CarePlanInVisit)))]
pub(crate) async fn change_care_plan(
    State(state): State<AppState>,
    caller: Caller,
    VisitPath(visit_id): VisitPath,
    Body(request): Body<CarePlanRequest>,
) -> Result<Json<CarePlanInVisit>, ApiError> {
    let (version, visit) = state
        .service
        .change_care_plan_in_visit(&caller.actor(), visit_id, request)
        .await?;
    Ok(Json(CarePlanInVisit { version, visit }))
}

/// Writes a treatment order (clinicians of the patient's care team), in a visit or not.
#[utoipa::path(post, path = "/api/v1/patients/{patient_id}/treatment-orders", tag = "visits",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    request_body = TreatmentOrderRequest,
    responses((status = 201, description = "Ordered", body = TreatmentOrder)))]
pub(crate) async fn order_treatment(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Body(request): Body<TreatmentOrderRequest>,
) -> Result<(StatusCode, Json<TreatmentOrder>), ApiError> {
    let order = state
        .service
        .order_treatment(&caller.actor(), patient_id, request)
        .await?;
    Ok((StatusCode::CREATED, Json(order)))
}

/// The patient's treatment orders, newest first.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/treatment-orders", tag = "visits",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    responses((status = 200, description = "Orders", body = [TreatmentOrder])))]
pub(crate) async fn treatment_orders(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
) -> Result<Json<Vec<TreatmentOrder>>, ApiError> {
    Ok(Json(
        state
            .service
            .treatment_orders(&caller.actor(), patient_id)
            .await?,
    ))
}

/// Records clinician time on the patient's monitoring: a stretch of the page timer, or
/// a correction (which may be negative) with its reason.
#[utoipa::path(post, path = "/api/v1/patients/{patient_id}/monitoring-time", tag = "visits",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    request_body = MonitoringTimeRequest,
    responses((status = 201, description = "Recorded", body = MonitoringTime)))]
pub(crate) async fn record_monitoring_time(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
    Body(request): Body<MonitoringTimeRequest>,
) -> Result<(StatusCode, Json<MonitoringTime>), ApiError> {
    let time = state
        .service
        .record_monitoring_time(&caller.actor(), patient_id, request)
        .await?;
    Ok((StatusCode::CREATED, Json(time)))
}

/// Which remote-monitoring codes the patient's records support, per 30-day device period
/// and calendar month, and what the open ones are short of (the patient's care team).
/// What the records support, not a billing decision.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/rpm-ledger", tag = "visits",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    responses((status = 200, description = "The ledger", body = PatientLedger)))]
pub(crate) async fn patient_ledger(
    State(state): State<AppState>,
    caller: Caller,
    Id(patient_id): Id<PatientId>,
) -> Result<Json<PatientLedger>, ApiError> {
    Ok(Json(
        state
            .service
            .patient_ledger(&caller.actor(), patient_id)
            .await?,
    ))
}

/// The ledgers of every patient of the caller's care teams.
#[utoipa::path(get, path = "/api/v1/rpm-ledger", tag = "visits",
    responses((status = 200, description = "The ledgers", body = [PatientLedger])))]
pub(crate) async fn care_team_ledgers(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<PatientLedger>>, ApiError> {
    Ok(Json(
        state.service.care_team_ledgers(&caller.actor()).await?,
    ))
}

/// The same as CSV: one line per patient per device period and per month.
#[utoipa::path(get, path = "/api/v1/rpm-ledger.csv", tag = "visits",
    responses((status = 200, description = "The ledgers as CSV", content_type = "text/csv", body = String)))]
pub(crate) async fn care_team_ledgers_csv(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let ledgers = state.service.care_team_ledgers(&caller.actor()).await?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"rpm-ledger.csv\"",
            ),
        ],
        wardline_service::ledger::ledgers_csv(&ledgers),
    ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContactEmail {
    /// Where to mail the person about themselves (a patient's visit reminders); none to
    /// stop.
    email: Option<String>,
}

/// Where the caller wants mail from Wardline about themselves.
#[utoipa::path(get, path = "/api/v1/me/contact-email", tag = "visits",
    responses((status = 200, description = "The address, if any", body = ContactEmail)))]
pub(crate) async fn contact_email(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ContactEmail>, ApiError> {
    Ok(Json(ContactEmail {
        email: state.service.contact_email(&caller.actor()).await?,
    }))
}

/// Sets (or, with `null`, removes) where the caller wants mail from Wardline about
/// themselves: a patient gets a reminder of each video visit there, a day before. The
/// reminder says when and how to join, nothing of their health.
#[utoipa::path(put, path = "/api/v1/me/contact-email", tag = "visits",
    request_body = ContactEmail,
    responses((status = 200, description = "The address now", body = ContactEmail)))]
pub(crate) async fn set_contact_email(
    State(state): State<AppState>,
    caller: Caller,
    Body(request): Body<ContactEmail>,
) -> Result<Json<ContactEmail>, ApiError> {
    Ok(Json(ContactEmail {
        email: state
            .service
            .set_contact_email(&caller.actor(), request.email.as_deref())
            .await?,
    }))
}
