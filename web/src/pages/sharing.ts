// Sharing with a specialist: the patient's own shares (make one, see every one, revoke
// any), a specialist's list of what patients shared with them, and a specialist's view
// of one patient, which shows only the shared categories and ends the moment the share
// does.

import { ApiError, api, patientPath, post, type Observation, type Patient } from '../api';
import { describeRule } from '../careplan';
import { cgmReport } from '../charts/cgm';
import { trendChart } from '../charts/trend';
import { codeInfo, codeOrder, displayUnit, formatValue } from '../codes';
import { field, h, notice, replace } from '../dom';
import { formatTime, timeAgo } from '../format';
import type { PageContext } from '../router';
import type { CreatedInvitation, CreatedShare, Share, ShareCategory, SharedRecord } from '../schema';
import { currentUser, frame, homeFor } from '../session';
import { subscribe, liveBadge } from '../live';
import { carePlanSection } from './careplan';
import { refusedPage } from './errors';
import { alarmHistory, rhythmSection } from './patient';

const CATEGORY_LABEL: Record<ShareCategory, string> = {
  glucose: 'Glucose and the CGM report',
  ecg: 'ECG and rhythm events',
  vital_signs: 'Vital signs and NEWS2',
  alarms: 'Alarms',
  care_plan: 'Care plan',
};

const categoriesText = (categories: ShareCategory[]) => categories.map((category) => CATEGORY_LABEL[category].toLowerCase()).join(', ');

