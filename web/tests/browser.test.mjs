// Browser tests: the real server, the real app, Debian's Chromium or Firefox ESR driven by
// playwright-core. Run with `npm test` (Chromium) or `npm run test:firefox`.
// WARDLINE_BIN: the wardline binary, default ../target/debug/wardline; CHROMIUM and
// FIREFOX: the browsers, default /usr/bin/chromium and /usr/bin/firefox-esr.
//
// TLS: the server makes its own CA. Chromium is told to accept certificates whose chain
// holds that CA's public key (--ignore-certificate-errors-spki-list with the CA's SPKI
// hash). Firefox has no such switch, so its contexts accept the loopback server's
// certificate as an exception. Both are for tests on loopback only, never for a browser
// that people use.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { chromium, firefox } from 'playwright-core';
import { ok, startServer, syntheticEcg, totpCode } from './server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const browserName = process.env.WARDLINE_BROWSER ?? 'chromium';
if (!['chromium', 'firefox'].includes(browserName)) throw new Error(`WARDLINE_BROWSER: chromium or firefox, not ${browserName}`);
// The committed screenshots come from Chromium; other browsers' go to a temporary folder.
const screenshots = process.env.WARDLINE_SCREENSHOTS
  ?? (browserName === 'chromium' ? path.resolve(here, '../../docs/screenshots') : path.join(tmpdir(), `wardline-screenshots-${browserName}`));
mkdirSync(screenshots, { recursive: true });

const PASSWORD = 'correct horse battery staple';
const ADMIN_PASSWORD = 'quiet harbour lamps at dawn';
const DAY = 86_400_000;
const HR = '8867-4';
const CGM = '99504-3';

let server;
let browser;
let admin;
let grey; // the clinician's API token
let greyId;
let ada; // patient in the clinician's care
let abel; // another patient in the clinician's care, with a higher NEWS2 and no alarm
let bob; // patient in another team's care
let devices = {};
let ecgTimer;
let ecgSeq = 0;
let readingSeq = 1_000_000;
const consoleErrors = [];
const PLAYWRIGHT_SCREENSHOT_STYLE = /blocked an inline style .*'sha256-YjaKGiklmzC6wjXA513HAMmzus8VE61XCOT\+SmwNZWA='/;
/** Every path each page requested, in order. */
const requestPaths = new WeakMap();

async function login(username, password) {
  const body = await ok(server, 'POST', '/api/v1/auth/login', { body: { username, password } });
  return body.token;
}

/** The TOTP time step `ahead` 30-second steps from now. */
const totpStep = (ahead = 0) => Math.floor(Date.now() / 30_000) + ahead;

/** Second factors set up here: secret and the last step whose code was used, by account. */
const secondFactors = new Map();

/** Sets up a second factor for a session's account through the API; returns its secret. */
async function setUpSecondFactor(username, token) {
  const setup = await ok(server, 'POST', '/api/v1/me/second-factor', { token });
  const step = totpStep();
  await ok(server, 'POST', '/api/v1/me/second-factor/confirm', { token, body: { one_time_code: totpCode(setup.secret, step) } });
  secondFactors.set(username, { secret: setup.secret, last: step });
  return setup.secret;
}

/**
 * A code of the account's second factor not used before (each is good once): of the
 * current step or the next, waiting for the clock when both are used.
 */
