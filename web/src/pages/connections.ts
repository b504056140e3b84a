// What connects a patient's record to the outside: the diabetes apps that upload to it
// (Nightscout sites: a URL and an API secret for xDrip+, AndroidAPS, Loop or Trio), CGM
// exports imported into it (Dexcom Clarity, LibreView), and the record taken out of it as
// a file (CSV or NDJSON).

import { api, patientPath, post } from '../api';
import { field, h, notice, replace, select } from '../dom';
import { formatTime } from '../format';
import type { EnabledNightscoutSite, ImportSummary, NightscoutSite } from '../schema';

/** The patient's Nightscout sites: connect an app, see the sites, end one. */
export function nightscoutSection(patientId: string, self: boolean, signal: AbortSignal): HTMLElement {
  const list = h('div', null, notice('info', 'Loading…'));
  const shown = h('div', { role: 'status' });
  const connect = h('button', { type: 'button', 'data-testid': 'nightscout-connect' }, 'Connect a diabetes app');
  connect.addEventListener('click', async () => {
    connect.disabled = true;
    try {
      const site = await post<EnabledNightscoutSite>(patientPath(patientId, '/nightscout-sites'), {}, signal);
      replace(
        shown,
        notice(
          'success',
          h('p', null, 'In the app (xDrip+, AndroidAPS, Loop, Trio), enter this Nightscout URL and API secret. The secret is shown only now: copy it before you leave this page.'),
          h('dl', { class: 'pairs' },
            h('dt', null, 'Nightscout URL'), h('dd', null, h('code', { 'data-testid': 'nightscout-url' }, site.url)),
            h('dt', null, 'API secret'), h('dd', null, h('code', { 'data-testid': 'nightscout-secret' }, site.api_secret)),
          ),
        ),
      );
      await load();
    } catch (error) {
      replace(shown, notice('error', `Could not connect an app: ${String(error)}`));
    } finally {
      connect.disabled = false;
    }
  });

  async function load(): Promise<void> {
    const sites = await api<NightscoutSite[]>(patientPath(patientId, '/nightscout-sites'), { signal }).catch((error: unknown) => {
      replace(list, notice('error', `Could not load the connected apps: ${String(error)}`));
      return null;
    });
    if (!sites) return;
    if (sites.length === 0) {
      replace(list, h('p', { class: 'muted' }, 'No app is connected.'));
      return;
    }
    replace(
      list,
      h('ul', { class: 'plain', 'data-testid': 'nightscout-sites' },
        sites.map((site) => {
          const end = h('button', { type: 'button', class: 'secondary' }, 'Disconnect');
          end.addEventListener('click', async () => {
            end.disabled = true;
            try {
              await post(patientPath(patientId, `/nightscout-sites/${site.site}/revoke`), {}, signal);
              await load();
            } catch (error) {
              end.disabled = false;
              replace(shown, notice('error', `Could not disconnect: ${String(error)}`));
            }
          });
          return h('li', null,
            h('code', null, site.url), ' — connected ', formatTime(site.created), ' ',
            site.revoked ? h('strong', null, 'disconnected') : end,
          );
        }),
      ),
    );
  }
  void load();
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'nightscout-title', 'data-testid': 'nightscout' },
    h('h2', { id: 'nightscout-title' }, self ? 'My diabetes apps' : 'Diabetes apps'),
    h('p', { class: 'muted' }, 'Apps that upload to a Nightscout site upload here instead; their glucose is part of this record.'),
    list,
    connect,
    shown,
  );
}

/** Links that download the record's readings. */
export function exportSection(patientId: string, self: boolean): HTMLElement {
  const link = (format: 'csv' | 'ndjson', label: string) =>
    h('a', { href: patientPath(patientId, `/export?format=${format}`), download: '', 'data-testid': `export-${format}` }, label);
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'export-title' },
    h('h2', { id: 'export-title' }, self ? 'Download my readings' : 'Download readings'),
    h('p', null, link('csv', 'All readings as CSV (a spreadsheet)'), ' · ', link('ndjson', 'as NDJSON (for a program)')),
  );
}

