//! Care plans, alarms and their notifications. Reading a patient's plan or alarms goes
//! through the access check; changing a plan or acting on an alarm needs the patient's
//! care team, and the change commits with its audit entry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;
use wardline_alarms::{AlarmAction, AlarmEvent, AlarmService, CarePlanAuthor, CarePlanRequest};
use wardline_alerting::alarm::EscalationProgress;
use wardline_alerting::{
    AlarmId, AlarmKind, AlarmState, CarePlan, ConditionKey, EscalationPolicy, EscalationStatus,
    Priority, Recipient, Resolution, RuleId,
};
use wardline_domain::sharing::ShareCategory;
use wardline_domain::{CareTeamId, PatientId, Role, UserId};
use wardline_store::{
    AlarmEventKind, AlarmEventRecord, AlarmQuery, AlarmRecord, AuditOutcome, CarePlanVersionRecord,
    ChannelKind, DeliveryStatus, NotificationChannel, NotificationQuery, NotificationRecord,
};

use crate::Wardline;
use crate::actor::Actor;
use crate::error::Error;

/// Which alarms an inbox or history shows, by state.
/// The most unresolved alarms of one patient listed beside the newest ones.
const MAX_UNRESOLVED_LISTED: u32 = 500;

pub fn parse_states(filter: Option<&str>) -> Result<Vec<String>, Error> {
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
                    Err(Error::invalid(
                        "state",
                        "open, acknowledged, snoozed, resolved, unresolved or all",
                    ))
                }
            })
            .collect(),
    }
}

/// An alarm as clients see it: the alarm's own fields, where its escalation stands, its
/// public handle, and the names of the people and teams it mentions.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct AlarmView {
    /// The URL-safe handle used in paths.
    pub id: String,
    /// The deterministic identity of the alarm (patient, rule, time raised).
    pub alarm_id: AlarmId,
    pub patient_id: PatientId,
    pub condition: ConditionKey,
    pub rule_id: RuleId,
    /// The care plan version whose rule raised it.
    pub care_plan_version: u32,
    pub priority: Priority,
    pub kind: AlarmKind,
    pub message: String,
    pub resolve_on_clear: bool,
    pub raised_at: DateTime<Utc>,
    pub state: AlarmState,
    pub state_name: AlarmStateName,
    /// Whether the condition behind the alarm is present now.
    pub condition_active: bool,
    pub condition_cleared_at: Option<DateTime<Utc>>,
    pub occurrences: u32,
    pub escalation: EscalationProgress,
    pub escalation_status: EscalationStatus,
    pub next_deadline: Option<DateTime<Utc>>,
    pub updated: DateTime<Utc>,
    /// The names of the people and care teams this alarm mentions, by id.
    pub names: BTreeMap<String, String>,
    /// Its history, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<AlarmEventRecord>>,
    /// Its notifications' deliveries, for one alarm read alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<Vec<DeliveryView>>,
    /// The care plan version that raised it, for one alarm read alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub care_plan: Option<CarePlanVersionRecord>,
}

impl AlarmView {
    pub fn of(record: &AlarmRecord) -> Self {
        let alarm = &record.alarm;
        Self {
            id: record.public_id.clone(),
            alarm_id: alarm.id.clone(),
            patient_id: alarm.condition.patient_id,
            condition: alarm.condition.clone(),
            rule_id: alarm.rule_id.clone(),
            care_plan_version: alarm.care_plan_version,
            priority: alarm.priority,
            kind: alarm.kind,
            message: alarm.message.clone(),
            resolve_on_clear: alarm.resolve_on_clear,
            raised_at: alarm.raised_at,
            state: alarm.state.clone(),
            state_name: AlarmStateName::of(&alarm.state),
            condition_active: alarm.condition_active,
            condition_cleared_at: alarm.condition_cleared_at,
            occurrences: alarm.occurrences,
            escalation: alarm.escalation.clone(),
            escalation_status: record.escalation.clone(),
            next_deadline: record.next_deadline(),
            updated: record.updated,
            names: BTreeMap::new(),
            events: None,
            deliveries: None,
            care_plan: None,
        }
    }

