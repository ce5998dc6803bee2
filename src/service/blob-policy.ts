// What serving a blob (a layer, a config, a manifest by digest) may answer, without HTTP: the
// hot-blob memory cache, the stat and signed-URL caches, integrity, quarantine and repair. The
// registry's HTTP side (blob-server.ts) asks it for a blob's info, a redirect, or a body.
// No body completes with bytes that do not hash to the digest they are served under:
// - memory (the hot cache, or a whole read shared by concurrent requests) is checked when it
//   is loaded;
// - everything else read from storage is checked while it streams (blob-stream.ts), and the last
//   chunk is held back until the check is done: a mismatch leaves the client with a failed
//   transfer. The first read of a digest in this process is hashed with SHA-256; later reads are
//   checked against a keyed tag of those checked bytes, several times cheaper (blob-check.ts);
// - only a backend whose versions never change (an S3 ETag, a GCS generation: `versionsImmutable`)
//   is trusted once per version (`NIXERY_BLOB_VERIFY=once`): a filesystem file can change under
//   the same inode, size and times, so it is checked on every read (`always`: SHA-256 every time);
// - a range cannot be hashed against the digest: it is cut from checked memory, or read from a
//   version checked in full (immutable backends). A filesystem blob too large to read whole is
//   sent whole (200) instead, which HTTP allows.
// Bad bytes are quarantined (removed), and a blob that is missing (quarantined, collected by gc,
// lost) is rebuilt from the image it belongs to; that rebuild is a build, admitted as one.

import type { BlobObserver } from './blob-observer.js';
import { BlobNotFoundError, IntegrityError, ManifestNotFoundError, NixeryError } from '../errors.js';
import { blobKey } from '../builder/layout.js';
import { matchesDigest, type Quarantine } from '../builder/integrity.js';
import { MANIFEST_MEDIA_TYPES } from '../manifest/manifest.js';
import type { ObjectInfo, OpenedObject, Storage } from '../storage/storage.js';
import { ByteBudget } from '../util/byte-budget.js';
import { LruCache } from '../util/lru.js';
import { SingleFlight } from '../util/singleflight.js';
import { BufferPool, readAll, sniffManifestType } from './blob-bytes.js';
import { storageBody, type BlobBody } from './blob-stream.js';
import { ReadChecks } from './blob-check.js';

export { DamagedBlob, type BlobBody } from './blob-stream.js';

export type BlobVerification = 'once' | 'always' | 'off';

/** Who asks: whom buffer memory counts against, and the admission a repair (a build) goes through. */
export interface BlobRequester {
  /** `user:<name>` or `ip:<address>`. */
  client: string;
  /** Throws when this client may not start a build now. */
  beforeBuild(): void;
}

export interface BlobPolicyOptions {
  storage: Storage;
  quarantine: Quarantine;
  /** Answer blob GETs with a redirect when the backend offers one. */
  redirects: boolean;
  /** Lifetime of the backend's signed URLs, ms. */
  redirectTtlMs: number;
  /** Memory for hot blobs, bytes (0: none). */
  hotCacheBytes: number;
  /** Bytes that all responses together may hold in memory while streaming (shared fairly by clients). */
  sendBufferBytes: number;
  /**
   * Rebuilds whatever a missing blob belongs to; true when the blob should exist again. The
   * requester's admission guards a rebuild that really starts.
   */
  repair?: (digest: string, requester?: BlobRequester) => Promise<boolean>;
  /**
   * `once` (default): a version of an immutable-version backend is checked in full the first
   * time it is read, everything else on every read (SHA-256 the first time, then against its
   * tag); `always`: every read from storage is hashed with SHA-256; `off`: nothing is checked
   * (for measurements).
   */
  verify?: BlobVerification;
  /** Told of hot cache lookups, repairs, and how to read the memory held. */
  observer?: BlobObserver;
}

