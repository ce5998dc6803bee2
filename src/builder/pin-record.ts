// Persisted pins (`pins/<source-id>/<key>.json`): what a tag of a package source last resolved
// to, so a registry restarted while the source cannot be reached still serves what was built.
// A checksummed record (records.ts) holding only the resolution, never a URL or its credentials.
// `nixery gc` leaves them alone (it only lists blobs/, builds/, manifests/ and staging/);
// `nixery scrub` checks them.

import { decodeRecord, encodeRecord } from './records.js';

export const PIN_PREFIX = 'pins/';

export interface StoredPin {
  key: string;
  revision: string;
  ref: string | null;
  headBranch?: string;
  how?: string;
  /** When the source was seen to give this revision (ms since the epoch). */
  resolvedAt: number;
}

export function encodePin(pin: StoredPin): string {
  return encodeRecord(pin);
}

/** The pin in a record, or why it cannot be used. */
export function decodePin(raw: Buffer | string): { ok: true; pin: StoredPin } | { ok: false; why: string } {
  const decoded = decodeRecord<unknown>(raw);
  if (!decoded.ok) return { ok: false, why: decoded.why };
  return isStoredPin(decoded.record) ? { ok: true, pin: decoded.record } : { ok: false, why: NOT_A_PIN };
}

const NOT_A_PIN = 'it is not a pin record (key, revision, ref, resolvedAt)';

/** Why a decoded record body is not a pin, or undefined when it is one. */
export function pinProblem(body: unknown): string | undefined {
  return isStoredPin(body) ? undefined : NOT_A_PIN;
}

function isStoredPin(r: unknown): r is StoredPin {
  const p = r as StoredPin;
  return (
    typeof p === 'object' &&
    p !== null &&
    typeof p.key === 'string' &&
    typeof p.revision === 'string' &&
    (p.ref === null || typeof p.ref === 'string') &&
    typeof p.resolvedAt === 'number' &&
    (p.headBranch === undefined || typeof p.headBranch === 'string') &&
    (p.how === undefined || typeof p.how === 'string')
  );
}
