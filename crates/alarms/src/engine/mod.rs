//! The alarm engine: one task owning every patient's monitor and alarm board.
//!
//! **Inputs come from the committed event log**, not from memory: the engine reads every
//! observation (derived heart rate included), NEWS2 result, rhythm event, device report
//! and device contact after its commit, in batches, from the cursor it last stored. A
//! slow engine therefore falls behind and catches up; it never drops an input. Each
//! batch's alarm changes are committed together with the position in the log they were
//! evaluated at, and every few seconds the changed evaluators' state is committed with
//! the position to resume reading from ([`EvaluationCheckpoint`]). After `kill -9` the
//! engine reads again from the resume position and replays the events up to the applied
//! one into its evaluators without acting on their signals, whose alarm changes are
//! stored already: no reading goes unevaluated and no alarm is raised twice, and an
//! alarm's commit does not carry its patient's rule state. A timer drives device
//! silence, escalation deadlines and snooze expiry.
//!
//! Every alarm change is committed with its history events and outbox notifications
//! before anything is announced. Time comes from a [`Clock`], so the timers are tested
//! without waiting.

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wardline_alerting::{
    Alarm, AlarmBoard, AlarmId, AlarmSignal, AlarmUpdate, CarePlan, CarePlanChange,
    CarePlanHistory, DeviceStatusReport, EscalationPolicy, EscalationStatus, EscalationStep,
    ForecastInput, Notification, ObservedValue, PatientBaseline, PatientMonitor, Priority, Program,
    Recipient, RhythmObservation, RuleEdit, RuleKind, due_notifications, escalation_status,
    next_deadline,
};
use wardline_analytics::forecast::{ForecastMethod, Forecaster};
use wardline_analytics::news2::{
    News2, News2Score, News2SubScores, PartialNews2, PartialSubScores, clinical_risk,
};
use wardline_domain::{CareTeamId, Observation, ObservationCode, PatientId, UserId};
use wardline_store::{
    AlarmChange, AlarmEventKind, AlarmRecord, AuditEvent, CarePlanVersionRecord, CommittedEvent,
    DeviceReport, EvaluationCheckpoint, EventCursor, EventFilter, NewAlarmEvent, NewNotification,
    News2Record, NotificationChannel, ResumePoint, RhythmEventRecord, Store, StoreError,
    applied_marker,
};

use crate::clock::Clock;
use crate::error::AlarmsError;
use crate::forward::{ForwardedCommand, ForwardedError, ForwardedReply, Forwarder};
use crate::notify::{DeliverySettings, SmtpSettings};
use crate::secrets::Sealer;

/// The kind a device's rules see: a Nightscout site's uploader relays a CGM, so its
/// silence is the CGM's.
fn monitored_kind(kind: wardline_domain::DeviceKind) -> wardline_domain::DeviceKind {
    match kind {
        wardline_domain::DeviceKind::NightscoutUploader => wardline_domain::DeviceKind::Cgm,
        kind => kind,
    }
}

/// The engine's name as a reader of the event log.
pub const CONSUMER: &str = "alarms";

/// What the engine reads from the log: every kind of event, waveform chunks without
/// samples (a chunk is device contact, for silence rules), of the patients it watches.
/// Events of a patient without a care plan have no rule to meet, so the store passes
/// over them without decoding them; they count as evaluated.
fn inputs(patients: Arc<HashSet<PatientId>>) -> EventFilter {
    EventFilter {
        patients: Some(patients),
        ..EventFilter::all()
    }
}

/// Settings of the alarm runtime.
#[derive(Debug, Clone)]
pub struct AlarmSettings {
    /// First retry of a failed delivery after this; doubling up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// A notification not delivered this long after it was queued becomes a dead letter.
    pub retry_horizon: chrono::Duration,
    pub webhook_timeout: Duration,
    pub smtp: Option<SmtpSettings>,
    /// Webhooks may go to this machine's loopback addresses (a receiver beside the
    /// server); never to link-local or metadata addresses.
    pub allow_loopback_webhooks: bool,
    /// The web address people open ("open Wardline"), put in notifications.
    pub public_url: String,
    /// Without a care team policy, a high-priority alarm is re-notified this often...
    pub default_repeat_secs: i64,
    /// ...this many rounds at most.
    pub default_max_rounds: u32,
    /// How often the cursor and changed evaluator state are stored when no alarm
    /// changes: the most a restart replays.
    pub checkpoint_interval: Duration,
    /// Events read from the log at once.
    pub batch_size: u32,
    /// For tests only: a pause per event evaluated, to prove that an engine slower than
    /// ingest falls behind and catches up without losing anything.
    pub evaluation_delay: Duration,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        Self {
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(30 * 60),
            retry_horizon: chrono::Duration::hours(24),
            webhook_timeout: Duration::from_secs(10),
            allow_loopback_webhooks: false,
            smtp: None,
            public_url: String::new(),
            default_repeat_secs: 5 * 60,
            default_max_rounds: 12,
            checkpoint_interval: Duration::from_secs(2),
            batch_size: 2048,
            evaluation_delay: Duration::ZERO,
        }
    }
}

/// What the live alarm stream carries.
#[derive(Debug, Clone, Serialize)]
pub struct AlarmEvent {
    pub event: AlarmEventKind,
    pub patient_id: PatientId,
    pub at: DateTime<Utc>,
    /// The alarm as it is now, with its escalation status.
    #[serde(skip)]
    pub record: Option<AlarmRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<Value>,
    /// Passed on from the engine of another process, not made here: never passed on again.
    #[serde(skip)]
    pub relayed: bool,
}

/// A change to a patient's care plan: a programme's defaults, or one rule edit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarePlanRequest {
    /// Why: 1 to 1000 characters once trimmed of white space.
    #[cfg_attr(
        feature = "openapi",
        schema(schema_with = wardline_domain::text_schema::trimmed_text::<1000>)
    )]
    pub reason: String,
    #[serde(default)]
    pub program: Option<Program>,
    #[serde(default)]
    pub baseline: Option<PatientBaseline>,
    #[serde(default)]
    pub edit: Option<RuleEdit>,
}

/// Who changes a care plan, for its version history and the audit trail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CarePlanAuthor {
    /// `None` for the command line.
    pub user: Option<UserId>,
    pub label: String,
    pub audit: AuditEvent,
}

/// A person's action on an alarm.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AlarmAction {
    Acknowledge,
    Resolve { note: String },
    Snooze { secs: i64 },
}

enum Command {
    CarePlan {
        patient: PatientId,
        request: CarePlanRequest,
        author: CarePlanAuthor,
        reply: oneshot::Sender<Result<CarePlanVersionRecord, AlarmsError>>,
    },
    Act {
        record: AlarmRecord,
        by: UserId,
        action: AlarmAction,
        audit: AuditEvent,
        reply: oneshot::Sender<Result<AlarmRecord, AlarmsError>>,
    },
    Reload {
        reply: oneshot::Sender<()>,
    },
    DevicesChanged {
        patient: PatientId,
        reply: oneshot::Sender<()>,
    },
}

