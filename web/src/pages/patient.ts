// One patient: vitals tiles, trends, live ECG, CGM report, care plan and alarm history.
// The same page, at /me, is a patient's own view.

import { ApiError, api, patientPath, type Device, type Observation, type Patient } from '../api';
import { cgmReport } from '../charts/cgm';
import { ecgStrip } from '../charts/ecg';
import { trendChart } from '../charts/trend';
import { codeOrder, deviceKindLabel, staleAfterMinutes } from '../codes';
import { EVENT_LABEL, actorName, alarmText, byAttention, conditionLine, escalationLine, resolutionText, stateBadge } from '../alarmview';
import { h, notice, replace } from '../dom';
import {
  accessLog, accessWhat, patientAlarms, patientCareTeams, priorityBadge, rhythmEvents,
  type AccessLogEntry, type Alarm, type AlarmHistoryEvent,
} from '../features';
import { formatTime, minutesSince, refreshTimes, since, timeAgo } from '../format';
import { liveBadge, subscribe, subscribeAlarms } from '../live';
import { navigate, type PageContext } from '../router';
import { news2Line, vitalTiles } from '../vitals';
import { currentUser, frame } from '../session';
import { carePlanSection } from './careplan';
import { patientSharesSection, referralSection, sharedPatientPage } from './sharing';
import { emergencyAccessOffer, emergencyBanner, myEmergencyAccess } from './emergency';
import { refusedPage } from './errors';
import { diabetesAppDataSection, exportSection, importSection, nightscoutSection } from './connections';
import { monitoringTimer } from './monitoring';
import { patientVisitsSection, treatmentSection } from './visits';

const CGM_CODES = ['99504-3', '105272-9'];

