import 'uplot/dist/uPlot.min.css';
import './styles.css';

import { ApiError, PASSWORD_CHANGE_REQUIRED, SECOND_FACTOR_SETUP_REQUIRED, SESSION_ENDED } from './api';
import { h, replace } from './dom';
import { passwordPage, secondFactorPage } from './pages/account';
import { adminPage } from './pages/admin';
import { alarmsPage } from './pages/alarms';
import { errorPage, notFoundPage } from './pages/errors';
import { loginPage } from './pages/login';
import { patientPage } from './pages/patient';
import { ledgerPage } from './pages/ledger';
import { roomPage } from './pages/room';
import { invitationPage, shareLinkPage, sharedWithMePage } from './pages/sharing';
import { visitPage, visitsListPage } from './pages/visits';
import { wardPage } from './pages/ward';
import { errors, fallback, navigate, route, start } from './router';
import { SESSION_CHANNEL, currentUser, homeFor, loadUser, requireUser, setUser } from './session';

route('/login', loginPage);
route('/account/password', passwordPage);
route('/account/second-factor', secondFactorPage);
// A share link's page needs no account: the token is in the fragment.
route('/s', (root) => shareLinkPage(root));
route('/invite', (root) => invitationPage(root));
route('/shared', (root, context) => {
  if (requireUser(['specialist'])) return sharedWithMePage(root, context);
});
route('/', () => {
  const user = requireUser();
  if (user) navigate(homeFor(user), true);
});
route('/ward', (root, context) => {
  if (requireUser(['clinician', 'nurse', 'admin'])) return wardPage(root, context);
});
route('/alarms', (root, context) => {
  if (requireUser(['clinician', 'nurse', 'admin'])) return alarmsPage(root, context);
});
route('/patients/:id', (root, context) => {
  if (requireUser()) return patientPage(root, context, context.params.id, false);
});
route('/me', (root, context) => {
  const user = requireUser(['patient']);
  if (user?.patient_id) return patientPage(root, context, user.patient_id, true);
});
route('/visits', (root, context) => {
  if (requireUser(['patient', 'clinician', 'nurse'])) return visitsListPage(root, context);
});
route('/visits/:id', (root, context) => {
  if (requireUser(['patient', 'clinician', 'nurse'])) return visitPage(root, context, context.params.id);
});
route('/visits/:id/room', (root, context) => {
  if (requireUser(['patient', 'clinician', 'nurse'])) return roomPage(root, context, context.params.id);
});
route('/rpm-ledger', (root, context) => {
  if (requireUser(['clinician', 'nurse'])) return ledgerPage(root, context);
});
route('/admin', () => {
  if (requireUser(['admin'])) navigate('/admin/users', true);
});
route('/admin/:section', (root, context) => {
  if (requireUser(['admin'])) return adminPage(root, context);
});
fallback((root) => {
  if (requireUser()) notFoundPage(root);
});
errors((root, error) => {
  if (error instanceof ApiError && error.status === 401) {
    setUser(null);
    navigate(`/login?next=${encodeURIComponent(location.pathname)}`, true);
    return;
  }
  errorPage(root, error);
});

// The server ended the session (idle timeout, expiry, logout elsewhere, account
// disabled): every page stops and the login page says why.
window.addEventListener(SESSION_ENDED, (event) => {
  if (!currentUser() || location.pathname === '/login') return;
  setUser(null);
  const detail = (event as CustomEvent<string>).detail;
  const reason = detail === 'session_idle' ? 'idle' : detail === 'logout' ? 'logout' : 'ended';
  navigate(`/login?ended=${reason}&next=${encodeURIComponent(location.pathname + location.search)}`, true);
});
// A logout in another tab of this browser ends this one's page at once.
try {
  new BroadcastChannel(SESSION_CHANNEL).addEventListener('message', (event) => {
    if (event.data === 'logout') window.dispatchEvent(new CustomEvent(SESSION_ENDED, { detail: 'logout' }));
  });
} catch {
  // No BroadcastChannel: the ended streams tell this tab instead.
}
window.addEventListener(PASSWORD_CHANGE_REQUIRED, () => {
  if (location.pathname !== '/account/password') navigate('/account/password', true);
});
window.addEventListener(SECOND_FACTOR_SETUP_REQUIRED, () => {
  if (location.pathname !== '/account/second-factor') void loadUser().then(() => navigate('/account/second-factor', true));
});

async function boot(): Promise<void> {
  const root = document.getElementById('app');
  if (!root) return;
  try {
    await loadUser();
  } catch (error) {
    replace(root, h('p', { role: 'alert' }, `Wardline is not reachable: ${String(error)}`));
    return;
  }
  start(root);
}

void boot();
