// Byte ranges against object stores: checked before the request, and cut to size when a
// server sends more than was asked.

import { PassThrough, type Readable } from 'node:stream';
import { StorageRangeError } from './errors.js';
import type { ByteRange } from './storage.js';

/** Ranges are checked before sending: S3 and GCS silently ignore a malformed Range and return everything. */
export function checkRangeShape(key: string, range: ByteRange): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) throw new StorageRangeError(key, start, end);
}

/**
 * Some S3-compatible servers (s3rver for `bytes=0-0`, some proxies always) answer a Range
 * request with more than was asked; Content-Range says what came, so cut the rest here.
 */
export function trimToRange(body: Readable, range: ByteRange, contentRange: string | undefined): Readable {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(contentRange ?? '');
  const gotStart = m ? Number(m[1]) : 0;
  const gotEnd = m ? Number(m[2]) : Infinity;
  const wantEnd = Math.min(range.end, m && m[3] !== '*' ? Number(m[3]) - 1 : range.end);
  if (m && gotStart === range.start && gotEnd === wantEnd) return body;
  let skip = range.start - gotStart;
  let remaining = wantEnd - range.start + 1;
  if (skip < 0) {
    body.destroy();
    throw new Error(`the server answered bytes ${contentRange} for bytes=${range.start}-${range.end}`);
  }
  const trimmed = new PassThrough();
  body.on('data', (chunk: Buffer) => {
    if (remaining <= 0) return;
    let part = chunk;
    if (skip > 0) {
      const dropped = Math.min(skip, part.length);
      part = part.subarray(dropped);
      skip -= dropped;
    }
    if (part.length === 0) return;
    if (part.length > remaining) part = part.subarray(0, remaining);
    remaining -= part.length;
    if (!trimmed.write(part)) body.pause();
    if (remaining === 0) {
      trimmed.end();
      body.destroy();
    }
  });
  trimmed.on('drain', () => body.resume());
  body.on('end', () => trimmed.end());
  body.on('error', (err) => trimmed.destroy(err));
  trimmed.on('close', () => body.destroy());
  return trimmed;
}


/**
 * The whole object's size from a (possibly ranged) GET answer: Content-Range's total when the
 * server answered a range, else Content-Length (a server may ignore Range and send it all).
 */
export function objectSizeFrom(contentRange: string | null | undefined, contentLength: number | undefined): number {
  const m = /\/(\d+)$/.exec(contentRange ?? '');
  if (m) return Number(m[1]);
  return contentLength ?? 0;
}