/// The handle the service layer and the server use.
///
/// One engine evaluates every patient, in the process that runs it: the only server on
/// an embedded database, or the worker holding the evaluation lease among several
/// workers on one PostgreSQL database. Elsewhere the handle stands by: people's
/// commands go to the engine's worker through a [`Forwarder`], and the alarm stream is
/// fed with what that worker announces ([`AlarmService::announce`]).
#[derive(Clone)]
pub struct AlarmService {
    /// The engine of this process, while it runs here.
    engine: Arc<std::sync::RwLock<Option<mpsc::Sender<Command>>>>,
    /// Where commands go while the engine runs in another process.
    forwarder: Option<Arc<dyn Forwarder>>,
    events: broadcast::Sender<Arc<AlarmEvent>>,
    sealer: Arc<Sealer>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for AlarmService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlarmService").finish_non_exhaustive()
    }
}

/// The engine and outbox worker running in this process; stopped when dropped.
#[derive(Debug)]
pub struct RunningEngine {
    engine: Arc<std::sync::RwLock<Option<mpsc::Sender<Command>>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningEngine {
    /// The tasks, for a caller that keeps them running until the process ends.
    pub fn into_tasks(mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.tasks)
    }
}

impl Drop for RunningEngine {
    fn drop(&mut self) {
        if self.tasks.is_empty() {
            return;
        }
        if let Ok(mut engine) = self.engine.write() {
            *engine = None;
        }
        // An alarm change being committed is rolled back with its transaction; the next
        // engine replays it from the committed checkpoint.
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl AlarmService {
    /// Loads care plans, the last checkpoint, open alarms and policies, then starts the
    /// engine and the outbox worker.
    pub async fn start(
        store: Arc<dyn Store>,
        settings: AlarmSettings,
        sealer: Arc<Sealer>,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Vec<JoinHandle<()>>), AlarmsError> {
        let service = Self::standby(sealer, None);
        let running = service.run_here(store, settings, clock).await?;
        Ok((service, running.into_tasks()))
    }

    /// A handle without an engine: commands go through `forwarder` (refused with
    /// [`AlarmsError::Stopped`] without one) until [`AlarmService::run_here`].
    pub fn standby(sealer: Arc<Sealer>, forwarder: Option<Arc<dyn Forwarder>>) -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            engine: Arc::new(std::sync::RwLock::new(None)),
            forwarder,
            events,
            sealer,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Loads everything from the store and runs the engine and the outbox worker in
    /// this process until the returned guard is dropped.
    pub async fn run_here(
        &self,
        store: Arc<dyn Store>,
        settings: AlarmSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<RunningEngine, AlarmsError> {
        let mut engine = Engine::new(
            Arc::clone(&store),
            settings.clone(),
            Arc::clone(&self.sealer),
            Arc::clone(&clock),
            self.events.clone(),
            Arc::clone(&self.wake),
        );
        engine.load().await?;
        let (commands, receiver) = mpsc::channel(256);
        let engine_task = tokio::spawn(engine.run(receiver));
        let delivery = DeliverySettings {
            retry_base: settings.retry_base,
            retry_max: settings.retry_max,
            retry_horizon: settings.retry_horizon,
            webhook_timeout: settings.webhook_timeout,
            smtp: settings.smtp.clone(),
            allow_loopback_webhooks: settings.allow_loopback_webhooks,
        };
        let outbox_task = tokio::spawn(crate::notify::run(
            store,
            Arc::clone(&self.sealer),
            delivery,
            Arc::clone(&self.wake),
            clock,
        ));
        if let Ok(mut engine) = self.engine.write() {
            *engine = Some(commands);
        }
        Ok(RunningEngine {
            engine: Arc::clone(&self.engine),
            tasks: vec![engine_task, outbox_task],
        })
    }

    /// Whether the engine runs in this process.
    pub fn runs_here(&self) -> bool {
        self.local().is_some()
    }

    fn local(&self) -> Option<mpsc::Sender<Command>> {
        self.engine.read().ok().and_then(|engine| engine.clone())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AlarmEvent>> {
        self.events.subscribe()
    }

    /// Passes on to this process's alarm streams what the engine of another process
    /// announced.
    pub fn announce(&self, event: AlarmEvent) {
        let _ = self.events.send(Arc::new(event));
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Makes the outbox worker look for due notifications now (after a dead letter was
    /// put back).
    pub fn wake_outbox(&self) {
        self.wake.notify_one();
    }

    async fn call<T>(
        &self,
        sender: mpsc::Sender<Command>,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, AlarmsError> {
        let (reply, answer) = oneshot::channel();
        sender
            .send(make(reply))
            .await
            .map_err(|_| AlarmsError::Stopped)?;
        answer.await.map_err(|_| AlarmsError::Stopped)
    }

    /// The engine's process, when it is another: `Stopped` when there is no way there.
    fn forwarder(&self) -> Result<&Arc<dyn Forwarder>, AlarmsError> {
        self.forwarder.as_ref().ok_or(AlarmsError::Stopped)
    }

    /// Applies a care plan change and starts evaluating it at once.
    pub async fn set_care_plan(
        &self,
        patient: PatientId,
        request: CarePlanRequest,
        author: CarePlanAuthor,
    ) -> Result<CarePlanVersionRecord, AlarmsError> {
        match self.local() {
            Some(engine) => {
                self.call(engine, |reply| Command::CarePlan {
                    patient,
                    request,
                    author,
                    reply,
                })
                .await?
            }
            None => match self
                .forwarder()?
                .forward(ForwardedCommand::CarePlan {
                    patient,
                    request,
                    author,
                })
                .await?
            {
                ForwardedReply::CarePlan(record) => Ok(*record),
                _ => Err(AlarmsError::Stopped),
            },
        }
    }

    /// Acknowledges, resolves or snoozes an alarm; the change and `audit` are committed
    /// together. Returns the alarm as it now is.
    pub async fn act(
        &self,
        record: AlarmRecord,
        by: UserId,
        action: AlarmAction,
        audit: AuditEvent,
    ) -> Result<AlarmRecord, AlarmsError> {
        match self.local() {
            Some(engine) => {
                self.call(engine, |reply| Command::Act {
                    record,
                    by,
                    action,
                    audit,
                    reply,
                })
                .await?
            }
            None => match self
                .forwarder()?
                .forward(ForwardedCommand::Act {
                    alarm: record.public_id,
                    by,
                    action,
                    audit,
                })
                .await?
            {
                ForwardedReply::Alarm(record) => Ok(*record),
                _ => Err(AlarmsError::Stopped),
            },
        }
    }

    /// Re-reads policies, channels and care team membership (after an admin changed them).
    pub async fn reload(&self) -> Result<(), AlarmsError> {
        match self.local() {
            Some(engine) => self.call(engine, |reply| Command::Reload { reply }).await,
            None => self
                .forwarder()?
                .forward(ForwardedCommand::Reload)
                .await
                .map(|_| ()),
        }
    }

    /// Tells the engine a device was enrolled for, or assigned to, `patient`, so that
    /// the rules that watch the patient's devices by kind include it.
    pub async fn devices_changed(&self, patient: PatientId) -> Result<(), AlarmsError> {
        match self.local() {
            Some(engine) => {
                self.call(engine, |reply| Command::DevicesChanged { patient, reply })
                    .await
            }
            None => self
                .forwarder()?
                .forward(ForwardedCommand::DevicesChanged { patient })
                .await
                .map(|_| ()),
        }
    }

    /// Carries out a command forwarded from another process, on this process's engine.
    pub async fn carry_out(
        &self,
        store: &dyn Store,
        command: ForwardedCommand,
    ) -> Result<ForwardedReply, ForwardedError> {
        let Some(engine) = self.local() else {
            return Err(ForwardedError::from(&AlarmsError::Stopped));
        };
        let result = match command {
            ForwardedCommand::CarePlan {
                patient,
                request,
                author,
            } => self
                .call(engine, |reply| Command::CarePlan {
                    patient,
                    request,
                    author,
                    reply,
                })
                .await
                .and_then(|result| result)
                .map(|record| ForwardedReply::CarePlan(Box::new(record))),
            ForwardedCommand::Act {
                alarm,
                by,
                action,
                audit,
            } => match store.alarm_by_public_id(&alarm).await {
                Ok(Some(record)) => self
                    .call(engine, |reply| Command::Act {
                        record,
                        by,
                        action,
                        audit,
                        reply,
                    })
                    .await
                    .and_then(|result| result)
                    .map(|record| ForwardedReply::Alarm(Box::new(record))),
                Ok(None) => Err(AlarmsError::NotFound("the alarm".into())),
                Err(error) => Err(error.into()),
            },
            ForwardedCommand::Reload => self
                .call(engine, |reply| Command::Reload { reply })
                .await
                .map(|()| ForwardedReply::Done),
            ForwardedCommand::DevicesChanged { patient } => self
                .call(engine, |reply| Command::DevicesChanged { patient, reply })
                .await
                .map(|()| ForwardedReply::Done),
        };
        result.map_err(|error| ForwardedError::from(&error))
    }
}

struct Watched {
    monitor: PatientMonitor,
    forecaster: Forecaster,
    forecasts: bool,
}

impl Watched {
    fn new(monitor: PatientMonitor) -> Self {
        let forecasts = uses_forecasts(monitor.care_plan());
        Self {
            monitor,
            forecaster: Forecaster::new(ForecastMethod::Ar2),
            forecasts,
        }
    }
}

fn uses_forecasts(plan: &CarePlan) -> bool {
    plan.rules
        .iter()
        .any(|rule| matches!(rule.kind, RuleKind::PredictedCrossing(_)))
}

/// What happened to an alarm, for its history.
struct Happened {
    event: AlarmEventKind,
    actor: Option<UserId>,
    detail: Option<Value>,
}

fn happened(event: AlarmEventKind, actor: Option<UserId>, detail: Option<Value>) -> Happened {
    Happened {
        event,
        actor,
        detail,
    }
}

/// One alarm change on its way to the store, then to the stream.
struct Pending {
    alarm: Alarm,
    escalation: EscalationStatus,
    events: Vec<NewAlarmEvent>,
    notifications: Vec<NewNotification>,
    announce: Vec<AlarmEvent>,
}

struct Engine {
    store: Arc<dyn Store>,
    /// Makes new alarms' public handles.
    sealer: Arc<Sealer>,
    /// Handles of unresolved alarms as stored, which alarms raised before handles were
    /// keyed keep.
    handles: HashMap<AlarmId, String>,
    clock: Arc<dyn Clock>,
    settings: AlarmSettings,
    patients: HashMap<PatientId, Watched>,
    /// The keys of `patients`, as the event log's filter takes them; `None` after
    /// `patients` changed, until the next read.
    scope: Option<Arc<HashSet<PatientId>>>,
    boards: HashMap<PatientId, AlarmBoard>,
    policies: HashMap<CareTeamId, EscalationPolicy>,
    channels: HashMap<CareTeamId, Vec<NotificationChannel>>,
    teams: HashMap<PatientId, Vec<CareTeamId>>,
    /// Patients whose evaluator changed since the last checkpoint.
    dirty: HashSet<PatientId>,
    /// Where the next read of the event log starts: after everything evaluated.
    cursor: EventCursor,
    /// The resume cursor last committed.
    checkpointed: EventCursor,
    /// The applied position last committed: every alarm change caused by events up to
    /// here is stored.
    applied: EventCursor,
    /// After a restart, until the cursor reaches it: the applied position the last run
    /// committed. Events up to it are replayed into the evaluators, and what they signal
    /// is not acted on again.
    replay_through: Option<EventCursor>,
    /// While events read back for a replay are evaluated.
    replaying: bool,
    /// While events of the log are evaluated (replayed or not): their alarm changes can
    /// be replayed, so they need no resume point of their own.
    evaluating_log: bool,
    /// An evaluator signalled something that a replay of the log would not repeat (a
    /// timer, a care plan change): the next commit carries a resume point.
    resume_due: bool,
    /// Alarm changes evaluated but not yet committed, and the audit entries of the
    /// people whose actions caused them.
    pending: Vec<Pending>,
    pending_audit: Vec<AuditEvent>,
    events: broadcast::Sender<Arc<AlarmEvent>>,
    wake: Arc<Notify>,
    next_checkpoint: Instant,
    next_teams_refresh: Instant,
    next_wake: Instant,
    /// Observations evaluated since the engine started.
    evaluated_readings: u64,
    /// Observations replayed after the start, evaluated before it.
    replayed_readings: u64,
}

impl Engine {
    fn new(
        store: Arc<dyn Store>,
        settings: AlarmSettings,
        sealer: Arc<Sealer>,
        clock: Arc<dyn Clock>,
        events: broadcast::Sender<Arc<AlarmEvent>>,
        wake: Arc<Notify>,
    ) -> Self {
        let now = Instant::now();
        Self {
            store,
            sealer,
            handles: HashMap::new(),
            clock,
            next_checkpoint: now + settings.checkpoint_interval,
            settings,
            patients: HashMap::new(),
            scope: None,
            boards: HashMap::new(),
            policies: HashMap::new(),
            channels: HashMap::new(),
            teams: HashMap::new(),
            dirty: HashSet::new(),
            cursor: EventCursor(String::new()),
            checkpointed: EventCursor(String::new()),
            applied: EventCursor(String::new()),
            replay_through: None,
            replaying: false,
            evaluating_log: false,
            resume_due: false,
            pending: Vec::new(),
            pending_audit: Vec::new(),
            events,
            wake,
            next_teams_refresh: now + Duration::from_secs(15),
            next_wake: now,
            evaluated_readings: 0,
            replayed_readings: 0,
        }
    }

    /// Loads everything from the store: care plans, the evaluators' state and cursor of
    /// the last resume point, the applied position, the unresolved alarms, policies and
    /// channels. A first start begins at the log's tail and stores that position at once,
    /// so that nothing committed after it can be missed. A database from before the event log (schema 4)
    /// has evaluator state but no position: that state is taken up too, so a condition
    /// that was building up when the old version stopped carries on.
    async fn load(&mut self) -> Result<(), AlarmsError> {
        let now = self.clock.now();
        self.patients.clear();
        self.scope = None;
        self.boards.clear();
        self.dirty.clear();
        self.pending.clear();
        self.pending_audit.clear();
        self.replay_through = None;
        self.resume_due = false;
        let checkpoint = self.store.checkpoint(CONSUMER).await?;
        let applied = self.store.checkpoint(&applied_marker(CONSUMER)).await?;
        let snapshots: HashMap<PatientId, Value> =
            self.store.monitor_states().await?.into_iter().collect();
        for record in self.store.current_care_plans().await? {
            let plan = record.plan;
            let restored = snapshots
                .get(&record.patient_id)
                .and_then(|state| serde_json::from_value::<PatientMonitor>(state.clone()).ok())
                .filter(|monitor| monitor.care_plan() == &plan);
            let monitor = match restored {
                Some(monitor) => monitor,
                None => match PatientMonitor::new(plan, now) {
                    Ok(monitor) => monitor,
                    Err(error) => {
                        // The patient goes unwatched: say so loudly, without health data.
                        tracing::error!(%error, version = record.version, "a stored care plan cannot be evaluated; its patient is not monitored");
                        metrics::counter!("wardline_alarm_load_failed_total", "what" => "care_plan")
                            .increment(1);
                        continue;
                    }
                },
            };
            self.watch(record.patient_id, monitor).await;
        }
        let mut alarms: HashMap<PatientId, Vec<Alarm>> = HashMap::new();
        self.handles.clear();
        for record in self.store.unresolved_alarms().await? {
            self.handles
                .insert(record.alarm.id.clone(), record.public_id.clone());
            alarms
                .entry(record.patient_id())
                .or_default()
                .push(record.alarm);
        }
        for (patient, alarms) in alarms {
            match serde_json::from_value::<AlarmBoard>(json!({ "alarms": alarms })) {
                Ok(board) => {
                    self.boards.insert(patient, board);
                }
                Err(_) => metrics::counter!("wardline_alarm_load_failed_total", "what" => "alarm")
                    .increment(1),
            }
            if !self.teams.contains_key(&patient) {
                let teams = self.store.care_teams_of_patient(patient).await?;
                self.teams.insert(patient, teams);
            }
        }
        self.reload().await?;
        match checkpoint {
            Some(cursor) => {
                // A database from before the applied position was kept committed every
                // alarm change with its resume point.
                let applied = applied.unwrap_or_else(|| cursor.clone());
                self.replay_through = (applied != cursor).then(|| applied.clone());
                self.applied = applied;
                self.checkpointed = cursor.clone();
                self.cursor = cursor;
            }
            None => {
                self.cursor = self.store.event_tail().await?;
                self.applied = self.cursor.clone();
                self.dirty.extend(self.patients.keys().copied());
                if !self.flush(true).await {
                    return Err(AlarmsError::Stopped);
                }
            }
        }
        self.schedule(now);
        Ok(())
    }

    async fn reload(&mut self) -> Result<(), AlarmsError> {
        self.policies = self
            .store
            .escalation_policies()
            .await?
            .into_iter()
            .collect();
        let mut channels: HashMap<CareTeamId, Vec<NotificationChannel>> = HashMap::new();
        for channel in self.store.notification_channels(None).await? {
            channels.entry(channel.team_id).or_default().push(channel);
        }
        self.channels = channels;
        let patients: Vec<PatientId> = self.teams.keys().copied().collect();
        for patient in patients {
            let teams = self.store.care_teams_of_patient(patient).await?;
            self.teams.insert(patient, teams);
        }
        self.adopt_new_care_plans().await?;
        Ok(())
    }

    /// Care plan versions written by someone else (`wardline admin set-care-plan` beside
    /// the running server, another worker) are adopted here.
    async fn adopt_new_care_plans(&mut self) -> Result<(), AlarmsError> {
        let now = self.clock.now();
        for record in self.store.current_care_plans().await? {
            let patient = record.patient_id;
            let loaded = self
                .patients
                .get(&patient)
                .map(|watched| watched.monitor.care_plan().version);
            if loaded.is_some_and(|version| version >= record.version) {
                continue;
            }
            let plan = record.plan;
            let signals = match self.patients.get_mut(&patient) {
                Some(watched) => match watched.monitor.update_care_plan(plan, now) {
                    Ok(signals) => {
                        watched.forecasts = uses_forecasts(watched.monitor.care_plan());
                        signals
                    }
                    Err(_) => continue,
                },
                None => match PatientMonitor::new(plan, now) {
                    Ok(monitor) => {
                        self.watch(patient, monitor).await;
                        Vec::new()
                    }
                    Err(_) => continue,
                },
            };
            self.dirty.insert(patient);
            self.apply(patient, signals, now);
        }
        Ok(())
    }

    /// Starts evaluating a patient's plan, with the kinds of their registered devices.
    async fn watch(&mut self, patient: PatientId, mut monitor: PatientMonitor) {
        if let Ok(devices) = self.store.devices_of_patient(patient).await {
            for device in devices {
                monitor.attach_device(device.id, monitored_kind(device.kind));
            }
        }
        if let Ok(teams) = self.store.care_teams_of_patient(patient).await {
            self.teams.insert(patient, teams);
        }
        self.patients.insert(patient, Watched::new(monitor));
        self.scope = None;
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut commits = self.store.commits();
        let mut failures = 0u32;
        loop {
            // Catch up: read and evaluate until the log is empty, answering people's
            // commands and firing due timers between batches.
            match self.evaluate_next_batch().await {
                // A batch shorter than asked for reached the end of the log: wait for
                // the next commit (or command, or timer) instead of reading again to
                // find nothing.
                Ok(count) if count < self.settings.batch_size as usize => failures = 0,
                Ok(_) => {
                    failures = 0;
                    while let Ok(command) = commands.try_recv() {
                        self.command(command).await;
                    }
                    if Instant::now() >= self.next_wake && self.replay_through.is_none() {
                        self.tick().await;
                    }
                    continue;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(%error, "alarm evaluation failed; reloading from the last checkpoint");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(failures.min(50))))
                        .await;
                    if let Err(error) = self.load().await {
                        tracing::error!(%error, "could not reload the alarm engine");
                    }
                    continue;
                }
            }
            let wait = self.next_wake.min(Instant::now() + Duration::from_secs(1));
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.command(command).await,
                    None => return,
                },
                changed = commits.changed() => if changed.is_err() {
                    return;
                },
                () = tokio::time::sleep_until(wait) => {
                    if Instant::now() >= self.next_wake {
                        self.tick().await;
                    }
                }
            }
        }
    }

    /// Reads and evaluates one batch of committed events and commits what it caused
    /// with the new cursor. Returns how many events there were.
    async fn evaluate_next_batch(&mut self) -> Result<usize, StoreError> {
        let scope = Arc::clone(
            self.scope
                .get_or_insert_with(|| Arc::new(self.patients.keys().copied().collect())),
        );
        let limit = self.settings.batch_size;
        let batch = match &self.replay_through {
            Some(through) => {
                self.store
                    .events_between(&self.cursor, through, inputs(scope), limit)
                    .await?
            }
            None => {
                self.store
                    .events_after(&self.cursor, inputs(scope), limit)
                    .await?
            }
        };
        // Every event read counts, also those passed over for having no care plan: the
        // log may hold more only when a full batch was read.
        let count = batch.events.len() + batch.passed_over.total() as usize;
        let replaying = self.replay_through.is_some();
        if replaying && count < limit as usize {
            // The replay ends here; `through` is a position this engine reached before,
            // so the next read starts from it.
            if let Some(through) = self.replay_through.take() {
                tracing::info!(
                    readings = self.replayed_readings + batch.passed_over.observations,
                    "alarm evaluation caught up with the alarm changes stored before the restart"
                );
                self.cursor = through;
            }
        } else {
            self.cursor = batch.next.clone();
        }
        if count == 0 {
            if Instant::now() >= self.next_checkpoint && !self.flush(false).await {
                return Err(StoreError::CommitFailed("alarm changes".into()));
            }
            // A replay that found nothing more still counts as work, so the loop reads
            // again at once from where it ended.
            return Ok(if replaying { limit as usize } else { 0 });
        }
        let mut readings = batch.passed_over.observations;
        let mut newest_received = None;
        self.evaluating_log = true;
        self.replaying = replaying;
        for event in &batch.events {
            if let CommittedEvent::Observation(observation) = event {
                readings += 1;
                newest_received = Some(observation.received);
            }
            self.evaluate(event);
        }
        self.evaluating_log = false;
        self.replaying = false;
        if !self.settings.evaluation_delay.is_zero() {
            tokio::time::sleep(self.settings.evaluation_delay * count as u32).await;
        }
        if !self.flush(false).await {
            return Err(StoreError::CommitFailed("alarm changes".into()));
        }
        if replaying {
            self.replayed_readings += readings;
            metrics::counter!("wardline_alarm_readings_replayed_total").increment(readings);
            return Ok(limit as usize);
        }
        self.evaluated_readings += readings;
        metrics::counter!("wardline_alarm_readings_evaluated_total").increment(readings);
        metrics::counter!("wardline_alarm_events_evaluated_total").increment(count as u64);
        if let Some(received) = newest_received {
            let lag = (self.clock.now() - received).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::gauge!("wardline_alarm_evaluation_lag_seconds").set(lag);
        }
        let now = self.clock.now();
        self.schedule(now);
        Ok(count)
    }

    fn evaluate(&mut self, event: &CommittedEvent) {
        match event {
            CommittedEvent::Observation(observation) => self.observation(observation),
            CommittedEvent::News2(score) => self.news2(score),
            CommittedEvent::Rhythm(event) => self.rhythm(event),
            CommittedEvent::DeviceReport(report) => self.device_report(report),
            CommittedEvent::Waveform(waveform) => {
                let patient = waveform.patient_id;
                let now = self.clock.now();
                if let Some(watched) = self.patients.get_mut(&patient) {
                    let signals = watched.monitor.on_device_heard(waveform.device_id(), now);
                    self.dirty.insert(patient);
                    self.apply(patient, signals, now);
                }
            }
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::CarePlan {
                patient,
                request,
                author,
                reply,
            } => {
                let result = self.care_plan(patient, request, author).await;
                let _ = reply.send(result);
            }
            Command::Act {
                record,
                by,
                action,
                audit,
                reply,
            } => {
                let result = self.act(record, by, action, audit).await;
                let _ = reply.send(result);
            }
            Command::DevicesChanged { patient, reply } => {
                if self.patients.contains_key(&patient) {
                    match self.store.devices_of_patient(patient).await {
                        Ok(devices) => {
                            if let Some(watched) = self.patients.get_mut(&patient) {
                                for device in devices {
                                    watched
                                        .monitor
                                        .attach_device(device.id, monitored_kind(device.kind));
                                }
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "could not read a patient's devices");
                        }
                    }
                }
                let _ = reply.send(());
            }
            Command::Reload { reply } => {
                if let Err(error) = self.reload().await {
                    tracing::warn!(%error, "could not reload alarm policies");
                }
                if !self.flush(false).await {
                    tracing::warn!("could not store alarm changes after a reload");
                }
                let now = self.clock.now();
                self.schedule(now);
                let _ = reply.send(());
            }
        }
    }

    fn observation(&mut self, observation: &Observation) {
        let Some(watched) = self.patients.get_mut(&observation.patient_id) else {
            return;
        };
        let now = self.clock.now();
        let Ok(mut signals) = watched
            .monitor
            .on_observation(&ObservedValue::from(observation), now)
        else {
            return;
        };
        if watched.forecasts
            && observation.code == ObservationCode::GlucoseCgm
            && watched
                .forecaster
                .push(observation.effective.timestamp(), observation.value)
                .is_ok()
            && let Some(forecast) = watched.forecaster.forecast()
            && let Some(input) = ForecastInput::from_glucose_forecast(&forecast)
            && let Ok(more) = watched.monitor.on_forecast(&input, now)
        {
            signals.extend(more);
        }
        self.dirty.insert(observation.patient_id);
        self.apply(observation.patient_id, signals, now);
    }

    fn news2(&mut self, record: &News2Record) {
        let Some(watched) = self.patients.get_mut(&record.patient_id) else {
            return;
        };
        let now = self.clock.now();
        let score = if record.complete {
            News2::Complete(News2Score {
                total: record.total,
                sub_scores: News2SubScores {
                    respiration_rate: 0,
                    spo2: 0,
                    air_or_oxygen: 0,
                    systolic_bp: 0,
                    pulse: 0,
                    consciousness: 0,
                    temperature: 0,
                },
                any_parameter_3: record.any_parameter_3,
                risk: clinical_risk(record.total, record.any_parameter_3),
            })
        } else {
            News2::Partial(PartialNews2 {
                missing: Vec::new(),
                sub_scores: PartialSubScores::default(),
                minimum_total: record.total,
                any_parameter_3: record.any_parameter_3,
                minimum_risk: clinical_risk(record.total, record.any_parameter_3),
            })
        };
        let Ok(signals) = watched.monitor.on_news2(&score, record.time, now) else {
            return;
        };
        self.dirty.insert(record.patient_id);
        self.apply(record.patient_id, signals, now);
    }

    fn rhythm(&mut self, record: &RhythmEventRecord) {
        let Some(watched) = self.patients.get_mut(&record.patient_id) else {
            return;
        };
        let now = self.clock.now();
        let event = RhythmObservation {
            device_id: record.device_id.clone(),
            rhythm: record.kind,
            onset: record.onset,
            end: Some(record.end),
        };
        let Ok(signals) = watched.monitor.on_rhythm_event(&event, now) else {
            return;
        };
        self.dirty.insert(record.patient_id);
        self.apply(record.patient_id, signals, now);
    }

    fn device_report(&mut self, report: &DeviceReport) {
        let Some(watched) = self.patients.get_mut(&report.patient_id) else {
            return;
        };
        let now = self.clock.now();
        let status = DeviceStatusReport {
            device_id: report.device_id.clone(),
            at: report.at,
            battery_percent: report.battery_percent,
            fault: report.fault.clone(),
        };
        let Ok(signals) = watched.monitor.on_device_status(&status, now) else {
            return;
        };
        self.dirty.insert(report.patient_id);
        self.apply(report.patient_id, signals, now);
    }

    async fn care_plan(
        &mut self,
        patient: PatientId,
        request: CarePlanRequest,
        author: CarePlanAuthor,
    ) -> Result<CarePlanVersionRecord, AlarmsError> {
        // A version written beside the server (the command line) comes first.
        self.adopt_new_care_plans().await?;
        let now = self.clock.now();
        let reason = request.reason.trim().to_owned();
        if reason.is_empty() || reason.chars().count() > 1000 {
            return Err(AlarmsError::Invalid {
                field: "reason",
                message: "say why, in 1 to 1000 characters".into(),
            });
        }
        let current = self
            .patients
            .get(&patient)
            .map(|watched| watched.monitor.care_plan().clone());
        let editor = author.user.unwrap_or_else(UserId::random);
        let (plan, old_rule, new_rule) = match (request.program, request.edit, current) {
            (Some(program), None, current) => {
                let baseline = request.baseline.unwrap_or_default();
                let effective = current
                    .as_ref()
                    .map_or(now, |plan| now.max(plan.effective_from));
                let mut plan = CarePlan::from_program(patient, program, &baseline, effective);
                plan.version = current.map_or(1, |plan| plan.version + 1);
                (plan, None, None)
            }
            (None, Some(edit), Some(current)) => {
                let at = now.max(current.effective_from);
                let mut history = CarePlanHistory::enrol(current, editor, "")?;
                history.apply(CarePlanChange {
                    author: editor,
                    at,
                    reason: reason.clone(),
                    edit,
                })?;
                let version = history.versions().last().ok_or(AlarmsError::Invalid {
                    field: "edit",
                    message: "the edit made no version".into(),
                })?;
                (
                    version.plan.clone(),
                    version.old_rule.clone(),
                    version.new_rule.clone(),
                )
            }
            (None, Some(_), None) => {
                return Err(AlarmsError::NotFound(
                    "care plan (assign a program first)".into(),
                ));
            }
            _ => {
                return Err(AlarmsError::Invalid {
                    field: "program",
                    message: "give either `program` (with an optional `baseline`) or one `edit`"
                        .into(),
                });
            }
        };
        plan.validate()?;
        let record = CarePlanVersionRecord {
            patient_id: patient,
            version: plan.version,
            effective: plan.effective_from,
            author: author.user,
            author_label: author.label,
            reason,
            plan: plan.clone(),
            old_rule,
            new_rule,
        };
        self.store
            .append_care_plan_version(record.clone(), author.audit)
            .await?;
        let signals = match self.patients.get_mut(&patient) {
            Some(watched) => {
                let signals = watched.monitor.update_care_plan(plan, now)?;
                watched.forecasts = uses_forecasts(watched.monitor.care_plan());
                signals
            }
            None => {
                let monitor = PatientMonitor::new(plan, now)?;
                self.watch(patient, monitor).await;
                Vec::new()
            }
        };
        self.dirty.insert(patient);
        self.apply(patient, signals, now);
        if !self.flush(true).await {
            return Err(AlarmsError::Stopped);
        }
        self.schedule(now);
        Ok(record)
    }

    async fn act(
        &mut self,
        record: AlarmRecord,
        by: UserId,
        action: AlarmAction,
        audit: AuditEvent,
    ) -> Result<AlarmRecord, AlarmsError> {
        let now = self.clock.now();
        let patient = record.patient_id();
        let alarm_id = record.alarm.id;
        let board = self
            .boards
            .get_mut(&patient)
            .ok_or_else(|| AlarmsError::InvalidState("the alarm is resolved".into()))?;
        let pending = match action {
            AlarmAction::Acknowledge => {
                board.acknowledge(&alarm_id, by, now)?;
                self.touched(
                    patient,
                    &alarm_id,
                    None,
                    happened(AlarmEventKind::Acknowledged, Some(by), None),
                    false,
                    now,
                )
            }
            AlarmAction::Snooze { secs } => {
                let alarm = board.snooze(&alarm_id, by, now, secs)?;
                let until = match alarm.state {
                    wardline_alerting::AlarmState::Snoozed { until, .. } => Some(until),
                    _ => None,
                };
                self.touched(
                    patient,
                    &alarm_id,
                    None,
                    happened(
                        AlarmEventKind::Snoozed,
                        Some(by),
                        Some(json!({ "until": until })),
                    ),
                    false,
                    now,
                )
            }
            AlarmAction::Resolve { note } => {
                let note = note.trim().to_owned();
                if note.chars().count() > 2000 {
                    return Err(AlarmsError::Invalid {
                        field: "note",
                        message: "at most 2000 characters".into(),
                    });
                }
                let alarm = board.resolve(&alarm_id, by, &note, now)?;
                self.touched(
                    patient,
                    &alarm_id,
                    Some(alarm),
                    happened(
                        AlarmEventKind::Resolved,
                        Some(by),
                        Some(json!({ "by": "person", "note": note })),
                    ),
                    false,
                    now,
                )
            }
        };
        let pending = pending.ok_or_else(|| AlarmsError::NotFound("alarm".into()))?;
        let changed = AlarmRecord {
            public_id: self.handle(&pending.alarm.id),
            alarm: pending.alarm.clone(),
            escalation: pending.escalation.clone(),
            updated: now,
        };
        self.pending.push(pending);
        self.pending_audit.push(audit);
        if !self.flush(false).await {
            // The board changed in memory but not in the store: start again from it.
            if let Err(error) = self.load().await {
                tracing::error!(%error, "could not reload the alarm engine");
            }
            return Err(AlarmsError::Stopped);
        }
        self.schedule(now);
        Ok(changed)
    }

    async fn tick(&mut self) {
        let now = self.clock.now();
        let due: Vec<(PatientId, Vec<AlarmSignal>)> = self
            .patients
            .iter_mut()
            .filter(|(_, watched)| {
                watched
                    .monitor
                    .next_tick_due()
                    .is_some_and(|due| due <= now)
            })
            .map(|(patient, watched)| (*patient, watched.monitor.on_tick(now)))
            .collect();
        for (patient, signals) in due {
            self.dirty.insert(patient);
            self.apply(patient, signals, now);
        }
        // Snoozes that ended, and escalation steps that fell due.
        let patients: Vec<PatientId> = self.boards.keys().copied().collect();
        for patient in patients {
            let expired = self
                .boards
                .get_mut(&patient)
                .map(|board| board.expire_snoozes(now))
                .unwrap_or_default();
            let mut handled = HashSet::new();
            for alarm_id in expired {
                handled.insert(alarm_id.clone());
                let pending = self.touched(
                    patient,
                    &alarm_id,
                    None,
                    happened(AlarmEventKind::SnoozeExpired, None, None),
                    true,
                    now,
                );
                self.pending.extend(pending);
            }
            let escalating: Vec<AlarmId> = self
                .boards
                .get(&patient)
                .map(|board| {
                    board
                        .unresolved()
                        .iter()
                        .filter(|alarm| !handled.contains(&alarm.id))
                        .filter(|alarm| self.deadline_of(alarm).is_some_and(|due| due <= now))
                        .map(|alarm| alarm.id.clone())
                        .collect()
                })
                .unwrap_or_default();
            for alarm_id in escalating {
                let notifications = self.escalate(patient, &alarm_id, now);
                if notifications.is_empty() {
                    continue;
                }
                let Some(alarm) = self
                    .boards
                    .get(&patient)
                    .and_then(|board| board.get(&alarm_id))
                    .cloned()
                else {
                    continue;
                };
                let mut pending = self.pending(alarm.clone());
                self.deliveries(&alarm, &notifications, now, &mut pending);
                self.pending.push(pending);
            }
        }
        if Instant::now() >= self.next_teams_refresh {
            self.next_teams_refresh = Instant::now() + Duration::from_secs(15);
            if let Err(error) = self.reload().await {
                tracing::warn!(%error, "could not refresh care teams");
            }
        }
        if !self.flush(false).await {
            tracing::error!("could not store timed alarm changes; reloading");
            if let Err(error) = self.load().await {
                tracing::error!(%error, "could not reload the alarm engine");
            }
        }
        self.schedule(now);
    }

    /// Commits the pending alarm changes, with the cursor and the changed evaluators'
    /// state when there are changes, when `force`d, or when a checkpoint is due; then
    /// announces the changes. Nothing is announced that is not durable. `false` when the
    /// commit failed: the in-memory state is then ahead of the store.
    async fn flush(&mut self, force: bool) -> bool {
        // A cursor that moved over events of unwatched patients only is stored too, so
        // that a restart does not read them again.
        let resume_due = force
            || self.resume_due
            || ((!self.dirty.is_empty() || self.cursor != self.checkpointed)
                && Instant::now() >= self.next_checkpoint);
        // During a replay the applied position stays where the last run left it.
        let applied = self
            .replay_through
            .clone()
            .unwrap_or_else(|| self.cursor.clone());
        let applied_due = !self.pending.is_empty() && applied != self.applied;
        if !resume_due && self.pending.is_empty() && self.pending_audit.is_empty() {
            return true;
        }
        let now = self.clock.now();
        let pending = std::mem::take(&mut self.pending);
        let audit = std::mem::take(&mut self.pending_audit);
        let mut changes = Vec::with_capacity(pending.len());
        let mut announce = Vec::new();
        let mut notify = false;
        for pending in pending {
            notify |= !pending.notifications.is_empty();
            let record = AlarmRecord {
                public_id: self.handle(&pending.alarm.id),
                alarm: pending.alarm,
                escalation: pending.escalation,
                updated: now,
            };
            for mut event in pending.announce {
                event.record = Some(record.clone());
                announce.push(event);
            }
            changes.push(AlarmChange {
                alarm: record,
                events: pending.events,
                notifications: pending.notifications,
            });
        }
        let resume = resume_due.then(|| ResumePoint {
            cursor: self.cursor.clone(),
            monitors: self
                .dirty
                .iter()
                .filter_map(|patient| {
                    let watched = self.patients.get(patient)?;
                    serde_json::to_value(&watched.monitor)
                        .ok()
                        .map(|state| (*patient, state))
                })
                .collect(),
        });
        let checkpoint = (resume_due || applied_due).then(|| EvaluationCheckpoint {
            consumer: CONSUMER.to_owned(),
            applied: applied.clone(),
            resume,
            saved: now,
        });
        match self
            .store
            .save_alarm_changes(changes, checkpoint.clone(), audit)
            .await
        {
            Ok(()) => {
                if checkpoint.is_some() {
                    self.applied = applied;
                }
                if resume_due {
                    self.checkpointed = self.cursor.clone();
                    self.dirty.clear();
                    self.resume_due = false;
                    self.next_checkpoint = Instant::now() + self.settings.checkpoint_interval;
                }
                for event in announce {
                    let _ = self.events.send(Arc::new(event));
                }
                if notify {
                    self.wake.notify_one();
                }
                true
            }
            Err(error) => {
                metrics::counter!("wardline_alarm_store_failed_total").increment(1);
                tracing::error!(%error, "could not store alarm changes; they were not announced");
                false
            }
        }
    }

    /// When the timer should next fire.
    fn schedule(&mut self, now: DateTime<Utc>) {
        let mut next: Option<DateTime<Utc>> = None;
        let mut consider = |at: Option<DateTime<Utc>>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |next| next.min(at)));
            }
        };
        for watched in self.patients.values() {
            consider(watched.monitor.next_tick_due());
        }
        for board in self.boards.values() {
            for alarm in board.unresolved() {
                consider(self.deadline_of(alarm));
            }
        }
        let wait = next
            .map(|at| (at - now).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        self.next_wake = Instant::now() + wait.max(Duration::from_millis(10));
    }