/** The patient's own shares, on their page. */
export function patientSharesSection(signal: AbortSignal): HTMLElement {
  const list = h('div', null, notice('info', 'Loading your shares…'));
  const message = h('div', { class: 'form-message', role: 'status' });
  const grantee = h('input', { name: 'grantee_username', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', maxlength: '64' });
  const boxes = (Object.keys(CATEGORY_LABEL) as ShareCategory[]).map((category) => {
    const box = h('input', { type: 'checkbox', name: 'categories', value: category });
    return { category, box, label: h('label', { class: 'checkbox' }, box, ' ', CATEGORY_LABEL[category]) };
  });
  const days = h('input', { name: 'data_last_days', type: 'number', min: '1', max: '3650', value: '30' });
  const expires = h('input', { name: 'expires_in_days', type: 'number', min: '1', max: '365', value: '30' });
  const note = h('input', { name: 'message', maxlength: '500' });
  const asLink = h('input', { type: 'checkbox', name: 'link' });
  const once = h('input', { type: 'checkbox', name: 'single_use' });
  const onceLabel = h('label', { class: 'checkbox' }, once, ' It opens once');
  onceLabel.hidden = true;
  asLink.addEventListener('change', () => {
    grantee.disabled = asLink.checked;
    onceLabel.hidden = !asLink.checked;
  });
  const submit = h('button', { type: 'submit' }, 'Share');
  const form = h(
    'form',
    { class: 'share-form', 'aria-label': 'Share with a specialist', novalidate: true },
    field('Specialist’s user name', grantee, 'Ask the specialist or your care team for it.'),
    h('label', { class: 'checkbox' }, asLink, ' Instead, a link with a passcode, for someone without an account'),
    onceLabel,
    h('fieldset', null, h('legend', null, 'What they may see'), boxes.map((entry) => entry.label)),
    field('Days of data (the last …, and new data while the share lasts)', days),
    field('Days until the share ends', expires),
    field('A note for them (optional)', note),
    message,
    submit,
  );
  const refresh = async () => {
    const shares = await api<Share[]>('/api/v1/me/shares', { signal });
    if (shares.length === 0) {
      replace(list, h('p', null, 'You have not shared your data with anyone outside your care team.'));
      return;
    }
    const now = Date.now();
    replace(
      list,
      h('ul', { class: 'plain shares', 'data-testid': 'my-shares' }, shares.map((share) => {
        const ended = share.revoked ? `${share.accepted ? 'revoked' : 'declined'} ${formatTime(share.revoked)}` : Date.parse(share.expires) <= now ? `ended ${formatTime(share.expires)}` : share.link?.disabled ? 'disabled after too many wrong passcodes' : null;
        const waiting = !ended && !share.accepted;
        return h(
          'li',
          { 'data-share': share.id },
          h('strong', null, share.grantee_name ?? 'A link with a passcode'),
          ` — ${categoriesText(share.categories)}; data from ${formatTime(share.data_from)}; `,
          ended ? h('span', { class: 'muted' }, ended) : waiting ? 'proposed by your care team, waiting for you ' : `until ${formatTime(share.expires)} `,
          waiting
            ? h('button', {
                type: 'button',
                class: 'small',
                'aria-label': `Accept the share with ${share.grantee_name ?? 'a specialist'}`,
                onclick: async () => {
                  try {
                    await post(`/api/v1/me/shares/${encodeURIComponent(share.id)}/accept`);
                    await refresh();
                    replace(message, notice('success', `${share.grantee_name ?? 'The specialist'} can now see what was proposed.`));
                  } catch (error) {
                    replace(message, notice('error', error instanceof Error ? error.message : String(error)));
                  }
                },
              }, 'Accept')
            : null,
          ended
            ? null
            : h('button', {
                type: 'button',
                class: 'danger small',
                'aria-label': `${waiting ? 'Decline' : 'Revoke'} the share with ${share.grantee_name ?? 'a link'}`,
                onclick: async () => {
                  try {
                    await post(`/api/v1/me/shares/${encodeURIComponent(share.id)}/revoke`);
                    await refresh();
                    replace(message, notice('success', `The share with ${share.grantee_name ?? 'the link'} has ended.`));
                  } catch (error) {
                    replace(message, notice('error', error instanceof Error ? error.message : String(error)));
                  }
                },
              }, waiting ? 'Decline' : 'Revoke'),
        );
      })),
    );
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const categories = boxes.filter((entry) => entry.box.checked).map((entry) => entry.category);
    if ((!asLink.checked && !grantee.value) || categories.length === 0) {
      replace(message, notice('error', 'Enter the specialist’s user name and choose what they may see.'));
      return;
    }
    submit.disabled = true;
    try {
      const created = await post<CreatedShare>('/api/v1/me/shares', {
        grantee_username: asLink.checked ? undefined : grantee.value.trim(),
        link: asLink.checked ? { single_use: once.checked } : undefined,
        categories,
        data_last_days: Number(days.value),
        expires_in_days: Number(expires.value),
        message: note.value.trim() || undefined,
      });
      grantee.value = '';
      note.value = '';
      await refresh();
      if (created.link_token && created.passcode) {
        const address = `${location.origin}/s#${created.link_token}`;
        replace(
          message,
          h('div', { class: 'shown-once', role: 'status', 'data-testid': 'share-link' },
            h('h3', null, 'Your link — shown only now'),
            h('p', null, 'Give the link and the passcode separately (for example the link by e-mail and the passcode by phone). Five wrong passcodes disable the link.'),
            h('dl', null,
              h('dt', null, 'Link'), h('dd', null, h('code', null, address)),
              h('dt', null, 'Passcode'), h('dd', null, h('code', null, created.passcode)))),
        );
      } else {
        replace(message, notice('success', `Shared with ${created.share.grantee_name} until ${formatTime(created.share.expires)}.`));
      }
    } catch (error) {
      replace(message, notice('error', error instanceof Error ? error.message : String(error)));
    } finally {
      submit.disabled = false;
    }
  });
  void refresh().catch((error) => replace(list, notice('error', String(error))));
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'sharing-title', 'data-testid': 'sharing' },
    h('h2', { id: 'sharing-title' }, 'Sharing with a specialist'),
    h('p', null, 'Let a specialist outside your care team see part of your data, for a while. They see only what you choose; you can end it at any time, and every look is shown below.'),
    list,
    form,
    inviteForm(),
  );
}

/** A specialist's start page: the patients who shared with them, and what. */
export async function sharedWithMePage(root: HTMLElement, context: PageContext): Promise<void> {
  const [shares, patients] = await Promise.all([
    api<Share[]>('/api/v1/me/shared-with-me', { signal: context.signal }),
    api<Patient[]>('/api/v1/patients', { signal: context.signal }),
  ]);
  const names = new Map(patients.map((patient) => [patient.id, patient.display_name]));
  frame(
    root,
    'Shared with me',
    h('h1', null, 'Shared with me'),
    shares.length === 0
      ? h('p', null, 'No patient shares data with you at the moment.')
      : h('ul', { class: 'plain shares', 'data-testid': 'shared-with-me' }, shares.map((share) =>
          h('li', null,
            h('a', { href: `/patients/${share.patient_id}` }, names.get(share.patient_id) ?? 'A patient'),
            ` — ${categoriesText(share.categories)}, until ${formatTime(share.expires)}`,
            share.message ? h('span', { class: 'muted' }, ` · “${share.message}”`) : null))),
  );
}

