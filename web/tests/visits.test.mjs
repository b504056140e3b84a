// Browser tests of video visits: the real server, the real app, two people in Debian's
// Chromium with fake cameras and microphones, their browsers sending real media to each
// other over WebRTC (directly, and then only through a coturn TURN server). Run by
// `npm test` after browser.test.mjs; alone: `node --test tests/visits.test.mjs`.
// WARDLINE_BIN: the wardline binary (default ../target/debug/wardline); CHROMIUM: the
// browser (default /usr/bin/chromium); TURNSERVER: coturn (default /usr/bin/turnserver).
// WARDLINE_BROWSER=firefox runs them in Firefox ESR instead (FIREFOX: its binary).
//
// Media flow is checked with the browsers' own statistics: the tests wrap
// RTCPeerConnection before the app loads (an init script, outside the app) and read
// getStats() of every connection the page made.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import dgram from 'node:dgram';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, firefox } from 'playwright-core';
import { adminSession, ok, startServer } from './server.mjs';

const PASSWORD = 'correct horse battery staple';
const ADMIN_PASSWORD = 'quiet harbour lamps at dawn';
const TURNSERVER = process.env.TURNSERVER ?? '/usr/bin/turnserver';
const SYSTOLIC = '8480-6';
const DIASTOLIC = '8462-4';

const consoleErrors = [];
// Screenshots of the visit pages, only when asked for (WARDLINE_VISIT_SCREENSHOTS=folder).
const screenshots = process.env.WARDLINE_VISIT_SCREENSHOTS;
const snap = (page, name) => (screenshots ? page.screenshot({ path: path.join(screenshots, name), fullPage: true, caret: 'initial' }) : undefined);
const browsers = [];
const servers = [];
let main; // the first server and its people

/** Everything one test server needs: a patient with a cuff in a clinician's care, and a patient of another team. */
async function setUp(server) {
  const admin = await adminSession(server, ADMIN_PASSWORD);
  const as = (token) => ({
    get: (urlPath) => ok(server, 'GET', urlPath, { token }),
    post: (urlPath, body) => ok(server, 'POST', urlPath, { token, body }),
    put: (urlPath, body) => ok(server, 'PUT', urlPath, { token, body }),
  });
  const adminApi = as(admin);
  const ada = await adminApi.post('/api/v1/patients', { display_name: 'Ada Lovelace', mrn: 'MRN-1815', birth_date: '1952-12-10' });
  const bob = await adminApi.post('/api/v1/patients', { display_name: 'Bob Brown', mrn: 'MRN-2001' });
  const ward = await adminApi.post('/api/v1/care-teams', { name: 'Cardiology ward' });
  const other = await adminApi.post('/api/v1/care-teams', { name: 'Respiratory ward' });
  const grey = await adminApi.post('/api/v1/users', { username: 'dr.grey', display_name: 'Dr Meredith Grey', role: 'clinician', password: PASSWORD, password_change_required: false });
  await adminApi.post('/api/v1/users', { username: 'ada', display_name: 'Ada Lovelace', role: 'patient', patient_id: ada.id, password: PASSWORD, password_change_required: false });
  await adminApi.post('/api/v1/users', { username: 'bob', display_name: 'Bob Brown', role: 'patient', patient_id: bob.id, password: PASSWORD, password_change_required: false });
  const joy = await adminApi.post('/api/v1/users', { username: 'nurse.joy', display_name: 'Nurse Joy Okafor', role: 'nurse', password: PASSWORD, password_change_required: false });
  await adminApi.post(`/api/v1/care-teams/${ward.id}/members`, { user_id: grey.user.id });
  await adminApi.post(`/api/v1/care-teams/${ward.id}/members`, { user_id: joy.user.id });
  await adminApi.post(`/api/v1/care-teams/${ward.id}/patients`, { patient_id: ada.id });
  await adminApi.post(`/api/v1/care-teams/${other.id}/patients`, { patient_id: bob.id });
  const enrolled = await adminApi.post('/api/v1/devices', { kind: 'blood_pressure_cuff', model: 'Test cuff', serial: `SN-cuff-${randomBytes(4).toString('hex')}` });
  await adminApi.post(`/api/v1/devices/${enrolled.device.id}/assignments`, { patient_id: ada.id, from: new Date(Date.now() - 5 * 86_400_000).toISOString() });
  const cuff = { id: enrolled.device.id, secret: enrolled.secret };
  const { token: greyToken } = await ok(server, 'POST', '/api/v1/auth/login', { body: { username: 'dr.grey', password: PASSWORD } });
  const clinician = as(greyToken);
  // Ada is on the diabetes programme: a care plan with thresholds to change in the visit.
  await clinician.put(`/api/v1/patients/${ada.id}/care-plan`, { program: 'diabetes', reason: 'enrolled in remote monitoring' });
  let seq = 1;
  const bloodPressure = (systolic, diastolic) => {
    const time = new Date().toISOString();
    return ok(server, 'POST', `/api/v1/devices/${cuff.id}/readings`, {
      token: cuff.secret,
      body: { v: 1, readings: [
        { seq: seq++, code: SYSTOLIC, value: systolic, unit: 'mm[Hg]', time },
        { seq: seq++, code: DIASTOLIC, value: diastolic, unit: 'mm[Hg]', time },
      ] },
    });
  };
  await bloodPressure(128, 84);
  return { server, admin, ada, bob, greyId: grey.user.id, joyId: joy.user.id, clinician, bloodPressure };
}

