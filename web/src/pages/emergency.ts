// Emergency ("break-the-glass") access: a clinician or nurse refused a patient outside
// their care teams may open read access for a limited time, with a reason that an
// administrator reviews; the patient page then says it is seen under that access.

import { ApiError, api, patientPath, post } from '../api';
import { field, h, notice, replace } from '../dom';
import { formatTime } from '../format';
import type { EmergencyAccess } from '../schema';

/** The refusal, with the way to open emergency access; `opened` re-renders the page. */
export function emergencyAccessOffer(patientId: string, opened: () => void): HTMLElement {
  const reason = h('textarea', { name: 'reason', rows: '3', required: true, minlength: '10', maxlength: '500' });
  const message = h('div', { class: 'form-message' });
  const submit = h('button', { type: 'submit', class: 'danger' }, 'Open emergency access');
  const form = h(
    'form',
    { class: 'card emergency', 'aria-labelledby': 'emergency-title', novalidate: true },
    h('h2', { id: 'emergency-title' }, 'Emergency access'),
    h(
      'p',
      null,
      'If this patient needs you now and nobody on their care team can help, you can read their record for a limited time. ',
      'Say why: every view is recorded, the patient can see that you looked, and an administrator reviews it.',
    ),
    field('Reason', reason, 'At least 10 characters, e.g. “called to a cardiac arrest on ward 4”.'),
    message,
    submit,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (reason.value.trim().length < 10) {
      replace(message, notice('error', 'Say why in at least 10 characters: a reviewer reads it.'));
      reason.focus();
      return;
    }
    submit.disabled = true;
    try {
      await post<EmergencyAccess>(patientPath(patientId, '/emergency-access'), { reason: reason.value });
      opened();
    } catch (error) {
      replace(message, notice('error', error instanceof ApiError ? error.message : String(error)));
      submit.disabled = false;
    }
  });
  return form;
}

/** The caller's open emergency access to the patient, if any. */
export async function myEmergencyAccess(patientId: string, signal?: AbortSignal): Promise<EmergencyAccess | null> {
  const mine = await api<{ access?: EmergencyAccess | null }>(patientPath(patientId, '/emergency-access'), { signal });
  return mine.access ?? null;
}

/** The banner over a patient page seen under emergency access. */
export function emergencyBanner(access: EmergencyAccess): HTMLElement {
  return notice(
    'warning',
    h('strong', null, 'Emergency access'),
    ` until ${formatTime(access.expires)}: you can read this record, not change it. Every view is recorded and reviewed. Reason given: “${access.reason}”`,
  );
}
