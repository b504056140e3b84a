import { ApiError, post, type User } from '../api';
import { field, h, notice, replace } from '../dom';
import { navigate, safeNext, type PageContext } from '../router';
import { currentUser, frame, homeFor, setUser } from '../session';

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
      : ended
        ? notice('info', 'Your session has ended. Log in again to go on.')
        : null,
  );
  const submit = h('button', { type: 'submit' }, 'Log in');
  const form = h(
    'form',
    { class: 'login card', 'aria-labelledby': 'login-title', novalidate: true },
    h('h1', { id: 'login-title' }, 'Log in to Wardline'),
    field('Username', username),
    field('Password', password),
    message,
    submit,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!username.value || !password.value) {
      replace(message, notice('error', 'Enter your username and password.'));
      (username.value ? password : username).focus();
      return;
    }
    submit.disabled = true;
    replace(message, notice('info', 'Logging in…'));
    try {
      const response = await post<{ user: User }>('/api/v1/auth/login', {
        username: username.value,
        password: password.value,
      });
      password.value = '';
      setUser(response.user);
      const next = safeNext(context.query.get('next')) ?? homeFor(response.user);
      navigate(
        response.user.password_change_required ? `/account/password?next=${encodeURIComponent(next)}` : next,
        true,
      );
    } catch (error) {
      const text =
        error instanceof ApiError && error.status === 401
          ? 'The username or password is not right.'
          : `Could not log in: ${error instanceof Error ? error.message : String(error)}`;
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
