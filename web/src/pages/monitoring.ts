// The monitoring timer on the care team's patient page: the time a clinician or nurse
// spends on this patient's page, recorded as monitoring time (the remote-monitoring
// ledger's management minutes), and a form to correct it with a reason.
//
// It counts only while the page is visible, not paused, and in use: after IDLE_MS
// without a click, a key or a movement of the pointer it pauses itself, and the stretch
// ends a minute after the last input, so a screen left open does not count as work.
// Stretches are recorded when the timer pauses, when the page is hidden or left, and
// every FLUSH_MS while it runs.

import { ApiError } from '../api';
import { field, h, notice, replace, uid } from '../dom';
import { clearFormError, showFormError } from '../forms';
import type { PageContext } from '../router';
import { visitApi } from '../visits';

const FLUSH_MS = 3 * 60_000;
const IDLE_MS = 5 * 60_000;
/** What counts of the time after the last input when the timer pauses itself for idleness. */
const IDLE_GRACE_MS = 60_000;

type Why = 'running' | 'paused' | 'hidden' | 'idle';

/** "4:05", "1:02:03". */
function clock(ms: number): string {
  const total = Math.floor(ms / 1000);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, '0');
  return hours ? `${hours}:${String(minutes).padStart(2, '0')}:${seconds}` : `${minutes}:${seconds}`;
}

