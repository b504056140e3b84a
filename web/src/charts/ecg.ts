// A live ECG strip drawn on a canvas of our own: ECG paper (1 mm and 5 mm squares), the
// trace scrolling right to left at 25 mm/s with 10 mm/mV, a marker over each detected
// beat and the heart rate from the last beats.
//
// Samples come from GET /api/v1/patients/{id}/waveforms, polled every 2 s (there is no
// waveform stream yet). Playback runs a little behind the newest sample so that the
// trace moves smoothly between polls; if data stops, the strip stops and says so.
//
// The beat detector here is a small Pan-Tompkins-style detector for display only; when
// the server's rhythm events (wardline-ecg) are served, their beats replace it.

import { api, patientPath, type WaveformChunk } from '../api';
import { h } from '../dom';

const MM_PER_SECOND = 25;
const MM_PER_MV = 10;
/** CSS pixels per millimetre at the CSS reference density (96 px per inch). */
const PX_PER_MM = 96 / 25.4;
const HEIGHT_MM = 40;
const POLL_MS = 2000;
const KEEP_MS = 60_000;
const SIGNAL_PREFERENCE: WaveformChunk['signal'][] = ['ecg-lead-ii', 'ecg-lead-i', 'ecg-lead-iii', 'ecg-lead-v1', 'ecg-lead-v2', 'ecg-lead-v5'];

interface Chunk {
  key: string;
  start: number;
  rate: number;
  mv: Float32Array;
  end: number;
}

export interface EcgStrip {
  element: HTMLElement;
  destroy(): void;
}

