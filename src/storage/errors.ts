// Checks of storage keys and ranges, raising the storage kinds of src/errors.ts (which maps
// them to OCI codes; storage never picks one). Keys come from our own code (digests are validated before they become keys), so a
// bad key is our bug. A failing backend is StorageUnavailableError: its public message names
// the cause (disk full, read-only, an object store answering 503 …) and never a path or a
// credential; the log gets the backend, the key and the raw error.

import { InvalidStorageKeyError, StorageObjectNotFoundError, StorageRangeError } from '../errors.js';
import { STORAGE_KEY, type Storage } from './storage.js';

// The storage kinds are defined with every other error, in src/errors.ts.
export { InvalidStorageKeyError, StorageObjectNotFoundError, StorageRangeError, StorageUnavailableError } from '../errors.js';
export { describeStorageCause } from '../util/cause.js';

/**
 * Throws InvalidStorageKeyError unless `key` is a valid storage key: STORAGE_KEY's characters,
 * no `.` or `..` segment, and a first segment that does not start with `.` (backends keep
 * their own bookkeeping there).
 */
export function validateKey(key: string): string {
  if (typeof key !== 'string' || key === '') throw new InvalidStorageKeyError(String(key), 'it is empty');
  if (key.startsWith('/')) throw new InvalidStorageKeyError(key, 'it must be relative (no leading /)');
  if (key.length > 1024) throw new InvalidStorageKeyError(key, `it is ${key.length} characters long (at most 1024)`);
  if (!STORAGE_KEY.test(key)) {
    throw new InvalidStorageKeyError(key, 'segments must be non-empty and use only letters, digits, . _ and -, separated by single /');
  }
  const segments = key.split('/');
  if (segments.some((s) => s === '.' || s === '..')) throw new InvalidStorageKeyError(key, '. and .. segments are not allowed');
  if (segments[0]!.startsWith('.')) throw new InvalidStorageKeyError(key, 'the first segment must not start with . (reserved for the backend)');
  return key;
}

/** Validates a list prefix: empty (everything) or a key, optionally ending with `/`. */
export function validatePrefix(prefix: string): string {
  if (prefix === '') return prefix;
  validateKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
  return prefix;
}

/**
 * Validates both keys of a move. A move onto itself changes nothing but must still report a
 * missing source: true when that is the case (the source exists and nothing is left to do).
 */
export async function isMoveOntoItself(storage: Pick<Storage, 'stat'>, from: string, to: string): Promise<boolean> {
  validateKey(from);
  validateKey(to);
  if (from !== to) return false;
  if (!(await storage.stat(from))) throw new StorageObjectNotFoundError(from);
  return true;
}

/** Checks a range against an object size; the end is clamped to the last byte, as HTTP does. */
export function checkRange(key: string, range: { start: number; end: number }, size: number): { start: number; end: number } {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || start >= size) {
    throw new StorageRangeError(key, start, end, size);
  }
  return { start, end: Math.min(end, size - 1) };
}
