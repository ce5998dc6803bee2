// Serving blobs (layers, configs, manifests by digest): sizes and types, the hot-blob memory
// cache, redirects to object storage, byte ranges, and integrity. No response completes with
// bytes that do not hash to the digest they are served under:
// - small blobs are read whole (concurrent first reads share one read), checked, then sent;
// - large ones are hashed while they stream and their last chunk is held back until the hash
//   is known, so a mismatch leaves the client with a failed transfer, never a complete 200;
// - ranges and redirects are only served for an object version already checked in full.
// A stored version is checked once per process (keyed by its version: inode+size+mtime, ETag,
// generation). Bad bytes are quarantined (removed), and a blob that is missing (quarantined,
// collected by gc, lost) is rebuilt from the image it belongs to when that image is known.

import { createHash } from 'node:crypto';
import { BlobNotFoundError, IntegrityError, ManifestNotFoundError } from '../errors.js';
import { blobKey } from '../builder/layout.js';
import { matchesDigest, type Quarantine } from '../builder/integrity.js';
import { MANIFEST_MEDIA_TYPES } from '../manifest/manifest.js';
import type { ObjectInfo, OpenedObject, Storage } from '../storage/storage.js';
import { ByteBudget } from '../util/byte-budget.js';
import { LruCache } from '../util/lru.js';
import { SingleFlight } from '../util/singleflight.js';
import { notModified, parseRange, sendCatalogueError, writeHead, type RequestContext } from './http.js';
import { BodyWriter, MAX_IN_FLIGHT, SendAborted } from './send.js';
import type { BlobObserver } from '../service/blob-observer.js';

export interface BlobServerOptions {
  storage: Storage;
  quarantine: Quarantine;
  /** Answer blob GETs with a redirect when the backend offers one. */
  redirects: boolean;
  /** Lifetime of the backend's signed URLs, ms. */
  redirectTtlMs: number;
  /** Memory for hot blobs, bytes (0: none). */
  hotCacheBytes: number;
  /** Bytes that all responses together may hold in memory while streaming. */
  sendBufferBytes: number;
  /** A response whose client accepts nothing for this long is closed, ms. */
  sendTimeoutMs: number;
  /** Rebuilds whatever a missing blob belongs to; true when the blob should exist again. */
  repair?: (digest: string) => Promise<boolean>;
  /**
   * `once` (default): each stored version is checked in full the first time it is read;
   * `always`: every read from storage is checked; `off`: nothing is checked (for measurements).
   */
  verify?: BlobVerification;
  /** Told of hot cache lookups, stalled responses, repairs, and how to read the memory held. */
  observer?: BlobObserver;
}

export type BlobVerification = 'once' | 'always' | 'off';

interface BlobInfo {
  size: number;
  contentType?: string;
  version?: string;
}

interface Loaded {
  bytes: Buffer;
  contentType?: string;
}

/** Manifests larger than this are not ours (ours are a few KB; OCI suggests at most 4 MB). */
const MANIFEST_MAX = 4 * 1024 * 1024;
/** Blobs up to this size are read whole, checked, and sent from memory. */
const WHOLE_READ_MAX = 16 * 1024 * 1024;
/**
 * What one streaming response holds at most: the storage stream's read-ahead (1 MB chunks), the
 * chunk held back until the digest is known, and the in-flight window.
 */
const STREAM_RESERVATION = 2 * 1024 * 1024 + MAX_IN_FLIGHT;
/**
 * Positive stat answers (for HEAD and redirects) are reused this long. Short: gc may remove a
 * blob at any time, and a client retrying a redirect that failed must soon reach a repair.
 */
const INFO_TTL_MS = 2_000;
const IMMUTABLE = 'public, max-age=31536000, immutable';