async function nextCode(username) {
  const factor = secondFactors.get(username);
  for (;;) {
    const step = Math.max(factor.last + 1, totpStep());
    if (step <= totpStep(1)) {
      factor.last = step;
      return totpCode(factor.secret, step);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

let serials = 0;
async function enrol(kind, patientId, from) {
  const enrolled = await ok(server, 'POST', '/api/v1/devices', { token: admin, body: { kind, model: `Test ${kind}`, serial: `SN-${kind}-${++serials}` } });
  await ok(server, 'POST', `/api/v1/devices/${enrolled.device.id}/assignments`, { token: admin, body: { patient_id: patientId, from: from.toISOString() } });
  return { id: enrolled.device.id, secret: enrolled.secret };
}

async function send(device, message) {
  return ok(server, 'POST', `/api/v1/devices/${device.id}/readings`, { token: device.secret, body: { v: 1, ...message } });
}

async function reading(device, code, value, unit, time = new Date()) {
  return send(device, { seq: readingSeq++, code, value, unit, time: time.toISOString() });
}

let ecgNext = Date.now() - 10_000;
function sendEcgChunk() {
  // One second of signal per chunk, on a continuous timeline that keeps up with the clock.
  const seconds = 1;
  const start = new Date(ecgNext);
  ecgNext += seconds * 1000;
  const samples = syntheticEcg(start.getTime() / 1000, 360 * seconds);
  return send(devices.ecg, { waveform: { seq: ecgSeq++, signal: 'ecg-lead-ii', rate_hz: 360, start: start.toISOString(), gain: 200, baseline: 1024, samples } });
}

async function newPage(options = {}) {
  const context = await browser.newContext({
    viewport: { width: 1180, height: 820 }, deviceScaleFactor: 1, locale: 'en-GB', timezoneId: 'UTC',
    ignoreHTTPSErrors: browserName === 'firefox',
    ...options,
  });
  const page = await context.newPage();
  const paths = [];
  requestPaths.set(page, paths);
  page.on('request', (request) => paths.push(new URL(request.url()).pathname));
  page.on('pageerror', (error) => {
    // Playwright's screenshots insert `<style>body {}</style>` to settle animations; the
    // app's CSP blocks it, and Firefox reports that. The hash is of exactly that text, so
    // any other blocked style still fails the test.
    if (PLAYWRIGHT_SCREENSHOT_STYLE.test(error.message)) return;
    consoleErrors.push(`pageerror: ${error.message}`);
  });
  page.on('console', (message) => {
    // Refused reads (401/403) are expected in the access tests, and 404s where there is
    // nothing yet (no NEWS2 scored); Chromium logs them all.
    if (message.type() === 'error' && !/status of 40[134]/.test(message.text())) consoleErrors.push(message.text());
  });
  return page;
}

/**
 * Saves a screenshot under `name`. The caret is left as it is: hiding it makes Playwright
 * inject a style element, which the app's CSP (rightly) blocks in Firefox.
 */
function snap(target, name, options = {}) {
  return target.screenshot({ path: path.join(screenshots, name), caret: 'initial', ...options });
}

async function uiLogin(page, username, password) {
  await page.goto(`${server.url}/login`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  if (secondFactors.has(username)) {
    // The password is right; the page asks for the authenticator's code.
    await page.getByText('Your account has a second factor').waitFor();
    await page.getByLabel('One-time code').fill(await nextCode(username));
    await page.getByRole('button', { name: 'Log in' }).click();
  }
}

before(async () => {
  server = await startServer();
  // The first administrator's one-time password must be changed before anything else.
  admin = await login('admin', server.adminPassword);
  await ok(server, 'POST', '/api/v1/me/password', {
    token: admin,
    body: { current_password: server.adminPassword, new_password: ADMIN_PASSWORD },
  });
  server.adminPassword = ADMIN_PASSWORD;
  // Administrators log in with a second factor, and do nothing else before it is set up.
  await setUpSecondFactor('admin', admin);
  ada = await ok(server, 'POST', '/api/v1/patients', { token: admin, body: { display_name: 'Ada Lovelace', mrn: 'MRN-1815', birth_date: '1952-12-10' } });
  bob = await ok(server, 'POST', '/api/v1/patients', { token: admin, body: { display_name: 'Bob Brown', mrn: 'MRN-2001' } });
  abel = await ok(server, 'POST', '/api/v1/patients', { token: admin, body: { display_name: 'Abel Tasman', mrn: 'MRN-1603', birth_date: '1949-03-02' } });
  const ward = await ok(server, 'POST', '/api/v1/care-teams', { token: admin, body: { name: 'Cardiology ward' } });
  const other = await ok(server, 'POST', '/api/v1/care-teams', { token: admin, body: { name: 'Respiratory ward' } });
  const greyUser = await ok(server, 'POST', '/api/v1/users', { token: admin, body: { username: 'dr.grey', display_name: 'Dr Meredith Grey', role: 'clinician', password: PASSWORD, password_change_required: false } });
  await ok(server, 'POST', '/api/v1/users', { token: admin, body: { username: 'ada', display_name: 'Ada Lovelace', role: 'patient', patient_id: ada.id, password: PASSWORD, password_change_required: false } });
  await ok(server, 'POST', `/api/v1/care-teams/${ward.id}/members`, { token: admin, body: { user_id: greyUser.user.id } });
  greyId = greyUser.user.id;
  await ok(server, 'POST', `/api/v1/care-teams/${ward.id}/patients`, { token: admin, body: { patient_id: ada.id } });
  await ok(server, 'POST', `/api/v1/care-teams/${ward.id}/patients`, { token: admin, body: { patient_id: abel.id } });
  await ok(server, 'POST', `/api/v1/care-teams/${other.id}/patients`, { token: admin, body: { patient_id: bob.id } });
  const now0 = Date.now();
  const since = new Date(now0 - 31 * DAY);
  devices = {
    wearable: await enrol('wearable', ada.id, since),
    oximeter: await enrol('pulse_oximeter', ada.id, since),
    cuff: await enrol('blood_pressure_cuff', ada.id, since),
    ecg: await enrol('ecg', ada.id, since),
    thermometer: await enrol('thermometer', bob.id, since),
    cgm: await enrol('cgm', ada.id, since),
    adaThermometer: await enrol('thermometer', ada.id, since),
    abelOximeter: await enrol('pulse_oximeter', abel.id, since),
    abelThermometer: await enrol('thermometer', abel.id, since),
    // Never sends anything: the ward must say so plainly.
    abelCuff: await enrol('blood_pressure_cuff', abel.id, since),
  };
  // 14 days of 5-minute CGM readings with a daily rhythm (meals) and some variation.
  const cgmCount = 14 * 288;
  for (let first = 0; first < cgmCount; first += 1000) {
    const readings = [];
    for (let i = first; i < Math.min(cgmCount, first + 1000); i++) {
      const time = new Date(now0 - (cgmCount - i) * 300_000);
      const hours = time.getUTCHours() + time.getUTCMinutes() / 60;
      const meal = (at) => 70 * Math.exp(-(((hours - at - 1) / 1.1) ** 2));
      const value = Math.round(115 + meal(7.5) + meal(12.5) + meal(18.5) - (hours < 5 ? 25 : 0) + 25 * Math.sin(i / 23) + ((i * 37) % 17) - 8);
      readings.push({ seq: i, code: '99504-3', value: Math.max(45, value), unit: 'mg/dL', time: time.toISOString() });
    }
    await send(devices.cgm, { readings });
  }
  // Abel: a month of SpO2 every 45 s (57,000 readings), too many to draw one by one, with
  // one dip to 84 % that a summary must not average away.
  const spo2Count = 57_000;
  const spo2Now = Date.now();
  for (let first = 0; first < spo2Count; first += 1000) {
    const readings = [];
    for (let i = first; i < Math.min(spo2Count, first + 1000); i++) {
      const time = new Date(spo2Now - 120_000 - (spo2Count - i) * 45_000);
      readings.push({ seq: i, code: '59408-5', value: i === 40_000 ? 84 : 95 + ((i * 7) % 4) - 1, unit: '%', time: time.toISOString() });
    }
    await send(devices.abelOximeter, { readings });
  }
  // Last, so that the whole month is still inside the chart's window when it loads.
  // 30 days of 1-minute heart rate (43,200 readings), in batches of 1000: 59.9 s apart,
  // so that all of them fit in the chart's 30-day window however long the setup takes
  // (it ends a minute ahead of the clock, for devices whose clocks run fast).
  const now = Date.now();
  const count = 30 * 24 * 60;
  for (let first = 0; first < count; first += 1000) {
    const readings = [];
    for (let i = first; i < Math.min(count, first + 1000); i++) {
      const time = new Date(now - (count - i) * 59_900);
      const hours = time.getUTCHours() + time.getUTCMinutes() / 60;
      const value = Math.round(68 + 10 * Math.sin(((hours - 9) / 24) * 2 * Math.PI) + 4 * Math.sin(i / 37) + (i % 7) - 3);
      readings.push({ seq: i, code: HR, value, unit: '/min', time: time.toISOString() });
    }
    await send(devices.wearable, { readings });
  }
  await reading(devices.oximeter, '59408-5', 96, '%');
  await reading(devices.oximeter, '9279-1', 16, '/min');
  await send(devices.cuff, { readings: [
    { seq: readingSeq++, code: '8480-6', value: 128, unit: 'mm[Hg]', time: new Date().toISOString() },
    { seq: readingSeq++, code: '8462-4', value: 84, unit: 'mm[Hg]', time: new Date().toISOString() },
  ] });
  await reading(devices.adaThermometer, '8310-5', 37.2, 'Cel');
  await reading(devices.thermometer, '8310-5', 38.4, 'Cel');
  // Abel: feverish and breathing fast, a partial NEWS2 of 6 or more, but no care plan alarm.
  await reading(devices.abelOximeter, '59408-5', 95, '%');
  await reading(devices.abelOximeter, '9279-1', 26, '/min');
  await reading(devices.abelThermometer, '8310-5', 39.3, 'Cel');
  for (let i = 0; i < 8; i++) {
    await sendEcgChunk();
  }
  // Ada is enrolled in the diabetes programme by her clinician, as the API allows
  // (crates/wardline/tests/integration/alarms.rs does the same); from now on her readings
  // are checked against its rules.
  grey = await login('dr.grey', PASSWORD);
  const plan = await ok(server, 'PUT', `/api/v1/patients/${ada.id}/care-plan`, { token: grey, body: { program: 'diabetes', reason: 'enrolled in remote monitoring' } });
  assert.equal(plan.plan.program, 'diabetes');
  ecgTimer = setInterval(() => void sendEcgChunk().catch(() => {}), 1000);

  browser = await launchBrowser();
});

function launchBrowser() {
  if (browserName === 'firefox') {
    // Debian's Firefox ESR over WebDriver BiDi.
    return firefox.launch({ channel: 'moz-firefox', executablePath: process.env.FIREFOX ?? '/usr/bin/firefox-esr', headless: true });
  }
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--ignore-certificate-errors-spki-list=${server.caSpki}`,
    ],
  });
}

after(async () => {
  clearInterval(ecgTimer);
  await browser?.close();
  await server?.stop();
});

test('pages carry a strict content security policy', async () => {
  const response = await server.request('GET', '/patients/anything');
  assert.equal(response.status, 200);
  assert.match(response.headers['content-type'], /text\/html/);
  assert.match(response.headers['content-security-policy'], /default-src 'self'/);
  assert.match(response.headers['content-security-policy'], /frame-ancestors 'none'/);
  assert.doesNotMatch(response.headers['content-security-policy'], /unsafe-inline/);
  assert.equal(response.headers['x-content-type-options'], 'nosniff');
  const api404 = await server.request('GET', '/api/v1/nothing-here');
  assert.equal(api404.status, 404);
  assert.equal(api404.json.error.code, 'not_found');
});

let clinician;

test('a clinician logs in and sees the ward, live', async () => {
  clinician = await newPage();
  await uiLogin(clinician, 'dr.grey', PASSWORD);
  await clinician.waitForURL('**/ward');
  const table = clinician.getByTestId('ward-table');
  await table.getByRole('link', { name: 'Ada Lovelace' }).waitFor();
  assert.equal(await table.getByText('Bob Brown').count(), 0, 'a patient of another team is not listed');
  const row = table.locator(`tr[data-patient-id="${ada.id}"]`);
  await row.locator(`li[data-code="${HR}"]`).waitFor();
  // Each patient's monitoring programme, from the care plan in force.
  assert.equal(await row.getByTestId('ward-program').textContent(), 'Diabetes programme');
  const abelRow = table.locator(`tr[data-patient-id="${abel.id}"]`);
  assert.equal(await abelRow.getByTestId('ward-program').textContent(), 'No care plan yet');
  assert.match(await abelRow.locator('.devices-cell').textContent(), /Blood-pressure cuff: ⚠ no data yet/);
  await clinician.getByText('● Live').waitFor();
  // A new reading reaches the ward without reload.
  await reading(devices.oximeter, '59408-5', 91, '%');
  await row.locator('li[data-code="59408-5"] .value', { hasText: '91' }).waitFor({ timeout: 5000 });
  // An urgent low glucose opens a high priority alarm, which reaches the ward without reload
  // and puts Ada above Abel, whose NEWS2 is higher: open alarms sort first.
  const order = () => table.locator('tbody tr').evaluateAll((rows) => rows.map((row) => row.dataset.patientId));
  await clinician.waitForFunction((first) => document.querySelector('[data-testid="ward-table"] tbody tr')?.dataset.patientId === first, abel.id);
  await clinician.evaluate(() => { window.__sameDocument = true; });
  assert.equal(await row.getByTestId('ward-alarms').textContent(), '✓ None open');
  await reading(devices.cgm, CGM, 45, 'mg/dL');
  const wardAlarm = row.locator('[data-testid="ward-alarms"] li[data-state="open"]', { hasText: 'urgent low glucose' });
  await wardAlarm.waitFor({ timeout: 10000 });
  assert.match(await wardAlarm.textContent(), /High priority/, 'the priority is in words, not only colour');
  assert.deepEqual(await order(), [ada.id, abel.id]);
  // One connection carries the whole ward's readings, not one per patient.
  const streams = requestPaths.get(clinician).filter((name) => name.endsWith('/stream'));
  assert.deepEqual([...new Set(streams)].sort(), ['/api/v1/alarms/stream', '/api/v1/observations/stream']);
  assert.equal(await clinician.evaluate(() => window.__sameDocument), true, 'no reload happened');
  const cookies = await clinician.context().cookies();
  const session = cookies.find((cookie) => cookie.name === 'wardline_session');
  assert.ok(session?.httpOnly && session.secure && session.sameSite === 'Strict', 'HttpOnly, Secure, SameSite=Strict session cookie');
  await snap(clinician, 'ward.png', { fullPage: true });
});

test('the patient page shows a value update without reload and a moving ECG', async () => {
  const page = clinician;
  await page.getByRole('link', { name: 'Ada Lovelace' }).click();
  await page.waitForURL(`**/patients/${ada.id}`);
  await page.getByTestId('patient-name').filter({ hasText: 'Ada Lovelace' }).waitFor();
  await page.evaluate(() => { window.__sameDocument = true; });
  await page.getByTestId(`value-${HR}`).waitFor();

  // ECG: live, and the canvas changes from one moment to the next.
  await page.locator('section.ecg[data-state="live"]').waitFor({ timeout: 15000 });
  const canvas = page.getByTestId('ecg-canvas');
  const first = await canvas.evaluate((element) => element.toDataURL());
  await page.waitForTimeout(700);
  const second = await canvas.evaluate((element) => element.toDataURL());
  assert.notEqual(first, second, 'the ECG strip moves');
  await page.getByTestId('ecg-hr').filter({ hasText: /HR \d+ \/min/ }).waitFor({ timeout: 15000 });
  const rate = Number((await page.getByTestId('ecg-hr').textContent()).match(/\d+/)[0]);
  assert.ok(rate >= 65 && rate <= 80, `the strip's heart rate (${rate}) matches the 72/min signal`);

  // The CGM report of the last 14 days.
  const cgm = page.getByTestId('cgm-report');
  await cgm.locator('.tir-bar').waitFor({ timeout: 15000 });
  assert.match(await cgm.textContent(), /GMI\s*\d+\.\d %/);
  await snap(cgm, 'cgm-report.png');

  // The alarm history and the care plan with its thresholds.
  await page.getByTestId('alarm-history').locator('li[data-state="open"]', { hasText: 'urgent low glucose' }).waitFor();
  const rules = page.getByTestId('care-plan-rules');
  await rules.locator('tr[data-rule-id="low"]').waitFor();
  assert.match(await rules.locator('tr[data-rule-id="low"]').textContent(), /below 70 mg\/dL for 15 min/);
  assert.match(await page.getByTestId('plan-summary').textContent(), /Diabetes programme · version 1/);

  // A new reading shows up without reload.
  await reading(devices.wearable, HR, 123, '/min');
  await page.getByTestId(`value-${HR}`).filter({ hasText: '123' }).waitFor({ timeout: 5000 });
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'no reload happened');
  await page.waitForTimeout(1500);
  await snap(page, 'patient.png', { fullPage: true });
});

test('30 days of 1-minute data load and draw in the trend chart', async () => {
  const page = clinician;
  await page.getByRole('button', { name: '30 days' }).click();
  const chart = page.getByTestId('trend-chart');
  await page.waitForFunction(() => {
    const host = document.querySelector('[data-testid="trend-chart"]');
    return host?.dataset.state === 'ready' && Number(host.dataset.points) >= 43200;
  }, null, { timeout: 60000 });
  const drawMs = Number(await chart.getAttribute('data-draw-ms'));
  const loadMs = Number(await chart.getAttribute('data-load-ms'));
  assert.ok(drawMs < 1000, `drawing 43,200 points took ${drawMs} ms`);
  console.log(`# 30-day trend: 43,200+ points fetched in ${loadMs} ms, drawn in ${drawMs} ms`);
  // Zoom in from the keyboard: the buttons are focusable and work with Enter.
  await page.getByRole('button', { name: 'Zoom in' }).focus();
  await page.keyboard.press('Enter');
  await page.getByRole('button', { name: 'Reset zoom' }).click();
  await snap(page.locator('section.trend'), 'trend-30d.png');
});

test('a clinician changes a threshold with a reason, and the history shows it', async () => {
  const page = clinician;
  const plan = page.getByTestId('care-plan');
  await plan.getByRole('button', { name: 'Change low glucose', exact: true }).click();
  const editor = page.getByTestId('rule-editor');
  const limit = editor.getByLabel('Limit (mg/dL)');
  // A slip of the fingers (7075 for 75) is refused by the server, which says why.
  await limit.clear();
  await limit.fill('7075');
  await editor.getByLabel('Reason for the change (required)').fill('typo');
  const logged = consoleErrors.length;
  await editor.getByRole('button', { name: 'Save change' }).click();
  await editor.getByText(/Not saved: .*7075 mg\/dL is outside what .* can measure/).waitFor();
  // So is a low limit above the high one: every value would raise an alarm.
  await limit.clear();
  await limit.fill('300');
  await editor.getByRole('button', { name: 'Save change' }).click();
  await editor.getByText(/Not saved: .*below 300 mg\/dL\) is not under .*above 250 mg\/dL\)/).waitFor();
  // Chromium logs the refused requests (400); they are the expected outcome here.
  consoleErrors.splice(logged).filter((text) => !/status of 400/.test(text)).forEach((text) => consoleErrors.push(text));
  await editor.getByLabel('Reason for the change (required)').clear();
  await limit.clear();
  await limit.fill('75');
  // No reason: refused in the page, nothing is sent.
  await editor.getByRole('button', { name: 'Save change' }).click();
  await editor.getByText('A change needs a reason').waitFor();
  let versions = (await ok(server, 'GET', `/api/v1/patients/${ada.id}/care-plan/versions`, { token: grey })).versions;
  assert.equal(versions.length, 1);
  const reason = 'Hypoglycaemia unawareness: alert her earlier';
  await editor.getByLabel('Reason for the change (required)').fill(reason);
  await editor.getByRole('button', { name: 'Save change' }).click();
  await plan.getByText('Saved as care plan version 2').waitFor();
  const row = page.getByTestId('care-plan-versions').locator('tr[data-version="2"]');
  await row.waitFor();
  assert.match(await row.textContent(), /dr\.grey/);
  assert.match(await row.textContent(), new RegExp(reason));
  assert.match(await row.textContent(), /Limit: 70 mg\/dL → 75 mg\/dL/);
  assert.match(await plan.locator('tr[data-rule-id="low"]').textContent(), /below 75 mg\/dL/);
  // The API has the new version: who, why, the rule before and after.
  versions = (await ok(server, 'GET', `/api/v1/patients/${ada.id}/care-plan/versions`, { token: grey })).versions;
  assert.equal(versions.length, 2);
  const latest = versions[1];
  assert.equal(latest.version, 2);
  assert.equal(latest.reason, reason);
  assert.equal(latest.author_label, 'dr.grey');
  assert.equal(latest.old_rule.kind.value, 70);
  assert.equal(latest.new_rule.kind.value, 75);
  assert.equal(latest.new_rule.kind.min_duration_secs, 900, 'the other numbers are kept');
  assert.equal(latest.plan.rules.find((rule) => rule.id === 'low').kind.value, 75);
});

