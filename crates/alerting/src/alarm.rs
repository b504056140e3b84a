//! Alarms and their lifecycle: open → acknowledged → resolved, with time-limited snooze.
//!
//! One alarm per condition (patient + rule) is unresolved at a time: a condition that
//! comes back while its alarm is still unresolved counts as another occurrence of that
//! alarm rather than a new one, which is the de-duplication the care team sees.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use wardline_domain::UserId;

use crate::error::{AlertingError, Result};
use crate::escalation::Notification;
use crate::monitor::{AlarmSignal, ConditionKey};
use crate::rule::{AlarmKind, Priority, RuleId};

/// An alarm's identifier: its condition and when it was raised. Deterministic, so that
/// two workers replaying the same signals name the alarm alike.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AlarmId(pub String);

impl AlarmId {
    fn new(condition: &ConditionKey, raised_at: DateTime<Utc>) -> Self {
        Self(format!(
            "{}/{}/{}",
            condition.patient_id,
            condition.rule_id,
            raised_at.timestamp_millis()
        ))
    }
}

impl fmt::Display for AlarmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AlarmState {
    Open,
    Acknowledged {
        by: UserId,
        at: DateTime<Utc>,
    },
    /// Notifications paused until `until`; after that the alarm is open again and
    /// notifies from the first escalation step.
    Snoozed {
        by: UserId,
        at: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    Resolved {
        at: DateTime<Utc>,
        resolution: Resolution,
    },
}

impl AlarmState {
    pub fn name(&self) -> &'static str {
        match self {
            AlarmState::Open => "open",
            AlarmState::Acknowledged { .. } => "acknowledged",
            AlarmState::Snoozed { .. } => "snoozed",
            AlarmState::Resolved { .. } => "resolved",
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Resolution {
    /// The rule resolves on clear and the condition cleared.
    ConditionCleared,
    Person {
        user_id: UserId,
        note: String,
    },
}

/// Why notifications (re)started, for the words of the first one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationCause {
    Raised,
    /// The condition came back after it had cleared, while the alarm was acknowledged.
    Reoccurred,
    SnoozeExpired,
}

/// How far the escalation has gone since `since`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationProgress {
    pub since: DateTime<Utc>,
    pub cause: EscalationCause,
    /// Notifications of this escalation already sent (see [`Alarm::record_notified`]).
    pub sent: u32,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    pub id: AlarmId,
    pub condition: ConditionKey,
    pub rule_id: RuleId,
    pub care_plan_version: u32,
    pub priority: Priority,
    pub kind: AlarmKind,
    pub message: String,
    pub resolve_on_clear: bool,
    pub raised_at: DateTime<Utc>,
    pub state: AlarmState,
    /// Whether the condition behind the alarm is present.
    pub condition_active: bool,
    pub condition_cleared_at: Option<DateTime<Utc>>,
    /// Times the condition was raised while this alarm was unresolved, the first included.
    pub occurrences: u32,
    pub escalation: EscalationProgress,
}

impl Alarm {
    /// The alarm a raise opens; `None` for a clear.
    pub fn from_signal(signal: &AlarmSignal) -> Option<Self> {
        let AlarmSignal::Raise {
            condition,
            priority,
            kind,
            message,
            rule_id,
            care_plan_version,
            resolve_on_clear,
            at,
        } = signal
        else {
            return None;
        };
        Some(Self {
            id: AlarmId::new(condition, *at),
            condition: condition.clone(),
            rule_id: rule_id.clone(),
            care_plan_version: *care_plan_version,
            priority: *priority,
            kind: *kind,
            message: message.clone(),
            resolve_on_clear: *resolve_on_clear,
            raised_at: *at,
            state: AlarmState::Open,
            condition_active: true,
            condition_cleared_at: None,
            occurrences: 1,
            escalation: EscalationProgress {
                since: *at,
                cause: EscalationCause::Raised,
                sent: 0,
            },
        })
    }

    pub fn is_resolved(&self) -> bool {
        matches!(self.state, AlarmState::Resolved { .. })
    }

    /// Whether someone should be notified at `now`: open, or snoozed past its end.
    pub fn needs_attention(&self, now: DateTime<Utc>) -> bool {
        match self.state {
            AlarmState::Open => true,
            AlarmState::Snoozed { until, .. } => now >= until,
            AlarmState::Acknowledged { .. } | AlarmState::Resolved { .. } => false,
        }
    }

    fn illegal(&self, action: &'static str) -> AlertingError {
        AlertingError::IllegalTransition {
            alarm: self.id.0.clone(),
            action,
            state: self.state.name(),
        }
    }

