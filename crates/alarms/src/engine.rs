//! The alarm engine: one task owning every patient's monitor and alarm board.
//!
//! Inputs arrive from the live feed after their commit (so the acknowledgement path never
//! waits for alerting) and from a timer. Broadcast receivers are bounded; when the engine
//! falls behind, the oldest inputs are dropped and counted
//! (`wardline_alarm_inputs_dropped_total{input}`). Every alarm change is committed with
//! its history events and outbox notifications before anything is announced.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ring::digest;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wardline_alerting::rule::RhythmKind;
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
use wardline_ingest::{DeviceContact, LiveFeed};
use wardline_store::{
    AlarmChange, AlarmRecord, CarePlanVersionRecord, NewAlarmEvent, NewNotification, News2Record,
    NotificationChannel, RhythmEventKind, RhythmEventRecord, Store,
};

use crate::error::AlarmsError;
use crate::notify::{DeliverySettings, SmtpSettings};
use crate::secrets::Sealer;

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
    /// The web address people open ("open Wardline"), put in notifications.
    pub public_url: String,
    /// Without a care team policy, a high-priority alarm is re-notified this often...
    pub default_repeat_secs: i64,
    /// ...this many rounds at most.
    pub default_max_rounds: u32,
    /// How often changed evaluator state is saved for a restart.
    pub snapshot_interval: Duration,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        Self {
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(30 * 60),
            retry_horizon: chrono::Duration::hours(24),
            webhook_timeout: Duration::from_secs(10),
            smtp: None,
            public_url: String::new(),
            default_repeat_secs: 5 * 60,
            default_max_rounds: 12,
            snapshot_interval: Duration::from_secs(5),
        }
    }
}

/// What the live alarm stream carries.
#[derive(Debug, Clone, Serialize)]
pub struct AlarmEvent {
    /// `opened`, `reoccurred`, `acknowledged`, `snoozed`, `snooze_expired`,
    /// `condition_cleared`, `resolved`, `notified`.
    pub event: String,
    pub patient_id: PatientId,
    pub at: DateTime<Utc>,
    pub alarm: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<Value>,
}

/// A change to a patient's care plan: a programme's defaults, or one rule edit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarePlanRequest {
    pub reason: String,
    #[serde(default)]
    pub program: Option<Program>,
    #[serde(default)]
    pub baseline: Option<PatientBaseline>,
    #[serde(default)]
    pub edit: Option<RuleEdit>,
}

/// The URL-safe handle of an alarm.
pub fn public_id(alarm_id: &AlarmId) -> String {
    let digest = digest::digest(&digest::SHA256, alarm_id.0.as_bytes());
    hex::encode(&digest.as_ref()[..12])
}

/// An alarm as it is stored: the alarm itself and where its escalation stood when it last
/// changed (the policy may change later; the status is rewritten with the alarm's next
/// change, like its deadline).
fn stored_alarm(alarm: &Alarm, escalation: &EscalationStatus) -> Value {
    let mut value = serde_json::to_value(alarm).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("escalation_status".into(), json!(escalation));
    }
    value
}

/// An alarm as API clients see it.
pub fn alarm_view(alarm: &Alarm, escalation: &EscalationStatus) -> Value {
    let mut value = stored_alarm(alarm, escalation);
    if let Value::Object(map) = &mut value {
        map.insert("alarm_id".into(), json!(alarm.id.0));
        map.insert("id".into(), json!(public_id(&alarm.id)));
        map.insert("patient_id".into(), json!(alarm.condition.patient_id));
        map.insert("state_name".into(), json!(alarm.state.name()));
        map.insert(
            "next_deadline".into(),
            json!(escalation.next.as_ref().map(|next| next.due_at)),
        );
    }
    value
}

enum Action {
    Acknowledge { by: UserId },
    Resolve { by: UserId, note: String },
    Snooze { by: UserId, secs: i64 },
}

