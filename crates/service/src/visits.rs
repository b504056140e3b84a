//! Telehealth visits: a clinician or nurse of the patient's care team schedules a video
//! visit; the patient and the attending care team members meet in the visit's room,
//! where Wardline passes their browsers' WebRTC signalling and their text chat between
//! them (the media goes browser to browser, or through the hospital's TURN server); the
//! visit ends with a signed note, treatment orders and care plan changes made in it.
//!
//! Who may do what:
//! - schedule, move, cancel, mark no-show or complete, write and sign the note, order a
//!   treatment, change the care plan: a clinician or nurse of the patient's care team;
//! - read the visit, its note and its chat: the patient, and their care team (and an
//!   emergency access, as for every read); never through a share;
//! - enter the room, signal and chat: only the visit's participants (the patient and the
//!   attendees), while each still has access to the patient, and only around the visit's
//!   time.
//!
//! Every decision goes through the one access check and is audited; every change is one
//! store call with its audit entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;
use wardline_alarms::CarePlanRequest;
use wardline_domain::{PatientId, Role, UserId};
use wardline_store::{
    AuditOutcome, CarePlanVersionRecord, NewMonitoringTime, NewTreatmentOrder, NewVisit, Presence,
    PresenceSpan, TreatmentOrder, Visit, VisitMessage, VisitNote, VisitNoteText, VisitQuery,
    VisitStatus,
};

use crate::actor::{Actor, Person};
use crate::error::Error;
use crate::{Wardline, bounded, clean_text};

/// The shortest and longest visit.
pub const DURATION_MINUTES: std::ops::RangeInclusive<u32> = 5..=240;
/// How long before its start a visit's room opens.
pub const ROOM_OPENS_BEFORE: Duration = Duration::minutes(15);
/// How long after its planned end a visit's room stays open (visits run late).
pub const ROOM_STAYS_OPEN_AFTER: Duration = Duration::hours(2);
/// The largest signalling message (an SDP offer with many candidates is a few KiB).
pub const MAX_SIGNAL_BYTES: usize = 64 * 1024;
/// The longest chat message, in characters.
pub const MAX_CHAT_CHARS: usize = 2000;
/// How long before a visit its patient is reminded of it by e-mail.
pub const REMIND_BEFORE: Duration = Duration::hours(24);
/// How many room events a slow participant may fall behind before it must re-join.
const ROOM_BUFFER: usize = 256;

/// Where browsers find a way to each other: STUN and TURN servers, with TURN credentials
/// made per person and limited in time from a secret shared with the TURN server (the
/// "TURN REST" scheme coturn implements as `use-auth-secret`), so that no long-lived
/// TURN password ever reaches a browser.
#[derive(Debug, Clone, Default)]
pub struct IceSettings {
    pub stun_urls: Vec<String>,
    pub turn_urls: Vec<String>,
    /// coturn's `static-auth-secret`.
    pub turn_secret: Option<Vec<u8>>,
    /// How long a TURN credential works.
    pub turn_credential_lifetime: Duration,
    /// Browsers send media only through the TURN server, never directly: neither side
    /// learns the other's network addresses (a patient's home), and a hospital's
    /// firewall sees one path.
    pub relay_only: bool,
}

/// One entry of `RTCConfiguration.iceServers`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// TURN REST credentials: the user name is the expiry (Unix seconds) and who it is
/// for; the password is the base64 HMAC-SHA-1 of the user name under the shared
/// secret, which the TURN server recomputes.
pub fn turn_credential(secret: &[u8], expires: DateTime<Utc>, person: UserId) -> (String, String) {
    let username = format!("{}:{person}", expires.timestamp());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = ring::hmac::sign(&key, username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    (username, credential)
}

impl IceSettings {
    /// The servers for `person`, with TURN credentials good from `now` for the lifetime.
    pub fn servers_for(&self, person: UserId, now: DateTime<Utc>) -> Vec<IceServer> {
        let mut servers = Vec::new();
        if !self.stun_urls.is_empty() {
            servers.push(IceServer {
                urls: self.stun_urls.clone(),
                username: None,
                credential: None,
            });
        }
        if let (false, Some(secret)) = (self.turn_urls.is_empty(), &self.turn_secret) {
            let (username, credential) =
                turn_credential(secret, now + self.turn_credential_lifetime, person);
            servers.push(IceServer {
                urls: self.turn_urls.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        servers
    }
}

/// What a care team member asks for when scheduling.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisitRequest {
    pub start: DateTime<Utc>,
    /// 5 to 240.
    #[cfg_attr(feature = "openapi", schema(minimum = 5, maximum = 240))]
    pub duration_minutes: u32,
    /// Why; shown to the patient. 1 to 500 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(schema_with = wardline_domain::text_schema::trimmed_text::<500>)
    )]
    pub reason: String,
    /// Other care team members who attend (the scheduler always does).
    #[serde(default)]
    pub attendees: Vec<UserId>,
}

/// How a visit ends without being held.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitClosing {
    Cancelled,
    NoShow,
    Completed,
}

/// A medication order as the clinician writes it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreatmentOrderRequest {
    #[cfg_attr(
        feature = "openapi",
        schema(schema_with = wardline_domain::text_schema::trimmed_text::<200>)
    )]
    pub medication: String,
    #[cfg_attr(
        feature = "openapi",
        schema(schema_with = wardline_domain::text_schema::trimmed_text::<100>)
    )]
    pub dose: String,
    #[cfg_attr(
        feature = "openapi",
        schema(schema_with = wardline_domain::text_schema::trimmed_text::<100>)
    )]
    pub frequency: String,
    pub start: NaiveDate,
    #[serde(default)]
    pub stop: Option<NaiveDate>,
    pub instructions: String,
    /// The visit it is ordered in, if any.
    #[serde(default)]
    pub visit_id: Option<Uuid>,
}

