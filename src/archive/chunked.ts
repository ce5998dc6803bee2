// The parallel, ordered chunk encoder under every layer compression: the input is cut at fixed
// offsets into chunks, each chunk is compressed on the libuv threadpool, and the results are
// written strictly in input order, between an optional header and trailer. Chunk boundaries
// depend only on the input bytes, never on timing or concurrency, so the output is a pure
// function of the input and the codec.

import { availableParallelism } from 'node:os';
import { Semaphore } from '../util/semaphore.js';
import type { ByteSink } from './tar.js';

/** One stream's compression: the chunk size and how a chunk, the header and the trailer look. */
export interface ChunkCodec {
  /** Uncompressed bytes per chunk. Part of the output format: changing it changes digests. */
  readonly chunkSize: number;
  /** Bytes written before the first chunk's, if any. */
  readonly header?: Buffer;
  /**
   * Compresses one chunk. Called in input order (so a codec may keep running state such as a
   * CRC); `previous` is the chunk before it, `last` says whether more follow. Neither buffer is
   * written to afterwards.
   */
  compress(input: Buffer, previous: Buffer | undefined, last: boolean): Promise<Buffer>;
  /** Bytes written after the last chunk's, if any. */
  trailer?(): Buffer;
}

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

export interface ChunkedOptions {
  /** Most chunks of this stream compressing or waiting to be written (default: 2 × cores). */
  maxQueued?: number;
  /** Called with every uncompressed chunk, in order, before it is compressed (for hashing). */
  onInput?: (chunk: Buffer) => void;
}

export interface ChunkedResult {
  /** Uncompressed bytes. */
  inputSize: number;
  /** Compressed bytes, header and trailer included. */
  outputSize: number;
}

/**
 * An encoder that compresses chunks in parallel. `write` copies its argument before it returns,
 * so callers may reuse their buffer; await its promise for backpressure. Compressed bytes go to
 * `output` strictly in order; it is awaited before more is queued.
 */
export class ChunkedEncoder implements ByteSink {
  private chunk: Buffer;
  private chunkLength = 0;
  private previous: Buffer | undefined;
  private readonly queue: Array<Promise<Buffer>> = [];
  private readonly maxQueued: number;
  private inputSize = 0;
  private outputSize = 0;
  private started = false;
  private ended = false;
  /** Serialises calls to `output`. */
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly codec: ChunkCodec,
    private readonly output: (compressed: Buffer) => Promise<void>,
    private readonly options: ChunkedOptions = {},
  ) {
    this.chunk = Buffer.allocUnsafe(codec.chunkSize);
    this.maxQueued = Math.max(1, options.maxQueued ?? 2 * availableParallelism());
  }

  write(data: Buffer): Promise<void> | void {
    if (this.ended) throw new Error('ChunkedEncoder: write after end');
    const size = this.codec.chunkSize;
    let offset = 0;
    while (offset < data.length) {
      // Cut only when more input arrives, so that the last chunk is known to be last.
      if (this.chunkLength === size) this.dispatch(false);
      const n = Math.min(size - this.chunkLength, data.length - offset);
      data.copy(this.chunk, this.chunkLength, offset, offset + n);
      this.chunkLength += n;
      offset += n;
    }
    if (this.queue.length > this.maxQueued) return this.drain(this.maxQueued);
  }

  /** Compresses what is left, writes the trailer and waits for every output write. */
  async end(): Promise<ChunkedResult> {
    if (this.ended) throw new Error('ChunkedEncoder: end called twice');
    this.dispatch(true);
    this.ended = true;
    await this.drain(0);
    // Always emitted (empty without a trailer): an empty input still gets its header.
    await this.emit(this.codec.trailer?.() ?? Buffer.alloc(0));
    return { inputSize: this.inputSize, outputSize: this.outputSize };
  }

  private dispatch(last: boolean): void {
    const input = this.chunk.subarray(0, this.chunkLength);
    this.options.onInput?.(input);
    this.inputSize += input.length;
    const previous = this.previous;
    const compressed = compressionSlots.use(() => this.codec.compress(input, previous, last));
    compressed.catch(() => undefined); // surfaced by drain, in order
    this.queue.push(compressed);
    if (!last) {
      this.previous = input;
      this.chunk = Buffer.allocUnsafe(this.codec.chunkSize);
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
        const header = this.codec.header;
        if (header?.length) {
          this.outputSize += header.length;
          await this.output(header);
        }
      }
      if (data.length === 0) return;
      this.outputSize += data.length;
      await this.output(data);
    });
    this.flushing.catch(() => undefined); // the caller sees the error through write/end
  }
}
