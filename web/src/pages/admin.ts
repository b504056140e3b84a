// Administration: users, care teams, patients, device enrolment, device mapping
// templates and the audit log.

import { api, post, type AuditRecord, type CareTeam, type Device, type EnrolledDevice, type Patient, type User } from '../api';
import { DEVICE_KINDS, deviceKindLabel } from '../codes';
import { field, h, notice, replace, select, type Child } from '../dom';
import { formatTime } from '../format';
import type { PageContext } from '../router';
import type { EmergencyAccess, IssuedDeviceCertificate, MappingTemplate, TemplateTrial } from '../schema';
import { currentUser, frame } from '../session';

const SECTIONS: Record<string, [string, (main: HTMLElement, context: PageContext) => Promise<void>]> = {
  users: ['Users', users],
  'care-teams': ['Care teams', careTeams],
  patients: ['Patients', patients],
  devices: ['Devices', devices],
  'device-templates': ['Device templates', deviceTemplates],
  'emergency-access': ['Emergency access', emergencyAccess],
  audit: ['Audit log', audit],
};

export async function adminPage(root: HTMLElement, context: PageContext): Promise<void> {
  const section = SECTIONS[context.params.section];
  if (!section) {
    frame(root, 'Not found', h('h1', null, 'Not found'));
    return;
  }
  const body = h('div', null, notice('info', 'Loading…'));
  frame(root, section[0], h('h1', null, section[0]), body);
  await section[1](body, context);
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A form that posts, shows the outcome, and re-renders the section on success. */
function form(title: string, fields: Child[], submitLabel: string, action: () => Promise<Child | void>, after: () => void): HTMLElement {
  const message = h('div', { class: 'form-message' });
  const submit = h('button', { type: 'submit' }, submitLabel);
  const element = h('form', { class: 'card admin-form', 'aria-label': title }, h('h2', null, title), fields, message, submit);
  element.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!element.checkValidity()) {
      element.reportValidity();
      return;
    }
    submit.disabled = true;
    try {
      const shown = await action();
      after();
      if (shown) replace(message, shown);
      else replace(message, notice('success', 'Saved.'));
    } catch (error) {
      replace(message, notice('error', errorText(error)));
    } finally {
      submit.disabled = false;
    }
  });
  return element;
}

function table(caption: string, headings: string[], rows: Child[][]): HTMLElement {
  return h(
    'div',
    { class: 'table-scroll' },
    h(
      'table',
      null,
      h('caption', null, caption),
      h('thead', null, h('tr', null, headings.map((heading) => h('th', { scope: 'col' }, heading)))),
      h('tbody', null, rows.map((cells) => h('tr', null, cells.map((cell) => h('td', null, cell))))),
    ),
  );
}

const ROLES: [string, string][] = [
  ['clinician', 'Clinician'],
  ['nurse', 'Nurse'],
  ['patient', 'Patient'],
  ['specialist', 'Specialist (outside the care teams: sees only what a patient shares)'],
  ['admin', 'Administrator'],
];