/** A specialist's view of one patient: only what the patient shared. */
export async function sharedPatientPage(root: HTMLElement, context: PageContext, patientId: string): Promise<void> {
  const { signal } = context;
  const shares = (await api<Share[]>('/api/v1/me/shared-with-me', { signal })).filter((share) => share.patient_id === patientId);
  if (shares.length === 0) {
    refusedPage(root);
    return;
  }
  const patient = await api<Patient>(patientPath(patientId), { signal });
  const categories = new Set(shares.flatMap((share) => share.categories));
  const latest = await api<Observation[]>(patientPath(patientId, '/observations/latest'), { signal });
  const values = new Map(latest.map((observation) => [observation.loinc, observation]));
  const tiles = h('ul', { class: 'tiles', 'aria-label': 'Latest shared values', 'data-testid': 'vitals-tiles' });
  const renderTiles = () => {
    const shown = [...values.values()].sort((a, b) => codeOrder(a.loinc) - codeOrder(b.loinc));
    replace(
      tiles,
      shown.length === 0
        ? h('li', { class: 'muted' }, 'No shared readings in the shared period.')
        : shown.map((observation) =>
            h('li', { class: 'tile', 'data-code': observation.loinc },
              h('span', { class: 'tile-label' }, codeInfo(observation.loinc).label),
              h('span', { class: 'tile-value' }, h('span', { class: 'value', 'data-testid': `value-${observation.loinc}` }, formatValue(observation.loinc, observation.value)), ' ', h('span', { class: 'unit' }, displayUnit(observation.unit))),
              h('span', { class: 'tile-time' }, 'measured ', timeAgo(observation.effective)))),
    );
  };
  renderTiles();
  const codes = [...values.keys()].sort((a, b) => codeOrder(a) - codeOrder(b));
  const trend = codes.length ? trendChart(patientId, codes[0], codes) : null;
  if (trend) context.onCleanup(() => trend.destroy());
  const cgm = categories.has('glucose') ? cgmReport(patientId, signal) : null;
  if (cgm) context.onCleanup(() => cgm.destroy());
  const alarms = categories.has('alarms') ? alarmHistory(patientId, 'specialist', signal) : null;
  const until = shares.map((share) => Date.parse(share.expires)).reduce((a, b) => Math.max(a, b));
  const badge = liveBadge();
  const main = frame(
    root,
    patient.display_name,
    h('div', { class: 'page-head' }, h('h1', { 'data-testid': 'patient-name' }, patient.display_name), badge.element),
    notice(
      'info',
      `Shared with you by the patient until ${formatTime(new Date(until).toISOString())}: ${categoriesText([...categories])}. You see nothing else, and every look is shown to the patient.`,
    ),
    h('section', { class: 'card', 'aria-labelledby': 'vitals-title' }, h('h2', { id: 'vitals-title' }, 'Latest shared values'), tiles),
    trend?.element,
    categories.has('ecg') ? rhythmSection(patientId, signal) : null,
    cgm?.element,
    alarms?.element,
    categories.has('care_plan') ? carePlanSection(patientId, { editable: false, self: false, signal }) : null,
  );
  // New readings arrive on the patient's stream, cut by the server to what is shared. The
  // server ends the stream the moment the share does (revoked, expired, the account gone);
  // the page then asks whether it may still read the patient, and stops if not.
  let alarmTimer = 0;
  let stopped = false;
  const stop = subscribe(patientId, {
    onObservation(observation) {
      const shown = values.get(observation.loinc);
      if (!shown || Date.parse(shown.effective) <= Date.parse(observation.effective)) values.set(observation.loinc, observation);
      renderTiles();
      // An alarm follows from a reading, if at all: its list is re-read after a burst.
      if (alarms) {
        window.clearTimeout(alarmTimer);
        alarmTimer = window.setTimeout(() => void alarms.reload(), 1000);
      }
    },
    async onResync() {
      const again = await api<Observation[]>(patientPath(patientId, '/observations/latest'), { signal }).catch(() => null);
      if (again) again.forEach((observation) => values.set(observation.loinc, observation));
      renderTiles();
      void alarms?.reload();
    },
    onState(state) {
      badge.set(state);
      if (state === 'reconnecting') void checkAccess();
    },
    onEnded: () => void checkAccess(),
  });
  async function checkAccess(): Promise<void> {
    try {
      await api<Patient>(patientPath(patientId));
    } catch (error) {
      if (!stopped && error instanceof ApiError && error.status === 403) {
        stopped = true;
        stop();
        const refused = refusedPage(root);
        refused.append(notice('info', 'The patient’s share with you has ended.'));
      }
    }
  }
  context.onCleanup(() => {
    stop();
    window.clearTimeout(alarmTimer);
  });
  main.focus();
}

