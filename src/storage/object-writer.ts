// What the object-store writers (S3, GCS) share. An object store makes an object visible only
// when its upload completes, so a streaming write buffers bytes, sends full parts while the
// producer writes, and completes the upload only in `commit`. This class owns the Writable
// wiring, the state machine (open → committing → committed | aborted), the buffer and the
// commit/abort framing; a backend says how parts go up (S3 multipart parts, GCS resumable
// chunks), how the upload completes and how an unfinished one is dropped.

import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { ObjectWriter } from './storage.js';

/** Turns a failure into the error the backend reports (a StorageUnavailableError naming it). */
export type StorageFailure = (operation: string, key: string, err: unknown) => Error;

export abstract class ObjectStoreWriter {
  readonly stream: Writable;
  /** The first failure: of a part upload, of the stream, or of the producer's pipeline. */
  protected failure: unknown;
  protected state: 'open' | 'committing' | 'committed' | 'aborted' = 'open';
  /** Bytes accepted and not yet sent. */
  protected bufferedBytes = 0;
  private buffered: Buffer[] = [];

  constructor(
    protected readonly key: string,
    private readonly fail: StorageFailure,
  ) {
    this.stream = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        this.accept(chunk).then(() => callback(), callback);
      },
      final: (callback) => {
        // The last part goes up at commit (it completes the object): only wait for the parts
        // already on their way.
        this.settleParts().then(() => callback(this.failure as Error | undefined), callback);
      },
      destroy: (err, callback) => {
        if (err) this.failure ??= err;
        if (this.state === 'open' && err) void this.discard();
        callback(err);
      },
    });
    // Failures are reported by commit (and to the producer's pipeline); never crash on them.
    this.stream.on('error', (err) => {
      this.failure ??= err;
    });
  }

  /** The ObjectWriter handed to callers (plain functions: safe to pass around unbound). */
  asObjectWriter(): ObjectWriter {
    return { stream: this.stream, commit: () => this.commit(), abort: () => this.abort() };
  }

  async commit(): Promise<void> {
    if (this.state !== 'open') throw this.fail('commit', this.key, new Error(`writer already ${this.state}`));
    this.state = 'committing';
    try {
      this.failure ??= this.stream.errored ?? undefined;
      if (this.failure === undefined && this.stream.destroyed && !this.stream.writableFinished) this.failure = new Error('the write stream was destroyed before commit');
      if (this.failure !== undefined) throw this.failure;
      if (!this.stream.writableEnded) this.stream.end();
      if (!this.stream.writableFinished) await finished(this.stream);
      await this.settleParts();
      if (this.failure !== undefined) throw this.failure;
      await this.complete(this.takeBuffered());
      this.state = 'committed';
    } catch (err) {
      this.state = 'aborted';
      if (!this.stream.destroyed) this.stream.destroy();
      await this.discard();
      throw this.fail('write', this.key, err);
    }
  }

  async abort(): Promise<void> {
    if (this.state === 'committed' || this.state === 'aborted') return;
    this.state = 'aborted';
    if (!this.stream.destroyed) this.stream.destroy();
    await this.discard();
  }

  /** Sends what is buffered if it makes a full part (or several); called after every write. */
  protected abstract sendFullParts(): Promise<void>;

  /** Sends the rest and completes the upload: the object becomes visible. */
  protected abstract complete(rest: Buffer): Promise<void>;

  /** Drops the unfinished remote upload, if one was started. Best effort: it is never visible. */
  protected abstract cancelUpload(): Promise<void>;

  /** Waits for part uploads still on their way (none unless the backend sends in parallel). */
  protected async settleParts(): Promise<void> {}

  /**
   * Called right after starting a remote upload: if the write was aborted or failed meanwhile,
   * nothing else would drop the new upload, so drop it here.
   */
  protected async throwIfClosed(): Promise<void> {
    if (this.state === 'aborted' || this.failure !== undefined) {
      await this.discard();
      throw this.failure ?? new Error('the write was aborted');
    }
  }

  /** Everything buffered, as one Buffer; the buffer is left empty. */
  protected takeBuffered(): Buffer {
    const all = Buffer.concat(this.buffered);
    this.buffered = [];
    this.bufferedBytes = 0;
    return all;
  }

  /** Puts bytes that were taken but not sent back in front of the buffer. */
  protected rebuffer(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.buffered.unshift(bytes);
    this.bufferedBytes += bytes.length;
  }

  private async accept(chunk: Buffer): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    this.buffered.push(chunk);
    this.bufferedBytes += chunk.length;
    await this.sendFullParts();
  }

  private async discard(): Promise<void> {
    this.buffered = [];
    this.bufferedBytes = 0;
    await this.cancelUpload();
  }
}