export class BlobServer {
  /** Blobs currently held by the hot cache, and the largest one it takes. */
  private readonly hot: LruCache<string, Loaded> | undefined;
  private readonly hotMaxObject: number;
  private readonly infos = new LruCache<string, { info: BlobInfo; until: number }>(100_000);
  private readonly signedUrls = new LruCache<string, { url: string; reuseUntil: number }>(10_000);
  /** `<digest> <version>` of object versions checked in full. */
  private readonly verified = new LruCache<string, true>(200_000);
  private readonly loads = new SingleFlight<string, void>();
  /** Whole reads in use by responses that the hot cache does not hold. */
  private readonly shared = new Map<string, { loaded: Loaded; users: number; reserved: number }>();
  private readonly verifications = new SingleFlight<string, string | undefined>();
  private readonly repairs = new SingleFlight<string, boolean>();
  private readonly budget: ByteBudget;
  private readonly verification: BlobVerification;
  /** `hotHits`/`hotMisses`: requests (blobs, manifests by digest) the hot cache answered or not (when it is on). */
  readonly stats = { sendStalled: 0, sendClosed: 0, repairs: 0, hotHits: 0, hotMisses: 0 };

  constructor(private readonly options: BlobServerOptions) {
    this.hot = options.hotCacheBytes > 0 ? new LruCache<string, Loaded>(options.hotCacheBytes, (b) => b.bytes.length) : undefined;
    this.hotMaxObject = Math.min(WHOLE_READ_MAX, options.hotCacheBytes / 8);
    this.budget = new ByteBudget(options.sendBufferBytes);
    this.verification = options.verify ?? 'once';
    options.observer?.memory(() => ({ hotCacheBytes: this.hotBytes, bufferedBytes: this.bufferedBytes }));
  }

  /** Bytes the hot cache holds. */
  get hotBytes(): number {
    return this.hot?.weight ?? 0;
  }

  /** Bytes responses hold while streaming (bounded by sendBufferBytes). */
  get bufferedBytes(): number {
    return this.budget.inUse;
  }

