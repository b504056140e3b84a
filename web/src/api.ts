// The one way the app talks to the server: the same JSON API, with the same access
// checks, as any other client. The session is the HttpOnly cookie set at login; the app
// never sees or stores the token. Every request carries `X-Wardline-Request: 1`, which
// the server requires on cookie-authenticated requests that change state (a cross-site
// form cannot set it). A read that no keypress, click or touch of the person led to (a
// poll, a reload after a live event) carries `X-Wardline-Refresh: 1`, so that a screen
// left alone still logs out after the idle timeout.

import type { Observation, ObservationBucket } from './schema';

export type {
  AuditRecord,
  CareTeam,
  Device,
  EnrolledDevice,
  Me,
  Observation,
  ObservationBucket,
  Patient,
  User,
  WaveformChunk,
} from './schema';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }

  /** The route does not exist on this server (yet): a feature still to land. */
  get routeMissing(): boolean {
    return this.status === 404 && this.message === 'route not found';
  }
}

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** Fired on `window` when the server ends the session (idle, expired, logged out elsewhere). */
export const SESSION_ENDED = 'wardline:session-ended';
/** Fired on `window` when the account must change its password before anything else. */
export const PASSWORD_CHANGE_REQUIRED = 'wardline:password-change-required';
/** Fired on `window` when the account's role requires a second factor it has not set up. */
export const SECOND_FACTOR_SETUP_REQUIRED = 'wardline:second-factor-setup-required';

/** How long after a person's input the requests that follow count as theirs. */
const INPUT_WINDOW_MS = 5000;
let lastInput = performance.now();
for (const kind of ['pointerdown', 'keydown', 'popstate']) {
  window.addEventListener(kind, () => (lastInput = performance.now()), { capture: true, passive: true });
}

export async function api<T>(
  path: string,
  options: { method?: Method; body?: unknown; signal?: AbortSignal; refresh?: boolean; keepalive?: boolean } = {},
): Promise<T> {
  const headers: Record<string, string> = {
    Accept: 'application/json',
    'X-Wardline-Request': '1',
  };
  if (options.refresh || performance.now() - lastInput > INPUT_WINDOW_MS) {
    headers['X-Wardline-Refresh'] = '1';
  }
  let body: string | undefined;
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(options.body);
  }
  const response = await fetch(path, {
    method: options.method ?? 'GET',
    headers,
    body,
    credentials: 'same-origin',
    cache: 'no-store',
    signal: options.signal,
    // A request sent as the page goes away (a visit's room saying goodbye) outlives it.
    keepalive: options.keepalive,
  });
  if (response.status === 204) return undefined as T;
  let data: unknown = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data as { error?: { code?: string; message?: string; field?: string } } | null)?.error;
    const failure = new ApiError(
      response.status,
      error?.code ?? `http_${response.status}`,
      error?.message ?? response.statusText,
      error?.field,
    );
    if (response.status === 401 && !path.startsWith('/api/v1/auth/')) {
      window.dispatchEvent(new CustomEvent(SESSION_ENDED, { detail: failure.code }));
    } else if (failure.code === 'password_change_required') {
      window.dispatchEvent(new CustomEvent(PASSWORD_CHANGE_REQUIRED));
    } else if (failure.code === 'second_factor_setup_required') {
      window.dispatchEvent(new CustomEvent(SECOND_FACTOR_SETUP_REQUIRED));
    }
    throw failure;
  }
  return data as T;
}

export const post = <T>(path: string, body: unknown = {}, signal?: AbortSignal) =>
  api<T>(path, { method: 'POST', body, signal });

/** Every observation of one code in [from, to), following the API's pages. */
/** Every observation of one code in a window, page by page. */
export async function allObservations(
  patientId: string,
  loinc: string,
  from: Date,
  to: Date,
  signal?: AbortSignal,
  onPage?: (count: number) => void,
): Promise<Observation[]> {
  const all: Observation[] = [];
  let cursor: string | undefined;
  do {
    const query = new URLSearchParams({
      code: loinc,
      from: from.toISOString(),
      to: to.toISOString(),
      limit: '10000',
    });
    if (cursor) query.set('cursor', cursor);
    const page = await api<{ observations: Observation[]; next_cursor?: string }>(
      `/api/v1/patients/${encodeURIComponent(patientId)}/observations?${query}`,
      { signal },
    );
    all.push(...page.observations);
    onPage?.(all.length);
    cursor = page.next_cursor;
  } while (cursor);
  return all;
}

/** Count, minimum, maximum and mean per `bucketSecs` bucket, oldest first. */
export async function observationSummary(
  patientId: string,
  loinc: string,
  from: Date,
  to: Date,
  bucketSecs: number,
  signal?: AbortSignal,
): Promise<{ unit: string; bucket_secs: number; buckets: ObservationBucket[] }> {
  const query = new URLSearchParams({ code: loinc, from: from.toISOString(), to: to.toISOString(), bucket_secs: String(bucketSecs) });
  return api(`/api/v1/patients/${encodeURIComponent(patientId)}/observations/summary?${query}`, { signal });
}

export const patientPath = (patientId: string, rest = '') =>
  `/api/v1/patients/${encodeURIComponent(patientId)}${rest}`;
