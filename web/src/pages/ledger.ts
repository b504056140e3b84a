// The remote-monitoring ledger of the caller's patients: for each, the current 30-day
// device period and calendar month, the codes Wardline's records support so far, and
// what they are still short of. A report of the records, not a billing decision.

import { h, notice, replace } from '../dom';
import { formatTime } from '../format';
import type { PageContext } from '../router';
import { currentUser, frame } from '../session';
import { visitApi, type DevicePeriod, type ManagementMonth, type PatientLedger } from '../visits';

type Codes = DevicePeriod['codes'];

/** "99454, 99458 ×2", or "none yet". */
function codeList(codes: Codes): string {
  return codes.length ? codes.map((code) => (code.units > 1 ? `${code.code} ×${code.units}` : code.code)).join(', ') : 'none yet';
}

const longDate = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' });
const monthName = new Intl.DateTimeFormat(undefined, { month: 'long', year: 'numeric', timeZone: 'UTC' });
/** A date (YYYY-MM-DD, the practice's calendar) as people read it. */
const day = (date: string) => longDate.format(new Date(`${date}T00:00:00Z`));

function periodCell(period: DevicePeriod | undefined): HTMLElement {
  if (!period) return h('td', { class: 'muted' }, 'Not started');
  return h(
    'td',
    { 'data-testid': 'ledger-period' },
    h('div', null, `${day(period.first_day)} – ${day(period.last_day)}`, period.complete ? ' (complete)' : ''),
    h('div', null, h('strong', { 'data-testid': 'device-days' }, String(period.device_days)), ` device day${period.device_days === 1 ? '' : 's'}`),
    h('div', null, 'Codes: ', h('span', { 'data-testid': 'period-codes' }, codeList(period.codes))),
    // The ledger names the practitioner by account id only.
    period.billing_practitioner
      ? h('div', { class: 'muted' }, 'Most time in the period: ', period.billing_practitioner === currentUser()?.id ? 'you' : 'another care team member')
      : null,
  );
}

function monthCell(month: ManagementMonth | undefined): HTMLElement {
  if (!month) return h('td', { class: 'muted' }, 'Not started');
  return h(
    'td',
    { 'data-testid': 'ledger-month' },
    h('div', null, monthName.format(new Date(`${month.month}T00:00:00Z`)), month.complete ? ' (complete)' : ''),
    h('div', null, h('strong', { 'data-testid': 'month-minutes' }, String(month.minutes)), ' min · ', h('span', { 'data-testid': 'month-contacts' }, String(month.interactive_contacts)), ` interactive contact${month.interactive_contacts === 1 ? '' : 's'}`),
    h('div', null, 'Codes: ', h('span', { 'data-testid': 'month-codes' }, codeList(month.codes))),
  );
}

function shortCell(period: DevicePeriod | undefined, month: ManagementMonth | undefined): HTMLElement {
  const lines = [period?.shortfall?.message, month?.shortfall?.message].filter((line): line is string => Boolean(line));
  return h(
    'td',
    { 'data-testid': 'ledger-short' },
    lines.length ? h('ul', { class: 'plain' }, lines.map((line) => h('li', null, line))) : h('span', null, h('span', { 'aria-hidden': 'true' }, '✓ '), 'Nothing'),
  );
}

function ledgerRow(ledger: PatientLedger): HTMLElement {
  const link = h('a', { href: `/patients/${encodeURIComponent(ledger.patient_id)}` }, ledger.patient_name);
  if (!ledger.ledger) {
    return h('tr', { 'data-patient-id': ledger.patient_id }, h('th', { scope: 'row' }, link), h('td', { colspan: 3, class: 'muted' }, 'No device assigned yet: nothing to count.'));
  }
  const period = ledger.ledger.periods.at(-1);
  const month = ledger.ledger.months.at(-1);
  return h(
    'tr',
    { 'data-patient-id': ledger.patient_id },
    h('th', { scope: 'row' }, link, ledger.episode_start ? h('div', { class: 'muted' }, `Monitored since ${formatTime(ledger.episode_start)}`) : null),
    periodCell(period),
    monthCell(month),
    shortCell(period, month),
  );
}

export async function ledgerPage(root: HTMLElement, context: PageContext): Promise<void> {
  const body = h('div', null, notice('info', 'Loading the ledger…'));
  frame(
    root,
    'Remote-monitoring ledger',
    h('h1', null, 'Remote-monitoring ledger'),
    h(
      'p',
      { class: 'lede' },
      'For each patient of your care teams: the current 30-day device period and calendar month, the remote-monitoring codes Wardline’s records support so far, and what they are still short of.',
    ),
    notice('info', 'This reports what the records support. Whether and what to bill stays a decision for people, who check it against the patient’s chart and the payer’s rules.'),
    h('p', null, h('a', { href: visitApi.ledgerCsv, download: 'rpm-ledger.csv', 'data-testid': 'ledger-csv' }, 'Download as CSV'), h('span', { class: 'muted' }, ' (every period and month, one line each)')),
    body,
  );
  const ledgers = await visitApi.ledgers(context.signal);
  if (ledgers.length === 0) {
    replace(body, h('p', null, 'No patients in your care teams.'));
    return;
  }
  const zones = [...new Set(ledgers.map((ledger) => ledger.time_zone))];
  const rules = [...new Set(ledgers.map((ledger) => ledger.ledger?.rules).filter(Boolean))];
  replace(
    body,
    h('p', { class: 'muted' }, `Days and months in the practice’s time zone (${zones.join(', ')})${rules.length ? `; rules: ${rules.join(', ')}` : ''}.`),
    h(
      'div',
      { class: 'table-scroll' },
      h(
        'table',
        { class: 'ledger', 'data-testid': 'ledger-table' },
        h('caption', { class: 'visually-hidden' }, 'Remote-monitoring ledger by patient'),
        h('thead', null, h('tr', null, ['Patient', 'Device period (30 days)', 'This month', 'Short of'].map((label) => h('th', { scope: 'col' }, label)))),
        h('tbody', null, ledgers.map(ledgerRow)),
      ),
    ),
  );
}