/// Something that happens in a room, passed to everyone in it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RoomEvent {
    /// WebRTC signalling from one participant, for one (`to`) or all.
    Signal {
        from: UserId,
        to: Option<UserId>,
        /// `offer`, `answer`, `candidate`, `hello`, `bye` or `quality`.
        kind: String,
        data: serde_json::Value,
    },
    /// Someone entered or left; everyone's stays so far.
    Presence {
        user_id: UserId,
        joined: bool,
        present: Vec<UserId>,
    },
    Chat(VisitMessage),
    /// The visit changed (moved, its note signed, a care plan version linked).
    Changed {
        visit_id: Uuid,
    },
    /// The visit was cancelled, marked no-show or completed: the room is closed, and
    /// its streams end after this event.
    Closed {
        visit_id: Uuid,
        status: VisitStatus,
    },
}

/// The kinds of signalling message a participant may send.
const SIGNAL_KINDS: [&str; 6] = ["offer", "answer", "candidate", "hello", "bye", "quality"];

/// A signalling message a participant sends.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalRequest {
    /// `offer`, `answer`, `candidate`, `hello`, `bye` or `quality`.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(offer|answer|candidate|hello|bye|quality)$")
    )]
    pub kind: String,
    /// For one participant; everyone when absent.
    #[serde(default)]
    pub to: Option<UserId>,
    /// The SDP, the ICE candidate or the connection quality, as the browser gives it.
    #[serde(default)]
    pub data: serde_json::Value,
}

/// Carries room events to the other workers on the same database, whose processes
/// hold the streams of participants connected to them (two people in one visit may
/// reach different workers behind a balancer).
pub trait RoomPeers: Send + Sync + std::fmt::Debug {
    fn publish(&self, visit: Uuid, event: &RoomEvent);
}

/// The live rooms of this process: a broadcast per visit while anyone listens.
#[derive(Debug, Default)]
pub struct VisitRooms {
    rooms: Mutex<HashMap<Uuid, broadcast::Sender<Arc<RoomEvent>>>>,
    peers: std::sync::RwLock<Option<Arc<dyn RoomPeers>>>,
    /// Each person's room streams open here, by visit: closing one of two (a reload, a
    /// second tab) is not leaving the room.
    streams: Mutex<HashMap<(Uuid, UserId), usize>>,
}

impl VisitRooms {
    fn sender(&self, visit: Uuid) -> Option<broadcast::Sender<Arc<RoomEvent>>> {
        let mut rooms = self.rooms.lock().ok()?;
        // Rooms nobody listens to any more are dropped as others are looked up.
        rooms.retain(|_, sender| sender.receiver_count() > 0);
        Some(
            rooms
                .entry(visit)
                .or_insert_with(|| broadcast::channel(ROOM_BUFFER).0)
                .clone(),
        )
    }

    fn stream_opened(&self, visit: Uuid, person: UserId) {
        if let Ok(mut streams) = self.streams.lock() {
            *streams.entry((visit, person)).or_default() += 1;
        }
    }

    /// Whether this was the person's last stream of the room here.
    fn stream_closed(&self, visit: Uuid, person: UserId) -> bool {
        let Ok(mut streams) = self.streams.lock() else {
            return true;
        };
        match streams.get_mut(&(visit, person)) {
            Some(open) if *open > 1 => {
                *open -= 1;
                false
            }
            _ => {
                streams.remove(&(visit, person));
                true
            }
        }
    }

    fn publish(&self, visit: Uuid, event: RoomEvent) {
        if let Ok(peers) = self.peers.read()
            && let Some(peers) = peers.as_ref()
        {
            peers.publish(visit, &event);
        }
        self.publish_here(visit, event);
    }

    /// To this process's listeners only (an event another worker passed on).
    fn publish_here(&self, visit: Uuid, event: RoomEvent) {
        let sender = self
            .rooms
            .lock()
            .ok()
            .and_then(|rooms| rooms.get(&visit).cloned());
        if let Some(sender) = sender {
            // Nobody listening is not an error: the event is news, the record is stored.
            let _ = sender.send(Arc::new(event));
        }
    }
}

/// What a participant gets on entering the room.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct RoomEntry {
    pub visit: Visit,
    pub ice_servers: Vec<IceServer>,
    /// `RTCConfiguration.iceTransportPolicy`: `relay` (through TURN only) or `all`.
    pub ice_transport_policy: &'static str,
    /// Who is in the room now.
    pub present: Vec<UserId>,
    pub messages: Vec<VisitMessage>,
}

/// A visit with what came of it, as its participants and the care team read it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct VisitRecord {
    pub visit: Visit,
    pub note: Option<VisitNote>,
    pub orders: Vec<TreatmentOrder>,
    pub presence: Vec<PresenceSpan>,
}

/// An open room subscription: room events until the caller's access ends.
#[derive(Debug)]
pub struct RoomSubscription {
    pub events: broadcast::Receiver<Arc<RoomEvent>>,
    pub person: Person,
    pub patient_id: PatientId,
}

fn present_of(spans: &[PresenceSpan]) -> Vec<UserId> {
    let mut present: Vec<UserId> = spans
        .iter()
        .filter(|span| span.left.is_none())
        .map(|span| span.user_id)
        .collect();
    present.sort();
    present.dedup();
    present
}

impl Wardline {
    /// Room events made here go to the other workers too, through `peers`.
    pub fn set_room_peers(&self, peers: Arc<dyn RoomPeers>) {
        if let Ok(mut slot) = self.rooms.peers.write() {
            *slot = Some(peers);
        }
    }

