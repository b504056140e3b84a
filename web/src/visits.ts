// Telehealth visits: their paths, the shapes the app reads, and how a visit's time and
// status read (crates/api/src/routes/visits.rs on the server). The room's event bodies
// are not in the OpenAPI document (an event stream's data has no schema there), so their
// shape is written out here from crates/service/src/visits.rs `RoomEvent`.

import { api, patientPath, post } from './api';
import { h } from './dom';
import { formatClock, formatTime } from './format';
import type {
  CarePlanInVisit,
  CarePlanRequest,
  MonitoringTime,
  MonitoringTimeRequest,
  PatientLedger,
  PresenceSpan,
  RoomEntry,
  TreatmentOrder,
  TreatmentOrderRequest,
  Visit,
  VisitMessage,
  VisitNote,
  VisitNoteText,
  VisitRecord,
  VisitRequest,
} from './schema';

export type {
  CarePlanInVisit,
  DevicePeriod,
  IceServer,
  ManagementMonth,
  MonitoringTime,
  PatientLedger,
  PresenceSpan,
  RoomEntry,
  TreatmentOrder,
  TreatmentOrderRequest,
  Visit,
  VisitMessage,
  VisitNote,
  VisitRecord,
  VisitStatus,
} from './schema';

/** How long before its start a visit's room opens (the server's ROOM_OPENS_BEFORE). */
export const ROOM_OPENS_BEFORE_MS = 15 * 60_000;
/** How long after its planned end the room stays open (ROOM_STAYS_OPEN_AFTER). */
export const ROOM_STAYS_OPEN_AFTER_MS = 2 * 3600_000;

const visitPath = (visitId: string, rest = '') => `/api/v1/visits/${encodeURIComponent(visitId)}${rest}`;

/** The room's page. It is always opened with a page load of its own: see `router.ts`. */
export const roomPath = (visitId: string) => `/visits/${encodeURIComponent(visitId)}/room`;
export const visitPagePath = (visitId: string) => `/visits/${encodeURIComponent(visitId)}`;

export const visitApi = {
  mine: (signal?: AbortSignal) => api<Visit[]>('/api/v1/me/visits', { signal }),
  ofPatient: (patientId: string, signal?: AbortSignal) => api<Visit[]>(patientPath(patientId, '/visits'), { signal }),
  schedule: (patientId: string, request: VisitRequest) => post<Visit>(patientPath(patientId, '/visits'), request),
  record: (visitId: string, signal?: AbortSignal, refresh = false) => api<VisitRecord>(visitPath(visitId), { signal, refresh }),
  reschedule: (visitId: string, start: string, durationMinutes: number) =>
    post<Visit>(visitPath(visitId, '/reschedule'), { start, duration_minutes: durationMinutes }),
  close: (visitId: string, status: 'cancelled' | 'no_show' | 'completed', reason?: string) =>
    post<Visit>(visitPath(visitId, '/close'), reason ? { status, reason } : { status }),
  enter: (visitId: string) => post<RoomEntry>(visitPath(visitId, '/room/enter')),
  leave: (visitId: string, keepalive = false) =>
    api<PresenceSpan[]>(visitPath(visitId, '/room/leave'), { method: 'POST', body: {}, keepalive }),
  signal: (visitId: string, message: { kind: SignalKind; to?: string; data?: unknown }, keepalive = false) =>
    api<void>(visitPath(visitId, '/room/signal'), { method: 'POST', body: message, keepalive }),
  events: (visitId: string) => visitPath(visitId, '/room/events'),
  messages: (visitId: string, after = 0, signal?: AbortSignal) =>
    api<VisitMessage[]>(visitPath(visitId, `/messages?after=${after}`), { signal, refresh: true }),
  say: (visitId: string, text: string) => post<VisitMessage>(visitPath(visitId, '/messages'), { text }),
  saveNote: (visitId: string, text: VisitNoteText) => api<VisitNote>(visitPath(visitId, '/note'), { method: 'PUT', body: text }),
  signNote: (visitId: string) => post<VisitNote>(visitPath(visitId, '/note/sign')),
  addAddendum: (visitId: string, text: string) => post<VisitNote>(visitPath(visitId, '/note/addenda'), { text }),
  changeCarePlan: (visitId: string, change: CarePlanRequest) => post<CarePlanInVisit>(visitPath(visitId, '/care-plan'), change),
  order: (patientId: string, request: TreatmentOrderRequest) => post<TreatmentOrder>(patientPath(patientId, '/treatment-orders'), request),
  orders: (patientId: string, signal?: AbortSignal) => api<TreatmentOrder[]>(patientPath(patientId, '/treatment-orders'), { signal }),
  monitoringTime: (patientId: string, request: MonitoringTimeRequest, keepalive = false) =>
    api<MonitoringTime>(patientPath(patientId, '/monitoring-time'), { method: 'POST', body: request, keepalive }),
  ledgers: (signal?: AbortSignal) => api<PatientLedger[]>('/api/v1/rpm-ledger', { signal }),
  ledgerCsv: '/api/v1/rpm-ledger.csv',
};

