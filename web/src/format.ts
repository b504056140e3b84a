// Times and durations as people read them.

export function since(iso: string | Date | null | undefined, now = Date.now()): string {
  if (!iso) return 'never';
  const time = typeof iso === 'string' ? Date.parse(iso) : iso.getTime();
  const seconds = Math.max(0, Math.round((now - time) / 1000));
  if (seconds < 10) return 'just now';
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min ago`;
  return `${Math.floor(hours / 24)} days ago`;
}

export function minutesSince(iso: string | null | undefined, now = Date.now()): number {
  if (!iso) return Infinity;
  return (now - Date.parse(iso)) / 60000;
}

const dateTime = new Intl.DateTimeFormat(undefined, {
  dateStyle: 'medium',
  timeStyle: 'short',
});

export function formatTime(iso: string | null | undefined): string {
  return iso ? dateTime.format(new Date(iso)) : '—';
}

/** A `<time>` element whose text says how long ago, refreshed by `refreshTimes`. */
export function timeAgo(iso: string | null | undefined): HTMLTimeElement | Text {
  if (!iso) return document.createTextNode('never');
  const element = document.createElement('time');
  element.dateTime = iso;
  element.title = formatTime(iso);
  element.dataset.ago = '';
  element.textContent = since(iso);
  return element;
}

/** How long until a future time: "in 12 min", "in 1 h 5 min", "now". */
export function until(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '—';
  const seconds = Math.round((Date.parse(iso) - now) / 1000);
  if (seconds <= 0) return 'now';
  if (seconds < 60) return `in ${seconds} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `in ${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `in ${hours} h${minutes % 60 ? ` ${minutes % 60} min` : ''}`;
  return `in ${Math.round(hours / 24)} days`;
}

const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

/**
 * A time of day ("14:35"), with the date too when it is more than 12 hours away: nearer,
 * the time alone is unambiguous (also across midnight), and stays short.
 */
export function formatClock(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '—';
  const date = new Date(iso);
  return Math.abs(date.getTime() - now) <= 12 * 3600 * 1000 ? clock.format(date) : formatTime(iso);
}

/** A `<time>` element for a future moment: "14:35 (in 12 min)", refreshed by `refreshTimes`. */
export function timeUntil(iso: string): HTMLTimeElement {
  const element = document.createElement('time');
  element.dateTime = iso;
  element.title = formatTime(iso);
  element.dataset.until = '';
  element.textContent = `${formatClock(iso)} (${until(iso)})`;
  return element;
}

/** A duration in seconds as people say it: "15 min", "2 h", "1 h 30 min". */
export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours >= 48 && hours % 24 === 0 && minutes % 60 === 0) return `${hours / 24} days`;
  return minutes % 60 ? `${hours} h ${minutes % 60} min` : `${hours} h`;
}

export function refreshTimes(root: ParentNode): void {
  const now = Date.now();
  root.querySelectorAll<HTMLTimeElement>('time[data-ago]').forEach((element) => {
    element.textContent = since(element.dateTime, now);
  });
  root.querySelectorAll<HTMLTimeElement>('time[data-until]').forEach((element) => {
    element.textContent = `${formatClock(element.dateTime)} (${until(element.dateTime, now)})`;
  });
}
