// Client-side routing with the History API. The server answers every app path with
// index.html (crates/web APP_ROUTES), so deep links and reloads work.

/** What a page gets: its parameters, and a way to stop its timers and streams. */
export interface PageContext {
  params: Record<string, string>;
  query: URLSearchParams;
  signal: AbortSignal;
  onCleanup(cleanup: () => void): void;
}

export type Page = (root: HTMLElement, context: PageContext) => void | Promise<void>;

interface Route {
  pattern: RegExp;
  names: string[];
  page: Page;
}

const routes: Route[] = [];
let notFound: Page = () => {};
let current: AbortController | null = null;
let cleanups: (() => void)[] = [];
let rootElement: HTMLElement | null = null;
let onError: (root: HTMLElement, error: unknown) => void = () => {};

export function route(path: string, page: Page): void {
  const names: string[] = [];
  const source = path
    .split('/')
    .map((part) => {
      if (part.startsWith(':')) {
        names.push(part.slice(1));
        return '([^/]+)';
      }
      return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('/');
  routes.push({ pattern: new RegExp(`^${source}/?$`), names, page });
}

export function fallback(page: Page): void {
  notFound = page;
}

export function errors(handler: (root: HTMLElement, error: unknown) => void): void {
  onError = handler;
}

/**
 * A visit's room is the one page the server lets use the camera and the microphone
 * (its Permissions-Policy header), and a document keeps the policy it was loaded with.
 * So the room is always loaded as a page of its own, and leaving it loads the next page
 * afresh too: no other page ever runs in a document that may use the camera.
 */
const ROOM_PATH = /^\/visits\/[^/]+\/room\/?$/;
export const isRoomPath = (pathname: string) => ROOM_PATH.test(pathname);

function needsPageLoad(path: string): boolean {
  return isRoomPath(new URL(path, location.href).pathname) || isRoomPath(location.pathname);
}

export function navigate(path: string, replace = false): void {
  if (needsPageLoad(path)) {
    if (replace) location.replace(path);
    else location.assign(path);
    return;
  }
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  void render();
}

export async function render(): Promise<void> {
  if (!rootElement) return;
  current?.abort();
  for (const cleanup of cleanups) cleanup();
  cleanups = [];
  const controller = new AbortController();
  current = controller;
  const path = location.pathname;
  let page = notFound;
  const params: Record<string, string> = {};
  for (const candidate of routes) {
    const match = candidate.pattern.exec(path);
    if (match) {
      candidate.names.forEach((name, index) => {
        params[name] = decodeURIComponent(match[index + 1]);
      });
      page = candidate.page;
      break;
    }
  }
  const context: PageContext = {
    params,
    query: new URLSearchParams(location.search),
    signal: controller.signal,
    onCleanup: (cleanup) => cleanups.push(cleanup),
  };
  try {
    await page(rootElement, context);
  } catch (error) {
    if (controller.signal.aborted) return;
    onError(rootElement, error);
  }
}

export function start(root: HTMLElement): void {
  rootElement = root;
  window.addEventListener('popstate', () => void render());
  document.addEventListener('click', (event) => {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const anchor = (event.target as Element | null)?.closest('a');
    if (!anchor || anchor.target || anchor.hasAttribute('download')) return;
    const url = new URL(anchor.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
    // The room, and every page after it, load as pages of their own (see `navigate`).
    if (needsPageLoad(url.pathname)) return;
    event.preventDefault();
    navigate(url.pathname + url.search + url.hash);
  });
  void render();
}

/** A path from `?next=` that stays on this origin. */
export function safeNext(next: string | null): string | null {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) return null;
  return next;
}
