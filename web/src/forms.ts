// How a form says what went wrong: the server's error names the request `field` at
// fault, so the form marks that control, says which one in words, and moves focus to it.

import { ApiError } from './api';
import { notice, replace } from './dom';

type Control = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

/** Shows `error` in `message`; `controls` maps the API's field names to the form's controls. */
export function showFormError(
  message: HTMLElement,
  error: unknown,
  controls: Record<string, { control: Control; label: string }> = {},
  prefix = 'Not saved',
): void {
  for (const { control } of Object.values(controls)) control.removeAttribute('aria-invalid');
  const text = error instanceof Error ? error.message : String(error);
  const known = error instanceof ApiError && error.field ? controls[error.field] : undefined;
  if (known) {
    known.control.setAttribute('aria-invalid', 'true');
    replace(message, notice('error', `${prefix}: ${known.label}: ${text}`));
    known.control.focus();
    return;
  }
  const field = error instanceof ApiError && error.field ? `${error.field.replace(/_/g, ' ')}: ` : '';
  replace(message, notice('error', `${prefix}: ${field}${text}`));
}

/** Clears the marks `showFormError` left. */
export function clearFormError(message: HTMLElement, controls: Record<string, { control: Control }> = {}): void {
  for (const { control } of Object.values(controls)) control.removeAttribute('aria-invalid');
  replace(message);
}
