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

export function refreshTimes(root: ParentNode): void {
  const now = Date.now();
  root.querySelectorAll<HTMLTimeElement>('time[data-ago]').forEach((element) => {
    element.textContent = since(element.dateTime, now);
  });
}
