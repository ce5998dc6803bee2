// Packing a layer: tar → parallel compression (gzip or zstd) → sink, with the compressed digest
// and size and the uncompressed diff_id computed in the same single pass.

import { createHash } from 'node:crypto';
import { ArchiveError } from './errors.js';
import { ChunkedEncoder } from './chunked.js';
import { zlibGzip, type LayerCompression } from './compression.js';
import { storePathEntries, type StorePathOptions } from './storepaths.js';
import { writeTar, type ByteSink, type TarEntry } from './tar.js';

export interface LayerDigests {
  /** `sha256:<hex>` of the compressed blob. */
  digest: string;
  /** Compressed size in bytes. */
  size: number;
  /** `sha256:<hex>` of the uncompressed tar (the config's rootfs.diff_ids). */
  diffId: string;
  uncompressedSize: number;
}

export interface PackOptions {
  /** Called as uncompressed bytes are produced (about every MiB), with the running total. */
  onProgress?: (uncompressedBytes: number) => void;
  signal?: AbortSignal;
  /** What the tar is compressed with (default: gzip through Node's zlib). */
  compression?: LayerCompression;
}

/** Writes to a Node writable, resolving once the stream has accepted the bytes (its callback). */
function writeTo(sink: NodeJS.WritableStream, bytes: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    sink.write(bytes, (err?: Error | null) => (err ? reject(err) : resolve()));
  });
}

/**
 * Packs `entries` (in the given order) as a compressed tar into `sink`. Resolves when the
 * sink has accepted every byte; the sink is not ended (the caller commits or aborts it).
 * Memory stays flat: file contents are streamed and at most a few MiB are in flight.
 */
export async function packEntries(
  entries: AsyncIterable<TarEntry> | Iterable<TarEntry>,
  sink: NodeJS.WritableStream,
  options: PackOptions = {},
): Promise<LayerDigests> {
  const { onProgress, signal } = options;
  signal?.throwIfAborted();
  const compressedHash = createHash('sha256');
  const tarHash = createHash('sha256');
  let uncompressed = 0;
  let sinkError: Error | undefined;
  const onSinkError = (err: Error): void => {
    sinkError ??= err;
  };
  sink.on('error', onSinkError);

  const encoder = new ChunkedEncoder(
    (options.compression ?? zlibGzip()).codec(),
    async (compressed) => {
      if (sinkError) throw sinkError;
      compressedHash.update(compressed);
      await writeTo(sink, compressed);
    },
    {
      onInput: (chunk) => {
        tarHash.update(chunk);
        uncompressed += chunk.length;
        onProgress?.(uncompressed);
      },
    },
  );
  const tarSink: ByteSink = {
    write: (chunk) => {
      signal?.throwIfAborted();
      return encoder.write(chunk);
    },
  };

  try {
    await writeTar(entries, tarSink, { signal });
    const { inputSize, outputSize } = await encoder.end();
    if (sinkError) throw sinkError;
    return {
      digest: `sha256:${compressedHash.digest('hex')}`,
      size: outputSize,
      diffId: `sha256:${tarHash.digest('hex')}`,
      uncompressedSize: inputSize,
    };
  } catch (err) {
    if (err instanceof ArchiveError || (err as Error)?.name === 'AbortError') throw err;
    const why = err instanceof Error ? err.message : String(err);
    throw new ArchiveError(`packing the layer failed: ${why}`, { cause: err });
  } finally {
    sink.removeListener('error', onSinkError);
  }
}

/** Packs a layer made of whole store paths (see storePathEntries for what goes in). */
export async function packStorePaths(
  paths: readonly string[],
  sink: NodeJS.WritableStream,
  options: PackOptions & Pick<StorePathOptions, 'storeRoot'> = {},
): Promise<LayerDigests> {
  const entries = await storePathEntries(paths, { storeRoot: options.storeRoot, signal: options.signal });
  return packEntries(entries, sink, options);
}
