// The resumable upload of the gcs backend: an ObjectWriter whose chunks go up while the producer
// writes and whose object appears only when `commit` declares the total size (small writes are
// one media upload at commit).

import { ObjectStoreWriter } from './object-writer.js';

/** What an upload needs of the backend (GcsStorage). */
export interface ResumableTarget {
  readonly chunkSize: number;
  failure(operation: string, key: string, err: unknown): Error;
  mediaUpload(name: string, body: Buffer, contentType: string | undefined): Promise<unknown>;
  startResumable(name: string, contentType: string | undefined): Promise<string>;
  request(options: { method: string; url: string; headers?: Record<string, string>; body?: Buffer | string; accept?: number[] }): Promise<{ status: number; headers: Headers }>;
}

/**
 * One streaming write. Bytes are buffered up to a chunk; the first full chunk opens a
 * resumable session and chunks go up as they fill. The final request, which declares the
 * total size and so completes the object, is sent only by commit.
 */
export class ResumableUpload extends ObjectStoreWriter {
  private session: string | undefined;
  /** Bytes the server has persisted. */
  private offset = 0;
  private stalls = 0;

  constructor(
    private readonly storage: ResumableTarget,
    private readonly name: string,
    key: string,
    private readonly contentType: string | undefined,
  ) {
    super(key, (operation, k, err) => storage.failure(operation, k, err));
  }

  protected async sendFullParts(): Promise<void> {
    const size = this.storage.chunkSize;
    while (this.bufferedBytes >= size) {
      if (this.session === undefined) {
        this.session = await this.storage.startResumable(this.name, this.contentType);
        await this.throwIfClosed();
      }
      const all = this.takeBuffered();
      const sent = all.subarray(0, size);
      const before = this.offset;
      await this.sendChunk(sent, undefined);
      if (this.offset === before && ++this.stalls > 5) throw new Error(`the server persisted none of 6 chunks at byte ${before}`);
      // The server may persist less than it was sent: keep what it has not.
      this.rebuffer(Buffer.concat([sent.subarray(this.offset - before), all.subarray(size)]));
    }
  }

  protected async complete(rest: Buffer): Promise<void> {
    if (this.session === undefined) {
      await this.storage.mediaUpload(this.name, rest, this.contentType);
      return;
    }
    const total = this.offset + rest.length;
    await this.sendChunk(rest, total);
    if (this.offset !== total) throw new Error(`the upload ended at byte ${this.offset} of ${total}`);
  }

  /** Cancels the session (best effort: an unfinished upload is never visible and expires). */
  protected async cancelUpload(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    if (session) await this.storage.request({ method: 'DELETE', url: session, accept: [499] }).catch(() => {});
  }

  /** PUTs bytes at the current offset; `total` given only for the final request. */
  private async sendChunk(body: Buffer, total: number | undefined): Promise<void> {
    const end = this.offset + body.length - 1;
    const range = body.length === 0 ? `bytes */${total ?? '*'}` : `bytes ${this.offset}-${end}/${total ?? '*'}`;
    // Not repeated: after a failure the server may hold part of the chunk.
    const res = await this.storage.request({ method: 'PUT', url: this.session!, headers: { 'Content-Range': range }, body, accept: [308] });
    if (res.status === 308) {
      const persisted = /bytes=0-(\d+)/.exec(res.headers.get('range') ?? '');
      this.offset = persisted ? Number(persisted[1]) + 1 : 0;
    } else {
      this.offset = total ?? end + 1;
    }
  }
}