  /** Answers GET or HEAD of a blob: 200, 206, 304, 307 or 416, or throws a catalogue error. */
  async serve(ctx: RequestContext, digest: string): Promise<void> {
    const hot = this.hot?.get(digest);
    if (this.hot) this.hotLookup(hot !== undefined);
    const info = hot ? { size: hot.bytes.length, contentType: hot.contentType } : await this.infoOrRepair(digest);
    if (!info) throw new BlobNotFoundError(digest);
    const etag = `"${digest}"`;
    const common: Record<string, string | number> = {
      'Docker-Content-Digest': digest,
      ETag: etag,
      'Cache-Control': IMMUTABLE,
      'Accept-Ranges': 'bytes',
      'Content-Type': info.contentType || 'application/octet-stream',
    };
    if (notModified(ctx.req, etag)) {
      writeHead(ctx, 304, common);
      ctx.res.end();
      return;
    }
    const rangeHeader = ctx.req.headers.range;
    const storage = this.options.storage;
    // Ranged requests are answered here so they get a real 206 (zot does the same).
    if (!hot && this.options.redirects && storage.redirectUrl && !rangeHeader) {
      await this.verify(digest, true);
      const url = await this.signedUrl(blobKey(digest), ctx.req.method === 'HEAD' ? 'HEAD' : 'GET');
      if (url) {
        ctx.log.redirect = true;
        writeHead(ctx, 307, { Location: url, 'Docker-Content-Digest': digest, 'Content-Length': 0 });
        ctx.res.end();
        return;
      }
    }
    const range = parseRange(rangeHeader, info.size);
    if (range.kind === 'unsatisfiable') {
      ctx.res.setHeader('Content-Range', `bytes */${info.size}`);
      sendCatalogueError(ctx, 'RANGE_INVALID', `range ${rangeHeader} not satisfiable for ${info.size} bytes`);
      return;
    }
    const partial = range.kind === 'partial' ? { start: range.start, end: range.end } : undefined;
    const respond = (size: number, contentType: string | undefined) => {
      const start = partial?.start ?? 0;
      const end = partial?.end ?? size - 1;
      const headers: Record<string, string | number> = { ...common, 'Content-Type': contentType || 'application/octet-stream', 'Content-Length': end - start + 1 };
      if (partial) headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
      writeHead(ctx, partial ? 206 : 200, headers);
      return { start, end };
    };
    if (ctx.req.method === 'HEAD') {
      respond(info.size, info.contentType);
      ctx.res.end();
      return;
    }

    // From memory: the hot cache, or a whole read (shared by concurrent requests) that is
    // checked before a byte goes out.
    if (hot || info.size <= this.hotMaxObject) return this.sendWhole(ctx, digest, respond, hot ? 'memory' : 'storage');

    // From storage: what was opened decides how it is checked. A version not checked yet is
    // read whole when it is small; a range needs the whole object checked first.
    let stored: OpenedObject;
    let checkedNow: string | undefined;
    const isChecked = (version: string | undefined) => this.isVerified(digest, version) || (checkedNow !== undefined && checkedNow === version);
    for (let attempt = 0; ; attempt++) {
      const opened = await this.openOrRepair(digest, partial);
      if (!opened) throw new BlobNotFoundError(digest);
      stored = opened;
      if (isChecked(opened.info.version)) break;
      if (!partial && opened.info.size > WHOLE_READ_MAX) break; // hashed while it streams
      opened.stream.destroy();
      if (!partial) return this.sendWhole(ctx, digest, respond, 'storage');
      // Replaced again and again while it was being checked: give up for now.
      if (attempt >= 2) throw new IntegrityError(`blob ${digest}`);
      checkedNow = await this.verify(digest, false);
    }
    ctx.log.cache = 'storage';
    const checked = isChecked(stored.info.version);
    const { start, end } = respond(stored.info.size, stored.info.contentType ?? info.contentType);
    const expected = end - start + 1;
    await this.send(ctx, STREAM_RESERVATION, async (body) => {
      const hash = checked ? undefined : createHash('sha256');
      let held: Buffer | undefined;
      let bytes = 0;
      try {
        for await (const chunk of stored.stream as AsyncIterable<Buffer>) {
          hash?.update(chunk);
          bytes += chunk.length;
          if (held) await body.write(held);
          held = chunk;
        }
      } finally {
        stored.stream.destroy();
      }
      if (bytes !== expected || (hash && `sha256:${hash.digest('hex')}` !== digest)) {
        // Withholding the last chunk leaves the client short of Content-Length: a failed transfer.
        body.destroy();
        await this.quarantine(digest, `${bytes} bytes read of ${expected}${hash ? ', or a digest mismatch' : ''} while streaming`);
        ctx.log.integrity = 'failed';
        return;
      }
      if (hash) this.markVerified(digest, stored.info.version);
      if (held) await body.write(held);
    });
  }

  /** Sends a whole (small) blob from memory: the hot cache or a checked whole read. */
  private async sendWhole(
    ctx: RequestContext,
    digest: string,
    respond: (size: number, contentType: string | undefined) => { start: number; end: number },
    source: 'memory' | 'storage',
  ): Promise<void> {
    const borrowed = await this.borrow(digest);
    try {
      ctx.log.cache = source;
      const { bytes, contentType } = borrowed.loaded;
      const { start, end } = respond(bytes.length, contentType);
      // The bytes are in memory already (and counted there): sending them holds nothing more.
      await this.send(ctx, 0, async (body) => body.write(bytes.subarray(start, end + 1), { shared: true }));
    } finally {
      borrowed.done();
    }
  }

  /**
   * A manifest by digest, checked against its digest before a byte is sent. Its media type
   * comes from storage, or from the manifest itself when storage lost it (e.g. a copied store).
   */
  async manifest(digest: string): Promise<{ bytes: Buffer; mediaType: string }> {
    const info = await this.infoOrRepair(digest);
    if (!info) throw new ManifestNotFoundError(digest);
    if (info.size > MANIFEST_MAX) throw new ManifestNotFoundError(digest);
    if (info.contentType && !MANIFEST_MEDIA_TYPES.has(info.contentType) && info.contentType !== 'application/octet-stream') throw new ManifestNotFoundError(digest);
    const borrowed = await this.borrow(digest);
    borrowed.done(); // the bytes are copied into the response at once
    if (this.hot) this.hotLookup(borrowed.fromHot);
    const { bytes, contentType } = borrowed.loaded;
    const mediaType = contentType && MANIFEST_MEDIA_TYPES.has(contentType) ? contentType : sniffManifestType(bytes);
    if (!mediaType) throw new ManifestNotFoundError(digest);
    return { bytes, mediaType };
  }

