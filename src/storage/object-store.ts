// What the object-store backends (S3, GCS) share besides their writers (object-writer.ts):
// reporting failures as StorageUnavailableError, reading whole objects, and the bucket prefix setting.

import type { Readable } from 'node:stream';
import { NixeryError } from '../errors.js';
import { StorageUnavailableError } from './errors.js';
import { type ByteRange, type OpenedObject, type VersionedObject } from './storage.js';

/** Attempts to read a whole object whose body broke off. */
const READ_ATTEMPTS = 3;

export abstract class ObjectStore {
  /** For logs and error messages, e.g. `s3 (bucket at http://127.0.0.1:9000)`. */
  abstract readonly name: string;

  abstract open(key: string, range?: ByteRange): Promise<OpenedObject | null>;

  async get(key: string, range?: ByteRange): Promise<Readable | null> {
    return (await this.open(key, range))?.stream ?? null;
  }

  /**
   * A whole object. The clients retry failed requests, not a body cut off after its headers
   * (a reset connection): reading whole objects is repeatable, so that is retried here.
   */
  async read(key: string): Promise<Buffer | null> {
    for (let attempt = 1; ; attempt++) {
      const body = await this.get(key);
      if (!body) return null;
      const chunks: Buffer[] = [];
      try {
        for await (const chunk of body) chunks.push(chunk as Buffer);
        return Buffer.concat(chunks);
      } catch (err) {
        if (attempt >= READ_ATTEMPTS || err instanceof NixeryError) throw this.failure('read', key, err);
        await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt * (0.5 + Math.random())));
      }
    }
  }

  /** A whole small object and the version it was read at (what conditional writes compare). */
  async readVersioned(key: string): Promise<VersionedObject | null> {
    const opened = await this.open(key);
    if (!opened) return null;
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of opened.stream) chunks.push(chunk as Buffer);
    } catch (err) {
      throw this.failure('read', key, err);
    }
    const version = opened.info.version;
    if (!version) throw this.failure('read', key, new Error('the object store named no version (generation or ETag) for the object'));
    return { data: Buffer.concat(chunks), version };
  }

  /** @internal Runs `fn`, reporting what it throws as a failure of `operation` on `key`. */
  async call<T>(operation: string, key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.failure(operation, key, err);
    }
  }

  /** @internal Our own errors pass through; anything else becomes a StorageUnavailableError naming the backend. */
  failure(operation: string, key: string, err: unknown): Error {
    if (err instanceof NixeryError) return err;
    return new StorageUnavailableError(this.name, operation, key, this.describeError(err));
  }

  /** The cause a StorageUnavailableError carries; a backend may make its client's errors readable. */
  protected describeError(err: unknown): unknown {
    return err;
  }
}
