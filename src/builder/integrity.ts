// What happens to stored bytes that fail their integrity check (a blob that does not hash to its
// digest, a record whose checksum does not match): they are removed, so the next request
// rebuilds them instead of trusting them, and the failure is logged and counted.

import type { Logger } from '../util/logger.js';
import { createHash } from 'node:crypto';
import type { OpenedObject, Storage } from '../storage/storage.js';
import { decodeRecord } from './records.js';

export type IntegrityLogger = Pick<Logger, 'warn'>;

export class Quarantine {
  /** Objects removed because they failed a check, since start. */
  failures = 0;

  constructor(
    private readonly storage: Storage,
    private readonly log: IntegrityLogger,
  ) {}

  /**
   * A cache record from storage: null when it is missing or was written before records had
   * checksums, and removed (then null) when it is damaged.
   */
  async readRecord<T>(key: string, what: string): Promise<T | null> {
    const raw = await this.storage.read(key);
    if (!raw) return null;
    const decoded = decodeRecord<T>(raw);
    if (decoded.ok) return decoded.record;
    if (!decoded.legacy) await this.remove(key, `${what}: ${decoded.why}`);
    return null;
  }

  /** Removes `key` (best effort: a failing delete is logged; the caller reports the failure either way). */
  async remove(key: string, why: string): Promise<void> {
    this.failures++;
    this.log.warn({ key, why }, 'integrity check failed: removing the stored object so it is rebuilt');
    await this.storage.delete(key).catch((err: unknown) => {
      this.log.warn({ key, err: String(err) }, 'could not remove an object that failed its integrity check');
    });
  }
}

/** Reads an opened object through SHA-256 (streamed): whether it is exactly `digest`, size included. */
export async function matchesDigest(opened: OpenedObject, digest: string): Promise<boolean> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of opened.stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return bytes === opened.info.size && `sha256:${hash.digest('hex')}` === digest;
}