/** A visit that starts in two minutes (the room is open from 15 minutes before). */
async function scheduleSoon(people, reason = 'Review of blood pressure') {
  return people.clinician.post(`/api/v1/patients/${people.ada.id}/visits`, {
    start: new Date(Date.now() + 2 * 60_000).toISOString(),
    duration_minutes: 20,
    reason,
  });
}

const browserName = process.env.WARDLINE_BROWSER ?? 'chromium';
/** How soon video must be decoded on both sides, directly and through the relay (Firefox's fake camera starts slower). */
const DIRECT_VIDEO_MS = browserName === 'firefox' ? 20_000 : 10_000;
const RELAY_VIDEO_MS = browserName === 'firefox' ? 25_000 : 15_000;

function launch(server) {
  if (browserName === 'firefox') {
    // Debian's Firefox ESR, with its fake camera and microphone, allowed without asking.
    return firefox.launch({
      channel: 'moz-firefox',
      executablePath: process.env.FIREFOX ?? '/usr/bin/firefox-esr',
      headless: true,
      firefoxUserPrefs: {
        'media.navigator.streams.fake': true,
        'media.navigator.permission.disabled': true,
        'media.autoplay.default': 0,
        'media.peerconnection.ice.loopback': true,
      },
    });
  }
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--ignore-certificate-errors-spki-list=${server.caSpki}`,
      // A camera and a microphone that make a test pattern and a tone, allowed without asking.
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      // Both browsers are on this machine: let them reach each other on loopback too, by
      // address (no mDNS names, which a test machine may not resolve).
      '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
      // Both tabs of a call stay "visible" and keep their timers running.
      '--disable-renderer-backgrounding', '--disable-background-timer-throttling', '--disable-backgrounding-occluded-windows',
    ],
  });
}

/** A page of its own (cookies and all), with every RTCPeerConnection it makes kept for the test. */
async function newPage(browser, options = {}) {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 }, locale: 'en-GB', timezoneId: 'UTC',
    // Firefox has no switch to trust the server's own CA (see browser.test.mjs).
    ignoreHTTPSErrors: browserName === 'firefox',
  });
  await context.addInitScript(({ denyCamera }) => {
    const Native = window.RTCPeerConnection;
    const made = [];
    Object.defineProperty(window, '__testPeerConnections', { value: made });
    window.RTCPeerConnection = class extends Native {
      constructor(...args) {
        super(...args);
        made.push(this);
      }
    };
    if (denyCamera && navigator.mediaDevices) {
      // As when the person says no to the browser's question.
      navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
    }
  }, { denyCamera: Boolean(options.denyCamera) });
  const page = await context.newPage();
  page.on('pageerror', (error) => consoleErrors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    // Refused requests are expected where access is refused (403) or the room is closed (409).
    if (message.type() === 'error' && !/status of 40[13489]/.test(message.text())) consoleErrors.push(message.text());
  });
  return page;
}

async function uiLogin(page, server, username) {
  await page.goto(`${server.url}/login`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL((url) => url.pathname !== '/login');
}

/** Every live connection of the page, as its statistics say: frames decoded, the selected path. */
function mediaStats(page) {
  return page.evaluate(async () => {
    const out = [];
    for (const pc of window.__testPeerConnections) {
      if (pc.connectionState === 'closed') continue;
      const reports = [];
      (await pc.getStats()).forEach((report) => reports.push(report));
      const byId = new Map(reports.map((report) => [report.id, report]));
      const frames = reports.filter((report) => report.type === 'inbound-rtp' && report.kind === 'video').reduce((sum, report) => sum + (report.framesDecoded ?? 0), 0);
      const audio = reports.filter((report) => report.type === 'inbound-rtp' && report.kind === 'audio').reduce((sum, report) => sum + (report.packetsReceived ?? 0), 0);
      const transport = reports.find((report) => report.type === 'transport' && report.selectedCandidatePairId);
      const pair = (transport && byId.get(transport.selectedCandidatePairId)) ?? reports.find((report) => report.type === 'candidate-pair' && report.state === 'succeeded' && report.nominated);
      out.push({
        state: pc.connectionState,
        policy: pc.getConfiguration().iceTransportPolicy,
        frames,
        audioPackets: audio,
        pairState: pair?.state ?? null,
        local: pair ? byId.get(pair.localCandidateId)?.candidateType ?? null : null,
        remote: pair ? byId.get(pair.remoteCandidateId)?.candidateType ?? null : null,
      });
    }
    return out;
  });
}

/** Waits until the page's one connection decodes video, and keeps decoding; returns its stats. */
async function waitForVideo(page, who, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let first = null;
  let last = [];
  while (Date.now() < deadline) {
    last = await mediaStats(page);
    const live = last.filter((stats) => stats.state === 'connected' && stats.frames > 0);
    if (live.length) {
      if (first === null) first = live[0].frames;
      else if (live[0].frames > first + 10) return live[0];
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${who}: no video decoded within ${timeoutMs} ms: ${JSON.stringify(last)}`);
}

