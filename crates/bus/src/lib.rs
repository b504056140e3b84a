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
//!   every worker.
//!
//! A message lost while NATS is away costs a live view an update (the stream's next
//! page load reads the stored alarms) or a person a retry (a command is refused as
//! unavailable), never a record. Readings reach every worker's live streams through
//! PostgreSQL itself (see the store's commit notifications).

use std::sync::Arc;
use std::time::Duration;

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
use wardline_service::{DeviceSessions, Wardline};

/// How long a person's command waits for the engine's worker to answer.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("connecting to NATS: {0}")]
    Connect(String),
    #[error("subscribing to {subject}: {message}")]
    Subscribe { subject: String, message: String },
}

/// Every message carries the worker that sent it, so a worker ignores its own.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope<T> {
    from: String,
    body: T,
}

/// This worker's connection to the others.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    prefix: String,
    /// Names this process in its messages; new at every start.
    worker: String,
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
    /// Connects to the NATS server(s) at `urls` (comma-separated). A server that is not
    /// there yet is retried in the background, as after a connection is lost: devices
    /// and people are served meanwhile, and what needs the others waits for it.
    pub async fn connect(urls: &str, prefix: &str) -> Result<Self, BusError> {
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
        })
    }

    fn subject(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
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

    fn publish<T: Serialize>(&self, name: &str, body: T) {
        let envelope = Envelope {
            from: self.worker.clone(),
            body,
        };
        let Ok(payload) = serde_json::to_vec(&envelope) else {
            return;
        };
        let client = self.client.clone();
        let subject = self.subject(name);
        tokio::spawn(async move {
            if client.publish(subject, payload.into()).await.is_err() {
                metrics::counter!("wardline_bus_publish_failed_total").increment(1);
            }
        });
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
        let outgoing = {
            let bus = self.clone();
            let alarms = alarms.clone();
            let mut events = alarms.subscribe();
            tokio::spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(event) if alarms.runs_here() => {
                            bus.publish("alarms.events", AnnouncedAlarmEvent::from(&*event));
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
            let worker = self.worker.clone();
            tokio::spawn(async move {
                while let Some(message) = incoming_alarms.next().await {
                    match serde_json::from_slice::<Envelope<AnnouncedAlarmEvent>>(&message.payload)
                    {
                        // While this worker runs the engine, its own announcements are
                        // the only ones; another's are from a worker that lost the lease.
                        Ok(envelope) if envelope.from != worker && !alarms.runs_here() => {
                            alarms.announce(envelope.body.into());
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(%error, "an alarm event from the bus could not be read");
                        }
                    }
                }
            })
        };
        let disconnections = {
            let worker = self.worker.clone();
            tokio::spawn(async move {
                while let Some(message) = revoked.next().await {
                    match serde_json::from_slice::<Envelope<DeviceId>>(&message.payload) {
                        Ok(envelope) if envelope.from != worker => {
                            service.disconnect_here(&envelope.body);
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(%error, "a revoked device's message from the bus could not be read");
                        }
                    }
                }
            })
        };
        Ok(vec![outgoing, incoming, disconnections])
    }

    /// While this worker runs the alarm engine: answers the commands other workers
    /// forward. Stops answering when the returned guard is dropped.
    pub async fn answer_commands(
        &self,
        service: Wardline,
        alarms: AlarmService,
    ) -> Result<Answering, BusError> {
        let mut commands = self.subscribe("alarms.commands").await?;
        // The subscription is in place before the guard is handed out: a command sent
        // after this finds an answer.
        self.client
            .flush()
            .await
            .map_err(|error| BusError::Subscribe {
                subject: self.subject("alarms.commands"),
                message: error.to_string(),
            })?;
        let client = self.client.clone();
        let task = tokio::spawn(async move {
            while let Some(message) = commands.next().await {
                let Some(reply) = message.reply.clone() else {
                    continue;
                };
                let client = client.clone();
                let service = service.clone();
                let alarms = alarms.clone();
                tokio::spawn(async move {
                    let answer = match serde_json::from_slice::<ForwardedCommand>(&message.payload)
                    {
                        Ok(command) => alarms.carry_out(service.store().as_ref(), command).await,
                        Err(error) => Err(ForwardedError {
                            kind: ForwardedErrorKind::InvalidRequest { field: None },
                            message: format!("not a command this worker knows: {error}"),
                        }),
                    };
                    if let Ok(payload) = serde_json::to_vec(&answer) {
                        let _ = client.publish(reply, payload.into()).await;
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
        let payload = serde_json::to_vec(&command)
            .map_err(|error| unavailable(format!("the command could not be written: {error}")))?;
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
        let answer = tokio::time::timeout(
            FORWARD_TIMEOUT,
            self.bus.client.request(subject, payload.into()),
        )
        .await;
        let outcome = match answer {
            Ok(Ok(message)) => {
                match serde_json::from_slice::<Result<ForwardedReply, ForwardedError>>(
                    &message.payload,
                ) {
                    Ok(Ok(reply)) => Ok(reply),
                    Ok(Err(refused)) => Err(AlarmsError::Forwarded(refused)),
                    Err(error) => Err(unavailable(format!(
                        "the alarm engine's answer could not be read: {error}"
                    ))),
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

impl DeviceSessions for Peers {
    fn disconnect(&self, device_id: &DeviceId) {
        self.bus.publish("devices.revoked", device_id.clone());
    }
}
