// A visit's room: video between the patient and the attending care team members, with a
// text chat beside it. The clinician's side shows the patient's live vitals, open alarms,
// NEWS2 and (for diabetes) the CGM summary, and writes the care plan change, the note and
// the treatment orders of the visit; the patient's side shows what the clinician sees of
// their readings.
//
// The page is always loaded as a page of its own (router.ts): it is the only page the
// server allows the camera and microphone (its Permissions-Policy header).

import { ApiError, api, patientPath, type Device, type Observation } from '../api';
import { alarmText, byAttention, stateBadge } from '../alarmview';
import { cgmReport } from '../charts/cgm';
import { trendChart } from '../charts/trend';
import { codeOrder } from '../codes';
import { h, notice, replace, select, uid } from '../dom';
import { carePlan, patientAlarms, priorityBadge, type Alarm } from '../features';
import { formatTime, refreshTimes, timeAgo } from '../format';
import { liveBadge, subscribe, subscribeAlarms, subscribeRoom } from '../live';
import { Mesh, type Peer } from '../rtc';
import type { PageContext } from '../router';
import { currentUser, frame } from '../session';
import {
  participantName,
  roomPath,
  statusLabel,
  visitApi,
  visitPagePath,
  visitWhen,
  type RoomEntry,
  type RoomEvent,
  type SignalKind,
  type TreatmentOrder,
  type Visit,
  type VisitMessage,
  type VisitRecord,
} from '../visits';
import { news2Line, vitalTiles } from '../vitals';
import { carePlanPanel } from './careplan';
import { noteSection, orderForm, ordersList } from './visits';

const CGM_CODES = ['99504-3', '105272-9'];
/** How often the connections' statistics are read (the page shows frames decoded). */
const MEASURE_MS = 1000;
/** How often each side tells the others how it receives them. */
const REPORT_MS = 5000;

type MediaState = 'asking' | 'on' | 'partial' | 'refused' | 'missing' | 'busy' | 'unavailable';

/** The server's times in a message ("the room opens … at 2026-12-07T10:15:00+00:00"), as local times. */
const localTimes = (text: string) =>
  text.replace(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})/g, (iso) => formatTime(iso));

/** The server's message as a sentence, its times local. */
const sentence = (message: string) => localTimes(message).replace(/^./, (first) => first.toUpperCase());

/** The page when the room does not take this person (now, or at all). */
function cannotJoin(root: HTMLElement, title: string, ...text: (string | Node)[]): void {
  frame(
    root,
    title,
    h(
      'section',
      { class: 'card error-page', 'data-testid': 'room-refused', role: 'alert' },
      h('h1', null, title),
      text.map((line) => h('p', null, line)),
      h('p', null, h('a', { href: '/visits' }, 'Your visits')),
    ),
  ).focus();
}