    /// Someone has seen it and takes care of it; escalation stops.
    pub fn acknowledge(&mut self, by: UserId, now: DateTime<Utc>) -> Result<()> {
        match self.state {
            AlarmState::Open | AlarmState::Snoozed { .. } => {
                self.state = AlarmState::Acknowledged { by, at: now };
                Ok(())
            }
            AlarmState::Acknowledged { .. } | AlarmState::Resolved { .. } => {
                Err(self.illegal("acknowledge"))
            }
        }
    }

    /// Pauses notifications for at most the priority's limit
    /// ([`Priority::max_snooze_secs`]); returns when the snooze ends. An acknowledged
    /// alarm notifies nobody, so there is nothing to snooze.
    pub fn snooze(
        &mut self,
        by: UserId,
        now: DateTime<Utc>,
        duration_secs: i64,
    ) -> Result<DateTime<Utc>> {
        if !matches!(self.state, AlarmState::Open | AlarmState::Snoozed { .. }) {
            return Err(self.illegal("snooze"));
        }
        let max_secs = self.priority.max_snooze_secs();
        if !(1..=max_secs).contains(&duration_secs) {
            return Err(AlertingError::SnoozeTooLong {
                requested_secs: duration_secs,
                max_secs,
                priority: self.priority.as_str(),
            });
        }
        let until = now + TimeDelta::seconds(duration_secs);
        self.state = AlarmState::Snoozed { by, at: now, until };
        self.escalation = EscalationProgress {
            since: until,
            cause: EscalationCause::SnoozeExpired,
            sent: 0,
        };
        Ok(until)
    }

    /// A person closes the alarm, saying why. Allowed while the condition persists: the
    /// clinician may know better (a sensor compression low); the condition must then
    /// clear and come back before it alarms again.
    pub fn resolve(&mut self, by: UserId, note: &str, now: DateTime<Utc>) -> Result<()> {
        if self.is_resolved() {
            return Err(self.illegal("resolve"));
        }
        if note.trim().is_empty() {
            return Err(AlertingError::Invalid {
                what: format!("resolution of alarm {}", self.id),
                reason: "a person resolving an alarm must leave a note".into(),
            });
        }
        self.state = AlarmState::Resolved {
            at: now,
            resolution: Resolution::Person {
                user_id: by,
                note: note.to_owned(),
            },
        };
        Ok(())
    }

    /// The condition cleared; returns whether that resolved the alarm.
    pub fn condition_cleared(&mut self, now: DateTime<Utc>) -> bool {
        if self.is_resolved() {
            return false;
        }
        self.condition_active = false;
        self.condition_cleared_at = Some(now);
        if self.resolve_on_clear {
            self.state = AlarmState::Resolved {
                at: now,
                resolution: Resolution::ConditionCleared,
            };
        }
        self.is_resolved()
    }

    /// The condition was raised again while this alarm is unresolved. Returns whether
    /// the alarm reopened: a new episode after an acknowledged one needs someone's
    /// attention again, a raise while the condition never cleared does not.
    pub fn reoccurred(&mut self, message: &str, now: DateTime<Utc>) -> Result<bool> {
        if self.is_resolved() {
            return Err(self.illegal("raise again"));
        }
        let came_back = !self.condition_active;
        self.condition_active = true;
        self.occurrences = self.occurrences.saturating_add(1);
        if !message.is_empty() {
            message.clone_into(&mut self.message);
        }
        let reopen = came_back && matches!(self.state, AlarmState::Acknowledged { .. });
        if reopen {
            self.state = AlarmState::Open;
            self.escalation = EscalationProgress {
                since: now,
                cause: EscalationCause::Reoccurred,
                sent: 0,
            };
        }
        Ok(reopen)
    }

    /// Turns an expired snooze back into an open alarm (escalation already treats it as
    /// open; this makes the state say so). Returns whether it changed.
    pub fn expire_snooze(&mut self, now: DateTime<Utc>) -> bool {
        match self.state {
            AlarmState::Snoozed { until, .. } if now >= until => {
                self.state = AlarmState::Open;
                true
            }
            _ => false,
        }
    }

    /// Records notifications the caller has delivered, so they are not due again.
    /// Notifications of an earlier escalation (before a snooze or reopening) are ignored.
    pub fn record_notified(&mut self, sent: &[Notification]) {
        for notification in sent {
            if notification.alarm_id == self.id
                && notification.escalation_since == self.escalation.since
            {
                self.escalation.sent = self.escalation.sent.max(notification.sequence + 1);
            }
        }
    }
}

/// What applying a signal did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "update", rename_all = "snake_case")]
pub enum AlarmUpdate {
    Opened {
        alarm_id: AlarmId,
    },
    /// Counted on the unresolved alarm of the condition.
    Reoccurred {
        alarm_id: AlarmId,
        reopened: bool,
    },
    /// The condition cleared; the alarm stays for someone to close.
    ConditionCleared {
        alarm_id: AlarmId,
    },
    /// The condition cleared and the alarm resolved; it has left the board.
    Resolved {
        alarm: Box<Alarm>,
    },
    /// A clear for a condition without an unresolved alarm.
    Nothing,
}

/// The unresolved alarms, at most one per condition. Resolved alarms leave the board
/// (returned to the caller to store), so it stays as small as the set of live problems.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlarmBoard {
    alarms: Vec<Alarm>,
    /// Per condition, the millisecond of the newest alarm's id, kept after that alarm is
    /// resolved: a condition that clears and starts again within one millisecond (events
    /// evaluated together as the engine catches up after an outage) opens a new alarm
    /// under an id of its own, instead of overwriting the one it just resolved.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    newest_id_ms: HashMap<ConditionKey, i64>,
}