export function ecgStrip(patientId: string): EcgStrip {
  const canvas = h('canvas', { class: 'ecg-canvas', 'data-testid': 'ecg-canvas' });
  const label = h('span', { class: 'ecg-label' }, 'ECG');
  const heartRate = h('span', { class: 'ecg-hr', 'data-testid': 'ecg-hr' }, 'HR —');
  const state = h('span', { class: 'ecg-state', role: 'status' }, 'Waiting for ECG…');
  const pause = h('button', { type: 'button', class: 'secondary', 'aria-pressed': 'false' }, 'Pause');
  const wrapper = h('div', { class: 'ecg-wrap', role: 'img', 'aria-label': 'Live ECG strip' }, canvas);
  const element = h(
    'section',
    { class: 'card ecg', 'aria-labelledby': 'ecg-title' },
    h('div', { class: 'section-head' }, h('h2', { id: 'ecg-title' }, 'Live ECG'), pause),
    h('p', { class: 'ecg-info' }, label, ' · 25 mm/s · 10 mm/mV · ', heartRate, ' · ', state),
    wrapper,
  );

  const chunks: Chunk[] = [];
  const seen = new Set<string>();
  let signal: WaveformChunk['signal'] | null = null;
  let offset: number | null = null; // data time = performance.now() + offset
  let paused = false;
  let pausedAt = 0;
  let frame = 0;
  let timer = 0;
  let stopped = false;
  let lastEnd = 0;
  let delay = 2500;
  let center = 0;
  let drawnFrames = 0;
  const detector = new BeatDetector();

  pause.addEventListener('click', () => {
    paused = !paused;
    pause.setAttribute('aria-pressed', String(paused));
    pause.textContent = paused ? 'Resume' : 'Pause';
    if (paused) pausedAt = performance.now();
    else if (offset !== null) offset -= performance.now() - pausedAt;
  });

  async function poll(): Promise<void> {
    if (stopped) return;
    try {
      const from = lastEnd ? new Date(lastEnd - 1000) : new Date(Date.now() - 30_000);
      const query = new URLSearchParams({ from: from.toISOString(), limit: '200' });
      if (signal) query.set('signal', signal);
      const received = await api<WaveformChunk[]>(patientPath(patientId, `/waveforms?${query}`));
      ingest(received);
    } catch {
      state.textContent = 'Connection problem; retrying…';
    }
    if (!stopped) timer = window.setTimeout(() => void poll(), POLL_MS);
  }

  function ingest(received: WaveformChunk[]): void {
    const ecg = received.filter((chunk) => chunk.signal.startsWith('ecg-'));
    if (!signal && ecg.length) {
      const signals = new Set(ecg.map((chunk) => chunk.signal));
      signal = SIGNAL_PREFERENCE.find((candidate) => signals.has(candidate)) ?? ecg[0].signal;
      label.textContent = leadName(signal);
      wrapper.setAttribute('aria-label', `Live ECG strip, ${leadName(signal)}`);
    }
    for (const chunk of ecg) {
      const key = `${chunk.device_id}:${chunk.seq}`;
      if (chunk.signal !== signal || seen.has(key)) continue;
      seen.add(key);
      const mv = new Float32Array(chunk.samples.length);
      const gain = chunk.gain || 1;
      // An ECG uploaded as FHIR SampledData keeps its origin; a device's is 0.
      const origin = chunk.origin;
      chunk.samples.forEach((sample, index) => {
        mv[index] = origin + (sample - chunk.baseline) / gain;
      });
      const start = Date.parse(chunk.start);
      const item = { key, start, rate: chunk.sampling_rate_hz, mv, end: start + (mv.length * 1000) / chunk.sampling_rate_hz };
      chunks.push(item);
      chunks.sort((a, b) => a.start - b.start);
      detector.feed(item);
      delay = Math.max(delay, Math.min(10_000, item.end - item.start + POLL_MS + 500));
      lastEnd = Math.max(lastEnd, item.end);
    }
    const oldest = lastEnd - KEEP_MS;
    while (chunks.length && chunks[0].end < oldest) seen.delete(chunks.shift()!.key);
    detector.forget(oldest);
  }

  function draw(): void {
    frame = requestAnimationFrame(draw);
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(200, wrapper.clientWidth);
    const height = Math.round(HEIGHT_MM * PX_PER_MM);
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      canvas.style.height = `${height}px`;
    }
    const context = canvas.getContext('2d');
    if (!context) return;
    context.setTransform(ratio, 0, 0, ratio, 0, 0);

    const now = paused ? pausedAt : performance.now();
    if (lastEnd && offset === null) offset = lastEnd - delay - now;
    let time = offset === null ? Date.now() : now + offset;
    if (offset !== null && !paused) {
      if (time > lastEnd) {
        offset -= time - lastEnd; // starved: hold still until data comes
        time = lastEnd;
      } else if (lastEnd - time > delay * 3) {
        offset = lastEnd - delay - now; // far behind (tab was hidden): catch up
        time = now + offset;
      }
    }
    const pxPerMs = (MM_PER_SECOND * PX_PER_MM) / 1000;
    const windowMs = width / pxPerMs;
    const left = time - windowMs;
    const xOf = (t: number) => width - (time - t) * pxPerMs;

    // Paper.
    context.fillStyle = '#fffafa';
    context.fillRect(0, 0, width, height);
    const smallMs = 1000 / MM_PER_SECOND;
    for (let k = Math.ceil(left / smallMs); k * smallMs <= time; k++) {
      const x = Math.round(xOf(k * smallMs)) + 0.5;
      context.strokeStyle = k % 5 === 0 ? '#eba3a3' : '#f8dada';
      context.beginPath();
      context.moveTo(x, 0);
      context.lineTo(x, height);
      context.stroke();
    }
    for (let k = 0; k * PX_PER_MM <= height; k++) {
      const y = Math.round(height - k * PX_PER_MM) + 0.5;
      context.strokeStyle = k % 5 === 0 ? '#eba3a3' : '#f8dada';
      context.beginPath();
      context.moveTo(0, y);
      context.lineTo(width, y);
      context.stroke();
    }

    // Trace, centred on the mean of what is visible (ECG baselines wander).
    let sum = 0;
    let count = 0;
    for (const chunk of chunks) {
      if (chunk.end < left || chunk.start > time) continue;
      const step = Math.max(1, Math.floor(chunk.mv.length / 200));
      for (let i = 0; i < chunk.mv.length; i += step) {
        sum += chunk.mv[i];
        count++;
      }
    }
    if (count) center = center === 0 ? sum / count : center * 0.95 + (sum / count) * 0.05;
    const middle = height * 0.55;
    const yOf = (mv: number) => middle - (mv - center) * MM_PER_MV * PX_PER_MM;
    context.strokeStyle = '#111';
    context.lineWidth = 1.4;
    context.lineJoin = 'round';
    context.beginPath();
    let previousEnd = -Infinity;
    let drawn = 0;
    for (const chunk of chunks) {
      if (chunk.end < left || chunk.start > time) continue;
      const period = 1000 / chunk.rate;
      const first = Math.max(0, Math.floor((left - chunk.start) / period));
      const last = Math.min(chunk.mv.length - 1, Math.ceil((time - chunk.start) / period));
      for (let i = first; i <= last; i++) {
        const t = chunk.start + i * period;
        const x = xOf(t);
        const y = yOf(chunk.mv[i]);
        if (i === first && t - previousEnd > 2 * period) context.moveTo(x, y);
        else context.lineTo(x, y);
        drawn++;
      }
      previousEnd = chunk.start + last * period;
    }
    context.stroke();

    // Beat markers.
    context.fillStyle = '#0b5394';
    for (const beat of detector.beats) {
      if (beat < left || beat > time) continue;
      const x = xOf(beat);
      context.beginPath();
      context.moveTo(x - 4, 4);
      context.lineTo(x + 4, 4);
      context.lineTo(x, 10);
      context.closePath();
      context.fill();
    }

    if (!chunks.length) {
      context.fillStyle = '#555';
      context.font = '14px system-ui, sans-serif';
      context.fillText('No ECG received in the last 30 seconds', 12, 24);
    }
    drawnFrames++;
    if (drawnFrames % 30 === 0) status(drawn, time);
  }

  function status(drawn: number, time: number): void {
    const live = chunks.length > 0 && lastEnd - time < delay * 2 && !paused;
    element.dataset.state = paused ? 'paused' : live && drawn > 0 ? 'live' : chunks.length ? 'stalled' : 'waiting';
    element.dataset.beats = String(detector.beats.length);
    state.textContent = paused
      ? 'Paused'
      : live
        ? 'Live'
        : chunks.length
          ? 'No new ECG data'
          : 'Waiting for ECG…';
    const rate = detector.heartRate(time);
    heartRate.textContent = rate ? `HR ${Math.round(rate)} /min` : 'HR —';
    heartRate.title = 'Heart rate from the R-R intervals of the last beats on this strip';
  }

  frame = requestAnimationFrame(draw);
  void poll();

  return {
    element,
    destroy() {
      stopped = true;
      cancelAnimationFrame(frame);
      window.clearTimeout(timer);
    },
  };
}

