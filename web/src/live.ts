// Server-Sent Events from /api/v1/patients/{id}/observations/stream (one patient) and
// /api/v1/observations/stream (all my patients, for the ward). EventSource sends the
// session cookie (same origin) and reconnects by itself; after a reconnect or a `lagged`
// event the page re-reads the latest values, since events may have been missed.

import type { Observation } from './api';
import { api, patientPath } from './api';
import { endpoints, type AlarmStreamEvent, type News2 } from './features';

export type LiveState = 'connecting' | 'live' | 'reconnecting';

export interface LiveHandlers {
  onObservation(observation: Observation): void;
  /** A NEWS2 result, pushed as soon as the server has recomputed and stored it. */
  onNews2?(score: News2): void;
  /** Called when events may have been missed: re-read what is shown. */
  onResync(): void;
  onState?(state: LiveState): void;
  /**
   * The server ended the stream because the session or the access to a patient ended.
   * Unless the page stops it, the stream reconnects, with the access there is now.
   */
  onEnded?(): void;
}

/** One patient's observations and NEWS2 scores. */
export function subscribe(patientId: string, handlers: LiveHandlers): () => void {
  return observationStream(patientPath(patientId, '/observations/stream'), handlers);
}

/**
 * The observations and NEWS2 scores of every patient the caller may read, on one
 * connection (browsers allow only a few connections per server over HTTP/1.1).
 * Each event names its patient.
 */
export function subscribeWard(handlers: LiveHandlers): () => void {
  return observationStream('/api/v1/observations/stream', handlers);
}

function observationStream(url: string, handlers: LiveHandlers): () => void {
  const source = new EventSource(url);
  let opened = false;
  handlers.onState?.('connecting');
  source.addEventListener('open', () => {
    if (opened) handlers.onResync();
    opened = true;
    handlers.onState?.('live');
  });
  source.addEventListener('error', () => {
    handlers.onState?.('reconnecting');
    sessionCheck();
  });
  source.addEventListener('observation', (event) => {
    try {
      handlers.onObservation(JSON.parse((event as MessageEvent<string>).data) as Observation);
    } catch {
      // A malformed event is dropped; the next resync repairs the view.
    }
  });
  source.addEventListener('news2', (event) => {
    try {
      handlers.onNews2?.(JSON.parse((event as MessageEvent<string>).data) as News2);
    } catch {
      // A malformed event is dropped; the next resync repairs the view.
    }
  });
  source.addEventListener('lagged', () => handlers.onResync());
  source.addEventListener('ended', () => handlers.onEnded?.());
  return () => source.close();
}

export interface AlarmHandlers {
  onAlarm(event: AlarmStreamEvent): void;
  /** Called when alarm changes may have been missed: re-read the alarms shown. */
  onResync(): void;
  onState?(state: LiveState): void;
}

/**
 * Server-Sent Events from /api/v1/alarms/stream: every change to an alarm of the
 * caller's patients (opened, acknowledged, snoozed, snooze_expired, resolved, notified...).
 */
export function subscribeAlarms(handlers: AlarmHandlers): () => void {
  const source = new EventSource(endpoints.alarmStream());
  let opened = false;
  handlers.onState?.('connecting');
  source.addEventListener('open', () => {
    if (opened) handlers.onResync();
    opened = true;
    handlers.onState?.('live');
  });
  source.addEventListener('error', () => {
    handlers.onState?.('reconnecting');
    sessionCheck();
  });
  source.addEventListener('alarm', (event) => {
    let data: AlarmStreamEvent;
    try {
      data = JSON.parse((event as MessageEvent<string>).data) as AlarmStreamEvent;
    } catch {
      return; // A malformed event is dropped; the next resync repairs the view.
    }
    if (data?.alarm?.id) handlers.onAlarm(data);
  });
  source.addEventListener('lagged', () => handlers.onResync());
  return () => source.close();
}

/**
 * A stream that fails may have been ended by the server because the session ended
 * (EventSource cannot see the status): asking who is logged in tells, and a 401 there
 * sends the page to the login (see `SESSION_ENDED`). Not counted as activity.
 */
function sessionCheck(): void {
  api('/api/v1/me', { refresh: true }).catch(() => {
    // A 401 has been announced by `api`; anything else is the connection, which the
    // stream retries by itself.
  });
}

export function liveBadge(): { element: HTMLElement; set(state: LiveState): void } {
  const element = document.createElement('span');
  element.className = 'live-badge';
  element.setAttribute('role', 'status');
  const set = (state: LiveState) => {
    element.dataset.state = state;
    element.textContent =
      state === 'live' ? '● Live' : state === 'connecting' ? '○ Connecting…' : '⚠ Reconnecting…';
  };
  set('connecting');
  return { element, set };
}