/**
 * A share link, opened by someone without an account: the token is in the address's
 * fragment (after `#`), which browsers never send to a server, so it reaches no log; the
 * passcode, given separately, is typed here.
 */
export function shareLinkPage(root: HTMLElement): void {
  const token = location.hash.slice(1);
  const passcode = h('input', { name: 'passcode', autocomplete: 'off', autocapitalize: 'characters', spellcheck: 'false', maxlength: '100' });
  const message = h('div', { class: 'form-message', role: 'status' });
  const submit = h('button', { type: 'submit' }, 'Open');
  const result = h('div');
  const form = h(
    'form',
    { class: 'login card', 'aria-labelledby': 'link-title', novalidate: true },
    h('h1', { id: 'link-title' }, 'Data shared with you'),
    h('p', null, 'A patient shared part of their Wardline record with you. Enter the passcode they gave you separately.'),
    field('Passcode', passcode),
    message,
    submit,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!token) {
      replace(message, notice('error', 'This address holds no link: open the whole link you were given.'));
      return;
    }
    submit.disabled = true;
    try {
      const record = await post<SharedRecord>('/api/v1/share-links/open', { token, passcode: passcode.value.trim() });
      passcode.value = '';
      form.hidden = true;
      replace(result, sharedRecordView(record));
    } catch (error) {
      const text = error instanceof ApiError && (error.code === 'bad_passcode' || error.code === 'share_link_closed' || error.status === 404)
        ? error.status === 404 ? 'This link is not known: check that you opened the whole link.' : error.message
        : `The link could not be opened: ${error instanceof Error ? error.message : String(error)}`;
      replace(message, notice('error', text));
    } finally {
      submit.disabled = false;
    }
  });
  frame(root, 'Shared data', form, result);
  passcode.focus();
}