test("another patient's page is refused", async () => {
  const page = clinician;
  await page.goto(`${server.url}/patients/${bob.id}`);
  await page.getByRole('heading', { name: /Access refused \(403\)/ }).waitFor();
  assert.equal(await page.getByText('Bob Brown').count(), 0);
});

test('a mistyped address shows the app, saying it is not found, not raw JSON', async () => {
  const page = clinician;
  const response = await page.goto(`${server.url}/pateints/${ada.id}`);
  assert.equal(response.status(), 404);
  await page.getByRole('heading', { name: 'Not found (404)' }).waitFor();
});

test('a month of readings every 45 s is drawn as a summary that keeps the extremes', async () => {
  const page = clinician;
  await page.goto(`${server.url}/patients/${abel.id}`);
  await page.getByTestId('patient-name').filter({ hasText: 'Abel Tasman' }).waitFor();
  const trend = page.locator('section.trend');
  await trend.getByLabel('Measurement').selectOption('59408-5');
  await trend.getByRole('button', { name: '30 days' }).click();
  const chart = page.getByTestId('trend-chart');
  await page.waitForFunction(() => {
    const host = document.querySelector('[data-testid="trend-chart"]');
    return host?.dataset.state === 'ready' && host.dataset.mode === 'summary';
  }, null, { timeout: 60000 });
  const buckets = Number(await chart.getAttribute('data-points'));
  assert.ok(buckets > 1000 && buckets <= 1500, `${buckets} buckets across 30 days`);
  const text = await trend.locator('.chart-summary').textContent();
  // The month's 57,000 and the one sent while setting up.
  assert.match(text, /^57,001 readings from /, 'every reading is counted');
  assert.match(text, /lowest 84\b/, 'the single dip survives the summary');
  assert.match(text, /mean and the range of each 30 min/);
  console.log(`# 30-day summary of 57,001 readings: ${buckets} buckets, fetched in ${await chart.getAttribute('data-load-ms')} ms, drawn in ${await chart.getAttribute('data-draw-ms')} ms`);
});

async function apiAlarm(ruleId) {
  const all = (await ok(server, 'GET', `/api/v1/patients/${ada.id}/alarms`, { token: grey })).alarms;
  return all.find((alarm) => alarm.rule_id === ruleId && alarm.state_name !== 'resolved');
}