function leadName(signal: string): string {
  const lead = signal.replace('ecg-lead-', '').toUpperCase();
  return `Lead ${lead}`;
}

/** Streaming QRS detection: band-limited slope, squared, integrated over 150 ms. */
class BeatDetector {
  beats: number[] = [];
  private lastTime = -Infinity;
  private previous = 0;
  private window: number[] = [];
  private windowSum = 0;
  private signalLevel = 0;
  private learningUntil = 0;
  private candidate: { start: number; peak: number } | null = null;
  private history: { t: number; v: number }[] = [];
  private baseline = 0;
  private lastDecay = 0;

  feed(chunk: Chunk): void {
    const period = 1000 / chunk.rate;
    if (chunk.start - this.lastTime > 500) this.reset(chunk.start, chunk.mv[0] ?? 0);
    const size = Math.max(1, Math.round(150 / period));
    for (let i = 0; i < chunk.mv.length; i++) {
      const t = chunk.start + i * period;
      const value = chunk.mv[i];
      this.baseline = this.baseline * 0.995 + value * 0.005;
      const slope = value - this.previous;
      this.previous = value;
      const energy = slope * slope;
      this.window.push(energy);
      this.windowSum += energy;
      if (this.window.length > size) this.windowSum -= this.window.shift()!;
      const integrated = this.windowSum / this.window.length;
      this.history.push({ t, v: value });
      if (this.history.length > 200) this.history.shift();
      if (t < this.learningUntil) {
        this.signalLevel = Math.max(this.signalLevel, integrated);
        continue;
      }
      // No beat for 2 s: the level was too high (noise while learning, or a smaller
      // signal now); halve it, as Pan-Tompkins' search-back would.
      const lastBeat = this.beats[this.beats.length - 1] ?? this.learningUntil;
      if (t - Math.max(lastBeat, this.lastDecay) > 2000) {
        this.signalLevel *= 0.5;
        this.lastDecay = t;
      }
      const threshold = 0.3 * this.signalLevel;
      if (integrated > threshold && t - (this.beats[this.beats.length - 1] ?? -Infinity) > 250) {
        if (!this.candidate) this.candidate = { start: t, peak: integrated };
        else this.candidate.peak = Math.max(this.candidate.peak, integrated);
      } else if (this.candidate) {
        this.finish(this.candidate, t);
        this.candidate = null;
      }
    }
    this.lastTime = chunk.end;
  }

  private finish(candidate: { start: number; peak: number }, end: number): void {
    let best = candidate.start;
    let bestDeviation = -1;
    for (const point of this.history) {
      if (point.t < candidate.start - 150 || point.t > end) continue;
      const deviation = Math.abs(point.v - this.baseline);
      if (deviation > bestDeviation) {
        bestDeviation = deviation;
        best = point.t;
      }
    }
    this.signalLevel = 0.875 * this.signalLevel + 0.125 * candidate.peak;
    this.beats.push(best);
  }

  private reset(start: number, first: number): void {
    this.previous = first;
    this.baseline = first;
    this.lastDecay = start;
    this.window = [];
    this.windowSum = 0;
    this.signalLevel = 0;
    this.learningUntil = start + 2000;
    this.candidate = null;
    this.history = [];
  }

  forget(before: number): void {
    while (this.beats.length && this.beats[0] < before) this.beats.shift();
  }

  heartRate(until: number): number | null {
    const recent = this.beats.filter((beat) => beat <= until).slice(-9);
    const intervals = recent.slice(1).map((beat, index) => beat - recent[index]).filter((rr) => rr > 200 && rr < 3000);
    if (intervals.length < 3) return null;
    intervals.sort((a, b) => a - b);
    return 60_000 / intervals[Math.floor(intervals.length / 2)];
  }
}