enum Command {
    CarePlan {
        patient: PatientId,
        request: CarePlanRequest,
        author: Option<UserId>,
        author_label: String,
        reply: oneshot::Sender<Result<CarePlanVersionRecord, AlarmsError>>,
    },
    Act {
        patient: PatientId,
        alarm_id: AlarmId,
        action: Action,
        reply: oneshot::Sender<Result<Value, AlarmsError>>,
    },
    Reload {
        reply: oneshot::Sender<()>,
    },
    DeviceStatus {
        patient: PatientId,
        report: DeviceStatusReport,
    },
}

/// The handle the API and the server use.
#[derive(Clone)]
pub struct AlarmService {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Arc<AlarmEvent>>,
    sealer: Arc<Sealer>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for AlarmService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlarmService").finish_non_exhaustive()
    }
}

impl AlarmService {
    /// Loads care plans, evaluator state, open alarms and policies, then starts the engine
    /// and the outbox worker.
    pub async fn start(
        store: Arc<dyn Store>,
        live: &LiveFeed,
        settings: AlarmSettings,
        sealer: Arc<Sealer>,
    ) -> Result<(Self, Vec<JoinHandle<()>>), AlarmsError> {
        // Subscribe first, so nothing committed while loading is missed.
        let inputs = Inputs {
            observations: live.subscribe(),
            news2: live.subscribe_news2(),
            rhythm: live.subscribe_rhythm(),
            contacts: live.subscribe_contacts(),
        };
        let (events, _) = broadcast::channel(4096);
        let wake = Arc::new(Notify::new());
        let mut engine = Engine {
            store: Arc::clone(&store),
            settings: settings.clone(),
            patients: HashMap::new(),
            boards: HashMap::new(),
            policies: HashMap::new(),
            channels: HashMap::new(),
            teams: HashMap::new(),
            dirty: HashSet::new(),
            events: events.clone(),
            wake: Arc::clone(&wake),
            next_snapshot: Instant::now() + settings.snapshot_interval,
            next_teams_refresh: Instant::now() + Duration::from_secs(15),
            next_wake: Instant::now(),
        };
        engine.load().await?;
        let (commands, receiver) = mpsc::channel(256);
        let engine_task = tokio::spawn(engine.run(inputs, receiver));
        let delivery = DeliverySettings {
            retry_base: settings.retry_base,
            retry_max: settings.retry_max,
            retry_horizon: settings.retry_horizon,
            webhook_timeout: settings.webhook_timeout,
            smtp: settings.smtp.clone(),
        };
        let outbox_task = tokio::spawn(crate::notify::run(
            store,
            Arc::clone(&sealer),
            delivery,
            Arc::clone(&wake),
        ));
        Ok((
            Self {
                commands,
                events,
                sealer,
                wake,
            },
            vec![engine_task, outbox_task],
        ))
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AlarmEvent>> {
        self.events.subscribe()
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
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, AlarmsError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| AlarmsError::Stopped)?;
        answer.await.map_err(|_| AlarmsError::Stopped)
    }

    /// Applies a care plan change and starts evaluating it at once.
    pub async fn set_care_plan(
        &self,
        patient: PatientId,
        request: CarePlanRequest,
        author: Option<UserId>,
        author_label: String,
    ) -> Result<CarePlanVersionRecord, AlarmsError> {
        self.call(|reply| Command::CarePlan {
            patient,
            request,
            author,
            author_label,
            reply,
        })
        .await?
    }

    async fn act(&self, record: &AlarmRecord, action: Action) -> Result<Value, AlarmsError> {
        let patient = record.patient_id;
        let alarm_id = AlarmId(record.alarm_id.clone());
        self.call(|reply| Command::Act {
            patient,
            alarm_id,
            action,
            reply,
        })
        .await?
    }

    pub async fn acknowledge(
        &self,
        record: &AlarmRecord,
        by: UserId,
    ) -> Result<Value, AlarmsError> {
        self.act(record, Action::Acknowledge { by }).await
    }

    pub async fn resolve(
        &self,
        record: &AlarmRecord,
        by: UserId,
        note: String,
    ) -> Result<Value, AlarmsError> {
        self.act(record, Action::Resolve { by, note }).await
    }