export async function patientPage(root: HTMLElement, context: PageContext, patientId: string, self: boolean): Promise<void> {
  const { signal } = context;
  const role = currentUser()?.role;
  if (role === 'specialist') return sharedPatientPage(root, context, patientId);
  const clinical = role === 'clinician' || role === 'nurse';
  // The record first: a refused read (403) becomes the "access refused" page, with the
  // way to open emergency access for a clinician or a nurse.
  let patient: Patient;
  try {
    patient = await api<Patient>(patientPath(patientId), { signal });
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 403)) throw error;
    const main = refusedPage(root);
    if (clinical && !self) {
      main.append(emergencyAccessOffer(patientId, () => navigate(location.pathname + location.search, true)));
    }
    return;
  }
  const emergency = clinical && !self ? await myEmergencyAccess(patientId, signal) : null;
  // The patient's own care team (not an emergency access): visits, orders, monitoring time.
  const team = clinical && !self && !emergency;
  const [latest, devices] = await Promise.all([
    api<Observation[]>(patientPath(patientId, '/observations/latest'), { signal }),
    api<Device[]>(patientPath(patientId, '/devices'), { signal }),
  ]);
  const badge = liveBadge();
  const deviceList = h('ul', { class: 'plain devices' });
  const initialCode = latest.map((observation) => observation.loinc).sort((a, b) => codeOrder(a) - codeOrder(b))[0] ?? '8867-4';
  const trend = trendChart(patientId, initialCode, latest.map((observation) => observation.loinc));
  const tiles = vitalTiles(latest, (loinc) => trend.show(loinc));
  const values = tiles.values;
  context.onCleanup(() => trend.destroy());

  const hasEcg = devices.some((device) => device.kind === 'ecg' || device.kind === 'wearable');
  const ecg = hasEcg ? ecgStrip(patientId) : null;
  if (ecg) context.onCleanup(() => ecg.destroy());
  const hasCgm = devices.some((device) => device.kind === 'cgm') || CGM_CODES.some((code) => values.has(code));
  const cgm = hasCgm ? cgmReport(patientId, signal) : null;
  if (cgm) context.onCleanup(() => cgm.destroy());

  const news2 = news2Line(patientId);
  const renderNews2 = news2.render;
  const showNews2 = news2.reload;
  void showNews2();

  const alarms = alarmHistory(patientId, self ? 'self' : 'team', signal);
  const details = [
    patient.mrn ? `MRN ${patient.mrn}` : null,
    patient.birth_date ? `born ${patient.birth_date}` : null,
  ].filter(Boolean);

  frame(
    root,
    self ? 'My readings' : patient.display_name,
    h(
      'div',
      { class: 'page-head' },
      h('h1', { 'data-testid': 'patient-name' }, self ? `My readings — ${patient.display_name}` : patient.display_name),
      badge.element,
    ),
    details.length ? h('p', { class: 'lede' }, details.join(' · ')) : null,
    emergency ? emergencyBanner(emergency) : null,
    team ? monitoringTimer(patientId, context) : null,
    h('section', { class: 'card', 'aria-labelledby': 'vitals-title' }, h('h2', { id: 'vitals-title' }, 'Latest vitals'), news2.element, tiles.element),
    ecg?.element,
    ecg ? rhythmSection(patientId, signal) : null,
    trend.element,
    cgm?.element,
    alarms.element,
    carePlanSection(patientId, { editable: clinical && !emergency, self, signal }),
    self || team ? patientVisitsSection(patientId, { canSchedule: team, self, signal }) : null,
    self || team ? treatmentSection(patientId, { self, canOrder: team && role === 'clinician', signal }) : null,
    h('div', { class: 'columns' },
      h('section', { class: 'card', 'aria-labelledby': 'devices-title' }, h('h2', { id: 'devices-title' }, self ? 'My devices' : 'Devices'), deviceList),
      self ? whoCanSee(patientId, signal) : null,
    ),
    self ? patientSharesSection(signal) : null,
    self || (clinical && !emergency) ? nightscoutSection(patientId, self, signal) : null,
    self || clinical ? diabetesAppDataSection(patientId, signal) : null,
    self || (clinical && !emergency) ? importSection(patientId, signal) : null,
    self || clinical ? exportSection(patientId, self) : null,
    clinical && !self && !emergency ? referralSection(patientId, patient.display_name) : null,
  );
  // Alarm changes of this patient arrive live; the history is re-read after a burst.
  let alarmTimer = 0;
  const stopAlarms = subscribeAlarms({
    onAlarm(event) {
      if (event.patient_id !== patientId) return;
      window.clearTimeout(alarmTimer);
      alarmTimer = window.setTimeout(() => void alarms.reload(), 300);
    },
    onResync: () => void alarms.reload(),
  });
  context.onCleanup(stopAlarms);
  context.onCleanup(() => window.clearTimeout(alarmTimer));

  const renderTiles = tiles.render;

  function renderDevices(): void {
    if (devices.length === 0) {
      replace(deviceList, h('li', { class: 'muted' }, 'No devices assigned.'));
      return;
    }
    replace(
      deviceList,
      devices.map((device) => {
        const stale = minutesSince(device.last_seen) > staleAfterMinutes(device.kind);
        return h(
          'li',
          { class: stale ? 'stale' : null },
          h('strong', null, deviceKindLabel(device.kind)),
          ` ${device.model} (${device.id}) — `,
          device.status === 'revoked'
            ? 'revoked'
            : !device.last_seen
              ? h('span', { class: 'stale-text' }, h('span', { 'aria-hidden': 'true' }, '⚠ '), 'no data yet')
              : stale
                ? h('span', { class: 'stale-text' }, h('span', { 'aria-hidden': 'true' }, '⚠ '), `Stale — last data ${since(device.last_seen)}`)
                : h('span', null, 'last data ', timeAgo(device.last_seen)),
        );
      }),
    );
  }

  renderTiles();
  renderDevices();
  const stop = subscribe(patientId, {
    onObservation(observation) {
      // A value derived late goes to the trend but does not replace a newer one on
      // its tile (see `vitalTiles`).
      tiles.take(observation);
      const device = devices.find((candidate) => candidate.id === observation.device_id);
      if (device && (!device.last_seen || device.last_seen < observation.received)) device.last_seen = observation.received;
      renderTiles(observation.loinc);
      renderDevices();
      trend.push(observation);
    },
    onNews2: renderNews2,
    async onResync() {
      const fresh = await api<Observation[]>(patientPath(patientId, '/observations/latest')).catch(() => null);
      if (fresh) for (const observation of fresh) values.set(observation.loinc, observation);
      renderTiles();
      await showNews2();
    },
    onState: badge.set,
  });
  context.onCleanup(stop);
  const timer = window.setInterval(() => {
    refreshTimes(root);
    renderDevices();
  }, 15000);
  context.onCleanup(() => window.clearInterval(timer));
}

