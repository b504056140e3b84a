// Video visits: the list of one's upcoming visits, one visit's page (details, the care
// team's actions, the note, the orders written in it), and the sections the patient page
// shows (a patient's visits with the form to schedule one, and the treatment orders).
// The room itself is pages/room.ts.

import { ApiError, api } from '../api';
import { field, h, notice, replace, uid } from '../dom';
import { clearFormError, showFormError } from '../forms';
import { formatTime, refreshTimes, timeUntil } from '../format';
import type { PageContext } from '../router';
import type { ContactEmail } from '../schema';
import { patientCareTeams } from '../features';
import { currentUser, frame } from '../session';
import {
  attendeeNames,
  localDate,
  localDateTime,
  participantName,
  roomOpen,
  roomOpensAt,
  roomPath,
  statusBadge,
  statusLabel,
  visitApi,
  visitPagePath,
  visitWhen,
  type TreatmentOrder,
  type Visit,
  type VisitNote,
  type VisitRecord,
} from '../visits';
import { refusedPage } from './errors';

const isTeam = () => ['clinician', 'nurse'].includes(currentUser()?.role ?? '');

// ---------------------------------------------------------------------------------------
// The list of visits

/** "Join" while the room takes people; otherwise when it opens. */
function joinCell(visit: Visit): HTMLElement | string {
  if (visit.status !== 'scheduled') return '';
  const user = currentUser();
  // The room takes the patient and the attendees only; other team members read the visit.
  if (user && user.role !== 'patient' && !visit.attendees.some((attendee) => attendee.user_id === user.id)) {
    return h('span', { class: 'muted' }, 'You do not attend');
  }
  if (roomOpen(visit)) {
    // The room loads as a page of its own (the router leaves this link to the browser).
    return h('a', { href: roomPath(visit.id), class: 'button-link', 'data-testid': 'join-visit' }, 'Join', h('span', { class: 'visually-hidden' }, ` the visit of ${formatTime(visit.start)}`));
  }
  if (Date.parse(visit.start) > Date.now()) return h('span', { class: 'muted' }, 'Room opens ', timeUntil(roomOpensAt(visit)));
  return h('span', { class: 'muted' }, 'Room closed');
}

/** A table of visits, soonest first; `showPatient` for the care team's list of all theirs. */
export function visitsTable(visits: Visit[], options: { showPatient: boolean; caption: string }): HTMLElement {
  return h(
    'div',
    { class: 'table-scroll' },
    h(
      'table',
      { class: 'visits', 'data-testid': 'visits-table' },
      h('caption', { class: 'visually-hidden' }, options.caption),
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          h('th', { scope: 'col' }, 'When'),
          options.showPatient ? h('th', { scope: 'col' }, 'Patient') : null,
          h('th', { scope: 'col' }, 'Reason'),
          h('th', { scope: 'col' }, 'Attending'),
          h('th', { scope: 'col' }, 'Status'),
          h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')),
        ),
      ),
      h(
        'tbody',
        null,
        visits.map((visit) =>
          h(
            'tr',
            { 'data-visit-id': visit.id, 'data-status': visit.status },
            h('th', { scope: 'row' }, h('a', { href: visitPagePath(visit.id) }, visitWhen(visit))),
            options.showPatient ? h('td', null, visit.patient_name) : null,
            h('td', { class: 'visit-reason' }, visit.reason),
            h('td', null, attendeeNames(visit)),
            h('td', null, statusBadge(visit), visit.status_reason ? h('div', { class: 'muted' }, `“${visit.status_reason}”`) : null),
            h('td', { class: 'visit-actions' }, joinCell(visit)),
          ),
        ),
      ),
    ),
  );
}

