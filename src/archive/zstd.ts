// zstd layers (NIXERY_LAYER_COMPRESSION=zstd) with the zstd inside Node (node:zlib, Node ≥ 22.15
// and 23.8). As with libdeflate, each chunk is one complete zstd frame compressed alone, and a
// layer is the concatenation of its frames, which the zstd format allows and every reader
// reads. The parameters are pinned (single-threaded, level, checksum, content size), so the
// bytes depend only on the input, the chunk size and zstd's version.

import zlib from 'node:zlib';
import type { ChunkCodec } from './chunked.js';

/** Uncompressed bytes per frame. Part of the output format: changing it changes digests. */
export const ZSTD_CHUNK_SIZE = 4 * 1024 * 1024;
export const ZSTD_LEVEL = 3;

type ZstdZlib = typeof zlib & {
  zstdCompress?: (input: Buffer, options: object, callback: (err: Error | null, out: Buffer) => void) => void;
  constants: typeof zlib.constants & Record<string, number>;
};
const z = zlib as ZstdZlib;

/** zstd's version when this Node has zstd in node:zlib, else undefined. */
export function zstdVersion(): string | undefined {
  return typeof z.zstdCompress === 'function' ? process.versions.zstd : undefined;
}

function compressFrame(input: Buffer): Promise<Buffer> {
  const c = z.constants;
  return new Promise((resolve, reject) => {
    z.zstdCompress!(
      input,
      {
        params: {
          [c.ZSTD_c_compressionLevel!]: ZSTD_LEVEL,
          [c.ZSTD_c_checksumFlag!]: 1,
          [c.ZSTD_c_contentSizeFlag!]: 1,
          [c.ZSTD_c_nbWorkers!]: 0,
        },
        pledgedSrcSize: input.length,
        // One output buffer large enough for the whole frame: fewer threadpool round trips.
        chunkSize: input.length + (input.length >> 7) + 1024,
      },
      (err, out) => (err ? reject(err) : resolve(out)),
    );
  });
}

/** The codec of one zstd stream: a frame per chunk. */
export function zstdCodec(): ChunkCodec {
  if (!zstdVersion()) throw new Error(`this Node (${process.version}) has no zstd in node:zlib: zstd layers need Node ≥ 22.15`);
  return { chunkSize: ZSTD_CHUNK_SIZE, compress: (input) => compressFrame(input) };
}
