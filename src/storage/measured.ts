// A storage backend that reports how long each operation took and whether it failed, to an
// observer (the metrics module). It changes nothing else: same answers, same errors, same
// optional methods as the backend it wraps.

import type { Readable } from 'node:stream';
import type { ByteRange, ObjectInfo, ObjectWriter, OpenedObject, Storage } from './storage.js';

export type StorageOperation =
  | 'put'
  | 'writer'
  | 'commit'
  | 'abort'
  | 'get'
  | 'open'
  | 'read'
  | 'stat'
  | 'move'
  | 'list'
  | 'delete'
  | 'redirect_url'
  | 'remove_temporaries'
  | 'create_if_absent'
  | 'replace_if_version'
  | 'delete_if_version'
  | 'read_versioned';

export interface StorageObserver {
  /**
   * One operation ended: its duration, and what it threw (undefined when it succeeded). For
   * `get` and `open` the duration is until the object is open; `list` spans the whole listing.
   */
  operation(op: StorageOperation, seconds: number, error: unknown): void;
}

export function measuredStorage(inner: Storage, observer: StorageObserver): Storage {
  const timed = async <T>(op: StorageOperation, run: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      const result = await run();
      observer.operation(op, (performance.now() - started) / 1000, undefined);
      return result;
    } catch (err) {
      observer.operation(op, (performance.now() - started) / 1000, err);
      throw err;
    }
  };
  const storage: Storage = {
    get name() {
      return inner.name;
    },
    get notices() {
      return inner.notices;
    },
    get versionsImmutable() {
      return inner.versionsImmutable;
    },
    put: (key: string, data: Buffer | string, options?: { contentType?: string }) => timed('put', () => inner.put(key, data, options)),
    writer: async (key: string, options?: { contentType?: string }): Promise<ObjectWriter> => {
      const writer = await timed('writer', () => inner.writer(key, options));
      return {
        stream: writer.stream,
        commit: () => timed('commit', () => writer.commit()),
        abort: () => timed('abort', () => writer.abort()),
      };
    },
    get: (key: string, range?: ByteRange): Promise<Readable | null> => timed('get', () => inner.get(key, range)),
    open: (key: string, range?: ByteRange, options?: { readAhead?: number }): Promise<OpenedObject | null> => timed('open', () => inner.open(key, range, options)),
    read: (key: string) => timed('read', () => inner.read(key)),
    stat: (key: string) => timed('stat', () => inner.stat(key)),
    move: (from: string, to: string) => timed('move', () => inner.move(from, to)),
    delete: (key: string) => timed('delete', () => inner.delete(key)),
    createIfAbsent: (key: string, data: Buffer | string) => timed('create_if_absent', () => inner.createIfAbsent(key, data)),
    replaceIfVersion: (key: string, data: Buffer | string, version: string) => timed('replace_if_version', () => inner.replaceIfVersion(key, data, version)),
    deleteIfVersion: (key: string, version: string) => timed('delete_if_version', () => inner.deleteIfVersion(key, version)),
    readVersioned: (key: string) => timed('read_versioned', () => inner.readVersioned(key)),
    list: (prefix: string): AsyncIterable<ObjectInfo> => ({
      async *[Symbol.asyncIterator]() {
        const started = performance.now();
        let error: unknown;
        try {
          yield* inner.list(prefix);
        } catch (err) {
          error = err;
          throw err;
        } finally {
          // Also when the caller stops early.
          observer.operation('list', (performance.now() - started) / 1000, error);
        }
      },
    }),
  };
  // Optional methods stay absent when the backend has none (callers test for them).
  if (inner.redirectUrl) {
    const redirectUrl = inner.redirectUrl.bind(inner);
    storage.redirectUrl = (key, options) => timed('redirect_url', () => redirectUrl(key, options));
  }
  if (inner.removeAbandonedTemporaries) {
    const remove = inner.removeAbandonedTemporaries.bind(inner);
    storage.removeAbandonedTemporaries = () => timed('remove_temporaries', remove);
  }
  return storage;
}