export function rhythmSection(patientId: string, signal: AbortSignal): HTMLElement {
  const body = h('div', null, notice('info', 'Loading rhythm events…'));
  rhythmEvents(patientId, new Date(Date.now() - 86_400_000), signal)
    .then((events) => {
      if (events === undefined) replace(body, notice('info', 'Rhythm analysis is not available on this server yet.'));
      else if (events.length === 0) replace(body, h('p', null, 'No rhythm events in the last 24 hours.'));
      else
        replace(
          body,
          h('ul', { class: 'plain' }, [...events].reverse().slice(0, 20).map((event) =>
            h('li', null, h('strong', null, event.kind.replace(/_/g, ' ')), ` — from ${formatTime(event.onset)} to ${formatTime(event.end)}`,
              event.detail ? h('span', { class: 'muted' }, ` (${Object.entries(event.detail).map(([key, value]) => `${key.replace(/_/g, ' ')} ${String(value)}`).join(', ')})`) : null))),
        );
    })
    .catch((error) => replace(body, notice('error', String(error))));
  return h('section', { class: 'card', 'aria-labelledby': 'rhythm-title' }, h('h2', { id: 'rhythm-title' }, 'Rhythm events (24 h)'), body);
}

const ROLE_LABEL: Record<string, string> = { clinician: 'Clinician', nurse: 'Nurse', admin: 'Administrator', patient: 'Patient', specialist: 'Specialist' };

/** A patient's own view of who may see their data and of every recorded look at it. */
function whoCanSee(patientId: string, signal: AbortSignal): HTMLElement {
  const teams = h('div', null, notice('info', 'Loading your care team…'));
  const looks = h('div', null, notice('info', 'Loading who looked at your data…'));
  const element = h(
    'section',
    { class: 'card', 'aria-labelledby': 'access-title', 'data-testid': 'who-can-see' },
    h('h2', { id: 'access-title' }, 'Who can see my data'),
    h('p', null, 'Only you, the clinicians and nurses of your care team, and the specialists you share with can see your readings. Every look at your data is recorded, and shown to you below.'),
    teams,
    h('h3', null, 'Who looked at my data'),
    looks,
  );
  patientCareTeams(patientId, signal)
    .then((list) => {
      if (list.length === 0) {
        replace(teams, h('p', null, 'You are not in a care team yet, so only you can see your data.'));
        return;
      }
      replace(
        teams,
        h('ul', { class: 'plain care-teams', 'data-testid': 'care-teams' }, list.map((team) =>
          h('li', null, h('strong', null, team.name), team.members.length
            ? h('ul', { class: 'plain' }, team.members.map((member) => h('li', null, `${member.display_name} — ${ROLE_LABEL[member.role] ?? member.role}`)))
            : h('p', { class: 'muted' }, 'No members yet.')))),
      );
    })
    .catch((error) => { if (!signal.aborted) replace(teams, notice('error', `Your care team could not be loaded: ${String(error)}`)); });
  accessLog(patientId, 200, signal)
    .then((entries) => {
      // Your own looks are many and tell you nothing; show everyone else's: one row per
      // person and outcome, with what they looked at and when, the most recent first.
      const people = new Map<string, { entry: AccessLogEntry; things: Map<string, number>; first: string }>();
      for (const entry of entries.filter((candidate) => candidate.role !== 'patient')) {
        const key = JSON.stringify([entry.who, entry.role, entry.outcome, entry.share_id ?? null, entry.emergency]);
        const person = people.get(key) ?? { entry, things: new Map<string, number>(), first: entry.time };
        const what = accessWhat(entry.action);
        person.things.set(what, (person.things.get(what) ?? 0) + 1);
        person.first = entry.time;
        people.set(key, person);
      }
      if (people.size === 0) {
        replace(looks, h('p', null, 'Nobody else has looked at your data recently.'));
        return;
      }
      replace(
        looks,
        h('p', { class: 'muted' }, `From the last ${entries.length} recorded looks at your data.`),
        h('div', { class: 'table-scroll' }, h('table', { class: 'access-log', 'data-testid': 'access-log' },
          h('caption', { class: 'visually-hidden' }, 'Who looked at my data, most recent first'),
          h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Who'), h('th', { scope: 'col' }, 'What'), h('th', { scope: 'col' }, 'When'), h('th', { scope: 'col' }, 'Outcome'))),
          h('tbody', null, [...people.values()].map(({ entry, things, first }) => h('tr', { 'data-outcome': entry.outcome },
            h('td', null, entry.who, entry.role ? h('span', { class: 'muted' }, ` (${ROLE_LABEL[entry.role] ?? entry.role})`) : null,
              entry.share_id ? h('span', { class: 'muted' }, ', through your share') : null,
              entry.emergency ? h('span', { class: 'muted' }, ', by emergency access') : null),
            h('td', null, [...things].map(([what, times]) => (times > 1 ? `${what} (${times}×)` : what)).join(', ')),
            h('td', null, first === entry.time ? formatTime(entry.time) : `${formatTime(first)} to ${formatTime(entry.time)}`),
            h('td', null, entry.outcome === 'allowed'
              ? [h('span', { 'aria-hidden': 'true' }, '✓ '), 'Seen']
              : [h('span', { 'aria-hidden': 'true' }, '✕ '), 'Refused'])))))),
      );
    })
    .catch((error) => { if (!signal.aborted) replace(looks, notice('error', `The access record could not be loaded: ${String(error)}`)); });
  return element;
}