    /// The people and care teams the alarm mentions: who acknowledged, snoozed or
    /// resolved it, who acted in its history, and whom its escalation notifies next.
    fn mentioned(&self) -> (Vec<UserId>, Vec<CareTeamId>) {
        let mut people = Vec::new();
        let mut teams = Vec::new();
        match &self.state {
            AlarmState::Acknowledged { by, .. } | AlarmState::Snoozed { by, .. } => {
                people.push(*by);
            }
            AlarmState::Resolved {
                resolution: Resolution::Person { user_id, .. },
                ..
            } => people.push(*user_id),
            _ => {}
        }
        for event in self.events.iter().flatten() {
            people.extend(event.actor);
        }
        for recipient in self
            .escalation_status
            .next
            .iter()
            .flat_map(|next| next.notify.iter())
        {
            match recipient {
                Recipient::User { user_id } => people.push(*user_id),
                Recipient::CareTeam { care_team_id } => teams.push(*care_team_id),
            }
        }
        (people, teams)
    }
}

/// Where an alarm stands, by name.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmStateName {
    Open,
    Acknowledged,
    Snoozed,
    Resolved,
}

impl AlarmStateName {
    pub fn of(state: &AlarmState) -> Self {
        match state {
            AlarmState::Open => Self::Open,
            AlarmState::Acknowledged { .. } => Self::Acknowledged,
            AlarmState::Snoozed { .. } => Self::Snoozed,
            AlarmState::Resolved { .. } => Self::Resolved,
        }
    }
}

/// A notification's delivery as an admin sees it, without its content (it may hold
/// health data).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    pub id: i64,
    pub idempotency_key: String,
    /// The alarm it tells of; none for a visit's reminder.
    pub alarm_id: Option<String>,
    /// The visit it reminds the patient of; none for an alarm's notification.
    pub visit_id: Option<uuid::Uuid>,
    pub patient_id: PatientId,
    /// The care team's channel; none for a visit's reminder, mailed to the patient.
    pub channel: Option<DeliveryChannel>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub created: DateTime<Utc>,
    pub next_attempt: DateTime<Utc>,
    pub last_attempt: Option<DateTime<Utc>>,
    pub delivered: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryChannel {
    pub id: String,
    pub kind: ChannelKind,
    pub team_id: CareTeamId,
}

impl DeliveryView {
    pub fn of(record: &NotificationRecord) -> Self {
        Self {
            id: record.key,
            idempotency_key: record.idempotency_key.clone(),
            alarm_id: record.recipient.alarm_public_id().map(str::to_owned),
            visit_id: match &record.recipient {
                wardline_store::Recipient::VisitReminder { visit_id, .. } => Some(*visit_id),
                wardline_store::Recipient::Alarm { .. } => None,
            },
            patient_id: record.patient_id,
            channel: record.recipient.channel().map(|channel| DeliveryChannel {
                id: channel.id.clone(),
                kind: channel.kind,
                team_id: channel.team_id,
            }),
            status: record.status,
            attempts: record.attempts,
            created: record.created,
            next_attempt: record.next_attempt,
            last_attempt: record.last_attempt,
            delivered: record.delivered,
            last_error: record.last_error.clone(),
        }
    }
}

/// Names by id, so that a screen can say who acknowledged an alarm and whom its
/// escalation notifies next.
#[derive(Debug, Clone, Default)]
pub struct Names(HashMap<String, String>);

impl Names {
    /// Fills `names` with every person or team the alarm mentions.
    pub fn attach(&self, alarm: &mut AlarmView) {
        let (people, teams) = alarm.mentioned();
        alarm.names = people
            .iter()
            .map(ToString::to_string)
            .chain(teams.iter().map(ToString::to_string))
            .filter_map(|id| self.0.get(&id).map(|name| (id, name.clone())))
            .collect();
    }
}

/// What the live alarm stream sends: an alarm change, or a notification sent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct AlarmStreamEvent {
    pub event: AlarmEventKind,
    pub patient_id: PatientId,
    pub at: DateTime<Utc>,
    /// The alarm as it is after the change.
    pub alarm: AlarmView,
    /// For `notified`: level, round, reason and recipients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<Value>,
}

