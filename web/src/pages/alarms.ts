// The alarm inbox: open alarms of my patients, most urgent first; acknowledge, resolve
// with a note, snooze. Lights up when the alerting endpoints (issue 4) land.

import { api, type Patient } from '../api';
import { field, h, notice, replace, select } from '../dom';
import { alarmActions, openAlarms, priorityBadge, priorityRank, type Alarm } from '../features';
import { timeAgo } from '../format';
import type { PageContext } from '../router';
import { frame } from '../session';

export async function alarmsPage(root: HTMLElement, context: PageContext): Promise<void> {
  const list = h('div', null, notice('info', 'Loading alarms…'));
  const message = h('div');
  frame(root, 'Alarm inbox', h('h1', null, 'Alarm inbox'), message, list);
  const [alarms, patients] = await Promise.all([
    openAlarms(context.signal),
    api<Patient[]>('/api/v1/patients', { signal: context.signal }),
  ]);
  if (alarms === undefined) {
    replace(list, notice('info', 'The alarm inbox arrives with the alerting service; this server has no alarms yet.'));
    return;
  }
  const names = new Map(patients.map((patient) => [patient.id, patient.display_name]));
  const sorted = [...alarms].sort((a, b) => priorityRank(b.priority) - priorityRank(a.priority));
  if (sorted.length === 0) {
    replace(list, h('p', null, h('span', { 'aria-hidden': 'true' }, '✓ '), 'No open alarms.'));
    return;
  }
  const act = async (label: string, action: () => Promise<unknown>) => {
    try {
      await action();
      replace(message, notice('success', label));
      await alarmsPage(root, context);
    } catch (error) {
      replace(message, notice('error', `${label} failed: ${error instanceof Error ? error.message : String(error)}`));
    }
  };
  replace(
    list,
    h(
      'ul',
      { class: 'alarm-list' },
      sorted.map((alarm: Alarm) => {
        const note = h('input', { name: 'note', required: true });
        const minutes = select('minutes', [['15', '15 minutes'], ['30', '30 minutes'], ['60', '1 hour']]);
        return h(
          'li',
          { class: `card alarm alarm-${alarm.priority}`, 'data-alarm-id': alarm.id },
          h('div', { class: 'alarm-head' }, priorityBadge(alarm.priority), h('strong', null, ` ${alarm.title ?? alarm.message ?? 'Alarm'}`)),
          h('p', null, h('a', { href: `/patients/${encodeURIComponent(alarm.patient_id)}` }, names.get(alarm.patient_id) ?? 'Patient'), ' · ', alarm.state, ' · opened ', timeAgo(alarm.opened ?? alarm.created ?? null),
            alarm.escalation_level ? ` · escalated to level ${alarm.escalation_level}` : ''),
          h('div', { class: 'alarm-actions' },
            h('button', { type: 'button', onclick: () => void act('Acknowledged', () => alarmActions.acknowledge(alarm)) }, 'Acknowledge'),
            h('form', { class: 'inline-form', onsubmit: (event: Event) => { event.preventDefault(); if (note.value.trim()) void act('Resolved', () => alarmActions.resolve(alarm, note.value.trim())); } },
              field('Resolution note', note), h('button', { type: 'submit' }, 'Resolve')),
            h('form', { class: 'inline-form', onsubmit: (event: Event) => { event.preventDefault(); void act('Snoozed', () => alarmActions.snooze(alarm, Number(minutes.value))); } },
              field('Snooze for', minutes), h('button', { type: 'submit', class: 'secondary' }, 'Snooze')),
          ),
        );
      }),
    ),
  );
}