    fn policy_for(&self, patient: PatientId, priority: Priority) -> EscalationPolicy {
        let teams = self.teams.get(&patient).cloned().unwrap_or_default();
        let policy = teams
            .iter()
            .find_map(|team| self.policies.get(team))
            .cloned()
            .unwrap_or_else(|| EscalationPolicy {
                steps: vec![EscalationStep {
                    after_secs: 0,
                    notify: teams
                        .iter()
                        .map(|team| Recipient::CareTeam {
                            care_team_id: *team,
                        })
                        .collect(),
                }],
                repeat_after_secs: Some(self.settings.default_repeat_secs.max(1)),
                max_rounds: self.settings.default_max_rounds.max(1),
            });
        // Only high priority escalates and repeats; the others notify once.
        if priority == Priority::High {
            policy
        } else {
            EscalationPolicy {
                steps: policy.steps.into_iter().take(1).collect(),
                repeat_after_secs: None,
                max_rounds: 1,
            }
        }
    }

    fn deadline_of(&self, alarm: &Alarm) -> Option<DateTime<Utc>> {
        let policy = self.policy_for(alarm.condition.patient_id, alarm.priority);
        next_deadline(alarm, &policy)
    }

    /// Notifications due for an alarm on the board; recorded as sent on the board.
    fn escalate(
        &mut self,
        patient: PatientId,
        alarm_id: &AlarmId,
        now: DateTime<Utc>,
    ) -> Vec<Notification> {
        let Some(alarm) = self
            .boards
            .get(&patient)
            .and_then(|board| board.get(alarm_id))
        else {
            return Vec::new();
        };
        let policy = self.policy_for(patient, alarm.priority);
        let due = due_notifications(alarm, &policy, now);
        if let Some(board) = self.boards.get_mut(&patient) {
            board.record_notified(&due);
        }
        due
    }

