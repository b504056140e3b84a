// A trend chart of one code over 24 h, 7 d or 30 d, with zoom (drag across the chart,
// or the buttons, which also work from the keyboard). uPlot draws 43,200 points (30
// days of 1-minute data) in a few milliseconds; new readings from the live stream are
// appended without reloading. Beyond 50,000 readings (a month of a reading every
// 50 s or faster) the chart shows the server's per-bucket summary instead: the mean as
// a line and the range from lowest to highest as a band, so no spike is averaged away.

import uPlot from 'uplot';
import { allObservations, observationSummary, type Observation } from '../api';
import { codeInfo, CODES, displayUnit, formatValue } from '../codes';
import { h, notice, replace, select, uid } from '../dom';
import { formatTime } from '../format';

/** Drawn reading by reading up to this many; summarised beyond. */
const MOST_READINGS = 50_000;
/** About this many buckets across the period when summarised. */
const SUMMARY_BUCKETS = 1500;
const BUCKET_SECS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400];

const PERIODS: [string, string, number][] = [
  ['24h', '24 hours', 1],
  ['7d', '7 days', 7],
  ['30d', '30 days', 30],
];

export interface TrendChart {
  element: HTMLElement;
  /** Shows `loinc`; keeps the current period. */
  show(loinc: string): void;
  /** A new observation from the live stream. */
  push(observation: Observation): void;
  destroy(): void;
}

