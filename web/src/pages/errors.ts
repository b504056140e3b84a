import { ApiError } from '../api';
import { h } from '../dom';
import { currentUser, frame, homeFor } from '../session';

/** The "access refused" page; returns its main element, for what a page adds to it. */
export function refusedPage(root: HTMLElement): HTMLElement {
  const user = currentUser();
  const main = frame(
    root,
    'Access refused',
    h(
      'section',
      { class: 'card error-page', 'data-error': '403' },
      h('h1', null, h('span', { 'aria-hidden': 'true' }, '⛔ '), 'Access refused (403)'),
      h('p', null, 'You do not have access to this record. Only the patient and their care team can see it.'),
      h('p', null, 'This attempt has been recorded in the audit log.'),
      user ? h('p', null, h('a', { href: homeFor(user) }, 'Back to your start page')) : null,
    ),
  );
  main.focus();
  return main;
}

export function notFoundPage(root: HTMLElement): void {
  const user = currentUser();
  frame(
    root,
    'Not found',
    h(
      'section',
      { class: 'card error-page', 'data-error': '404' },
      h('h1', null, 'Not found (404)'),
      h('p', null, 'There is nothing at this address.'),
      h('p', null, h('a', { href: user ? homeFor(user) : '/login' }, 'Go to your start page')),
    ),
  );
}

export function errorPage(root: HTMLElement, error: unknown): void {
  if (error instanceof ApiError && error.status === 403) {
    refusedPage(root);
    return;
  }
  if (error instanceof ApiError && error.status === 404) return notFoundPage(root);
  frame(
    root,
    'Error',
    h(
      'section',
      { class: 'card error-page', role: 'alert' },
      h('h1', null, 'Something went wrong'),
      h('p', null, error instanceof Error ? error.message : String(error)),
      h('p', null, h('button', { type: 'button', onclick: () => location.reload() }, 'Reload')),
    ),
  );
}