  private hotLookup(hit: boolean): void {
    this.stats[hit ? 'hotHits' : 'hotMisses']++;
    this.options.observer?.hotLookup(hit);
  }

  /** Forgets what is known about a blob (it was removed or replaced). */
  forget(digest: string): void {
    this.infos.delete(digest);
    this.hot?.delete(digest);
    for (const method of ['GET', 'HEAD']) this.signedUrls.delete(`${method} ${blobKey(digest)}`);
  }

  /** Writes a response body, holding `reserve` bytes of the send buffer meanwhile. */
  private async send(ctx: RequestContext, reserve: number, produce: (body: BodyWriter) => Promise<void>): Promise<void> {
    const body = new BodyWriter(ctx.res, this.options.sendTimeoutMs);
    const reserved = reserve > 0 ? await this.budget.acquire(reserve) : 0;
    try {
      await produce(body);
      if (!ctx.res.destroyed) await body.end();
    } catch (err) {
      body.destroy();
      if (!(err instanceof SendAborted)) throw err;
      if (err.reason === 'stalled') {
        this.stats.sendStalled++;
        this.options.observer?.sendStalled();
      } else this.stats.sendClosed++;
      ctx.log.aborted = err.reason;
    } finally {
      this.budget.release(reserved);
    }
  }

  /** Size, type and version of a stored blob; a missing blob is rebuilt when its image is known. */
  private async infoOrRepair(digest: string): Promise<BlobInfo | null> {
    const info = await this.info(digest);
    if (info || !(await this.repair(digest))) return info;
    return this.info(digest);
  }

  private async info(digest: string): Promise<BlobInfo | null> {
    const now = Date.now();
    const known = this.infos.get(digest);
    if (known && known.until > now) return known.info;
    const stat = await this.options.storage.stat(blobKey(digest));
    if (!stat) {
      this.infos.delete(digest);
      return null;
    }
    const info = toInfo(stat);
    this.infos.set(digest, { info, until: now + INFO_TTL_MS });
    return info;
  }

  private async openOrRepair(digest: string, range?: { start: number; end: number }): Promise<OpenedObject | null> {
    const opened = await this.options.storage.open(blobKey(digest), range);
    if (opened) return opened;
    this.forget(digest);
    if (!(await this.repair(digest))) return null;
    return this.options.storage.open(blobKey(digest), range);
  }

  private repair(digest: string): Promise<boolean> {
    const repair = this.options.repair;
    if (!repair) return Promise.resolve(false);
    return this.repairs.run(digest, async () => {
      this.stats.repairs++;
      this.options.observer?.repairStarted();
      this.forget(digest);
      return repair(digest);
    }).promise;
  }

  /**
   * A whole (small) blob, checked against its digest: from the hot cache, or read once for all
   * concurrent callers. Bytes that do not go to the cache count against the send buffer until
   * the last caller is done with them.
   */
  private async borrow(digest: string): Promise<{ loaded: Loaded; done: () => void; fromHot: boolean }> {
    for (let loaded = false; ; loaded = true) {
      const hot = this.hot?.get(digest);
      if (hot) return { loaded: hot, done: () => {}, fromHot: !loaded };
      const entry = this.shared.get(digest);
      if (entry) {
        entry.users++;
        let released = false;
        const done = () => {
          if (released) return;
          released = true;
          if (--entry.users > 0) return;
          this.shared.delete(digest);
          this.budget.release(entry.reserved);
        };
        return { loaded: entry.loaded, done, fromHot: false };
      }
      await this.loads.run(digest, () => this.load(digest)).promise;
    }
  }