impl AlarmStream {
    /// The stream's view of an engine event, `None` for another patient's.
    pub fn view(&self, event: &AlarmEvent) -> Option<AlarmStreamEvent> {
        if !self.patients.contains(&event.patient_id) {
            return None;
        }
        let mut alarm = AlarmView::of(event.record.as_ref()?);
        self.names.attach(&mut alarm);
        Some(AlarmStreamEvent {
            event: event.event,
            patient_id: event.patient_id,
            at: event.at,
            alarm,
            notification: event.notification.clone(),
        })
    }
}

/// An open alarm stream: whose alarms it carries, the names it can show, and the feed.
#[derive(Debug)]
pub struct AlarmStream {
    pub patients: HashSet<PatientId>,
    pub names: Names,
    pub events: broadcast::Receiver<Arc<AlarmEvent>>,
}

/// A webhook or e-mail channel to add to a care team.
#[derive(Debug, Clone)]
pub enum NewChannel {
    Webhook {
        url: String,
        minimal: bool,
    },
    Email {
        recipients: Vec<String>,
        minimal: bool,
    },
}

/// Whether a webhook channel may send to this URL: https (http only to this machine),
/// and not to an address Wardline never sends to (this machine unless `allow_loopback`,
/// link-local and metadata addresses; see `wardline_alarms::notify::refused_address`).
/// A name is checked again each time it resolves, when a notification is sent.
pub fn check_webhook_url(url: &str, allow_loopback: bool) -> Result<(), Error> {
    use wardline_alarms::notify::{WebhookTargetError, check_webhook_target};
    check_webhook_target(url, allow_loopback).map_err(|error| match error {
        WebhookTargetError::Malformed => Error::invalid(
            "url",
            "an https:// URL (http:// only to this machine), at most 2000 characters",
        ),
        WebhookTargetError::Refused(why) => Error::not_permitted("url", why),
    })
}

/// Whether an e-mail channel may send to this address.
pub fn check_address(address: &str) -> Result<(), Error> {
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
        Err(Error::invalid(
            "recipients",
            "e-mail addresses like nurse@example.org",
        ))
    }
}

impl Wardline {
    fn engine(&self) -> Result<&AlarmService, Error> {
        self.alarms.as_ref().ok_or(Error::Unavailable)
    }

    /// Everyone's and every team's name: for a stream, whose alarms are still to come.
    async fn everyone(&self) -> Result<Names, Error> {
        let mut names = HashMap::new();
        for user in self.store.users().await? {
            names.insert(user.id.to_string(), user.display_name);
        }
        for team in self.store.care_teams().await? {
            names.insert(team.id.to_string(), team.name);
        }
        Ok(Names(names))
    }

    /// Only the names these alarms mention.
    pub(crate) async fn names_in(&self, alarms: &[AlarmView]) -> Result<Names, Error> {
        let mut people = Vec::new();
        let mut any_team = false;
        for alarm in alarms {
            let (ids, teams) = alarm.mentioned();
            people.extend(ids);
            any_team |= !teams.is_empty();
        }
        let mut names: HashMap<String, String> = self
            .users_by_id(people)
            .await?
            .into_iter()
            .map(|(id, user)| (id.to_string(), user.display_name))
            .collect();
        if any_team {
            for team in self.store.care_teams().await? {
                names.insert(team.id.to_string(), team.name);
            }
        }
        Ok(Names(names))
    }

    /// The version of the patient's care plan in force at `at` (the newest without).
    pub async fn care_plan(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        at: Option<DateTime<Utc>>,
    ) -> Result<CarePlanVersionRecord, Error> {
        let access = self
            .authorize_patient(actor, patient_id, "care_plan.read", None)
            .await?;
        let versions = self.store.care_plan_versions(access.patient_id()).await?;
        let version = match at {
            Some(at) => versions.into_iter().rev().find(|v| v.effective <= at),
            None => versions.into_iter().last(),
        };
        version.ok_or_else(|| Error::NotFound("care plan".into()))
    }