/** Opens the visit's room from the visits list, as a person does (the Join link). */
async function joinFromList(page, server, visitId) {
  await page.goto(`${server.url}/visits`);
  const row = page.locator(`tr[data-visit-id="${visitId}"]`);
  await row.waitFor();
  // The room loads as a page of its own: its address has the camera allowed, no other does.
  await page.evaluate(() => { window.__sameDocument = true; });
  const [response] = await Promise.all([
    page.waitForResponse((candidate) => new URL(candidate.url()).pathname === `/visits/${visitId}/room` && candidate.request().resourceType() === 'document'),
    row.getByTestId('join-visit').click(),
  ]);
  assert.match(response.headers()['permissions-policy'], /camera=\(self\), microphone=\(self\)/);
  await page.getByTestId('room').waitFor();
  assert.equal(await page.evaluate(() => window.__sameDocument), undefined, 'the room was loaded as a page of its own');
}

before(async () => {
  const server = await startServer();
  servers.push(server);
  main = await setUp(server);
  main.browser = await launch(server);
  browsers.push(main.browser);
});

after(async () => {
  for (const browser of browsers) await browser.close().catch(() => {});
  for (const server of servers) await server.stop().catch(() => {});
});

let clinicianPage;
let patientPage;
let visit;

test('a clinician schedules a visit; both join; video flows both ways; live vitals, care plan, note, order and chat in the room', async () => {
  const { server, ada } = main;
  clinicianPage = await newPage(main.browser);
  await uiLogin(clinicianPage, server, 'dr.grey');
  // Scheduling from the patient's page, two minutes from now.
  await clinicianPage.goto(`${server.url}/patients/${ada.id}`);
  const form = clinicianPage.getByTestId('schedule-visit');
  await form.waitFor();
  const start = new Date(Date.now() + 2 * 60_000);
  await form.getByLabel('Start (your local time)').fill(start.toISOString().slice(0, 16));
  assert.equal(await form.getByLabel('Duration (minutes)').inputValue(), '20', 'twenty minutes unless changed');
  await form.getByLabel('Reason (shown to the patient)').fill('Review of blood pressure and glucose');
  // A colleague of the care team attends too.
  await form.getByTestId('attendees').getByLabel('Nurse Joy Okafor (nurse)').check();
  await form.getByRole('button', { name: 'Schedule visit' }).click();
  await clinicianPage.getByTestId('patient-visits').getByText('Visit scheduled for').waitFor();
  const visits = await main.clinician.get(`/api/v1/patients/${ada.id}/visits`);
  visit = visits.find((candidate) => candidate.reason === 'Review of blood pressure and glucose');
  assert.ok(visit, 'the visit was scheduled');
  assert.deepEqual(visit.attendees.map((attendee) => attendee.user_id), [main.greyId, main.joyId]);

  patientPage = await newPage(main.browser);
  await uiLogin(patientPage, server, 'ada');
  // The patient finds it under Visits, with the Join link (the room is open already).
  await patientPage.getByRole('link', { name: 'Visits' }).click();
  await patientPage.locator(`tr[data-visit-id="${visit.id}"]`).getByTestId('join-visit').waitFor();
  // She asks for reminders by e-mail.
  const reminders = patientPage.getByTestId('visit-reminders');
  await reminders.getByLabel('E-mail address').fill('ada@example.org');
  await reminders.getByRole('button', { name: 'Save' }).click();
  await reminders.getByText('Reminders go to ada@example.org.').waitFor();

  const joined = Date.now();
  await joinFromList(clinicianPage, server, visit.id);
  await joinFromList(patientPage, server, visit.id);

  // Both receive video, as their browsers' statistics say.
  const [toClinician, toPatient] = await Promise.all([
    waitForVideo(clinicianPage, 'clinician', DIRECT_VIDEO_MS),
    waitForVideo(patientPage, 'patient', DIRECT_VIDEO_MS),
  ]);
  console.log(`# direct call: video decoded on both sides ${Date.now() - joined} ms after joining (paths ${toClinician.local}/${toClinician.remote}, ${toPatient.local}/${toPatient.remote})`);
  assert.ok(toClinician.audioPackets > 0 && toPatient.audioPackets > 0, 'sound flows too');
  // The page shows the same in its own attribute, and the other's name.
  await clinicianPage.waitForFunction(() => Number(document.querySelector('[data-testid="remote-video"]')?.dataset.framesDecoded) > 0);
  assert.match(await clinicianPage.getByTestId('remote-tile').textContent(), /Ada Lovelace/);
  assert.match(await patientPage.getByTestId('remote-tile').textContent(), /Dr Meredith Grey/);
  assert.equal(await clinicianPage.getByTestId('remote-video').getAttribute('data-connection'), 'connected');
  assert.match(await clinicianPage.getByTestId('presence').textContent(), /You, Ada Lovelace|Ada Lovelace/);

  // The clinician reloads the page: the connection is made anew, and video flows again.
  await clinicianPage.reload();
  await clinicianPage.getByTestId('room').waitFor();
  await Promise.all([
    waitForVideo(clinicianPage, 'clinician after reloading', DIRECT_VIDEO_MS),
    waitForVideo(patientPage, 'patient after the clinician reloaded', DIRECT_VIDEO_MS),
  ]);
  assert.equal((await mediaStats(patientPage)).length, 1, 'the connection to the page left behind is closed');
  // The reloaded page is in the room (the old page's leaving, which the server may
  // record after the new page entered, does not leave it out for long).
  const inRoom = async () => (await main.clinician.get(`/api/v1/visits/${visit.id}`)).presence.some((span) => span.user_id === main.greyId && !span.left);
  for (let tries = 0; !(await inRoom()); tries++) {
    assert.ok(tries < 40, 'the clinician is in the room again after reloading');
    await new Promise((resolve) => setTimeout(resolve, 250));
  }

  // Ada mutes her microphone: the clinician's side says so.
  await patientPage.getByRole('button', { name: 'Mute' }).click();
  assert.equal(await patientPage.getByRole('button', { name: 'Mute' }).getAttribute('aria-pressed'), 'true');
  await clinicianPage.getByTestId('remote-tile').getByText('microphone muted').waitFor({ timeout: 5000 });
  await patientPage.getByRole('button', { name: 'Mute' }).click();
  await clinicianPage.getByTestId('remote-tile').getByText('microphone muted').waitFor({ state: 'detached', timeout: 5000 });
  // A participant whose side receives badly says so (its `quality` signal), and the
  // other side shows it. Sent here from Ada's page as her browser would.
  const session = await patientPage.getByTestId('room').getAttribute('data-session');
  await patientPage.evaluate(async ({ visitId, to, session: from }) => {
    const response = await fetch(`/api/v1/visits/${visitId}/room/signal`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Wardline-Request': '1' },
      body: JSON.stringify({ kind: 'quality', to, data: { session: from, poor: true, reasons: ['packet loss 12 %'], camera: true, microphone: true } }),
    });
    if (response.status !== 204) throw new Error(`signal: ${response.status}`);
  }, { visitId: visit.id, to: main.greyId, session });
  const warning = clinicianPage.getByTestId('quality-warning');
  await warning.getByText('The connection with Ada Lovelace is poor (packet loss 12 %)').waitFor({ timeout: 5000 });
  assert.equal(await clinicianPage.getByTestId('remote-video').getAttribute('data-quality'), 'poor');

  // A blood pressure reading from Ada's cuff during the call reaches the clinician's
  // room within a second.
  const vitals = clinicianPage.getByTestId('room-vitals');
  await vitals.getByText('● Live').waitFor();
  await vitals.getByTestId(`value-${SYSTOLIC}`).filter({ hasText: '128' }).waitFor();
  const sent = Date.now();
  await main.bloodPressure(151, 93);
  await vitals.getByTestId(`value-${SYSTOLIC}`).filter({ hasText: '151' }).waitFor({ timeout: 5000 });
  const shownAfter = Date.now() - sent;
  await vitals.getByTestId(`value-${DIASTOLIC}`).filter({ hasText: '93' }).waitFor({ timeout: 1000 });
  console.log(`# a reading reached the clinician's room ${shownAfter} ms after the device sent it`);
  assert.ok(shownAfter <= 1000, `the reading took ${shownAfter} ms to appear`);
  // Today's trend beside the latest values: the day's systolic pressures, the new one too.
  await vitals.locator(`li[data-code="${SYSTOLIC}"] button`).click();
  await clinicianPage.waitForFunction(() => {
    const host = document.querySelector('[data-testid="room-trend"] [data-testid="trend-chart"]');
    return host?.dataset.state === 'ready' && Number(host.dataset.points) >= 2;
  }, null, { timeout: 10_000 });
  // The patient's "what your clinician sees" shows it too.
  await patientPage.getByTestId('room-vitals').getByTestId(`value-${SYSTOLIC}`).filter({ hasText: '151' }).waitFor({ timeout: 5000 });

  // The care plan changed in the visit: in force at once, linked to the visit.
  const plan = clinicianPage.getByTestId('care-plan');
  await plan.getByRole('button', { name: 'Change low glucose', exact: true }).click();
  const editor = clinicianPage.getByTestId('rule-editor');
  // Cleared first: Firefox adds to a number field's text rather than replacing it.
  await editor.getByLabel('Limit (mg/dL)').clear();
  await editor.getByLabel('Limit (mg/dL)').fill('72');
  await editor.getByLabel('Reason for the change (required)').fill('Lows overnight: alert a little earlier');
  await editor.getByRole('button', { name: 'Save change' }).click();
  await plan.getByText('Saved as care plan version 2').waitFor();
  await plan.getByTestId('visit-care-plan-versions').filter({ hasText: 'care plan version 2' }).waitFor();
  // The plan shown is read again after the save: the new threshold is there.
  await plan.locator('tr[data-rule-id="low"]', { hasText: 'below 72 mg/dL' }).waitFor();
  const current = await main.clinician.get(`/api/v1/patients/${ada.id}/care-plan`);
  assert.equal(current.version, 2);
  assert.equal(current.plan.rules.find((rule) => rule.id === 'low').kind.value, 72, 'the new threshold is in force');
  assert.match(current.reason, new RegExp(`Visit .*${visit.id}.*Lows overnight`), 'the version names the visit');
  const linked = await main.clinician.get(`/api/v1/visits/${visit.id}`);
  assert.deepEqual(linked.visit.care_plan_versions, [2]);
  await snap(clinicianPage, 'room-clinician.png');
  await snap(patientPage, 'room-patient.png');

  // Chat, both ways.
  await clinicianPage.getByTestId('chat-form').getByLabel('Message').fill('Good morning Ada, can you hear me?');
  await clinicianPage.getByTestId('chat-form').getByRole('button', { name: 'Send' }).click();
  await patientPage.getByTestId('chat-messages').getByText('Good morning Ada, can you hear me?').waitFor({ timeout: 5000 });
  await patientPage.getByTestId('chat-form').getByLabel('Message').fill('Yes, loud and clear');
  await patientPage.keyboard.press('Enter');
  await clinicianPage.getByTestId('chat-messages').getByText('Yes, loud and clear').waitFor({ timeout: 5000 });
  assert.equal(await clinicianPage.getByTestId('chat-messages').locator('li').count(), 2, 'each message once');

  // A treatment order written in the room reaches the patient's side.
  const order = clinicianPage.getByTestId('order-form');
  await order.getByLabel('Medication').fill('Amlodipine');
  await order.getByLabel('Dose').fill('5 mg');
  await order.getByLabel('Frequency').fill('once a day, in the morning');
  await order.getByLabel('Instructions for the patient').fill('Take with water. Measure your blood pressure each morning.');
  await order.getByRole('button', { name: 'Write order' }).click();
  await order.getByText('Ordered: Amlodipine 5 mg').waitFor();
  await patientPage.getByTestId('room-orders').getByText('Amlodipine').waitFor({ timeout: 5000 });

  // The note, written and signed in the room.
  const note = clinicianPage.getByTestId('room-note');
  await note.getByLabel('Findings').fill('BP 151/93 on the home cuff; no symptoms.');
  await note.getByLabel('Plan').fill('Start amlodipine 5 mg; review in two weeks.');
  await note.getByRole('button', { name: 'Sign note' }).click();
  await note.getByTestId('note-signed').waitFor();
  // The patient sees the summary in the room as soon as it is signed...
  await patientPage.getByTestId('room-note').getByText('Start amlodipine 5 mg; review in two weeks.').waitFor({ timeout: 5000 });
  // ...and on the visit's page (a page load: the room's page is left behind).
  await patientPage.goto(`${server.url}/visits/${visit.id}`);
  const summary = patientPage.getByTestId('visit-note');
  await summary.getByText('Visit summary').waitFor();
  assert.equal(await summary.getAttribute('data-signed'), 'true');
  assert.match(await summary.textContent(), /BP 151\/93 on the home cuff/);
  assert.match(await patientPage.getByTestId('visit-orders').textContent(), /Amlodipine — 5 mg, once a day/);
  await snap(patientPage, 'visit-patient.png');
  // And the treatment on her own page.
  await patientPage.goto(`${server.url}/me`);
  await patientPage.getByTestId('treatment').getByText('Amlodipine').waitFor();
  // The patient left: the clinician's side says so.
  await clinicianPage.getByTestId('remote-tile').waitFor({ state: 'detached', timeout: 10_000 });
  await clinicianPage.getByTestId('waiting').filter({ hasText: 'Waiting for Ada Lovelace' }).waitFor();
  await patientPage.context().close();
});

