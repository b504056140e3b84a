//! What moves between Wardline workers on one PostgreSQL database, over NATS.
//!
//! Everything durable is in PostgreSQL: readings, the event log every reader resumes
//! from, alarms, sessions, the outbox. Workers exchange only what is about the moment,
//! on core NATS subjects under one prefix:
//!
//! - `<prefix>.alarms.events`: the alarm engine's worker announces each committed alarm
//!   change, and every other worker passes it to its open alarm streams;
//! - `<prefix>.alarms.commands`: a person's care plan change or alarm action taken on
//!   any worker is carried to the engine's worker (request and reply), so the engine
//!   stays the one writer of alarm state;
//! - `<prefix>.devices.revoked`: a device revoked on one worker is disconnected from
//!   every worker;
//! - `<prefix>.visits.rooms`: what happens in a video visit's room (signalling, chat,
//!   presence) on one worker reaches the participants connected to the others.
//!
//! A message lost while NATS is away costs a live view an update (the stream's next
//! page load reads the stored alarms) or a person a retry (a command is refused as
//! unavailable), never a record. Readings reach every worker's live streams through
//! PostgreSQL itself (see the store's commit notifications).
//!
//! Every message is signed with the installation's bus key (HMAC-SHA-256, from the keys
//! folder every worker shares) over its subject, sender, time, request id and body, and
//! a worker acts only on messages that verify and are fresh, and on each command once:
//! whoever else reaches the NATS server can neither forge a care plan change or an
//! alarm action nor replay one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use wardline_alarms::forward::{
    AnnouncedAlarmEvent, ForwardedCommand, ForwardedError, ForwardedErrorKind, ForwardedReply,
    Forwarder,
};
use wardline_alarms::{AlarmService, AlarmsError};
use wardline_domain::DeviceId;
use wardline_service::visits::{RoomEvent, RoomPeers};
use wardline_service::{DeviceSessions, Wardline};

/// How long a person's command waits for the engine's worker to answer; a command older
/// than this is not carried out (its sender has told the person it failed).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How old an alarm event or a revoked device's message may be and still be acted on.
const FRESH_FOR: Duration = Duration::from_secs(30);
/// How far ahead of this worker's clock a message's time may be (clocks differ a little).
const CLOCK_SKEW: Duration = Duration::from_secs(30);
/// The shortest bus key accepted.
pub const MIN_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("connecting to NATS: {0}")]
    Connect(String),
    #[error("subscribing to {subject}: {message}")]
    Subscribe { subject: String, message: String },
}

/// A signed message: the worker that sent it (a worker ignores its own), when, a request
/// id, the body as JSON text, and the signature over all of them and the subject.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    sent_ms: i64,
    id: String,
    body: String,
    mac: String,
}

