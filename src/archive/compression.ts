// What a layer is compressed with: gzip through libdeflate (the default) or zlib, or zstd. The
// description names the compressor, its version and every parameter that changes the bytes; it
// is part of the layer and image cache keys and of the provenance, so a replica with another
// compressor never reuses a record of different bytes.

import type { LayerFormat } from '../manifest/manifest.js';
import type { ChunkCodec } from './chunked.js';
import { GZIP_CHUNK_SIZE, GZIP_LEVEL, zlibGzipCodec } from './gzip.js';
import { LIBDEFLATE_CHUNK_SIZE, LIBDEFLATE_LEVEL, libdeflate, libdeflateGzipCodec } from './libdeflate.js';
import { ZSTD_CHUNK_SIZE, ZSTD_LEVEL, zstdCodec, zstdVersion } from './zstd.js';

export type { LayerFormat };
export type GzipEngine = 'libdeflate' | 'zlib';

export interface LayerCompression {
  /** What the layer blob is: its media types follow (manifest.ts). */
  readonly format: LayerFormat;
  /** e.g. `gzip/libdeflate-1.14/level6/chunk4M`: compressor, version and parameters. */
  readonly description: string;
  /** A fresh codec for one layer stream. */
  codec(): ChunkCodec;
}

const mib = (n: number): string => `chunk${n / (1024 * 1024)}M`;

/** gzip through Node's zlib: one stream, chunks chained by dictionary (gzip.ts). */
export function zlibGzip(): LayerCompression {
  return { format: 'gzip', description: `gzip/zlib-${process.versions.zlib}/level${GZIP_LEVEL}/${mib(GZIP_CHUNK_SIZE)}`, codec: zlibGzipCodec };
}

/** gzip through libdeflate: a member per chunk (libdeflate.ts). Throws if the addon cannot load. */
export function libdeflateGzip(): LayerCompression {
  const { version } = libdeflate();
  return { format: 'gzip', description: `gzip/libdeflate-${version}/level${LIBDEFLATE_LEVEL}/${mib(LIBDEFLATE_CHUNK_SIZE)}/members`, codec: libdeflateGzipCodec };
}

/** zstd through node:zlib: a frame per chunk (zstd.ts). Throws if this Node has no zstd. */
export function zstd(): LayerCompression {
  zstdCodec();
  return { format: 'zstd', description: `zstd/zstd-${zstdVersion()}/level${ZSTD_LEVEL}/${mib(ZSTD_CHUNK_SIZE)}/frames`, codec: zstdCodec };
}

/** The compression the settings name (NIXERY_LAYER_COMPRESSION, NIXERY_GZIP). */
export function layerCompression(format: LayerFormat, gzip: GzipEngine): LayerCompression {
  if (format === 'zstd') return zstd();
  return gzip === 'zlib' ? zlibGzip() : libdeflateGzip();
}