    pub async fn snooze(
        &self,
        record: &AlarmRecord,
        by: UserId,
        secs: i64,
    ) -> Result<Value, AlarmsError> {
        self.act(record, Action::Snooze { by, secs }).await
    }

    /// What a device reported about itself (battery, fault), for device-status rules.
    /// Evaluated on the engine's task; `Stopped` when its queue is full.
    pub fn device_status(
        &self,
        patient: PatientId,
        report: DeviceStatusReport,
    ) -> Result<(), AlarmsError> {
        self.commands
            .try_send(Command::DeviceStatus { patient, report })
            .map_err(|_| {
                metrics::counter!("wardline_alarm_inputs_dropped_total", "input" => "device_status")
                    .increment(1);
                AlarmsError::Stopped
            })
    }

    /// Re-reads policies, channels and care team membership (after an admin changed them).
    pub async fn reload(&self) -> Result<(), AlarmsError> {
        self.call(|reply| Command::Reload { reply }).await
    }
}

struct Inputs {
    observations: broadcast::Receiver<Arc<Observation>>,
    news2: broadcast::Receiver<Arc<News2Record>>,
    rhythm: broadcast::Receiver<Arc<RhythmEventRecord>>,
    contacts: broadcast::Receiver<Arc<DeviceContact>>,
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
    event: &'static str,
    actor: Option<UserId>,
    detail: Option<Value>,
}

fn happened(event: &'static str, actor: Option<UserId>, detail: Option<Value>) -> Happened {
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
    settings: AlarmSettings,
    patients: HashMap<PatientId, Watched>,
    boards: HashMap<PatientId, AlarmBoard>,
    policies: HashMap<CareTeamId, EscalationPolicy>,
    channels: HashMap<CareTeamId, Vec<NotificationChannel>>,
    teams: HashMap<PatientId, Vec<CareTeamId>>,
    dirty: HashSet<PatientId>,
    events: broadcast::Sender<Arc<AlarmEvent>>,
    wake: Arc<Notify>,
    next_snapshot: Instant,
    next_teams_refresh: Instant,
    next_wake: Instant,
}

fn dropped(input: &'static str, count: u64) {
    metrics::counter!("wardline_alarm_inputs_dropped_total", "input" => input).increment(count);
}