async function users(main: HTMLElement, context: PageContext): Promise<void> {
  const [list, patientList] = await Promise.all([
    api<User[]>('/api/v1/users', { signal: context.signal }),
    api<Patient[]>('/api/v1/patients', { signal: context.signal }),
  ]);
  const names = new Map(patientList.map((patient) => [patient.id, patient.display_name]));
  const username = h('input', { name: 'username', required: true, autocomplete: 'off', pattern: '[A-Za-z0-9._@\\-]{3,64}' });
  const displayName = h('input', { name: 'display_name', required: true, maxlength: '200' });
  const role = select('role', ROLES);
  const patient = select('patient_id', [['', '— choose —'], ...patientList.map((p): [string, string] => [p.id, p.display_name])]);
  const patientField = field('Patient record (for a patient account)', patient);
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'new-password', minlength: '12' });
  const syncRole = () => {
    patientField.hidden = role.value !== 'patient';
    patient.required = role.value === 'patient';
  };
  role.addEventListener('change', syncRole);
  syncRole();
  replace(
    main,
    form(
      'Create a user',
      [
        field('Username', username, '3 to 64 letters, digits, . _ - @'),
        field('Display name', displayName),
        field('Role', role),
        patientField,
        field('Password (optional)', password, 'At least 12 characters. Leave empty to generate one, shown once.'),
      ],
      'Create user',
      async () => {
        const created = await post<{ user: User; generated_password?: string }>('/api/v1/users', {
          username: username.value,
          display_name: displayName.value,
          role: role.value,
          password: password.value || undefined,
          patient_id: role.value === 'patient' ? patient.value : undefined,
        });
        password.value = '';
        return created.generated_password
          ? shownOnce(`Password for ${created.user.username}`, [['Password', created.generated_password]])
          : notice('success', `Created ${created.user.username}.`);
      },
      () => void refresh(),
    ),
    h('div', { class: 'list-host' }),
  );
  const host = main.querySelector<HTMLElement>('.list-host')!;
  const message = h('div', { class: 'form-message', role: 'status' });
  /** A leaver's account: disabled after a second, explicit confirmation; never deleted. */
  const disableControl = (user: User): Child => {
    if (user.disabled || user.id === currentUser()?.id) return '—';
    const cell = h('div', { class: 'disable-user' });
    const ask = () =>
      replace(
        cell,
        h('button', { type: 'button', class: 'secondary small', 'aria-label': `Disable ${user.username}`, onclick: confirm }, 'Disable…'),
      );
    function confirm(): void {
      replace(
        cell,
        h('span', null, `Disable ${user.username}? Their sessions end now and they cannot log in again. `),
        h('button', {
          type: 'button',
          class: 'danger small',
          onclick: async () => {
            try {
              await post(`/api/v1/users/${encodeURIComponent(user.id)}/disable`, {});
              // The list shows the account disabled before the notice says so.
              await refresh();
              replace(message, notice('success', `${user.username} is disabled.`));
            } catch (error) {
              replace(message, notice('error', errorText(error)));
            }
          },
        }, `Disable ${user.username}`),
        ' ',
        h('button', { type: 'button', class: 'secondary small', onclick: ask }, 'Cancel'),
      );
    }
    ask();
    return cell;
  };
  /** A lost phone: the second factor removed after a second, explicit confirmation. */
  const secondFactorControl = (user: User): Child => {
    if (!user.second_factor) return 'none';
    if (user.disabled || user.id === currentUser()?.id) return 'set up';
    const cell = h('div', { class: 'disable-user' });
    const ask = () =>
      replace(
        cell,
        'set up ',
        h('button', { type: 'button', class: 'secondary small', 'aria-label': `Reset ${user.username}'s second factor`, onclick: confirm }, 'Reset…'),
      );
    function confirm(): void {
      replace(
        cell,
        h('span', null, `Remove ${user.username}'s second factor? Their next login takes the password alone; an administrator must set up a new one at once. `),
        h('button', {
          type: 'button',
          class: 'danger small',
          onclick: async () => {
            try {
              await post(`/api/v1/users/${encodeURIComponent(user.id)}/reset-second-factor`, {});
              await refresh();
              replace(message, notice('success', `${user.username}'s second factor is removed.`));
            } catch (error) {
              replace(message, notice('error', errorText(error)));
            }
          },
        }, `Remove ${user.username}'s second factor`),
        ' ',
        h('button', { type: 'button', class: 'secondary small', onclick: ask }, 'Cancel'),
      );
    }
    ask();
    return cell;
  };
  const render = (items: User[]) =>
    replace(
      host,
      message,
      table(
        `${items.length} users`,
        ['Username', 'Name', 'Role', 'Patient record', 'Status', 'Second factor', 'Created', 'Account'],
        items.map((user) => [
          user.username, user.display_name, user.role, user.patient_id ? names.get(user.patient_id) ?? user.patient_id : '—',
          user.disabled ? 'disabled' : 'active', secondFactorControl(user), formatTime(user.created), disableControl(user),
        ]),
      ),
    );
  const refresh = async () => render(await api<User[]>('/api/v1/users'));
  render(list);
}

