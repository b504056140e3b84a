//! Escalation: who is notified of an alarm, and when, until someone acknowledges it.
//!
//! A policy is an ordered list of steps (level 1 first); each step fires a delay after
//! the previous one. After the last step the whole list starts over after
//! `repeat_after_secs`, up to `max_rounds` rounds. The schedule is a pure function of
//! the alarm and the clock, so a timer outside drives it with [`next_deadline`] and
//! [`due_notifications`], and records what it delivered with
//! [`Alarm::record_notified`](crate::alarm::Alarm::record_notified).

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use wardline_domain::{CareTeamId, UserId};

use crate::alarm::{Alarm, AlarmId, EscalationCause};
use crate::error::{AlertingError, Result};
use crate::monitor::ConditionKey;
use crate::rule::{AlarmKind, Priority};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Recipient {
    User {
        user_id: UserId,
    },
    /// Everyone on duty in the care team (who that is, is the caller's business).
    CareTeam {
        care_team_id: CareTeamId,
    },
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationStep {
    /// Delay after the previous step (after the alarm, for the first step): 0 s to 7
    /// days.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 604_800))]
    pub after_secs: i64,
    /// At least one recipient.
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub notify: Vec<Recipient>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationPolicy {
    /// At least one step.
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub steps: Vec<EscalationStep>,
    /// Delay between the last step and the first step of the next round, 1 s to 7 days;
    /// `None` for a single round.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 604_800))]
    pub repeat_after_secs: Option<i64>,
    /// Rounds at most, 1 to 100, the first included, so an alarm nobody answers cannot
    /// notify forever (a distributed alarm system must report failed delivery instead).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub max_rounds: u32,
}

const MAX_DELAY_SECS: i64 = 7 * 86_400;

impl EscalationPolicy {
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(AlertingError::Invalid {
                what: "escalation policy".into(),
                reason,
            })
        };
        if self.steps.is_empty() {
            return bad("it needs at least one step".into());
        }
        for (index, step) in self.steps.iter().enumerate() {
            if !(0..=MAX_DELAY_SECS).contains(&step.after_secs) {
                return bad(format!("step {} delay must be 0 s to 7 days", index + 1));
            }
            if step.notify.is_empty() {
                return bad(format!("step {} notifies nobody", index + 1));
            }
        }
        if let Some(repeat) = self.repeat_after_secs
            && !(1..=MAX_DELAY_SECS).contains(&repeat)
        {
            return bad("repeat delay must be 1 s to 7 days".into());
        }
        if !(1..=100).contains(&self.max_rounds) {
            return bad("max_rounds must be 1 to 100".into());
        }
        Ok(())
    }

    fn rounds(&self) -> u32 {
        if self.repeat_after_secs.is_some() {
            self.max_rounds
        } else {
            1
        }
    }

    /// When notification number `sequence` of an escalation that started at `since` is due.
    fn due(&self, since: DateTime<Utc>, sequence: u32) -> Option<(u32, usize, DateTime<Utc>)> {
        let steps = self.steps.len();
        let round = sequence / u32::try_from(steps).ok()?;
        let step = usize::try_from(sequence).ok()? % steps;
        if round >= self.rounds() {
            return None;
        }
        let offset = |last: usize| {
            self.steps[..=last]
                .iter()
                .map(|s| s.after_secs)
                .sum::<i64>()
        };
        let round_secs = offset(steps - 1) + self.repeat_after_secs.unwrap_or(0);
        let secs = i64::from(round) * round_secs + offset(step);
        Some((round, step, since + TimeDelta::seconds(secs)))
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationReason {
    Raised,
    Reoccurred,
    SnoozeExpired,
    /// A later step of the first round: nobody acknowledged in time.
    Escalated,
    /// A later round.
    Repeated,
}

/// One delivery to make.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub alarm_id: AlarmId,
    pub condition: ConditionKey,
    pub priority: Priority,
    pub kind: AlarmKind,
    pub message: String,
    pub reason: NotificationReason,
    /// 1 for the first level of the policy.
    pub level: usize,
    pub round: u32,
    /// Position in the escalation's schedule, counted over rounds.
    pub sequence: u32,
    /// When the escalation this belongs to started.
    pub escalation_since: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub recipients: Vec<crate::escalation::Recipient>,
}

/// Notifications due at `now` and not yet recorded as sent, oldest first. Nothing for an
/// acknowledged or resolved alarm, or a snoozed one before its snooze ends.
pub fn due_notifications(
    alarm: &Alarm,
    policy: &EscalationPolicy,
    now: DateTime<Utc>,
) -> Vec<Notification> {
    let mut due = Vec::new();
    if !alarm.needs_attention(now) {
        return due;
    }
    let progress = &alarm.escalation;
    let mut sequence = progress.sent;
    while let Some((round, step, at)) = policy.due(progress.since, sequence) {
        if at > now {
            break;
        }
        let reason = match (round, step, progress.cause) {
            (0, 0, EscalationCause::Raised) => NotificationReason::Raised,
            (0, 0, EscalationCause::Reoccurred) => NotificationReason::Reoccurred,
            (0, 0, EscalationCause::SnoozeExpired) => NotificationReason::SnoozeExpired,
            (0, _, _) => NotificationReason::Escalated,
            _ => NotificationReason::Repeated,
        };
        due.push(Notification {
            alarm_id: alarm.id.clone(),
            condition: alarm.condition.clone(),
            priority: alarm.priority,
            kind: alarm.kind,
            message: alarm.message.clone(),
            reason,
            level: step + 1,
            round,
            sequence,
            escalation_since: progress.since,
            due_at: at,
            recipients: policy.steps[step].notify.clone(),
        });
        sequence += 1;
    }
    due
}

/// Where an alarm's escalation stands, for the people answering it: the level reached,
/// what comes next and when. `level` and `round` count from 1, as a nurse would say them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationStatus {
    /// Levels in the policy that applies to the alarm.
    pub levels: usize,
    /// Rounds the policy allows (1 when it does not repeat).
    pub rounds: u32,
    /// The level of the last notification sent in this escalation; `None` before the first.
    pub level: Option<usize>,
    /// The round of that notification.
    pub round: Option<u32>,
    /// The next notification, when one is scheduled.
    pub next: Option<NextEscalationStep>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextEscalationStep {
    pub level: usize,
    pub round: u32,
    pub due_at: DateTime<Utc>,
    pub notify: Vec<Recipient>,
}

/// The escalation status of `alarm` under `policy`. An acknowledged or resolved alarm keeps
/// the level it reached and has no next step; a snoozed one has the step that its snooze's
/// end will restart.
pub fn escalation_status(alarm: &Alarm, policy: &EscalationPolicy) -> EscalationStatus {
    let sent = alarm.escalation.sent;
    let reached = sent
        .checked_sub(1)
        .and_then(|last| policy.due(alarm.escalation.since, last));
    let next = match alarm.state {
        crate::alarm::AlarmState::Open | crate::alarm::AlarmState::Snoozed { .. } => policy
            .due(alarm.escalation.since, sent)
            .map(|(round, step, due_at)| NextEscalationStep {
                level: step + 1,
                round: round + 1,
                due_at,
                notify: policy.steps[step].notify.clone(),
            }),
        _ => None,
    };
    EscalationStatus {
        levels: policy.steps.len(),
        rounds: policy.rounds(),
        level: reached.map(|(_, step, _)| step + 1),
        round: reached.map(|(round, _, _)| round + 1),
        next,
    }
}

/// When the next notification of the alarm falls due (possibly already past), `None`
/// when nothing more will be sent unless the alarm changes.
pub fn next_deadline(alarm: &Alarm, policy: &EscalationPolicy) -> Option<DateTime<Utc>> {
    match alarm.state {
        crate::alarm::AlarmState::Open | crate::alarm::AlarmState::Snoozed { .. } => policy
            .due(alarm.escalation.since, alarm.escalation.sent)
            .map(|(_, _, at)| at),
        _ => None,
    }
}