export interface BlobInfo {
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
/** Blobs up to this size are read whole, checked, and sent from memory (when there is memory). */
const WHOLE_READ_MAX = 16 * 1024 * 1024;
/** The in-flight window of a stream that got its buffer, and of one that did not. */
export const STREAM_WINDOW = 8 * 1024 * 1024;
export const SMALL_WINDOW = 64 * 1024;
// 4 MB reads: each read handed to the thread pool wakes a thread, which in a VM costs tens of µs
// after idleness; fewer, larger reads made a 100 MB stream ~5 % faster (bench/README.md).
/** Reads of a stream that got its buffer (a file: into pooled buffers), and of one that did not. */
const READ_CHUNK = 4 * 1024 * 1024;
const SMALL_READ_AHEAD = 64 * 1024;
/** What one buffered stream holds at most: a chunk read ahead (two for a backend's stream), the held-back chunk, the window. */
const STREAM_RESERVATION = 2 * READ_CHUNK + STREAM_WINDOW;
/**
 * Positive stat answers (for HEAD and redirects) are reused this long. Short: gc may remove a
 * blob at any time, and a client retrying a redirect that failed must soon reach a repair.
 */
const INFO_TTL_MS = 2_000;
/** Reads by nobody in particular (manifests by digest are small and always read). */
const ANYONE: BlobRequester = { client: '', beforeBuild: () => {} };

export class BlobPolicy {
  private readonly hot: LruCache<string, Loaded> | undefined;
  /** The largest blob the hot cache takes. */
  private readonly hotMaxObject: number;
  private readonly infos = new LruCache<string, { info: BlobInfo; until: number }>(100_000);
  private readonly signedUrls = new LruCache<string, { url: string; reuseUntil: number }>(10_000);
  /** `<digest> <version>` of immutable object versions checked in full. */
  private readonly verified = new LruCache<string, true>(200_000);
  private readonly loads = new SingleFlight<string, boolean>();
  /** Whole reads in use by responses that the hot cache does not hold. */
  private readonly shared = new Map<string, { loaded: Loaded; users: number; reserved: number; owner: string }>();
  private readonly verifications = new SingleFlight<string, string | undefined>();
  private readonly budget: ByteBudget;
  private readonly verification: BlobVerification;
  /** Versions that never change (S3, GCS) may be trusted once checked. */
  private readonly trustVersions: boolean;
  /** SHA-256 on a digest's first read, its tag on later ones (blob-check.ts). */
  private readonly checks: ReadChecks;
  /** Read buffers of file streams, used again once sent (blob-bytes.ts); at most 28 MB kept idle. */
  private readonly pools = { large: new BufferPool(READ_CHUNK, 6), small: new BufferPool(SMALL_READ_AHEAD, 64) };
  /** `hotHits`/`hotMisses`: requests the hot cache answered or not (when it is on); `unbuffered`: streams sent with the small window. */
  readonly stats = { repairs: 0, hotHits: 0, hotMisses: 0, unbuffered: 0 };

  constructor(private readonly options: BlobPolicyOptions) {
    this.hot = options.hotCacheBytes > 0 ? new LruCache<string, Loaded>(options.hotCacheBytes, (b) => b.bytes.length) : undefined;
    this.hotMaxObject = Math.min(WHOLE_READ_MAX, options.hotCacheBytes / 8);
    // One client holds at most an eighth of the buffer, or four buffered streams (64 MB) if more.
    const capacity = options.sendBufferBytes;
    this.budget = new ByteBudget(capacity, Math.min(capacity, Math.max(capacity / 8, 4 * STREAM_RESERVATION)));
    this.verification = options.verify ?? 'once';
    this.trustVersions = options.storage.versionsImmutable === true;
    this.checks = new ReadChecks(this.verification === 'once');
    options.observer?.memory(() => ({ hotCacheBytes: this.hotBytes, bufferedBytes: this.bufferedBytes }));
  }

  get hotBytes(): number {
    return this.hot?.weight ?? 0;
  }

  /** Bytes responses hold while streaming (bounded by sendBufferBytes). */
  get bufferedBytes(): number {
    return this.budget.inUse;
  }

  private hotLookup(hit: boolean): void {
    this.stats[hit ? 'hotHits' : 'hotMisses']++;
    this.options.observer?.hotLookup(hit);
  }