    /// Outbox rows and stream events for notifications of one alarm.
    fn deliveries(
        &self,
        alarm: &Alarm,
        notifications: &[Notification],
        now: DateTime<Utc>,
        pending: &mut Pending,
    ) {
        let public = self.handle(&alarm.id);
        let patient = alarm.condition.patient_id;
        let link = format!(
            "{}/#/patients/{patient}/alarms/{public}",
            self.settings.public_url.trim_end_matches('/')
        );
        for notification in notifications {
            let reason = serde_json::to_value(notification.reason).unwrap_or(Value::Null);
            let detail = json!({
                "level": notification.level,
                "round": notification.round,
                "sequence": notification.sequence,
                "reason": reason,
                "recipients": notification.recipients,
            });
            pending.events.push(NewAlarmEvent {
                time: now,
                event: AlarmEventKind::Notified,
                actor: None,
                detail: Some(detail.clone()),
            });
            pending.announce.push(AlarmEvent {
                event: AlarmEventKind::Notified,
                patient_id: patient,
                at: now,
                record: None,
                notification: Some(detail),
                relayed: false,
            });
            for recipient in &notification.recipients {
                let Recipient::CareTeam { care_team_id } = recipient else {
                    continue;
                };
                for channel in self.channels.get(care_team_id).into_iter().flatten() {
                    let key = format!(
                        "{public}-{}-{}-{}",
                        notification.escalation_since.timestamp_millis(),
                        notification.sequence,
                        channel.id
                    );
                    let priority = alarm.priority.as_str();
                    let minimal_text = format!(
                        "Alarm {public} ({priority} priority) for patient {patient}. Open Wardline: {link}"
                    );
                    let payload = if channel.minimal {
                        json!({
                            "type": "wardline.alarm",
                            "idempotency_key": key,
                            "alarm_id": public,
                            "patient_id": patient,
                            "priority": priority,
                            "reason": reason,
                            "level": notification.level,
                            "url": link,
                            "subject": format!("[Wardline] {priority} priority alarm"),
                            "text": minimal_text,
                        })
                    } else {
                        json!({
                            "type": "wardline.alarm",
                            "idempotency_key": key,
                            "alarm_id": public,
                            "patient_id": patient,
                            "priority": priority,
                            "kind": alarm.kind,
                            "rule_id": alarm.rule_id,
                            "message": alarm.message,
                            "state": alarm.state.name(),
                            "raised_at": alarm.raised_at,
                            "reason": reason,
                            "level": notification.level,
                            "round": notification.round,
                            "url": link,
                            "subject": format!("[Wardline] {priority} priority alarm: {}", alarm.message),
                            "text": format!("{}\n\n{minimal_text}", alarm.message),
                        })
                    };
                    pending.notifications.push(NewNotification {
                        idempotency_key: key,
                        channel_id: channel.id.clone(),
                        payload,
                        next_attempt: now,
                    });
                }
            }
        }
    }

