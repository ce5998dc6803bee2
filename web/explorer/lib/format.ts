// Numbers and times as people read them.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1536 → "1.5 KiB"; null (unknown) → "–". */
export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value < 10 ? value.toFixed(1) : Math.round(value)} ${UNITS[unit]}`;
}

/** `sha256:0123456789abcdef…` → `sha256:0123456789ab`. */
export function shortDigest(digest: string): string {
  return digest.slice(0, 19);
}

/** `/nix/store/<hash>-glibc-2.40` → `glibc-2.40` (the store path's package name). */
export function storePathName(path: string): string {
  return path.replace(/^\/nix\/store\/[a-z0-9]+-/, '');
}

/** An ISO time as a short local one ("14:03:12", or the date when not today). */
export function formatTime(iso: string, now: Date = new Date()): string {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return iso;
  const sameDay = t.toDateString() === now.toDateString();
  return sameDay ? t.toLocaleTimeString() : t.toLocaleString();
}