    /// The programme's default rules the patient's plan has never had (added to the
    /// programme after the patient was enrolled), for the care team to add if they
    /// choose: Wardline never changes a plan by itself.
    pub async fn new_care_plan_defaults(
        &self,
        actor: &Actor,
        patient_id: PatientId,
    ) -> Result<Vec<wardline_alerting::Rule>, Error> {
        let access = self
            .authorize_patient(actor, patient_id, "care_plan.read", None)
            .await?;
        let versions = self.store.care_plan_versions(access.patient_id()).await?;
        let Some(current) = versions.last() else {
            return Err(Error::NotFound("care plan".into()));
        };
        // Every rule the plan has held, in any version: one the care team removed is
        // not offered again.
        let ever = versions.iter().flat_map(|version| {
            version
                .plan
                .rules
                .iter()
                .map(|rule| &rule.id)
                .chain(version.old_rule.iter().map(|rule| &rule.id))
        });
        Ok(wardline_alerting::new_programme_defaults(
            current.plan.program,
            &wardline_alerting::PatientBaseline::default(),
            ever,
        ))
    }

    pub async fn care_plan_versions(
        &self,
        actor: &Actor,
        patient_id: PatientId,
    ) -> Result<Vec<CarePlanVersionRecord>, Error> {
        let access = self
            .authorize_patient(actor, patient_id, "care_plan.versions", None)
            .await?;
        Ok(self.store.care_plan_versions(access.patient_id()).await?)
    }

    /// A programme's defaults or one rule edit, by a clinician or nurse on the patient's
    /// care team, always with a reason; the command line (the server's operator) may also
    /// assign a programme. An admin account is not the care team: it neither assigns nor
    /// replaces a plan, since a plan decides which of a patient's readings raise alarms.
    /// With an alarm engine the change is evaluated at once; from the command line it is
    /// stored for the server's engine to adopt.
    pub async fn set_care_plan(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        mut request: CarePlanRequest,
    ) -> Result<CarePlanVersionRecord, Error> {
        // The engine checks the reason's length; its characters are checked here.
        request.reason = crate::clean_text("reason", &request.reason, 1000)?;
        let assigning_program = request.program.is_some() && request.edit.is_none();
        let audit = if matches!(actor, Actor::CommandLine) && assigning_program {
            if self.store.patient(patient_id).await?.is_none() {
                return Err(Error::NotFound("patient".into()));
            }
            self.require_admin(actor, "care_plan.assign", Some(patient_id), None)
                .await?
                .audit
        } else {
            self.authorize_patient_change(
                actor,
                patient_id,
                "care_plan.change",
                &[Role::Clinician, Role::Nurse],
                None,
            )
            .await?
            .audit
        };
        let author = CarePlanAuthor {
            user: actor.user_id(),
            label: actor.label(),
            audit,
        };
        match &self.alarms {
            Some(engine) => Ok(engine.set_care_plan(patient_id, request, author).await?),
            None => self.store_care_plan(patient_id, request, author).await,
        }
    }

    /// Stores a programme's defaults as the patient's next care plan version, for a
    /// running engine to adopt (within 15 s).
    async fn store_care_plan(
        &self,
        patient_id: PatientId,
        request: CarePlanRequest,
        author: CarePlanAuthor,
    ) -> Result<CarePlanVersionRecord, Error> {
        let (Some(program), None) = (request.program, request.edit) else {
            return Err(Error::invalid(
                "program",
                "without a running server only a programme's defaults can be assigned",
            ));
        };
        let baseline = request.baseline.unwrap_or_default();
        let plan = CarePlan::from_program(patient_id, program, &baseline, self.now());
        self.store_plan(patient_id, plan, &request.reason, author)
            .await
    }

