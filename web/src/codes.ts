// How the app names and formats what Wardline stores (the server's catalogue is in
// crates/domain/src/codes.rs; values arrive in the canonical unit).

export interface CodeInfo {
  loinc: string;
  label: string;
  short: string;
  unit: string;
  decimals: number;
}

export const CODES: CodeInfo[] = [
  { loinc: '8867-4', label: 'Heart rate', short: 'HR', unit: '/min', decimals: 0 },
  { loinc: '59408-5', label: 'SpO₂ (pulse oximetry)', short: 'SpO₂', unit: '%', decimals: 0 },
  { loinc: '2708-6', label: 'SpO₂ (arterial)', short: 'SaO₂', unit: '%', decimals: 0 },
  { loinc: '9279-1', label: 'Respiratory rate', short: 'RR', unit: '/min', decimals: 0 },
  { loinc: '8310-5', label: 'Body temperature', short: 'Temp', unit: '°C', decimals: 1 },
  { loinc: '8480-6', label: 'Systolic blood pressure', short: 'Sys', unit: 'mmHg', decimals: 0 },
  { loinc: '8462-4', label: 'Diastolic blood pressure', short: 'Dia', unit: 'mmHg', decimals: 0 },
  { loinc: '99504-3', label: 'Glucose (CGM)', short: 'CGM', unit: 'mg/dL', decimals: 0 },
  { loinc: '41653-7', label: 'Glucose (meter)', short: 'Gluc', unit: 'mg/dL', decimals: 0 },
  { loinc: '2339-0', label: 'Glucose (blood)', short: 'BG', unit: 'mg/dL', decimals: 0 },
  { loinc: '29463-7', label: 'Body weight', short: 'Wt', unit: 'kg', decimals: 1 },
  { loinc: '19935-6', label: 'Peak expiratory flow', short: 'PEF', unit: 'L/min', decimals: 0 },
  { loinc: '8637-1', label: 'R-R interval', short: 'RR int', unit: 'ms', decimals: 0 },
  { loinc: '8478-0', label: 'Mean blood pressure', short: 'MAP', unit: 'mmHg', decimals: 0 },
  { loinc: '8302-2', label: 'Body height', short: 'Ht', unit: 'cm', decimals: 1 },
  { loinc: '39156-5', label: 'Body mass index', short: 'BMI', unit: 'kg/m²', decimals: 1 },
];

const BY_LOINC = new Map(CODES.map((code) => [code.loinc, code]));

const UCUM_DISPLAY: Record<string, string> = {
  Cel: '°C',
  'mm[Hg]': 'mmHg',
  '[degF]': '°F',
  '[lb_av]': 'lb',
  '[in_i]': 'in',
  'kg/m2': 'kg/m²',
  '{beats}/min': '/min',
  '{breaths}/min': '/min',
};

export function codeInfo(loinc: string): CodeInfo {
  return (
    BY_LOINC.get(loinc) ?? { loinc, label: `LOINC ${loinc}`, short: loinc, unit: '', decimals: 1 }
  );
}

export function displayUnit(ucum: string): string {
  return UCUM_DISPLAY[ucum] ?? ucum;
}

export function formatValue(loinc: string, value: number): string {
  return value.toFixed(codeInfo(loinc).decimals);
}

/** The order vitals are shown in: the NEWS2 set first. */
export function codeOrder(loinc: string): number {
  const index = CODES.findIndex((code) => code.loinc === loinc);
  return index < 0 ? CODES.length : index;
}

export const DEVICE_KINDS: [string, string][] = [
  ['cgm', 'Continuous glucose monitor'],
  ['glucose_meter', 'Glucose meter'],
  ['ecg', 'ECG monitor'],
  ['pulse_oximeter', 'Pulse oximeter'],
  ['thermometer', 'Thermometer'],
  ['blood_pressure_cuff', 'Blood-pressure cuff'],
  ['scale', 'Scale'],
  ['peak_flow_meter', 'Peak-flow meter'],
  ['wearable', 'Wearable'],
  ['vital_signs_monitor', 'Vital-signs monitor'],
  ['gateway', 'Home gateway'],
];

/** Kinds a device gets other than by enrolment (a Nightscout site's uploader). */
const OTHER_DEVICE_KINDS: [string, string][] = [['nightscout_uploader', 'Diabetes app (Nightscout)']];

export function deviceKindLabel(kind: string): string {
  return [...DEVICE_KINDS, ...OTHER_DEVICE_KINDS].find(([value]) => value === kind)?.[1] ?? kind;
}

/** How long a device may stay silent before its data is called stale, in minutes. */
export function staleAfterMinutes(kind: string): number {
  switch (kind) {
    case 'ecg':
      return 2;
    case 'cgm':
    case 'nightscout_uploader':
    case 'pulse_oximeter':
    case 'vital_signs_monitor':
    case 'gateway':
      return 15;
    case 'wearable':
      return 60;
    default:
      return 26 * 60; // spot checks: once or twice a day
  }
}

/** The names care plans use for codes (the domain's ObservationCode, snake_case). */
const CODE_NAMES: Record<string, string> = {
  heart_rate: '8867-4',
  oxygen_saturation: '2708-6',
  oxygen_saturation_pulse_oximetry: '59408-5',
  body_temperature: '8310-5',
  respiratory_rate: '9279-1',
  systolic_blood_pressure: '8480-6',
  diastolic_blood_pressure: '8462-4',
  glucose_cgm: '99504-3',
  glucose_meter: '41653-7',
  glucose_blood: '2339-0',
  body_weight: '29463-7',
  peak_expiratory_flow: '19935-6',
  rr_interval: '8637-1',
  mean_blood_pressure: '8478-0',
  body_height: '8302-2',
  body_mass_index: '39156-5',
};

/** A code as a care plan names it (`glucose_cgm`, or a LOINC code). */
export function codeByName(name: string): CodeInfo {
  return codeInfo(CODE_NAMES[name] ?? name);
}