/**
 * The patient's alarms, unresolved first, each with its history; read-only here. The
 * care team acts on them in the inbox; a specialist sees those raised in the shared period.
 */
export function alarmHistory(patientId: string, viewer: 'self' | 'team' | 'specialist', signal: AbortSignal): { element: HTMLElement; reload(): Promise<void> } {
  const self = viewer === 'self';
  const body = h('div', null, notice('info', 'Loading alarms…'));
  const element = h(
    'section',
    { class: 'card', 'aria-labelledby': 'alarm-history-title', 'data-testid': 'alarm-history' },
    h('div', { class: 'section-head' }, h('h2', { id: 'alarm-history-title' }, self ? 'My alarms' : 'Alarms'),
      viewer === 'team' ? h('a', { href: '/alarms' }, 'Act on alarms in the inbox') : null),
    body,
  );
  async function reload(): Promise<void> {
    try {
      const alarms = await patientAlarms(patientId, signal);
      render(alarms);
    } catch (error) {
      if (!signal.aborted) replace(body, notice('error', `Alarms could not be loaded: ${error instanceof Error ? error.message : String(error)}`));
    }
  }
  function render(alarms: Alarm[]): void {
    if (alarms.length === 0) {
      replace(body, h('p', null, h('span', { 'aria-hidden': 'true' }, '✓ '), 'No alarms so far.'));
      return;
    }
    const sorted = [...alarms].sort(byAttention);
    const unresolved = sorted.filter((alarm) => alarm.state_name !== 'resolved').length;
    replace(
      body,
      h('p', { class: 'lede' }, `${unresolved} unresolved, ${sorted.length - unresolved} resolved (latest 100).`,
        self ? ' Your care team is notified of each alarm and follows it up.' : ''),
      h(
        'ul',
        { class: 'alarm-list history' },
        sorted.map((alarm) =>
          h(
            'li',
            { class: `alarm alarm-${alarm.priority} alarm-history-item`, 'data-alarm-id': alarm.id, 'data-state': alarm.state_name },
            h('div', { class: 'alarm-head' }, priorityBadge(alarm.priority), ' ', stateBadge(alarm), ' ', h('strong', { class: 'alarm-message' }, alarmText(alarm).title)),
            alarmText(alarm).detail ? h('p', { class: 'alarm-detail' }, alarmText(alarm).detail) : null,
            h('p', { class: 'alarm-meta' }, 'Raised ', formatTime(alarm.raised_at), ' (', timeAgo(alarm.raised_at), ')',
              alarm.state_name === 'resolved' ? ` · ${resolutionText(alarm)}` : ''),
            alarm.state_name === 'resolved' ? null : escalationLine(alarm),
            conditionLine(alarm),
            alarm.events?.length ? eventList(alarm, alarm.events) : null,
          ),
        ),
      ),
    );
  }
  void reload();
  return { element, reload };
}

function eventList(alarm: Alarm, events: AlarmHistoryEvent[]): HTMLElement {
  return h(
    'details',
    { class: 'alarm-events' },
    h('summary', null, `History (${events.length} event${events.length === 1 ? '' : 's'})`),
    h(
      'ol',
      null,
      events.map((event) => {
        // What an event's detail holds depends on the event (see the alarm history).
        const detail = (event.detail ?? {}) as Record<string, unknown>;
        const extra =
          event.event === 'notified'
            ? ` — level ${String(detail.level ?? '?')} (${String(detail.reason ?? '').replace(/_/g, ' ')})`
            : event.event === 'snoozed' && typeof detail.until === 'string'
              ? ` until ${formatTime(detail.until)}`
              : event.event === 'resolved' && typeof detail.note === 'string'
                ? `: “${detail.note}”`
                : event.event === 'resolved' && detail.by === 'condition_cleared'
                  ? ' (condition cleared)'
                  : '';
        return h('li', null, h('time', { datetime: event.time }, formatTime(event.time)), ' — ', EVENT_LABEL[event.event] ?? event.event,
          event.actor ? ` by ${actorName(event.actor, alarm)}` : '', extra);
      }),
    ),
  );
}
