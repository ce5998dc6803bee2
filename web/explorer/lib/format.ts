// Numbers, digests and times as people read them.

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

/** Hex digits a shortened digest keeps (as `docker images` shows image IDs). */
export const SHORT_DIGEST_HEX = 12;

/** `sha256:0123456789abcdef…` → `sha256:0123456789ab…`: never wraps mid-hash, copied whole elsewhere. */
export function shortDigest(digest: string): string {
  const colon = digest.indexOf(':');
  const keep = colon + 1 + SHORT_DIGEST_HEX;
  return digest.length > keep ? `${digest.slice(0, keep)}…` : digest;
}

/** `/nix/store/<hash>-glibc-2.40` → `glibc-2.40` (the store path's package name). */
export function storePathName(path: string): string {
  return path.replace(/^\/nix\/store\/[a-z0-9]+-/, '');
}

/** An ISO time with its date and zone, the same for every reader: `2026-12-07 03:04:05 UTC`. */
export function formatTime(iso: string): string {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return iso;
  return `${t.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** `part` of `whole` as a whole percentage ("0 %" when there is no whole; never "100 %" for less than all). */
export function percent(part: number, whole: number): string {
  if (whole <= 0) return '0 %';
  const p = Math.round((100 * part) / whole);
  return `${p === 100 && part < whole ? 99 : p} %`;
}