async function careTeams(main: HTMLElement, context: PageContext): Promise<void> {
  const load = () =>
    Promise.all([
      api<CareTeam[]>('/api/v1/care-teams', { signal: context.signal }),
      api<User[]>('/api/v1/users', { signal: context.signal }),
      api<Patient[]>('/api/v1/patients', { signal: context.signal }),
    ]);
  const [teams, userList, patientList] = await load();
  const userName = new Map(userList.map((user) => [user.id, `${user.display_name} (${user.role})`]));
  const patientName = new Map(patientList.map((patient) => [patient.id, patient.display_name]));
  const teamOptions = (): [string, string][] => teams.map((team) => [team.id, team.name]);
  const name = h('input', { name: 'name', required: true, maxlength: '200' });
  const memberTeam = select('team', teamOptions(), { required: true });
  const member = select('user', userList.filter((user) => user.role === 'clinician' || user.role === 'nurse' || user.role === 'admin').map((user): [string, string] => [user.id, userName.get(user.id)!]), { required: true });
  const patientTeam = select('team', teamOptions(), { required: true });
  const patient = select('patient', patientList.map((p): [string, string] => [p.id, p.display_name]), { required: true });
  // Taking someone off a team ends the access it gave them, at their next request.
  const leavingTeam = select('team', teamOptions(), { required: true });
  const leaving = select('user', userList.filter((user) => user.role === 'clinician' || user.role === 'nurse').map((user): [string, string] => [user.id, userName.get(user.id)!]), { required: true });
  const dischargingTeam = select('team', teamOptions(), { required: true });
  const discharged = select('patient', patientList.map((p): [string, string] => [p.id, p.display_name]), { required: true });
  const remove = (team: string, what: 'members' | 'patients', id: string) =>
    api<void>(`/api/v1/care-teams/${encodeURIComponent(team)}/${what}/${encodeURIComponent(id)}`, { method: 'DELETE' });
  const listHost = h('div');
  const render = (items: CareTeam[]) =>
    replace(
      listHost,
      table(
        `${items.length} care teams`,
        ['Team', 'Members', 'Patients'],
        items.map((team) => [team.name, team.members.map((id) => userName.get(id) ?? id).join(', ') || '—', team.patients.map((id) => patientName.get(id) ?? id).join(', ') || '—']),
      ),
    );
  const refresh = () => void careTeams(main, context);
  replace(
    main,
    h(
      'div',
      { class: 'admin-forms' },
      form('Create a care team', [field('Team name', name)], 'Create team', async () => void (await post('/api/v1/care-teams', { name: name.value })), refresh),
      form('Add a clinician or nurse', [field('Care team', memberTeam), field('Person', member)], 'Add member', async () => void (await post(`/api/v1/care-teams/${encodeURIComponent(memberTeam.value)}/members`, { user_id: member.value })), refresh),
      form('Put a patient in a team’s care', [field('Care team', patientTeam), field('Patient', patient)], 'Add patient', async () => void (await post(`/api/v1/care-teams/${encodeURIComponent(patientTeam.value)}/patients`, { patient_id: patient.value })), refresh),
      form('Take a clinician or nurse off a team', [field('Care team', leavingTeam), field('Person', leaving)], 'Remove member', async () => void (await remove(leavingTeam.value, 'members', leaving.value)), refresh),
      form('End a team’s care of a patient', [field('Care team', dischargingTeam), field('Patient', discharged)], 'End care', async () => void (await remove(dischargingTeam.value, 'patients', discharged.value)), refresh),
    ),
    listHost,
  );
  render(teams);
}

async function patients(main: HTMLElement, context: PageContext): Promise<void> {
  const list = await api<Patient[]>('/api/v1/patients', { signal: context.signal });
  const name = h('input', { name: 'display_name', required: true, maxlength: '200' });
  const birth = h('input', { name: 'birth_date', type: 'date' });
  const mrn = h('input', { name: 'mrn', maxlength: '64' });
  replace(
    main,
    form(
      'Create a patient record',
      [field('Name', name), field('Birth date (optional)', birth), field('Medical record number (optional)', mrn)],
      'Create patient',
      async () => {
        const created = await post<Patient>('/api/v1/patients', { display_name: name.value, birth_date: birth.value || undefined, mrn: mrn.value || undefined });
        return notice('success', `Created ${created.display_name}.`);
      },
      () => void patients(main, context),
    ),
    table(`${list.length} patients`, ['Name', 'MRN', 'Birth date', 'Created', 'Record'], list.map((patient) => [patient.display_name, patient.mrn ?? '—', patient.birth_date ?? '—', formatTime(patient.created), h('a', { href: `/patients/${encodeURIComponent(patient.id)}` }, 'Open')])),
  );
}