    /// Assigns a care plan a tool built itself (the demo ward, the benchmarks), in force
    /// from its `effective_from` (at the earliest when the latest version is). Command
    /// line only; a running engine adopts it within 15 s.
    pub async fn assign_care_plan(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        plan: CarePlan,
        reason: &str,
    ) -> Result<CarePlanVersionRecord, Error> {
        if !matches!(actor, Actor::CommandLine) {
            return Err(Error::Forbidden);
        }
        if self.store.patient(patient_id).await?.is_none() {
            return Err(Error::NotFound("patient".into()));
        }
        let audit = self
            .require_admin(actor, "care_plan.assign", Some(patient_id), None)
            .await?
            .audit;
        let author = CarePlanAuthor {
            user: actor.user_id(),
            label: actor.label(),
            audit,
        };
        self.store_plan(patient_id, plan, reason, author).await
    }

    async fn store_plan(
        &self,
        patient_id: PatientId,
        mut plan: CarePlan,
        reason: &str,
        author: CarePlanAuthor,
    ) -> Result<CarePlanVersionRecord, Error> {
        let reason = crate::clean_text("reason", reason, 1000)?;
        if reason.is_empty() {
            return Err(Error::invalid("reason", "say why, in 1 to 1000 characters"));
        }
        let versions = self.store.care_plan_versions(patient_id).await?;
        let latest = versions.last();
        plan.patient_id = patient_id;
        plan.version = latest.map_or(1, |latest| latest.version + 1);
        if let Some(latest) = latest {
            plan.effective_from = plan.effective_from.max(latest.effective);
        }
        plan.validate()
            .map_err(|error| Error::invalid("program", error.to_string()))?;
        let record = CarePlanVersionRecord {
            patient_id,
            version: plan.version,
            effective: plan.effective_from,
            author: author.user,
            author_label: author.label,
            reason,
            plan,
            old_rule: None,
            new_rule: None,
        };
        self.store
            .append_care_plan_version(record.clone(), author.audit)
            .await?;
        Ok(record)
    }