  /** Size and type of a blob (a missing one is repaired first); BlobNotFoundError when there is none. */
  async info(digest: string, who: BlobRequester = ANYONE): Promise<BlobInfo & { hot: boolean }> {
    const hot = this.hot?.get(digest);
    if (this.hot) this.hotLookup(hot !== undefined);
    if (hot) return { size: hot.bytes.length, contentType: hot.contentType, hot: true };
    const info = await this.infoOrRepair(digest, who);
    if (!info) throw new BlobNotFoundError(digest);
    return { ...info, hot: false };
  }

  /**
   * A URL to send the client to instead of the bytes (a backend with signed URLs, redirects on),
   * once the stored version is checked; null to serve the bytes here.
   */
  async redirect(digest: string, method: 'GET' | 'HEAD', who: BlobRequester = ANYONE): Promise<string | null> {
    const storage = this.options.storage;
    if (!this.options.redirects || !storage.redirectUrl) return null;
    await this.verify(digest, true, who);
    return this.signedUrl(blobKey(digest), method);
  }

  /** The body of a blob, or of the range `start`–`end` (inclusive, within its size). */
  async open(digest: string, range: { start: number; end: number } | undefined, who: BlobRequester = ANYONE): Promise<BlobBody> {
    const hot = this.hot?.get(digest);
    if (hot) return fromMemory(hot, range, 'memory', () => {});
    const info = await this.infoOrRepair(digest, who);
    if (!info) throw new BlobNotFoundError(digest);
    if (info.size <= WHOLE_READ_MAX) {
      const borrowed = await this.borrow(digest, who, false);
      if (borrowed) return fromMemory(borrowed.loaded, range, borrowed.fromHot ? 'memory' : 'storage', borrowed.done);
    }
    // Streamed: with 4 MB reads when the requester's share of the buffer allows, with small
    // reads and a small window otherwise (never waiting for buffer).
    const reserved = this.budget.tryAcquire(STREAM_RESERVATION, who.client);
    if (!reserved) this.stats.unbuffered++;
    try {
      return await this.openStream(digest, range, who, reserved);
    } catch (err) {
      this.budget.release(reserved, who.client);
      throw err;
    }
  }

  private async openStream(digest: string, range: { start: number; end: number } | undefined, who: BlobRequester, reserved: number): Promise<BlobBody> {
    const readAhead = reserved ? undefined : SMALL_READ_AHEAD;
    if (range && this.verification === 'off') return this.stream(digest, await this.mustOpen(digest, who, range, readAhead), range, false, who, reserved);
    if (range && this.trustVersions) {
      // Served from storage only for a version checked in full (a range cannot be hashed).
      let checkedNow: string | undefined;
      for (let attempt = 0; ; attempt++) {
        const opened = await this.mustOpen(digest, who, range, readAhead);
        const version = opened.info.version;
        if (this.isVerified(digest, version) || (checkedNow !== undefined && checkedNow === version)) return this.stream(digest, opened, range, false, who, reserved);
        opened.stream.destroy();
        // Replaced again and again while it was being checked: give up for now.
        if (attempt >= 2) throw new IntegrityError(`blob ${digest}`);
        checkedNow = await this.verify(digest, false, who);
      }
    }
    // The whole blob (a range on a filesystem blob too large to read whole is answered whole).
    const opened = await this.mustOpen(digest, who, undefined, readAhead);
    return this.stream(digest, opened, undefined, !this.isVerified(digest, opened.info.version), who, reserved);
  }

  /**
   * A manifest by digest, checked against its digest. Its media type comes from storage, or
   * from the manifest itself when storage lost it (e.g. a copied store).
   */
  async manifest(digest: string, who: BlobRequester = ANYONE): Promise<{ bytes: Buffer; mediaType: string }> {
    try {
      const info = await this.infoOrRepair(digest, who);
      if (!info || info.size > MANIFEST_MAX) throw new ManifestNotFoundError(digest);
      if (info.contentType && !MANIFEST_MEDIA_TYPES.has(info.contentType) && info.contentType !== 'application/octet-stream') throw new ManifestNotFoundError(digest);
      const borrowed = (await this.borrow(digest, who, true))!;
      borrowed.done(); // the bytes are copied into the response at once
      if (this.hot) this.hotLookup(borrowed.fromHot);
      const { bytes, contentType } = borrowed.loaded;
      const mediaType = contentType && MANIFEST_MEDIA_TYPES.has(contentType) ? contentType : sniffManifestType(bytes);
      if (!mediaType) throw new ManifestNotFoundError(digest);
      return { bytes, mediaType };
    } catch (err) {
      // A manifest's own words for a blob that is gone.
      if (err instanceof NixeryError && err.kind === 'BLOB_UNKNOWN') throw new ManifestNotFoundError(err.message.replace(/^blob unknown to registry: /, ''));
      throw err;
    }
  }

