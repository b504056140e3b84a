// The ward: my patients, most urgent first, live.

import { ApiError, api, patientPath, type Device, type Observation, type Patient } from '../api';
import { codeInfo, codeOrder, deviceKindLabel, displayUnit, formatValue, staleAfterMinutes } from '../codes';
import { h, notice, replace } from '../dom';
import { formatTime, minutesSince, refreshTimes, since, timeAgo } from '../format';
import { alarmText, byAttention, stateBadge } from '../alarmview';
import { carePlan, inboxAlarms, latestNews2, news2Band, priorityBadge, priorityRank, programLabel, type Alarm, type News2 } from '../features';
import { liveBadge, subscribeAlarms, subscribeWard } from '../live';
import type { PageContext } from '../router';
import { frame } from '../session';

/** The vitals the ward shows at a glance, in this order. */
const WARD_CODES = ['8867-4', '59408-5', '2708-6', '9279-1', '8480-6', '8462-4', '8310-5', '99504-3'];

interface Row {
  patient: Patient;
  /** `null` when the caller may list the patient but not read their data (an admin). */
  latest: Map<string, Observation> | null;
  devices: Device[] | null;
  alarms: Alarm[];
  news2?: News2 | null;
  /** The monitoring programme of the care plan in force; `null` without a plan. */
  program?: string | null;
  element?: HTMLTableRowElement;
}

export async function wardPage(root: HTMLElement, context: PageContext): Promise<void> {
  const badge = liveBadge();
  const status = h('div', { class: 'ward-status' });
  const tableHost = h('div', { class: 'table-scroll' }, notice('info', 'Loading your patients…'));
  frame(
    root,
    'Ward',
    h('div', { class: 'page-head' }, h('h1', null, 'My patients'), badge.element),
    h('p', { class: 'lede' }, 'Most urgent first: open alarms by priority, then NEWS2. Alarms and readings update live.'),
    status,
    tableHost,
  );
  const patients = await api<Patient[]>('/api/v1/patients', { signal: context.signal });
  if (patients.length === 0) {
    replace(tableHost, notice('info', 'No patients are in your care teams yet.'));
    return;
  }
  const alarms = await inboxAlarms(context.signal);
  const rows: Row[] = await mapLimit(patients, 4, async (patient) => {
    const [latest, devices] = await Promise.all([
      readable(api<Observation[]>(patientPath(patient.id, '/observations/latest'), { signal: context.signal })),
      readable(api<Device[]>(patientPath(patient.id, '/devices'), { signal: context.signal })),
    ]);
    const news2 = latest ? await latestNews2(patient.id, context.signal) : undefined;
    const plan = latest ? await carePlan(patient.id, context.signal).catch(() => undefined) : undefined;
    return {
      patient,
      program: plan === undefined ? undefined : plan?.plan.program ?? null,
      latest: latest ? new Map(latest.map((observation) => [observation.loinc, observation])) : null,
      devices,
      alarms: alarms.filter((alarm) => alarm.patient_id === patient.id),
      news2,
    };
  });
  rows.sort(byUrgency);
  const tbody = h('tbody');
  /** Puts the rows in urgency order again, moving only what moved. */
  const resort = () => {
    rows.sort(byUrgency);
    rows.forEach((row, index) => {
      if (row.element && tbody.children[index] !== row.element) tbody.insertBefore(row.element, tbody.children[index] ?? null);
    });
  };
  const table = h(
    'table',
    { class: 'ward', 'data-testid': 'ward-table' },
    h('caption', { class: 'visually-hidden' }, 'Patients, most urgent first'),
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        h('th', { scope: 'col' }, 'Patient'),
        h('th', { scope: 'col' }, 'Open alarms'),
        h('th', { scope: 'col' }, 'NEWS2'),
        h('th', { scope: 'col' }, 'Latest vitals'),
        h('th', { scope: 'col' }, 'Last contact per device'),
      ),
    ),
    tbody,
  );
  for (const row of rows) {
    row.element = h('tr', { 'data-patient-id': row.patient.id });
    renderRow(row);
    tbody.append(row.element);
  }
  replace(tableHost, table);

  // Live alarms: one stream for all my patients.
  const stopAlarms = subscribeAlarms({
    onAlarm(event) {
      const row = rows.find((candidate) => candidate.patient.id === event.patient_id);
      if (!row) return;
      row.alarms = row.alarms.filter((alarm) => alarm.id !== event.alarm.id);
      if (event.alarm.state_name !== 'resolved') row.alarms.push(event.alarm);
      renderRow(row);
      resort();
    },
    async onResync() {
      const fresh = await inboxAlarms().catch(() => null);
      if (!fresh) return;
      for (const row of rows) {
        row.alarms = fresh.filter((alarm) => alarm.patient_id === row.patient.id);
        renderRow(row);
      }
      resort();
    },
    // With no readings to follow (an admin's view), the alarm stream is what is live.
    onState: (state) => {
      if (!rows.some((row) => row.latest)) badge.set(state);
    },
  });
  context.onCleanup(stopAlarms);

  // Live readings and NEWS2: one stream for all the patients whose data I may read.
  const rowOf = (patientId: string) => rows.find((row) => row.patient.id === patientId && row.latest);
  if (rows.some((row) => row.latest)) {
    const stop = subscribeWard({
      onObservation(observation) {
        const row = rowOf(observation.patient_id);
        if (!row) return;
        row.latest?.set(observation.loinc, observation);
        const device = row.devices?.find((candidate) => candidate.id === observation.device_id);
        if (device && (!device.last_seen || device.last_seen < observation.received)) device.last_seen = observation.received;
        renderRow(row, observation.loinc);
      },
      onNews2(score) {
        const row = rowOf(score.patient_id);
        if (!row) return;
        row.news2 = score;
        renderRow(row);
        resort();
      },
      async onResync() {
        await mapLimit(rows.filter((row) => row.latest), 4, async (row) => {
          const latest = await api<Observation[]>(patientPath(row.patient.id, '/observations/latest')).catch(() => null);
          if (latest) row.latest = new Map(latest.map((observation) => [observation.loinc, observation]));
          const news2 = await latestNews2(row.patient.id).catch(() => undefined);
          if (news2 !== undefined) row.news2 = news2;
          renderRow(row);
        });
        resort();
      },
      onState: (state) => badge.set(state),
    });
    context.onCleanup(stop);
  }
  const timer = window.setInterval(() => {
    for (const row of rows) renderDevices(row);
    refreshTimes(table);
  }, 15000);
  context.onCleanup(() => window.clearInterval(timer));
}

