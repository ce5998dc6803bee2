// The storage interface every backend implements. Keys are relative paths such as
// `blobs/sha256/<hex>`, `builds/<key>.json`, `manifests/<key>.json`; they match STORAGE_KEY.

import type { Readable, Writable } from 'node:stream';

export const STORAGE_KEY = /^[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*$/;

export interface ObjectInfo {
  key: string;
  size: number;
  /** Last modification time, ms since the epoch (used by garbage collection). */
  modified: number;
  contentType?: string;
  /**
   * What identifies this stored version of the object (filesystem: inode, size, mtime and ctime; S3:
   * the ETag; GCS: the generation). A rewrite or a copy gives a new version, so whatever was
   * verified about one version is checked again for the next.
   */
  version?: string;
}

/** An object opened for reading: its bytes and what `stat` would say about it, in one call. */
export interface OpenedObject {
  stream: Readable;
  /** The whole object's info (its size is the full size even when a range was asked for). */
  info: ObjectInfo;
  /**
   * Where the backend can (a file): reads `length` bytes at `position` of the whole object into
   * the caller's buffer, instead of `stream` (which is then left unread, and destroyed to close).
   * Lets a reader reuse its buffers: no new memory per chunk for the garbage collector.
   */
  read?(into: Buffer, length: number, position: number): Promise<number>;
}

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive. */
  end: number;
}

/** A write in progress: nothing is visible under the key until `commit` resolves. */
export interface ObjectWriter {
  /** Where the bytes go. Destroying it (or a failing pipeline) discards the write. */
  stream: Writable;
  /** Makes the object visible under its key (atomically). */
  commit(): Promise<void>;
  /** Discards what was written; the key is left as it was. */
  abort(): Promise<void>;
}

/** A small object read whole, with the version that conditional writes compare against. */
export interface VersionedObject {
  data: Buffer;
  version: string;
}

/**
 * Conditional writes of small objects (build leases): each succeeds only if the object is as the
 * caller last saw it, atomically against every other process and replica on the same storage
 * (filesystem: an exclusive link and a rename; GCS: ifGenerationMatch; S3: If-None-Match and
 * If-Match). A version is opaque and non-empty. A server that ignores the conditions (some
 * S3-compatible ones) is detected by `conditionalWriteSupport` (probe.ts), not here.
 */
export interface ConditionalWrites {
  /** Creates `key` only if no object is there: the new version, or null when one was. */
  createIfAbsent(key: string, data: Buffer | string): Promise<string | null>;
  /** Replaces `key` only if its current version is `version`: the new version, or null (another version, or gone). */
  replaceIfVersion(key: string, data: Buffer | string, version: string): Promise<string | null>;
  /** Deletes `key` only if its current version is `version`: false when it is another version or gone. */
  deleteIfVersion(key: string, version: string): Promise<boolean>;
  /** Reads a whole (small) object and its version in one read; null when missing. */
  readVersioned(key: string): Promise<VersionedObject | null>;
}

export interface Storage extends ConditionalWrites {
  /** For logs, e.g. `filesystem (/var/cache/nixery)`. */
  readonly name: string;
  /**
   * Lines the server should log at startup about how this backend will behave, e.g. GCS
   * redirecting to public URLs because it has no credentials to sign with.
   */
  readonly notices?: readonly string[];
  /**
   * True when a stored version's bytes can never change (an S3 ETag, a GCS generation): what
   * was checked about a version holds for later reads. A filesystem file can change in place.
   */
  readonly versionsImmutable?: boolean;
  /** Writes a whole object atomically. */
  put(key: string, data: Buffer | string, options?: { contentType?: string }): Promise<void>;
  /** Starts a streaming write; see ObjectWriter. */
  writer(key: string, options?: { contentType?: string }): Promise<ObjectWriter>;
  /** Reads an object (or a byte range of it); null when the key does not exist. */
  get(key: string, range?: ByteRange): Promise<Readable | null>;
  /**
   * Like get, with the object's info (size, type, version) from the same read. `readAhead`:
   * at most this many bytes are read before they are asked for (where the backend decides it).
   */
  open(key: string, range?: ByteRange, options?: { readAhead?: number }): Promise<OpenedObject | null>;
  /** Reads a whole (small) object; null when missing. */
  read(key: string): Promise<Buffer | null>;
  stat(key: string): Promise<ObjectInfo | null>;
  /** Renames an object atomically from a reader's point of view. */
  move(from: string, to: string): Promise<void>;
  /** Keys under a prefix (recursively), sorted. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Deletes an object; deleting a missing key is not an error. */
  delete(key: string): Promise<void>;
  /**
   * A URL clients may fetch the object from directly (signed, time-limited), or null to have
   * the registry stream it. Optional: the filesystem backend has none.
   */
  redirectUrl?(key: string, options: { method: 'GET' | 'HEAD' }): Promise<string | null>;
  /**
   * Removes temporary files left by writers that are gone (crashed, killed); returns how many.
   * Optional: only backends with temporary files of their own have it (filesystem).
   */
  removeAbandonedTemporaries?(): Promise<number>;
}

export const STORAGE_BACKENDS = ['filesystem', 's3', 'gcs'] as const;
export type StorageBackendName = (typeof STORAGE_BACKENDS)[number];
