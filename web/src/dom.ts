// A tiny element builder. Text is always set as text (never parsed as HTML), so data
// from the API can never inject markup; styles are set through CSSOM, which the CSP
// allows, never through style attributes.

export type Child = Node | string | number | null | undefined | false | Child[];
type Handler = (event: Event) => void;
export type Props = Record<string, string | number | boolean | Handler | null | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props | null = null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (props) {
    for (const [name, value] of Object.entries(props)) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith('on') && typeof value === 'function') {
        element.addEventListener(name.slice(2).toLowerCase(), value);
      } else if (name === 'style') {
        throw new Error('inline style attributes are blocked by the CSP; use classes');
      } else if (value === true) {
        element.setAttribute(name, '');
      } else {
        element.setAttribute(name, String(value));
      }
    }
  }
  append(element, children);
  return element;
}

export function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
}

export function replace(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

let counter = 0;
/** A unique id for label/field pairs. */
export function uid(prefix: string): string {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A labelled form field: label above the control, with an optional hint. */
export function field(
  label: string,
  control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement,
  hint?: string,
): HTMLElement {
  if (!control.id) control.id = uid('field');
  const hintNode = hint ? h('span', { class: 'hint', id: `${control.id}-hint` }, hint) : null;
  if (hintNode) control.setAttribute('aria-describedby', hintNode.id);
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hintNode);
}

/** A select with `[value, label]` options. */
export function select(
  name: string,
  options: [string, string][],
  props: Props = {},
): HTMLSelectElement {
  return h(
    'select',
    { name, ...props },
    options.map(([value, label]) => h('option', { value }, label)),
  );
}

/** A status message region: polite for progress, assertive (`alert`) for errors. */
export function notice(kind: 'info' | 'error' | 'success' | 'warning', ...children: Child[]): HTMLElement {
  const icon = { info: 'ℹ', error: '✖', success: '✔', warning: '⚠' }[kind];
  return h(
    'div',
    { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('span', { class: 'notice-icon', 'aria-hidden': 'true' }, icon),
    h('span', null, ...children),
  );
}

/** A field for an authenticator app's six-digit code (spaces between digits allowed). */
export function oneTimeCodeInput(): HTMLInputElement {
  return h('input', {
    name: 'one_time_code',
    autocomplete: 'one-time-code',
    inputmode: 'numeric',
    pattern: '[0-9 ]{6,16}',
    maxlength: '16',
    required: true,
  });
}

/** Whether a typed code has six digits, spaces aside. */
export const isSixDigits = (code: string): boolean => /^\d{6}$/.test(code.replace(/\s/g, ''));