/** A panel for a secret that is shown only now. */
function shownOnce(title: string, rows: [string, string][]): HTMLElement {
  return h(
    'div',
    { class: 'shown-once', role: 'status', 'data-testid': 'shown-once' },
    h('h3', null, h('span', { 'aria-hidden': 'true' }, '⚠ '), `${title} — shown only now`),
    h('p', null, 'Wardline keeps only a hash of the secret: copy it now. If it is lost, enrol again.'),
    h(
      'dl',
      null,
      rows.map(([label, value]) => [
        h('dt', null, label),
        h('dd', null, h('code', null, value), ' ', h('button', { type: 'button', class: 'secondary small', onclick: () => void navigator.clipboard?.writeText(value) }, `Copy ${label.toLowerCase()}`)),
      ]),
    ),
  );
}

async function devices(main: HTMLElement, context: PageContext): Promise<void> {
  const [list, patientList] = await Promise.all([
    api<Device[]>('/api/v1/devices', { signal: context.signal }),
    api<Patient[]>('/api/v1/patients', { signal: context.signal }),
  ]);
  const kind = select('kind', DEVICE_KINDS);
  const model = h('input', { name: 'model', required: true, maxlength: '100' });
  const serial = h('input', { name: 'serial', required: true, maxlength: '100' });
  const deviceId = h('input', { name: 'device_id', pattern: '[A-Za-z0-9_\\-]{3,64}' });
  const patientOptions: [string, string][] = patientList.map((p) => [p.id, p.display_name]);
  const patient = select('patient_id', [['', '— not yet —'], ...patientOptions]);
  const assignDevice = select('device', list.filter((d) => d.status === 'active').map((d): [string, string] => [d.id, `${d.id} (${deviceKindLabel(d.kind)})`]), { required: true });
  const assignPatient = select('patient', patientOptions, { required: true });
  const certifyDevice = select('device', list.filter((d) => d.status === 'active').map((d): [string, string] => [d.id, `${d.id} (${deviceKindLabel(d.kind)})`]), { required: true });
  const request = h('textarea', { name: 'certificate_signing_request', required: true, rows: '6', maxlength: '16384', spellcheck: 'false', class: 'pem' });
  const listHost = h('div');
  const render = (items: Device[]) =>
    replace(
      listHost,
      table(
        `${items.length} devices`,
        ['Device', 'Kind', 'Model', 'Serial', 'Status', 'Last data', ''],
        items.map((device) => [
          h('code', null, device.id),
          deviceKindLabel(device.kind),
          device.model,
          device.serial,
          device.status,
          formatTime(device.last_seen),
          device.status === 'active'
            ? h('button', {
                type: 'button',
                class: 'danger small',
                onclick: async () => {
                  if (!confirm(`Revoke ${device.id}? It will be disconnected and refused from now on.`)) return;
                  await post(`/api/v1/devices/${encodeURIComponent(device.id)}/revoke`);
                  render(await api<Device[]>('/api/v1/devices'));
                },
              }, `Revoke ${device.id}`)
            : '—',
        ]),
      ),
    );
  const refresh = async () => render(await api<Device[]>('/api/v1/devices'));
  replace(
    main,
    h(
      'div',
      { class: 'admin-forms' },
      form(
        'Enrol a device',
        [field('Kind', kind), field('Model', model), field('Serial number', serial), field('Device id (optional)', deviceId, 'A random dev_… id otherwise'), field('Assign to patient from now (optional)', patient)],
        'Enrol device',
        async () => {
          const enrolled = await post<EnrolledDevice>('/api/v1/devices', {
            kind: kind.value,
            model: model.value,
            serial: serial.value,
            device_id: deviceId.value || undefined,
            patient_id: patient.value || undefined,
          });
          return shownOnce(`Credentials for ${enrolled.device.id}`, [
            ['Device id', enrolled.device.id],
            ['Secret', enrolled.secret],
            ['MQTT server', enrolled.mqtt.url],
            ['MQTT username and client id', enrolled.mqtt.username],
            ['MQTT publish topic', enrolled.mqtt.publish_topic],
            ['MQTT errors topic', enrolled.mqtt.errors_topic],
            ['MQTT QoS', String(enrolled.mqtt.qos)],
            ['HTTP URL', enrolled.http.url],
            ['HTTP header', `Authorization: ${enrolled.http.authorization}`],
          ]);
        },
        () => void refresh(),
      ),
      form('Assign a device', [field('Device', assignDevice), field('Patient', assignPatient)], 'Assign from now', async () => void (await post(`/api/v1/devices/${encodeURIComponent(assignDevice.value)}/assignments`, { patient_id: assignPatient.value })), () => void refresh()),
      // A device that authenticates with a certificate (mutual TLS) instead of its secret:
      // it makes its key and sends only the request; the certificate is public.
      form(
        'Issue a device certificate',
        [
          field('Device', certifyDevice),
          field('Certificate signing request (PEM)', request, 'PKCS #10, made on the device with a key that never leaves it.'),
        ],
        'Issue certificate',
        async () => {
          const issued = await post<IssuedDeviceCertificate>(`/api/v1/devices/${encodeURIComponent(certifyDevice.value)}/certificate`, {
            certificate_signing_request: request.value,
          });
          request.value = '';
          return h(
            'div',
            { class: 'issued-certificate', role: 'status', 'data-testid': 'issued-certificate' },
            h('h3', null, `Certificate for ${issued.device_id}`),
            h('p', null, `Valid until ${formatTime(issued.not_after)}; serial ${issued.serial}. Revoking the device refuses it at once.`),
            h('dl', null,
              h('dt', null, 'Certificate'), h('dd', null, h('pre', { class: 'pem' }, issued.certificate_pem)),
              h('dt', null, 'Device CA'), h('dd', null, h('pre', { class: 'pem' }, issued.ca_pem)),
              h('dt', null, 'SHA-256 fingerprint'), h('dd', null, h('code', null, issued.fingerprint)),
            ),
          );
        },
        () => {},
      ),
    ),
    listHost,
  );
  render(list);
}