  private async load(digest: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const opened = await this.openOrRepair(digest);
      if (!opened) throw new BlobNotFoundError(digest);
      if (opened.info.size > WHOLE_READ_MAX) {
        opened.stream.destroy();
        throw new BlobNotFoundError(digest);
      }
      const cacheable = this.hot !== undefined && opened.info.size <= this.hotMaxObject;
      const reserved = cacheable ? 0 : await this.budget.acquire(opened.info.size);
      let bytes: Buffer;
      try {
        bytes = await readAll(opened);
      } catch (err) {
        this.budget.release(reserved);
        throw err;
      }
      if (this.verification === 'off' || (sha256(bytes) === digest && bytes.length === opened.info.size)) {
        this.markVerified(digest, opened.info.version);
        const loaded: Loaded = { bytes, contentType: opened.info.contentType };
        if (cacheable) this.hot!.set(digest, loaded);
        // Kept for the callers waiting on this load; the last one to finish releases it.
        else this.shared.set(digest, { loaded, users: 0, reserved });
        return;
      }
      this.budget.release(reserved);
      await this.quarantine(digest, 'its content does not match its digest');
      // Rebuilt from its image when that is known; otherwise the client learns it is gone.
      if (attempt > 0 || !(await this.repair(digest))) throw new IntegrityError(`blob ${digest}`);
    }
  }

  /**
   * Checks a stored blob in full (once per version) without keeping its bytes. With
   * `trustRecentStat`, a version seen by a recent stat (redirects: no read at all) counts.
   */
  private async verify(digest: string, trustRecentStat: boolean): Promise<string | undefined> {
    if (this.verification === 'off') return undefined;
    if (trustRecentStat) {
      const info = await this.info(digest);
      if (info && this.isVerified(digest, info.version)) return info.version;
    }
    return this.verifications.run(digest, async () => {
      const opened = await this.openOrRepair(digest);
      if (!opened) throw new BlobNotFoundError(digest);
      if (this.isVerified(digest, opened.info.version)) {
        opened.stream.destroy();
        return opened.info.version;
      }
      if (await matchesDigest(opened, digest)) {
        this.markVerified(digest, opened.info.version);
        return opened.info.version;
      }
      await this.quarantine(digest, 'its content does not match its digest');
      if (!(await this.repair(digest))) throw new IntegrityError(`blob ${digest}`);
      return undefined;
    }).promise;
  }

  private isVerified(digest: string, version: string | undefined): boolean {
    if (this.verification !== 'once') return this.verification === 'off';
    return version !== undefined && this.verified.get(`${digest} ${version}`) === true;
  }

  private markVerified(digest: string, version: string | undefined): void {
    if (this.verification === 'once' && version !== undefined) this.verified.set(`${digest} ${version}`, true);
  }

  private async quarantine(digest: string, why: string): Promise<void> {
    this.forget(digest);
    await this.options.quarantine.remove(blobKey(digest), `blob ${digest}: ${why}`);
  }

  /**
   * A signed URL for a blob, reused while it has most of its lifetime left: signing costs more
   * than the rest of a redirect, and clients get URLs valid for at least 3/4 of the TTL.
   */
  private async signedUrl(key: string, method: 'GET' | 'HEAD'): Promise<string | null> {
    const cacheKey = `${method} ${key}`;
    const now = Date.now();
    const hit = this.signedUrls.get(cacheKey);
    if (hit && hit.reuseUntil > now) return hit.url;
    const url = await this.options.storage.redirectUrl!(key, { method });
    if (url) this.signedUrls.set(cacheKey, { url, reuseUntil: now + this.options.redirectTtlMs / 4 });
    return url;
  }
}

function toInfo(stat: ObjectInfo): BlobInfo {
  const info: BlobInfo = { size: stat.size };
  if (stat.contentType) info.contentType = stat.contentType;
  if (stat.version) info.version = stat.version;
  return info;
}

async function readAll(opened: OpenedObject): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of opened.stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** The media type a manifest declares in itself, when it is one we serve. */
function sniffManifestType(bytes: Buffer): string | undefined {
  try {
    const mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown }).mediaType;
    return typeof mediaType === 'string' && MANIFEST_MEDIA_TYPES.has(mediaType) ? mediaType : undefined;
  } catch {
    return undefined;
  }
}