export function monitoringTimer(patientId: string, context: PageContext): HTMLElement {
  let paused = false;
  let idle = false;
  let stretchStart: number | null = null;
  /** Time counted on this page before the current stretch. */
  let countedMs = 0;
  let recordedSeconds = 0;
  let lastInput = Date.now();
  let unsent: { started: string; seconds: number }[] = [];
  let stopped = false;

  const display = h('span', { class: 'timer-clock', 'data-testid': 'timer-clock', role: 'timer', 'aria-live': 'off' }, '0:00');
  const state = h('span', { class: 'timer-state', 'data-testid': 'timer-state' });
  const recorded = h('span', { class: 'muted', 'data-testid': 'timer-recorded' });
  const toggle = h('button', { type: 'button', class: 'secondary small', 'data-testid': 'timer-toggle' }, 'Pause');
  const correction = correctionForm();
  const element = h(
    'section',
    { class: 'card monitoring-timer', 'aria-labelledby': 'timer-title', 'data-testid': 'monitoring-timer' },
    h(
      'div',
      { class: 'timer-row' },
      h('h2', { id: 'timer-title' }, 'Monitoring time'),
      display,
      state,
      toggle,
      recorded,
    ),
    h(
      'p',
      { class: 'hint' },
      'Your time on this patient’s page counts as monitoring time while the page is visible and not paused. ',
      'It pauses by itself after 5 minutes without a click or a keypress.',
    ),
    h('details', { class: 'timer-correction' }, h('summary', null, 'Correct the recorded time'), correction),
  );

  const why = (): Why => (paused ? 'paused' : document.visibilityState !== 'visible' ? 'hidden' : idle ? 'idle' : 'running');

  function render(): void {
    const now = Date.now();
    const running = stretchStart !== null;
    display.textContent = clock(countedMs + (running ? now - (stretchStart ?? now) : 0));
    const current = why();
    element.dataset.state = current;
    state.textContent = {
      running: '● Counting',
      paused: '‖ Paused',
      hidden: '‖ Paused while the page is hidden',
      idle: '‖ Paused: no activity for 5 minutes',
    }[current];
    toggle.textContent = paused ? 'Resume' : 'Pause';
    toggle.setAttribute('aria-pressed', String(paused));
    recorded.textContent = recordedSeconds || unsent.length
      ? `Recorded so far: ${clock(recordedSeconds * 1000)}${unsent.length ? ' (some not yet: will retry)' : ''}`
      : '';
  }

  /** Ends the running stretch at `end` and records it. */
  function close(end: number, keepalive = false): void {
    if (stretchStart === null) return;
    const start = stretchStart;
    stretchStart = null;
    const ms = Math.max(0, end - start);
    countedMs += ms;
    const seconds = Math.floor(ms / 1000);
    if (seconds >= 1) unsent.push({ started: new Date(start).toISOString(), seconds });
    void send(keepalive);
  }

  async function send(keepalive = false): Promise<void> {
    const batch = unsent;
    unsent = [];
    for (const stretch of batch) {
      try {
        // A timer stretch is at most 4 hours for the server; a flush comes every few minutes.
        await visitApi.monitoringTime(patientId, { source: 'timer', seconds: Math.min(stretch.seconds, 4 * 3600), started: stretch.started }, keepalive);
        recordedSeconds += stretch.seconds;
      } catch (error) {
        // Refused for good (the access ended, a bad value): dropped; a network failure is retried.
        if (!(error instanceof ApiError)) unsent.push(stretch);
      }
    }
    if (!stopped) render();
  }

  /** Starts or stops counting as the page's state says. */
  function update(): void {
    if (stopped) return;
    const counting = why() === 'running';
    if (counting && stretchStart === null) stretchStart = Date.now();
    if (!counting && stretchStart !== null) close(Date.now());
    render();
  }

  toggle.addEventListener('click', () => {
    paused = !paused;
    if (!paused) idle = false;
    update();
  });

  const onInput = () => {
    lastInput = Date.now();
    if (idle) {
      idle = false;
      update();
    }
  };
  const inputs = ['pointerdown', 'keydown', 'wheel', 'pointermove', 'touchstart'] as const;
  for (const kind of inputs) window.addEventListener(kind, onInput, { capture: true, passive: true });
  const onVisibility = () => update();
  document.addEventListener('visibilitychange', onVisibility);

  const tick = window.setInterval(() => {
    const now = Date.now();
    if (!idle && !paused && now - lastInput >= IDLE_MS) {
      idle = true;
      // The stretch ends a minute after the last input, not when idleness was noticed.
      if (stretchStart !== null) close(Math.max(stretchStart, lastInput + IDLE_GRACE_MS));
    }
    if (stretchStart !== null && now - stretchStart >= FLUSH_MS) {
      close(now);
      stretchStart = now;
    }
    update();
  }, 1000);

  const finish = (keepalive: boolean) => {
    if (stopped) return;
    close(Date.now(), keepalive);
    stopped = true;
    window.clearInterval(tick);
    for (const kind of inputs) window.removeEventListener(kind, onInput, { capture: true });
    document.removeEventListener('visibilitychange', onVisibility);
    window.removeEventListener('pagehide', onPagehide);
  };
  const onPagehide = () => finish(true);
  window.addEventListener('pagehide', onPagehide);
  context.onCleanup(() => finish(true));

  function correctionForm(): HTMLElement {
    const minutes = h('input', { type: 'number', name: 'seconds', step: 'any', 'aria-required': 'true', inputmode: 'decimal', id: uid('correction') });
    const reason = h('input', { name: 'reason', maxlength: 500, 'aria-required': 'true', autocomplete: 'off' });
    const message = h('div');
    const controls = { seconds: { control: minutes, label: 'Minutes' }, reason: { control: reason, label: 'Reason' } };
    return h(
      'form',
      {
        class: 'inline-form wrap',
        novalidate: true,
        'data-testid': 'timer-correction',
        onsubmit: async (event: Event) => {
          event.preventDefault();
          clearFormError(message, controls);
          const value = Number(minutes.value);
          if (!minutes.value.trim() || !Number.isFinite(value) || Math.round(value * 60) === 0) {
            replace(message, notice('error', 'Minutes: enter the minutes to add, or a negative number to take away.'));
            minutes.focus();
            return;
          }
          if (!reason.value.trim()) {
            replace(message, notice('error', 'A correction says why: it is kept with your name.'));
            reason.focus();
            return;
          }
          try {
            const entry = await visitApi.monitoringTime(patientId, { source: 'correction', seconds: Math.round(value * 60), reason: reason.value.trim() });
            minutes.value = reason.value = '';
            replace(message, notice('success', `Correction recorded: ${entry.seconds > 0 ? '+' : '−'}${clock(Math.abs(entry.seconds) * 1000)}.`));
          } catch (failure) {
            showFormError(message, failure, controls);
          }
        },
      },
      field('Minutes (negative to take away)', minutes),
      field('Reason', reason),
      h('button', { type: 'submit', class: 'secondary' }, 'Record correction'),
      message,
    );
  }

  update();
  return element;
}