    /// A room event another worker passed on, for the streams open here.
    pub fn relay_room_event(&self, visit: Uuid, event: RoomEvent) {
        self.rooms.publish_here(visit, event);
    }

    /// The visit, or `NotFound`.
    async fn existing_visit(&self, id: Uuid) -> Result<Visit, Error> {
        self.store
            .visit(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("visit {id}")))
    }

    /// Whether the person is one of the visit's participants: the patient or an
    /// attendee.
    fn is_participant(actor: &Actor, visit: &Visit) -> bool {
        actor.user().is_some_and(|user| match user.role {
            Role::Patient => user.patient_id == Some(visit.patient_id),
            _ => visit.is_attendee(user.id),
        })
    }

    /// A participant's act in the room: the access check for the visit's patient (which
    /// audits the decision), and the participant rule, whose refusal is audited too.
    async fn authorize_participant(
        &self,
        actor: &Actor,
        id: Uuid,
        action: &'static str,
    ) -> Result<Visit, Error> {
        let visit = self.existing_visit(id).await?;
        if !Self::is_participant(actor, &visit) {
            metrics::counter!("wardline_access_denied_total", "action" => action).increment(1);
            return Err(self
                .refused(
                    actor,
                    action,
                    &visit,
                    format!("visit {id}: not a participant"),
                )
                .await);
        }
        self.authorize_patient(actor, visit.patient_id, action, Some(format!("visit {id}")))
            .await?;
        Ok(visit)
    }

    /// A care team change to a visit: the visit, and the audit entry to commit with it.
    async fn authorize_visit_change(
        &self,
        actor: &Actor,
        id: Uuid,
        action: &'static str,
    ) -> Result<(Visit, wardline_store::AuditEvent), Error> {
        let visit = self.existing_visit(id).await?;
        let allowed = self
            .authorize_patient_change(
                actor,
                visit.patient_id,
                action,
                &[Role::Clinician, Role::Nurse],
                Some(format!("visit {id}")),
            )
            .await?;
        Ok((visit, allowed.audit))
    }

    fn check_time(&self, start: DateTime<Utc>, duration_minutes: u32) -> Result<(), Error> {
        if !DURATION_MINUTES.contains(&duration_minutes) {
            return Err(Error::invalid(
                "duration_minutes",
                format!(
                    "{} to {} minutes",
                    DURATION_MINUTES.start(),
                    DURATION_MINUTES.end()
                ),
            ));
        }
        let now = self.now();
        if start < now - Duration::minutes(5) {
            return Err(Error::invalid(
                "start",
                "in the past: a visit is scheduled ahead",
            ));
        }
        if start > now + Duration::days(366) {
            return Err(Error::invalid("start", "more than a year ahead"));
        }
        Ok(())
    }

    /// Schedules a visit with the patient, attended by the scheduler and the named care
    /// team members.
    pub async fn schedule_visit(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        request: VisitRequest,
    ) -> Result<Visit, Error> {
        let reason = bounded("reason", &request.reason, 500)?;
        self.check_time(request.start, request.duration_minutes)?;
        if request.attendees.len() > 10 {
            return Err(Error::invalid("attendees", "at most 10 attendees"));
        }
        // The command line (the demo, a site's scripts) schedules for a care team member,
        // the first attendee; a person schedules for themselves.
        let (audit, scheduler) = if matches!(actor, Actor::CommandLine) {
            if self.store.patient(patient_id).await?.is_none() {
                return Err(Error::NotFound(format!("patient {patient_id}")));
            }
            let Some(first) = request.attendees.first().copied() else {
                return Err(Error::invalid(
                    "attendees",
                    "from the command line, name the clinician or nurse who holds the visit",
                ));
            };
            let allowed = self
                .require_admin(actor, "visits.schedule", Some(patient_id), None)
                .await?;
            (allowed.audit, first)
        } else {
            let allowed = self
                .authorize_patient_change(
                    actor,
                    patient_id,
                    "visits.schedule",
                    &[Role::Clinician, Role::Nurse],
                    None,
                )
                .await?;
            (allowed.audit, actor.user_id().ok_or(Error::Forbidden)?)
        };
        let mut attendees = Vec::new();
        for attendee in std::iter::once(scheduler).chain(request.attendees) {
            if attendees.contains(&attendee) {
                continue;
            }
            let on_team = match self.store.user(attendee).await? {
                Some(user) if matches!(user.role, Role::Clinician | Role::Nurse) => {
                    self.store.is_on_care_team_of(attendee, patient_id).await?
                }
                _ => false,
            };
            if !on_team {
                return Err(Error::invalid(
                    "attendees",
                    format!("{attendee} is not a clinician or nurse of the patient's care team"),
                ));
            }
            attendees.push(attendee);
        }
        let visit = self
            .store
            .create_visit(
                NewVisit {
                    id: Uuid::new_v4(),
                    patient_id,
                    scheduled_by: scheduler,
                    created: self.now(),
                    start: request.start,
                    duration_minutes: request.duration_minutes,
                    reason,
                    attendees,
                },
                audit,
            )
            .await?;
        metrics::counter!("wardline_visits_scheduled_total").increment(1);
        self.remind_soon(&visit).await;
        Ok(visit)
    }

    /// The patient's visits (all of them, by start).
    pub async fn visits_of_patient(
        &self,
        actor: &Actor,
        patient_id: PatientId,
    ) -> Result<Vec<Visit>, Error> {
        let access = self
            .authorize_patient(actor, patient_id, "visits.read", None)
            .await?;
        Ok(self
            .store
            .visits(VisitQuery {
                patient: Some(access.patient_id()),
                limit: 500,
                ..VisitQuery::default()
            })
            .await?)
    }

    /// The person's own visits that have not ended yet (a patient's, or those a care
    /// team member attends), by start.
    pub async fn upcoming_visits(&self, actor: &Actor) -> Result<Vec<Visit>, Error> {
        let Some(user) = actor.user() else {
            return Err(Error::Forbidden);
        };
        let query = VisitQuery {
            ending_after: Some(self.now() - ROOM_STAYS_OPEN_AFTER),
            status: Some(VisitStatus::Scheduled),
            limit: 200,
            ..VisitQuery::default()
        };
        let query = match (user.role, user.patient_id) {
            (Role::Patient, Some(patient)) => VisitQuery {
                patient: Some(patient),
                ..query
            },
            (Role::Clinician | Role::Nurse, _) => VisitQuery {
                attendee: Some(user.id),
                ..query
            },
            _ => return Ok(Vec::new()),
        };
        let visits = self.store.visits(query).await?;
        // Each patient whose visits are listed is a read of that patient, audited; an
        // attendee taken off the care team no longer sees the visit.
        let mut shown = Vec::new();
        for visit in visits {
            if self
                .authorize_patient(
                    actor,
                    visit.patient_id,
                    "visits.read",
                    Some(format!("visit {}", visit.id)),
                )
                .await
                .is_ok()
            {
                shown.push(visit);
            }
        }
        Ok(shown)
    }

    /// A visit with its note, orders and who was in the room: for the patient and the
    /// care team.
    pub async fn visit_record(&self, actor: &Actor, id: Uuid) -> Result<VisitRecord, Error> {
        let visit = self.existing_visit(id).await?;
        self.authorize_patient(
            actor,
            visit.patient_id,
            "visits.read",
            Some(format!("visit {id}")),
        )
        .await?;
        let note = self.store.visit_note(id).await?;
        // The patient sees the note once it is signed; a draft is the clinician's.
        let note = match actor.user() {
            Some(user) if user.role == Role::Patient => note.filter(|note| note.signed.is_some()),
            _ => note,
        };
        let orders = self
            .store
            .treatment_orders(visit.patient_id)
            .await?
            .into_iter()
            .filter(|order| order.visit_id == Some(id))
            .collect();
        let presence = self.store.visit_presence(id).await?;
        Ok(VisitRecord {
            visit,
            note,
            orders,
            presence,
        })
    }

    /// Moves a scheduled visit.
    pub async fn reschedule_visit(
        &self,
        actor: &Actor,
        id: Uuid,
        start: DateTime<Utc>,
        duration_minutes: u32,
    ) -> Result<Visit, Error> {
        self.check_time(start, duration_minutes)?;
        let (_, audit) = self
            .authorize_visit_change(actor, id, "visits.reschedule")
            .await?;
        let visit = self
            .store
            .reschedule_visit(id, start, duration_minutes, audit)
            .await?;
        self.rooms.publish(id, RoomEvent::Changed { visit_id: id });
        self.remind_soon(&visit).await;
        Ok(visit)
    }

    /// Cancels a visit, marks it no-show, or completes it.
    pub async fn close_visit(
        &self,
        actor: &Actor,
        id: Uuid,
        closing: VisitClosing,
        reason: Option<String>,
    ) -> Result<Visit, Error> {
        let reason = reason
            .map(|reason| clean_text("reason", &reason, 500))
            .transpose()?
            .filter(|reason| !reason.is_empty());
        let (status, action) = match closing {
            VisitClosing::Cancelled => (VisitStatus::Cancelled, "visits.cancel"),
            VisitClosing::NoShow => (VisitStatus::NoShow, "visits.no_show"),
            VisitClosing::Completed => (VisitStatus::Completed, "visits.complete"),
        };
        let (visit, audit) = self.authorize_visit_change(actor, id, action).await?;
        if status == VisitStatus::NoShow && self.now() < visit.start {
            return Err(Error::invalid(
                "status",
                "a visit is marked no-show after its start",
            ));
        }
        let visit = self
            .store
            .close_visit(id, status, self.now(), reason, audit)
            .await?;
        self.rooms.publish(
            id,
            RoomEvent::Closed {
                visit_id: id,
                status,
            },
        );
        Ok(visit)
    }

    /// Enters the visit's room: records the stay, and hands out the ICE servers with
    /// credentials for this person. Only a participant, only around the visit's time,
    /// and only while it is scheduled.
    pub async fn enter_room(&self, actor: &Actor, id: Uuid) -> Result<RoomEntry, Error> {
        let visit = self.authorize_participant(actor, id, "visits.join").await?;
        let now = self.now();
        if visit.status != VisitStatus::Scheduled {
            return Err(Error::Conflict(format!(
                "the visit is {}",
                visit.status.as_str().replace('_', "-")
            )));
        }
        if now < visit.start - ROOM_OPENS_BEFORE {
            return Err(Error::Conflict(format!(
                "the room opens 15 minutes before the visit, at {}",
                (visit.start - ROOM_OPENS_BEFORE).to_rfc3339()
            )));
        }
        if now > visit.end() + ROOM_STAYS_OPEN_AFTER {
            return Err(Error::Conflict("the visit's time is over".into()));
        }
        let Some(user) = actor.user() else {
            return Err(Error::Forbidden);
        };
        let count_time = user.role != Role::Patient;
        let audit = actor.audit(
            "visits.join",
            Some(visit.patient_id),
            AuditOutcome::Allowed,
            Some(format!("visit {id}")),
            now,
        );
        let spans = self
            .store
            .record_presence(id, user.id, Presence::Joined, now, count_time, audit)
            .await?;
        let present = present_of(&spans);
        self.rooms.publish(
            id,
            RoomEvent::Presence {
                user_id: user.id,
                joined: true,
                present: present.clone(),
            },
        );
        Ok(RoomEntry {
            ice_servers: self.settings.ice.servers_for(user.id, now),
            ice_transport_policy: if self.settings.ice.relay_only {
                "relay"
            } else {
                "all"
            },
            messages: self.store.visit_messages(id, 0).await?,
            visit,
            present,
        })
    }

    /// Leaves the room; a care team member's stay becomes monitoring time.
    pub async fn leave_room(&self, actor: &Actor, id: Uuid) -> Result<Vec<PresenceSpan>, Error> {
        let visit = self.existing_visit(id).await?;
        let Some(user) = actor.user() else {
            return Err(Error::Forbidden);
        };
        if !Self::is_participant(actor, &visit) {
            return Err(Error::Forbidden);
        }
        let audit = actor.audit(
            "visits.leave",
            Some(visit.patient_id),
            AuditOutcome::Allowed,
            Some(format!("visit {id}")),
            self.now(),
        );
        let spans = self
            .store
            .record_presence(
                id,
                user.id,
                Presence::Left,
                self.now(),
                user.role != Role::Patient,
                audit,
            )
            .await?;
        self.rooms.publish(
            id,
            RoomEvent::Presence {
                user_id: user.id,
                joined: false,
                present: present_of(&spans),
            },
        );
        Ok(spans)
    }

    /// Listens to the room: signalling, chat and presence, until the caller's access
    /// ends (the transport watches [`Wardline::stream_ended`] with the returned patient).
    pub async fn subscribe_room(
        &self,
        person: &Person,
        id: Uuid,
    ) -> Result<RoomSubscription, Error> {
        let actor = Actor::Person(person.clone());
        let visit = self
            .authorize_participant(&actor, id, "visits.signal")
            .await?;
        if visit.status != VisitStatus::Scheduled {
            return Err(Error::Conflict(format!(
                "the visit is {}",
                visit.status.as_str()
            )));
        }
        let sender = self.rooms.sender(id).ok_or(Error::Unavailable)?;
        self.rooms.stream_opened(id, person.user.id);
        Ok(RoomSubscription {
            events: sender.subscribe(),
            person: person.clone(),
            patient_id: visit.patient_id,
        })
    }

    /// A room stream of the person's closed (a closed tab, a lost network): the last one
    /// open here ends their stay, a reload's old stream does not end the new one's.
    pub async fn room_stream_closed(&self, actor: &Actor, id: Uuid) -> Result<(), Error> {
        let Some(user) = actor.user() else {
            return Ok(());
        };
        if self.rooms.stream_closed(id, user.id) {
            self.leave_room(actor, id).await?;
        }
        Ok(())
    }

    /// Passes a signalling message to the room. Not stored: it is about this moment
    /// only, and says nothing about the patient.
    pub async fn signal(
        &self,
        actor: &Actor,
        id: Uuid,
        request: SignalRequest,
    ) -> Result<(), Error> {
        if !SIGNAL_KINDS.contains(&request.kind.as_str()) {
            return Err(Error::invalid(
                "kind",
                format!("one of {}", SIGNAL_KINDS.join(", ")),
            ));
        }
        let size = serde_json::to_vec(&request.data).map_or(usize::MAX, |bytes| bytes.len());
        if size > MAX_SIGNAL_BYTES {
            return Err(Error::invalid(
                "data",
                format!("{size} bytes; at most {MAX_SIGNAL_BYTES}"),
            ));
        }
        let visit = self.existing_visit(id).await?;
        // Signalling is frequent (every ICE candidate): the participant rule is checked
        // each time, the access check's audit entry only once per room entry
        // (`visits.join`); a person taken off the care team is refused here at once.
        let Some(user) = actor.user() else {
            return Err(Error::Unauthenticated);
        };
        // The access itself is checked without an audit entry: the allowed read was
        // audited when the room was entered; a refusal is audited below.
        if !Self::is_participant(actor, &visit)
            || self.basis_of(actor, visit.patient_id).await?.is_none()
        {
            return Err(self
                .refused(actor, "visits.signal", &visit, format!("visit {id}"))
                .await);
        }
        if visit.status != VisitStatus::Scheduled {
            return Err(Error::Conflict(format!(
                "the visit is {}",
                visit.status.as_str()
            )));
        }
        if let Some(to) = request.to
            && to != visit.scheduled_by
            && !visit.is_attendee(to)
            && !self.is_patient_account(to, visit.patient_id).await?
        {
            return Err(Error::invalid("to", "not a participant of the visit"));
        }
        self.rooms.publish(
            id,
            RoomEvent::Signal {
                from: user.id,
                to: request.to,
                kind: request.kind,
                data: request.data,
            },
        );
        Ok(())
    }

    async fn is_patient_account(&self, user: UserId, patient: PatientId) -> Result<bool, Error> {
        Ok(self
            .store
            .user(user)
            .await?
            .is_some_and(|user| user.patient_id == Some(patient)))
    }

    /// Audits a refused act in a visit (its patient named) and gives the error to answer
    /// with: `Forbidden`, or the audit's own error when the refusal could not be written.
    async fn refused(&self, actor: &Actor, action: &str, visit: &Visit, detail: String) -> Error {
        let entry = actor.audit(
            action,
            Some(visit.patient_id),
            AuditOutcome::Denied,
            Some(detail),
            self.now(),
        );
        match self.audit(entry).await {
            Ok(()) => Error::Forbidden,
            Err(error) => error,
        }
    }

    /// Posts a chat message to the visit.
    pub async fn post_visit_message(
        &self,
        actor: &Actor,
        id: Uuid,
        text: &str,
    ) -> Result<VisitMessage, Error> {
        let text = bounded("text", text, MAX_CHAT_CHARS)?;
        let visit = self.authorize_participant(actor, id, "visits.chat").await?;
        let Some(user) = actor.user() else {
            return Err(Error::Forbidden);
        };
        let audit = actor.audit(
            "visits.chat",
            Some(visit.patient_id),
            AuditOutcome::Allowed,
            Some(format!("visit {id}")),
            self.now(),
        );
        let message = self
            .store
            .add_visit_message(id, user.id, self.now(), text, audit)
            .await?;
        self.rooms.publish(id, RoomEvent::Chat(message.clone()));
        Ok(message)
    }

    /// The visit's chat after `after`: for the participants and the care team.
    pub async fn visit_messages(
        &self,
        actor: &Actor,
        id: Uuid,
        after: i64,
    ) -> Result<Vec<VisitMessage>, Error> {
        let visit = self.existing_visit(id).await?;
        self.authorize_patient(
            actor,
            visit.patient_id,
            "visits.read",
            Some(format!("visit {id} chat")),
        )
        .await?;
        Ok(self.store.visit_messages(id, after).await?)
    }

    /// Writes the note's draft.
    pub async fn save_visit_note(
        &self,
        actor: &Actor,
        id: Uuid,
        text: VisitNoteText,
    ) -> Result<VisitNote, Error> {
        let text = VisitNoteText {
            reason: clean_multiline("reason", &text.reason, 2000)?,
            findings: clean_multiline("findings", &text.findings, 10_000)?,
            plan: clean_multiline("plan", &text.plan, 10_000)?,
        };
        let (_, audit) = self
            .authorize_visit_change(actor, id, "visits.note.save")
            .await?;
        let author = actor.user_id().ok_or(Error::Forbidden)?;
        Ok(self
            .store
            .save_visit_note(id, author, text, self.now(), audit)
            .await?)
    }

    /// Signs the note: it is read-only from now on, and the patient sees it.
    pub async fn sign_visit_note(&self, actor: &Actor, id: Uuid) -> Result<VisitNote, Error> {
        let (_, audit) = self
            .authorize_visit_change(actor, id, "visits.note.sign")
            .await?;
        let author = actor.user_id().ok_or(Error::Forbidden)?;
        let note = self
            .store
            .sign_visit_note(id, author, self.now(), audit)
            .await?;
        self.rooms.publish(id, RoomEvent::Changed { visit_id: id });
        Ok(note)
    }

    /// Adds an addendum to a signed note.
    pub async fn add_visit_addendum(
        &self,
        actor: &Actor,
        id: Uuid,
        text: &str,
    ) -> Result<VisitNote, Error> {
        let text = clean_multiline("text", text, 10_000)?;
        if text.is_empty() {
            return Err(Error::invalid("text", "1 to 10000 characters"));
        }
        let (_, audit) = self
            .authorize_visit_change(actor, id, "visits.note.addendum")
            .await?;
        let author = actor.user_id().ok_or(Error::Forbidden)?;
        let note = self
            .store
            .add_visit_addendum(id, author, self.now(), text, audit)
            .await?;
        self.rooms.publish(id, RoomEvent::Changed { visit_id: id });
        Ok(note)
    }

    /// Changes the patient's care plan from the visit: the version's reason names the
    /// visit, and the visit lists the version.
    pub async fn change_care_plan_in_visit(
        &self,
        actor: &Actor,
        id: Uuid,
        mut request: CarePlanRequest,
    ) -> Result<(CarePlanVersionRecord, Visit), Error> {
        let visit = self.existing_visit(id).await?;
        if visit.status != VisitStatus::Scheduled && visit.status != VisitStatus::Completed {
            return Err(Error::Conflict(format!(
                "the visit is {}",
                visit.status.as_str()
            )));
        }
        request.reason = format!(
            "Visit {} ({}): {}",
            visit.start.format("%Y-%m-%d %H:%M UTC"),
            visit.id,
            request.reason.trim()
        );
        let version = self.set_care_plan(actor, visit.patient_id, request).await?;
        let audit = actor.audit(
            "visits.care_plan",
            Some(visit.patient_id),
            AuditOutcome::Allowed,
            Some(format!("visit {id}: care plan version {}", version.version)),
            self.now(),
        );
        let visit = self
            .store
            .link_care_plan_version(id, version.version, audit)
            .await?;
        self.rooms.publish(id, RoomEvent::Changed { visit_id: id });
        Ok((version, visit))
    }

    /// Writes a treatment order for the patient (in a visit, or not).
    pub async fn order_treatment(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        request: TreatmentOrderRequest,
    ) -> Result<TreatmentOrder, Error> {
        let medication = bounded("medication", &request.medication, 200)?;
        let dose = bounded("dose", &request.dose, 100)?;
        let frequency = bounded("frequency", &request.frequency, 100)?;
        let instructions = clean_multiline("instructions", &request.instructions, 2000)?;
        if let Some(stop) = request.stop
            && stop < request.start
        {
            return Err(Error::invalid("stop", "before start"));
        }
        if let Some(visit_id) = request.visit_id {
            let visit = self.existing_visit(visit_id).await?;
            if visit.patient_id != patient_id {
                return Err(Error::invalid("visit_id", "a visit of another patient"));
            }
        }
        let allowed = self
            .authorize_patient_change(
                actor,
                patient_id,
                "orders.create",
                &[Role::Clinician],
                request.visit_id.map(|visit| format!("visit {visit}")),
            )
            .await?;
        let ordered_by = actor.user_id().ok_or(Error::Forbidden)?;
        let order = self
            .store
            .create_treatment_order(
                NewTreatmentOrder {
                    id: Uuid::new_v4(),
                    patient_id,
                    visit_id: request.visit_id,
                    ordered_by,
                    created: self.now(),
                    medication,
                    dose,
                    frequency,
                    start: request.start,
                    stop: request.stop,
                    instructions,
                },
                allowed.audit,
            )
            .await?;
        if let Some(visit) = request.visit_id {
            self.rooms
                .publish(visit, RoomEvent::Changed { visit_id: visit });
        }
        Ok(order)
    }

    /// The patient's treatment orders, newest first.
    pub async fn treatment_orders(
        &self,
        actor: &Actor,
        patient_id: PatientId,
    ) -> Result<Vec<TreatmentOrder>, Error> {
        let access = self
            .authorize_patient(actor, patient_id, "orders.read", None)
            .await?;
        Ok(self.store.treatment_orders(access.patient_id()).await?)
    }

    /// Records clinician time on the patient's monitoring from the page timer, or a
    /// correction of it (negative allowed) with its reason.
    pub async fn record_monitoring_time(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        request: MonitoringTimeRequest,
    ) -> Result<wardline_store::MonitoringTime, Error> {
        let reason = request
            .reason
            .as_deref()
            .map(|reason| clean_text("reason", reason, 500))
            .transpose()?
            .filter(|reason| !reason.is_empty());
        match request.source {
            MonitoringEntry::Timer if !(1..=4 * 3600).contains(&request.seconds) => {
                return Err(Error::invalid("seconds", "a timer's stretch is 1 s to 4 h"));
            }
            MonitoringEntry::Correction if reason.is_none() => {
                return Err(Error::invalid("reason", "a correction says why"));
            }
            MonitoringEntry::Correction if !(-24 * 3600..=24 * 3600).contains(&request.seconds) => {
                return Err(Error::invalid(
                    "seconds",
                    "a correction is at most a day either way",
                ));
            }
            _ => {}
        }
        let now = self.now();
        let started = request
            .started
            .unwrap_or(now - Duration::seconds(request.seconds.max(0)));
        if started > now + Duration::minutes(1) {
            return Err(Error::invalid("started", "in the future"));
        }
        let allowed = self
            .authorize_patient_change(
                actor,
                patient_id,
                "monitoring.time",
                &[Role::Clinician, Role::Nurse],
                Some(format!("{} s", request.seconds)),
            )
            .await?;
        let user_id = actor.user_id().ok_or(Error::Forbidden)?;
        Ok(self
            .store
            .record_monitoring_time(
                NewMonitoringTime {
                    id: Uuid::new_v4(),
                    patient_id,
                    user_id,
                    started,
                    seconds: request.seconds,
                    source: match request.source {
                        MonitoringEntry::Timer => wardline_store::MonitoringSource::Timer,
                        MonitoringEntry::Correction => wardline_store::MonitoringSource::Correction,
                    },
                    visit_id: None,
                    reason,
                },
                allowed.audit,
            )
            .await?)
    }
}