test('the alarm inbox updates live; a clinician acknowledges, snoozes and resolves', async () => {
  const page = clinician;
  await page.getByRole('link', { name: 'Alarm inbox' }).click();
  await page.getByRole('heading', { name: 'Alarm inbox' }).waitFor();
  await page.evaluate(() => { window.__sameDocument = true; });
  const high = await apiAlarm('urgent-low');
  assert.ok(high, 'the urgent low alarm is open');
  const highCard = page.locator(`li[data-alarm-id="${high.id}"]`);
  await highCard.waitFor();
  assert.match(await highCard.textContent(), /High priority/);
  assert.match(await highCard.textContent(), /Ada Lovelace/);
  // Where its escalation stands, in words: the level reached and whom the next step notifies.
  assert.match(await highCard.getByTestId('escalation').textContent(), /Escalation: \d+ notifications? sent, level 1 of 1, round \d+ of \d+; next: level 1, Cardiology ward, .*in \d+ min/);
  await page.getByText('● Live').waitFor();

  // The care team adds an SpO2 rule; a low reading opens a medium alarm, live.
  await ok(server, 'PUT', `/api/v1/patients/${ada.id}/care-plan`, {
    token: grey,
    body: {
      reason: 'watch SpO2 after the chest infection',
      edit: { op: 'add', rule: { id: 'spo2-watch', name: 'SpO2 below 92 %', priority: 'medium', resolve_on_clear: true,
        kind: { type: 'threshold', code: 'oxygen_saturation_pulse_oximetry', direction: 'below', value: 92, min_duration_secs: 0, hysteresis: 2 } } },
    },
  });
  await reading(devices.oximeter, '59408-5', 88, '%');
  const mediumCard = page.locator('li[data-priority="medium"][data-state="open"]', { hasText: 'SpO2 below 92 %' });
  await mediumCard.waitFor({ timeout: 10000 });
  assert.match(await mediumCard.textContent(), /Medium priority/);
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'no reload happened');
  // Most urgent first.
  const order = await page.locator('[data-testid="alarm-list"] > li').evaluateAll((items) => items.map((item) => item.dataset.priority));
  assert.deepEqual(order.slice(0, 2), ['high', 'medium']);
  // The snooze choices are bounded by priority.
  const highChoices = await highCard.getByLabel('Snooze for').locator('option').allTextContents();
  assert.deepEqual(highChoices, ['5 min', '10 min', '15 min', '30 min']);
  await page.waitForTimeout(500);
  await snap(page, 'alarm-inbox.png', { fullPage: true });

  // Acknowledge in the page: the API shows it acknowledged by the clinician.
  await highCard.getByRole('button', { name: 'Acknowledge' }).click();
  await page.locator(`li[data-alarm-id="${high.id}"][data-state="acknowledged"]`).waitFor();
  const acknowledged = await ok(server, 'GET', `/api/v1/alarms/${high.id}`, { token: grey });
  assert.equal(acknowledged.state_name, 'acknowledged');
  assert.equal(acknowledged.state.by, greyId);
  assert.match(await page.locator(`li[data-alarm-id="${high.id}"]`).getByTestId('escalation').textContent(), /Escalation stopped at level 1 of 1, round \d+ of \d+: acknowledged by you/);

  // Snooze the medium alarm: a reminder shows when it comes back.
  const medium = await apiAlarm('spo2-watch');
  const mediumById = page.locator(`li[data-alarm-id="${medium.id}"]`);
  await mediumById.getByLabel('Snooze for').selectOption('15');
  await mediumById.getByRole('button', { name: 'Snooze' }).click();
  await page.locator(`li[data-alarm-id="${medium.id}"][data-state="snoozed"]`).waitFor();
  const reminder = page.getByTestId('snooze-reminders');
  await reminder.waitFor();
  assert.match(await reminder.textContent(), /SpO2 below 92 %.*returns at \d\d:\d\d \(in 1[45] min\)/);
  const snoozed = await ok(server, 'GET', `/api/v1/alarms/${medium.id}`, { token: grey });
  assert.equal(snoozed.state_name, 'snoozed');
  const minutes = (Date.parse(snoozed.state.until) - Date.now()) / 60000;
  assert.ok(minutes > 13 && minutes <= 15, `snoozed for 15 min (${minutes.toFixed(1)} left)`);

  // Resolving needs a note.
  const ackCard = page.locator(`li[data-alarm-id="${high.id}"]`);
  await ackCard.getByRole('button', { name: 'Resolve' }).click();
  await page.getByText('Resolving an alarm needs a note').waitFor();
  assert.equal((await ok(server, 'GET', `/api/v1/alarms/${high.id}`, { token: grey })).state_name, 'acknowledged');
  await ackCard.getByLabel('Resolution note (required)').fill('Called Ada: treated with glucose, 110 mg/dL now');
  await ackCard.getByRole('button', { name: 'Resolve' }).click();
  await ackCard.waitFor({ state: 'detached' });
  const resolved = await ok(server, 'GET', `/api/v1/alarms/${high.id}`, { token: grey });
  assert.equal(resolved.state_name, 'resolved');
  assert.equal(resolved.state.resolution.note, 'Called Ada: treated with glucose, 110 mg/dL now');
});

test('a state-changing request with the cookie needs the app header', async () => {
  const page = clinician;
  const logged = consoleErrors.length;
  const without = await page.evaluate(async () => (await fetch('/api/v1/auth/logout', { method: 'POST' })).status);
  assert.equal(without, 403, 'refused without X-Wardline-Request');
  // Chromium logs the refused request; it is the expected outcome here.
  consoleErrors.splice(logged).filter((text) => !/status of 403/.test(text)).forEach((text) => consoleErrors.push(text));
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL('**/login');
  const me = await page.evaluate(async () => (await fetch('/api/v1/me')).status);
  assert.equal(me, 401, 'logged out');
});