test('a patient whose browser refuses the camera is told so, still sees the clinician, and the chat works', async () => {
  const { server } = main;
  const page = await newPage(main.browser, { denyCamera: true });
  await uiLogin(page, server, 'ada');
  await page.goto(`${server.url}/visits/${visit.id}/room`);
  const message = page.getByTestId('media-message');
  await message.getByText('did not allow this page to use the camera and the microphone').waitFor();
  assert.equal(await page.getByTestId('room').getAttribute('data-media'), 'refused');
  await message.getByRole('button', { name: 'Try again' }).waitFor();
  // She still receives the clinician's video (her side only receives).
  await waitForVideo(page, 'patient without camera', DIRECT_VIDEO_MS);
  await snap(page, 'room-camera-refused.png');
  await page.getByTestId('chat-form').getByLabel('Message').fill('My camera does not work, sorry');
  await page.getByTestId('chat-form').getByRole('button', { name: 'Send' }).click();
  await clinicianPage.getByTestId('chat-messages').getByText('My camera does not work, sorry').waitFor({ timeout: 5000 });
  // She leaves with the button; the clinician's side sees her go.
  await page.getByTestId('leave').click();
  await page.getByTestId('room-ended').getByText('You left the visit.').waitFor();
  await clinicianPage.getByTestId('remote-tile').waitFor({ state: 'detached', timeout: 10_000 });
  await page.context().close();
});