/** Imports a Dexcom Clarity or LibreView export, with its progress and what it did. */
export function importSection(patientId: string, signal: AbortSignal): HTMLElement {
  const source = select('source', [['clarity', 'Dexcom Clarity (CSV)'], ['libreview', 'LibreView (CSV)']]);
  const zone = h('input', { name: 'time_zone', value: Intl.DateTimeFormat().resolvedOptions().timeZone, maxlength: '64', autocomplete: 'off' });
  const file = h('input', { type: 'file', name: 'file', accept: '.csv,text/csv' });
  const progress = h('progress', { max: '100', value: '0', 'aria-label': 'Upload progress' });
  progress.hidden = true;
  const result = h('div', { role: 'status', 'data-testid': 'import-result' });
  const submit = h('button', { type: 'submit' }, 'Import');
  const form = h(
    'form',
    { 'aria-label': 'Import a CGM export', novalidate: true },
    field('Export', source),
    field('Time zone of its clock times', zone, 'The patient’s, as an IANA name such as Europe/London.'),
    field('File', file),
    submit,
    progress,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const chosen = file.files?.[0];
    if (!chosen) {
      replace(result, notice('error', 'Choose the export file first.'));
      return;
    }
    submit.disabled = true;
    progress.hidden = false;
    progress.value = 0;
    replace(result);
    // XMLHttpRequest, not fetch: it reports how much of a large file has gone up.
    const request = new XMLHttpRequest();
    const query = new URLSearchParams({ source: source.value, time_zone: zone.value.trim() });
    request.open('POST', patientPath(patientId, `/imports?${query}`));
    request.setRequestHeader('Content-Type', 'text/csv');
    request.setRequestHeader('X-Wardline-Request', '1');
    request.responseType = 'json';
    request.upload.addEventListener('progress', (progressEvent) => {
      if (progressEvent.lengthComputable) progress.value = Math.round((100 * progressEvent.loaded) / progressEvent.total);
    });
    const done = () => {
      submit.disabled = false;
      progress.hidden = true;
    };
    request.addEventListener('load', () => {
      done();
      const body = request.response as (ImportSummary & { error?: { message?: string } }) | null;
      if (request.status !== 200 || !body) {
        replace(result, notice('error', `The import was refused: ${body?.error?.message ?? request.statusText}`));
        return;
      }
      replace(result, summaryView(body));
    });
    request.addEventListener('error', () => {
      done();
      replace(result, notice('error', 'The upload failed; nothing was imported that you were told of. Try again: readings stored before are not stored twice.'));
    });
    signal.addEventListener('abort', () => request.abort(), { once: true });
    request.send(chosen);
  });
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'import-title', 'data-testid': 'cgm-import' },
    h('h2', { id: 'import-title' }, 'Import a CGM export'),
    form,
    result,
  );
}

function summaryView(summary: ImportSummary): HTMLElement {
  const range = summary.first && summary.last ? ` from ${formatTime(summary.first)} to ${formatTime(summary.last)}` : '';
  return notice(
    summary.refused > 0 ? 'warning' : 'success',
    h('p', null, `Imported ${summary.imported} readings${range}; ${summary.duplicates} were stored before; ${summary.other_rows} other rows (alerts, insulin, food) skipped.`),
    summary.refused > 0
      ? h('div', null,
        h('p', null, `${summary.refused} rows refused:`),
        h('ul', null, summary.refused_rows.slice(0, 20).map((row) => h('li', null, `line ${row.line}, ${row.field}: ${row.reason}`))),
      )
      : null,
  );
}

type NightscoutDocument = Record<string, unknown>;

const number = (value: unknown): number | null => {
  const parsed = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : NaN;
  return Number.isFinite(parsed) ? parsed : null;
};

const text = (value: unknown): string => (typeof value === 'string' ? value : '');

/** What one treatment says, in words: insulin, carbohydrate, basal, its note. */
function treatmentLine(treatment: NightscoutDocument): string {
  const parts: string[] = [];
  const insulin = number(treatment.insulin);
  if (insulin !== null && insulin > 0) parts.push(`${insulin} U insulin`);
  const carbs = number(treatment.carbs);
  if (carbs !== null && carbs > 0) parts.push(`${carbs} g carbohydrate`);
  const rate = number(treatment.absolute) ?? number(treatment.rate);
  const duration = number(treatment.duration);
  if (text(treatment.eventType).includes('Basal') && rate !== null) {
    parts.push(`basal ${rate} U/h${duration !== null ? ` for ${duration} min` : ''}`);
  }
  const note = text(treatment.notes) || text(treatment.reason);
  if (note) parts.push(note.length > 120 ? `${note.slice(0, 117)}…` : note);
  return parts.join(', ');
}

/** The treatments and pump state the patient's diabetes apps uploaded. */
export function diabetesAppDataSection(patientId: string, signal: AbortSignal): HTMLElement {
  const body = h('div', null, notice('info', 'Loading…'));
  const section = h(
    'section',
    { class: 'card', 'aria-labelledby': 'app-data-title', 'data-testid': 'app-treatments', hidden: true },
    h('h2', { id: 'app-data-title' }, 'Treatments from the diabetes apps'),
    body,
  );
  void Promise.all([
    api<NightscoutDocument[]>(patientPath(patientId, '/nightscout/treatments?count=20'), { signal }),
    api<NightscoutDocument[]>(patientPath(patientId, '/nightscout/devicestatus?count=1'), { signal }),
  ])
    .then(([treatments, statuses]) => {
      // Most patients run no such app: the card shows only once one has uploaded.
      section.hidden = treatments.length === 0 && statuses.length === 0;
      const status = statuses[0];
      const pump = (status?.pump ?? null) as { battery?: { percent?: unknown }; reservoir?: unknown } | null;
      const pumpLine = pump
        ? [
            number(pump.battery?.percent) !== null ? `pump battery ${number(pump.battery?.percent)} %` : '',
            number(pump.reservoir) !== null ? `reservoir ${number(pump.reservoir)} U` : '',
          ].filter(Boolean).join(', ')
        : '';
      replace(
        body,
        status
          ? h('p', null, `Latest from ${text(status.device) || 'the app'} `, formatTime(text(status.created_at)), pumpLine ? `: ${pumpLine}` : '')
          : null,
        h('ul', { class: 'plain' },
          treatments.map((treatment) =>
            h('li', null, formatTime(text(treatment.created_at)), ' — ', h('strong', null, text(treatment.eventType)), ' ', treatmentLine(treatment)),
          ),
        ),
      );
    })
    .catch((error: unknown) => replace(body, notice('error', `Could not load the apps' treatments: ${String(error)}`)));
  return section;
}
