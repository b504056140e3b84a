// Changing one's own password, and setting up a second factor. An account whose password someone else set (generated,
// reset or chosen by an administrator) is sent here first and can do nothing else until
// it has chosen its own.

import { ApiError, post } from '../api';
import { qrSvg } from '../qr';
import type { SecondFactorSetup } from '../schema';
import { field, h, isSixDigits, notice, oneTimeCodeInput, replace } from '../dom';
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

/**
 * Setting up a second factor: an authenticator app's one-time codes, asked for at every
 * login once confirmed. An account whose role requires one (administrators) is sent here
 * and can do nothing else until it has one.
 */
export function secondFactorPage(root: HTMLElement, context: PageContext): void {
  const user = requireAccount();
  if (!user) return;
  if (user.password_change_required) {
    navigate(`/account/password?next=${encodeURIComponent(location.pathname + location.search)}`, true);
    return;
  }
  const done = () => navigate(safeNext(context.query.get('next')) ?? homeFor(user), true);
  if (user.second_factor) {
    frame(
      root,
      'Second factor',
      h(
        'section',
        { class: 'login card', 'aria-labelledby': 'second-factor-title' },
        h('h1', { id: 'second-factor-title' }, 'Second factor'),
        notice('success', 'Your account asks for a one-time code from your authenticator app at every login.'),
        h('p', null, 'If you lose the phone or replace it, ask an administrator to remove the second factor; you then set up a new one here.'),
      ),
    );
    return;
  }
  const message = h('div', { class: 'form-message', role: 'status' });
  const start = h('button', { type: 'button' }, 'Set up with an authenticator app');
  const steps = h('div', { class: 'second-factor-steps' });
  const card = h(
    'section',
    { class: 'login card', 'aria-labelledby': 'second-factor-title' },
    h('h1', { id: 'second-factor-title' }, 'Set up a second factor'),
    user.second_factor_setup_required
      ? notice('warning', 'Your role logs in with a one-time code as well as the password. Set it up before you go on.')
      : null,
    h(
      'p',
      null,
      'An authenticator app on your phone (any that supports time-based one-time codes) shows a new six-digit code every 30 seconds. Once this is set up, logging in asks for the code as well as your password.',
    ),
    steps,
    message,
  );
  replace(steps, start);
  start.addEventListener('click', async () => {
    start.disabled = true;
    replace(message);
    try {
      const setup = await post<SecondFactorSetup>('/api/v1/me/second-factor');
      showSetup(setup);
    } catch (error) {
      replace(message, notice('error', error instanceof Error ? error.message : String(error)));
      start.disabled = false;
    }
  });
  function showSetup(setup: SecondFactorSetup): void {
    const code = oneTimeCodeInput();
    const confirm = h('button', { type: 'submit' }, 'Confirm');
    const form = h(
      'form',
      { novalidate: true },
      h('ol', null,
        h('li', null, 'Scan this code with the app:', qrSvg(setup.otpauth_uri, 'QR code for your authenticator app')),
        h('li', null, 'Or, if the app cannot scan, add an account by hand with this key (time-based): ',
          h('code', { class: 'secret-key' }, setup.secret.replace(/(.{4})(?=.)/g, '$1 '))),
        h('li', null, 'Enter the code the app now shows for Wardline:'),
      ),
      field('Code from the app', code),
      confirm,
    );
    replace(steps, form);
    code.focus();
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (!isSixDigits(code.value)) {
        replace(message, notice('error', 'Enter the six digits the app shows.'));
        code.focus();
        return;
      }
      confirm.disabled = true;
      replace(message, notice('info', 'Checking…'));
      try {
        await post('/api/v1/me/second-factor/confirm', { one_time_code: code.value });
        await loadUser();
        done();
      } catch (error) {
        const text =
          error instanceof ApiError && (error.code === 'bad_one_time_code' || error.field === 'one_time_code')
            ? 'That code is not right. Check that the app shows the account just added, wait for the next code and enter it.'
            : error instanceof Error
              ? error.message
              : String(error);
        replace(message, notice('error', text));
        code.select();
        code.focus();
      } finally {
        confirm.disabled = false;
      }
    });
  }
  frame(root, 'Second factor', card);
  start.focus();
}