test('a patient sees only their own data', async () => {
  // A clinician of another team tries to read Ada's record through the API.
  const otherTeam = (await ok(server, 'GET', '/api/v1/care-teams', { token: admin })).find((team) => team.name === 'Respiratory ward');
  const mallory = await ok(server, 'POST', '/api/v1/users', { token: admin, body: { username: 'dr.other', display_name: 'Dr Mallory Other', role: 'clinician', password: PASSWORD, password_change_required: false } });
  await ok(server, 'POST', `/api/v1/care-teams/${otherTeam.id}/members`, { token: admin, body: { user_id: mallory.user.id } });
  const snooper = await login('dr.other', PASSWORD);
  assert.equal((await server.request('GET', `/api/v1/patients/${ada.id}/observations/latest`, { token: snooper })).status, 403);
  const page = await newPage();
  await uiLogin(page, 'ada', PASSWORD);
  await page.waitForURL('**/me');
  await page.getByTestId('patient-name').filter({ hasText: 'Ada Lovelace' }).waitFor();
  await page.getByTestId(`value-${HR}`).waitFor();
  const listed = await page.evaluate(async () => (await (await fetch('/api/v1/patients')).json()).map((p) => p.display_name));
  assert.deepEqual(listed, ['Ada Lovelace']);
  // Who can see her data: her care team by name; and who looked, refusals included.
  const who = page.getByTestId('who-can-see');
  await who.getByRole('heading', { name: 'Who can see my data' }).waitFor();
  await who.getByTestId('care-teams').getByText('Cardiology ward').waitFor();
  assert.match(await who.getByTestId('care-teams').textContent(), /Dr Meredith Grey — Clinician/);
  const log = who.getByTestId('access-log');
  await log.locator('tr[data-outcome="allowed"]', { hasText: 'Dr Meredith Grey' }).first().waitFor();
  const refusal = log.locator('tr[data-outcome="denied"]', { hasText: 'Dr Mallory Other' }).first();
  await refusal.waitFor();
  assert.match(await refusal.textContent(), /your latest readings|your readings/);
  assert.match(await refusal.textContent(), /Refused/);
  await page.locator('section.ecg[data-state="live"]').waitFor({ timeout: 15000 });
  await page.getByTestId('cgm-report').locator('.tir-bar').waitFor();
  // Her alarms and care plan, read-only: no alarm actions, no rule changes.
  const history = page.getByTestId('alarm-history');
  await history.locator('li[data-state="snoozed"]', { hasText: 'SpO2 below 92 %' }).waitFor();
  await page.getByTestId('care-plan-rules').locator('tr[data-rule-id="low"]').waitFor();
  for (const name of ['Acknowledge', 'Resolve', 'Snooze', /^Change/]) {
    assert.equal(await page.getByRole('button', { name }).count(), 0, `no ${name} button for a patient`);
  }
  const medium = await apiAlarm('spo2-watch');
  const refused = await page.evaluate(async (id) => {
    const post = (path, body) => fetch(path, { method: 'POST', headers: { 'X-Wardline-Request': '1', 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    return [
      (await post(`/api/v1/alarms/${id}/acknowledge`, {})).status,
      (await post(`/api/v1/alarms/${id}/resolve`, { note: 'fine' })).status,
      (await post(`/api/v1/alarms/${id}/snooze`, { minutes: 5 })).status,
    ];
  }, medium.id);
  assert.deepEqual(refused, [403, 403, 403], 'the API refuses a patient acting on an alarm');
  const planChange = await page.evaluate(async (patientId) => (await fetch(`/api/v1/patients/${patientId}/care-plan`, {
    method: 'PUT', headers: { 'X-Wardline-Request': '1', 'Content-Type': 'application/json' }, body: JSON.stringify({ reason: 'x', edit: { op: 'remove', rule_id: 'low' } }),
  })).status, ada.id);
  assert.equal(planChange, 403, 'nor change her care plan');
  assert.equal((await apiAlarm('spo2-watch')).state_name, 'snoozed');
  await snap(page, 'patient-self.png', { fullPage: true });
  await page.goto(`${server.url}/alarms`);
  await page.waitForURL('**/me');
  await page.goto(`${server.url}/patients/${bob.id}`);
  await page.getByRole('heading', { name: /Access refused \(403\)/ }).waitFor();
  await page.goto(`${server.url}/ward`);
  await page.waitForURL('**/me');
  await page.context().close();
});

test('a patient connects a diabetes app and imports a CGM export, whose glucose joins her record, and downloads her readings', async () => {
  const page = await newPage();
  await uiLogin(page, 'ada', PASSWORD);
  await page.waitForURL('**/me');
  const section = page.getByTestId('nightscout');
  await section.getByRole('heading', { name: 'My diabetes apps' }).waitFor();
  await section.getByTestId('nightscout-connect').click();
  const url = (await section.getByTestId('nightscout-url').textContent()).trim();
  const secret = (await section.getByTestId('nightscout-secret').textContent()).trim();
  const site = new URL(url).pathname;
  assert.match(site, /^\/ns\/[0-9a-f]{16}$/);
  await section.getByTestId('nightscout-sites').getByText(url).waitFor();
  // The app uploads as xDrip+ does: the SHA-1 of the secret in the api-secret header.
  const entries = `${site}/api/v1/entries`;
  const asApp = { headers: { 'api-secret': createHash('sha1').update(secret).digest('hex') } };
  const date = Date.now() - 60_000;
  const uploaded = await server.request('POST', entries, { ...asApp, body: [{ type: 'sgv', sgv: 187, date, direction: 'FortyFiveUp', device: 'xDrip-DexcomG7' }] });
  assert.equal(uploaded.status, 200, uploaded.text);
  assert.equal(uploaded.json[0].sgv, 187);
  const treatment = await server.request('POST', `${site}/api/v1/treatments`, { ...asApp, body: { eventType: 'Meal Bolus', insulin: 4.5, carbs: 40, created_at: new Date(date).toISOString(), syncIdentifier: 'loop-meal-1' } });
  assert.equal(treatment.status, 200, treatment.text);
  await page.reload();
  await page.getByTestId('app-treatments').getByText(/Meal Bolus.*4\.5 U insulin, 40 g carbohydrate/).waitFor();
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-csv').click()]);
  const csv = readFileSync(await download.path(), 'utf8');
  assert.match(csv, /^effective,loinc,display,value,unit/);
  assert.ok(csv.split('\r\n').some((line) => line.includes(',99504-3,') && line.includes(',187,mg/dL,') && line.includes(',ns-')), 'the uploaded glucose is in her readings');
  // A Dexcom Clarity export, imported from the page: its readings once, a bad row named.
  const importer = page.getByTestId('cgm-import');
  await importer.getByLabel('Export', { exact: true }).selectOption('clarity');
  await importer.getByLabel('Time zone of its clock times').fill('UTC');
  const day = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
  const clarity = [
    'Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype,Glucose Value (mg/dL)',
    '1,,FirstName,,',
    `2,${day}T08:00:00,EGV,,121`,
    `3,${day}T08:05:00,EGV,,125`,
    `4,${day}T08:10:00,EGV,,not a number`,
  ].join('\r\n');
  await importer.getByLabel('File', { exact: true }).setInputFiles({ name: 'clarity.csv', mimeType: 'text/csv', buffer: Buffer.from(clarity) });
  await importer.getByRole('button', { name: 'Import' }).click();
  await importer.getByTestId('import-result').getByText(/Imported 2 readings/).waitFor();
  assert.match(await importer.getByTestId('import-result').textContent(), /1 rows refused:.*line 5, Glucose Value/);
  await importer.getByRole('button', { name: 'Import' }).click();
  await importer.getByTestId('import-result').getByText(/Imported 0 readings.*2 were stored before/).waitFor();
  await section.getByRole('button', { name: 'Disconnect' }).click();
  await section.getByText('disconnected').waitFor();
  assert.equal((await server.request('GET', entries, asApp)).status, 401, 'a disconnected app is refused');
  await page.context().close();
});

test('a clinician logs in and reaches a patient from the keyboard alone', async () => {
  const page = await newPage();
  await page.goto(`${server.url}/login`);
  await page.getByLabel('Username').focus();
  await page.keyboard.type('dr.grey');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('type')), 'password', 'Tab moves to the password');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await page.waitForURL('**/ward');
  await page.getByTestId('ward-table').getByRole('link', { name: 'Ada Lovelace' }).waitFor();
  let reached = false;
  for (let presses = 0; presses < 40 && !reached; presses++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.textContent === 'Ada Lovelace');
  }
  assert.ok(reached, 'the patient link is reachable with Tab');
  // Where the focus is must be visible: the focus ring is drawn.
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, 'none', 'the focused link shows a focus ring');
  await page.keyboard.press('Enter');
  await page.waitForURL(`**/patients/${ada.id}`);
  await page.getByTestId('patient-name').filter({ hasText: 'Ada Lovelace' }).waitFor();
  await page.context().close();
});

/**
 * How a page fits the screen: how far the page scrolls sideways (wide tables scroll inside
 * their own box instead), and the controls smaller than 24 × 24 CSS px (WCAG 2.2 target
 * size; links inside running text are exempt, as there).
 */
function layoutProblems(page) {
  return page.evaluate(() => {
    const root = document.documentElement;
    const small = [...document.querySelectorAll('button, a[href], input, select, textarea, summary')]
      .filter((element) => {
        const box = element.getBoundingClientRect();
        if (box.width === 0 || box.height === 0 || element.closest('.visually-hidden')) return false;
        if (element.tagName === 'A' && element.closest('p')) return false;
        if (element.type === 'checkbox' || element.type === 'radio') return false;
        return box.width < 24 || box.height < 24;
      })
      .map((element) => {
        const box = element.getBoundingClientRect();
        return `${element.tagName.toLowerCase()} “${(element.textContent || element.getAttribute('aria-label') || '').trim().slice(0, 30)}” ${Math.round(box.width)}×${Math.round(box.height)}`;
      });
    return { sideways: root.scrollWidth - root.clientWidth, small };
  });
}

for (const [orientation, viewport] of [['portrait', { width: 768, height: 1024 }], ['landscape', { width: 1024, height: 768 }]]) {
  test(`a clinician's pages fit a tablet (${orientation}, ${viewport.width} × ${viewport.height})`, async () => {
    const page = await newPage({ viewport });
    await uiLogin(page, 'dr.grey', PASSWORD);
    await page.waitForURL('**/ward');
    await page.getByTestId('ward-table').getByRole('link', { name: 'Ada Lovelace' }).waitFor();
    await page.getByText('● Live').waitFor();
    const checks = [['ward', await layoutProblems(page)]];
    const offScreen = await page.locator('[data-testid="ward-table"] tbody td').evaluateAll((cells) =>
      cells.filter((cell) => cell.getBoundingClientRect().right > window.innerWidth + 1).map((cell) => cell.className));
    assert.deepEqual(offScreen, [], 'every part of a ward row is on screen, none behind a sideways scroll');
    if (orientation === 'portrait') await snap(page, 'tablet-ward.png');
    await page.getByTestId('ward-table').getByRole('link', { name: 'Ada Lovelace' }).click();
    await page.waitForURL(`**/patients/${ada.id}`);
    await page.locator('section.ecg[data-state="live"]').waitFor({ timeout: 15000 });
    await page.getByTestId('cgm-report').locator('.tir-bar').waitFor({ timeout: 15000 });
    await page.getByTestId('care-plan-rules').locator('tr[data-rule-id="low"]').waitFor();
    checks.push(['patient', await layoutProblems(page)]);
    if (orientation === 'portrait') await snap(page, 'tablet-patient.png');
    await page.getByRole('link', { name: 'Alarm inbox' }).click();
    await page.getByRole('heading', { name: 'Alarm inbox' }).waitFor();
    await page.getByTestId('alarm-list').locator('li').first().waitFor();
    checks.push(['alarm inbox', await layoutProblems(page)]);
    for (const [name, problems] of checks) {
      assert.ok(problems.sideways <= 0, `the ${name} page scrolls sideways by ${problems.sideways} px`);
      assert.deepEqual(problems.small, [], `controls too small to tap on the ${name} page`);
    }
    await page.context().close();
  });
}

