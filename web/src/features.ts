// The clinical features beyond readings: alarms, care plans, NEWS2, CGM report, rhythm
// events. Their paths and the shapes the app reads are all here, in one place
// (crates/api/src/routes/alarms.rs and routes/analytics.rs on the server; the alarm and
// rule JSON comes from crates/alerting).

import { ApiError, api, patientPath, post } from './api';
import { h } from './dom';
import type { Alarm, AlarmList, CarePlanVersion, CarePlanVersions, News2, Priority, RhythmEvent, Rule, RuleEdit } from './schema';

const missing = new Set<string>();

/** GETs `path`; `undefined` when this server has no such route. */
export async function optional<T>(key: string, path: string, signal?: AbortSignal): Promise<T | undefined> {
  if (missing.has(key)) return undefined;
  try {
    return await api<T>(path, { signal });
  } catch (error) {
    if (error instanceof ApiError && error.routeMissing) {
      missing.add(key);
      return undefined;
    }
    throw error;
  }
}

// ---------------------------------------------------------------------------------------
// Alarms (crates/alerting/src/alarm.rs, as crates/alarms `alarm_view` shows them)

export type {
  Alarm,
  AlarmHistoryEvent,
  AlarmState,
  AlarmStreamEvent,
  EscalationStatus,
  Priority,
  Recipient,
} from './schema';

/** What an alarm's `state_name` is. */
export type AlarmStateName = 'open' | 'acknowledged' | 'snoozed' | 'resolved';

// ---------------------------------------------------------------------------------------
// Care plans (crates/alerting/src/care_plan.rs and rule.rs)

export type { CarePlan, CarePlanVersion, DeviceSelector, Direction, Rule, RuleEdit, RuleKind } from './schema';

export const PROGRAMS: [string, string][] = [
  ['diabetes', 'Diabetes'],
  ['cardiac', 'Cardiac'],
  ['respiratory', 'Respiratory'],
  ['post_surgery', 'Post-surgery'],
  ['general_vitals', 'General vitals'],
];

export function programLabel(program: string): string {
  return PROGRAMS.find(([value]) => value === program)?.[1] ?? program.replace(/_/g, ' ');
}

// ---------------------------------------------------------------------------------------
// NEWS2, rhythm events

export type { News2, RhythmEvent } from './schema';

const alarmPath = (alarmId: string, rest = '') => `/api/v1/alarms/${encodeURIComponent(alarmId)}${rest}`;

export const endpoints = {
  /** The caller's inbox: open, acknowledged and snoozed alarms across their patients. */
  inbox: () => '/api/v1/alarms?state=unresolved&limit=500',
  alarmStream: () => '/api/v1/alarms/stream',
  alarm: (alarmId: string) => alarmPath(alarmId),
  patientAlarms: (patientId: string) => patientPath(patientId, '/alarms?limit=100'),
  acknowledge: (alarmId: string) => alarmPath(alarmId, '/acknowledge'),
  resolve: (alarmId: string) => alarmPath(alarmId, '/resolve'),
  snooze: (alarmId: string) => alarmPath(alarmId, '/snooze'),
  carePlan: (patientId: string) => patientPath(patientId, '/care-plan'),
  carePlanVersions: (patientId: string) => patientPath(patientId, '/care-plan/versions'),
  carePlanNewDefaults: (patientId: string) => patientPath(patientId, '/care-plan/new-defaults'),
  news2: (patientId: string) => patientPath(patientId, '/news2/latest'),
  cgmReport: (patientId: string, days: number) => {
    const to = new Date();
    const from = new Date(to.getTime() - days * 86_400_000);
    const minutes = -to.getTimezoneOffset();
    const offset = `${minutes < 0 ? '-' : '+'}${String(Math.floor(Math.abs(minutes) / 60)).padStart(2, '0')}:${String(Math.abs(minutes) % 60).padStart(2, '0')}`;
    const query = new URLSearchParams({ from: from.toISOString(), to: to.toISOString(), utc_offset: offset });
    return patientPath(patientId, `/reports/cgm?${query}`);
  },
  rhythmEvents: (patientId: string, from: Date) => patientPath(patientId, `/rhythm-events?from=${encodeURIComponent(from.toISOString())}`),
};

// ---------------------------------------------------------------------------------------
// Who can see a patient's data, and who looked (crates/api/src/routes/people.rs)

import type { AccessLogEntry, PatientCareTeam } from './schema';
export type { AccessLogEntry, PatientCareTeam } from './schema';

export const patientCareTeams = (patientId: string, signal?: AbortSignal) =>
  api<PatientCareTeam[]>(patientPath(patientId, '/care-teams'), { signal });

export const accessLog = (patientId: string, limit: number, signal?: AbortSignal) =>
  api<AccessLogEntry[]>(patientPath(patientId, `/access-log?limit=${limit}`), { signal });

