// A blob body streamed from storage: read (a file: into pooled buffers, given back once sent),
// checked as it is read, and the last chunk held back until the check is done, so a client
// never receives a complete body whose bytes fail it (it is left short of Content-Length).

import type { OpenedObject } from '../storage/storage.js';
import { positionalReads, type BufferPool } from './blob-bytes.js';
import type { ReadCheck } from './blob-check.js';

/** A body to send: checked bytes from memory, or a stream checked as it is read. */
export interface BlobBody {
  /** The whole blob's size and type. */
  size: number;
  contentType?: string;
  /** The bytes sent (inclusive); a range asked for may be answered whole (then no `range`). */
  range?: { start: number; end: number };
  source: 'memory' | 'storage';
  /** The range's (or whole blob's) bytes, checked already (kept in memory anyway). */
  bytes?: Buffer;
  /** The bytes as read; throws DamagedBlob before the last chunk when they fail their check. */
  chunks?: AsyncIterable<Buffer>;
  /** Called with each chunk once the socket is done with it (its buffer is used again). */
  sent?: (chunk: Buffer) => void;
  /** Bytes of buffer memory the sender may keep in flight (small when the budget had none to give). */
  window: number;
  /** Gives back what the body holds (call once, when the response is done). */
  release(): void;
}

/** A stream failed its check while it was read; it was quarantined. */
export class DamagedBlob extends Error {}

export interface StorageBodyOptions {
  /** The check of this read (none: a version trusted already, or verification off). */
  check: ReadCheck | undefined;
  /** Read buffers for a file, and the in-flight window. */
  pool: BufferPool;
  window: number;
  /** Called (and awaited) when the bytes fail: quarantine. */
  damaged(why: string): Promise<void>;
  damagedMessage: string;
  /** The bytes passed their check. */
  passed(): void;
  /** Gives back the stream's share of the send buffer. */
  release(): void;
}

export function storageBody(opened: OpenedObject, range: { start: number; end: number } | undefined, options: StorageBodyOptions): BlobBody {
  const expected = range ? range.end - range.start + 1 : opened.info.size;
  const { pool } = options;
  const source = opened.read ? positionalReads(opened.read, range?.start ?? 0, expected, pool) : (opened.stream as AsyncIterable<Buffer>);
  let released = false;
  return {
    size: opened.info.size,
    contentType: opened.info.contentType,
    range,
    source: 'storage',
    chunks: checkedChunks(opened, source, expected, options),
    sent: opened.read ? (chunk) => pool.give(chunk) : undefined,
    window: options.window,
    release: () => {
      if (released) return;
      released = true;
      opened.stream.destroy();
      options.release();
    },
  };
}

async function* checkedChunks(opened: OpenedObject, source: AsyncIterable<Buffer>, expected: number, options: StorageBodyOptions): AsyncGenerator<Buffer> {
  const { check } = options;
  // Only the chunk that reaches the expected length is held back: earlier ones go out as soon as
  // they are checked (holding back one chunk all along put a read between every check and its
  // write); a stream that ends short has sent less than Content-Length anyway.
  let held: Buffer | undefined;
  let bytes = 0;
  try {
    for await (const chunk of source) {
      if (chunk.length === 0) continue;
      check?.update(chunk);
      bytes += chunk.length;
      if (bytes < expected) yield chunk;
      // The chunk that reaches the length; any byte after it makes the stream too long (damaged).
      else held ??= chunk;
    }
  } finally {
    opened.stream.destroy();
  }
  if (bytes !== expected || (check && !check.passed())) {
    // The last chunk is withheld: the client is left short of Content-Length, a failed transfer.
    const mismatch = check ? `, or a ${check.kind === 'tag' ? 'mismatch with the bytes checked before' : 'digest mismatch'}` : '';
    await options.damaged(`${bytes} bytes read of ${expected}${mismatch} while streaming`);
    throw new DamagedBlob(options.damagedMessage);
  }
  if (check) options.passed();
  if (held) yield held;
}