impl Wardline {
    /// Queues, in the outbox, a reminder e-mail for each scheduled visit starting within
    /// [`REMIND_BEFORE`] whose patient has a contact address and has not been reminded of
    /// it at this time; the server calls this every half minute, on the worker holding
    /// the evaluation lease. The mail says when, and how to join: no reason, no name,
    /// nothing of the patient's health, since mail crosses servers Wardline does not
    /// control. Returns how many it queued.
    pub async fn queue_visit_reminders(&self) -> Result<u32, Error> {
        let now = self.now();
        let visits = self
            .store
            .visits(VisitQuery {
                status: Some(VisitStatus::Scheduled),
                ending_after: Some(now),
                starting_before: Some(now + REMIND_BEFORE),
                // Those reminded of already are not asked for: however many they are,
                // they never crowd the others out of the page.
                unreminded: true,
                limit: 1000,
                ..VisitQuery::default()
            })
            .await?;
        let mut queued = 0;
        for visit in &visits {
            if self.queue_visit_reminder(visit, now).await? {
                queued += 1;
            }
        }
        if queued > 0
            && let Some(alarms) = &self.alarms
        {
            alarms.wake_outbox();
        }
        Ok(queued)
    }

    /// Queues the reminder of one visit, if it is due, still ahead, not reminded of at
    /// its present time, and its patient has a contact address. Whether it queued one.
    async fn queue_visit_reminder(&self, visit: &Visit, now: DateTime<Utc>) -> Result<bool, Error> {
        if visit.reminded.is_some()
            || visit.start <= now
            || visit.start > now + REMIND_BEFORE
            || visit.status != VisitStatus::Scheduled
        {
            return Ok(false);
        }
        let emails = self.store.patient_contact_emails(visit.patient_id).await?;
        if emails.is_empty() {
            return Ok(false);
        }
        let zone = self.settings.practice_time_zone;
        let join_at = self
            .settings
            .invitation_mail
            .as_ref()
            .map(|mail| format!("{}/visits", mail.app_url.trim_end_matches('/')));
        let local = visit.start.with_timezone(&zone);
        let text = format!(
            "You have a video visit with your care team on {} at {} ({}), for {} minutes.\n\n\
             To join, open Wardline{} a few minutes before, choose Visits, then Join.\n\n\
             If you cannot make it, please tell your care team.",
            local.format("%A %-d %B %Y"),
            local.format("%H:%M"),
            zone.name(),
            visit.duration_minutes,
            join_at
                .as_deref()
                .map(|url| format!(" ({url})"))
                .unwrap_or_default(),
        );
        let reminder = wardline_store::NewVisitReminder {
            // A moved visit is a new reminder; the same one is never mailed twice.
            idempotency_key: format!("visit-reminder/{}/{}", visit.id, visit.start.timestamp()),
            email: emails.join(","),
            payload: serde_json::json!({
                "subject": "Reminder: your video visit",
                "text": text,
            }),
            next_attempt: now,
        };
        let audit = wardline_store::AuditEvent {
            time: now,
            actor: None,
            actor_label: "Wardline".into(),
            action: "visits.remind".into(),
            patient_id: Some(visit.patient_id),
            outcome: AuditOutcome::Allowed,
            remote_addr: None,
            detail: Some(format!("visit {}", visit.id)),
        };
        Ok(self
            .store
            .queue_visit_reminder(visit.id, reminder, now, audit)
            .await?)
    }