/** What an audited action looked at, in a patient's words. */
const ACCESS_WHAT: Record<string, string> = {
  patient: 'your record',
  observations: 'your readings',
  waveforms: 'your ECG',
  devices: 'your devices',
  care_plan: 'your care plan',
  care_teams: 'your care team',
  alarms: 'your alarms',
  news2: 'your NEWS2 score',
  cgm_report: 'your glucose report',
  rhythm_events: 'your heart rhythm events',
  access_log: 'this list',
  emergency_access: 'your record, under emergency access',
};

export function accessWhat(action: string): string {
  const [what, verb = ''] = action.split('.');
  const thing = ACCESS_WHAT[what] ?? what.replace(/_/g, ' ');
  if (verb.startsWith('stream')) return `${thing}, live`;
  if (['acknowledge', 'resolve', 'snooze', 'change'].includes(verb)) return `${thing} (${verb}d)`;
  if (what === 'emergency_access' && verb === 'open') return `${thing} (opened)`;
  return thing;
}

/** Open, acknowledged and snoozed alarms of the caller's patients. */
export const inboxAlarms = async (signal?: AbortSignal) =>
  (await api<AlarmList>(endpoints.inbox(), { signal })).alarms;

/** A patient's alarms, newest first, each with its history. */
export const patientAlarms = async (patientId: string, signal?: AbortSignal) =>
  (await api<AlarmList>(endpoints.patientAlarms(patientId), { signal })).alarms;

/** The care plan in force; `null` when the patient has none yet. */
export async function carePlan(patientId: string, signal?: AbortSignal): Promise<CarePlanVersion | null> {
  try {
    return await api<CarePlanVersion>(endpoints.carePlan(patientId), { signal });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

export const carePlanVersions = async (patientId: string, signal?: AbortSignal) =>
  (await api<CarePlanVersions>(endpoints.carePlanVersions(patientId), { signal })).versions;

/**
 * The programme's default rules the patient's plan has never had (added to the programme
 * after the patient was enrolled), for the care team to add if they choose.
 */
export const carePlanNewDefaults = (patientId: string, signal?: AbortSignal) =>
  api<Rule[]>(endpoints.carePlanNewDefaults(patientId), { signal });

/** Changes the care plan: one rule edit, or a programme's defaults; always with a reason. */
export const changeCarePlan = (
  patientId: string,
  change: { reason: string; edit?: RuleEdit; program?: string },
) => api<CarePlanVersion>(endpoints.carePlan(patientId), { method: 'PUT', body: change });

/** The latest NEWS2; `null` when none was scored yet, `undefined` without the endpoint. */
export async function latestNews2(patientId: string, signal?: AbortSignal): Promise<News2 | null | undefined> {
  try {
    return await optional<News2>('news2', endpoints.news2(patientId), signal);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

export const rhythmEvents = (patientId: string, from: Date, signal?: AbortSignal) =>
  optional<RhythmEvent[]>('rhythm', endpoints.rhythmEvents(patientId, from), signal);

export const alarmActions = {
  acknowledge: (alarm: Alarm) => post<Alarm>(endpoints.acknowledge(alarm.id)),
  resolve: (alarm: Alarm, note: string) => post<Alarm>(endpoints.resolve(alarm.id), { note }),
  snooze: (alarm: Alarm, minutes: number) => post<Alarm>(endpoints.snooze(alarm.id), { minutes }),
};

/** Snooze lengths offered per priority; the server allows at most 30 min (high), 60 min (medium), 4 h (low). */
export const SNOOZE_MINUTES: Record<Priority, number[]> = {
  high: [5, 10, 15, 30],
  medium: [15, 30, 60],
  low: [30, 60, 120, 240],
};

const PRIORITY: Record<Priority, { icon: string; label: string; rank: number }> = {
  high: { icon: '▲▲▲', label: 'High', rank: 3 },
  medium: { icon: '▲▲', label: 'Medium', rank: 2 },
  low: { icon: '▲', label: 'Low', rank: 1 },
};

export function priorityRank(priority: string): number {
  return PRIORITY[priority as Priority]?.rank ?? 0;
}

export function priorityLabel(priority: string): string {
  return PRIORITY[priority as Priority]?.label ?? priority;
}

/** A priority badge: colour, icon and word, so colour is never the only carrier. */
export function priorityBadge(priority: string): HTMLElement {
  const known = PRIORITY[priority as Priority] ?? { icon: '•', label: priority, rank: 0 };
  return h(
    'span',
    { class: `priority priority-${priority}` },
    h('span', { 'aria-hidden': 'true' }, `${known.icon} `),
    `${known.label} priority`,
  );
}

export function news2Band(news2: News2): string {
  return news2.risk || (news2.total >= 7 ? 'high' : news2.total >= 5 ? 'medium' : 'low');
}