impl Engine {
    async fn load(&mut self) -> Result<(), AlarmsError> {
        let now = Utc::now();
        let snapshots: HashMap<PatientId, Value> =
            self.store.monitor_states().await?.into_iter().collect();
        for record in self.store.current_care_plans().await? {
            let plan: CarePlan = match serde_json::from_value(record.plan) {
                Ok(plan) => plan,
                Err(_) => {
                    metrics::counter!("wardline_alarm_load_failed_total", "what" => "care_plan")
                        .increment(1);
                    continue;
                }
            };
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
        for record in self.store.unresolved_alarms().await? {
            match serde_json::from_value::<Alarm>(record.alarm) {
                Ok(alarm) => alarms.entry(record.patient_id).or_default().push(alarm),
                Err(_) => metrics::counter!("wardline_alarm_load_failed_total", "what" => "alarm")
                    .increment(1),
            }
        }
        for (patient, alarms) in alarms {
            if let Ok(board) = serde_json::from_value::<AlarmBoard>(json!({ "alarms": alarms })) {
                self.boards.insert(patient, board);
            }
            if !self.teams.contains_key(&patient) {
                let teams = self.store.care_teams_of_patient(patient).await?;
                self.teams.insert(patient, teams);
            }
        }
        self.reload().await?;
        self.schedule(now);
        Ok(())
    }

    async fn reload(&mut self) -> Result<(), AlarmsError> {
        self.policies = self
            .store
            .escalation_policies()
            .await?
            .into_iter()
            .filter_map(|(team, policy)| {
                serde_json::from_value::<EscalationPolicy>(policy)
                    .ok()
                    .map(|policy| (team, policy))
            })
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
    /// the running server) are adopted here.
    async fn adopt_new_care_plans(&mut self) -> Result<(), AlarmsError> {
        let now = Utc::now();
        for record in self.store.current_care_plans().await? {
            let patient = record.patient_id;
            let loaded = self
                .patients
                .get(&patient)
                .map(|watched| watched.monitor.care_plan().version);
            if loaded.is_some_and(|version| version >= record.version) {
                continue;
            }
            let Ok(plan) = serde_json::from_value::<CarePlan>(record.plan) else {
                continue;
            };
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
            if !signals.is_empty() {
                self.apply(patient, signals, now).await;
            }
        }
        Ok(())
    }

    /// Starts evaluating a patient's plan, with the kinds of their registered devices.
    async fn watch(&mut self, patient: PatientId, mut monitor: PatientMonitor) {
        if let Ok(devices) = self.store.devices_of_patient(patient).await {
            for device in devices {
                monitor.attach_device(device.id, device.kind);
            }
        }
        if let Ok(teams) = self.store.care_teams_of_patient(patient).await {
            self.teams.insert(patient, teams);
        }
        self.patients.insert(patient, Watched::new(monitor));
    }

    async fn run(mut self, mut inputs: Inputs, mut commands: mpsc::Receiver<Command>) {
        use broadcast::error::RecvError;
        let sleep = tokio::time::sleep_until(self.next_wake);
        tokio::pin!(sleep);
        let mut armed = self.next_wake;
        loop {
            if armed != self.next_wake {
                armed = self.next_wake;
                sleep.as_mut().reset(armed);
            }
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.command(command).await,
                    None => return,
                },
                observation = inputs.observations.recv() => match observation {
                    Ok(observation) => self.observation(&observation).await,
                    Err(RecvError::Lagged(count)) => dropped("observation", count),
                    Err(RecvError::Closed) => return,
                },
                score = inputs.news2.recv() => match score {
                    Ok(score) => self.news2(&score).await,
                    Err(RecvError::Lagged(count)) => dropped("news2", count),
                    Err(RecvError::Closed) => return,
                },
                event = inputs.rhythm.recv() => match event {
                    Ok(event) => self.rhythm(&event).await,
                    Err(RecvError::Lagged(count)) => dropped("rhythm", count),
                    Err(RecvError::Closed) => return,
                },
                contact = inputs.contacts.recv() => match contact {
                    Ok(contact) => self.contact(&contact).await,
                    Err(RecvError::Lagged(count)) => dropped("contact", count),
                    Err(RecvError::Closed) => return,
                },
                () = &mut sleep => self.tick().await,
            }
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::CarePlan {
                patient,
                request,
                author,
                author_label,
                reply,
            } => {
                let result = self.care_plan(patient, request, author, author_label).await;
                let _ = reply.send(result);
            }
            Command::Act {
                patient,
                alarm_id,
                action,
                reply,
            } => {
                let result = self.act(patient, &alarm_id, action).await;
                let _ = reply.send(result);
            }
            Command::DeviceStatus { patient, report } => {
                let Some(watched) = self.patients.get_mut(&patient) else {
                    return;
                };
                let now = Utc::now();
                let Ok(signals) = watched.monitor.on_device_status(&report, now) else {
                    return;
                };
                self.dirty.insert(patient);
                if !signals.is_empty() {
                    self.apply(patient, signals, now).await;
                }
            }
            Command::Reload { reply } => {
                if let Err(error) = self.reload().await {
                    tracing::warn!(%error, "could not reload alarm policies");
                }
                self.schedule(Utc::now());
                let _ = reply.send(());
            }
        }
    }

    async fn observation(&mut self, observation: &Observation) {
        let Some(watched) = self.patients.get_mut(&observation.patient_id) else {
            return;
        };
        let now = Utc::now();
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
        if !signals.is_empty() {
            self.apply(observation.patient_id, signals, now).await;
        }
    }

    async fn news2(&mut self, record: &News2Record) {
        let Some(watched) = self.patients.get_mut(&record.patient_id) else {
            return;
        };
        let now = Utc::now();
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
        if !signals.is_empty() {
            self.apply(record.patient_id, signals, now).await;
        }
    }

