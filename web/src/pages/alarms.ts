// The alarm inbox: open, snoozed and acknowledged alarms of my patients, most urgent
// first, live from /api/v1/alarms/stream. Acknowledge, resolve with a note, snooze for a
// time bounded by the priority. The escalation state of each alarm is shown.

import { api, type Patient } from '../api';
import { alarmText, byAttention, conditionLine, escalationLine, stateBadge } from '../alarmview';
import { append, field, h, notice, replace, select, uid } from '../dom';
import {
  SNOOZE_MINUTES,
  alarmActions,
  inboxAlarms,
  priorityBadge,
  priorityLabel,
  type Alarm,
} from '../features';
import { formatDuration, refreshTimes, timeAgo, timeUntil } from '../format';
import { liveBadge, subscribeAlarms } from '../live';
import type { PageContext } from '../router';
import { currentUser, frame } from '../session';

export async function alarmsPage(root: HTMLElement, context: PageContext): Promise<void> {
  const canAct = currentUser()?.role !== 'patient';
  const badge = liveBadge();
  const summary = h('p', { class: 'lede', 'data-testid': 'alarm-summary' }, 'Loading alarms…');
  const message = h('div', { class: 'action-message' });
  const announcer = h('div', { class: 'visually-hidden', role: 'status', 'aria-live': 'polite' });
  const reminders = h('div', { class: 'snooze-reminders' });
  const list = h('ul', { class: 'alarm-list', 'data-testid': 'alarm-list', 'aria-label': 'Alarms, most urgent first' });
  const empty = h('p', { class: 'empty-inbox', hidden: true }, h('span', { 'aria-hidden': 'true' }, '✓ '), 'No open alarms for your patients.');
  frame(
    root,
    'Alarm inbox',
    h('div', { class: 'page-head' }, h('h1', null, 'Alarm inbox'), badge.element),
    summary,
    message,
    announcer,
    reminders,
    empty,
    list,
  );

  const [initial, patients] = await Promise.all([
    inboxAlarms(context.signal),
    api<Patient[]>('/api/v1/patients', { signal: context.signal }),
  ]);
  const names = new Map(patients.map((patient) => [patient.id, patient.display_name]));
  const alarms = new Map<string, Alarm>(initial.map((alarm) => [alarm.id, alarm]));
  const cards = new Map<string, { element: HTMLLIElement; key: string }>();
  let fresh = new Set<string>();

  const patientName = (alarm: Alarm) => names.get(alarm.patient_id) ?? 'Patient';

  function cardKey(alarm: Alarm): string {
    return JSON.stringify(alarm);
  }

  function render(): void {
    const sorted = [...alarms.values()].sort(byAttention);
    for (const [id, card] of cards) {
      if (!alarms.has(id)) {
        card.element.remove();
        cards.delete(id);
      }
    }
    sorted.forEach((alarm, index) => {
      const key = cardKey(alarm);
      let card = cards.get(alarm.id);
      if (!card || card.key !== key) {
        const element = alarmCard(alarm);
        if (card) {
          keepTyping(card.element, element);
          card.element.replaceWith(element);
        }
        card = { element, key };
        cards.set(alarm.id, card);
      }
      if (fresh.has(alarm.id)) card.element.classList.add('flash');
      if (list.children[index] !== card.element) list.insertBefore(card.element, list.children[index] ?? null);
    });
    fresh = new Set();
    empty.hidden = sorted.length > 0;
    const count = (state: string) => sorted.filter((alarm) => alarm.state_name === state).length;
    summary.textContent = `${count('open')} open, ${count('snoozed')} snoozed, ${count('acknowledged')} acknowledged. Open alarms first, by priority; updates arrive live.`;
    const snoozed = sorted.filter((alarm) => alarm.state.state === 'snoozed');
    replace(
      reminders,
      snoozed.length
        ? h(
            'section',
            { class: 'notice notice-warning reminder', 'aria-labelledby': 'snoozed-title', 'data-testid': 'snooze-reminders' },
            h('span', { class: 'notice-icon', 'aria-hidden': 'true' }, '⏰'),
            h(
              'div',
              null,
              h('h2', { id: 'snoozed-title' }, 'Snoozed — these come back'),
              h(
                'ul',
                { class: 'plain' },
                snoozed.map((alarm) =>
                  h('li', null, priorityBadge(alarm.priority), ' ', h('strong', null, alarmText(alarm).title), ` — ${patientName(alarm)} — returns at `,
                    alarm.state.state === 'snoozed' ? timeUntil(alarm.state.until) : null),
                ),
              ),
            ),
          )
        : null,
    );
  }

  function upsert(alarm: Alarm): void {
    if (alarm.state_name === 'resolved') alarms.delete(alarm.id);
    else alarms.set(alarm.id, alarm);
  }

  async function act(alarm: Alarm, label: string, card: HTMLElement, action: () => Promise<Alarm>): Promise<void> {
    const buttons = [...card.querySelectorAll('button')];
    buttons.forEach((button) => (button.disabled = true));
    try {
      const updated = await action();
      upsert(updated);
      replace(message, notice('success', `${label}: ${alarmText(alarm).title} — ${patientName(alarm)}.`));
      render();
    } catch (error) {
      buttons.forEach((button) => (button.disabled = false));
      replace(message, notice('error', `${label} failed: ${error instanceof Error ? error.message : String(error)}`));
      void resync();
    }
  }

  function alarmCard(alarm: Alarm): HTMLLIElement {
    const titleId = uid('alarm');
    const card = h('li', {
      class: `card alarm alarm-${alarm.priority}`,
      'data-alarm-id': alarm.id,
      'data-state': alarm.state_name,
      'data-priority': alarm.priority,
      'aria-labelledby': titleId,
    });
    const actions = canAct ? alarmActionsFor(alarm, card, titleId) : null;
    append(card, [
      h(
        'div',
        { class: 'alarm-head' },
        priorityBadge(alarm.priority),
        ' ',
        stateBadge(alarm),
        ' ',
        h('strong', { class: 'alarm-message', id: titleId }, alarmText(alarm).title),
        alarm.kind === 'technical' ? h('span', { class: 'tag' }, h('span', { 'aria-hidden': 'true' }, '⚙ '), 'Technical') : null,
      ),
      alarmText(alarm).detail ? h('p', { class: 'alarm-detail' }, alarmText(alarm).detail) : null,
      h(
        'p',
        { class: 'alarm-meta' },
        h('a', { href: `/patients/${encodeURIComponent(alarm.patient_id)}`, class: 'patient-link' }, patientName(alarm)),
        ' · raised ',
        timeAgo(alarm.raised_at),
        ` · ${priorityLabel(alarm.priority)} priority ${alarm.kind} alarm, care plan version ${alarm.care_plan_version}`,
      ),
      escalationLine(alarm),
      conditionLine(alarm),
      actions,
    ]);
    return card;
  }

  function alarmActionsFor(alarm: Alarm, card: HTMLLIElement, titleId: string): HTMLElement {
    const described = { 'aria-describedby': titleId };
    const note = h('input', { name: 'note', required: true, maxlength: 1000, autocomplete: 'off', class: 'note-input', placeholder: 'What was done' });
    const choices = SNOOZE_MINUTES[alarm.priority] ?? [15];
    const minutes = select('minutes', choices.map((value) => [String(value), formatDuration(value * 60)]));
    const max = choices[choices.length - 1];
    const resolveForm = h(
      'form',
      {
        class: 'inline-form',
        'aria-label': 'Resolve',
        novalidate: true,
        onsubmit: (event: Event) => {
          event.preventDefault();
          const text = note.value.trim();
          if (!text) {
            replace(message, notice('error', 'Resolving an alarm needs a note: say what was done.'));
            note.focus();
            return;
          }
          void act(alarm, 'Resolved', card, () => alarmActions.resolve(alarm, text));
        },
      },
      field('Resolution note (required)', note),
      h('button', { type: 'submit', ...described }, 'Resolve'),
    );
    const open = alarm.state_name === 'open' || alarm.state_name === 'snoozed';
    return h(
      'div',
      { class: 'alarm-actions' },
      open
        ? h('button', { type: 'button', ...described, onclick: () => void act(alarm, 'Acknowledged', card, () => alarmActions.acknowledge(alarm)) }, 'Acknowledge')
        : null,
      resolveForm,
      open
        ? h(
            'form',
            {
              class: 'inline-form',
              'aria-label': 'Snooze',
              onsubmit: (event: Event) => {
                event.preventDefault();
                void act(alarm, 'Snoozed', card, () => alarmActions.snooze(alarm, Number(minutes.value)));
              },
            },
            field('Snooze for', minutes, `at most ${formatDuration(max * 60)} (${priorityLabel(alarm.priority).toLowerCase()} priority)`),
            h('button', { type: 'submit', class: 'secondary', ...described }, 'Snooze'),
          )
        : null,
    );
  }

  async function resync(): Promise<void> {
    const latest = await inboxAlarms().catch(() => null);
    if (!latest) return;
    alarms.clear();
    for (const alarm of latest) alarms.set(alarm.id, alarm);
    render();
  }

  render();
  const stop = subscribeAlarms({
    onAlarm(event) {
      const known = alarms.has(event.alarm.id);
      upsert(event.alarm);
      if (!known && alarms.has(event.alarm.id)) {
        fresh.add(event.alarm.id);
        if (!names.has(event.alarm.patient_id)) {
          // A patient who joined my care teams since the page loaded.
          void api<Patient[]>('/api/v1/patients')
            .then((all) => {
              for (const patient of all) names.set(patient.id, patient.display_name);
              for (const card of cards.values()) card.key = '';
              render();
            })
            .catch(() => {});
        }
        announcer.textContent = `New ${priorityLabel(event.alarm.priority).toLowerCase()} priority alarm: ${event.alarm.message} — ${patientName(event.alarm)}`;
      }
      render();
    },
    onResync: () => void resync(),
    onState: badge.set,
  });
  context.onCleanup(stop);
  const timer = window.setInterval(() => {
    refreshTimes(list);
    refreshTimes(reminders);
  }, 15000);
  context.onCleanup(() => window.clearInterval(timer));
}

/** Carries what someone was typing (and their focus) into a re-rendered card. */
function keepTyping(from: HTMLElement, to: HTMLElement): void {
  const before = from.querySelector<HTMLInputElement>('input.note-input');
  const after = to.querySelector<HTMLInputElement>('input.note-input');
  if (before && after) {
    after.value = before.value;
    if (document.activeElement === before) queueMicrotask(() => after.focus());
  }
}