    /// A visit scheduled or moved to within [`REMIND_BEFORE`] is reminded of now, not at
    /// the next half-minute pass.
    async fn remind_soon(&self, visit: &Visit) {
        match self.queue_visit_reminder(visit, self.now()).await {
            Ok(true) => {
                if let Some(alarms) = &self.alarms {
                    alarms.wake_outbox();
                }
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, "could not queue a visit's reminder now; the next pass will");
            }
        }
    }

    /// [`Wardline::queue_visit_reminders`] at once. Safe on any worker: a visit is marked
    /// reminded in the commit that queues its mail, so two passes never queue it twice. A
    /// failure is logged: the server's pass retries it.
    async fn queue_reminders_now(&self) {
        if let Err(error) = self.queue_visit_reminders().await {
            tracing::warn!(%error, "could not queue visit reminders now; the next pass will");
        }
    }

    /// Sets where the person wants mail about themselves (a patient's visit reminders),
    /// or forgets it.
    pub async fn set_contact_email(
        &self,
        actor: &Actor,
        email: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let Some(user) = actor.user() else {
            return Err(Error::Forbidden);
        };
        let email = email
            .map(str::trim)
            .filter(|email| !email.is_empty())
            .map(crate::sharing::check_email)
            .transpose()?;
        let audit = actor.audit(
            "me.contact_email",
            user.patient_id,
            AuditOutcome::Allowed,
            Some(if email.is_some() { "set" } else { "removed" }.into()),
            self.now(),
        );
        self.store
            .set_contact_email(user.id, email.clone(), self.now(), audit)
            .await?;
        if email.is_some() && user.patient_id.is_some() {
            self.queue_reminders_now().await;
        }
        Ok(email)
    }

    /// Where the person wants mail about themselves, if anywhere.
    pub async fn contact_email(&self, actor: &Actor) -> Result<Option<String>, Error> {
        let Some(user) = actor.user() else {
            return Err(Error::Forbidden);
        };
        Ok(self.store.contact_email(user.id).await?)
    }
}