    async fn rhythm(&mut self, record: &RhythmEventRecord) {
        let Some(watched) = self.patients.get_mut(&record.patient_id) else {
            return;
        };
        let now = Utc::now();
        let rhythm = match record.kind {
            RhythmEventKind::Bradycardia => RhythmKind::Bradycardia,
            RhythmEventKind::Tachycardia => RhythmKind::Tachycardia,
            RhythmEventKind::Pause => RhythmKind::Pause,
            RhythmEventKind::AtrialFibrillation => RhythmKind::AtrialFibrillation,
            RhythmEventKind::PoorSignal => RhythmKind::PoorSignal,
        };
        let event = RhythmObservation {
            device_id: record.device_id.clone(),
            rhythm,
            onset: record.onset,
            end: Some(record.end),
        };
        let Ok(signals) = watched.monitor.on_rhythm_event(&event, now) else {
            return;
        };
        self.dirty.insert(record.patient_id);
        if !signals.is_empty() {
            self.apply(record.patient_id, signals, now).await;
        }
        self.schedule(now);
    }

    async fn contact(&mut self, contact: &DeviceContact) {
        let Some(watched) = self.patients.get_mut(&contact.patient_id) else {
            return;
        };
        let now = Utc::now();
        let signals = watched.monitor.on_device_heard(&contact.device_id, now);
        self.dirty.insert(contact.patient_id);
        if !signals.is_empty() {
            self.apply(contact.patient_id, signals, now).await;
        }
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
        let public = public_id(&alarm.id);
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
                event: "notified".into(),
                actor: None,
                detail: Some(detail.clone()),
            });
            pending.announce.push(AlarmEvent {
                event: "notified".into(),
                patient_id: patient,
                at: now,
                alarm: Value::Null,
                notification: Some(detail),
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

    fn pending(&self, alarm: Alarm, now: DateTime<Utc>) -> Pending {
        let policy = self.policy_for(alarm.condition.patient_id, alarm.priority);
        let escalation = escalation_status(&alarm, &policy);
        let _ = now;
        Pending {
            alarm,
            escalation,
            events: Vec::new(),
            notifications: Vec::new(),
            announce: Vec::new(),
        }
    }

    /// Adds a lifecycle event to a pending change, for the history and the stream.
    fn lifecycle(
        pending: &mut Pending,
        event: &str,
        actor: Option<UserId>,
        detail: Option<Value>,
        now: DateTime<Utc>,
    ) {
        pending.events.push(NewAlarmEvent {
            time: now,
            event: event.into(),
            actor,
            detail,
        });
        pending.announce.push(AlarmEvent {
            event: event.into(),
            patient_id: pending.alarm.condition.patient_id,
            at: now,
            alarm: Value::Null,
            notification: None,
        });
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
        let mut pending = self.pending(alarm.clone(), now);
        Self::lifecycle(&mut pending, event, actor, detail, now);
        self.deliveries(&alarm, &notifications, now, &mut pending);
        Some(pending)
    }

    async fn apply(&mut self, patient: PatientId, signals: Vec<AlarmSignal>, now: DateTime<Utc>) {
        let mut batch = Vec::new();
        for signal in &signals {
            let update = self.boards.entry(patient).or_default().apply(signal);
            let pending = match update {
                AlarmUpdate::Opened { alarm_id } => {
                    metrics::counter!("wardline_alarms_opened_total").increment(1);
                    self.touched(
                        patient,
                        &alarm_id,
                        None,
                        happened("opened", None, None),
                        true,
                        now,
                    )
                }
                AlarmUpdate::Reoccurred { alarm_id, reopened } => self.touched(
                    patient,
                    &alarm_id,
                    None,
                    happened("reoccurred", None, Some(json!({ "reopened": reopened }))),
                    reopened,
                    now,
                ),
                AlarmUpdate::ConditionCleared { alarm_id } => self.touched(
                    patient,
                    &alarm_id,
                    None,
                    happened("condition_cleared", None, None),
                    false,
                    now,
                ),
                AlarmUpdate::Resolved { alarm } => {
                    let alarm_id = alarm.id.clone();
                    self.touched(
                        patient,
                        &alarm_id,
                        Some(*alarm),
                        happened("resolved", None, Some(json!({ "by": "condition_cleared" }))),
                        false,
                        now,
                    )
                }
                AlarmUpdate::Nothing => None,
            };
            batch.extend(pending);
        }
        self.commit(batch).await;
        self.schedule(now);
    }

    /// Stores the changes in one commit, then announces them. Nothing is announced that
    /// is not durable.
    async fn commit(&mut self, batch: Vec<Pending>) -> bool {
        if batch.is_empty() {
            return true;
        }
        let mut changes = Vec::with_capacity(batch.len());
        let mut announce = Vec::new();
        let mut notify = false;
        for pending in batch {
            let view = alarm_view(&pending.alarm, &pending.escalation);
            let state = pending.alarm.state.name();
            notify |= !pending.notifications.is_empty();
            changes.push(AlarmChange {
                alarm: AlarmRecord {
                    public_id: public_id(&pending.alarm.id),
                    alarm_id: pending.alarm.id.0.clone(),
                    patient_id: pending.alarm.condition.patient_id,
                    rule_id: pending.alarm.rule_id.0.clone(),
                    priority: pending.alarm.priority.as_str().into(),
                    kind: match pending.alarm.kind {
                        wardline_alerting::AlarmKind::Physiological => "physiological".into(),
                        wardline_alerting::AlarmKind::Technical => "technical".into(),
                    },
                    state: state.into(),
                    raised: pending.alarm.raised_at,
                    updated: Utc::now(),
                    next_deadline: pending.escalation.next.as_ref().map(|next| next.due_at),
                    alarm: stored_alarm(&pending.alarm, &pending.escalation),
                },
                events: pending.events,
                notifications: pending.notifications,
            });
            for mut event in pending.announce {
                event.alarm = view.clone();
                announce.push(event);
            }
        }
        match self.store.save_alarm_changes(changes).await {
            Ok(()) => {
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

    async fn care_plan(
        &mut self,
        patient: PatientId,
        request: CarePlanRequest,
        author: Option<UserId>,
        author_label: String,
    ) -> Result<CarePlanVersionRecord, AlarmsError> {
        // A version written beside the server (the command line) comes first.
        self.adopt_new_care_plans().await?;
        let now = Utc::now();
        let reason = request.reason.trim().to_owned();
        if reason.is_empty() || reason.len() > 1000 {
            return Err(AlarmsError::Invalid(
                "reason: say why, in 1 to 1000 characters".into(),
            ));
        }
        let current = self
            .patients
            .get(&patient)
            .map(|watched| watched.monitor.care_plan().clone());
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
                let mut history =
                    CarePlanHistory::enrol(current, author.unwrap_or_else(UserId::random), "")?;
                history.apply(CarePlanChange {
                    author: author.unwrap_or_else(UserId::random),
                    at,
                    reason: reason.clone(),
                    edit,
                })?;
                let version = history
                    .versions()
                    .last()
                    .ok_or_else(|| AlarmsError::Invalid("no version".into()))?;
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
                return Err(AlarmsError::Invalid(
                    "give either `program` (with an optional `baseline`) or one `edit`".into(),
                ));
            }
        };
        plan.validate()?;
        let to_value = |value: &dyn erased::Json| value.json();
        let record = CarePlanVersionRecord {
            patient_id: patient,
            version: plan.version,
            effective: plan.effective_from,
            author,
            author_label,
            reason,
            plan: to_value(&plan),
            old_rule: old_rule.as_ref().map(|rule| to_value(rule)),
            new_rule: new_rule.as_ref().map(|rule| to_value(rule)),
        };
        self.store.append_care_plan_version(record.clone()).await?;
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
        self.apply(patient, signals, now).await;
        self.save_snapshots(true).await;
        Ok(record)
    }

    async fn act(
        &mut self,
        patient: PatientId,
        alarm_id: &AlarmId,
        action: Action,
    ) -> Result<Value, AlarmsError> {
        let now = Utc::now();
        let board = self
            .boards
            .get_mut(&patient)
            .ok_or_else(|| AlarmsError::NotFound("unresolved alarm".into()))?;
        let pending = match action {
            Action::Acknowledge { by } => {
                board.acknowledge(alarm_id, by, now)?;
                self.touched(
                    patient,
                    alarm_id,
                    None,
                    happened("acknowledged", Some(by), None),
                    false,
                    now,
                )
            }
            Action::Snooze { by, secs } => {
                let alarm = board.snooze(alarm_id, by, now, secs)?;
                let until = match alarm.state {
                    wardline_alerting::AlarmState::Snoozed { until, .. } => Some(until),
                    _ => None,
                };
                self.touched(
                    patient,
                    alarm_id,
                    None,
                    happened("snoozed", Some(by), Some(json!({ "until": until }))),
                    false,
                    now,
                )
            }
            Action::Resolve { by, note } => {
                let note = note.trim().to_owned();
                if note.len() > 2000 {
                    return Err(AlarmsError::Invalid("note: at most 2000 characters".into()));
                }
                let alarm = board.resolve(alarm_id, by, &note, now)?;
                self.touched(
                    patient,
                    alarm_id,
                    Some(alarm),
                    happened(
                        "resolved",
                        Some(by),
                        Some(json!({ "by": "person", "note": note })),
                    ),
                    false,
                    now,
                )
            }
        };
        let pending = pending.ok_or_else(|| AlarmsError::NotFound("alarm".into()))?;
        let view = alarm_view(&pending.alarm, &pending.escalation);
        if !self.commit(vec![pending]).await {
            return Err(AlarmsError::Stopped);
        }
        self.schedule(now);
        Ok(view)
    }

    async fn tick(&mut self) {
        let now = Utc::now();
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
            if !signals.is_empty() {
                self.apply(patient, signals, now).await;
            }
        }
        // Snoozes that ended, and escalation steps that fell due.
        let mut batch = Vec::new();
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
                batch.extend(self.touched(
                    patient,
                    &alarm_id,
                    None,
                    happened("snooze_expired", None, None),
                    true,
                    now,
                ));
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
                let mut pending = self.pending(alarm.clone(), now);
                self.deliveries(&alarm, &notifications, now, &mut pending);
                batch.push(pending);
            }
        }
        self.commit(batch).await;
        if Instant::now() >= self.next_teams_refresh {
            self.next_teams_refresh = Instant::now() + Duration::from_secs(15);
            if let Err(error) = self.reload().await {
                tracing::warn!(%error, "could not refresh care teams");
            }
        }
        self.save_snapshots(false).await;
        self.schedule(now);
    }

    async fn save_snapshots(&mut self, force: bool) {
        if self.dirty.is_empty() || (!force && Instant::now() < self.next_snapshot) {
            return;
        }
        self.next_snapshot = Instant::now() + self.settings.snapshot_interval;
        let now = Utc::now();
        let states: Vec<(PatientId, DateTime<Utc>, Value)> = self
            .dirty
            .drain()
            .filter_map(|patient| {
                let watched = self.patients.get(&patient)?;
                serde_json::to_value(&watched.monitor)
                    .ok()
                    .map(|state| (patient, now, state))
            })
            .collect();
        if let Err(error) = self.store.save_monitor_states(states).await {
            tracing::warn!(%error, "could not save the alarm evaluators' state");
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
        let mut wait = next
            .map(|at| (at - now).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        if !self.dirty.is_empty() {
            wait = wait.min(self.settings.snapshot_interval);
        }
        self.next_wake = Instant::now() + wait.max(Duration::from_millis(10));
    }
}

mod erased {
    use serde_json::Value;

    pub(super) trait Json {
        fn json(&self) -> Value;
    }

    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Value {
            serde_json::to_value(self).unwrap_or(Value::Null)
        }
    }
}
