// gzip with libdeflate (NIXERY_GZIP=libdeflate, the default): 2–3× zlib's speed per core at the
// same level. libdeflate compresses whole buffers only (no streaming, no preset dictionary), so
// each chunk becomes one complete gzip member, and a layer is the concatenation of its chunks'
// members: a multi-member gzip stream, which RFC 1952 allows and every layer reader reads (Go's
// compress/gzip, containerd, pgzip in podman and skopeo, gzip, pigz, Node's zlib). The bytes
// depend only on the input, the level, the chunk size and libdeflate's version.
// The addon (native/deflate.c, built by scripts/build-native.mjs) is loaded on first use.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { ChunkCodec } from './chunked.js';

/** Uncompressed bytes per member. Part of the output format: changing it changes digests. */
export const LIBDEFLATE_CHUNK_SIZE = 4 * 1024 * 1024;
export const LIBDEFLATE_LEVEL = 6;

interface Addon {
  version: string;
  compressGzipMember(input: Buffer, level: number): Promise<Buffer>;
}

/** Where `npm run build` puts the addon: dist/native/, next to dist/src/. */
export const ADDON_PATH = fileURLToPath(new URL('../../native/nixery_deflate.node', import.meta.url));

export class LibdeflateUnavailableError extends Error {}

let addon: Addon | undefined;

/** The addon, loaded once; throws LibdeflateUnavailableError saying why it cannot load. */
export function libdeflate(): Addon {
  if (addon) return addon;
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as Addon;
    return addon;
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' ? `${ADDON_PATH} is missing` : (err as Error).message.split('\n')[0];
    throw new LibdeflateUnavailableError(why, { cause: err });
  }
}

/** The codec of one libdeflate gzip stream: a member per chunk, no header or trailer around them. */
export function libdeflateGzipCodec(): ChunkCodec {
  const lib = libdeflate();
  return {
    chunkSize: LIBDEFLATE_CHUNK_SIZE,
    compress: (input) => lib.compressGzipMember(input, LIBDEFLATE_LEVEL),
  };
}