impl AlarmBoard {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn unresolved(&self) -> &[Alarm] {
        &self.alarms
    }

    pub fn get(&self, id: &AlarmId) -> Option<&Alarm> {
        self.alarms.iter().find(|alarm| &alarm.id == id)
    }

    pub fn for_condition(&self, condition: &ConditionKey) -> Option<&Alarm> {
        self.alarms
            .iter()
            .find(|alarm| &alarm.condition == condition)
    }

    fn position(&self, id: &AlarmId) -> Result<usize> {
        self.alarms
            .iter()
            .position(|alarm| &alarm.id == id)
            .ok_or_else(|| AlertingError::UnknownAlarm(id.0.clone()))
    }

    pub fn apply(&mut self, signal: &AlarmSignal) -> AlarmUpdate {
        let existing = self
            .alarms
            .iter()
            .position(|alarm| &alarm.condition == signal.condition());
        match (signal, existing) {
            (AlarmSignal::Raise { message, at, .. }, Some(index)) => {
                let alarm = &mut self.alarms[index];
                // Unresolved alarms on the board cannot refuse a reoccurrence.
                let reopened = alarm.reoccurred(message, *at).unwrap_or(false);
                AlarmUpdate::Reoccurred {
                    alarm_id: alarm.id.clone(),
                    reopened,
                }
            }
            (AlarmSignal::Raise { .. }, None) => match Alarm::from_signal(signal) {
                Some(mut alarm) => {
                    let raised_ms = alarm.raised_at.timestamp_millis();
                    let id_ms = match self.newest_id_ms.get(&alarm.condition) {
                        Some(&newest) if newest >= raised_ms => newest.saturating_add(1),
                        _ => raised_ms,
                    };
                    if id_ms != raised_ms
                        && let Some(later) = DateTime::from_timestamp_millis(id_ms)
                    {
                        alarm.id = AlarmId::new(&alarm.condition, later);
                    }
                    self.newest_id_ms.insert(alarm.condition.clone(), id_ms);
                    let alarm_id = alarm.id.clone();
                    self.alarms.push(alarm);
                    AlarmUpdate::Opened { alarm_id }
                }
                None => AlarmUpdate::Nothing,
            },
            (AlarmSignal::Clear { at, .. }, Some(index)) => {
                if self.alarms[index].condition_cleared(*at) {
                    AlarmUpdate::Resolved {
                        alarm: Box::new(self.alarms.remove(index)),
                    }
                } else {
                    AlarmUpdate::ConditionCleared {
                        alarm_id: self.alarms[index].id.clone(),
                    }
                }
            }
            (AlarmSignal::Clear { .. }, None) => AlarmUpdate::Nothing,
        }
    }

    pub fn acknowledge(&mut self, id: &AlarmId, by: UserId, now: DateTime<Utc>) -> Result<&Alarm> {
        let index = self.position(id)?;
        self.alarms[index].acknowledge(by, now)?;
        Ok(&self.alarms[index])
    }

    pub fn snooze(
        &mut self,
        id: &AlarmId,
        by: UserId,
        now: DateTime<Utc>,
        duration_secs: i64,
    ) -> Result<&Alarm> {
        let index = self.position(id)?;
        self.alarms[index].snooze(by, now, duration_secs)?;
        Ok(&self.alarms[index])
    }

    /// Resolves by a person; the alarm leaves the board and is returned for storage.
    pub fn resolve(
        &mut self,
        id: &AlarmId,
        by: UserId,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Alarm> {
        let index = self.position(id)?;
        self.alarms[index].resolve(by, note, now)?;
        Ok(self.alarms.remove(index))
    }

    /// Records delivered notifications on their alarms.
    pub fn record_notified(&mut self, sent: &[Notification]) {
        for alarm in &mut self.alarms {
            alarm.record_notified(sent);
        }
    }

    /// Turns expired snoozes back into open alarms; returns the ids that changed.
    pub fn expire_snoozes(&mut self, now: DateTime<Utc>) -> Vec<AlarmId> {
        self.alarms
            .iter_mut()
            .filter_map(|alarm| alarm.expire_snooze(now).then(|| alarm.id.clone()))
            .collect()
    }
}
