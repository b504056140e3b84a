// What connects a patient's record to the outside: the diabetes apps that upload to it
// (Nightscout sites: a URL and an API secret for xDrip+, AndroidAPS, Loop or Trio), and
// the record taken out of it as a file (CSV or NDJSON).

import { api, patientPath, post } from '../api';
import { h, notice, replace } from '../dom';
import { formatTime } from '../format';
import type { EnabledNightscoutSite, NightscoutSite } from '../schema';

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