test('an admin disables an account, enrols a device (its secret shown once) and ends a team’s care of a patient', async () => {
  const page = await newPage();
  await uiLogin(page, 'admin', server.adminPassword);
  await page.waitForURL('**/admin/users');
  // Dr Other leaves: an admin disables the account, after confirming; it is kept, marked
  // disabled, and its sessions end at once.
  const otherSession = await login('dr.other', PASSWORD);
  await page.getByRole('button', { name: 'Disable dr.other' }).click();
  await page.getByText('Disable dr.other? Their sessions end now').waitFor();
  await page.getByRole('button', { name: 'Disable dr.other' }).click();
  await page.getByText('dr.other is disabled.').waitFor();
  const row = page.getByRole('row', { name: /dr\.other/ });
  assert.match(await row.textContent(), /disabled/);
  assert.equal((await server.request('GET', '/api/v1/me', { token: otherSession })).status, 401, 'the session ended');
  assert.equal((await server.request('POST', '/api/v1/auth/login', { body: { username: 'dr.other', password: PASSWORD } })).status, 401);
  assert.equal(await page.getByRole('button', { name: 'Disable admin' }).count(), 0, 'no one disables their own account');
  await page.getByRole('link', { name: 'Devices' }).click();
  await page.getByLabel('Kind').selectOption('cgm');
  await page.getByLabel('Model').fill('Dexcom G7');
  await page.getByLabel('Serial number').fill('G7-0001');
  await page.getByLabel('Assign to patient from now (optional)').selectOption({ label: 'Ada Lovelace' });
  await page.getByRole('button', { name: 'Enrol device' }).click();
  const panel = page.getByTestId('shown-once');
  await panel.waitFor();
  assert.match(await panel.textContent(), /wds_/);
  assert.match(await panel.textContent(), /wardline\/v1\/devices\/.+\/readings/);
  // The Respiratory ward no longer looks after Bob: the admin ends its care, and the
  // team's table shows no patient.
  await page.getByRole('link', { name: 'Care teams' }).click();
  const ending = page.locator('form', { hasText: 'End a team’s care of a patient' });
  await ending.getByLabel('Care team').selectOption({ label: 'Respiratory ward' });
  await ending.getByLabel('Patient').selectOption({ label: 'Bob Brown' });
  await ending.getByRole('button', { name: 'End care' }).click();
  await page.getByRole('row', { name: /Respiratory ward.*—/ }).waitFor();
  const teams = await ok(server, 'GET', '/api/v1/care-teams', { token: admin });
  assert.deepEqual(teams.find((team) => team.name === 'Respiratory ward').patients, []);
  await page.getByRole('link', { name: 'Audit log' }).click();
  await page.getByRole('cell', { name: 'devices.enrol' }).first().waitFor();
  await page.getByRole('cell', { name: 'care_teams.remove_patient' }).first().waitFor();
  await page.context().close();
});

test('an account whose password an admin handed over must choose its own before anything else', async () => {
  const created = await ok(server, 'POST', '/api/v1/users', {
    token: admin,
    body: { username: 'nurse.new', display_name: 'Nurse Nell New', role: 'nurse' },
  });
  const page = await newPage();
  await uiLogin(page, 'nurse.new', created.generated_password);
  await page.waitForURL('**/account/password**');
  await page.getByText('Your password was set by someone else').waitFor();
  // Any other page leads back here until the password is changed.
  await page.goto(`${server.url}/alarms`);
  await page.waitForURL('**/account/password**');
  await page.getByLabel('Password you were given').fill(created.generated_password);
  await page.getByLabel('New password', { exact: true }).fill(created.generated_password);
  await page.getByLabel('New password again').fill(created.generated_password);
  await page.getByRole('button', { name: 'Change password' }).click();
  await page.getByText('The new password must differ from the current one.').waitFor();
  const chosen = 'copper meadow after the rain';
  await page.getByLabel('New password', { exact: true }).fill(chosen);
  await page.getByLabel('New password again').fill(chosen);
  await page.getByRole('button', { name: 'Change password' }).click();
  await page.waitForURL('**/alarms');
  const session = await login('nurse.new', chosen);
  assert.equal((await ok(server, 'GET', '/api/v1/me', { token: session })).password_change_required, false);
  await page.context().close();
});

test('an administrator sets up a second factor by scanning a code, then logs in with the app’s codes', async () => {
  await ok(server, 'POST', '/api/v1/users', {
    token: admin,
    body: { username: 'it.admin', display_name: 'Ivy Tech', role: 'admin', password: PASSWORD, password_change_required: false },
  });
  // A nurse whose phone will be lost, with a second factor of her own.
  await ok(server, 'POST', '/api/v1/users', {
    token: admin,
    body: { username: 'nurse.phone', display_name: 'Nurse Pat Phone', role: 'nurse', password: PASSWORD, password_change_required: false },
  });
  await setUpSecondFactor('nurse.phone', await login('nurse.phone', PASSWORD));

  const page = await newPage();
  await uiLogin(page, 'it.admin', PASSWORD);
  await page.waitForURL('**/account/second-factor**');
  await page.getByText('Your role logs in with a one-time code as well as the password').waitFor();
  // Any other page leads back here until it is set up.
  await page.goto(`${server.url}/admin/devices`);
  await page.waitForURL('**/account/second-factor**');
  await page.getByRole('button', { name: 'Set up with an authenticator app' }).click();
  const qr = page.getByRole('img', { name: 'QR code for your authenticator app' });
  await qr.waitFor();
  const box = await qr.boundingBox();
  assert.ok(box.width >= 150 && box.height >= 150, `a QR code a phone can scan (${box.width}×${box.height})`);
  const secret = (await page.locator('.secret-key').textContent()).replace(/\s/g, '');
  assert.match(secret, /^[A-Z2-7]{32}$/, 'a 160-bit key in base 32');
  await snap(page, 'second-factor-setup.png', { fullPage: true });
  // A wrong code is refused with a hint; the right one finishes the set-up.
  const step = totpStep();
  const right = totpCode(secret, step);
  await page.getByLabel('Code from the app').fill(right === '000000' ? '111111' : '000000');
  await page.getByRole('button', { name: 'Confirm' }).click();
  await page.getByText('That code is not right.').waitFor();
  await page.getByLabel('Code from the app').fill(right);
  await page.getByRole('button', { name: 'Confirm' }).click();
  await page.waitForURL('**/admin/devices');
  secondFactors.set('it.admin', { secret, last: step });
  const row = page.getByRole('row', { name: /it\.admin/ });
  await page.getByRole('link', { name: 'Users' }).click();
  await row.waitFor();
  assert.match(await row.textContent(), /set up/);

  // The nurse lost her phone: this administrator removes her second factor.
  await page.getByRole('button', { name: "Reset nurse.phone's second factor" }).click();
  await page.getByRole('button', { name: "Remove nurse.phone's second factor" }).click();
  await page.getByText("nurse.phone's second factor is removed.").waitFor();
  secondFactors.delete('nurse.phone');
  assert.equal((await server.request('POST', '/api/v1/auth/login', { body: { username: 'nurse.phone', password: PASSWORD } })).status, 200);

  // Logging in again: the password, then the code; a code already used is refused.
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL('**/login**');
  await page.getByLabel('Username').fill('it.admin');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByText('Your account has a second factor').waitFor();
  await page.getByLabel('One-time code').fill(right);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByText('That code is not right, or was used already.').waitFor();
  await page.getByLabel('One-time code').fill(await nextCode('it.admin'));
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL('**/admin/users');
  await page.context().close();
});

test('an admin issues a certificate from a device’s request, and the device sends with it instead of its secret', async () => {
  const enrolled = await ok(server, 'POST', '/api/v1/devices', { token: admin, body: { kind: 'thermometer', model: 'Thermo TLS', serial: 'TLS-1', patient_id: ada.id } });
  // The device's key and request, made with OpenSSL as a device maker would; only the
  // request leaves the device.
  const folder = mkdtempSync(path.join(tmpdir(), 'wardline-device-'));
  const keyFile = path.join(folder, 'device.key');
  const requestFile = path.join(folder, 'device.csr');
  execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=thermometer', '-keyout', keyFile, '-out', requestFile], { stdio: 'ignore' });
  const page = await newPage();
  // Signed in as the admin by the session the harness holds (a UI login would wait for
  // the authenticator's next code).
  await page.context().addCookies([{ name: 'wardline_session', value: admin, url: server.url }]);
  await page.goto(`${server.url}/admin/devices`);
  const issuing = page.getByRole('form', { name: 'Issue a device certificate' });
  await issuing.getByLabel('Device').selectOption(enrolled.device.id);
  await issuing.getByLabel('Certificate signing request (PEM)').fill(readFileSync(requestFile, 'utf8'));
  await issuing.getByRole('button', { name: 'Issue certificate' }).click();
  const issued = page.getByTestId('issued-certificate');
  await issued.waitFor();
  assert.match(await issued.textContent(), new RegExp(`Certificate for ${enrolled.device.id}`));
  const certificate = await issued.locator('pre').first().textContent();
  assert.match(certificate, /^-----BEGIN CERTIFICATE-----/);
  await page.context().close();
  // The device sends a reading over HTTPS with its certificate and no secret.
  const reading = { v: 1, seq: 1, code: '8310-5', value: 37.2, unit: 'Cel', time: new Date().toISOString() };
  const status = await new Promise((resolve, reject) => {
    const request = https.request(`${server.url}/api/v1/devices/${enrolled.device.id}/readings`, {
      method: 'POST',
      ca: server.ca,
      key: readFileSync(keyFile),
      cert: certificate,
      headers: { 'content-type': 'application/json' },
    }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode));
    });
    request.on('error', reject);
    request.end(JSON.stringify(reading));
  });
  rmSync(folder, { recursive: true, force: true });
  assert.equal(status, 200);
});