test('a patient of another team opening the room is refused, with no video', async () => {
  const { server } = main;
  const page = await newPage(main.browser);
  await uiLogin(page, server, 'bob');
  await page.goto(`${server.url}/visits/${visit.id}/room`);
  await page.getByTestId('room-refused').getByText('You cannot join this visit').waitFor();
  assert.equal(await page.locator('video').count(), 0);
  assert.deepEqual(await mediaStats(page), [], 'no connection was made');
  await snap(page, 'room-refused.png');
  await page.context().close();
});

test('the monitoring timer records time, a correction adds some, and the ledger shows it', async () => {
  const { server, ada } = main;
  const page = clinicianPage;
  // The clinician leaves the room; the stay counts as monitoring time.
  await page.getByTestId('leave').click();
  await page.getByTestId('room-ended').waitFor();
  await page.goto(`${server.url}/patients/${ada.id}`);
  const timer = page.getByTestId('monitoring-timer');
  await timer.waitFor();
  assert.equal(await timer.getAttribute('data-state'), 'running');
  await page.waitForTimeout(2500);
  const [response] = await Promise.all([
    page.waitForResponse((candidate) => candidate.url().endsWith(`/api/v1/patients/${ada.id}/monitoring-time`) && candidate.request().method() === 'POST'),
    timer.getByRole('button', { name: 'Pause' }).click(),
  ]);
  assert.equal(response.status(), 201);
  const stretch = await response.json();
  assert.equal(stretch.source, 'timer');
  assert.ok(stretch.seconds >= 2 && stretch.seconds <= 10, `a stretch of ${stretch.seconds} s`);
  assert.equal(await timer.getAttribute('data-state'), 'paused');
  // A correction, with its reason.
  await timer.getByText('Correct the recorded time').click();
  const correction = timer.getByTestId('timer-correction');
  await correction.getByLabel('Minutes (negative to take away)').fill('20');
  await correction.getByLabel('Reason').fill('Phone call with the patient, not on this page');
  await correction.getByRole('button', { name: 'Record correction' }).click();
  await correction.getByText('Correction recorded: +20:00').waitFor();

  await snap(page, 'patient-timer.png');
  await page.getByRole('link', { name: 'RPM ledger' }).click();
  const row = page.getByTestId('ledger-table').locator(`tr[data-patient-id="${ada.id}"]`);
  await row.waitFor();
  assert.ok(Number(await row.getByTestId('month-minutes').textContent()) >= 20, 'the correction counts');
  assert.ok(Number(await row.getByTestId('month-contacts').textContent()) >= 1, 'the visit was an interactive contact');
  assert.ok(Number(await row.getByTestId('device-days').textContent()) >= 1);
  assert.match(await page.locator('main').textContent(), /billing decisions? stays? .*people|stays a decision for people/);
  await snap(page, 'ledger.png');
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('ledger-csv').click()]);
  const csv = readFileSync(await download.path(), 'utf8');
  assert.match(csv, /Ada Lovelace/);
  await page.context().close();
});