fn signed_text(subject: &str, from: &str, sent_ms: i64, id: &str, body: &str) -> String {
    format!("{subject}\n{from}\n{sent_ms}\n{id}\n{body}")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A message that verified: who sent it, its request id, and its body.
struct Opened<T> {
    from: String,
    id: String,
    body: T,
}

/// This worker's connection to the others.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    prefix: String,
    /// Names this process in its messages; new at every start.
    worker: String,
    key: Arc<ring::hmac::Key>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("prefix", &self.prefix)
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// Connects to the NATS server(s) at `urls` (comma-separated), signing and checking
    /// messages with `key` (the same on every worker). A server that is not there yet is
    /// retried in the background, as after a connection is lost: devices and people are
    /// served meanwhile, and what needs the others waits for it.
    pub async fn connect(urls: &str, prefix: &str, key: &[u8]) -> Result<Self, BusError> {
        if key.len() < MIN_KEY_BYTES {
            return Err(BusError::Connect(format!(
                "the bus key must be at least {MIN_KEY_BYTES} bytes"
            )));
        }
        let worker = uuid::Uuid::new_v4().to_string();
        let client = async_nats::ConnectOptions::new()
            .name(format!("wardline-{worker}"))
            .retry_on_initial_connect()
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("connected to NATS"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!("lost NATS; reconnecting (records are unaffected)");
                    }
                    other => tracing::debug!(event = %other, "NATS"),
                }
            })
            .connect(urls)
            .await
            .map_err(|error| BusError::Connect(error.to_string()))?;
        Ok(Self {
            client,
            prefix: prefix.to_owned(),
            worker,
            key: Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key)),
        })
    }

    fn subject(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// The signed message of `body` for `subject`.
    fn seal<T: Serialize>(&self, subject: &str, body: &T) -> Option<Vec<u8>> {
        let body = serde_json::to_string(body).ok()?;
        let sent_ms = now_ms();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let text = signed_text(subject, &self.worker, sent_ms, &id, &body);
        let mac = hex::encode(ring::hmac::sign(&self.key, text.as_bytes()).as_ref());
        serde_json::to_vec(&Envelope {
            from: self.worker.clone(),
            sent_ms,
            id,
            body,
            mac,
        })
        .ok()
    }

    /// A message on `subject` that verifies and is no older than `fresh_for`; `None`
    /// (counted by why) for anything else.
    fn open<T: serde::de::DeserializeOwned>(
        &self,
        subject: &str,
        payload: &[u8],
        fresh_for: Duration,
    ) -> Option<Opened<T>> {
        let refused = |why: &'static str| {
            metrics::counter!("wardline_bus_messages_refused_total", "why" => why).increment(1);
            None
        };
        let Ok(envelope) = serde_json::from_slice::<Envelope>(payload) else {
            return refused("unreadable");
        };
        let text = signed_text(
            subject,
            &envelope.from,
            envelope.sent_ms,
            &envelope.id,
            &envelope.body,
        );
        let holds = hex::decode(&envelope.mac)
            .ok()
            .is_some_and(|mac| ring::hmac::verify(&self.key, text.as_bytes(), &mac).is_ok());
        if !holds {
            return refused("signature");
        }
        let age = now_ms().saturating_sub(envelope.sent_ms);
        if age > millis(fresh_for) || -age > millis(CLOCK_SKEW) {
            return refused("stale");
        }
        match serde_json::from_str(&envelope.body) {
            Ok(body) => Some(Opened {
                from: envelope.from,
                id: envelope.id,
                body,
            }),
            Err(_) => refused("unreadable"),
        }
    }

    async fn subscribe(&self, name: &str) -> Result<async_nats::Subscriber, BusError> {
        let subject = self.subject(name);
        self.client
            .subscribe(subject.clone())
            .await
            .map_err(|error| BusError::Subscribe {
                subject,
                message: error.to_string(),
            })
    }

    /// Publishes a signed message and waits until the client has taken it, so that one
    /// task's messages leave in the order it sends them.
    async fn publish<T: Serialize>(&self, name: &str, body: &T) {
        let subject = self.subject(name);
        let Some(payload) = self.seal(&subject, body) else {
            return;
        };
        if self.client.publish(subject, payload.into()).await.is_err() {
            metrics::counter!("wardline_bus_publish_failed_total").increment(1);
        }
    }

    /// Carries commands for the alarm engine to the worker running it.
    pub fn forwarder(&self) -> Arc<dyn Forwarder> {
        Arc::new(NatsForwarder { bus: self.clone() })
    }

    /// Tells the other workers when a device is revoked here (see
    /// [`Wardline::with_peers`]).
    pub fn peers(&self) -> Arc<dyn DeviceSessions> {
        Arc::new(Peers { bus: self.clone() })
    }

    /// Passes this worker's room events to the others (see
    /// [`Wardline::set_room_peers`]).
    pub fn room_peers(&self) -> Arc<dyn RoomPeers> {
        // One task publishes them all, so that they leave in the order they were made
        // (an answer before its candidates): a task per message would not keep it.
        let (sender, mut outgoing) = tokio::sync::mpsc::channel::<RoomMessage>(ROOM_QUEUE);
        let bus = self.clone();
        tokio::spawn(async move {
            while let Some(message) = outgoing.recv().await {
                bus.publish("visits.rooms", &message).await;
            }
        });
        Arc::new(Rooms { sender })
    }

    /// For as long as the process runs: this worker's alarm changes go out to the
    /// others while its engine runs, theirs come in to its alarm streams while it does
    /// not, and devices revoked elsewhere are disconnected here.
    pub async fn relay(
        &self,
        service: Wardline,
        alarms: AlarmService,
    ) -> Result<Vec<JoinHandle<()>>, BusError> {
        let mut incoming_alarms = self.subscribe("alarms.events").await?;
        let mut revoked = self.subscribe("devices.revoked").await?;
        let mut rooms = self.subscribe("visits.rooms").await?;
        let outgoing = {
            let bus = self.clone();
            let alarms = alarms.clone();
            let mut events = alarms.subscribe();
            tokio::spawn(async move {
                loop {
                    match events.recv().await {
                        // Only what this worker's engine made: an event passed on from
                        // another worker (just before this one took the lease) is not
                        // passed back.
                        Ok(event) if alarms.runs_here() && !event.relayed => {
                            let announced = AnnouncedAlarmEvent::from(&*event);
                            bus.publish("alarms.events", &announced).await;
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                            metrics::counter!("wardline_bus_alarm_events_missed_total")
                                .increment(missed);
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            })
        };
        let incoming = {
            let bus = self.clone();
            tokio::spawn(async move {
                while let Some(message) = incoming_alarms.next().await {
                    let opened = bus.open::<AnnouncedAlarmEvent>(
                        message.subject.as_str(),
                        &message.payload,
                        FRESH_FOR,
                    );
                    // While this worker runs the engine, its own announcements are the only
                    // ones; another's are from a worker that lost the lease.
                    if let Some(opened) = opened
                        && opened.from != bus.worker
                        && !alarms.runs_here()
                    {
                        alarms.announce(opened.body.into());
                    }
                }
            })
        };
        let room_events = {
            let bus = self.clone();
            let service = service.clone();
            tokio::spawn(async move {
                while let Some(message) = rooms.next().await {
                    let opened = bus.open::<RoomMessage>(
                        message.subject.as_str(),
                        &message.payload,
                        ROOM_FRESH_FOR,
                    );
                    if let Some(opened) = opened
                        && opened.from != bus.worker
                    {
                        service.relay_room_event(opened.body.visit, opened.body.event);
                    }
                }
            })
        };
        let disconnections = {
            let bus = self.clone();
            tokio::spawn(async move {
                while let Some(message) = revoked.next().await {
                    let opened =
                        bus.open::<DeviceId>(message.subject.as_str(), &message.payload, FRESH_FOR);
                    if let Some(opened) = opened
                        && opened.from != bus.worker
                    {
                        service.disconnect_here(&opened.body);
                    }
                }
            })
        };
        Ok(vec![outgoing, incoming, room_events, disconnections])
    }

    /// While this worker runs the alarm engine: answers the commands other workers
    /// forward. Stops answering when the returned guard is dropped.
    pub async fn answer_commands(
        &self,
        service: Wardline,
        alarms: AlarmService,
    ) -> Result<Answering, BusError> {
        let subject = self.subject("alarms.commands");
        // A queue group: while an old holder and a new one overlap for a moment, one of
        // them gets each command, not both.
        let mut commands = self
            .client
            .queue_subscribe(subject.clone(), format!("{}.engine", self.prefix))
            .await
            .map_err(|error| BusError::Subscribe {
                subject: subject.clone(),
                message: error.to_string(),
            })?;
        // The subscription reaches the server before the guard is handed out when NATS is
        // there; when it is not, the client sends it as soon as it reconnects.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
        let bus = self.clone();
        let task = tokio::spawn(async move {
            // Request ids carried out lately: a command replayed within its freshness is
            // not carried out again.
            let mut seen: HashMap<String, Instant> = HashMap::new();
            while let Some(message) = commands.next().await {
                let Some(reply) = message.reply.clone() else {
                    continue;
                };
                let Some(opened) =
                    bus.open::<ForwardedCommand>(&subject, &message.payload, FORWARD_TIMEOUT)
                else {
                    continue;
                };
                let now = Instant::now();
                seen.retain(|_, at| now.duration_since(*at) < FORWARD_TIMEOUT + CLOCK_SKEW);
                if seen.insert(opened.id, now).is_some() {
                    continue;
                }
                let bus = bus.clone();
                let service = service.clone();
                let alarms = alarms.clone();
                tokio::spawn(async move {
                    let answer = alarms
                        .carry_out(service.store().as_ref(), opened.body)
                        .await;
                    if let Some(payload) = bus.seal(reply.as_str(), &answer) {
                        let _ = bus.client.publish(reply, payload.into()).await;
                    }
                });
            }
        });
        Ok(Answering { task })
    }
}

/// Answers forwarded commands until dropped.
#[derive(Debug)]
pub struct Answering {
    task: JoinHandle<()>,
}

impl Drop for Answering {
    fn drop(&mut self) {
        // Dropping the subscription with the task unsubscribes.
        self.task.abort();
    }
}

struct NatsForwarder {
    bus: Bus,
}

fn unavailable(message: String) -> AlarmsError {
    AlarmsError::Forwarded(ForwardedError {
        kind: ForwardedErrorKind::Unavailable,
        message,
    })
}

#[async_trait]
impl Forwarder for NatsForwarder {
    async fn forward(&self, command: ForwardedCommand) -> Result<ForwardedReply, AlarmsError> {
        // A request made while NATS is away would wait in the client's buffer and could
        // reach the engine after the person was told it failed: refuse it now instead.
        if self.bus.client.connection_state() != async_nats::connection::State::Connected {
            metrics::counter!("wardline_bus_commands_forwarded_total", "outcome" => "failed")
                .increment(1);
            return Err(unavailable(
                "the message bus is away; the alarm engine's worker cannot be reached".into(),
            ));
        }
        let subject = self.bus.subject("alarms.commands");
        let payload = self
            .bus
            .seal(&subject, &command)
            .ok_or_else(|| unavailable("the command could not be written".into()))?;
        // The answer comes to an inbox of this request's own, and is signed for it.
        let inbox = self.bus.client.new_inbox();
        let request = async_nats::Request::new()
            .payload(payload.into())
            .inbox(inbox.clone())
            .timeout(Some(FORWARD_TIMEOUT));
        let answer = tokio::time::timeout(
            FORWARD_TIMEOUT,
            self.bus.client.send_request(subject, request),
        )
        .await;
        let outcome = match answer {
            Ok(Ok(message)) => {
                let opened = self.bus.open::<Result<ForwardedReply, ForwardedError>>(
                    &inbox,
                    &message.payload,
                    FORWARD_TIMEOUT,
                );
                match opened.map(|opened| opened.body) {
                    Some(Ok(reply)) => Ok(reply),
                    Some(Err(refused)) => Err(AlarmsError::Forwarded(refused)),
                    None => Err(unavailable(
                        "the alarm engine's answer did not verify".into(),
                    )),
                }
            }
            // No worker runs the engine this moment (one is taking over), or NATS is away.
            Ok(Err(error)) => Err(unavailable(format!(
                "the alarm engine's worker did not answer: {error}"
            ))),
            Err(_) => Err(unavailable(format!(
                "the alarm engine's worker did not answer within {FORWARD_TIMEOUT:?}"
            ))),
        };
        let label = if outcome.is_ok() {
            "answered"
        } else {
            "failed"
        };
        metrics::counter!("wardline_bus_commands_forwarded_total", "outcome" => label).increment(1);
        outcome
    }
}

#[derive(Debug)]
struct Peers {
    bus: Bus,
}

/// How old a room event may be and still be passed on: signalling is about this moment.
const ROOM_FRESH_FOR: Duration = Duration::from_secs(10);

/// A room event on the bus: which visit's room, and what happened.
#[derive(Debug, Serialize, Deserialize)]
struct RoomMessage {
    visit: uuid::Uuid,
    event: RoomEvent,
}

/// Room events waiting to leave for the other workers; beyond this many (NATS away)
/// new ones are dropped and counted: a browser whose signalling is lost retries.
const ROOM_QUEUE: usize = 1024;

#[derive(Debug)]
struct Rooms {
    sender: tokio::sync::mpsc::Sender<RoomMessage>,
}

impl RoomPeers for Rooms {
    fn publish(&self, visit: uuid::Uuid, event: &RoomEvent) {
        let message = RoomMessage {
            visit,
            event: event.clone(),
        };
        if self.sender.try_send(message).is_err() {
            metrics::counter!("wardline_bus_room_events_dropped_total").increment(1);
        }
    }
}

impl DeviceSessions for Peers {
    fn disconnect(&self, device_id: &DeviceId) {
        let bus = self.bus.clone();
        let device_id = device_id.clone();
        tokio::spawn(async move { bus.publish("devices.revoked", &device_id).await });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A bus that never connects: signing and checking need no server.
    async fn offline(key: &[u8]) -> Bus {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("nats://127.0.0.1:9")
            .await
            .expect("a client that retries in the background");
        Bus {
            client,
            prefix: "test".into(),
            worker: uuid::Uuid::new_v4().to_string(),
            key: Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key)),
        }
    }

    #[tokio::test]
    async fn only_signed_fresh_messages_for_their_subject_are_opened() {
        let bus = offline(&[7; 32]).await;
        let sealed = bus.seal("test.alarms.commands", &"resolve").unwrap();
        let opened = bus
            .open::<String>("test.alarms.commands", &sealed, FORWARD_TIMEOUT)
            .expect("opens");
        assert_eq!(opened.body, "resolve");
        assert_eq!(opened.from, bus.worker);

        // Another subject, another key, a changed body, garbage: refused.
        assert!(
            bus.open::<String>("test.devices.revoked", &sealed, FRESH_FOR)
                .is_none()
        );
        let stranger = offline(&[8; 32]).await;
        assert!(
            stranger
                .open::<String>("test.alarms.commands", &sealed, FRESH_FOR)
                .is_none()
        );
        let mut envelope: Envelope = serde_json::from_slice(&sealed).unwrap();
        envelope.body = "\"acknowledge\"".into();
        let forged = serde_json::to_vec(&envelope).unwrap();
        assert!(
            bus.open::<String>("test.alarms.commands", &forged, FRESH_FOR)
                .is_none()
        );
        assert!(
            bus.open::<String>("test.alarms.commands", b"{}", FRESH_FOR)
                .is_none()
        );

        // An old message, re-signed with its old time by the right key, is stale.
        let mut old: Envelope = serde_json::from_slice(&sealed).unwrap();
        old.sent_ms -= millis(FORWARD_TIMEOUT) + 1_000;
        let text = signed_text(
            "test.alarms.commands",
            &old.from,
            old.sent_ms,
            &old.id,
            &old.body,
        );
        old.mac = hex::encode(ring::hmac::sign(&bus.key, text.as_bytes()).as_ref());
        let old = serde_json::to_vec(&old).unwrap();
        assert!(
            bus.open::<String>("test.alarms.commands", &old, FORWARD_TIMEOUT)
                .is_none()
        );
        assert!(
            bus.open::<String>("test.alarms.commands", &old, FRESH_FOR)
                .is_some(),
            "fresh enough for an event"
        );
    }

    #[tokio::test]
    async fn a_short_key_is_refused() {
        assert!(matches!(
            Bus::connect("nats://127.0.0.1:9", "test", &[1; 16]).await,
            Err(BusError::Connect(_))
        ));
    }
}
