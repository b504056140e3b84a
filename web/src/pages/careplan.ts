// A patient's care plan: its rules with their thresholds, and every version (who, when,
// why, old → new). Clinicians and nurses of the care team change a rule's numbers or
// priority, always with a reason; patients read it.

import { describeRule, fieldValue, ruleChanges, ruleFields, withField } from '../careplan';
import { field, h, notice, replace, select, uid } from '../dom';
import {
  PROGRAMS,
  carePlan,
  carePlanNewDefaults,
  carePlanVersions,
  changeCarePlan,
  priorityBadge,
  programLabel,
  type CarePlanVersion,
  type Priority,
  type Rule,
  type RuleEdit,
} from '../features';
import { formatTime, timeAgo } from '../format';

export interface CarePlanOptions {
  editable: boolean;
  self: boolean;
  signal: AbortSignal;
  /**
   * How a rule change is saved: by default straight to the patient's care plan; a
   * visit's room saves it through the visit, which links the version to the visit.
   */
  save?: (change: { reason: string; edit: RuleEdit }) => Promise<CarePlanVersion>;
}

export function carePlanSection(patientId: string, options: CarePlanOptions): HTMLElement {
  return carePlanPanel(patientId, options).element;
}

/** The care plan section, and a way to read it again (after a change made elsewhere). */
export function carePlanPanel(patientId: string, options: CarePlanOptions): { element: HTMLElement; reload(): Promise<void> } {
  const { editable, self, signal } = options;
  const saveChange = options.save ?? ((change) => changeCarePlan(patientId, change));
  const message = h('div', { class: 'action-message' });
  const body = h('div', null, notice('info', 'Loading the care plan…'));
  const editor = h('div', { class: 'rule-editor-host' });
  const offered = h('div');
  const history = h('div');
  const section = h(
    'section',
    { class: 'card care-plan', 'aria-labelledby': 'plan-title', 'data-testid': 'care-plan' },
    h('h2', { id: 'plan-title' }, self ? 'My care plan' : 'Care plan'),
    message,
    body,
    editor,
    offered,
    history,
  );

  async function load(): Promise<void> {
    const [current, versions] = await Promise.all([carePlan(patientId, signal), carePlanVersions(patientId, signal).catch(() => [])]);
    renderPlan(current);
    renderHistory(versions);
    // Rules Wardline added to the programme since the patient was enrolled: offered to
    // the care team, never added by themselves.
    const newDefaults = editable && current ? await carePlanNewDefaults(patientId, signal).catch(() => []) : [];
    renderOffered(newDefaults);
  }

  function renderOffered(rules: Rule[]): void {
    if (rules.length === 0) {
      replace(offered);
      return;
    }
    replace(
      offered,
      h(
        'div',
        { class: 'new-defaults', 'data-testid': 'new-defaults' },
        h('h3', null, 'New in this programme'),
        h(
          'p',
          { class: 'muted' },
          'These default rules were added to the programme after this patient was enrolled. They are not in force until you add them.',
        ),
        rules.map((rule) => {
          const reason = h('input', { type: 'text', value: 'New default rule of the programme', maxlength: '1000' }) as HTMLInputElement;
          const add = h('button', { type: 'button', class: 'small' }, `Add ${rule.name}`) as HTMLButtonElement;
          const error = h('div');
          add.onclick = async () => {
            const why = reason.value.trim();
            if (!why) {
              replace(error, notice('error', 'Adding a rule needs a reason: it is kept in the history with your name.'));
              reason.focus();
              return;
            }
            add.disabled = true;
            try {
              const version = await saveChange({ reason: why, edit: { op: 'add', rule } });
              replace(message, notice('success', `Saved as care plan version ${version.version}: ${rule.name} added.`));
              await load();
            } catch (failure) {
              add.disabled = false;
              replace(error, notice('error', `Not added: ${failure instanceof Error ? failure.message : String(failure)}`));
            }
          };
          return h(
            'div',
            { class: 'new-default', 'data-rule-id': rule.id },
            h('p', null, priorityBadge(rule.priority), ' ', h('strong', null, rule.name), ': ', describeRule(rule)),
            field('Reason', reason),
            error,
            add,
          );
        }),
      ),
    );
  }

  function renderPlan(current: CarePlanVersion | null): void {
    replace(editor);
    if (!current) {
      replace(
        body,
        h('p', null, self ? 'Your care team has not set up a care plan yet.' : 'No care plan yet: no alarms are raised for this patient.'),
        editable ? programForm() : null,
      );
      return;
    }
    const plan = current.plan;
    replace(
      body,
      h(
        'p',
        { class: 'plan-summary', 'data-testid': 'plan-summary' },
        h('strong', null, `${programLabel(plan.program)} programme`),
        ` · version ${current.version}, in force since ${formatTime(current.effective)}`,
        ` · last change by ${current.author_label}: “${current.reason}”`,
      ),
      self ? h('p', { class: 'muted' }, 'Your care team sets these limits. If one seems wrong for you, talk to them.') : null,
      plan.rules.length === 0
        ? h('p', null, 'The plan has no rules.')
        : h(
            'div',
            { class: 'table-scroll' },
            h(
              'table',
              { class: 'rules', 'data-testid': 'care-plan-rules' },
              h('caption', { class: 'visually-hidden' }, 'Rules of the care plan and their thresholds'),
              h(
                'thead',
                null,
                h(
                  'tr',
                  null,
                  h('th', { scope: 'col' }, 'Rule'),
                  h('th', { scope: 'col' }, 'Priority'),
                  h('th', { scope: 'col' }, 'Raises an alarm when'),
                  h('th', { scope: 'col' }, 'Ends'),
                  editable ? h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')) : null,
                ),
              ),
              h(
                'tbody',
                null,
                plan.rules.map((rule) =>
                  h(
                    'tr',
                    { 'data-rule-id': rule.id },
                    h('th', { scope: 'row' }, rule.name, h('div', { class: 'muted rule-id' }, rule.id)),
                    h('td', null, priorityBadge(rule.priority)),
                    h('td', { class: 'rule-description' }, describeRule(rule)),
                    h('td', null, rule.resolve_on_clear ? 'By itself once clear' : 'Stays until a person resolves it'),
                    editable
                      ? h(
                          'td',
                          null,
                          h(
                            'button',
                            { type: 'button', class: 'secondary small', 'aria-label': `Change ${rule.name}`, onclick: () => openEditor(rule) },
                            'Change',
                          ),
                        )
                      : null,
                  ),
                ),
              ),
            ),
          ),
    );
  }

  function openEditor(rule: Rule): void {
    const headingId = uid('edit');
    const fields = ruleFields(rule);
    const inputs = fields.map((ruleField) => {
      const value = fieldValue(rule, ruleField);
      const input = h('input', {
        type: 'number',
        step: 'any',
        min: ruleField.seconds || ruleField.label.startsWith('Clears') || ruleField.unit === '%' ? 0 : null,
        max: ruleField.unit === '%' ? 100 : null,
        required: true,
        inputmode: 'decimal',
        name: ruleField.path.join('.'),
        value: value === undefined ? '' : String(Number(value.toFixed(3))),
      });
      return { ruleField, input };
    });
    const priority = select('priority', [['high', 'High'], ['medium', 'Medium'], ['low', 'Low']]);
    priority.value = rule.priority;
    const reason = h('textarea', { name: 'reason', required: true, rows: 2, maxlength: 1000 });
    const error = h('div');
    const save = h('button', { type: 'submit' }, 'Save change');
    const form = h(
      'form',
      {
        class: 'card rule-editor',
        'aria-labelledby': headingId,
        // The page explains a missing reason or number itself, next to the buttons.
        novalidate: true,
        'data-testid': 'rule-editor',
        onsubmit: (event: Event) => {
          event.preventDefault();
          void submit();
        },
      },
      h('h3', { id: headingId, tabindex: '-1' }, `Change “${rule.name}”`),
      h('p', { class: 'muted' }, 'Now: ', describeRule(rule)),
      h(
        'div',
        { class: 'editor-fields' },
        inputs.map(({ ruleField, input }) => field(`${ruleField.label} (${ruleField.unit})`, input, ruleField.hint)),
        field('Priority', priority),
      ),
      field('Reason for the change (required)', reason, 'Kept in the care plan history with your name: say why.'),
      error,
      h('div', { class: 'form-buttons' }, save, h('button', { type: 'button', class: 'secondary', onclick: () => replace(editor) }, 'Cancel')),
    );

    async function submit(): Promise<void> {
      let next = structuredClone(rule);
      for (const { ruleField, input } of inputs) {
        const value = Number(input.value);
        if (input.value.trim() === '' || !Number.isFinite(value)) {
          replace(error, notice('error', `${ruleField.label}: enter a number.`));
          input.focus();
          return;
        }
        next = withField(next, ruleField, value);
      }
      next.priority = priority.value as Priority;
      const why = reason.value.trim();
      const changes = ruleChanges(rule, next);
      if (changes.length === 0) {
        replace(error, notice('error', 'Nothing changed: edit a value or the priority first.'));
        return;
      }
      if (!why) {
        replace(error, notice('error', 'A change needs a reason: it is kept in the history with your name.'));
        reason.focus();
        return;
      }
      save.disabled = true;
      try {
        const version = await saveChange({ reason: why, edit: { op: 'replace', rule: next } });
        replace(message, notice('success', `Saved as care plan version ${version.version}: ${rule.name} — ${changes.join('; ')}.`));
        await load();
      } catch (failure) {
        save.disabled = false;
        replace(error, notice('error', `Not saved: ${failure instanceof Error ? failure.message : String(failure)}`));
      }
    }

    replace(message);
    replace(editor, form);
    form.querySelector<HTMLElement>('h3')?.focus();
  }

  function programForm(): HTMLElement {
    const program = select('program', PROGRAMS);
    const reason = h('textarea', { name: 'reason', required: true, rows: 2, maxlength: 1000 });
    const save = h('button', { type: 'submit' }, 'Assign programme');
    return h(
      'form',
      {
        class: 'program-form',
        novalidate: true,
        onsubmit: async (event: Event) => {
          event.preventDefault();
          if (!reason.value.trim()) {
            replace(message, notice('error', 'Assigning a programme needs a reason.'));
            reason.focus();
            return;
          }
          save.disabled = true;
          try {
            await changeCarePlan(patientId, { reason: reason.value.trim(), program: program.value });
            replace(message, notice('success', `${programLabel(program.value)} programme assigned.`));
            await load();
          } catch (failure) {
            save.disabled = false;
            replace(message, notice('error', `Not assigned: ${failure instanceof Error ? failure.message : String(failure)}`));
          }
        },
      },
      field('Monitoring programme', program, "Starts with the programme's default rules; change them afterwards."),
      field('Reason (required)', reason),
      save,
    );
  }

  function renderHistory(versions: CarePlanVersion[]): void {
    if (versions.length === 0) {
      replace(history);
      return;
    }
    const newest = [...versions].reverse();
    replace(
      history,
      h('h3', null, 'Change history'),
      h(
        'div',
        { class: 'table-scroll versions-scroll' },
        h(
          'table',
          { class: 'versions', 'data-testid': 'care-plan-versions' },
          h('caption', { class: 'visually-hidden' }, 'Versions of the care plan, newest first'),
          h(
            'thead',
            null,
            h('tr', null, ['Version', 'When', 'Who', 'Reason', 'Change'].map((label) => h('th', { scope: 'col' }, label))),
          ),
          h(
            'tbody',
            null,
            newest.map((version) =>
              h(
                'tr',
                { 'data-version': version.version },
                h('td', null, String(version.version)),
                h('td', null, formatTime(version.effective), h('div', { class: 'muted' }, timeAgo(version.effective))),
                h('td', null, version.author_label),
                h('td', { class: 'reason' }, `“${version.reason}”`),
                h('td', null, versionChange(version)),
              ),
            ),
          ),
        ),
      ),
    );
  }

  const reload = () =>
    load().catch((failure) => {
      if (!signal.aborted) replace(body, notice('error', `The care plan could not be loaded: ${failure instanceof Error ? failure.message : String(failure)}`));
    });
  void reload();
  return { element: section, reload };
}

function versionChange(version: CarePlanVersion): Node {
  const { old_rule: before, new_rule: after } = version;
  if (before && after) {
    return h(
      'div',
      null,
      h('strong', null, after.name),
      h('ul', { class: 'plain changes' }, ruleChanges(before, after).map((line) => h('li', null, line))),
    );
  }
  if (after) return h('div', null, 'Added ', h('strong', null, after.name), `: ${describeRule(after)}`);
  if (before) return h('div', null, 'Removed ', h('strong', null, before.name), `: ${describeRule(before)}`);
  return h('div', null, `${programLabel(version.plan.program)} programme: ${version.plan.rules.length} default rules`);
}