test('the care team manages visits from their pages: an addendum, completing one, moving and cancelling another', async () => {
  const { server } = main;
  const page = await newPage(main.browser);
  await uiLogin(page, server, 'dr.grey');
  await page.goto(`${server.url}/visits/${visit.id}`);
  const note = page.getByTestId('visit-note');
  await note.getByTestId('note-signed').waitFor();
  // A signed note is read-only; what comes later is an addendum.
  assert.equal(await note.getByLabel('Findings').count(), 0);
  await note.getByLabel('Addendum').fill('Lab results came back normal.');
  await note.getByRole('button', { name: 'Add addendum' }).click();
  await note.getByTestId('addenda').getByText('Lab results came back normal.').waitFor();
  await page.getByTestId('visit-actions').getByRole('button', { name: 'Mark completed' }).click();
  await page.getByTestId('visit-details').locator('[data-testid="visit-status"][data-status="completed"]').waitFor();
  assert.equal(await page.getByTestId('join-visit').count(), 0, 'no Join link once completed');
  assert.equal((await main.clinician.get(`/api/v1/visits/${visit.id}`)).visit.status, 'completed');

  const other = await scheduleSoon(main, 'Medication review');
  await page.goto(`${server.url}/visits/${other.id}`);
  const actions = page.getByTestId('visit-actions');
  await actions.waitFor();
  assert.equal(await actions.getByRole('button', { name: 'Mark no-show' }).isDisabled(), true, 'no-show only after the start');
  const tomorrow = new Date(Date.now() + 86_400_000);
  tomorrow.setUTCHours(9, 30, 0, 0);
  await actions.getByLabel('New start (your local time)').fill(tomorrow.toISOString().slice(0, 16));
  await actions.getByRole('button', { name: 'Move visit' }).click();
  await page.getByTestId('visit-message').getByText('Visit moved to').waitFor();
  assert.equal(Date.parse((await main.clinician.get(`/api/v1/visits/${other.id}`)).visit.start), tomorrow.getTime());
  // Not open yet: the page says when the room opens instead of offering to join.
  await page.getByTestId('visit-details').getByText('Room opens').waitFor();
  // A cancellation needs its reason.
  await actions.getByRole('button', { name: 'Cancel visit' }).click();
  await actions.getByText('A cancellation says why').waitFor();
  await actions.getByLabel('Reason for cancelling').fill('Patient admitted to hospital');
  await actions.getByRole('button', { name: 'Cancel visit' }).click();
  await page.getByTestId('visit-details').locator('[data-testid="visit-status"][data-status="cancelled"]').waitFor();
  assert.match(await page.getByTestId('visit-details').textContent(), /Patient admitted to hospital/);
  await snap(page, 'visit-cancelled.png');
  // Neither is upcoming any more.
  await page.getByRole('link', { name: 'Visits' }).click();
  await page.getByTestId('no-visits').waitFor();
  await page.context().close();
});