    /// The actor's alarm inbox across their patients, newest first.
    pub async fn inbox(
        &self,
        actor: &Actor,
        state: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<AlarmView>, Error> {
        let states = parse_states(state.or(Some("unresolved")))?;
        let limit = limit.unwrap_or(200);
        if !(1..=1000).contains(&limit) {
            return Err(Error::invalid("limit", "1 to 1000"));
        }
        let patients: Vec<PatientId> = self
            .authorize_own_patients(actor, "alarms.inbox")
            .await?
            .iter()
            .map(|access| access.patient_id())
            .collect();
        let alarms = self
            .store
            .alarms(AlarmQuery {
                patients,
                states,
                limit,
                ..AlarmQuery::default()
            })
            .await?;
        let mut views: Vec<AlarmView> = alarms.iter().map(AlarmView::of).collect();
        let names = self.names_in(&views).await?;
        views.iter_mut().for_each(|alarm| names.attach(alarm));
        Ok(views)
    }

    /// A patient's alarms raised in a period, each with its history.
    pub async fn patient_alarms(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        window: crate::clinical::Window,
        state: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<AlarmView>, Error> {
        let states = parse_states(state)?;
        let limit = limit.unwrap_or(100);
        if !(1..=500).contains(&limit) {
            return Err(Error::invalid("limit", "1 to 500"));
        }
        let access = self
            .authorize_patient(actor, patient_id, "alarms.read", None)
            .await?;
        // Through a share, only alarms raised within its window.
        let Some((raised_from, raised_to)) = access.clamp_open(window.0, window.1) else {
            return Ok(Vec::new());
        };
        let all_states = states.is_empty();
        let mut alarms = self
            .store
            .alarms(AlarmQuery {
                patients: vec![access.patient_id()],
                states,
                raised_from,
                raised_to,
                limit,
            })
            .await?;
        if all_states {
            // Every unresolved alarm is listed whatever the limit: a flood of newer,
            // resolved ones must never push an open one out of sight.
            let unresolved = self
                .store
                .alarms(AlarmQuery {
                    patients: vec![access.patient_id()],
                    states: parse_states(Some("unresolved"))?,
                    raised_from,
                    raised_to,
                    limit: MAX_UNRESOLVED_LISTED,
                })
                .await?;
            for alarm in unresolved {
                if !alarms
                    .iter()
                    .any(|listed| listed.public_id == alarm.public_id)
                {
                    alarms.push(alarm);
                }
            }
            alarms.sort_by_key(|alarm| std::cmp::Reverse(alarm.alarm.raised_at));
        }
        let mut out = Vec::with_capacity(alarms.len());
        for alarm in &alarms {
            let mut view = AlarmView::of(alarm);
            view.events = Some(self.store.alarm_events(&alarm.public_id).await?);
            out.push(view);
        }
        let names = self.names_in(&out).await?;
        out.iter_mut().for_each(|alarm| names.attach(alarm));
        Ok(out)
    }

    /// The alarm with this handle. An unknown handle is audited as a refused `action`
    /// (someone trying handles is worth seeing) and answered like one the actor may not
    /// see: not found.
    async fn find_alarm(
        &self,
        actor: &Actor,
        action: &'static str,
        public_id: &str,
    ) -> Result<AlarmRecord, Error> {
        let found = if public_id.is_empty()
            || public_id.len() > 64
            || !public_id.chars().all(|c| c.is_ascii_hexdigit())
        {
            None
        } else {
            self.store.alarm_by_public_id(public_id).await?
        };
        match found {
            Some(record) => Ok(record),
            None => {
                let detail = public_id.chars().take(64).collect::<String>();
                self.audit(actor.audit(
                    action,
                    None,
                    AuditOutcome::Denied,
                    Some(format!("no alarm {detail:?}")),
                    self.now(),
                ))
                .await?;
                Err(Error::NotFound("alarm".into()))
            }
        }
    }

    /// One alarm with its history, its deliveries and the care plan version that raised
    /// it.
    pub async fn alarm(&self, actor: &Actor, public_id: &str) -> Result<AlarmView, Error> {
        let record = self.find_alarm(actor, "alarms.read", public_id).await?;
        // Through a share, an alarm raised outside its window is not there.
        let raised = record.alarm.raised_at;
        let (access, _) = self
            .authorize_patient_window(
                actor,
                record.patient_id(),
                "alarms.read",
                None,
                (raised, raised + chrono::Duration::milliseconds(1)),
                Some(record.public_id.clone()),
            )
            .await
            .map_err(hide_existence)?;
        let events = self.store.alarm_events(&record.public_id).await?;
        let deliveries = self
            .store
            .notifications(NotificationQuery {
                alarm_public_id: Some(record.public_id.clone()),
                status: None,
                limit: 1000,
            })
            .await?;
        let plan_version = record.alarm.care_plan_version;
        let care_plan = self
            .store
            .care_plan_versions(record.patient_id())
            .await?
            .into_iter()
            .find(|version| version.version == plan_version);
        let mut view = AlarmView::of(&record);
        view.events = Some(events);
        // A share shows the alarm, not the care team's deliveries, nor the care plan
        // unless that is shared too.
        if !access.through_share() {
            view.deliveries = Some(deliveries.iter().map(DeliveryView::of).collect());
        }
        view.care_plan = care_plan.filter(|_| access.allows(ShareCategory::CarePlan));
        self.names_in(std::slice::from_ref(&view))
            .await?
            .attach(&mut view);
        Ok(view)
    }

    /// Acknowledges, resolves or snoozes an alarm (a clinician, nurse or admin on the
    /// patient's care team).
    pub async fn act_on_alarm(
        &self,
        actor: &Actor,
        public_id: &str,
        action: AlarmAction,
    ) -> Result<AlarmView, Error> {
        let action = match action {
            AlarmAction::Resolve { note } => AlarmAction::Resolve {
                note: crate::clean_text("note", &note, 2000)?,
            },
            other => other,
        };
        let name = match &action {
            AlarmAction::Acknowledge => "alarms.acknowledge",
            AlarmAction::Resolve { .. } => "alarms.resolve",
            AlarmAction::Snooze { .. } => "alarms.snooze",
        };
        let Some(user) = actor.user().filter(|user| user.role != Role::Patient) else {
            return Err(Error::Forbidden);
        };
        let record = self.find_alarm(actor, name, public_id).await?;
        let allowed = self
            .authorize_patient_change(
                actor,
                record.patient_id(),
                name,
                &[Role::Clinician, Role::Nurse, Role::Admin],
                Some(record.public_id.clone()),
            )
            .await
            .map_err(hide_existence)?;
        let changed = self
            .engine()?
            .act(record, user.id, action, allowed.audit)
            .await?;
        let mut view = AlarmView::of(&changed);
        self.names_in(std::slice::from_ref(&view))
            .await?
            .attach(&mut view);
        Ok(view)
    }

    /// Opens the actor's alarm stream: their patients' alarm changes as they happen.
    pub async fn open_alarm_stream(&self, actor: &Actor) -> Result<AlarmStream, Error> {
        let patients = self
            .authorize_own_patients(actor, "alarms.stream")
            .await?
            .iter()
            .map(|access| access.patient_id())
            .collect();
        // Names as they were when the stream opened; a screen re-reads after a reconnect.
        let names = self.everyone().await?;
        Ok(AlarmStream {
            patients,
            names,
            events: self.engine()?.subscribe(),
        })
    }

    pub async fn set_escalation_policy(
        &self,
        actor: &Actor,
        team: CareTeamId,
        policy: EscalationPolicy,
    ) -> Result<EscalationPolicy, Error> {
        let allowed = self
            .require_admin(actor, "escalation_policy.set", None, Some(team.to_string()))
            .await?;
        policy
            .validate()
            .map_err(|error| Error::invalid("steps", error.to_string()))?;
        self.store
            .set_escalation_policy(team, policy.clone(), self.now(), allowed.audit)
            .await?;
        self.reload_alarms().await;
        Ok(policy)
    }

    pub async fn escalation_policy(
        &self,
        actor: &Actor,
        team: CareTeamId,
    ) -> Result<EscalationPolicy, Error> {
        self.require_admin_read(actor, "escalation_policy.read", Some(team.to_string()))
            .await?;
        self.store
            .escalation_policies()
            .await?
            .into_iter()
            .find(|(id, _)| *id == team)
            .map(|(_, policy)| policy)
            .ok_or_else(|| Error::NotFound("escalation policy".into()))
    }

    /// Adds a webhook or e-mail channel to a care team. A webhook's signing secret is
    /// generated here and returned only now.
    pub async fn create_channel(
        &self,
        actor: &Actor,
        team: CareTeamId,
        channel: NewChannel,
    ) -> Result<(NotificationChannel, Option<String>), Error> {
        let allowed = self
            .require_admin(
                actor,
                "notification_channel.create",
                None,
                Some(team.to_string()),
            )
            .await?;
        let sealer = self.engine()?.sealer();
        let (kind, target, secret, minimal) = match channel {
            NewChannel::Webhook { url, minimal } => {
                check_webhook_url(&url, self.settings.allow_loopback_webhooks)?;
                let secret = sealer
                    .generate_secret()
                    .map_err(|e| Error::Internal(e.to_string()))?;
                (ChannelKind::Webhook, url, Some(secret), minimal)
            }
            NewChannel::Email {
                recipients,
                minimal,
            } => {
                if recipients.is_empty() || recipients.len() > 50 {
                    return Err(Error::invalid("recipients", "1 to 50 addresses"));
                }
                for address in &recipients {
                    check_address(address)?;
                }
                (ChannelKind::Email, recipients.join(","), None, minimal)
            }
        };
        let sealed = secret
            .as_ref()
            .map(|secret| sealer.seal(secret.as_bytes()))
            .transpose()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let channel = NotificationChannel {
            id: format!("ch_{}", uuid::Uuid::new_v4().simple()),
            team_id: team,
            kind,
            target,
            sealed_secret: sealed,
            minimal,
            created: self.now(),
        };
        self.store
            .create_notification_channel(channel.clone(), allowed.audit)
            .await?;
        self.reload_alarms().await;
        Ok((channel, secret))
    }

    pub async fn channels(
        &self,
        actor: &Actor,
        team: CareTeamId,
    ) -> Result<Vec<NotificationChannel>, Error> {
        self.require_admin_read(actor, "notification_channel.list", Some(team.to_string()))
            .await?;
        Ok(self.store.notification_channels(Some(team)).await?)
    }

    pub async fn remove_channel(
        &self,
        actor: &Actor,
        team: CareTeamId,
        channel_id: &str,
    ) -> Result<(), Error> {
        let allowed = self
            .require_admin(
                actor,
                "notification_channel.remove",
                None,
                Some(channel_id.to_owned()),
            )
            .await?;
        if !self
            .store
            .remove_notification_channel(team, channel_id, self.now(), allowed.audit)
            .await?
        {
            return Err(Error::NotFound("notification channel".into()));
        }
        self.reload_alarms().await;
        Ok(())
    }

    /// Notifications given up after the retry horizon (admin); without their content.
    pub async fn dead_letters(
        &self,
        actor: &Actor,
        limit: Option<u32>,
    ) -> Result<Vec<DeliveryView>, Error> {
        self.require_admin_read(actor, "notifications.dead_letters", None)
            .await?;
        let dead = self
            .store
            .notifications(NotificationQuery {
                alarm_public_id: None,
                status: Some(DeliveryStatus::Dead),
                limit: limit.unwrap_or(100).clamp(1, 1000),
            })
            .await?;
        Ok(dead.iter().map(DeliveryView::of).collect())
    }

    /// Puts a dead letter back in the outbox.
    pub async fn retry_dead_letter(&self, actor: &Actor, key: i64) -> Result<(), Error> {
        let allowed = self
            .require_admin(actor, "notifications.retry", None, Some(key.to_string()))
            .await?;
        if !self
            .store
            .retry_notification(key, self.now(), allowed.audit)
            .await?
        {
            return Err(Error::NotFound("dead letter".into()));
        }
        if let Some(engine) = &self.alarms {
            engine.wake_outbox();
        }
        Ok(())
    }
}

/// A refusal to show or change an alarm answers as if there were none, so that its handle
/// does not tell an outsider that it exists (the refusal is audited all the same).
fn hide_existence(error: Error) -> Error {
    match error {
        Error::Forbidden => Error::NotFound("alarm".into()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_ones_the_notifier_can_send_to() {
        for good in [
            "https://hooks.example.org/wardline",
            "https://user:pw@hooks.example.org:8443/a?b#c",
            "https://[2001:db8::1]:8443/hook",
            "https://10.20.30.40/pager",
        ] {
            assert!(check_webhook_url(good, false).is_ok(), "{good}");
        }
        for this_machine in [
            "http://localhost:8080/hook",
            "http://127.0.0.1/hook",
            "http://[::1]:9000",
            "https://LOCALHOST/hook",
            "https://pager.localhost/hook",
        ] {
            let refused = check_webhook_url(this_machine, false);
            assert!(
                matches!(&refused, Err(Error::NotPermitted { field, .. }) if field == "url"),
                "{this_machine}: {refused:?}"
            );
            assert!(
                check_webhook_url(this_machine, true).is_ok(),
                "{this_machine}"
            );
        }
        for metadata in [
            "https://169.254.169.254/latest/meta-data/",
            "http://169.254.169.254/",
            "https://[fe80::1]/hook",
            "https://[fd00:ec2::254]/",
            "https://0.0.0.0/hook",
        ] {
            assert!(check_webhook_url(metadata, true).is_err(), "{metadata}");
        }
        for bad in [
            "ftp://hooks.example.org",
            "http://hooks.example.org/hook",
            "https://",
            "https://:443/hook",
            "https://hooks example.org",
            // Bracketed hosts that are not IPv6 addresses: no client can reach them.
            "https://[x",
            "https://[x]/hook",
            "http://[::1",
            "https://a:port/hook",
        ] {
            assert!(check_webhook_url(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn state_filters_are_read_strictly() {
        assert_eq!(parse_states(None).ok(), Some(Vec::new()));
        assert_eq!(parse_states(Some("all")).ok(), Some(Vec::new()));
        assert_eq!(
            parse_states(Some("open,resolved")).ok(),
            Some(vec!["open".to_owned(), "resolved".to_owned()])
        );
        for bad in ["", "open,", ",open", "Open", "open,all", "unresolved,open"] {
            assert!(parse_states(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