export async function visitsListPage(root: HTMLElement, context: PageContext): Promise<void> {
  const { signal } = context;
  const user = currentUser();
  const team = isTeam();
  const body = h('div', null, notice('info', 'Loading your visits…'));
  const main = frame(
    root,
    'Visits',
    h('h1', null, team ? 'My visits' : 'My video visits'),
    h(
      'p',
      { class: 'lede' },
      team
        ? 'The video visits you attend that have not ended yet. Schedule one from a patient’s page.'
        : 'Your video visits with your care team. The room opens 15 minutes before the start.',
    ),
    body,
  );
  let visits: Visit[] = [];
  const render = () => {
    if (visits.length === 0) {
      replace(body, h('p', { 'data-testid': 'no-visits' }, 'No upcoming visits.'));
      return;
    }
    replace(body, visitsTable(visits, { showPatient: user?.role !== 'patient', caption: 'Upcoming visits, soonest first' }));
  };
  const load = async (refresh = false) => {
    visits = await visitApi.mine(signal).catch((error) => {
      if (refresh) return visits;
      throw error;
    });
    render();
  };
  await load();
  if (user?.role === 'patient') main.append(reminderSection(signal));
  // The Join link appears when the room opens, without a reload.
  const timer = window.setInterval(() => {
    render();
    refreshTimes(root);
  }, 15_000);
  const reload = window.setInterval(() => void load(true), 120_000);
  context.onCleanup(() => {
    window.clearInterval(timer);
    window.clearInterval(reload);
  });
}

/** Where a patient gets a reminder of each visit, a day before (PUT /api/v1/me/contact-email). */
function reminderSection(signal: AbortSignal): HTMLElement {
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'email', maxlength: 254, id: uid('email') });
  const message = h('div');
  const save = h('button', { type: 'submit' }, 'Save');
  const remove = h('button', { type: 'button', class: 'secondary' }, 'Stop reminders');
  const controls = { email: { control: email, label: 'E-mail address' } };
  const store = async (address: string | null) => {
    clearFormError(message, controls);
    save.disabled = remove.disabled = true;
    try {
      const saved = await api<ContactEmail>('/api/v1/me/contact-email', { method: 'PUT', body: { email: address } });
      email.value = saved.email ?? '';
      replace(message, notice('success', saved.email ? `Reminders go to ${saved.email}.` : 'No more reminders by e-mail.'));
    } catch (error) {
      showFormError(message, error, controls);
    } finally {
      save.disabled = remove.disabled = false;
    }
  };
  remove.addEventListener('click', () => void store(null));
  const section = h(
    'section',
    { class: 'card', 'aria-labelledby': 'reminders-title', 'data-testid': 'visit-reminders' },
    h('h2', { id: 'reminders-title' }, 'Reminders by e-mail'),
    h('p', null, 'Wardline can e-mail you a reminder a day before each visit. The e-mail says when the visit is and how to join; it says nothing about your health.'),
    h(
      'form',
      {
        class: 'inline-form wrap',
        novalidate: true,
        onsubmit: (event: Event) => {
          event.preventDefault();
          if (!email.value.trim()) {
            replace(message, notice('error', 'E-mail address: enter one, or press “Stop reminders”.'));
            email.focus();
            return;
          }
          void store(email.value.trim());
        },
      },
      field('E-mail address', email),
      save,
      remove,
    ),
    message,
  );
  api<ContactEmail>('/api/v1/me/contact-email', { signal })
    .then((current) => (email.value = current.email ?? ''))
    .catch((error) => {
      // A server without reminders has no such route: the section goes.
      if (error instanceof ApiError && error.routeMissing) section.remove();
    });
  return section;
}

// ---------------------------------------------------------------------------------------
// A patient's visits, on the patient page