export function trendChart(patientId: string, initialCode: string, available: string[]): TrendChart {
  let code = initialCode;
  let days = 1;
  let plot: uPlot | null = null;
  let xs: number[] = [];
  let ys: number[] = [];
  /** Summary mode: each point is a bucket; `ys` holds the means. */
  let summarised = false;
  let bucketSecs = 0;
  let lows: number[] = [];
  let highs: number[] = [];
  let counts: number[] = [];
  let unit = '';
  let period: [number, number] = [0, 0];
  let loading: AbortController | null = null;

  const titleId = uid('trend-title');
  const codes = [...new Set([...available, ...CODES.map((info) => info.loinc)])];
  const codeSelect = select(
    'code',
    codes.map((loinc) => [loinc, `${codeInfo(loinc).label}${available.includes(loinc) ? '' : ' (no recent data)'}`]),
    { id: uid('trend-code') },
  );
  codeSelect.value = code;
  codeSelect.addEventListener('change', () => {
    code = codeSelect.value;
    void load();
  });
  const periodButtons = PERIODS.map(([key, label, span]) =>
    h(
      'button',
      {
        type: 'button',
        class: 'toggle',
        'data-period': key,
        'aria-pressed': span === days ? 'true' : 'false',
        onclick: () => {
          days = span;
          periodButtons.forEach((button) => button.setAttribute('aria-pressed', String(button.dataset.period === key)));
          void load();
        },
      },
      label,
    ),
  );
  const zoomIn = h('button', { type: 'button', class: 'secondary', onclick: () => zoom(0.5) }, 'Zoom in');
  const zoomOut = h('button', { type: 'button', class: 'secondary', onclick: () => zoom(2) }, 'Zoom out');
  const reset = h('button', { type: 'button', class: 'secondary', onclick: () => resetZoom() }, 'Reset zoom');
  const status = h('p', { class: 'chart-status', role: 'status' });
  const summary = h('p', { class: 'chart-summary', id: uid('trend-summary') });
  const canvasHost = h('div', {
    class: 'chart-host',
    role: 'img',
    'aria-labelledby': titleId,
    'aria-describedby': summary.id,
    'data-testid': 'trend-chart',
  });
  const element = h(
    'section',
    { class: 'card trend', 'aria-labelledby': titleId },
    h('h2', { id: titleId }, 'Trend'),
    h(
      'div',
      { class: 'chart-controls' },
      h('div', { class: 'field inline' }, h('label', { for: codeSelect.id }, 'Measurement'), codeSelect),
      h('div', { class: 'toggle-group', role: 'group', 'aria-label': 'Period' }, periodButtons),
      h('div', { class: 'toggle-group', role: 'group', 'aria-label': 'Zoom' }, zoomIn, zoomOut, reset),
    ),
    status,
    canvasHost,
    summary,
    h('p', { class: 'hint' }, 'Drag across the chart to zoom into a time span; double-click to see all.'),
  );

  const resizeObserver = new ResizeObserver(() => {
    if (plot) plot.setSize(size());
  });
  resizeObserver.observe(canvasHost);

  function size(): { width: number; height: number } {
    return { width: Math.max(280, canvasHost.clientWidth), height: 260 };
  }

  function zoomed(): boolean {
    if (!plot) return false;
    const { min, max } = plot.scales.x;
    return min !== undefined && max !== undefined && (min > period[0] + 1 || max < period[1] - 1);
  }

  function zoom(factor: number): void {
    if (!plot) return;
    const { min = period[0], max = period[1] } = plot.scales.x;
    const center = (min + max) / 2;
    const half = Math.min((max - min) * factor, period[1] - period[0]) / 2;
    let low = center - half;
    let high = center + half;
    if (low < period[0]) [low, high] = [period[0], period[0] + 2 * half];
    if (high > period[1]) [low, high] = [period[1] - 2 * half, period[1]];
    plot.setScale('x', { min: low, max: high });
  }

  function resetZoom(): void {
    plot?.setScale('x', { min: period[0], max: period[1] });
  }

  function describe(): void {
    if (ys.length === 0) {
      summary.textContent = `No ${codeInfo(code).label.toLowerCase()} readings in the last ${days === 1 ? '24 hours' : `${days} days`}.`;
      return;
    }
    let low = Infinity;
    let high = -Infinity;
    for (const value of summarised ? lows : ys) if (value < low) low = value;
    for (const value of summarised ? highs : ys) if (value > high) high = value;
    const last = ys.length - 1;
    const first = summarised ? xs[0] - bucketSecs / 2 : xs[0];
    const readings = summarised ? counts.reduce((sum, count) => sum + count, 0) : ys.length;
    summary.textContent =
      `${readings.toLocaleString()} readings from ${formatTime(new Date(first * 1000).toISOString())} ` +
      `to ${formatTime(new Date(xs[last] * 1000).toISOString())}; lowest ${formatValue(code, low)}, ` +
      `highest ${formatValue(code, high)}` +
      (summarised
        ? `; shown as the mean and the range of each ${bucketLabel(bucketSecs)}.`
        : `, latest ${formatValue(code, ys[last])} ${unit}.`);
  }

  function draw(): void {
    const info = codeInfo(code);
    const value = (_u: uPlot, value: number | null) => (value == null ? '—' : `${formatValue(code, value)} ${unit}`);
    const series: uPlot.Series[] = [
      { value: (_u, value) => (value == null ? '—' : formatTime(new Date(value * 1000).toISOString())) },
      {
        label: summarised ? `${info.label}, mean per ${bucketLabel(bucketSecs)} (${unit})` : `${info.label} (${unit})`,
        stroke: '#0b5394',
        width: 1.5,
        points: { show: ys.length <= 400, size: 5 },
        value,
      },
    ];
    if (summarised) {
      series.push(
        { label: 'Lowest', stroke: 'rgba(11, 83, 148, 0.45)', width: 1, value },
        { label: 'Highest', stroke: 'rgba(11, 83, 148, 0.45)', width: 1, value },
      );
    }
    const options: uPlot.Options = {
      ...size(),
      scales: { x: { time: true, auto: false, range: (_u, min, max) => [min, max] } },
      series,
      bands: summarised ? [{ series: [3, 2], fill: 'rgba(11, 83, 148, 0.15)' }] : undefined,
      axes: [{ stroke: '#333' }, { stroke: '#333', label: unit, size: 56 }],
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
    };
    plot?.destroy();
    plot = new uPlot(options, summarised ? [xs, ys, lows, highs] : [xs, ys], canvasHost);
    plot.setScale('x', { min: period[0], max: period[1] });
  }

  async function load(): Promise<void> {
    loading?.abort();
    const controller = new AbortController();
    loading = controller;
    const to = new Date(Date.now() + 60_000);
    const from = new Date(to.getTime() - days * 86_400_000);
    period = [from.getTime() / 1000, to.getTime() / 1000];
    status.textContent = 'Loading…';
    canvasHost.dataset.state = 'loading';
    const started = performance.now();
    try {
      // The summary first: it is small, and its counts say whether the readings
      // themselves are few enough to draw one by one.
      const span = (to.getTime() - from.getTime()) / 1000;
      const bucket = BUCKET_SECS.find((secs) => secs >= span / SUMMARY_BUCKETS) ?? 86_400;
      const result = await observationSummary(patientId, code, from, to, bucket, controller.signal);
      const total = result.buckets.reduce((sum, b) => sum + b.count, 0);
      const observations =
        total > MOST_READINGS
          ? null
          : await allObservations(patientId, code, from, to, controller.signal, (count) => {
              status.textContent = `Loading… ${count.toLocaleString()} readings`;
            });
      if (controller.signal.aborted) return;
      if (observations) {
        summarised = false;
        xs = new Array(observations.length);
        ys = new Array(observations.length);
        observations.forEach((observation, index) => {
          xs[index] = Date.parse(observation.effective) / 1000;
          ys[index] = observation.value;
        });
        unit = displayUnit(observations[0]?.unit ?? codeInfo(code).unit);
      } else {
        summarised = true;
        bucketSecs = result.bucket_secs;
        xs = result.buckets.map((b) => Date.parse(b.start) / 1000 + bucketSecs / 2);
        ys = result.buckets.map((b) => b.mean);
        lows = result.buckets.map((b) => b.min);
        highs = result.buckets.map((b) => b.max);
        counts = result.buckets.map((b) => b.count);
        unit = displayUnit(result.unit);
      }
      const fetched = performance.now();
      draw();
      describe();
      const drawn = performance.now();
      status.textContent = '';
      canvasHost.dataset.state = 'ready';
      canvasHost.dataset.points = String(ys.length);
      canvasHost.dataset.mode = summarised ? 'summary' : 'readings';
      canvasHost.dataset.loadMs = String(Math.round(fetched - started));
      canvasHost.dataset.drawMs = String(Math.round(drawn - fetched));
    } catch (error) {
      if (controller.signal.aborted) return;
      canvasHost.dataset.state = 'error';
      replace(status, notice('error', `Could not load the trend: ${error instanceof Error ? error.message : String(error)}`));
    }
  }

  void load();

  return {
    element,
    show(loinc: string) {
      if (loinc === code) return;
      code = loinc;
      codeSelect.value = loinc;
      void load();
    },
    push(observation: Observation) {
      if (observation.loinc !== code || !plot) return;
      const x = Date.parse(observation.effective) / 1000;
      if (x < period[0]) return;
      if (xs.length && x < xs[xs.length - 1]) return; // out of order: the next load sorts it
      const wasZoomed = zoomed();
      const value = observation.value;
      if (!summarised) {
        xs.push(x);
        ys.push(value);
      } else if (xs.length && x < xs[xs.length - 1] + bucketSecs / 2) {
        // Into the newest bucket: its mean, range and count follow.
        const last = xs.length - 1;
        ys[last] = (ys[last] * counts[last] + value) / (counts[last] + 1);
        lows[last] = Math.min(lows[last], value);
        highs[last] = Math.max(highs[last], value);
        counts[last] += 1;
      } else {
        const start = xs.length ? xs[xs.length - 1] - bucketSecs / 2 : period[0];
        const index = Math.floor((x - start) / bucketSecs);
        xs.push(start + index * bucketSecs + bucketSecs / 2);
        ys.push(value);
        lows.push(value);
        highs.push(value);
        counts.push(1);
      }
      if (x > period[1]) period = [period[0] + (x - period[1]) + 60, x + 60];
      plot.setData(summarised ? [xs, ys, lows, highs] : [xs, ys], false);
      if (!wasZoomed) resetZoom();
      canvasHost.dataset.points = String(ys.length);
      describe();
    },
    destroy() {
      loading?.abort();
      resizeObserver.disconnect();
      plot?.destroy();
    },
  };
}

/** "5 min", "1 h", "1 day": a bucket's width in words. */
function bucketLabel(secs: number): string {
  if (secs % 86_400 === 0) return secs === 86_400 ? 'day' : `${secs / 86_400} days`;
  if (secs % 3600 === 0) return secs === 3600 ? 'hour' : `${secs / 3600} h`;
  return `${Math.round(secs / 60)} min`;
}
