// Server-Sent Events from /api/v1/patients/{id}/observations/stream (one patient) and
// /api/v1/observations/stream (all my patients, for the ward). EventSource sends the
// session cookie (same origin) and reconnects by itself; after a reconnect or a `lagged`
// event the page re-reads the latest values, since events may have been missed.
//
// A stalled server or network does not close the connection: it just goes quiet, and
// EventSource would wait forever. Every stream carries a `heartbeat` every 5 s, so a
// stream that hears nothing for STALE_AFTER_MS is declared stale (the page says its
// values may be out of date, never "Live") and is opened again.

import type { Observation } from './api';
import { api, patientPath } from './api';
import { endpoints, type AlarmStreamEvent, type News2 } from './features';
import type { RoomEvent } from './visits';

export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'stale';

/** Three heartbeats missed (the server sends one every 5 s). */
export const STALE_AFTER_MS = 15_000;

/**
 * An EventSource that is opened again when it has heard nothing, not even a heartbeat,
 * for STALE_AFTER_MS: `listen` adds the page's listeners to each one it opens.
 */
function watchedSource(
  url: string,
  listen: (source: EventSource, heard: () => void) => void,
  onStale: (silentForMs: number) => void,
): () => void {
  let lastHeard = Date.now();
  let source: EventSource;
  const heard = () => {
    lastHeard = Date.now();
  };
  const open = () => {
    source = new EventSource(url);
    source.addEventListener('heartbeat', heard);
    listen(source, heard);
  };
  open();
  const watchdog = window.setInterval(() => {
    const silent = Date.now() - lastHeard;
    if (silent < STALE_AFTER_MS) return;
    onStale(silent);
    // Every few seconds while silent, try a fresh connection: the old one may be held
    // by a proxy or a server that stopped answering.
    if (Math.floor(silent / 1000) % 5 === 0) {
      source.close();
      open();
    }
  }, 1000);
  return () => {
    window.clearInterval(watchdog);
    source.close();
  };
}

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
  return liveSource(url, handlers, (source, alive) => {
    source.addEventListener('observation', (event) => {
      alive();
      try {
        handlers.onObservation(JSON.parse((event as MessageEvent<string>).data) as Observation);
      } catch {
        // A malformed event is dropped; the next resync repairs the view.
      }
    });
    source.addEventListener('news2', (event) => {
      alive();
      try {
        handlers.onNews2?.(JSON.parse((event as MessageEvent<string>).data) as News2);
      } catch {
        // A malformed event is dropped; the next resync repairs the view.
      }
    });
    source.addEventListener('ended', () => handlers.onEnded?.());
  });
}

/**
 * What every stream of the app does: says when it is live, reconnecting or stale, asks
 * the page to re-read what it shows after a reconnect, a `lagged` event or a silence,
 * and checks the session when the connection fails. `listen` adds the stream's own
 * events, calling `alive` for each.
 */
function liveSource(
  url: string,
  handlers: { onResync(): void; onState?(state: LiveState): void },
  listen: (source: EventSource, alive: () => void) => void,
): () => void {
  let opened = false;
  let stale = false;
  handlers.onState?.('connecting');
  return watchedSource(
    url,
    (source, heard) => {
      const alive = () => {
        heard();
        if (stale) {
          // Back after a silence: what was missed is read again.
          stale = false;
          handlers.onState?.('live');
          handlers.onResync();
        }
      };
      source.addEventListener('open', () => {
        heard();
        if (opened) handlers.onResync();
        opened = true;
        stale = false;
        handlers.onState?.('live');
      });
      source.addEventListener('heartbeat', alive);
      source.addEventListener('error', () => {
        if (!stale) handlers.onState?.('reconnecting');
        sessionCheck();
      });
      source.addEventListener('lagged', () => handlers.onResync());
      listen(source, alive);
    },
    () => {
      stale = true;
      handlers.onState?.('stale');
    },
  );
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
  return liveSource(endpoints.alarmStream(), handlers, (source, alive) => {
    source.addEventListener('alarm', (event) => {
      alive();
      let data: AlarmStreamEvent;
      try {
        data = JSON.parse((event as MessageEvent<string>).data) as AlarmStreamEvent;
      } catch {
        return; // A malformed event is dropped; the next resync repairs the view.
      }
      if (data?.alarm?.id) handlers.onAlarm(data);
    });
  });
}

export interface RoomHandlers {
  onEvent(event: RoomEvent): void;
  /**
   * Called once the stream is open, and again after it was opened anew (a reconnect, a
   * silence, a `lagged` event): room events may have been missed, and the server took
   * the person out of the room when the old stream closed.
   */
  onOpen(reopened: boolean): void;
  onState?(state: LiveState): void;
  /** The server ended the stream: the session, the access to the patient, or the visit ended. */
  onEnded(): void;
  /** The stream failed (the page checks whether the visit still takes people). */
  onError?(): void;
}

/**
 * Server-Sent Events of a visit's room (/api/v1/visits/{id}/room/events): signalling,
 * presence, chat and changes, as `room` events.
 */
export function subscribeRoom(eventsUrl: string, handlers: RoomHandlers): () => void {
  let opened = false;
  return liveSource(
    eventsUrl,
    {
      onResync: () => handlers.onOpen(true),
      onState: handlers.onState,
    },
    (source, alive) => {
      source.addEventListener('open', () => {
        // `liveSource` calls onResync for a reopened stream; the first open is the page's.
        if (!opened) handlers.onOpen(false);
        opened = true;
      });
      source.addEventListener('room', (event) => {
        alive();
        let data: RoomEvent;
        try {
          data = JSON.parse((event as MessageEvent<string>).data) as RoomEvent;
        } catch {
          return; // A malformed event is dropped.
        }
        if (data && typeof data.type === 'string') handlers.onEvent(data);
      });
      source.addEventListener('ended', () => handlers.onEnded());
      source.addEventListener('error', () => handlers.onError?.());
    },
  );
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

/**
 * The page's live badge: "● Live" only while the stream is heard; "⚠ No contact with the
 * server…" when it has gone quiet, in words, so that nobody reads a frozen screen as the
 * patient's present.
 */
export function liveBadge(): { element: HTMLElement; set(state: LiveState): void } {
  const element = document.createElement('span');
  element.className = 'live-badge';
  element.setAttribute('role', 'status');
  const set = (state: LiveState) => {
    element.dataset.state = state;
    element.textContent =
      state === 'live'
        ? '● Live'
        : state === 'connecting'
          ? '○ Connecting…'
          : state === 'stale'
            ? '⚠ No contact with the server — values shown may be out of date'
            : '⚠ Reconnecting…';
  };
  set('connecting');
  return { element, set };
}