/** A JSON document typed into a text area, or the reason it is not JSON. */
function jsonOf(label: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${label}: not JSON (${errorText(error)})`);
  }
}

/** What a trial message would give: its readings, what gives none, or why it is refused. */
function trialOutcome(trial: TemplateTrial): HTMLElement {
  return h(
    'div',
    { class: 'trial', role: 'status', 'data-testid': 'template-trial' },
    trial.refused
      ? notice('error', `The device would be told: ${trial.refused.field}: ${trial.refused.reason}`)
      : h('p', null, 'This payload would give:'),
    trial.readings.length ? h('ul', null, trial.readings.map((reading) => h('li', null, reading.description))) : null,
    trial.not_kept.length ? h('p', null, 'Not kept:') : null,
    trial.not_kept.length ? h('ul', null, trial.not_kept.map((reason) => h('li', null, reason))) : null,
    trial.device_checked ? null : h('p', { class: 'hint' }, 'The device a message names was not checked: choose a device to check it.'),
  );
}

/**
 * Mapping templates: a device model whose messages are not Wardline's format is read with
 * a pair of iomt-fhir templates (Azure MedTech), registered here as a draft, tried on a
 * sample message, then put in force.
 */
async function deviceTemplates(main: HTMLElement, context: PageContext): Promise<void> {
  const [list, deviceList] = await Promise.all([
    api<MappingTemplate[]>('/api/v1/mapping-templates', { signal: context.signal }),
    api<Device[]>('/api/v1/devices', { signal: context.signal }),
  ]);
  const model = h('input', { name: 'model', required: true, maxlength: '100', list: 'device-models' });
  const models = h('datalist', { id: 'device-models' }, [...new Set(deviceList.map((device) => device.model))].map((name) => h('option', { value: name })));
  const deviceTemplate = h('textarea', { name: 'device_template', required: true, rows: '10', spellcheck: 'false', class: 'json' });
  const fhirTemplate = h('textarea', { name: 'fhir_template', required: true, rows: '10', spellcheck: 'false', class: 'json' });
  const version = select('template', list.map((template): [string, string] => [template.id, `${template.model} v${template.version} (${template.status.replace('_', ' ')})`]), { required: true });
  const trialDevice = select('device', [['', '— any (not checked) —'], ...deviceList.map((device): [string, string] => [device.id, `${device.id} (${device.model})`])]);
  const payload = h('textarea', { name: 'payload', required: true, rows: '6', spellcheck: 'false', class: 'json', placeholder: '{"heartRate": 72, "deviceId": "…", "endDate": "…"}' });
  const refresh = () => void deviceTemplates(main, context);
  const action = (label: string, path: string, confirmText?: string) =>
    h('button', {
      type: 'button',
      class: 'secondary small',
      onclick: async () => {
        if (confirmText && !confirm(confirmText)) return;
        try {
          await post(path);
          refresh();
        } catch (error) {
          alert(errorText(error));
        }
      },
    }, label);
  replace(
    main,
    h(
      'div',
      { class: 'admin-forms' },
      form(
        'Register a template',
        [
          field('Device model', model, 'As the model\'s devices are enrolled. Each registration is the model\'s next version, a draft.'),
          models,
          field('Device content template (JSON)', deviceTemplate, 'iomt-fhir: CollectionContent, JsonPathContent, IotJsonPathContent, IotCentralJsonPathContent or CalculatedContent.'),
          field('FHIR mapping template (JSON)', fhirTemplate, 'iomt-fhir: CollectionFhir or CodeValueFhir. Its LOINC codes and units decide the readings.'),
        ],
        'Register as a draft',
        async () => {
          const registered = await post<MappingTemplate>('/api/v1/mapping-templates', {
            model: model.value,
            device_template: jsonOf('Device content template', deviceTemplate.value),
            fhir_template: jsonOf('FHIR mapping template', fhirTemplate.value),
          });
          return h(
            'div',
            { role: 'status' },
            notice('success', `Registered ${registered.model} version ${registered.version} as a draft: try it below, then put it in force.`),
            registered.warnings.length ? h('ul', { class: 'warnings' }, registered.warnings.map((warning) => h('li', null, warning))) : null,
          );
        },
        () => {},
      ),
      form(
        'Try a template on a message',
        [field('Version', version), field('Sending device (optional)', trialDevice), field('Message, as the device sends it (JSON)', payload)],
        'Try',
        async () => {
          const trial = await post<TemplateTrial>(`/api/v1/mapping-templates/${encodeURIComponent(version.value)}/trial`, {
            payload: jsonOf('Message', payload.value),
            device_id: trialDevice.value || undefined,
          });
          return trialOutcome(trial);
        },
        () => {},
      ),
    ),
    table(
      `${list.length} template versions`,
      ['Model', 'Version', 'Status', 'Registered', 'Warnings', ''],
      list.map((template) => [
        template.model,
        String(template.version),
        template.status.replace('_', ' '),
        formatTime(template.created),
        template.warnings.length ? h('ul', { class: 'warnings' }, template.warnings.map((warning) => h('li', null, warning))) : '—',
        template.status === 'in_force'
          ? action(`Retire ${template.model} v${template.version}`, `/api/v1/mapping-templates/${template.id}/retire`, `Retire ${template.model} version ${template.version}? Its devices' messages will be read as Wardline's own format again.`)
          : action(`Put ${template.model} v${template.version} in force`, `/api/v1/mapping-templates/${template.id}/in-force`, `Put ${template.model} version ${template.version} in force? The next message of every ${template.model} device is read with it.`),
      ]),
    ),
  );
}

async function audit(main: HTMLElement, context: PageContext): Promise<void> {
  const action = h('input', { name: 'action', placeholder: 'e.g. observations.read' });
  const patientId = h('input', { name: 'patient_id' });
  const userId = h('input', { name: 'user_id' });
  const listHost = h('div');
  const more = h('button', { type: 'button', class: 'secondary' }, 'Older entries');
  let rows: AuditRecord[] = [];
  const load = async (before?: number) => {
    const query = new URLSearchParams({ limit: '100' });
    if (action.value) query.set('action', action.value);
    if (patientId.value) query.set('patient_id', patientId.value);
    if (userId.value) query.set('user_id', userId.value);
    if (before !== undefined) query.set('before', String(before));
    const page = await api<AuditRecord[]>(`/api/v1/audit?${query}`, { signal: context.signal });
    rows = before === undefined ? page : [...rows, ...page];
    more.hidden = page.length < 100;
    replace(
      listHost,
      table(
        `${rows.length} audit entries, newest first`,
        ['#', 'Time', 'Who', 'Action', 'Outcome', 'Patient', 'From', 'Detail'],
        rows.map((row) => [String(row.sequence), formatTime(row.time), row.actor_label, row.action, row.outcome === 'denied' ? h('strong', { class: 'denied' }, h('span', { 'aria-hidden': 'true' }, '✖ '), 'denied') : 'allowed', row.patient_id ?? '—', row.remote_addr ?? '—', row.detail ?? '']),
      ),
    );
  };
  more.addEventListener('click', () => void load(rows[rows.length - 1]?.sequence).catch((error) => replace(listHost, notice('error', errorText(error)))));
  const filter = h('form', { class: 'card filters', 'aria-label': 'Filter the audit log' }, field('Action', action), field('Patient id', patientId), field('User id', userId), h('button', { type: 'submit' }, 'Filter'));
  filter.addEventListener('submit', (event) => {
    event.preventDefault();
    void load().catch((error) => replace(listHost, notice('error', errorText(error))));
  });
  replace(main, filter, listHost, more);
  await load();
}

/**
 * Emergency ("break-the-glass") accesses waiting for review, newest first: who opened it,
 * for which patient, why and until when. The reviewer notes what they checked; a review
 * is final.
 */
async function emergencyAccess(main: HTMLElement, context: PageContext): Promise<void> {
  const everything = h('input', { type: 'checkbox', name: 'all' });
  const listHost = h('div');
  const names = new Map((await api<Patient[]>('/api/v1/patients', { signal: context.signal })).map((patient) => [patient.id, patient.display_name]));
  const load = async () => {
    const query = everything.checked ? '' : '?unreviewed=true';
    const accesses = await api<EmergencyAccess[]>(`/api/v1/emergency-access${query}`, { signal: context.signal });
    const review = (access: EmergencyAccess): Child => {
      if (access.review) {
        return `${access.review.reviewer}, ${formatTime(access.review.reviewed)}: ${access.review.note}`;
      }
      const note = h('input', { name: 'note', required: true, maxlength: '1000', 'aria-label': `Review note for ${access.username}’s access` });
      const button = h('button', { type: 'submit', class: 'small' }, 'Mark reviewed');
      const reviewForm = h('form', { class: 'inline-form' }, note, button);
      reviewForm.addEventListener('submit', async (event) => {
        event.preventDefault();
        if (!note.value.trim()) {
          note.focus();
          return;
        }
        button.disabled = true;
        try {
          await post(`/api/v1/emergency-access/${access.id}/review`, { note: note.value });
          await load();
        } catch (error) {
          button.disabled = false;
          reviewForm.append(notice('error', errorText(error)));
        }
      });
      return reviewForm;
    };
    replace(
      listHost,
      accesses.length === 0
        ? notice('success', everything.checked ? 'No emergency access has been opened.' : 'Every emergency access has been reviewed.')
        : table(
            `${accesses.length} emergency ${accesses.length === 1 ? 'access' : 'accesses'}, newest first`,
            ['Opened', 'Until', 'Who', 'Patient', 'Reason', 'Review'],
            accesses.map((access) => [
              formatTime(access.opened),
              formatTime(access.expires),
              access.username,
              names.get(access.patient_id) ?? access.patient_id,
              access.reason,
              review(access),
            ]),
          ),
    );
  };
  everything.addEventListener('change', () => void load().catch((error) => replace(listHost, notice('error', errorText(error)))));
  replace(
    main,
    h('p', null, 'Each access a clinician or nurse opened to a patient outside their care teams. Check each one with the ward, then mark it reviewed.'),
    h('label', { class: 'checkbox' }, everything, ' Show reviewed ones too'),
    listHost,
  );
  await load();
}