test('an admin registers a device template, tries it on a message, puts it in force, and the device sends its own JSON', async () => {
  const device = await ok(server, 'POST', '/api/v1/devices', { token: admin, body: { kind: 'pulse_oximeter', model: 'Pulse Hub', serial: 'PH-1', patient_id: ada.id } });
  const deviceTemplate = {
    templateType: 'CollectionContent',
    template: [{ templateType: 'IotJsonPathContent', template: { typeName: 'pulse', typeMatchExpression: '$..[?(@Body.pulse)]', values: [{ valueName: 'pulse', valueExpression: '$.Body.pulse', required: 'true' }] } }],
  };
  const fhirTemplate = {
    templateType: 'CollectionFhir',
    template: [{ templateType: 'CodeValueFhir', template: { typeName: 'pulse', codes: [{ code: '8867-4', system: 'http://loinc.org', display: 'Heart rate' }], value: { valueName: 'pulse', valueType: 'Quantity', unit: 'bpm' } } }],
  };
  const page = await newPage();
  await page.context().addCookies([{ name: 'wardline_session', value: admin, url: server.url }]);
  await page.goto(`${server.url}/admin/device-templates`);
  const registering = page.getByRole('form', { name: 'Register a template' });
  await registering.getByLabel('Device model').fill('Pulse Hub');
  // A template that is not JSON is refused in the page, naming which.
  await registering.getByLabel('Device content template (JSON)').fill('{"templateType": ');
  await registering.getByLabel('FHIR mapping template (JSON)').fill(JSON.stringify(fhirTemplate, null, 2));
  await registering.getByRole('button', { name: 'Register as a draft' }).click();
  await registering.getByText('Device content template: not JSON').waitFor();
  await registering.getByLabel('Device content template (JSON)').fill(JSON.stringify(deviceTemplate, null, 2));
  await registering.getByRole('button', { name: 'Register as a draft' }).click();
  await registering.getByText('Registered Pulse Hub version 1 as a draft').waitFor();

  await page.goto(`${server.url}/admin/device-templates`);
  const trying = page.getByRole('form', { name: 'Try a template on a message' });
  await trying.getByLabel('Sending device (optional)').selectOption(device.device.id);
  await trying.getByLabel('Message, as the device sends it (JSON)').fill('{"pulse": 72}');
  await trying.getByRole('button', { name: 'Try' }).click();
  const trial = page.getByTestId('template-trial');
  await trial.waitFor();
  assert.match(await trial.textContent(), /This payload would give:Heart rate 72 \/min at /);
  // Until it is in force, the device's own JSON is not read.
  const before = await server.request('POST', `/api/v1/devices/${device.device.id}/readings`, { token: device.secret, body: { pulse: 70 } });
  assert.equal(before.status, 400);
  page.once('dialog', (dialog) => dialog.accept());
  await page.getByRole('button', { name: 'Put Pulse Hub v1 in force' }).click();
  await page.getByRole('button', { name: 'Retire Pulse Hub v1' }).waitFor();
  await page.context().close();
  const stored = await ok(server, 'POST', `/api/v1/devices/${device.device.id}/readings`, { token: device.secret, body: { pulse: 71 } });
  assert.deepEqual(stored, { stored: 1, duplicates: 0 });
});

test('a patient shares glucose with a specialist, who sees exactly that until the patient revokes it', async () => {
  await ok(server, 'POST', '/api/v1/users', {
    token: admin,
    body: { username: 'dr.okafor', display_name: 'Dr Ngozi Okafor', role: 'specialist', password: PASSWORD, password_change_required: false },
  });
  // Ada shares her glucose, from her own page.
  const patientPage = await newPage();
  await uiLogin(patientPage, 'ada', PASSWORD);
  await patientPage.waitForURL('**/me');
  const sharing = patientPage.getByTestId('sharing');
  await sharing.getByRole('heading', { name: 'Sharing with a specialist' }).waitFor();
  await sharing.getByLabel('Specialist’s user name').fill('dr.okafor');
  await sharing.getByLabel('Glucose and the CGM report').check();
  // Firefox's number fields take fill() as typing at the end: empty the field first.
  await sharing.getByLabel('Days until the share ends').clear();
  await sharing.getByLabel('Days until the share ends').fill('7');
  await sharing.getByRole('button', { name: 'Share', exact: true }).click();
  await sharing.getByText('Shared with Dr Ngozi Okafor until').waitFor();
  await sharing.getByTestId('my-shares').getByText('Dr Ngozi Okafor').waitFor();

  // The specialist, in a browser of their own, sees Ada's glucose and nothing else.
  const specialist = await newPage();
  await uiLogin(specialist, 'dr.okafor', PASSWORD);
  await specialist.waitForURL('**/shared');
  await specialist.getByTestId('shared-with-me').getByRole('link', { name: 'Ada Lovelace' }).click();
  await specialist.getByTestId('patient-name').filter({ hasText: 'Ada Lovelace' }).waitFor();
  await specialist.getByText('Shared with you by the patient until').waitFor();
  await specialist.getByTestId(`value-${CGM}`).waitFor();
  assert.equal(await specialist.getByTestId(`value-${HR}`).count(), 0, 'no heart rate: vital signs are not shared');
  assert.equal(await specialist.getByRole('heading', { name: /Alarm/ }).count(), 0, 'no alarms');
  assert.equal(await specialist.getByRole('heading', { name: /Devices/ }).count(), 0, 'no devices');
  const refused = await specialist.evaluate(async (id) => (await fetch(`/api/v1/patients/${id}/news2/latest`)).status, ada.id);
  assert.equal(refused, 403, 'vital signs stay closed through the API too');
  // A new glucose reading reaches the open page live; a heart rate does not.
  await specialist.getByText('● Live').waitFor();
  await reading(devices.cgm, CGM, 151, 'mg/dL');
  await reading(devices.oximeter, HR, 64, '/min');
  await specialist.getByTestId(`value-${CGM}`).filter({ hasText: '151' }).waitFor();
  assert.equal(await specialist.getByTestId(`value-${HR}`).count(), 0, 'still no heart rate');

  // Ada revokes it; the specialist's open page loses access within seconds.
  await sharing.getByRole('button', { name: 'Revoke the share with Dr Ngozi Okafor' }).click();
  await sharing.getByText('The share with Dr Ngozi Okafor has ended.').waitFor();
  await specialist.getByText('The patient’s share with you has ended.').waitFor({ timeout: 10_000 });
  await specialist.getByRole('heading', { name: 'Access refused (403)' }).waitFor();
  // Ada sees who looked, through her share.
  await patientPage.reload();
  const look = patientPage.getByTestId('access-log').locator('tr[data-outcome="allowed"]', { hasText: 'Dr Ngozi Okafor' }).first();
  await look.waitFor();
  assert.match(await look.textContent(), /through your share/);
  await patientPage.context().close();
  await specialist.context().close();
});

test('the care team proposes a referral, which opens nothing until the patient accepts it', async () => {
  const clinician = await newPage();
  await uiLogin(clinician, 'dr.grey', PASSWORD);
  await clinician.waitForURL('**/ward');
  await clinician.goto(`${server.url}/patients/${ada.id}`);
  const referral = clinician.getByRole('form', { name: 'Refer to a specialist' });
  await referral.getByLabel('Specialist’s user name').fill('dr.okafor');
  await referral.getByLabel('ECG and rhythm events').check();
  await referral.getByLabel('Why (shown to the patient and the specialist)').fill('palpitations at night');
  await referral.getByRole('button', { name: 'Propose' }).click();
  await referral.getByText('sees nothing until they accept it').waitFor();
  await clinician.context().close();
  const okafor = await login('dr.okafor', PASSWORD);
  assert.deepEqual(await ok(server, 'GET', '/api/v1/me/shared-with-me', { token: okafor }), [], 'nothing before Ada accepts');

  const patientPage = await newPage();
  await uiLogin(patientPage, 'ada', PASSWORD);
  await patientPage.waitForURL('**/me');
  const sharing = patientPage.getByTestId('sharing');
  await sharing.getByText('proposed by your care team, waiting for you').waitFor();
  await sharing.getByRole('button', { name: 'Accept the share with Dr Ngozi Okafor' }).click();
  await sharing.getByText('Dr Ngozi Okafor can now see what was proposed.').waitFor();
  const shares = await ok(server, 'GET', '/api/v1/me/shared-with-me', { token: okafor });
  assert.deepEqual(shares.map((share) => share.categories), [['ecg']]);
  await patientPage.context().close();
});