// ---------------------------------------------------------------------------------------
// The room's events (`room` events of GET /api/v1/visits/{id}/room/events)

export type SignalKind = 'offer' | 'answer' | 'candidate' | 'hello' | 'bye' | 'quality';

export type RoomEvent =
  | { type: 'signal'; from: string; to: string | null; kind: SignalKind; data: unknown }
  | { type: 'presence'; user_id: string; joined: boolean; present: string[] }
  | ({ type: 'chat' } & VisitMessage)
  | { type: 'changed'; visit_id: string }
  | { type: 'closed'; visit_id: string; status: Visit['status'] };

// ---------------------------------------------------------------------------------------
// How a visit reads

export const visitEnd = (visit: Visit) => Date.parse(visit.start) + visit.duration_minutes * 60_000;

/** Whether the room takes people now: scheduled, from 15 min before to 2 h after. */
export function roomOpen(visit: Visit, now = Date.now()): boolean {
  return (
    visit.status === 'scheduled' &&
    now >= Date.parse(visit.start) - ROOM_OPENS_BEFORE_MS &&
    now <= visitEnd(visit) + ROOM_STAYS_OPEN_AFTER_MS
  );
}

/** When the room opens, for a visit whose room is not open yet. */
export const roomOpensAt = (visit: Visit) => new Date(Date.parse(visit.start) - ROOM_OPENS_BEFORE_MS).toISOString();

const STATUS: Record<string, { icon: string; label: string }> = {
  scheduled: { icon: '◷', label: 'Scheduled' },
  completed: { icon: '✔', label: 'Completed' },
  cancelled: { icon: '✕', label: 'Cancelled' },
  no_show: { icon: '∅', label: 'No-show' },
};

export function statusLabel(status: string): string {
  return STATUS[status]?.label ?? status.replace(/_/g, ' ');
}

/** A visit's status as a badge with an icon and a word, never a colour alone. */
export function statusBadge(visit: Visit): HTMLElement {
  const known = STATUS[visit.status] ?? { icon: '•', label: visit.status };
  return h(
    'span',
    { class: `visit-status visit-${visit.status}`, 'data-testid': 'visit-status', 'data-status': visit.status },
    h('span', { 'aria-hidden': 'true' }, `${known.icon} `),
    known.label,
  );
}

/** "7 Dec 2026, 14:30 – 14:50 (20 min)", in the browser's time zone. */
export function visitWhen(visit: Visit): string {
  const end = new Date(visitEnd(visit)).toISOString();
  return `${formatTime(visit.start)} – ${formatClock(end, Date.parse(visit.start))} (${visit.duration_minutes} min)`;
}

/** The care team members who attend, by name. */
export const attendeeNames = (visit: Visit) => visit.attendees.map((attendee) => attendee.display_name).join(', ');

/**
 * Who a participant of the room is: an attendee by name, otherwise the patient (the one
 * participant who is not an attendee).
 */
export function participantName(visit: Visit, userId: string): string {
  return visit.attendees.find((attendee) => attendee.user_id === userId)?.display_name ?? visit.patient_name;
}

/** A date as the API takes it (YYYY-MM-DD), in the browser's time zone. */
export function localDate(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** A `datetime-local` input's value for a moment, in the browser's time zone. */
export function localDateTime(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${localDate(date)}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}