    fn pending(&self, alarm: Alarm) -> Pending {
        let policy = self.policy_for(alarm.condition.patient_id, alarm.priority);
        let escalation = escalation_status(&alarm, &policy);
        Pending {
            alarm,
            escalation,
            events: Vec::new(),
            notifications: Vec::new(),
            announce: Vec::new(),
        }
    }

    /// A changed alarm on the board (or just resolved), with its notifications.
    fn touched(
        &mut self,
        patient: PatientId,
        alarm_id: &AlarmId,
        resolved: Option<Alarm>,
        what: Happened,
        escalate: bool,
        now: DateTime<Utc>,
    ) -> Option<Pending> {
        let Happened {
            event,
            actor,
            detail,
        } = what;
        let notifications = if escalate && resolved.is_none() {
            self.escalate(patient, alarm_id, now)
        } else {
            Vec::new()
        };
        let alarm = match resolved {
            Some(alarm) => alarm,
            None => self.boards.get(&patient)?.get(alarm_id)?.clone(),
        };
        let mut pending = self.pending(alarm.clone());
        pending.events.push(NewAlarmEvent {
            time: now,
            event,
            actor,
            detail,
        });
        pending.announce.push(AlarmEvent {
            event,
            patient_id: patient,
            at: now,
            record: None,
            notification: None,
            relayed: false,
        });
        self.deliveries(&alarm, &notifications, now, &mut pending);
        Some(pending)
    }