async function readable<T>(promise: Promise<T>): Promise<T | null> {
  try {
    return await promise;
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) return null;
    throw error;
  }
}

async function mapLimit<T, R>(items: T[], limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const index = next++;
        results[index] = await task(items[index]);
      }
    }),
  );
  return results;
}

/**
 * Open alarms by priority (counts of high, then medium, then low; a snoozed alarm is still
 * open), then NEWS2, then acknowledged alarms, then name.
 */
export function byUrgency(a: Row, b: Row): number {
  const open = (row: Row, rank: number) =>
    row.alarms.filter((alarm) => alarm.state_name !== 'acknowledged' && priorityRank(alarm.priority) === rank).length;
  const key = (row: Row) => [
    open(row, 3),
    open(row, 2),
    open(row, 1),
    row.news2?.total ?? -1,
    row.alarms.filter((alarm) => alarm.state_name === 'acknowledged').length,
  ];
  const [ka, kb] = [key(a), key(b)];
  for (let index = 0; index < ka.length; index++) {
    if (ka[index] !== kb[index]) return kb[index] - ka[index];
  }
  return a.patient.display_name.localeCompare(b.patient.display_name);
}

function renderRow(row: Row, changed?: string): void {
  const tr = row.element;
  if (!tr) return;
  const patient = row.patient;
  const cells = [
    h(
      'th',
      { scope: 'row' },
      row.latest
        ? h('a', { href: `/patients/${encodeURIComponent(patient.id)}`, class: 'patient-link' }, patient.display_name)
        : patient.display_name,
      patient.mrn ? h('div', { class: 'muted' }, `MRN ${patient.mrn}`) : null,
      row.program === undefined
        ? null
        : h('div', { class: 'program', 'data-testid': 'ward-program' }, row.program ? `${programLabel(row.program)} programme` : 'No care plan yet'),
    ),
    // The labels head each cell where a narrow screen shows rows as cards.
    h('td', { class: 'alarms-cell', 'data-testid': 'ward-alarms', 'data-label': 'Open alarms' }, alarmsCell(row)),
    h('td', { class: 'news2-cell', 'data-label': 'NEWS2' }, news2Cell(row)),
    h('td', { class: 'vitals-cell', 'data-label': 'Latest vitals' }, vitalsCell(row, changed)),
    h('td', { class: 'devices-cell', 'data-label': 'Last contact per device' }),
  ];
  tr.replaceChildren(...cells);
  renderDevices(row);
}

