// Endpoints that colleagues are still building (alarms and care plans: issue 4; NEWS2;
// CGM report). The app asks for them and shows a plain "not available yet" when the
// server has no such route, so each lights up as soon as its endpoint lands. Their
// paths and the shapes the app reads are all here, in one place, to adjust when they land.

import { ApiError, api, patientPath, post } from './api';
import { h } from './dom';

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

export type Priority = 'high' | 'medium' | 'low';

export interface Alarm {
  id: string;
  patient_id: string;
  priority: Priority;
  state: 'open' | 'acknowledged' | 'resolved' | string;
  title?: string;
  message?: string;
  code?: string;
  value?: number;
  unit?: string;
  opened?: string;
  created?: string;
  acknowledged_by?: string | null;
  escalation_level?: number;
  snoozed_until?: string | null;
}

/** GET /api/v1/patients/{id}/news2/latest (store's News2Record). */
export interface News2 {
  time: string;
  complete: boolean;
  /** The total when complete, otherwise the minimum total. */
  total: number;
  /** `low`, `low-medium`, `medium` or `high`; the minimum band when partial. */
  risk: string;
  any_parameter_3: boolean;
  missing: string[];
}

export interface RhythmEvent {
  device_id: string;
  signal: string;
  kind: string;
  onset: string;
  end: string;
  detail?: Record<string, unknown>;
}

export const endpoints = {
  openAlarms: () => '/api/v1/alarms?state=open',
  patientAlarms: (patientId: string) => patientPath(patientId, '/alarms'),
  acknowledge: (alarmId: string) => `/api/v1/alarms/${encodeURIComponent(alarmId)}/acknowledge`,
  resolve: (alarmId: string) => `/api/v1/alarms/${encodeURIComponent(alarmId)}/resolve`,
  snooze: (alarmId: string) => `/api/v1/alarms/${encodeURIComponent(alarmId)}/snooze`,
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
  carePlan: (patientId: string) => patientPath(patientId, '/care-plan'),
};

export const openAlarms = (signal?: AbortSignal) => optional<Alarm[]>('alarms', endpoints.openAlarms(), signal);
export const patientAlarms = (patientId: string, signal?: AbortSignal) =>
  optional<Alarm[]>('alarms', endpoints.patientAlarms(patientId), signal);
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
  acknowledge: (alarm: Alarm) => post(endpoints.acknowledge(alarm.id)),
  resolve: (alarm: Alarm, note: string) => post(endpoints.resolve(alarm.id), { note }),
  snooze: (alarm: Alarm, minutes: number) => post(endpoints.snooze(alarm.id), { minutes }),
};

const PRIORITY: Record<Priority, { icon: string; label: string; rank: number }> = {
  high: { icon: '▲▲▲', label: 'High', rank: 3 },
  medium: { icon: '▲▲', label: 'Medium', rank: 2 },
  low: { icon: '▲', label: 'Low', rank: 1 },
};

export function priorityRank(priority: string): number {
  return PRIORITY[priority as Priority]?.rank ?? 0;
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
