// gzip with Node's zlib, in the manner of pigz: each chunk is deflated on the libuv threadpool
// with the previous chunk's last 32 KiB as dictionary and ended with a sync flush (the last one
// with Z_FINISH), and the pieces are joined in order behind a fixed gzip header. The result is
// one ordinary single-member gzip stream whose bytes depend only on the input bytes and zlib's
// version (NIXERY_GZIP=zlib; the default is libdeflate, libdeflate.ts).

import zlib from 'node:zlib';
import { ChunkedEncoder, type ChunkCodec, type ChunkedOptions, type ChunkedResult } from './chunked.js';

export { setCompressionConcurrency } from './chunked.js';

/** Uncompressed bytes per chunk. Part of the output format: changing it changes digests. */
export const GZIP_CHUNK_SIZE = 1024 * 1024;
export const GZIP_LEVEL = 6;
/** Deflate's window: the most a back-reference can reach, so the dictionary size. */
const DICTIONARY_SIZE = 32 * 1024;
/**
 * Fixed gzip header: magic, CM=8 (deflate), no flags, MTIME 0, XFL 0, OS 255 ("unknown"), so
 * the header does not depend on the machine.
 */
export const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff]);

function deflateChunk(input: Buffer, dictionary: Buffer | undefined, last: boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    zlib.deflateRaw(
      input,
      {
        level: GZIP_LEVEL,
        ...(dictionary ? { dictionary } : {}),
        finishFlush: last ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH,
        // One output buffer large enough for the whole chunk: fewer threadpool round trips.
        chunkSize: input.length + (input.length >> 3) + 1024,
      },
      (err, out) => (err ? reject(err) : resolve(out)),
    );
  });
}

/** The codec of one zlib gzip stream (it keeps the running CRC and size for the trailer). */
export function zlibGzipCodec(): ChunkCodec {
  let crc = 0;
  let size = 0;
  return {
    chunkSize: GZIP_CHUNK_SIZE,
    header: GZIP_HEADER,
    compress(input, previous, last) {
      crc = zlib.crc32(input, crc);
      size += input.length;
      return deflateChunk(input, previous?.subarray(previous.length - DICTIONARY_SIZE), last);
    },
    trailer() {
      const trailer = Buffer.alloc(8);
      trailer.writeUInt32LE(crc >>> 0, 0);
      trailer.writeUInt32LE(size % 2 ** 32, 4); // ISIZE: size modulo 2^32
      return trailer;
    },
  };
}

export type GzipOptions = ChunkedOptions;
export type GzipResult = ChunkedResult;

/** A zlib gzip encoder that compresses chunks in parallel (see ChunkedEncoder). */
export class ParallelGzip extends ChunkedEncoder {
  constructor(output: (compressed: Buffer) => Promise<void>, options: GzipOptions = {}) {
    super(zlibGzipCodec(), output, options);
  }
}