  /** Forgets what is known about a blob (it was removed or replaced). */
  forget(digest: string): void {
    this.infos.delete(digest);
    this.hot?.delete(digest);
    for (const method of ['GET', 'HEAD']) this.signedUrls.delete(`${method} ${blobKey(digest)}`);
  }

  /** A stored blob as a body, checked while read unless `check` is false; `reserved`: its buffer. */
  private stream(digest: string, opened: OpenedObject, range: { start: number; end: number } | undefined, check: boolean, who: BlobRequester, reserved: number): BlobBody {
    return storageBody(opened, range, {
      check: check && this.verification !== 'off' ? this.checks.start(digest) : undefined,
      pool: reserved ? this.pools.large : this.pools.small,
      window: reserved ? STREAM_WINDOW : SMALL_WINDOW,
      damaged: (why) => this.quarantine(digest, why),
      damagedMessage: `blob ${digest} failed its integrity check while it was sent`,
      passed: () => this.markVerified(digest, opened.info.version),
      release: () => this.budget.release(reserved, who.client),
    });
  }

  private async mustOpen(digest: string, who: BlobRequester, range?: { start: number; end: number }, readAhead?: number): Promise<OpenedObject> {
    const opened = await this.openOrRepair(digest, who, range, readAhead);
    if (!opened) throw new BlobNotFoundError(digest);
    return opened;
  }

  /** Size, type and version of a stored blob; a missing blob is rebuilt when its image is known. */
  private async infoOrRepair(digest: string, who: BlobRequester): Promise<BlobInfo | null> {
    const info = await this.statInfo(digest);
    if (info || !(await this.repair(digest, who))) return info;
    return this.statInfo(digest);
  }