/// Where time a person records comes from (visit time is recorded by the room).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitoringEntry {
    Timer,
    Correction,
}

/// Time on a patient's monitoring, as the page timer or a correction sends it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringTimeRequest {
    pub source: MonitoringEntry,
    /// Seconds; a correction may be negative.
    pub seconds: i64,
    /// When the stretch began (now minus `seconds` when absent).
    #[serde(default)]
    pub started: Option<DateTime<Utc>>,
    /// Why; required for a correction.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A note's text: like [`clean_text`], but line breaks (and tabs) are kept, since a
/// note's findings and plan are written in lines.
fn clean_multiline(field: &str, text: &str, max: usize) -> Result<String, Error> {
    let lines = text
        .replace("\r\n", "\n")
        .split('\n')
        .map(|line| clean_text(field, &line.replace('\t', "    "), max))
        .collect::<Result<Vec<_>, _>>()?;
    let text = lines.join("\n").trim().to_owned();
    if text.chars().count() > max {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn turn_credentials_are_what_a_turn_server_recomputes() {
        // Worked out independently (Python's hmac over the same user name and secret).
        let person: UserId = "6c1d2f0e-0000-4000-8000-000000000001".parse().unwrap();
        let expires = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let (username, credential) = turn_credential(b"north-wing-turn-secret", expires, person);
        assert_eq!(username, "1767225600:6c1d2f0e-0000-4000-8000-000000000001");
        assert_eq!(credential, "6mXimFPrCE+qo4H3zzKH/zV7ics=");
    }

    #[test]
    fn ice_servers_list_stun_then_turn_with_credentials_only_for_turn() {
        let person = UserId::random();
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap();
        let settings = IceSettings {
            stun_urls: vec!["stun:turn.example.org:3478".into()],
            turn_urls: vec!["turn:turn.example.org:3478?transport=udp".into()],
            turn_secret: Some(b"a-secret-of-sixteen+".to_vec()),
            turn_credential_lifetime: Duration::hours(2),
            relay_only: false,
        };
        let servers = settings.servers_for(person, now);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].username, None);
        let username = servers[1].username.clone().unwrap();
        assert_eq!(
            username,
            format!("{}:{person}", (now + Duration::hours(2)).timestamp())
        );
        // No TURN URL, or no secret: no TURN entry (never one without credentials).
        let without_secret = IceSettings {
            turn_secret: None,
            ..settings.clone()
        };
        assert_eq!(without_secret.servers_for(person, now).len(), 1);
        assert!(IceSettings::default().servers_for(person, now).is_empty());
    }

    #[test]
    fn contact_addresses_are_one_plain_address() {
        for good in ["ada@example.org", "a.b+visits@mail.example.co.uk"] {
            assert!(crate::sharing::check_email(good).is_ok(), "{good}");
        }
        for bad in [
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "ada@@example.org",
            "ada@example.org,eve@example.org",
            "Ada <ada@example.org>",
            "ada @example.org",
            "ada@example.org.",
        ] {
            assert!(crate::sharing::check_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_note_keeps_its_lines_and_refuses_control_characters() {
        assert_eq!(
            clean_multiline("plan", "  raise the dose\r\n\tthen review  ", 100).unwrap(),
            "raise the dose\nthen review"
        );
        assert!(clean_multiline("plan", "bad \u{1b}[31m", 100).is_err());
        assert!(clean_multiline("plan", &"x".repeat(101), 100).is_err());
    }
}
