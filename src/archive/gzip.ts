// Parallel gzip in the manner of pigz: the input is cut at fixed offsets into chunks, each chunk
// is deflated on the libuv threadpool with the previous chunk's last 32 KiB as dictionary and
// ended with a sync flush (the last one with Z_FINISH), and the pieces are joined in order
// behind a fixed gzip header. The result is one ordinary single-member gzip stream whose bytes
// depend only on the input bytes: chunk boundaries never depend on timing or on concurrency.

import { availableParallelism } from 'node:os';
import zlib from 'node:zlib';
import { Semaphore } from '../util/semaphore.js';
import type { ByteSink } from './tar.js';

/** Uncompressed bytes per chunk. Part of the output format: changing it changes digests. */
export const GZIP_CHUNK_SIZE = 1024 * 1024;
export const GZIP_LEVEL = 6;
/** Deflate's window: the most a back-reference can reach, so the dictionary size. */
const DICTIONARY_SIZE = 32 * 1024;
/**
 * Fixed gzip header: magic, CM=8 (deflate), no flags, MTIME 0, XFL 0, OS 255 ("unknown"), so
 * the header does not depend on the machine.
 */
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff]);

/**
 * Process-wide bound on chunk compressions in flight, shared by every layer being packed, so
 * packing several layers at once does not oversubscribe the cores (or the libuv threadpool,
 * which file reads need too).
 */
const compressionSlots = new Semaphore(defaultConcurrency());

/**
 * One slot per core, but at most the libuv threadpool size minus one, so that a thread stays
 * free for file reads (raise UV_THREADPOOL_SIZE at startup on machines with more than 3 cores).
 */
function defaultConcurrency(): number {
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return Math.max(1, Math.min(availableParallelism(), pool - 1));
}

/** Changes the process-wide bound (default: cores, capped by the threadpool; see above). */
export function setCompressionConcurrency(limit: number): void {
  compressionSlots.setLimit(limit);
}

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

export interface GzipOptions {
  /** Most chunks of this stream compressing or waiting to be written (default: 2 × cores). */
  maxQueued?: number;
  /** Called with every uncompressed chunk, in order, before it is compressed (for hashing). */
  onInput?: (chunk: Buffer) => void;
}

export interface GzipResult {
  /** Uncompressed bytes. */
  inputSize: number;
  /** Compressed bytes, header and trailer included. */
  outputSize: number;
}

/**
 * A gzip encoder that compresses chunks in parallel. `write` copies its argument before it
 * returns, so callers may reuse their buffer; await its promise for backpressure. Compressed
 * bytes go to `output` strictly in order; it is awaited before more is queued.
 */
export class ParallelGzip implements ByteSink {
  private chunk: Buffer = Buffer.allocUnsafe(GZIP_CHUNK_SIZE);
  private chunkLength = 0;
  private dictionary: Buffer | undefined;
  private readonly queue: Array<Promise<Buffer>> = [];
  private readonly maxQueued: number;
  private crc = 0;
  private inputSize = 0;
  private outputSize = 0;
  private started = false;
  private ended = false;
  /** Serialises calls to `output`. */
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly output: (compressed: Buffer) => Promise<void>,
    private readonly options: GzipOptions = {},
  ) {
    this.maxQueued = Math.max(1, options.maxQueued ?? 2 * availableParallelism());
  }

  write(data: Buffer): Promise<void> | void {
    if (this.ended) throw new Error('ParallelGzip: write after end');
    let offset = 0;
    while (offset < data.length) {
      // Cut only when more input arrives, so that the last chunk is known to be last.
      if (this.chunkLength === GZIP_CHUNK_SIZE) this.dispatch(false);
      const n = Math.min(GZIP_CHUNK_SIZE - this.chunkLength, data.length - offset);
      data.copy(this.chunk, this.chunkLength, offset, offset + n);
      this.chunkLength += n;
      offset += n;
    }
    if (this.queue.length > this.maxQueued) return this.drain(this.maxQueued);
  }

  /** Compresses what is left, writes the trailer and waits for every output write. */
  async end(): Promise<GzipResult> {
    if (this.ended) throw new Error('ParallelGzip: end called twice');
    this.dispatch(true);
    this.ended = true;
    await this.drain(0);
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(this.crc >>> 0, 0);
    trailer.writeUInt32LE(this.inputSize % 2 ** 32, 4); // ISIZE: size modulo 2^32
    await this.emit(trailer);
    return { inputSize: this.inputSize, outputSize: this.outputSize };
  }

  private dispatch(last: boolean): void {
    const input = this.chunk.subarray(0, this.chunkLength);
    this.options.onInput?.(input);
    this.crc = zlib.crc32(input, this.crc);
    this.inputSize += input.length;
    const dictionary = this.dictionary;
    const compressed = compressionSlots.use(() => deflateChunk(input, dictionary, last));
    compressed.catch(() => undefined); // surfaced by drain, in order
    this.queue.push(compressed);
    if (!last) {
      this.dictionary = input.subarray(input.length - DICTIONARY_SIZE);
      this.chunk = Buffer.allocUnsafe(GZIP_CHUNK_SIZE);
      this.chunkLength = 0;
    }
  }

  /** Writes finished chunks, in order, until at most `keep` are left in the queue. */
  private drain(keep: number): Promise<void> {
    while (this.queue.length > keep) {
      const compressed = this.queue.shift()!;
      this.enqueueOutput(() => compressed);
    }
    return this.flushing;
  }

  private emit(bytes: Buffer): Promise<void> {
    this.enqueueOutput(() => bytes);
    return this.flushing;
  }

  /** Chains an output write behind the previous ones, so the order is the call order. */
  private enqueueOutput(bytes: () => Buffer | Promise<Buffer>): void {
    this.flushing = this.flushing.then(async () => {
      const data = await bytes();
      if (!this.started) {
        this.started = true;
        this.outputSize += GZIP_HEADER.length;
        await this.output(GZIP_HEADER);
      }
      this.outputSize += data.length;
      await this.output(data);
    });
    this.flushing.catch(() => undefined); // the caller sees the error through write/end
  }
}
