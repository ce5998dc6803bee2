// Small helpers of the blob policy: reading a stream whole, hashing, and a manifest's own media type.

import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { MANIFEST_MEDIA_TYPES } from '../manifest/manifest.js';

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

export function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** The media type a manifest declares in itself, when it is one we serve. */
export function sniffManifestType(bytes: Buffer): string | undefined {
  try {
    const mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown }).mediaType;
    return typeof mediaType === 'string' && MANIFEST_MEDIA_TYPES.has(mediaType) ? mediaType : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Read buffers used again once their bytes are sent: a stream of a large blob allocates nothing
 * per chunk, which would otherwise make V8 run a full GC every few chunks (external memory).
 */
export class BufferPool {
  private readonly free: ArrayBuffer[] = [];

  constructor(
    readonly size: number,
    /** Buffers kept while unused. */
    private readonly keep: number,
  ) {}

  take(): Buffer {
    const kept = this.free.pop();
    return kept ? Buffer.from(kept) : Buffer.allocUnsafeSlow(this.size);
  }

  /** Gives back a buffer from `take` (or a part of one): its bytes are no longer needed by anyone. */
  give(bytes: Buffer): void {
    const whole = bytes.buffer;
    if (whole.byteLength === this.size && whole instanceof ArrayBuffer && this.free.length < this.keep) this.free.push(whole);
  }
}

/**
 * Reads `length` bytes from `start` with positional reads into pooled buffers, one read ahead.
 * Ends early (shorter) if the object does: the caller compares what it got with what it expected.
 */
export async function* positionalReads(read: (into: Buffer, length: number, position: number) => Promise<number>, start: number, length: number, pool: BufferPool): AsyncGenerator<Buffer> {
  let position = start;
  const end = start + length;
  const next = (): Promise<{ chunk: Buffer; short: boolean }> | undefined => {
    if (position >= end) return undefined;
    const buffer = pool.take();
    const n = Math.min(buffer.length, end - position);
    const at = position;
    position += n;
    return read(buffer, n, at).then((got) => ({ chunk: buffer.subarray(0, got), short: got < n }));
  };
  let pending = next();
  try {
    while (pending) {
      const { chunk, short } = await pending;
      // A short read: the file ended early (or was cut); nothing is read after it.
      pending = short ? undefined : next();
      if (chunk.length > 0) yield chunk;
    }
  } finally {
    // A read ahead nobody takes: its buffer is not given back (it may still be filled).
    pending?.catch(() => {});
  }
}