  private async statInfo(digest: string): Promise<BlobInfo | null> {
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

  private async openOrRepair(digest: string, who: BlobRequester, range?: { start: number; end: number }, readAhead?: number): Promise<OpenedObject | null> {
    const options = readAhead ? { readAhead } : undefined;
    const opened = await this.options.storage.open(blobKey(digest), range, options);
    if (opened) return opened;
    this.forget(digest);
    if (!(await this.repair(digest, who))) return null;
    return this.options.storage.open(blobKey(digest), range, options);
  }

  /**
   * Rebuilds the image a missing blob belongs to: a build, so the requester must be allowed
   * to start one (a client that may not gets a 404 saying so; the build rate applies).
   */
  private async repair(digest: string, who: BlobRequester): Promise<boolean> {
    const repair = this.options.repair;
    if (!repair) return false;
    this.stats.repairs++;
    this.options.observer?.repairStarted();
    this.forget(digest);
    try {
      return await repair(digest, who);
    } catch (err) {
      if (err instanceof NixeryError && err.kind === 'UNAUTHORIZED') {
        throw new BlobNotFoundError(`${digest} is missing from storage; a pull of its image by an authenticated client rebuilds it`);
      }
      throw err;
    }
  }

  /**
   * A whole (small) blob, checked against its digest: from the hot cache, or read once for all
   * concurrent callers. Bytes that do not go to the cache count against the requester's share
   * of the buffer until the last caller is done with them; null when there is no room (unless
   * `always`: then it is read anyway, e.g. a manifest of a few KB).
   */
  private async borrow(digest: string, who: BlobRequester, always: boolean): Promise<{ loaded: Loaded; done: () => void; fromHot: boolean } | null> {
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
          this.budget.release(entry.reserved, entry.owner);
        };
        return { loaded: entry.loaded, done, fromHot: false };
      }
      if (loaded && !always) return null;
      const done = await this.loads.run(`${digest} ${always}`, () => this.load(digest, who, always)).promise;
      if (!done) return null;
    }
  }

  /** Reads, checks and keeps a whole blob (hot cache or shared read); false when there is no buffer for it. */
  private async load(digest: string, who: BlobRequester, always: boolean): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      const opened = await this.mustOpen(digest, who);
      if (opened.info.size > WHOLE_READ_MAX) {
        opened.stream.destroy();
        if (always) throw new BlobNotFoundError(digest);
        return false;
      }
      const cacheable = this.hot !== undefined && opened.info.size <= this.hotMaxObject;
      const reserved = cacheable || opened.info.size === 0 ? 0 : this.budget.tryAcquire(opened.info.size, who.client);
      if (!cacheable && !reserved && !always && opened.info.size > 0) {
        opened.stream.destroy();
        return false;
      }
      let bytes: Buffer;
      try {
        bytes = await readAll(opened.stream);
      } catch (err) {
        this.budget.release(reserved, who.client);
        throw err;
      }
      if (this.verification === 'off' || (bytes.length === opened.info.size && this.checks.matches(digest, bytes))) {
        this.markVerified(digest, opened.info.version);
        const loaded: Loaded = { bytes, contentType: opened.info.contentType };
        if (cacheable) this.hot!.set(digest, loaded);
        // Kept for the callers waiting on this load; the last one to finish releases it.
        else this.shared.set(digest, { loaded, users: 0, reserved, owner: who.client });
        return true;
      }
      this.budget.release(reserved, who.client);
      await this.quarantine(digest, 'its content does not match its digest');
      // Rebuilt from the records that name it; otherwise the client learns it is gone for good.
      if (attempt > 0 || !(await this.repair(digest, who))) throw damagedForGood(digest);
    }
  }

  /**
   * Checks a stored blob in full (once per immutable version) without keeping its bytes. With
   * `trustRecentStat`, a version seen by a recent stat (redirects: no read at all) counts.
   */
  private async verify(digest: string, trustRecentStat: boolean, who: BlobRequester): Promise<string | undefined> {
    if (this.verification === 'off') return undefined;
    if (trustRecentStat) {
      const info = await this.statInfo(digest);
      if (info && this.isVerified(digest, info.version)) return info.version;
    }
    return this.verifications.run(digest, async () => {
      const opened = await this.mustOpen(digest, who);
      if (this.isVerified(digest, opened.info.version)) {
        opened.stream.destroy();
        return opened.info.version;
      }
      if (await matchesDigest(opened, digest)) {
        this.markVerified(digest, opened.info.version);
        return opened.info.version;
      }
      await this.quarantine(digest, 'its content does not match its digest');
      if (!(await this.repair(digest, who))) throw damagedForGood(digest);
      return undefined;
    }).promise;
  }

  private isVerified(digest: string, version: string | undefined): boolean {
    if (this.verification === 'off') return true;
    if (this.verification === 'always' || !this.trustVersions) return false;
    return version !== undefined && this.verified.get(`${digest} ${version}`) === true;
  }

  private markVerified(digest: string, version: string | undefined): void {
    if (this.verification === 'once' && this.trustVersions && version !== undefined) this.verified.set(`${digest} ${version}`, true);
  }

  private async quarantine(digest: string, why: string): Promise<void> {
    this.forget(digest);
    this.checks.forget(digest);
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

/** Damaged, removed, and no record names it to rebuild it from: gone, as the client is told. */
function damagedForGood(digest: string): BlobNotFoundError {
  return new BlobNotFoundError(`${digest} failed its integrity check and was removed; no image record names it, so it is not rebuilt (pull its image by tag)`);
}

function fromMemory(loaded: Loaded, range: { start: number; end: number } | undefined, source: 'memory' | 'storage', release: () => void): BlobBody {
  const { bytes } = loaded;
  return {
    size: bytes.length,
    contentType: loaded.contentType,
    range,
    source,
    bytes: range ? bytes.subarray(range.start, range.end + 1) : bytes,
    window: 0,
    release,
  };
}

function toInfo(stat: ObjectInfo): BlobInfo {
  const info: BlobInfo = { size: stat.size };
  if (stat.contentType) info.contentType = stat.contentType;
  if (stat.version) info.version = stat.version;
  return info;
}