    /// Applies evaluator signals to the patient's board; the changes wait in `pending`
    /// for the batch's commit.
    /// An alarm's public handle: as stored for an alarm loaded unresolved, else keyed.
    fn handle(&self, alarm_id: &AlarmId) -> String {
        self.handles
            .get(alarm_id)
            .cloned()
            .unwrap_or_else(|| self.sealer.alarm_handle(&alarm_id.0))
    }

    fn apply(&mut self, patient: PatientId, signals: Vec<AlarmSignal>, now: DateTime<Utc>) {
        if self.replaying {
            // What these events caused was stored before the restart; the board holds it.
            return;
        }
        if !self.evaluating_log && !signals.is_empty() {
            self.resume_due = true;
        }
        for signal in &signals {
            let update = self.boards.entry(patient).or_default().apply(signal);
            let pending = match update {
                AlarmUpdate::Opened { alarm_id } => {
                    metrics::counter!("wardline_alarms_opened_total").increment(1);
                    self.touched(
                        patient,
                        &alarm_id,
                        None,
                        happened(AlarmEventKind::Opened, None, None),
                        true,
                        now,
                    )
                }
                AlarmUpdate::Reoccurred { alarm_id, reopened } => self.touched(
                    patient,
                    &alarm_id,
                    None,
                    happened(
                        AlarmEventKind::Reoccurred,
                        None,
                        Some(json!({ "reopened": reopened })),
                    ),
                    reopened,
                    now,
                ),
                AlarmUpdate::ConditionCleared { alarm_id } => self.touched(
                    patient,
                    &alarm_id,
                    None,
                    happened(AlarmEventKind::ConditionCleared, None, None),
                    false,
                    now,
                ),
                AlarmUpdate::Resolved { alarm } => {
                    let alarm_id = alarm.id.clone();
                    self.touched(
                        patient,
                        &alarm_id,
                        Some(*alarm),
                        happened(
                            AlarmEventKind::Resolved,
                            None,
                            Some(json!({ "by": "condition_cleared" })),
                        ),
                        false,
                        now,
                    )
                }
                AlarmUpdate::Nothing => None,
            };
            self.pending.extend(pending);
        }
    }
}