/** What a link opened, read-only, with a JSON download of exactly that. */
function sharedRecordView(record: SharedRecord): HTMLElement {
  const byCode = new Map<string, Observation[]>();
  for (const observation of record.observations) {
    byCode.set(observation.loinc, [...(byCode.get(observation.loinc) ?? []), observation]);
  }
  const download = h('button', { type: 'button', class: 'secondary' }, 'Download as JSON');
  download.addEventListener('click', () => {
    const url = URL.createObjectURL(new Blob([JSON.stringify(record, null, 2)], { type: 'application/json' }));
    const link = h('a', { href: url, download: 'wardline-shared-data.json' });
    link.click();
    window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
  });
  return h(
    'section',
    { class: 'card shared-record', 'data-testid': 'shared-record' },
    h('h1', null, `Shared by ${record.patient_name}`),
    h('p', null, `${categoriesText(record.categories)}; measured ${formatTime(record.data_from)} to ${formatTime(record.data_to)}. The link ends ${formatTime(record.expires)}.`),
    record.message ? h('p', null, `“${record.message}”`) : null,
    download,
    [...byCode.entries()]
      .sort(([a], [b]) => codeOrder(a) - codeOrder(b))
      .map(([loinc, observations]) =>
        h('section', { 'data-code': loinc },
          h('h2', null, `${codeInfo(loinc).label} (${observations.length})`),
          h('div', { class: 'table-scroll' }, h('table', null,
            h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Measured'), h('th', { scope: 'col' }, 'Value'))),
            h('tbody', null, [...observations].reverse().slice(0, 200).map((observation) =>
              h('tr', null, h('td', null, formatTime(observation.effective)), h('td', null, `${formatValue(loinc, observation.value)} ${displayUnit(observation.unit)}`)))))),
          observations.length > 200 ? h('p', { class: 'muted' }, `The newest 200 of ${observations.length}; the download has all.`) : null)),
    record.rhythm_events.length
      ? h('section', null, h('h2', null, 'Rhythm events'), h('ul', { class: 'plain' }, record.rhythm_events.map((event) => h('li', null, `${event.kind.replace(/_/g, ' ')} — ${formatTime(event.onset)} to ${formatTime(event.end)}`))))
      : null,
    record.news2.length
      ? h('section', null, h('h2', null, 'NEWS2'), h('ul', { class: 'plain' }, [...record.news2].reverse().slice(0, 50).map((score) => h('li', null, `${score.total} at ${formatTime(score.time)}`))))
      : null,
    record.alarms.length
      ? h('section', { 'data-testid': 'shared-alarms' }, h('h2', null, `Alarms (${record.alarms.length})`), h('ul', { class: 'plain' }, record.alarms.map((alarm) =>
        h('li', null, `${formatTime(alarm.raised_at)} — ${alarm.priority} priority: ${alarm.message} (${alarm.state_name}${alarm.occurrences > 1 ? `, ${alarm.occurrences} times` : ''})`))))
      : null,
    record.care_plan
      ? h('section', { 'data-testid': 'shared-care-plan' },
        h('h2', null, `Care plan (version ${record.care_plan.version}, from ${formatTime(record.care_plan.effective)})`),
        h('ul', { class: 'plain' }, record.care_plan.plan.rules.map((rule) => h('li', null, describeRule(rule)))))
      : null,
    record.observations.length === 0 && record.rhythm_events.length === 0 && record.news2.length === 0 && record.alarms.length === 0
      ? h('p', null, 'Nothing was measured in the shared period.')
      : null,
  );
}