/** The patient's visits; for the care team, with the form to schedule one. */
export function patientVisitsSection(patientId: string, options: { canSchedule: boolean; self: boolean; signal: AbortSignal }): HTMLElement {
  const { signal } = options;
  const list = h('div', null, notice('info', 'Loading visits…'));
  const message = h('div', { class: 'action-message' });
  const section = h(
    'section',
    { class: 'card', 'aria-labelledby': 'visits-title', 'data-testid': 'patient-visits' },
    h('h2', { id: 'visits-title' }, options.self ? 'My video visits' : 'Video visits'),
    message,
    options.canSchedule ? scheduleForm() : null,
    list,
  );

  async function load(): Promise<void> {
    try {
      const visits = await visitApi.ofPatient(patientId, signal);
      const upcoming = visits.filter((visit) => visit.status === 'scheduled' && Date.parse(visit.start) + visit.duration_minutes * 60_000 > Date.now() - 2 * 3600_000);
      const past = visits.filter((visit) => !upcoming.includes(visit)).reverse().slice(0, 20);
      replace(
        list,
        h('h3', null, 'Upcoming'),
        upcoming.length ? visitsTable(upcoming, { showPatient: false, caption: 'Upcoming visits, soonest first' }) : h('p', { class: 'muted' }, 'None scheduled.'),
        past.length ? [h('h3', null, 'Earlier'), visitsTable(past, { showPatient: false, caption: 'Earlier visits, latest first' })] : null,
      );
    } catch (error) {
      if (!signal.aborted) replace(list, notice('error', `Visits could not be loaded: ${error instanceof Error ? error.message : String(error)}`));
    }
  }

  function scheduleForm(): HTMLElement {
    const headingId = uid('schedule');
    const start = h('input', { type: 'datetime-local', name: 'start', 'aria-required': 'true' });
    // The next quarter hour at least 15 minutes ahead, as a start to change.
    const next = new Date(Math.ceil((Date.now() + 15 * 60_000) / 900_000) * 900_000);
    start.value = localDateTime(next);
    const duration = h('input', { type: 'number', name: 'duration_minutes', min: 5, max: 240, step: 5, value: '20', 'aria-required': 'true', inputmode: 'numeric' });
    const reason = h('textarea', { name: 'reason', rows: 2, maxlength: 500, 'aria-required': 'true' });
    // Colleagues of the patient's care teams who may attend too (the scheduler always does).
    const colleagues = h('fieldset', { class: 'attendees', 'data-testid': 'attendees', hidden: true });
    void patientCareTeams(patientId, signal)
      .then((teams) => {
        const me = currentUser()?.id;
        const seen = new Set<string>();
        const choices = teams
          .flatMap((team) => team.members)
          .filter((member) => member.user_id && member.user_id !== me && !seen.has(member.user_id) && seen.add(member.user_id))
          .map((member) =>
            h(
              'label',
              { class: 'checkbox' },
              h('input', { type: 'checkbox', name: 'attendee', value: member.user_id ?? '' }),
              ` ${member.display_name} (${member.role})`,
            ),
          );
        if (choices.length > 0) {
          replace(colleagues, h('legend', null, 'Also attending (optional)'), choices);
          colleagues.hidden = false;
        }
      })
      .catch(() => {});
    const error = h('div');
    const submit = h('button', { type: 'submit' }, 'Schedule visit');
    const controls = {
      start: { control: start, label: 'Start' },
      duration_minutes: { control: duration, label: 'Duration' },
      reason: { control: reason, label: 'Reason' },
    };
    return h(
      'form',
      {
        class: 'schedule-form',
        'aria-labelledby': headingId,
        novalidate: true,
        'data-testid': 'schedule-visit',
        onsubmit: async (event: Event) => {
          event.preventDefault();
          clearFormError(error, controls);
          const when = start.value ? new Date(start.value) : null;
          if (!when || Number.isNaN(when.getTime())) {
            showFormError(error, new Error('enter a date and a time'), {}, 'Not scheduled');
            start.focus();
            return;
          }
          if (!reason.value.trim()) {
            replace(error, notice('error', 'Say why the visit is held: the patient sees it.'));
            reason.focus();
            return;
          }
          submit.disabled = true;
          try {
            const visit = await visitApi.schedule(patientId, {
              start: when.toISOString(),
              duration_minutes: Number(duration.value),
              reason: reason.value.trim(),
              attendees: [...colleagues.querySelectorAll<HTMLInputElement>('input[name=attendee]:checked')].map((box) => box.value),
            });
            reason.value = '';
            replace(message, notice('success', `Visit scheduled for ${visitWhen(visit)}.`));
            await load();
          } catch (failure) {
            showFormError(error, failure, controls, 'Not scheduled');
          } finally {
            submit.disabled = false;
          }
        },
      },
      h('h3', { id: headingId }, 'Schedule a visit'),
      h(
        'div',
        { class: 'editor-fields' },
        field('Start (your local time)', start),
        field('Duration (minutes)', duration, '5 to 240'),
      ),
      field('Reason (shown to the patient)', reason),
      colleagues,
      h('p', { class: 'hint' }, 'You attend the visit; the patient joins from their own account.'),
      error,
      submit,
    );
  }

  void load();
  return section;
}

