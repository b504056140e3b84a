// Who is logged in, and the page frame around every page.

import { ApiError, api, post, type Me, type User } from './api';
import { h, replace, type Child } from './dom';
import { navigate } from './router';

let me: Me | null = null;

export function currentUser(): Me | null {
  return me;
}

export function setUser(user: Me | null): void {
  me = user;
}

export async function loadUser(): Promise<Me | null> {
  try {
    me = await api<Me>('/api/v1/me');
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) me = null;
    else throw error;
  }
  return me;
}

export function homeFor(user: User): string {
  switch (user.role) {
    case 'patient':
      return '/me';
    case 'admin':
      return '/admin/users';
    case 'specialist':
      return '/shared';
    default:
      return '/ward';
  }
}

/** Sends a logged-out visitor to the login page; returns the user otherwise. */
export function requireAccount(): Me | null {
  if (!me) {
    navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, true);
    return null;
  }
  return me;
}

/**
 * As `requireAccount`, and sends an account that must change its password or set up a
 * second factor to do so, and one without the role to its own home page.
 */
export function requireUser(roles?: User['role'][]): Me | null {
  if (!requireAccount() || !me) return null;
  if (me.password_change_required) {
    navigate(`/account/password?next=${encodeURIComponent(location.pathname + location.search)}`, true);
    return null;
  }
  if (me.second_factor_setup_required) {
    navigate(`/account/second-factor?next=${encodeURIComponent(location.pathname + location.search)}`, true);
    return null;
  }
  if (roles && !roles.includes(me.role)) {
    navigate(homeFor(me), true);
    return null;
  }
  return me;
}

function navLinks(user: User): [string, string][] {
  switch (user.role) {
    case 'patient':
      return [
        ['/me', 'My readings'],
        ['/visits', 'Visits'],
      ];
    case 'specialist':
      return [['/shared', 'Shared with me']];
    case 'admin':
      return [
        ['/admin/users', 'Users'],
        ['/admin/care-teams', 'Care teams'],
        ['/admin/patients', 'Patients'],
        ['/admin/devices', 'Devices'],
        ['/admin/device-templates', 'Device templates'],
        ['/admin/emergency-access', 'Emergency access'],
        ['/admin/audit', 'Audit log'],
        ['/ward', 'Ward'],
      ];
    default:
      return [
        ['/ward', 'Ward'],
        ['/alarms', 'Alarm inbox'],
        ['/visits', 'Visits'],
        ['/rpm-ledger', 'RPM ledger'],
      ];
  }
}

const ROLE_LABEL: Record<User['role'], string> = {
  admin: 'Administrator',
  clinician: 'Clinician',
  nurse: 'Nurse',
  patient: 'Patient',
  specialist: 'Specialist',
};

/** Tabs of this app tell each other of a logout, so that none shows data after it. */
export const SESSION_CHANNEL = 'wardline-session';

async function logout(): Promise<void> {
  try {
    await post('/api/v1/auth/logout');
  } catch {
    // The session may be gone already; the login page follows either way.
  }
  me = null;
  // The server has ended this session's streams already; the other tabs learn it now,
  // not at their next request.
  try {
    const channel = new BroadcastChannel(SESSION_CHANNEL);
    channel.postMessage('logout');
    channel.close();
  } catch {
    // No BroadcastChannel: the other tabs learn it from their ended streams.
  }
  navigate('/login', true);
}

/** Renders the frame (skip link, header, navigation, main) and returns `main`. */
export function frame(root: HTMLElement, title: string, ...children: Child[]): HTMLElement {
  document.title = `${title} · Wardline`;
  const user = me;
  const path = location.pathname;
  const main = h('main', { id: 'main', tabindex: '-1' }, ...children);
  replace(
    root,
    h('a', { class: 'skip-link', href: '#main' }, 'Skip to content'),
    h(
      'header',
      { class: 'top' },
      h('a', { class: 'brand', href: user ? homeFor(user) : '/login' }, h('span', { 'aria-hidden': 'true' }, '⌇ '), 'Wardline'),
      // An account that must change its password or set up a second factor first gets
      // no links to pages it may not open yet.
      user && !user.password_change_required && !user.second_factor_setup_required
        ? h(
            'nav',
            { 'aria-label': 'Main' },
            h(
              'ul',
              null,
              navLinks(user).map(([href, label]) =>
                h(
                  'li',
                  null,
                  h('a', { href, 'aria-current': path === href || path.startsWith(`${href}/`) ? 'page' : null }, label),
                ),
              ),
            ),
          )
        : null,
      user
        ? h(
            'div',
            { class: 'who' },
            h('span', null, user.display_name, ' ', h('span', { class: 'role' }, `(${ROLE_LABEL[user.role]})`)),
            h('a', { href: '/account/password', class: 'account-link' }, 'Password'),
            h('a', { href: '/account/second-factor', class: 'account-link' }, 'Second factor'),
            h('button', { type: 'button', class: 'secondary', onclick: () => void logout() }, 'Log out'),
          )
        : null,
    ),
    main,
  );
  return main;
}