test('a patient invites a specialist, whose link makes their account', async () => {
  const patientPage = await newPage();
  await uiLogin(patientPage, 'ada', PASSWORD);
  await patientPage.waitForURL('**/me');
  const invite = patientPage.getByRole('form', { name: 'Invite a specialist' });
  await invite.getByLabel('Their e-mail address').fill('neuro@clinic.example');
  await invite.getByLabel('Their name').fill('Dr Amara Neuro');
  await invite.getByRole('button', { name: 'Invite' }).click();
  // No mail server in these tests: Ada is given the link to send.
  const link = await invite.locator('code').textContent();
  assert.match(link, /\/invite#wsi_/);
  // A second invitation of the same specialist (as by another patient) is taken up by
  // the account the first one made.
  await invite.getByLabel('Their e-mail address').fill('amara@neuro.example');
  await invite.getByLabel('Their name').fill('Dr Amara Neuro');
  await invite.getByRole('button', { name: 'Invite' }).click();
  await invite.locator('code', { hasNotText: link }).waitFor();
  const secondLink = await invite.locator('code').textContent();
  await patientPage.context().close();

  const invited = await newPage();
  await invited.goto(link);
  await invited.getByLabel('User name').fill('dr.neuro');
  await invited.getByLabel('Password').fill('lantern over the quiet harbour');
  await invited.getByRole('button', { name: 'Make my account' }).click();
  await invited.getByText('Your account is ready.').waitFor();
  await invited.goto('about:blank');
  await invited.goto(secondLink);
  await invited.getByRole('link', { name: 'Log in to add this invitation to it' }).click();
  await invited.getByLabel('Username').fill('dr.neuro');
  await invited.getByLabel('Password').fill('lantern over the quiet harbour');
  await invited.getByRole('button', { name: 'Log in' }).click();
  await invited.getByRole('button', { name: 'Add this invitation to my account (dr.neuro)' }).click();
  await invited.getByText('The invitation is on your account.').waitFor();
  await invited.getByRole('link', { name: 'Go on' }).click();
  await invited.waitForURL('**/shared');
  await invited.getByText('No patient shares data with you at the moment.').waitFor();
  await invited.context().close();
});

test('a patient makes a share link; someone without an account opens it once with the passcode', async () => {
  const patientPage = await newPage();
  await uiLogin(patientPage, 'ada', PASSWORD);
  await patientPage.waitForURL('**/me');
  const sharing = patientPage.getByTestId('sharing');
  await sharing.getByLabel('Instead, a link with a passcode').check();
  await sharing.getByLabel('It opens once').check();
  await sharing.getByLabel('Glucose and the CGM report').check();
  await sharing.getByRole('button', { name: 'Share', exact: true }).click();
  const shown = sharing.getByTestId('share-link');
  await shown.waitFor();
  const [address, passcode] = await shown.locator('code').allTextContents();
  assert.match(address, /\/s#wsl_/);
  await patientPage.context().close();

  // Someone without an account: the passcode first, wrong, then right.
  const viewer = await newPage();
  await viewer.goto(address);
  await viewer.getByLabel('Passcode').fill('WRONGPASS2');
  await viewer.getByRole('button', { name: 'Open' }).click();
  await viewer.getByText('wrong passcode: 4 of 5 attempts left').waitFor();
  await viewer.getByLabel('Passcode').fill(passcode);
  await viewer.getByRole('button', { name: 'Open' }).click();
  const record = viewer.getByTestId('shared-record');
  await record.getByRole('heading', { name: 'Shared by Ada Lovelace' }).waitFor();
  await record.locator(`section[data-code="${CGM}"]`).waitFor();
  assert.equal(await record.locator(`section[data-code="${HR}"]`).count(), 0, 'no heart rate');
  // It was for one use.
  await viewer.reload();
  await viewer.getByLabel('Passcode').fill(passcode);
  const logged = consoleErrors.length;
  await viewer.getByRole('button', { name: 'Open' }).click();
  await viewer.getByText('this link was for one use, and it has been used').waitFor();
  // The browser logs the refused request (410 Gone); it is the expected outcome here.
  consoleErrors.splice(logged).filter((text) => !/status of 410/.test(text)).forEach((text) => consoleErrors.push(text));
  await viewer.context().close();
});

test('a screen whose session ends elsewhere goes to the login page and says so', async () => {
  const page = await newPage();
  await uiLogin(page, 'dr.grey', PASSWORD);
  await page.waitForURL('**/ward');
  await page.getByText('● Live').first().waitFor();
  // The session ends without this page doing anything (as at the idle timeout, or a
  // logout in another tab): its live stream ends, and the page learns why.
  const cookie = (await page.context().cookies()).find((entry) => entry.name === 'wardline_session');
  assert.ok(cookie, 'the session cookie');
  await ok(server, 'POST', '/api/v1/auth/logout', { token: cookie.value });
  await page.waitForURL('**/login?ended=**', { timeout: 10_000 });
  await page.getByText('Your session has ended. Log in again to go on.').waitFor();
  await page.context().close();
});

test('a clinician outside the team opens emergency access with a reason, and an admin reviews it', async () => {
  await ok(server, 'POST', '/api/v1/users', {
    token: admin,
    body: { username: 'dr.cover', display_name: 'Dr Night Cover', role: 'clinician', password: PASSWORD, password_change_required: false },
  });
  const page = await newPage();
  await uiLogin(page, 'dr.cover', PASSWORD);
  await page.waitForURL('**/ward');
  await page.goto(`${server.url}/patients/${ada.id}`);
  await page.getByRole('heading', { name: 'Access refused (403)' }).waitFor();
  const reason = 'called to a cardiac arrest on ward 4 overnight';
  await page.getByLabel('Reason').fill(reason);
  await page.getByRole('button', { name: 'Open emergency access' }).click();
  await page.getByTestId('patient-name').waitFor();
  assert.equal(await page.getByTestId('patient-name').textContent(), 'Ada Lovelace');
  await page.getByText('you can read this record, not change it').waitFor();
  await page.context().close();

  const review = await newPage();
  await uiLogin(review, 'admin', server.adminPassword);
  await review.waitForURL('**/admin/users');
  await review.getByRole('link', { name: 'Emergency access' }).click();
  const row = review.getByRole('row', { name: /dr\.cover/ });
  await row.waitFor();
  assert.match(await row.textContent(), /Ada Lovelace/);
  assert.match(await row.textContent(), /cardiac arrest on ward 4/);
  await row.getByRole('textbox').fill('confirmed with the ward 4 charge nurse');
  await row.getByRole('button', { name: 'Mark reviewed' }).click();
  await review.getByText('Every emergency access has been reviewed.').waitFor();
  await review.context().close();
});

test('a hung server turns "Live" into a stale warning within seconds, and back when it answers again', async () => {
  const page = await newPage();
  await uiLogin(page, 'dr.grey', PASSWORD);
  await page.waitForURL('**/ward');
  const badge = page.locator('.live-badge');
  await badge.getByText('● Live').waitFor();
  const logged = consoleErrors.length;
  const frozenAt = Date.now();
  server.pause();
  try {
    // Three missed heartbeats (15 s), not the 90 s it took before.
    await page.locator('.live-badge[data-state="stale"]', { hasText: 'No contact with the server' }).waitFor({ timeout: 25_000 });
    const seconds = (Date.now() - frozenAt) / 1000;
    assert.ok(seconds < 25, `stale after ${seconds} s`);
    assert.equal(await page.getByText('● Live').count(), 0, 'nothing says Live while the server is silent');
  } finally {
    server.resume();
  }
  await badge.getByText('● Live').waitFor({ timeout: 20_000 });
  // A reading sent after the hang reaches the ward without reload.
  await reading(devices.oximeter, '59408-5', 93, '%');
  const row = page.getByTestId('ward-table').locator(`tr[data-patient-id="${ada.id}"]`);
  await row.locator('li[data-code="59408-5"] .value', { hasText: '93' }).waitFor({ timeout: 10_000 });
  // The browser logs the reconnections it tried while the server was frozen.
  consoleErrors.splice(logged).filter((text) => !/EventSource|event stream|net::ERR|status of 5/.test(text)).forEach((text) => consoleErrors.push(text));
  await page.context().close();
});

test('a logout in one tab ends the app in the others at once', async () => {
  const first = await newPage();
  await uiLogin(first, 'dr.grey', PASSWORD);
  await first.waitForURL('**/ward');
  // A second tab of the same browser: the same session.
  const second = await first.context().newPage();
  await second.goto(`${server.url}/ward`);
  await second.getByText('● Live').first().waitFor();
  await first.getByRole('button', { name: 'Log out' }).click();
  await first.waitForURL('**/login');
  // The other tab hears it from the first (a broadcast between tabs) or from the server,
  // which ends the session's streams: whichever comes first, within seconds.
  await second.waitForURL(/\/login\?ended=(logout|ended)/, { timeout: 5000 });
  await second.getByText(/You logged out in another tab or window\.|Your session has ended\./).waitFor();
  await first.context().close();
});

test('no errors in the browser console', () => {
  assert.deepEqual(consoleErrors, []);
});