/** The care team proposes a share with a specialist (a referral); the patient accepts it. */
export function referralSection(patientId: string, patientName: string): HTMLElement {
  const grantee = h('input', { name: 'grantee_username', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', maxlength: '64' });
  const boxes = (Object.keys(CATEGORY_LABEL) as ShareCategory[]).map((category) => {
    const box = h('input', { type: 'checkbox', name: 'categories', value: category });
    return { category, box, label: h('label', { class: 'checkbox' }, box, ' ', CATEGORY_LABEL[category]) };
  });
  const days = h('input', { name: 'data_last_days', type: 'number', min: '1', max: '3650', value: '30' });
  const note = h('input', { name: 'message', maxlength: '500' });
  const message = h('div', { class: 'form-message', role: 'status' });
  const submit = h('button', { type: 'submit' }, 'Propose');
  const form = h(
    'form',
    { class: 'card', 'aria-label': 'Refer to a specialist', novalidate: true },
    h('h2', null, 'Refer to a specialist'),
    h('p', null, `Propose that ${patientName} shares part of their data with a specialist outside the care team. Nothing is shared until ${patientName} accepts it.`),
    field('Specialist’s user name', grantee),
    h('fieldset', null, h('legend', null, 'What they would see'), boxes.map((entry) => entry.label)),
    field('Days of data', days),
    field('Why (shown to the patient and the specialist)', note),
    message,
    submit,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const categories = boxes.filter((entry) => entry.box.checked).map((entry) => entry.category);
    if (!grantee.value || categories.length === 0) {
      replace(message, notice('error', 'Enter the specialist’s user name and choose what they would see.'));
      return;
    }
    submit.disabled = true;
    try {
      const proposed = await post<Share>(patientPath(patientId, '/referrals'), {
        grantee_username: grantee.value.trim(),
        categories,
        data_last_days: Number(days.value),
        message: note.value.trim() || undefined,
      });
      replace(message, notice('success', `Proposed to ${patientName}: ${proposed.grantee_name} sees nothing until they accept it.`));
      grantee.value = '';
    } catch (error) {
      replace(message, notice('error', error instanceof Error ? error.message : String(error)));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/** Asks for a specialist's e-mail address and sends them an invitation to Wardline. */
export function inviteForm(): HTMLElement {
  const email = h('input', { name: 'email', type: 'email', autocomplete: 'off', maxlength: '254' });
  const name = h('input', { name: 'display_name', maxlength: '200' });
  const message = h('div', { class: 'form-message', role: 'status' });
  const submit = h('button', { type: 'submit', class: 'secondary' }, 'Invite');
  const form = h(
    'form',
    { 'aria-label': 'Invite a specialist', novalidate: true },
    h('h3', null, 'Not on Wardline yet? Invite them'),
    field('Their e-mail address', email),
    field('Their name', name),
    message,
    submit,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const created = await post<CreatedInvitation>('/api/v1/specialist-invitations', { email: email.value.trim(), display_name: name.value.trim() });
      const link = `${location.origin}/invite#${created.link_token}`;
      replace(
        message,
        created.emailed
          ? notice('success', `Invitation sent to ${created.invitation.email}. Once they have an account, share with them by their user name.`)
          : h('div', { class: 'shown-once', role: 'status' },
              h('p', null, `Send this link to ${created.invitation.email} yourself (it works once, for 7 days):`),
              h('code', null, link)),
      );
      email.value = '';
      name.value = '';
    } catch (error) {
      replace(message, notice('error', error instanceof Error ? error.message : String(error)));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/** The invited specialist makes their account: the token is in the link's fragment. */
// The invitation's token, kept for this tab while its holder logs in to link an account
// they have (the login page's return address cannot carry the fragment).
const INVITATION_KEY = 'wardline.invitation';

export function invitationPage(root: HTMLElement): void {
  const fromLink = location.hash.slice(1);
  if (fromLink) sessionStorage.setItem(INVITATION_KEY, fromLink);
  const token = fromLink || sessionStorage.getItem(INVITATION_KEY) || '';
  const username = h('input', { name: 'username', autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false', maxlength: '64' });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'new-password', minlength: '12' });
  const message = h('div', { class: 'form-message', role: 'status' });
  const submit = h('button', { type: 'submit' }, 'Make my account');
  const form = h(
    'form',
    { class: 'login card', 'aria-labelledby': 'invite-title', novalidate: true },
    h('h1', { id: 'invite-title' }, 'Your invitation to Wardline'),
    h('p', null, 'Choose a user name and a password. You will see only what a patient chooses to share with you.'),
    field('User name', username, '3 to 64 letters, digits, . _ - @'),
    field('Password', password, 'At least 12 characters; not a common or leaked password, and not your name.'),
    message,
    submit,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      await post('/api/v1/specialist-invitations/accept', { token, username: username.value.trim(), password: password.value });
      password.value = '';
      sessionStorage.removeItem(INVITATION_KEY);
      replace(message, notice('success', 'Your account is ready. '), h('a', { href: '/login' }, 'Log in'));
    } catch (error) {
      replace(message, notice('error', error instanceof Error ? error.message : String(error)));
    } finally {
      submit.disabled = false;
    }
  });
  frame(root, 'Invitation', form, existingAccount(token));
  username.focus();
}

/** For a specialist who has an account already: take the invitation up with it. */
function existingAccount(token: string): HTMLElement {
  const user = currentUser();
  const message = h('div', { class: 'form-message', role: 'status' });
  const section = h(
    'section',
    { class: 'login card', 'aria-labelledby': 'invite-existing-title' },
    h('h2', { id: 'invite-existing-title' }, 'Already have a Wardline account?'),
  );
  if (!user) {
    section.append(
      h('p', null, 'A specialist invited before by another patient keeps one account. '),
      h('a', { href: `/login?next=${encodeURIComponent('/invite')}` }, 'Log in to add this invitation to it'),
    );
    return section;
  }
  const link = h('button', { type: 'button' }, `Add this invitation to my account (${user.username})`);
  link.addEventListener('click', async () => {
    link.disabled = true;
    try {
      await post('/api/v1/me/specialist-invitations/accept', { token });
      sessionStorage.removeItem(INVITATION_KEY);
      replace(message, notice('success', 'The invitation is on your account. '), h('a', { href: homeFor(user) }, 'Go on'));
    } catch (error) {
      replace(message, notice('error', error instanceof Error ? error.message : String(error)));
      link.disabled = false;
    }
  });
  section.append(h('p', null, `You are logged in as ${user.display_name}.`), link, message);
  return section;
}
