// What the registry needs beyond the builder: a hot-path memo of images by tag, a bound on
// concurrent Nix builds with a bounded queue, and the recent build errors for the index page.

import { parseImageName, type ImageRequest } from '../image/name.js';
import { LruCache } from '../util/lru.js';
import type { ImageBuilder, BuiltImage } from '../builder/builder.js';
import type { Pin } from '../builder/pins.js';
import { isClientError, NixeryError, TooManyRequestsError } from '../errors.js';
import type { Admission } from './access.js';
import { Semaphore, QueueFullError } from '../util/semaphore.js';
import { SingleFlight } from '../util/singleflight.js';
import type { Popularity } from '../layers/types.js';

export interface RecentError {
  image: string;
  message: string;
  at: string;
}

/** Keeps the last `capacity` build errors, newest first, one per image. */
export class ErrorRing {
  private readonly items: RecentError[] = [];
  constructor(readonly capacity = 15) {}
  add(image: string, message: string): void {
    const existing = this.items.findIndex((e) => e.image === image);
    if (existing >= 0) this.items.splice(existing, 1);
    this.items.unshift({ image, message, at: new Date().toISOString() });
    this.items.length = Math.min(this.items.length, this.capacity);
  }
  list(): RecentError[] {
    return [...this.items];
  }
}

interface MemoEntry {
  /** The source pin the image was found or built under (pins are new objects only when they move). */
  pin: Pin | undefined;
  popularity: Popularity;
  built: BuiltImage;
  /** The same, as served from the memo (made once: this is the hot path). */
  cached: BuiltImage;
  /** When storage last confirmed the image is whole. */
  checkedAt: number;
}

/** How long a remembered image is served before storage is asked again whether it is whole. */
const REVALIDATE_MS = 10_000;

export interface ServiceStats {
  /** Image requests answered from a cache without building. */
  cacheHits: number;
  /** Of those, by the hot-path memo of images by tag (the others by the builder's manifest cache). */
  memoHits: number;
  buildFailures: number;
  rejected: number;
  /** Builds refused because the closure was over NIXERY_MAX_IMAGE_SIZE. */
  tooLarge: number;
}

export class RegistryService {
  readonly errors = new ErrorRing(15);
  readonly stats: ServiceStats = { cacheHits: 0, memoHits: 0, buildFailures: 0, rejected: 0, tooLarge: 0 };
  private readonly slots: Semaphore;
  /**
   * The hot path: `name:tag` → the image it gave under a pin. While the tag's pin is the same
   * object (the pinner makes a new one only when the revision moves), the answer is the same, so
   * parsing, cache keys and the manifest cache are skipped. Only names that parsed once are
   * ever in here.
   */
  private readonly byTag: LruCache<string, MemoEntry>;
  private readonly revalidations = new SingleFlight<string, void>();

  constructor(
    readonly builder: ImageBuilder,
    buildConcurrency: number,
    buildQueue: number,
    memoSize = 1024,
  ) {
    this.slots = new Semaphore(buildConcurrency, buildQueue);
    this.byTag = new LruCache(memoSize);
  }

  /** An image by repository name and tag (validated here), through the hot-path memo. */
  async imageByTag(name: string, tag: string, admission?: Admission): Promise<BuiltImage> {
    const key = `${name}:${tag}`;
    const memo = this.byTag.get(key);
    if (memo && memo.pin !== undefined && memo.pin === this.builder.pins.peek(tag) && memo.popularity === this.builder.popularity()) {
      this.stats.cacheHits++;
      this.stats.memoHits++;
      if (Date.now() - memo.checkedAt > REVALIDATE_MS) this.revalidate(key, memo);
      return memo.cached;
    }
    const image = parseImageName(name, tag);
    const popularity = this.builder.popularity();
    const built = await this.image(image, admission);
    this.byTag.set(key, { pin: built.pin, popularity, built, cached: { ...built, fromCache: true }, checkedAt: Date.now() });
    return built;
  }

  /** The tags every image name can be pulled with (sorted). */
  tags(): Promise<string[]> {
    return this.builder.pins.tags();
  }

  /** Rebuilds the image a missing blob belongs to (through the build slots); true when it exists again. */
  repairBlob(digest: string): Promise<boolean> {
    return this.builder.repairBlob(digest, (fn) => this.limited(fn));
  }

  /**
   * Checks, off the request path, that a remembered image is still whole in storage (gc may
   * have expired its record or removed its blobs); if not, the next request builds it again.
   */
  private revalidate(key: string, memo: MemoEntry): void {
    memo.checkedAt = Date.now();
    void this.revalidations
      .run(key, async () => {
        if (!(await this.builder.stillWhole(memo.built)) && this.byTag.get(key) === memo) this.byTag.delete(key);
      })
      // Storage failing: keep serving what we know; the next check is due in REVALIDATE_MS.
      .promise.catch(() => {});
  }

  /** Builds or finds an image; Nix builds wait for a slot, and a full queue answers 429. */
  async image(image: ImageRequest, admission?: Admission): Promise<BuiltImage> {
    try {
      // Only a build that really starts goes through admission: cached images never do.
      const built = await this.builder.build(image, undefined, (fn) => {
        admission?.beforeBuild();
        return this.limited(fn);
      });
      if (built.fromCache) this.stats.cacheHits++;
      return built;
    } catch (err) {
      if (err instanceof NixeryError && err.kind === 'IMAGE_TOO_LARGE') this.stats.tooLarge++;
      if (!isClientError(err)) {
        this.stats.buildFailures++;
        const stderr = (err as { stderr?: string }).stderr;
        this.errors.add(`${image.name}:${image.tag}`, stderr?.trim() || (err instanceof Error ? err.message : String(err)));
      }
      throw err;
    }
  }

  private async limited<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await this.slots.use(fn);
    } catch (err) {
      if (err instanceof QueueFullError) {
        this.stats.rejected++;
        throw new TooManyRequestsError(`build queue is full (${this.slots.limit} building, ${this.slots.queued} waiting); retry later`, 10);
      }
      throw err;
    }
  }

  get building(): number {
    return this.slots.active;
  }
  get queued(): number {
    return this.slots.queued;
  }
}
