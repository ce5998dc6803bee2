// The HTTP side of blobs: conditional requests, redirects, ranges, HEAD, and sending bodies with
// back-pressure. What may be answered (caches, integrity, repair) is the blob policy's
// (service/blob-policy.ts); a body it says is damaged mid-stream ends as a failed transfer.

import { DamagedBlob, type BlobPolicy, type BlobRequester } from '../service/blob-policy.js';
import { notModified, parseRange, sendCatalogueError, writeHead, type RequestContext } from './http.js';
import { BodyWriter, SendAborted } from './send.js';
import type { BlobObserver } from '../service/blob-observer.js';

const IMMUTABLE = 'public, max-age=31536000, immutable';

export class BlobServer {
  /** Responses closed because the client stalled or went away. */
  private readonly aborted = { sendStalled: 0, sendClosed: 0 };

  constructor(
    readonly policy: BlobPolicy,
    /** A response whose client accepts nothing for this long is closed, ms. */
    private readonly sendTimeoutMs: number,
    private readonly observer?: BlobObserver,
  ) {}

  /** The policy's counts and the sending ones (for /metrics). */
  get stats(): BlobPolicy['stats'] & { sendStalled: number; sendClosed: number } {
    return { ...this.policy.stats, ...this.aborted };
  }
  get hotBytes(): number {
    return this.policy.hotBytes;
  }
  get bufferedBytes(): number {
    return this.policy.bufferedBytes;
  }
  forget(digest: string): void {
    this.policy.forget(digest);
  }
  manifest(digest: string, who?: BlobRequester): Promise<{ bytes: Buffer; mediaType: string }> {
    return this.policy.manifest(digest, who);
  }

  /** Answers GET or HEAD of a blob: 200, 206, 304, 307 or 416, or throws a catalogue error. */
  async serve(ctx: RequestContext, digest: string, who?: BlobRequester): Promise<void> {
    const info = await this.policy.info(digest, who);
    const etag = `"${digest}"`;
    const common: Record<string, string | number> = {
      'Docker-Content-Digest': digest,
      ETag: etag,
      'Cache-Control': IMMUTABLE,
      'Accept-Ranges': 'bytes',
      'Content-Type': info.contentType || 'application/octet-stream',
    };
    if (notModified(ctx.req, etag)) return end(ctx, 304, common);
    const rangeHeader = ctx.req.headers.range;
    const method = ctx.req.method === 'HEAD' ? 'HEAD' : 'GET';
    // Ranged requests are answered here so they get a real 206 (zot does the same).
    const url = rangeHeader || info.hot ? null : await this.policy.redirect(digest, method, who);
    if (url) {
      ctx.log.redirect = true;
      return end(ctx, 307, { Location: url, 'Docker-Content-Digest': digest, 'Content-Length': 0 });
    }
    const range = parseRange(rangeHeader, info.size);
    if (range.kind === 'unsatisfiable') {
      ctx.res.setHeader('Content-Range', `bytes */${info.size}`);
      return sendCatalogueError(ctx, 'RANGE_INVALID', `range ${rangeHeader} not satisfiable for ${info.size} bytes`);
    }
    const partial = range.kind === 'partial' ? { start: range.start, end: range.end } : undefined;
    if (method === 'HEAD') {
      const length = partial ? partial.end - partial.start + 1 : info.size;
      const headers = partial ? { ...common, 'Content-Length': length, 'Content-Range': `bytes ${partial.start}-${partial.end}/${info.size}` } : { ...common, 'Content-Length': length };
      return end(ctx, partial ? 206 : 200, headers);
    }

    const body = await this.policy.open(digest, partial, who);
    try {
      ctx.log.cache = body.source;
      const sent = body.range ?? { start: 0, end: body.size - 1 };
      const headers: Record<string, string | number> = { ...common, 'Content-Type': body.contentType || common['Content-Type']!, 'Content-Length': sent.end - sent.start + 1 };
      if (body.range) headers['Content-Range'] = `bytes ${sent.start}-${sent.end}/${body.size}`;
      writeHead(ctx, body.range ? 206 : 200, headers);
      await this.send(ctx, body.window, async (writer) => {
        // Bytes in memory anyway are queued at once: queueing them copies nothing.
        if (body.bytes) return writer.write(body.bytes, { shared: true });
        const sent = body.sent;
        for await (const chunk of body.chunks!) await writer.write(chunk, sent && { sent: () => sent(chunk) });
      });
    } finally {
      body.release();
    }
  }

  /** Writes a response body with at most `window` bytes in flight; a damaged or abandoned body destroys the response. */
  private async send(ctx: RequestContext, window: number, produce: (body: BodyWriter) => Promise<void>): Promise<void> {
    const writer = new BodyWriter(ctx.res, this.sendTimeoutMs, window);
    try {
      await produce(writer);
      if (!ctx.res.destroyed) await writer.end();
    } catch (err) {
      writer.destroy();
      if (err instanceof DamagedBlob) {
        ctx.log.integrity = 'failed';
        return;
      }
      if (!(err instanceof SendAborted)) throw err;
      this.aborted[err.reason === 'stalled' ? 'sendStalled' : 'sendClosed']++;
      if (err.reason === 'stalled') this.observer?.sendStalled();
      ctx.log.aborted = err.reason;
    }
  }
}

function end(ctx: RequestContext, status: number, headers: Record<string, string | number>): void {
  writeHead(ctx, status, headers);
  ctx.res.end();
}
