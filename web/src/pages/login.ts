import { ApiError, post } from '../api';
import { field, h, isSixDigits, notice, oneTimeCodeInput, replace } from '../dom';
import { navigate, safeNext, type PageContext } from '../router';
import { currentUser, frame, homeFor, loadUser } from '../session';

export function loginPage(root: HTMLElement, context: PageContext): void {
  const user = currentUser();
  if (user) {
    navigate(safeNext(context.query.get('next')) ?? homeFor(user), true);
    return;
  }
  const username = h('input', { name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const ended = context.query.get('ended');
  const message = h(
    'div',
    { class: 'form-message' },
    ended === 'idle'
      ? notice('info', 'You were logged out because the session was not used for a while. Log in again to go on.')
      : ended === 'logout'
        ? notice('info', 'You logged out in another tab or window. Log in again to go on.')
      : ended
        ? notice('info', 'Your session has ended. Log in again to go on.')
        : null,
  );
  // Asked for once the server says the account has a second factor.
  const code = oneTimeCodeInput();
  const codeField = field('One-time code', code, 'The six digits your authenticator app shows for Wardline.');
  codeField.hidden = true;
  const submit = h('button', { type: 'submit' }, 'Log in');
  const form = h(
    'form',
    { class: 'login card', 'aria-labelledby': 'login-title', novalidate: true },
    h('h1', { id: 'login-title' }, 'Log in to Wardline'),
    field('Username', username),
    field('Password', password),
    codeField,
    message,
    submit,
  );
  const askForCode = (text: string) => {
    codeField.hidden = false;
    replace(message, notice('info', text));
    code.select();
    code.focus();
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!username.value || !password.value) {
      replace(message, notice('error', 'Enter your username and password.'));
      (username.value ? password : username).focus();
      return;
    }
    if (!codeField.hidden && !isSixDigits(code.value)) {
      askForCode('Enter the six digits your authenticator app shows.');
      return;
    }
    submit.disabled = true;
    replace(message, notice('info', 'Logging in…'));
    try {
      await post('/api/v1/auth/login', {
        username: username.value,
        password: password.value,
        one_time_code: codeField.hidden ? undefined : code.value,
      });
      password.value = '';
      code.value = '';
      const user = await loadUser();
      if (!user) throw new Error('the new session was not found');
      const next = safeNext(context.query.get('next')) ?? homeFor(user);
      navigate(
        user.password_change_required
          ? `/account/password?next=${encodeURIComponent(next)}`
          : user.second_factor_setup_required
            ? `/account/second-factor?next=${encodeURIComponent(next)}`
            : next,
        true,
      );
    } catch (error) {
      if (error instanceof ApiError && error.code === 'second_factor_required') {
        askForCode('Your account has a second factor: enter the code your authenticator app shows now.');
        return;
      }
      if (error instanceof ApiError && (error.code === 'bad_one_time_code' || error.field === 'one_time_code')) {
        askForCode(
          error.code === 'bad_one_time_code'
            ? 'That code is not right, or was used already. Wait for the next one and enter it.'
            : 'Enter the six digits your authenticator app shows.',
        );
        return;
      }
      const text =
        error instanceof ApiError && error.status === 401
          ? 'The username or password is not right.'
          : `Could not log in: ${error instanceof Error ? error.message : String(error)}`;
      codeField.hidden = true;
      code.value = '';
      replace(message, notice('error', text));
      password.select();
      password.focus();
    } finally {
      submit.disabled = false;
    }
  });
  frame(root, 'Log in', form);
  username.focus();
}