function alarmsCell(row: Row): Node {
  if (!row.latest) return h('span', { class: 'muted' }, 'Not on your care team');
  if (row.alarms.length === 0) return h('span', null, h('span', { 'aria-hidden': 'true' }, '✓ '), 'None open');
  const sorted = [...row.alarms].sort(byAttention);
  return h(
    'ul',
    { class: 'plain ward-alarms' },
    sorted.slice(0, 3).map((alarm) =>
      h(
        'li',
        { 'data-alarm-id': alarm.id, 'data-state': alarm.state_name, class: alarm.state_name === 'acknowledged' ? 'acknowledged' : null },
        priorityBadge(alarm.priority),
        ' ',
        h('span', { class: 'ward-alarm-message' }, alarmText(alarm).title),
        ' ',
        stateBadge(alarm),
        alarmText(alarm).detail ? h('div', { class: 'alarm-detail' }, alarmText(alarm).detail) : null,
      ),
    ),
    sorted.length > 3 ? h('li', { class: 'muted' }, `and ${sorted.length - 3} more`) : null,
    h('li', null, h('a', { href: '/alarms', class: 'small-link' }, 'Act on these in the alarm inbox')),
  );
}

function news2Cell(row: Row): Node {
  if (!row.news2) return h('span', { class: 'muted' }, '—');
  const news2 = row.news2;
  const band = news2Band(news2);
  return h(
    'span',
    { class: `news2 news2-${band}`, title: `Scored ${formatTime(news2.time)}` },
    h('strong', null, news2.complete ? `${news2.total}` : `≥ ${news2.total}`),
    ` ${band.replace('-', '–')} risk`,
    news2.any_parameter_3 ? h('span', null, h('span', { 'aria-hidden': 'true' }, ' ⚠'), ' a parameter scores 3') : null,
    news2.complete ? null : h('div', { class: 'muted' }, `partial: no ${news2.missing.join(', ').replace(/_/g, ' ')}`),
  );
}

function vitalsCell(row: Row, changed?: string): Node {
  if (!row.latest) return h('span', { class: 'muted' }, 'No clinical access');
  const shown = [...row.latest.values()]
    .filter((observation) => WARD_CODES.includes(observation.loinc))
    .sort((a, b) => codeOrder(a.loinc) - codeOrder(b.loinc));
  if (shown.length === 0) return h('span', { class: 'muted' }, 'No readings yet');
  return h(
    'ul',
    { class: 'vitals-inline' },
    shown.map((observation) => {
      const info = codeInfo(observation.loinc);
      return h(
        'li',
        { class: observation.loinc === changed ? 'flash' : null, 'data-code': observation.loinc },
        h('abbr', { title: info.label }, info.short),
        ' ',
        h('strong', { class: 'value' }, formatValue(observation.loinc, observation.value)),
        ' ',
        displayUnit(observation.unit),
        ' ',
        h('span', { class: 'muted' }, timeAgo(observation.effective)),
      );
    }),
  );
}

function renderDevices(row: Row): void {
  const cell = row.element?.querySelector('.devices-cell');
  if (!cell) return;
  if (!row.devices) {
    replace(cell, h('span', { class: 'muted' }, '—'));
    return;
  }
  if (row.devices.length === 0) {
    replace(cell, h('span', { class: 'muted' }, 'No devices'));
    return;
  }
  replace(
    cell,
    h(
      'ul',
      { class: 'plain' },
      row.devices.map((device) => {
        const stale = minutesSince(device.last_seen) > staleAfterMinutes(device.kind);
        return h(
          'li',
          { class: stale ? 'stale' : null },
          deviceKindLabel(device.kind),
          ': ',
          device.status === 'revoked'
            ? 'revoked'
            : !device.last_seen
              ? h('span', { class: 'stale-text' }, h('span', { 'aria-hidden': 'true' }, '⚠ '), 'no data yet')
              : stale
                ? h('span', { class: 'stale-text' }, h('span', { 'aria-hidden': 'true' }, '⚠ '), `Stale — last data ${since(device.last_seen)}`)
                : timeAgo(device.last_seen),
        );
      }),
    ),
  );
}
