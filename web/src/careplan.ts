// Care plan rules in words, which of their numbers the care team may edit, and what an
// edit changed (for the version history).

import { codeByName, deviceKindLabel } from './codes';
import { priorityLabel, type Rule, type RuleKind } from './features';
import { formatDuration } from './format';

/** One number of a rule the care team can change. */
export interface RuleField {
  /** Where it lives in `rule.kind`. */
  path: string[];
  label: string;
  /** As shown: a unit, or `min` for durations (stored in seconds). */
  unit: string;
  seconds: boolean;
  hint?: string;
}

function unitOf(kind: RuleKind): string {
  return 'code' in kind ? codeByName(kind.code).unit : '';
}

function trim(value: number): string {
  return String(Number(value.toFixed(2)));
}

/** The numbers of a rule that can be edited, by kind. */
export function ruleFields(rule: Rule): RuleField[] {
  const kind = rule.kind;
  const unit = unitOf(kind);
  const duration = (path: string, label: string, hint?: string): RuleField => ({ path: [path], label, unit: 'min', seconds: true, hint });
  switch (kind.type) {
    case 'threshold':
      return [
        { path: ['value'], label: 'Limit', unit, seconds: false },
        duration('min_duration_secs', 'For at least', '0 raises on the first reading'),
        { path: ['hysteresis'], label: 'Clears once back by', unit, seconds: false },
      ];
    case 'predicted_crossing':
      return [
        { path: ['value'], label: 'Forecast limit', unit, seconds: false },
        duration('horizon_secs', 'Looks ahead'),
        duration('min_duration_secs', 'Forecasts agree for'),
        { path: ['hysteresis'], label: 'Clears once back by', unit, seconds: false },
      ];
    case 'rate_of_change':
      return [
        { path: ['per_minute'], label: 'Rate', unit: `${unit}/min`, seconds: false },
        duration('window_secs', 'Measured over'),
        { path: ['hysteresis_per_minute'], label: 'Clears once slower by', unit: `${unit}/min`, seconds: false },
        ...(kind.only_below != null ? [{ path: ['only_below'], label: 'Only while below', unit, seconds: false }] : []),
      ];
    case 'device_silence':
      return [duration('after_secs', 'No data for')];
    case 'rhythm':
      return [duration('clear_after_secs', 'Clears after none for')];
    case 'device_status':
      return kind.condition.status === 'low_battery'
        ? [{ path: ['condition', 'below_percent'], label: 'Battery below', unit: '%', seconds: false }]
        : [];
    case 'news2':
      return [];
  }
}

export function fieldValue(rule: Rule, field: RuleField): number | undefined {
  let value: unknown = rule.kind;
  for (const key of field.path) value = (value as Record<string, unknown> | undefined)?.[key];
  if (typeof value !== 'number') return undefined;
  return field.seconds ? value / 60 : value;
}

/** A copy of `rule` with `shown` (in the field's display unit) set. */
export function withField(rule: Rule, field: RuleField, shown: number): Rule {
  const copy = structuredClone(rule);
  let target = copy.kind as unknown as Record<string, unknown>;
  for (const key of field.path.slice(0, -1)) target = target[key] as Record<string, unknown>;
  target[field.path[field.path.length - 1]] = field.seconds ? Math.round(shown * 60) : shown;
  return copy;
}

export function showField(value: number | undefined, field: RuleField): string {
  if (value === undefined) return '—';
  if (field.seconds) return value === 0 ? '0 min' : formatDuration(Math.round(value * 60));
  return `${trim(value)}${field.unit === '%' ? ' %' : field.unit ? ` ${field.unit}` : ''}`;
}

function devices(selector: { by: 'kind'; kind: string } | { by: 'device'; device_id: string }): string {
  return selector.by === 'kind' ? `any ${deviceKindLabel(selector.kind).toLowerCase()}` : `device ${selector.device_id}`;
}

/** What a rule watches for, in words. */
export function describeRule(rule: Rule): string {
  const kind = rule.kind;
  switch (kind.type) {
    case 'threshold': {
      const code = codeByName(kind.code);
      const when = kind.min_duration_secs > 0 ? `for ${formatDuration(kind.min_duration_secs)}` : 'on the first reading';
      const clears = kind.direction === 'below' ? kind.value + kind.hysteresis : kind.value - kind.hysteresis;
      return `${code.label} ${kind.direction} ${trim(kind.value)} ${code.unit} ${when}; clears at ${trim(clears)} ${code.unit}`;
    }
    case 'predicted_crossing': {
      const code = codeByName(kind.code);
      return `${code.label} forecast ${kind.direction} ${trim(kind.value)} ${code.unit} within ${formatDuration(kind.horizon_secs)}${(kind.min_duration_secs ?? 0) > 0 ? `, predicted for ${formatDuration(kind.min_duration_secs ?? 0)}` : ''}`;
    }
    case 'rate_of_change': {
      const code = codeByName(kind.code);
      return `${code.label} ${kind.direction === 'below' ? 'falling' : 'rising'} faster than ${trim(kind.per_minute)} ${code.unit}/min over ${formatDuration(kind.window_secs)}${kind.only_below != null ? `, only below ${trim(kind.only_below)} ${code.unit}` : ''}`;
    }
    case 'news2':
      return kind.band.band === 'single_parameter3'
        ? 'NEWS2: a single parameter scores 3 (aggregate below 5)'
        : kind.band.max == null
          ? `NEWS2 aggregate ${kind.band.min} or more`
          : `NEWS2 aggregate ${kind.band.min}–${kind.band.max}`;
    case 'rhythm':
      return `ECG: ${kind.rhythm.replace(/_/g, ' ')}; clears after ${formatDuration(kind.clear_after_secs)} without one`;
    case 'device_silence':
      return `No data from ${devices(kind.devices)} for ${formatDuration(kind.after_secs)}`;
    case 'device_status':
      return kind.condition.status === 'low_battery'
        ? `Battery of ${devices(kind.devices)} below ${trim(kind.condition.below_percent)} %`
        : `${devices(kind.devices).replace(/^any/, 'Any')} reports a fault`;
    default:
      return (kind as { type: string }).type.replace(/_/g, ' ');
  }
}

/** What changed from `old` to `next`, one line per number ("Limit: 70 → 75 mg/dL"). */
export function ruleChanges(old: Rule, next: Rule): string[] {
  const lines: string[] = [];
  if (old.priority !== next.priority) lines.push(`Priority: ${priorityLabel(old.priority)} → ${priorityLabel(next.priority)}`);
  if (old.name !== next.name) lines.push(`Name: ${old.name} → ${next.name}`);
  if (old.resolve_on_clear !== next.resolve_on_clear) {
    lines.push(next.resolve_on_clear ? 'Now resolves by itself when clear' : 'Now stays until a person resolves it');
  }
  if (old.kind.type === next.kind.type) {
    for (const field of ruleFields(next)) {
      const before = fieldValue(old, field);
      const after = fieldValue(next, field);
      if (before !== after) lines.push(`${field.label}: ${showField(before, field)} → ${showField(after, field)}`);
    }
  }
  if (lines.length === 0 && JSON.stringify(old) !== JSON.stringify(next)) {
    lines.push(`${describeRule(old)} → ${describeRule(next)}`);
  }
  return lines;
}