export async function roomPage(root: HTMLElement, context: PageContext, visitId: string): Promise<void> {
  const user = currentUser();
  if (!user) return;
  const team = user.role === 'clinician' || user.role === 'nurse';
  let entry: RoomEntry;
  try {
    entry = await visitApi.enter(visitId);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      cannotJoin(root, 'No such visit', 'There is no visit at this address. It may have been scheduled on another server, or the link is wrong.');
      return;
    }
    if (error instanceof ApiError && error.status === 403) {
      cannotJoin(
        root,
        'You cannot join this visit',
        'Only the patient and the care team members who attend a visit can join its room.',
        'This attempt has been recorded in the audit log.',
      );
      return;
    }
    if (error instanceof ApiError && error.status === 409) {
      cannotJoin(root, 'The room is not open', `${sentence(error.message)}.`, h('a', { href: visitPagePath(visitId) }, 'The visit’s page'));
      return;
    }
    throw error;
  }
  let visit: Visit = entry.visit;
  const patientId = visit.patient_id;
  const nameOf = (id: string) => (id === user.id ? 'You' : participantName(visit, id));

  // ---- The frame ---------------------------------------------------------------------
  const mediaMessage = h('div', { class: 'media-message', 'data-testid': 'media-message' });
  const videos = h('div', { class: 'remote-videos', 'data-testid': 'remote-videos' });
  const waiting = h('p', { class: 'waiting muted', 'data-testid': 'waiting' });
  const localVideo = h('video', { class: 'local-video', autoplay: true, playsinline: true, muted: true, 'data-testid': 'local-video', 'aria-label': 'Your camera' });
  localVideo.muted = true;
  const presenceLine = h('p', { class: 'presence', 'data-testid': 'presence' });
  const roomBadge = liveBadge();
  const micButton = h('button', { type: 'button', class: 'toggle', 'aria-pressed': 'false', disabled: true }, 'Mute');
  const cameraButton = h('button', { type: 'button', class: 'toggle', 'aria-pressed': 'false', disabled: true }, 'Camera off');
  const cameraSelect = select('camera', [], { id: uid('camera'), disabled: true });
  const micSelect = select('microphone', [], { id: uid('microphone'), disabled: true });
  const leaveButton = h('button', { type: 'button', class: 'danger', 'data-testid': 'leave' }, 'Leave the visit');
  const chatList = h('ol', { class: 'chat-messages', 'aria-live': 'polite', 'data-testid': 'chat-messages' });
  const chatInput = h('input', { name: 'text', maxlength: 2000, autocomplete: 'off', 'aria-required': 'true', id: uid('chat') });
  const chatError = h('div');
  const chatSend = h('button', { type: 'submit' }, 'Send');
  const chatForm = h(
    'form',
    { class: 'chat-form', novalidate: true, 'data-testid': 'chat-form' },
    h('label', { for: chatInput.id }, 'Message'),
    h('div', { class: 'chat-row' }, chatInput, chatSend),
    chatError,
  );
  const endedHost = h('div');
  const call = h(
    'section',
    { class: 'call', 'aria-label': 'Video' },
    mediaMessage,
    videos,
    waiting,
    h(
      'div',
      { class: 'call-bottom' },
      h('figure', { class: 'local' }, localVideo, h('figcaption', null, 'You')),
      h(
        'div',
        { class: 'call-controls', role: 'group', 'aria-label': 'Camera and microphone' },
        h('div', { class: 'control-buttons' }, micButton, cameraButton, leaveButton),
        h('div', { class: 'field' }, h('label', { for: cameraSelect.id }, 'Camera'), cameraSelect),
        h('div', { class: 'field' }, h('label', { for: micSelect.id }, 'Microphone'), micSelect),
      ),
    ),
  );
  const chat = h(
    'aside',
    { class: 'card chat', 'aria-labelledby': 'chat-title' },
    h('h2', { id: 'chat-title' }, 'Chat'),
    chatList,
    chatForm,
  );
  const panels = h('div', { class: 'room-panels' });
  frame(
    root,
    'Video visit',
    h(
      'div',
      { class: 'room', 'data-testid': 'room', 'data-media': 'asking' },
      h('div', { class: 'page-head' }, h('h1', null, team ? `Video visit with ${visit.patient_name}` : 'Your video visit'), roomBadge.element),
      h('p', { class: 'lede' }, visitWhen(visit), ' · ', visit.reason),
      presenceLine,
      endedHost,
      h('div', { class: 'room-grid' }, call, chat),
      panels,
    ),
  );
  const roomElement = root.querySelector<HTMLElement>('[data-testid="room"]');

  // ---- State --------------------------------------------------------------------------
  let left = false;
  let present = new Set(entry.present);
  const shown = new Set<number>();
  let local: MediaStream | null = null;
  const cleanups: (() => void)[] = [];
  const tiles = new Map<string, { figure: HTMLElement; video: HTMLVideoElement; state: HTMLElement; media: HTMLElement; warning: HTMLElement; sound: HTMLElement }>();

  // Signalling goes out one message at a time, in order: an ICE candidate must not
  // overtake the offer it belongs to.
  let outbox: Promise<unknown> = Promise.resolve();
  const send = (kind: SignalKind, to: string | undefined, data: Record<string, unknown>) => {
    if (left && kind !== 'bye') return;
    outbox = outbox
      .then(() => visitApi.signal(visitId, to ? { kind, to, data } : { kind, data }))
      .catch((error) => {
        if (error instanceof ApiError && error.status === 409) void changed();
      });
  };

  const config: RTCConfiguration = {
    iceServers: entry.ice_servers.map((server) => ({
      urls: server.urls,
      username: server.username ?? undefined,
      credential: server.credential ?? undefined,
    })),
    iceTransportPolicy: entry.ice_transport_policy === 'relay' ? 'relay' : 'all',
  };
  const mesh = new Mesh(user.id, config, send, {
    onPeer: (peer) => {
      tileFor(peer);
      renderWaiting();
    },
    onPeerChange: (peer) => renderPeer(peer),
    onPeerClosed: (peer) => {
      tiles.get(peer.id)?.figure.remove();
      tiles.delete(peer.id);
      renderWaiting();
    },
  });

  // This page load's id in the signalling (tells a reload apart from the page it replaced).
  roomElement?.setAttribute('data-session', mesh.session);

  // ---- Remote videos ------------------------------------------------------------------
  function tileFor(peer: Peer) {
    const existing = tiles.get(peer.id);
    if (existing) {
      existing.video.srcObject = peer.stream;
      return existing;
    }
    const name = nameOf(peer.id);
    const video = h('video', { class: 'remote-video', autoplay: true, playsinline: true, 'data-testid': 'remote-video', 'data-peer': peer.id, 'data-connection': 'new', 'data-frames-decoded': '0', 'aria-label': `${name}’s video` });
    video.srcObject = peer.stream;
    const state = h('span', { class: 'peer-state' });
    const media = h('span', { class: 'peer-media' });
    const warning = h('p', { class: 'quality-warning', role: 'status', 'data-testid': 'quality-warning', 'data-what': '' });
    const sound = h('div');
    const figure = h('figure', { class: 'remote', 'data-peer': peer.id, 'data-testid': 'remote-tile' }, video, h('figcaption', null, h('strong', null, name), ' ', state, ' ', media), warning, sound);
    videos.append(figure);
    const tile = { figure, video, state, media, warning, sound };
    tiles.set(peer.id, tile);
    play(tile);
    return tile;
  }

  /** Starts a remote video; if the browser refuses sound without a click, offers one. */
  function play(tile: { video: HTMLVideoElement; sound: HTMLElement }): void {
    tile.video.play().catch((error: unknown) => {
      // Only a refusal of sound without a click; an interrupted start is retried later.
      if (!(error instanceof DOMException && error.name === 'NotAllowedError') || tile.video.muted) return;
      tile.video.muted = true;
      void tile.video.play().catch(() => undefined);
      replace(
        tile.sound,
        h('button', {
          type: 'button', class: 'secondary small',
          onclick: () => {
            tile.video.muted = false;
            void tile.video.play().catch(() => undefined);
            replace(tile.sound);
          },
        }, 'Turn the sound on'),
      );
    });
  }

  const STATE_TEXT: Record<string, string> = {
    new: 'connecting…',
    connecting: 'connecting…',
    connected: '',
    disconnected: 'connection interrupted — reconnecting…',
    failed: 'no connection — trying again…',
    closed: 'left',
  };

  function renderPeer(peer: Peer): void {
    const tile = tiles.get(peer.id) ?? tileFor(peer);
    const name = nameOf(peer.id);
    if (tile.video.srcObject !== peer.stream) tile.video.srcObject = peer.stream;
    if (tile.video.paused && peer.stream.getTracks().length) play(tile);
    tile.video.dataset.connection = peer.state;
    tile.state.textContent = STATE_TEXT[peer.state] ? `(${STATE_TEXT[peer.state]})` : '';
    const quality = peer.quality;
    if (quality) {
      tile.video.dataset.framesDecoded = String(quality.framesDecoded);
      tile.video.dataset.localCandidate = quality.localCandidate ?? '';
      tile.video.dataset.remoteCandidate = quality.remoteCandidate ?? '';
    }
    const report = peer.report;
    replace(
      tile.media,
      report && !report.microphone ? h('span', { class: 'tag' }, 'microphone muted') : null,
      report && !report.camera ? h('span', { class: 'tag' }, 'camera off') : null,
    );
    // Poor as measured here (how their media reaches us), or as they report it (how
    // ours reaches them): either way the conversation suffers.
    const poorHere = quality?.poor ?? false;
    const poorThere = peer.state === 'connected' && (report?.poor ?? false);
    tile.video.dataset.quality = poorHere || poorThere ? 'poor' : peer.state === 'connected' ? 'good' : 'unknown';
    const reasons = poorHere || poorThere ? [...new Set([...(poorHere ? quality?.reasons ?? [] : []), ...(poorThere ? report?.reasons ?? [] : [])])] : [];
    // The warning is a live region: it is rewritten when what is wrong changes, not
    // each second as the numbers move, so that a screen reader says it once.
    const what = poorHere || poorThere ? reasons.map((reason) => reason.replace(/[\d.]+/g, '#')).join(',') || 'poor' : '';
    if (tile.warning.dataset.what === what) return;
    tile.warning.dataset.what = what;
    replace(
      tile.warning,
      what
        ? [
            h('span', { 'aria-hidden': 'true' }, '⚠ '),
            `The connection with ${name} is poor${reasons.length ? ` (${reasons.join(', ')})` : ''}: the picture may freeze or the sound break up. The chat still works.`,
          ]
        : null,
    );
  }

  /** Who is expected but not connected: the patient (for the care team) and the other attendees. */
  function renderWaiting(): void {
    if (left) {
      replace(waiting);
      return;
    }
    const attendees = new Set(visit.attendees.map((attendee) => attendee.user_id));
    const missing: string[] = [];
    if (team && ![...mesh.peers.keys()].some((id) => !attendees.has(id))) missing.push(visit.patient_name);
    for (const attendee of visit.attendees) {
      if (attendee.user_id !== user?.id && !mesh.peers.has(attendee.user_id)) missing.push(attendee.display_name);
    }
    replace(waiting, missing.length ? `Waiting for ${missing.join(', ')} to join…` : null);
  }

  function renderPresence(): void {
    const names = [...present].map(nameOf).sort((a, b) => (a === 'You' ? -1 : b === 'You' ? 1 : a.localeCompare(b)));
    replace(presenceLine, h('span', { class: 'muted' }, 'In the room: '), names.length ? names.join(', ') : 'nobody yet');
  }

  // ---- Camera and microphone ---------------------------------------------------------
  const MEDIA_TEXT: Record<Exclude<MediaState, 'on' | 'asking'>, string> = {
    partial: '',
    refused:
      'Your browser did not allow this page to use the camera and the microphone, so the others cannot see or hear you. ' +
      'You still see and hear them, and the chat works. To allow them, use the camera symbol in the address bar or the site’s settings, then press “Try again”.',
    missing:
      'No camera or microphone was found on this device, so the others cannot see or hear you. You still see and hear them, and the chat works.',
    busy:
      'The camera or the microphone is in use by another program, or the device is not working. Close the other program, then press “Try again”. The chat works meanwhile.',
    unavailable:
      'This browser cannot use a camera or a microphone here. You can still follow the visit in the chat.',
  };

  function setMediaState(state: MediaState, detail = ''): void {
    roomElement?.setAttribute('data-media', state);
    if (state === 'on' || state === 'asking') {
      replace(mediaMessage, state === 'asking' ? notice('info', 'Asking your browser for the camera and the microphone…') : null);
      return;
    }
    const text = state === 'partial' ? detail : MEDIA_TEXT[state];
    replace(
      mediaMessage,
      notice(
        state === 'partial' ? 'warning' : 'error',
        text,
        state === 'unavailable' ? null : [' ', h('button', { type: 'button', class: 'secondary small', onclick: () => void acquire() }, 'Try again')],
      ),
    );
  }

  async function getMedia(constraints: MediaStreamConstraints): Promise<MediaStream> {
    return navigator.mediaDevices.getUserMedia(constraints);
  }

  const videoConstraints = (deviceId?: string): MediaTrackConstraints => ({
    ...(deviceId ? { deviceId: { exact: deviceId } } : {}),
    width: { ideal: 640 },
    height: { ideal: 480 },
    frameRate: { ideal: 24 },
  });
  const audioConstraints = (deviceId?: string): MediaTrackConstraints => ({
    ...(deviceId ? { deviceId: { exact: deviceId } } : {}),
    echoCancellation: true,
    noiseSuppression: true,
  });

  async function acquire(): Promise<void> {
    if (left) return;
    if (!navigator.mediaDevices?.getUserMedia) {
      setMediaState('unavailable');
      return;
    }
    setMediaState('asking');
    let stream: MediaStream | null = null;
    let failure: unknown = null;
    try {
      stream = await getMedia({ audio: audioConstraints(), video: videoConstraints() });
    } catch (error) {
      failure = error;
      const name = error instanceof DOMException ? error.name : '';
      // A device without a camera (or without a microphone) still joins with the other.
      if (name === 'NotFoundError' || name === 'OverconstrainedError' || name === 'NotReadableError') {
        for (const constraints of [{ audio: audioConstraints() }, { video: videoConstraints() }]) {
          try {
            stream = await getMedia(constraints);
            break;
          } catch {
            // Try the other kind.
          }
        }
      }
    }
    if (left) {
      stream?.getTracks().forEach((track) => track.stop());
      return;
    }
    if (!stream) {
      const name = failure instanceof DOMException ? failure.name : '';
      setMediaState(
        name === 'NotAllowedError' || name === 'SecurityError' ? 'refused' : name === 'NotFoundError' || name === 'OverconstrainedError' ? 'missing' : 'busy',
      );
      return;
    }
    local?.getTracks().forEach((track) => track.stop());
    local = stream;
    localVideo.srcObject = stream;
    void localVideo.play().catch(() => undefined);
    const hasVideo = stream.getVideoTracks().length > 0;
    const hasAudio = stream.getAudioTracks().length > 0;
    if (hasVideo && hasAudio) setMediaState('on');
    else setMediaState('partial', hasVideo ? 'No microphone was found: the others see you but cannot hear you. The chat works.' : 'No camera was found: the others hear you but cannot see you.');
    micButton.disabled = !hasAudio;
    cameraButton.disabled = !hasVideo;
    applyToggles();
    mesh.setLocalStream(stream);
    await listDevices();
    reportAll();
  }

  async function listDevices(): Promise<void> {
    const devices = await navigator.mediaDevices.enumerateDevices().catch(() => [] as MediaDeviceInfo[]);
    const fill = (control: HTMLSelectElement, kind: MediaDeviceKind, track: MediaStreamTrack | undefined, label: string) => {
      const options = devices.filter((device) => device.kind === kind && device.deviceId);
      replace(control, options.map((device, index) => h('option', { value: device.deviceId }, device.label || `${label} ${index + 1}`)));
      const current = track?.getSettings().deviceId;
      if (current) control.value = current;
      control.disabled = !track || options.length < 2;
    };
    fill(cameraSelect, 'videoinput', local?.getVideoTracks()[0], 'Camera');
    fill(micSelect, 'audioinput', local?.getAudioTracks()[0], 'Microphone');
  }

  /** Switches to another camera or microphone: the new track replaces the old on every connection. */
  async function switchDevice(kind: 'audio' | 'video', deviceId: string): Promise<void> {
    if (!local) return;
    const old = kind === 'video' ? local.getVideoTracks()[0] : local.getAudioTracks()[0];
    if (old?.getSettings().deviceId === deviceId) return;
    let fresh: MediaStreamTrack | undefined;
    try {
      // Some devices allow one user at a time: the old track goes first.
      old?.stop();
      const stream = await getMedia(kind === 'video' ? { video: videoConstraints(deviceId) } : { audio: audioConstraints(deviceId) });
      fresh = kind === 'video' ? stream.getVideoTracks()[0] : stream.getAudioTracks()[0];
    } catch (error) {
      replace(mediaMessage, notice('error', `That ${kind === 'video' ? 'camera' : 'microphone'} could not be used: ${error instanceof Error ? error.message : String(error)}`));
      if (old) {
        // Back to the one before.
        const stream = await getMedia(kind === 'video' ? { video: videoConstraints(old.getSettings().deviceId) } : { audio: audioConstraints(old.getSettings().deviceId) }).catch(() => null);
        fresh = stream?.getTracks()[0];
      }
    }
    if (!fresh || !local) return;
    if (old) local.removeTrack(old);
    local.addTrack(fresh);
    applyToggles();
    await mesh.replaceTrack(fresh);
    localVideo.srcObject = local;
    await listDevices();
  }

  let micMuted = false;
  let cameraOff = false;
  function applyToggles(): void {
    local?.getAudioTracks().forEach((track) => (track.enabled = !micMuted));
    local?.getVideoTracks().forEach((track) => (track.enabled = !cameraOff));
    micButton.setAttribute('aria-pressed', String(micMuted));
    cameraButton.setAttribute('aria-pressed', String(cameraOff));
    localVideo.classList.toggle('camera-off', cameraOff);
  }
  micButton.addEventListener('click', () => {
    micMuted = !micMuted;
    applyToggles();
    reportAll();
  });
  cameraButton.addEventListener('click', () => {
    cameraOff = !cameraOff;
    applyToggles();
    reportAll();
  });
  cameraSelect.addEventListener('change', () => void switchDevice('video', cameraSelect.value));
  micSelect.addEventListener('change', () => void switchDevice('audio', micSelect.value));

  // ---- Quality ------------------------------------------------------------------------
  const lastReport = new Map<string, string>();
  let lastReportAt = 0;
  /** Tells each participant how their media reaches us, and whether our camera and microphone are on. */
  function reportAll(force = true): void {
    if (left) return;
    lastReportAt = Date.now();
    for (const peer of mesh.peers.values()) {
      const data = {
        session: mesh.session,
        to_session: peer.remoteSession,
        poor: peer.quality?.poor ?? false,
        reasons: peer.quality?.reasons ?? [],
        camera: Boolean(local?.getVideoTracks().length) && !cameraOff,
        microphone: Boolean(local?.getAudioTracks().length) && !micMuted,
      };
      const key = JSON.stringify(data);
      if (!force && lastReport.get(peer.id) === key) continue;
      lastReport.set(peer.id, key);
      send('quality', peer.id, data);
    }
  }
  const measureTimer = window.setInterval(() => {
    if (left) return;
    void mesh.measure().then(() => {
      // Changes at once; the same news again every little while.
      reportAll(Date.now() - lastReportAt >= REPORT_MS * 3);
    });
    refreshTimes(root);
  }, MEASURE_MS);
  cleanups.push(() => window.clearInterval(measureTimer));

  // ---- Chat ---------------------------------------------------------------------------
  function addMessages(messages: VisitMessage[]): void {
    const fresh = messages.filter((message) => !shown.has(message.seq)).sort((a, b) => a.seq - b.seq);
    if (!fresh.length) return;
    for (const message of fresh) {
      shown.add(message.seq);
      const mine = message.author === user?.id;
      chatList.append(
        h(
          'li',
          { class: mine ? 'chat-message mine' : 'chat-message', 'data-seq': message.seq, 'data-author': message.author },
          h('span', { class: 'chat-author' }, mine ? 'You' : message.author_name),
          ' ',
          h('time', { class: 'chat-time', datetime: message.sent }, formatTime(message.sent)),
          h('p', { class: 'chat-text' }, message.text),
        ),
      );
    }
    chatList.scrollTop = chatList.scrollHeight;
  }
  chatForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = chatInput.value.trim();
    if (!text) {
      chatInput.focus();
      return;
    }
    chatSend.disabled = true;
    try {
      addMessages([await visitApi.say(visitId, text)]);
      chatInput.value = '';
      replace(chatError);
    } catch (error) {
      replace(chatError, notice('error', `Not sent: ${error instanceof Error ? error.message : String(error)}`));
    } finally {
      chatSend.disabled = false;
      chatInput.focus();
    }
  });
  addMessages(entry.messages);

  // ---- The room's events --------------------------------------------------------------
  let reentering = false;
  async function reenter(): Promise<void> {
    if (left || reentering) return;
    reentering = true;
    try {
      const again = await visitApi.enter(visitId);
      visit = again.visit;
      present = new Set(again.present);
      renderPresence();
      addMessages(again.messages);
      // Whoever is here without a connection to this page is asked for one.
      for (const id of present) {
        const peer = mesh.peers.get(id);
        if (id !== user?.id && (!peer || peer.state === 'failed' || peer.state === 'closed')) mesh.hello(id);
      }
    } catch (error) {
      if (error instanceof ApiError && (error.status === 409 || error.status === 403)) {
        await changed();
        if (!left) end(error.status === 403 ? 'Your access to this visit ended.' : `${sentence(error.message)}.`);
      }
    } finally {
      reentering = false;
    }
  }

  let presenceCheck = 0;
  function onEvent(event: RoomEvent): void {
    if (left) return;
    switch (event.type) {
      case 'signal':
        mesh.receive(event.from, event.kind, event.data);
        break;
      case 'presence': {
        present = new Set(event.present);
        renderPresence();
        if (!event.joined && event.user_id !== user?.id) {
          // Gone from the room: a connection that is not carrying media any more closes.
          const peer = mesh.peers.get(event.user_id);
          if (peer && peer.state !== 'connected') mesh.close(event.user_id);
        }
        // The server took this page out (an old stream of it closed late): back in.
        if (!present.has(user?.id ?? '')) {
          window.clearTimeout(presenceCheck);
          presenceCheck = window.setTimeout(() => {
            if (!present.has(user?.id ?? '')) void reenter();
          }, 1500);
        }
        break;
      }
      case 'chat':
        addMessages([event]);
        break;
      case 'changed':
        void changed();
        break;
      case 'closed':
        // The server ends the room's stream after this: the page closes the room too.
        void changed();
        break;
    }
  }

  const stopRoom = subscribeRoom(visitApi.events(visitId), {
    onEvent,
    onOpen(reopened) {
      if (left) return;
      if (reopened) {
        // The server took this page out of the room when the old stream closed.
        void reenter();
      } else {
        mesh.hello();
      }
    },
    onState: roomBadge.set,
    onEnded() {
      if (left) return;
      // The session may have ended (the app then goes to the login), or the access.
      void api('/api/v1/me', { refresh: true })
        .then(() => changed())
        .then(() => {
          if (!left) end('Your access to this visit ended.');
        })
        .catch(() => end('Your session ended.'));
    },
    onError() {
      // A stream refused at once (the visit closed meanwhile) is found out here.
      void changed();
    },
  });
  cleanups.push(stopRoom);

  // ---- Leaving ------------------------------------------------------------------------
  function stopMedia(): void {
    local?.getTracks().forEach((track) => track.stop());
    local = null;
    localVideo.srcObject = null;
  }

  /** Ends this page's stay: connections, streams, camera. `why` says what the page shows. */
  function end(why: string, sayBye = false): void {
    if (left) return;
    left = true;
    mesh.closeAll(sayBye);
    for (const cleanup of cleanups.splice(0)) cleanup();
    stopMedia();
    roomElement?.setAttribute('data-left', 'true');
    leaveButton.disabled = micButton.disabled = cameraButton.disabled = cameraSelect.disabled = micSelect.disabled = true;
    chatInput.disabled = chatSend.disabled = true;
    replace(waiting);
    replace(
      endedHost,
      h(
        'div',
        { class: 'card room-ended', 'data-testid': 'room-ended', role: 'status' },
        h('p', null, h('strong', null, why)),
        h('p', null, h('a', { href: visitPagePath(visitId) }, 'The visit’s page'), ' · ', h('a', { href: roomPath(visitId) }, 'Join again'), ' · ', h('a', { href: '/visits' }, 'Your visits')),
      ),
    );
  }

  leaveButton.addEventListener('click', async () => {
    end('You left the visit.', true);
    await outbox;
    await visitApi.leave(visitId).catch(() => undefined);
  });

  // Closing the tab or going to another page: goodbye, sent so that it outlives the page.
  const pagehide = () => {
    if (left) return;
    void visitApi.signal(visitId, { kind: 'bye', data: { session: mesh.session } }, true).catch(() => undefined);
    void visitApi.leave(visitId, true).catch(() => undefined);
    end('You left the visit.');
  };
  window.addEventListener('pagehide', pagehide);
  context.onCleanup(() => {
    window.removeEventListener('pagehide', pagehide);
    pagehide();
  });

  // ---- The visit's record (note, orders, care plan versions) --------------------------
  let record: VisitRecord | null = null;
  const recordListeners: ((record: VisitRecord) => void)[] = [];
  async function changed(): Promise<void> {
    try {
      record = await visitApi.record(visitId, undefined, true);
    } catch {
      return;
    }
    visit = record.visit;
    for (const listener of recordListeners) listener(record);
    if (visit.status !== 'scheduled' && !left) {
      end(`The visit was marked ${statusLabel(visit.status).toLowerCase()}: the room is closed.`);
    }
  }

  // ---- Panels -------------------------------------------------------------------------
  if (team) clinicianPanels();
  else patientPanels();
  renderPresence();
  renderWaiting();
  void changed();
  void acquire();

  function vitalsCard(title: string, intro: string | null): HTMLElement {
    const badge = liveBadge();
    const host = h('div', null, notice('info', 'Loading the latest readings…'));
    const news2 = news2Line(patientId);
    const card = h(
      'section',
      { class: 'card', 'aria-labelledby': 'room-vitals-title', 'data-testid': 'room-vitals' },
      h('div', { class: 'section-head' }, h('h2', { id: 'room-vitals-title' }, title), badge.element),
      intro ? h('p', { class: 'muted' }, intro) : null,
      news2.element,
      host,
    );
    void api<Observation[]>(patientPath(patientId, '/observations/latest'))
      .then((latest) => {
        // Today's trend of the vital chosen on its tile (the last 24 hours; the chart
        // offers longer), beside the latest values.
        const loincs = latest.map((observation) => observation.loinc);
        const first = [...loincs].sort((a, b) => codeOrder(a) - codeOrder(b))[0] ?? '8867-4';
        const trend = trendChart(patientId, first, loincs);
        cleanups.push(() => trend.destroy());
        const tiles = vitalTiles(latest, (loinc) => trend.show(loinc));
        replace(host, tiles.element, h('div', { 'data-testid': 'room-trend' }, trend.element));
        void news2.reload();
        const stop = subscribe(patientId, {
          onObservation(observation) {
            if (tiles.take(observation)) tiles.render(observation.loinc);
            trend.push(observation);
          },
          onNews2: news2.render,
          async onResync() {
            const fresh = await api<Observation[]>(patientPath(patientId, '/observations/latest'), { refresh: true }).catch(() => null);
            if (fresh) for (const observation of fresh) tiles.take(observation);
            tiles.render();
            await news2.reload();
          },
          onState: badge.set,
        });
        cleanups.push(stop);
      })
      .catch((error) => replace(host, notice('error', `Readings could not be loaded: ${error instanceof Error ? error.message : String(error)}`)));
    return card;
  }

  function openAlarmsCard(): HTMLElement {
    const body = h('div', null, notice('info', 'Loading alarms…'));
    const card = h(
      'section',
      { class: 'card', 'aria-labelledby': 'room-alarms-title', 'data-testid': 'room-alarms' },
      h('div', { class: 'section-head' }, h('h2', { id: 'room-alarms-title' }, 'Open alarms'), h('a', { href: '/alarms', target: '_blank', rel: 'noopener' }, 'Alarm inbox (new tab)')),
      body,
    );
    const load = async () => {
      try {
        const alarms = (await patientAlarms(patientId)).filter((alarm: Alarm) => alarm.state_name !== 'resolved').sort(byAttention);
        replace(
          body,
          alarms.length === 0
            ? h('p', null, h('span', { 'aria-hidden': 'true' }, '✓ '), 'No open alarms.')
            : h('ul', { class: 'alarm-list' }, alarms.map((alarm) =>
                h('li', { class: `alarm alarm-${alarm.priority} alarm-history-item`, 'data-alarm-id': alarm.id, 'data-state': alarm.state_name },
                  h('div', { class: 'alarm-head' }, priorityBadge(alarm.priority), ' ', stateBadge(alarm), ' ', h('strong', null, alarmText(alarm).title)),
                  alarmText(alarm).detail ? h('p', { class: 'alarm-detail' }, alarmText(alarm).detail) : null,
                  h('p', { class: 'muted' }, 'Raised ', timeAgo(alarm.raised_at))))),
        );
      } catch (error) {
        replace(body, notice('error', `Alarms could not be loaded: ${error instanceof Error ? error.message : String(error)}`));
      }
    };
    void load();
    let timer = 0;
    cleanups.push(
      subscribeAlarms({
        onAlarm(event) {
          if (event.patient_id !== patientId) return;
          window.clearTimeout(timer);
          timer = window.setTimeout(() => void load(), 300);
        },
        onResync: () => void load(),
      }),
    );
    cleanups.push(() => window.clearTimeout(timer));
    return card;
  }

  function ordersCard(canOrder: boolean): HTMLElement {
    const list = h('div');
    const card = h(
      'section',
      { class: 'card', 'aria-labelledby': 'room-orders-title', 'data-testid': 'room-orders' },
      h('h2', { id: 'room-orders-title' }, team ? 'Treatment orders of this visit' : 'New instructions from this visit'),
      list,
      canOrder ? orderForm(patientId, visitId, (order: TreatmentOrder) => {
        if (record) record.orders = [order, ...record.orders.filter((known) => known.id !== order.id)];
        replace(list, ordersList(record?.orders ?? [order], ''));
      }) : null,
    );
    replace(list, h('p', { class: 'muted' }, 'Loading…'));
    recordListeners.push((fresh) => replace(list, ordersList(fresh.orders, team ? 'No orders written in this visit yet.' : 'No new instructions from this visit yet.')));
    return card;
  }

  function noteCard(): HTMLElement {
    const host = h('div', { 'data-testid': 'room-note' });
    let signed: string | null | undefined;
    let addenda = -1;
    const render = (fresh: VisitRecord) => {
      // A draft being written is not replaced by a change elsewhere in the visit.
      const note = fresh.note;
      if (host.firstChild && (note?.signed ?? null) === signed && (note?.addenda.length ?? 0) === addenda) return;
      signed = note?.signed ?? null;
      addenda = note?.addenda.length ?? 0;
      replace(host, noteSection(fresh.visit, note, { onChange: () => void changed() }));
    };
    recordListeners.push(render);
    return host;
  }

  function clinicianPanels(): void {
    const versions = h('p', { class: 'visit-versions', 'data-testid': 'visit-care-plan-versions' });
    const renderVersions = () =>
      replace(versions, visit.care_plan_versions.length
        ? `Changed in this visit: care plan version${visit.care_plan_versions.length === 1 ? '' : 's'} ${visit.care_plan_versions.join(', ')} (in force now: the latest).`
        : 'No care plan change in this visit yet.');
    renderVersions();
    let versionsShown = visit.care_plan_versions.length;
    const plan = carePlanPanel(patientId, {
      editable: true,
      self: false,
      signal: context.signal,
      // Saved through the visit: the version's reason names it, and the visit lists it.
      save: async (change) => {
        const made = await visitApi.changeCarePlan(visitId, change);
        visit = made.visit;
        versionsShown = visit.care_plan_versions.length;
        renderVersions();
        return made.version;
      },
    });
    recordListeners.push(() => {
      renderVersions();
      // Another attendee changed the plan in this visit: the plan shown is read again.
      if (visit.care_plan_versions.length !== versionsShown) {
        versionsShown = visit.care_plan_versions.length;
        void plan.reload();
      }
    });
    plan.element.insertBefore(versions, plan.element.children[1] ?? null);
    const cgmHost = h('div');
    replace(
      panels,
      h('div', { class: 'columns' }, vitalsCard(`${visit.patient_name}’s vitals`, null), openAlarmsCard()),
      cgmHost,
      plan.element,
      h('div', { class: 'columns' }, noteCard(), ordersCard(user?.role === 'clinician')),
    );
    // The CGM summary, for a patient with a CGM or on the diabetes programme.
    void Promise.all([
      api<Device[]>(patientPath(patientId, '/devices')).catch(() => [] as Device[]),
      api<Observation[]>(patientPath(patientId, '/observations/latest')).catch(() => [] as Observation[]),
      carePlan(patientId).catch(() => null),
    ]).then(([devices, latest, current]) => {
      const diabetes =
        devices.some((device) => device.kind === 'cgm') ||
        latest.some((observation) => CGM_CODES.includes(observation.loinc)) ||
        current?.plan.program === 'diabetes';
      if (!diabetes || left) return;
      const controller = new AbortController();
      const report = cgmReport(patientId, controller.signal);
      cleanups.push(() => {
        controller.abort();
        report.destroy();
      });
      replace(cgmHost, report.element);
    });
  }

  function patientPanels(): void {
    replace(
      panels,
      h('div', { class: 'columns' },
        vitalsCard('What your clinician sees', 'Your latest readings, as your care team sees them now. A new reading from your devices appears here at once.'),
        noteCard(),
      ),
      ordersCard(false),
    );
  }
}
