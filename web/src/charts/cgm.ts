// The CGM report: time-in-ranges bar, GMI, CV and the AGP percentile chart, from
// GET /api/v1/patients/{id}/reports/cgm (wardline-analytics' ConsensusMetrics and
// AmbulatoryGlucoseProfile, nested as `metrics` and `agp`; both absent for a period
// without readings).

import uPlot from 'uplot';
import { h, notice, replace } from '../dom';
import { endpoints, optional } from '../features';
import type { CgmReport } from '../schema';

type Metrics = NonNullable<CgmReport['metrics']>;
type Agp = NonNullable<CgmReport['agp']>;

const RANGES: [keyof Metrics, string, string, string][] = [
  ['tar_gt250_pct', 'Very high', '> 250 mg/dL', 'very-high'],
  ['tar_181_250_pct', 'High', '181–250 mg/dL', 'high'],
  ['tir_70_180_pct', 'In range', '70–180 mg/dL', 'in-range'],
  ['tbr_54_69_pct', 'Low', '54–69 mg/dL', 'low'],
  ['tbr_lt54_pct', 'Very low', '< 54 mg/dL', 'very-low'],
];

export function cgmReport(patientId: string, signal: AbortSignal): { element: HTMLElement; destroy(): void } {
  const body = h('div', null, notice('info', 'Loading the CGM report…'));
  const element = h(
    'section',
    { class: 'card cgm', 'aria-labelledby': 'cgm-title', 'data-testid': 'cgm-report' },
    h('h2', { id: 'cgm-title' }, 'CGM report (14 days)'),
    body,
  );
  let plot: uPlot | null = null;
  optional<CgmReport>('cgm', endpoints.cgmReport(patientId, 14), signal)
    .then((report) => {
      if (report === undefined) {
        replace(body, notice('info', 'The CGM report is not available on this server yet.'));
        return;
      }
      const metrics = report.metrics;
      if (!metrics) {
        replace(body, notice('info', 'No CGM readings in the last 14 days.'));
        return;
      }
      const agpHost = h('div', { class: 'chart-host', role: 'img', 'aria-label': 'Ambulatory glucose profile: median and percentile bands by time of day' });
      replace(
        body,
        tirBar(metrics),
        h(
          'dl',
          { class: 'stats' },
          stat('GMI', metrics.gmi_pct, '%', 1),
          stat('Mean glucose', metrics.mean_mg_dl, 'mg/dL', 0),
          stat('CV', metrics.cv_pct ?? metrics.cv_pop_pct, '% (target ≤ 36 %)', 1),
          stat('Sensor active', metrics.percent_time_active, '%', 0),
        ),
        report.agp ? h('h3', null, 'Ambulatory glucose profile') : null,
        report.agp ? agpHost : null,
      );
      if (report.agp) plot = agpChart(report.agp, agpHost);
    })
    .catch((error) => replace(body, notice('error', `Could not load the CGM report: ${String(error)}`)));
  return { element, destroy: () => plot?.destroy() };
}

function stat(label: string, value: number | undefined | null, unit: string, decimals: number): HTMLElement {
  return h('div', null, h('dt', null, label), h('dd', null, value == null ? '—' : `${value.toFixed(decimals)} ${unit}`));
}

function tirBar(metrics: Metrics): HTMLElement {
  const bar = h('div', { class: 'tir-bar', 'aria-hidden': 'true' });
  const legend = h('ul', { class: 'tir-legend' });
  for (const [key, label, range, css] of RANGES) {
    const value = Number(metrics[key] ?? 0);
    const segment = h('div', { class: `tir-${css}` });
    segment.style.flexGrow = String(value);
    bar.append(segment);
    legend.append(h('li', null, h('span', { class: `swatch tir-${css}`, 'aria-hidden': 'true' }), h('strong', null, `${label}`), ` ${range}: ${value.toFixed(1)} %`));
  }
  return h('div', { class: 'tir' }, h('h3', null, 'Time in ranges'), bar, legend);
}

function agpChart(agp: Agp, host: HTMLElement): uPlot {
  const xs = agp.bins.map((bin) => bin.start_minute / 60);
  const level = (index: number) => agp.bins.map((bin) => (bin.percentiles ? bin.percentiles[index] : null));
  const options: uPlot.Options = {
    width: Math.max(280, host.clientWidth || 600),
    height: 240,
    scales: { x: { time: false, range: [0, 24] }, y: { range: [40, 350] } },
    axes: [
      { label: 'Time of day (h)', values: (_u, ticks) => ticks.map((tick) => `${String(Math.floor(tick)).padStart(2, '0')}:00`) },
      { label: 'mg/dL', size: 56 },
    ],
    series: [
      { label: 'Hour' },
      { label: '5th %', stroke: '#7f9cc0', dash: [4, 4], points: { show: false } },
      { label: '25th %', stroke: '#4f7fb5', points: { show: false } },
      { label: 'Median', stroke: '#0b3d75', width: 2.5, points: { show: false } },
      { label: '75th %', stroke: '#4f7fb5', points: { show: false } },
      { label: '95th %', stroke: '#7f9cc0', dash: [4, 4], points: { show: false } },
    ],
    bands: [
      { series: [5, 1], fill: 'rgba(11,83,148,0.10)' },
      { series: [4, 2], fill: 'rgba(11,83,148,0.25)' },
    ],
  };
  return new uPlot(options, [xs, level(0), level(1), level(2), level(3), level(4)] as uPlot.AlignedData, host);
}
