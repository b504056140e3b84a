// How an alarm's state and escalation read, wherever alarms are shown. Every state has
// an icon and a word, never a colour alone.

import { h } from './dom';
import { priorityRank, type Alarm, type AlarmStateName, type EscalationStatus, type Recipient } from './features';
import { formatTime, timeAgo, timeUntil } from './format';
import { currentUser } from './session';

const STATE: Record<AlarmStateName, { icon: string; label: string; order: number }> = {
  open: { icon: '●', label: 'Open', order: 0 },
  snoozed: { icon: '‖', label: 'Snoozed', order: 1 },
  acknowledged: { icon: '✓', label: 'Acknowledged', order: 2 },
  resolved: { icon: '✔', label: 'Resolved', order: 3 },
};

export function stateLabel(state: string): string {
  return STATE[state as AlarmStateName]?.label ?? state;
}

/** "Open", "Snoozed until 14:35", "Acknowledged"... as a badge with an icon. */
export function stateBadge(alarm: Alarm): HTMLElement {
  const known = STATE[alarm.state_name] ?? { icon: '•', label: alarm.state_name };
  return h(
    'span',
    { class: `alarm-state state-${alarm.state_name}`, 'data-testid': 'alarm-state' },
    h('span', { 'aria-hidden': 'true' }, `${known.icon} `),
    known.label,
    alarm.state.state === 'snoozed' ? [' until ', timeUntil(alarm.state.until)] : null,
  );
}

/** The server's message, "rule name: what was seen", as a title and its detail. */
export function alarmText(alarm: Alarm): { title: string; detail: string } {
  const at = alarm.message.indexOf(': ');
  return at > 0 ? { title: alarm.message.slice(0, at), detail: alarm.message.slice(at + 2) } : { title: alarm.message, detail: '' };
}

/** Who did it, as the viewer would say it: "you", or the person's name. */
export function actorName(userId: string | null | undefined, alarm?: Alarm): string {
  if (!userId) return 'Wardline';
  if (userId === currentUser()?.id) return 'you';
  return alarm?.names?.[userId] ?? 'a care team member';
}

/** Whom a step notifies, by name where the server gave one. */
function recipientNames(alarm: Alarm, recipients: Recipient[]): string {
  const names = recipients.map((recipient) =>
    recipient.to === 'user'
      ? actorName(recipient.user_id, alarm)
      : alarm.names?.[recipient.care_team_id] ?? 'the care team',
  );
  return names.length ? names.join(', ') : 'nobody';
}

/** "level 2 of 3" (with the round when the policy repeats), or null before any. */
function levelText(status: EscalationStatus): string | null {
  if (status.level === null) return null;
  const round = status.rounds > 1 && status.round !== null ? `, round ${status.round} of ${status.rounds}` : '';
  return `level ${status.level} of ${status.levels}${round}`;
}

/** Where the alarm's escalation stands. */
export function escalationLine(alarm: Alarm): HTMLElement {
  const sent = alarm.escalation.sent;
  const status = alarm.escalation_status;
  const notified = sent === 0 ? 'nobody notified yet' : `${sent} notification${sent === 1 ? '' : 's'} sent`;
  const reached = status ? levelText(status) : null;
  const parts: (Node | string)[] = [];
  switch (alarm.state.state) {
    case 'open':
      parts.push(`Escalation: ${notified}`);
      if (reached) parts.push(`, ${reached}`);
      if (status?.next) {
        parts.push(`; next: level ${status.next.level}, ${recipientNames(alarm, status.next.notify)}, `, timeUntil(status.next.due_at));
      } else if (alarm.next_deadline) {
        parts.push('; next step due ', timeUntil(alarm.next_deadline));
      } else {
        parts.push('; no further step scheduled');
      }
      break;
    case 'snoozed':
      parts.push('Escalation paused; it restarts from the first step at ', timeUntil(alarm.state.until));
      break;
    case 'acknowledged':
      parts.push(`Escalation stopped${reached ? ` at ${reached}` : ''}: acknowledged by ${actorName(alarm.state.by, alarm)} `, timeAgo(alarm.state.at));
      break;
    case 'resolved':
      parts.push('Resolved ', timeAgo(alarm.state.at));
      break;
  }
  return h('p', { class: 'escalation', 'data-testid': 'escalation' }, h('span', { 'aria-hidden': 'true' }, '⇡ '), ...parts);
}

/** The condition behind the alarm, when that says something the state does not. */
export function conditionLine(alarm: Alarm): HTMLElement | null {
  const notes: (Node | string)[] = [];
  if (!alarm.condition_active && alarm.state_name !== 'resolved') {
    notes.push('Condition cleared ', timeAgo(alarm.condition_cleared_at), '; this alarm stays until a person resolves it.');
  }
  if (alarm.occurrences > 1) notes.push(`${notes.length ? ' ' : ''}Occurred ${alarm.occurrences} times.`);
  return notes.length ? h('p', { class: 'muted' }, ...notes) : null;
}

/** The resolution, for resolved alarms. */
export function resolutionText(alarm: Alarm): string {
  if (alarm.state.state !== 'resolved') return '';
  const resolution = alarm.state.resolution;
  return resolution.by === 'condition_cleared'
    ? `resolved by itself when the condition cleared, ${formatTime(alarm.state.at)}`
    : `resolved by ${actorName(resolution.user_id, alarm)}, ${formatTime(alarm.state.at)}: “${resolution.note}”`;
}

/** Unresolved first by state (open, snoozed, acknowledged), then priority, then newest. */
export function byAttention(a: Alarm, b: Alarm): number {
  return (
    (STATE[a.state_name]?.order ?? 9) - (STATE[b.state_name]?.order ?? 9) ||
    priorityRank(b.priority) - priorityRank(a.priority) ||
    Date.parse(b.raised_at) - Date.parse(a.raised_at)
  );
}

export const EVENT_LABEL: Record<string, string> = {
  opened: 'Raised',
  reoccurred: 'Occurred again',
  acknowledged: 'Acknowledged',
  snoozed: 'Snoozed',
  snooze_expired: 'Snooze ended',
  condition_cleared: 'Condition cleared',
  resolved: 'Resolved',
  notified: 'Notified',
};