// ---------------------------------------------------------------------------------------
// Through a TURN server only

/** A free port on loopback (TCP and UDP both, for coturn's listener). */
async function freePort() {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const probe = net.createServer();
      probe.once('error', reject);
      probe.listen(0, '127.0.0.1', () => {
        const { port: chosen } = probe.address();
        probe.close(() => resolve(chosen));
      });
    });
    const udpFree = await new Promise((resolve) => {
      const socket = dgram.createSocket('udp4');
      socket.once('error', () => resolve(false));
      socket.bind(port, '127.0.0.1', () => socket.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
}

/** Starts coturn on loopback with a shared secret (TURN REST credentials); resolves once it listens. */
async function startTurn(secret) {
  const port = await freePort();
  // Relay ports: a small range away from the usual ephemeral ones.
  const minPort = 40000 + Math.floor(Math.random() * 20000);
  const child = spawn(TURNSERVER, [
    '-n', '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', `--listening-port=${port}`,
    `--min-port=${minPort}`, `--max-port=${minPort + 200}`,
    '--use-auth-secret', `--static-auth-secret=${secret}`, '--realm=wardline.test',
    '--no-tls', '--no-dtls', '--no-cli', '--no-rfc5780', '--allow-loopback-peers', '--fingerprint',
    '--no-software-attribute', '--simple-log', '--log-file=stdout',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  let exited = null;
  child.stdout.on('data', (chunk) => { log += chunk; });
  child.stderr.on('data', (chunk) => { log += chunk; });
  child.on('exit', (code, signal) => { exited = signal ?? code; });
  const deadline = Date.now() + 10_000;
  // Listening once a TURN allocation request would be answered: a UDP STUN binding gets a reply.
  for (;;) {
    if (exited !== null) throw new Error(`turnserver exited (${exited}): ${log.slice(-2000)}`);
    if (Date.now() > deadline) throw new Error(`turnserver did not answer within 10 s: ${log.slice(-2000)}`);
    if (await stunAnswers(port)) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    port,
    log: () => log,
    async stop() {
      if (exited !== null) return;
      child.kill('SIGTERM');
      await new Promise((resolve) => {
        const timer = setTimeout(() => { child.kill('SIGKILL'); resolve(); }, 5000);
        child.on('exit', () => { clearTimeout(timer); resolve(); });
      });
    },
  };
}

/** Whether a STUN binding request to 127.0.0.1:port gets an answer within 300 ms. */
function stunAnswers(port) {
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    const request = Buffer.alloc(20);
    request.writeUInt16BE(0x0001, 0); // Binding request
    request.writeUInt16BE(0, 2);
    request.writeUInt32BE(0x2112a442, 4); // magic cookie
    randomBytes(12).copy(request, 8);
    const timer = setTimeout(() => { socket.close(); resolve(false); }, 300);
    socket.once('message', () => { clearTimeout(timer); socket.close(); resolve(true); });
    socket.once('error', () => { clearTimeout(timer); socket.close(); resolve(false); });
    socket.send(request, port, '127.0.0.1');
  });
}

test('through a TURN server only: relay-only policy, both sides receive video over relayed paths', { timeout: 180_000 }, async (t) => {
  if (!existsSync(TURNSERVER)) {
    // .ci/run installs coturn; without it this test cannot run here.
    t.skip(`no TURN server at ${TURNSERVER} (Debian: apt-get install coturn)`);
    return;
  }
  const secret = randomBytes(24).toString('hex');
  const folder = mkdtempSync(path.join(tmpdir(), 'wardline-turn-'));
  const secretFile = path.join(folder, 'turn-secret');
  writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 });
  const turn = await startTurn(secret);
  try {
    const server = await startServer({
      env: {
        WARDLINE_TURN_URLS: `turn:127.0.0.1:${turn.port}?transport=udp`,
        WARDLINE_TURN_SECRET_FILE: secretFile,
        WARDLINE_TURN_RELAY_ONLY: 'true',
      },
    });
    servers.push(server);
    const people = await setUp(server);
    const browser = await launch(server);
    browsers.push(browser);
    const relayVisit = await scheduleSoon(people, 'Follow-up through the hospital relay');
    // The room entry hands out TURN credentials made from the secret, and the relay-only policy.
    const clinician = await newPage(browser);
    await uiLogin(clinician, server, 'dr.grey');
    const patient = await newPage(browser);
    await uiLogin(patient, server, 'ada');
    const entries = [];
    clinician.on('response', async (response) => {
      if (response.url().endsWith('/room/enter') && response.ok()) entries.push(await response.json().catch(() => null));
    });
    const joined = Date.now();
    await joinFromList(clinician, server, relayVisit.id);
    await joinFromList(patient, server, relayVisit.id);
    const [toClinician, toPatient] = await Promise.all([
      waitForVideo(clinician, 'clinician (relay)', RELAY_VIDEO_MS),
      waitForVideo(patient, 'patient (relay)', RELAY_VIDEO_MS),
    ]);
    console.log(`# relayed call: video decoded on both sides ${Date.now() - joined} ms after joining`);
    const entry = entries.find(Boolean);
    assert.ok(entry, 'the room entry was read');
    assert.equal(entry.ice_transport_policy, 'relay');
    const turnServer = entry.ice_servers.find((candidate) => candidate.urls.some((url) => url.startsWith('turn:')));
    assert.ok(turnServer?.username && turnServer.credential, 'time-limited TURN credentials');
    const expires = Number(turnServer.username.split(':')[0]);
    assert.ok(expires * 1000 > Date.now(), 'the credential is not expired');
    for (const [who, stats] of [['clinician', toClinician], ['patient', toPatient]]) {
      assert.equal(stats.policy, 'relay', `${who}: the connection was configured relay-only`);
      assert.equal(stats.pairState, 'succeeded', `${who}: the selected pair succeeded`);
      assert.equal(stats.local, 'relay', `${who}: media goes through the TURN server`);
    }
    // The page shows the path it uses too.
    await clinician.waitForFunction(() => document.querySelector('[data-testid="remote-video"]')?.dataset.localCandidate === 'relay', null, { timeout: 5000 });
    await clinician.getByTestId('leave').click();
    await patient.getByTestId('remote-tile').waitFor({ state: 'detached', timeout: 10_000 });
    await browser.close();
    await server.stop();
  } finally {
    await turn.stop();
    rmSync(folder, { recursive: true, force: true });
  }
});

test('no unexpected errors in the browser consoles', () => {
  assert.deepEqual(consoleErrors, []);
});
