// A patient's latest value of each code as tiles, and the latest NEWS2 in a line: the
// patient page shows them, and so does a visit's room (the clinician's view of the
// patient, and the patient's "what your clinician sees").

import type { Observation } from './api';
import { codeInfo, codeOrder, displayUnit, formatValue } from './codes';
import { h, replace } from './dom';
import { latestNews2, news2Band, type News2 } from './features';
import { since, timeAgo } from './format';

export interface VitalTiles {
  element: HTMLUListElement;
  /** The newest reading per code, by when it was measured. */
  values: Map<string, Observation>;
  /**
   * Takes a reading: a tile shows the newest reading of its code by when it was
   * measured, so a value derived late (heart rate from an ECG chunk analysed after a
   * wearable's reading) does not replace a newer one. Returns whether the tile changed.
   */
  take(observation: Observation): boolean;
  render(changed?: string): void;
}

/** Tiles of the latest vitals; `onSelect` makes each a button (the patient page's trend). */
export function vitalTiles(latest: Observation[], onSelect?: (loinc: string) => void): VitalTiles {
  const values = new Map(latest.map((observation) => [observation.loinc, observation]));
  const element = h('ul', { class: 'tiles', 'aria-label': 'Latest vitals', 'data-testid': 'vitals-tiles' });

  function tileBody(observation: Observation): HTMLElement[] {
    const info = codeInfo(observation.loinc);
    return [
      h('span', { class: 'tile-label' }, info.label),
      h('span', { class: 'tile-value' }, h('span', { class: 'value', 'data-testid': `value-${observation.loinc}` }, formatValue(observation.loinc, observation.value)), ' ', h('span', { class: 'unit' }, displayUnit(observation.unit))),
      h('span', { class: 'tile-time' }, 'measured ', timeAgo(observation.effective), observation.derived ? ' (derived)' : ''),
    ];
  }

  function render(changed?: string): void {
    const shown = [...values.values()].sort((a, b) => codeOrder(a.loinc) - codeOrder(b.loinc));
    if (shown.length === 0) {
      replace(element, h('li', { class: 'muted' }, 'No readings yet.'));
      return;
    }
    replace(
      element,
      shown.map((observation) => {
        const info = codeInfo(observation.loinc);
        return h(
          'li',
          { class: observation.loinc === changed ? 'tile flash' : 'tile', 'data-code': observation.loinc },
          onSelect
            ? h(
                'button',
                { type: 'button', class: 'tile-button', 'aria-label': `${info.label}: ${formatValue(observation.loinc, observation.value)} ${displayUnit(observation.unit)}, ${since(observation.effective)}. Show trend.`, onclick: () => onSelect(observation.loinc) },
                ...tileBody(observation),
              )
            : h('div', { class: 'tile-button tile-static' }, ...tileBody(observation)),
        );
      }),
    );
  }

  function take(observation: Observation): boolean {
    const shown = values.get(observation.loinc);
    if (shown && Date.parse(shown.effective) > Date.parse(observation.effective)) return false;
    values.set(observation.loinc, observation);
    return true;
  }

  render();
  return { element, values, take, render };
}

/** The latest NEWS2 in words: total, band, what it lacks, when. */
export function news2Line(patientId: string): { element: HTMLElement; render(news2: News2 | null | undefined): void; reload(): Promise<void> } {
  const element = h('p', { class: 'news2-line', 'data-testid': 'news2' });
  const render = (news2: News2 | null | undefined) => {
    if (news2 === undefined) return;
    if (news2 === null) {
      element.textContent = 'NEWS2: not scored yet';
      return;
    }
    const band = news2Band(news2);
    replace(
      element,
      'NEWS2 ',
      h('strong', { class: `news2 news2-${band}` }, news2.complete ? `${news2.total}` : `≥ ${news2.total}`, ` — ${band.replace('-', '–')} risk`),
      news2.any_parameter_3 ? ' (a single parameter scores 3)' : '',
      news2.complete ? '' : ` · partial: no ${news2.missing.join(', ').replace(/_/g, ' ')}`,
      ' · scored ',
      timeAgo(news2.time),
    );
  };
  const reload = async () => render(await latestNews2(patientId).catch(() => undefined));
  return { element, render, reload };
}
