// Changing one's own password. An account whose password someone else set (generated,
// reset or chosen by an administrator) is sent here first and can do nothing else until
// it has chosen its own.

import { ApiError, post } from '../api';
import { field, h, notice, replace } from '../dom';
import { navigate, safeNext, type PageContext } from '../router';
import { frame, homeFor, loadUser, requireAccount } from '../session';

export function passwordPage(root: HTMLElement, context: PageContext): void {
  const user = requireAccount();
  if (!user) return;
  const required = user.password_change_required;
  const current = h('input', { name: 'current_password', type: 'password', autocomplete: 'current-password', required: true });
  const fresh = h('input', { name: 'new_password', type: 'password', autocomplete: 'new-password', required: true, minlength: '12' });
  const again = h('input', { name: 'confirm_password', type: 'password', autocomplete: 'new-password', required: true });
  const message = h('div', { class: 'form-message' });
  const submit = h('button', { type: 'submit' }, 'Change password');
  const form = h(
    'form',
    { class: 'login card', 'aria-labelledby': 'password-title', novalidate: true },
    h('h1', { id: 'password-title' }, required ? 'Choose your own password' : 'Change your password'),
    required
      ? notice(
          'warning',
          'Your password was set by someone else. Choose one only you know before you go on; your other sessions end.',
        )
      : null,
    field(required ? 'Password you were given' : 'Current password', current),
    field('New password', fresh, 'At least 12 characters; not a common or leaked password, and not your name.'),
    field('New password again', again),
    message,
    submit,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!current.value || !fresh.value) {
      replace(message, notice('error', 'Enter your current and your new password.'));
      (current.value ? fresh : current).focus();
      return;
    }
    if (fresh.value === current.value) {
      replace(message, notice('error', 'The new password must differ from the current one.'));
      fresh.select();
      fresh.focus();
      return;
    }
    if (fresh.value !== again.value) {
      replace(message, notice('error', 'The two new passwords differ.'));
      again.select();
      again.focus();
      return;
    }
    submit.disabled = true;
    replace(message, notice('info', 'Changing…'));
    try {
      await post('/api/v1/me/password', { current_password: current.value, new_password: fresh.value });
      current.value = fresh.value = again.value = '';
      const changed = await loadUser();
      if (changed) navigate(safeNext(context.query.get('next')) ?? homeFor(changed), true);
    } catch (error) {
      const text =
        error instanceof ApiError
          ? error.field === 'current_password'
            ? 'Your current password is not right.'
            : error.message
          : `Could not change the password: ${String(error)}`;
      replace(message, notice('error', text));
      (error instanceof ApiError && error.field === 'current_password' ? current : fresh).focus();
    } finally {
      submit.disabled = false;
    }
  });
  frame(root, 'Password', form);
  current.focus();
}
