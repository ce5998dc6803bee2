// Cache records in storage (`builds/<key>.json`, `manifests/<key>.json`) are not
// content-addressed, so each carries a checksum of its body: a flipped byte makes the record
// unreadable (rebuilt) instead of trusted. Format: {"sha256":"<hex of the body JSON>","record":<body>}.
// The body is what JSON.stringify wrote, so serialising the parsed body again gives the same bytes.

import { createHash } from 'node:crypto';

/** Prefixes of the two record kinds in storage. */
export const RECORD_PREFIXES = ['builds/', 'manifests/'] as const;

export function encodeRecord(body: unknown): string {
  const json = JSON.stringify(body);
  return `{"sha256":"${sha256Hex(json)}","record":${json}}`;
}

/**
 * The record's body, or why it cannot be trusted. `legacy` marks a record written before records
 * had checksums: not damage, just something to rebuild.
 */
export function decodeRecord<T>(raw: Buffer | string): { ok: true; record: T } | { ok: false; why: string; legacy?: boolean } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof raw === 'string' ? raw : raw.toString('utf8'));
  } catch {
    return { ok: false, why: 'it is not JSON' };
  }
  if (typeof parsed !== 'object' || parsed === null) return { ok: false, why: 'it is not a JSON object' };
  if (!('sha256' in parsed) && !('record' in parsed)) return { ok: false, why: 'it has no checksum (written by an older version)', legacy: true };
  if (typeof (parsed as { sha256?: unknown }).sha256 !== 'string' || !('record' in parsed)) return { ok: false, why: 'its checksum is damaged' };
  const { sha256, record } = parsed as { sha256: string; record: unknown };
  if (sha256Hex(JSON.stringify(record)) !== sha256) return { ok: false, why: 'its checksum does not match its content' };
  return { ok: true, record: record as T };
}

function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}