// ---------------------------------------------------------------------------------------
// Treatment orders

/** Orders as a list: medication, dose and frequency, dates, instructions, who ordered. */
export function ordersList(orders: TreatmentOrder[], empty: string): HTMLElement {
  if (orders.length === 0) return h('p', { class: 'muted' }, empty);
  return h(
    'ul',
    { class: 'plain orders', 'data-testid': 'orders' },
    orders.map((order) =>
      h(
        'li',
        { class: 'order', 'data-order-id': order.id },
        h('strong', null, order.medication), ` — ${order.dose}, ${order.frequency}`,
        h('div', { class: 'muted' }, `From ${order.start}${order.stop ? ` to ${order.stop}` : ''} · ordered by ${order.ordered_by_name}, ${formatTime(order.created)}`),
        order.instructions ? h('p', { class: 'order-instructions' }, order.instructions) : null,
      ),
    ),
  );
}

/** A clinician's form for a treatment order, in a visit (`visitId`) or not. */
export function orderForm(patientId: string, visitId: string | null, onOrdered: (order: TreatmentOrder) => void): HTMLElement {
  const headingId = uid('order');
  const medication = h('input', { name: 'medication', 'aria-required': 'true', maxlength: 200, autocomplete: 'off' });
  const dose = h('input', { name: 'dose', 'aria-required': 'true', maxlength: 100, autocomplete: 'off' });
  const frequency = h('input', { name: 'frequency', 'aria-required': 'true', maxlength: 100, autocomplete: 'off' });
  const start = h('input', { type: 'date', name: 'start', 'aria-required': 'true', value: localDate(new Date()) });
  const stop = h('input', { type: 'date', name: 'stop' });
  const instructions = h('textarea', { name: 'instructions', rows: 3, maxlength: 2000 });
  const error = h('div');
  const submit = h('button', { type: 'submit' }, 'Write order');
  const controls = {
    medication: { control: medication, label: 'Medication' },
    dose: { control: dose, label: 'Dose' },
    frequency: { control: frequency, label: 'Frequency' },
    start: { control: start, label: 'Start' },
    stop: { control: stop, label: 'Stop' },
    instructions: { control: instructions, label: 'Instructions' },
  };
  const form: HTMLFormElement = h(
    'form',
    {
      class: 'order-form',
      'aria-labelledby': headingId,
      novalidate: true,
      'data-testid': 'order-form',
      onsubmit: async (event: Event) => {
        event.preventDefault();
        clearFormError(error, controls);
        for (const [name, { control, label }] of Object.entries(controls)) {
          if (['stop', 'instructions'].includes(name)) continue;
          if (!control.value.trim()) {
            replace(error, notice('error', `${label}: required.`));
            control.setAttribute('aria-invalid', 'true');
            control.focus();
            return;
          }
        }
        submit.disabled = true;
        try {
          const order = await visitApi.order(patientId, {
            medication: medication.value.trim(),
            dose: dose.value.trim(),
            frequency: frequency.value.trim(),
            start: start.value,
            stop: stop.value || null,
            instructions: instructions.value.trim(),
            visit_id: visitId,
          });
          medication.value = dose.value = frequency.value = stop.value = instructions.value = '';
          replace(error, notice('success', `Ordered: ${order.medication} ${order.dose}, ${order.frequency}.`));
          onOrdered(order);
        } catch (failure) {
          showFormError(error, failure, controls, 'Not ordered');
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('h3', { id: headingId }, 'Write a treatment order'),
    h(
      'div',
      { class: 'editor-fields' },
      field('Medication', medication),
      field('Dose', dose, 'E.g. 500 mg'),
      field('Frequency', frequency, 'E.g. twice a day'),
      field('Start', start),
      field('Stop (optional)', stop),
    ),
    field('Instructions for the patient', instructions, 'In plain words: the patient reads them.'),
    error,
    submit,
  );
  return form;
}

/** The patient's treatment orders; "Your treatment" on the patient's own page. */
export function treatmentSection(patientId: string, options: { self: boolean; canOrder: boolean; signal: AbortSignal }): HTMLElement {
  const body = h('div', null, notice('info', 'Loading treatment orders…'));
  const load = async () => {
    try {
      const orders = await visitApi.orders(patientId, options.signal);
      replace(body, ordersList(orders, options.self ? 'Your care team has not ordered any treatment here yet.' : 'No treatment orders yet.'));
    } catch (error) {
      if (!options.signal.aborted) replace(body, notice('error', `Treatment orders could not be loaded: ${error instanceof Error ? error.message : String(error)}`));
    }
  };
  void load();
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'treatment-title', 'data-testid': 'treatment' },
    h('h2', { id: 'treatment-title' }, options.self ? 'Your treatment' : 'Treatment orders'),
    body,
    options.canOrder ? h('details', { class: 'order-details' }, h('summary', null, 'Write a treatment order'), orderForm(patientId, null, () => void load())) : null,
  );
}

// ---------------------------------------------------------------------------------------
// The note

const NOTE_PARTS: [keyof Pick<VisitNote, 'reason' | 'findings' | 'plan'>, string][] = [
  ['reason', 'Reason for the visit'],
  ['findings', 'Findings'],
  ['plan', 'Plan'],
];

/**
 * A visit's note. The care team writes the draft and signs it; once signed it is
 * read-only, with addenda. The patient reads it once signed, as the visit's summary.
 */
export function noteSection(visit: Visit, note: VisitNote | null | undefined, options: { onChange(note: VisitNote): void }): HTMLElement {
  const team = isTeam();
  const headingId = uid('note');
  const section = h('section', { class: 'card note', 'aria-labelledby': headingId, 'data-testid': 'visit-note', 'data-signed': note?.signed ? 'true' : 'false' });
  const title = team ? 'Visit note' : 'Visit summary';
  if (note?.signed) {
    replace(section, h('h2', { id: headingId }, title), signedNote(visit, note, team, options.onChange));
    return section;
  }
  if (!team) {
    replace(section, h('h2', { id: headingId }, title), h('p', { class: 'muted' }, 'Your clinician has not signed the summary of this visit yet. It appears here once signed.'));
    return section;
  }
  const inputs = NOTE_PARTS.map(([name, label]) => {
    const control = h('textarea', { name, rows: name === 'reason' ? 2 : 5, maxlength: name === 'reason' ? 2000 : 10000 });
    control.value = note?.[name] ?? (name === 'reason' ? visit.reason : '');
    return { name, label, control };
  });
  const controls = Object.fromEntries(inputs.map(({ name, label, control }) => [name, { control, label }]));
  const error = h('div');
  const status = h('p', { class: 'muted', 'data-testid': 'note-status' }, note ? ['Draft saved ', formatTime(note.updated), ` by ${note.author_name}.`] : 'No draft yet.');
  const save = h('button', { type: 'button', class: 'secondary' }, 'Save draft');
  const sign = h('button', { type: 'button' }, 'Sign note');
  const text = () => Object.fromEntries(inputs.map(({ name, control }) => [name, control.value])) as { reason: string; findings: string; plan: string };

  async function saveDraft(): Promise<VisitNote | null> {
    clearFormError(error, controls);
    try {
      const saved = await visitApi.saveNote(visit.id, text());
      replace(status, 'Draft saved ', formatTime(saved.updated), ` by ${saved.author_name}.`);
      return saved;
    } catch (failure) {
      showFormError(error, failure, controls);
      return null;
    }
  }

  save.addEventListener('click', async () => {
    save.disabled = true;
    await saveDraft();
    save.disabled = false;
  });
  sign.addEventListener('click', async () => {
    if (!text().findings.trim() && !text().plan.trim()) {
      replace(error, notice('error', 'Write the findings or the plan before signing.'));
      inputs[1].control.focus();
      return;
    }
    sign.disabled = save.disabled = true;
    try {
      if (!(await saveDraft())) return;
      const signed = await visitApi.signNote(visit.id);
      options.onChange(signed);
    } catch (failure) {
      showFormError(error, failure, controls, 'Not signed');
    } finally {
      sign.disabled = save.disabled = false;
    }
  });

  replace(
    section,
    h('h2', { id: headingId }, title),
    status,
    inputs.map(({ label, control }) => field(label, control)),
    error,
    h('div', { class: 'form-buttons' }, save, sign),
    h('p', { class: 'hint' }, 'Signing makes the note read-only (addenda can follow) and shows it to the patient as the visit’s summary.'),
  );
  return section;
}

function signedNote(visit: Visit, note: VisitNote, team: boolean, onChange: (note: VisitNote) => void): HTMLElement[] {
  const parts: HTMLElement[] = [
    h('p', { class: 'muted', 'data-testid': 'note-signed' }, `Signed by ${note.author_name}, ${formatTime(note.signed)}.`),
    h('dl', { class: 'note-text' }, NOTE_PARTS.map(([name, label]) => [h('dt', null, label), h('dd', { 'data-part': name }, note[name] || '—')])),
  ];
  if (note.addenda.length) {
    parts.push(
      h('h3', null, 'Addenda'),
      h('ol', { class: 'addenda', 'data-testid': 'addenda' }, note.addenda.map((addendum) =>
        h('li', null, h('p', { class: 'addendum-text' }, addendum.text), h('p', { class: 'muted' }, `${addendum.author_name}, ${formatTime(addendum.written)}`)))),
    );
  }
  if (team) {
    const text = h('textarea', { name: 'text', rows: 3, maxlength: 10000, 'aria-required': 'true' });
    const error = h('div');
    const submit = h('button', { type: 'submit' }, 'Add addendum');
    parts.push(
      h(
        'form',
        {
          class: 'addendum-form',
          novalidate: true,
          onsubmit: async (event: Event) => {
            event.preventDefault();
            if (!text.value.trim()) {
              replace(error, notice('error', 'Write the addendum first.'));
              text.focus();
              return;
            }
            submit.disabled = true;
            try {
              onChange(await visitApi.addAddendum(visit.id, text.value));
            } catch (failure) {
              showFormError(error, failure, { text: { control: text, label: 'Addendum' } });
              submit.disabled = false;
            }
          },
        },
        field('Addendum', text, 'Added below the signed note with your name and the time.'),
        error,
        submit,
      ),
    );
  }
  return parts;
}

// ---------------------------------------------------------------------------------------
// One visit's page

export async function visitPage(root: HTMLElement, context: PageContext, visitId: string): Promise<void> {
  const { signal } = context;
  let record: VisitRecord;
  try {
    record = await visitApi.record(visitId, signal);
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) {
      refusedPage(root);
      return;
    }
    throw error;
  }
  const team = isTeam();
  const user = currentUser();
  const canOrder = user?.role === 'clinician';
  const message = h('div', { class: 'action-message', 'data-testid': 'visit-message' });
  const details = h('section', { class: 'card', 'aria-labelledby': 'visit-details-title', 'data-testid': 'visit-details' });
  const actions = h('div');
  const noteHost = h('div');
  const ordersHost = h('section', { class: 'card', 'aria-labelledby': 'visit-orders-title', 'data-testid': 'visit-orders' });
  const joinHost = h('p', { class: 'join' });
  frame(root, 'Visit', h('div', { class: 'page-head' }, h('h1', { 'data-testid': 'visit-title' }, team ? `Visit with ${record.visit.patient_name}` : 'Your video visit')), message, details, actions, noteHost, ordersHost);

  const reload = async () => {
    try {
      record = await visitApi.record(visitId, signal, true);
      render();
    } catch (error) {
      if (!signal.aborted) replace(message, notice('error', `The visit could not be read again: ${error instanceof Error ? error.message : String(error)}`));
    }
  };

  function render(): void {
    const visit = record.visit;
    const presence = record.presence;
    replace(
      details,
      h('h2', { id: 'visit-details-title' }, 'Details'),
      h(
        'dl',
        { class: 'pairs' },
        h('dt', null, 'When'), h('dd', { 'data-testid': 'visit-when' }, visitWhen(visit)),
        h('dt', null, 'Patient'), h('dd', null, team ? h('a', { href: `/patients/${encodeURIComponent(visit.patient_id)}` }, visit.patient_name) : visit.patient_name),
        h('dt', null, 'Attending'), h('dd', null, attendeeNames(visit)),
        h('dt', null, 'Reason'), h('dd', null, visit.reason),
        h('dt', null, 'Status'), h('dd', null, statusBadge(visit), visit.status_reason ? ` — “${visit.status_reason}”` : '', visit.status_changed ? h('span', { class: 'muted' }, ` (${formatTime(visit.status_changed)})`) : ''),
        visit.care_plan_versions.length
          ? [h('dt', null, 'Care plan changes'), h('dd', { 'data-testid': 'visit-care-plan-versions' }, `Made in this visit: version${visit.care_plan_versions.length === 1 ? '' : 's'} ${visit.care_plan_versions.join(', ')}`)]
          : null,
        team && presence.length
          ? [h('dt', null, 'In the room'), h('dd', null, h('ul', { class: 'plain' }, presence.map((span) =>
              h('li', null, `${participantName(visit, span.user_id)}: ${formatTime(span.joined)} – ${span.left ? formatTime(span.left) : 'still there'}`))))]
          : null,
      ),
      visit.status === 'scheduled' ? joinHost : null,
    );
    replace(joinHost, joinCell(visit));
    replace(actions, team && visit.status === 'scheduled' ? teamActions(visit) : null);
    const held = visit.status === 'scheduled' || visit.status === 'completed';
    // A visit that was not held has no note to write (one written before stays readable).
    replace(noteHost, held || record.note ? noteSection(visit, record.note, { onChange: () => void reload() }) : null);
    replace(
      ordersHost,
      h('h2', { id: 'visit-orders-title' }, team ? 'Orders written in this visit' : 'New instructions from this visit'),
      ordersList(record.orders, team ? 'No orders written in this visit.' : 'No new instructions from this visit.'),
      canOrder && held ? h('details', { class: 'order-details' }, h('summary', null, 'Write a treatment order'), orderForm(visit.patient_id, visit.id, () => void reload())) : null,
    );
  }

  function teamActions(visit: Visit): HTMLElement {
    const reschedule = (() => {
      const start = h('input', { type: 'datetime-local', name: 'start', 'aria-required': 'true', value: localDateTime(new Date(visit.start)) });
      const duration = h('input', { type: 'number', name: 'duration_minutes', min: 5, max: 240, step: 5, value: String(visit.duration_minutes), 'aria-required': 'true' });
      const error = h('div');
      const controls = { start: { control: start, label: 'Start' }, duration_minutes: { control: duration, label: 'Duration' } };
      return h(
        'form',
        {
          class: 'inline-form wrap',
          novalidate: true,
          'data-testid': 'reschedule-form',
          onsubmit: async (event: Event) => {
            event.preventDefault();
            const when = new Date(start.value);
            if (!start.value || Number.isNaN(when.getTime())) {
              replace(error, notice('error', 'Start: enter a date and a time.'));
              start.focus();
              return;
            }
            try {
              const moved = await visitApi.reschedule(visit.id, when.toISOString(), Number(duration.value));
              replace(message, notice('success', `Visit moved to ${visitWhen(moved)}.`));
              await reload();
            } catch (failure) {
              showFormError(error, failure, controls, 'Not moved');
            }
          },
        },
        field('New start (your local time)', start),
        field('Duration (minutes)', duration),
        h('button', { type: 'submit', class: 'secondary' }, 'Move visit'),
        error,
      );
    })();
    const cancelReason = h('input', { name: 'reason', maxlength: 500, 'aria-required': 'true', autocomplete: 'off' });
    const cancelError = h('div');
    const cancel = h(
      'form',
      {
        class: 'inline-form wrap',
        novalidate: true,
        'data-testid': 'cancel-form',
        onsubmit: async (event: Event) => {
          event.preventDefault();
          if (!cancelReason.value.trim()) {
            replace(cancelError, notice('error', 'A cancellation says why: the patient is told.'));
            cancelReason.focus();
            return;
          }
          await close('cancelled', cancelReason.value.trim(), cancelError, { reason: { control: cancelReason, label: 'Reason' } });
        },
      },
      field('Reason for cancelling', cancelReason),
      h('button', { type: 'submit', class: 'danger' }, 'Cancel visit'),
      cancelError,
    );
    const closeError = h('div');
    const started = Date.now() >= Date.parse(visit.start);
    async function close(status: 'cancelled' | 'no_show' | 'completed', reason: string | undefined, error: HTMLElement, controls = {}): Promise<void> {
      try {
        const closed = await visitApi.close(visit.id, status, reason);
        replace(message, notice('success', `The visit is now marked ${statusLabel(closed.status).toLowerCase()}.`));
        await reload();
      } catch (failure) {
        showFormError(error, failure, controls, 'Not changed');
      }
    }
    return h(
      'section',
      { class: 'card', 'aria-labelledby': 'visit-actions-title', 'data-testid': 'visit-actions' },
      h('h2', { id: 'visit-actions-title' }, 'Manage the visit'),
      h('h3', null, 'Move'),
      reschedule,
      h('h3', null, 'Close'),
      h(
        'div',
        { class: 'form-buttons' },
        h('button', { type: 'button', onclick: () => void close('completed', undefined, closeError) }, 'Mark completed'),
        h('button', {
          type: 'button', class: 'secondary', disabled: !started,
          'aria-describedby': started ? null : 'no-show-hint',
          onclick: () => void close('no_show', undefined, closeError),
        }, 'Mark no-show'),
      ),
      started ? null : h('p', { class: 'hint', id: 'no-show-hint' }, 'A visit can be marked no-show once its start has passed.'),
      closeError,
      h('h3', null, 'Cancel'),
      cancel,
    );
  }

  render();
  // The Join link appears when the room opens.
  const timer = window.setInterval(() => {
    replace(joinHost, joinCell(record.visit));
    refreshTimes(root);
  }, 15_000);
  context.onCleanup(() => window.clearInterval(timer));
}
