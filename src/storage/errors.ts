// Errors the storage backends raise on purpose, as storage kinds (src/errors.ts maps them to
// OCI codes). Keys come from our own code (digests are validated before they become keys), so a
// bad key is our bug. A failing backend is StorageUnavailableError: its public message names
// the cause (disk full, read-only, an object store answering 503 …) and never a path or a
// credential; the log gets the backend, the key and the raw error.

import { NixeryError } from '../errors.js';
import { STORAGE_KEY, type Storage } from './storage.js';

/** A key that does not match STORAGE_KEY, climbs out of the root, or uses a reserved name. */
export class InvalidStorageKeyError extends NixeryError {
  readonly key: string;
  constructor(key: string, why: string) {
    super('STORAGE_KEY_INVALID', `invalid storage key ${JSON.stringify(key.length > 120 ? `${key.slice(0, 117)}...` : key)}: ${why}`);
    this.key = key;
  }
}

/** An operation that needs an existing object (move) found none. */
export class StorageObjectNotFoundError extends NixeryError {
  readonly key: string;
  constructor(key: string) {
    super('STORAGE_OBJECT_NOT_FOUND', undefined, { internal: `storage object not found: ${key}` });
    this.key = key;
  }
}

/** A byte range outside the object. */
export class StorageRangeError extends NixeryError {
  constructor(key: string, start: number, end: number, size?: number) {
    super('STORAGE_RANGE_INVALID', `invalid byte range ${start}-${end}${size === undefined ? '' : ` of ${size} bytes`}`, { internal: key });
  }
}

/** The backend itself failed: an I/O error, a full or read-only disk, an object store's error. */
export class StorageUnavailableError extends NixeryError {
  /** Why, in words a client may see (e.g. `the storage device is full`). */
  readonly reason: string;
  constructor(backend: string, operation: string, key: string, cause: unknown, reason = describeStorageCause(cause)) {
    super('STORAGE_UNAVAILABLE', `storage is unavailable: ${reason} (${operation} ${keyKind(key)})`, {
      cause,
      internal: `${backend}: ${operation} ${key} failed: ${causeMessage(cause)}`,
    });
    this.reason = reason;
  }
}

/** What kind of object a key is, for public messages (the key itself stays in the log). */
function keyKind(key: string): string {
  if (key.startsWith('blobs/')) return 'of a blob';
  if (key.startsWith('manifests/')) return 'of a manifest record';
  if (key.startsWith('builds/')) return 'of a layer record';
  if (key.startsWith('staging/')) return 'of a layer being written';
  return 'in storage';
}

function causeMessage(cause: unknown): string {
  if (cause instanceof Error) return cause.message || cause.name;
  return String(cause);
}

const ERRNO_REASONS: Record<string, string> = {
  ENOSPC: 'the storage device is full',
  EDQUOT: 'the storage quota is exhausted',
  EROFS: 'the storage is read-only',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  ENOTDIR: 'the storage directory is not a directory',
  EISDIR: 'a stored object is a directory',
  EIO: 'an I/O error',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files',
  ECONNREFUSED: 'the connection was refused',
  ECONNRESET: 'the connection was reset',
  ETIMEDOUT: 'the request timed out',
  ENOTFOUND: 'the host was not found',
  EAI_AGAIN: 'the host name could not be resolved',
  EPIPE: 'the connection was closed',
  UND_ERR_CONNECT_TIMEOUT: 'the connection timed out',
  UND_ERR_SOCKET: 'the connection failed',
};

/**
 * A client-safe description of why a storage operation failed: an errno (filesystem, network),
 * an HTTP status an object store answered, or a timeout. Nothing from the error's text is
 * copied, so no path, URL or credential can leak through it.
 */
export function describeStorageCause(cause: unknown): string {
  for (let e: unknown = cause, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && ERRNO_REASONS[code]) return `${ERRNO_REASONS[code]} (${code})`;
    const status = (e as { $metadata?: { httpStatusCode?: number }; status?: unknown }).$metadata?.httpStatusCode ?? (e as { status?: unknown }).status;
    if (typeof status === 'number' && status >= 400) {
      if (status === 429 || status === 503) return `the object store is throttling or unavailable (HTTP ${status})`;
      if (status >= 500) return `the object store answered HTTP ${status}`;
      if (status === 401 || status === 403) return `the object store denied access (HTTP ${status})`;
      return `the object store answered HTTP ${status}`;
    }
    const name = (e as { name?: unknown }).name;
    if (name === 'TimeoutError' || name === 'AbortError' || name === 'RequestTimeout') return 'the request timed out';
  }
  return 'an unexpected storage error';
}

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
