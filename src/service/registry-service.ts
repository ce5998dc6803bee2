// What the registry needs beyond the builder: a hot-path memo of images by tag, a bound on
// concurrent Nix builds with a bounded queue, and the recent build errors and images for the
// explorer.
// A tag stands for an image on each configured platform (NIXERY_PLATFORMS), built concurrently.

import { AMD64, parseImageName, pullName, sortedUnique, type Architecture, type ImageRequest } from '../image/name.js';
import { forPlatforms, hostPlatform } from '../image/platform.js';
import type { ImageIndex } from '../manifest/image-index.js';
import { LruCache } from '../util/lru.js';
import type { ImageBuilder, BuiltImage, BuildProgress } from '../builder/builder.js';
import type { Pin } from '../builder/pins.js';
import { ImageNotBuiltError, isClientError, NixeryError, TooManyRequestsError } from '../errors.js';
import { RecentImages } from './recent-images.js';
import type { Admission } from './admission.js';
import { Semaphore, QueueFullError } from '../util/semaphore.js';
import { SingleFlight } from '../util/singleflight.js';
import type { Popularity } from '../layers/types.js';
import { attestationReferrers, Referrers } from './referrers.js';
import { ARTIFACT_TYPES, artifactDigests } from '../builder/attest.js';
import { licenseSummary } from '../sbom/summary.js';
import type { AttestationDetails } from './explorer-types.js';
import type { Blob } from '../manifest/manifest.js';
import { referrersIndex } from '../manifest/referrers.js';

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

/** What an image name and tag stand for: the image on each platform. */
export interface TaggedImage {
  /** One image per configured platform, in configured order; one when the name picks its architecture. */
  images: BuiltImage[];
  /** True when every image came from a cache without building. */
  fromCache: boolean;
}

interface MemoEntry {
  /** The source pin the image was found or built under (pins are new objects only when they move). */
  pin: Pin | undefined;
  popularity: Popularity;
  tagged: TaggedImage;
  /** The same, as served from the memo (made once: this is the hot path). */
  cached: TaggedImage;
  /** When storage last confirmed the image is whole. */
  checkedAt: number;
}

/** How long a remembered image is served before storage is asked again whether it is whole. */
const REVALIDATE_MS = 10_000;
/** Repository names whose digests are remembered (the oldest is forgotten first). */
const SCOPES = 10_000;
/** A name whose images were looked for in storage is not looked for again for this long. */
const SCOPE_LOOKUP_MS = 5_000;
/** Most tags looked at when looking for a name's images in storage. */
const SCOPE_LOOKUP_TAGS = 16;

/**
 * The name a request's scope is kept under: the same for every platform of a tag (an image on
 * linux/arm64 built for `shell/hello` is shell/hello's), and for every spelling of the name.
 */
function scopeKey(image: ImageRequest): string {
  return pullName(image.archRequested || image.arch === AMD64 ? image : { ...image, arch: AMD64 });
}

/** What a repository name resolved to: every digest of its images (and their indexes). */
interface Scope {
  /** The name as clients pull it (the catalogue's entry). */
  pullName: string;
  digests: Set<string>;
  /** When storage was last searched for the name's images (0: never). */
  lookedAt: number;
}

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
  /** Images built or found lately, for the explorer. */
  readonly recent = new RecentImages(50);
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
  /** The index of each tagged image's platforms, made on first use (keyed by the images array). */
  private readonly indexes = new WeakMap<readonly BuiltImage[], Promise<ImageIndex>>();
  /**
   * Repository scoping: by canonical name (scopeKey: the package set, and the architecture when the name picks it), the digests of the images
   * that name resolved to here. A digest is served under a name only when it is in its scope.
   */
  private readonly scopes = new Map<string, Scope>();
  /** Path name → canonical name (validated), so a blob request parses its name once. */
  private readonly canonicalNames = new LruCache<string, string>(SCOPES);
  private readonly scopeLookups = new SingleFlight<string, Scope | undefined>();
  /** Names whose packages the source was found to have (tags/list of a name not built here). */
  private readonly knownNames = new LruCache<string, true>(SCOPES);
  private readonly knownNameChecks = new SingleFlight<string, void>();
  /** License summaries of CycloneDX documents (by digest) the explorer asked for. */
  private readonly licenseSummaries = new LruCache<string, ReturnType<typeof licenseSummary>>(256);
  /** Where referrers indexes come from (the builder's SBOMs and provenance; `add` more). */
  readonly referrerSources: Referrers;

  constructor(
    readonly builder: ImageBuilder,
    buildConcurrency: number,
    buildQueue: number,
    memoSize = 1024,
    /** The platforms a tag is built for (NIXERY_PLATFORMS), the default first. */
    readonly platforms: readonly Architecture[] = [hostPlatform()],
  ) {
    this.slots = new Semaphore(buildConcurrency, buildQueue);
    this.byTag = new LruCache(memoSize);
    this.referrerSources = new Referrers([attestationReferrers(builder)]);
  }

  /** The image's SBOMs and provenance for the explorer, with its license summary (null: none). */
  async attestationDetails(built: BuiltImage): Promise<AttestationDetails | null> {
    const artifacts = built.artifacts;
    if (!artifacts?.length) return null;
    const name = pullName(built.image);
    const cdx = artifacts.find((a) => a.artifactType === ARTIFACT_TYPES.cyclonedx);
    let summary = cdx ? this.licenseSummaries.get(cdx.document.digest) : undefined;
    if (cdx && !summary) {
      const bytes = await this.builder.readDocument(cdx.document.digest);
      if (bytes) this.licenseSummaries.set(cdx.document.digest, (summary = licenseSummary(bytes)));
    }
    return {
      referrers: `/v2/${name}/referrers/${built.manifests.oci.digest}`,
      documents: artifacts.map((a) => ({ artifactType: a.artifactType, manifest: a.manifest.digest, document: a.document.digest, size: a.document.size, link: `/v2/${name}/blobs/${a.document.digest}` })),
      ...(summary ?? { licenses: [], withoutLicense: 0 }),
    };
  }

  /**
   * The referrers index of the manifest `digest` under `name` (validated by the caller), of
   * `artifactType` only when one is given. Only a manifest of an image `name` resolves to has
   * referrers under `name` (as only those are signed as `name`): another repository's gets an
   * empty index, as a manifest that has none does, so nothing leaks across repositories.
   */
  async referrers(name: string, digest: string, admission?: Admission, artifactType?: string): Promise<Blob> {
    if (!(await this.contains(name, digest))) return referrersIndex([]);
    return this.referrerSources.index(name, digest, artifactType, admission);
  }

  /** The images of a repository name and tag (validated here), through the hot-path memo. */
  async imageByTag(name: string, tag: string, admission?: Admission): Promise<TaggedImage> {
    const key = `${name}:${tag}`;
    const memo = this.byTag.get(key);
    if (memo && memo.pin !== undefined && memo.pin === this.builder.pins.peek(tag) && memo.popularity === this.builder.popularity()) {
      this.stats.cacheHits++;
      this.stats.memoHits++;
      if (Date.now() - memo.checkedAt > REVALIDATE_MS) this.revalidate(key, memo);
      return memo.cached;
    }
    const requests = forPlatforms(parseImageName(name, tag), this.platforms);
    const popularity = this.builder.popularity();
    const tagged = await this.imagesFor(requests, admission);
    this.byTag.set(key, { pin: tagged.images[0]!.pin, popularity, tagged, cached: { ...tagged, fromCache: true }, checkedAt: Date.now() });
    return tagged;
  }

  /**
   * The index over a tagged image's platforms (both forms), made and stored on first use: for
   * clients that accept an index, and for those that accept nothing else.
   */
  index(tagged: TaggedImage): Promise<ImageIndex> {
    let index = this.indexes.get(tagged.images);
    if (!index) {
      index = this.builder.index(tagged.images);
      this.indexes.set(tagged.images, index);
      index.then(
        (i) => {
          const scope = this.scopeOf(tagged.images[0]!);
          scope.digests.add(i.oci.digest);
          scope.digests.add(i.docker.digest);
        },
        () => this.indexes.delete(tagged.images),
      );
    }
    return index;
  }

  /**
   * Whether `digest` (a manifest, index, config or layer) belongs to an image `name` resolves
   * to. Images built or served here are remembered; otherwise (a restart, another replica) the
   * name's images are looked for in storage under the tags in use, without building.
   */
  async contains(name: string, digest: string): Promise<boolean> {
    let canonical = this.canonicalNames.get(name);
    if (canonical === undefined) {
      canonical = scopeKey(parseImageName(name));
      this.canonicalNames.set(name, canonical);
    }
    const scope = this.scopes.get(canonical);
    if (scope?.digests.has(digest)) return true;
    if (scope && Date.now() - scope.lookedAt < SCOPE_LOOKUP_MS) return false;
    const found = await this.scopeLookups.run(canonical, () => this.lookUpScope(name)).promise;
    return found?.digests.has(digest) ?? false;
  }

  /**
   * Throws PackagesNotFoundError (404 NAME_UNKNOWN) unless the source has every package of
   * `name` (validated here): a name built here is known; another is evaluated by Nix, not built,
   * in a build slot, and remembered when it is known. An evaluation is work a build would do:
   * it goes through the client's build admission (the build rate applies).
   */
  async checkName(name: string, admission?: Pick<Admission, 'beforeBuild'>): Promise<void> {
    const image = parseImageName(name);
    const key = scopeKey(image);
    if ((this.scopes.get(key)?.digests.size ?? 0) > 0 || this.knownNames.get(key)) return;
    admission?.beforeBuild();
    await this.knownNameChecks.run(key, () => this.limited(() => this.builder.checkPackages(image))).promise;
    this.knownNames.set(key, true);
  }

  /**
   * The repositories whose images storage holds (by any replica, before a restart) or this
   * process served, as clients pull them (sorted).
   */
  async repositories(): Promise<string[]> {
    const names: string[] = [];
    for (const s of this.scopes.values()) if (s.digests.size > 0) names.push(s.pullName);
    for (const image of await this.builder.storedImages()) names.push(pullName(image));
    return sortedUnique(names);
  }

  private async lookUpScope(name: string): Promise<Scope | undefined> {
    const all = await this.tags();
    const tags = all.filter((t) => t === 'latest' || this.builder.pins.peek(t) !== undefined).slice(0, SCOPE_LOOKUP_TAGS);
    let scope: Scope | undefined;
    for (const tag of tags) {
      const requests = forPlatforms(parseImageName(name, tag), this.platforms);
      const found = await Promise.all(requests.map((r) => this.builder.find(r).catch(() => null)));
      if (!found.every((b): b is BuiltImage => b !== null)) continue;
      this.remember(found);
      if (found.length > 1) await this.index({ images: found, fromCache: true }).catch(() => {});
      scope = this.scopeOf(found[0]!);
    }
    const canonical = scopeKey(parseImageName(name));
    // Images built with a request's config (pulled by digest only) are found by their records.
    for (const image of await this.builder.storedImages()) {
      if (!image.config || scopeKey(image) !== canonical) continue;
      const found = await this.builder.find(image).catch(() => null);
      if (!found) continue;
      this.remember([found]);
      scope = this.scopeOf(found);
    }
    scope ??= this.scopes.get(canonical);
    if (scope) scope.lookedAt = Date.now();
    else {
      if (this.scopes.size >= SCOPES) this.scopes.delete(this.scopes.keys().next().value!);
      this.scopes.set(canonical, (scope = { pullName: canonical, digests: new Set(), lookedAt: Date.now() }));
    }
    return scope;
  }

  /** The scope of an image's name, made when it is first needed. */
  private scopeOf(image: BuiltImage): Scope {
    const key = scopeKey(image.image);
    let scope = this.scopes.get(key);
    if (!scope) {
      if (this.scopes.size >= SCOPES) this.scopes.delete(this.scopes.keys().next().value!);
      scope = { pullName: pullName(image.image), digests: new Set(), lookedAt: 0 };
      this.scopes.set(key, scope);
    }
    return scope;
  }

  /** Adds the images' digests to their name's scope. */
  private remember(images: readonly BuiltImage[]): void {
    const scope = this.scopeOf(images[0]!);
    for (const built of images) {
      const { manifests, layers } = built;
      scope.digests.add(manifests.oci.digest);
      scope.digests.add(manifests.docker.digest);
      scope.digests.add(manifests.config.digest);
      for (const l of layers) scope.digests.add(l.digest);
      for (const d of artifactDigests(built.artifacts)) scope.digests.add(d);
    }
  }

  /**
   * An image by name and tag (validated here) if it is built under the tag's current pin;
   * ImageNotBuiltError otherwise. Never builds: looking at an image costs no Nix.
   */
  async findImage(name: string, tag: string): Promise<BuiltImage> {
    const memo = this.byTag.get(`${name}:${tag}`);
    // The first configured platform's image: the one a client that takes no index gets.
    if (memo && memo.pin !== undefined && memo.pin === this.builder.pins.peek(tag) && memo.popularity === this.builder.popularity()) return memo.tagged.images[0]!;
    const image = forPlatforms(parseImageName(name, tag), this.platforms)[0]!;
    const found = await this.builder.find(image);
    if (!found) throw new ImageNotBuiltError(`${pullName(image)}:${image.tag}`);
    return found;
  }

  /** The tags every image name can be pulled with (sorted). */
  tags(): Promise<string[]> {
    return this.builder.pins.tags();
  }

  /**
   * Rebuilds the image a missing blob belongs to (through the build slots); true when it exists
   * again. A repair that runs Nix is a build: it goes through the requester's admission (who may
   * build, the build rate) like a pull by tag.
   */
  repairBlob(digest: string, admission?: Pick<Admission, 'beforeBuild'>): Promise<boolean> {
    // Once per repair, however many platforms it rebuilds.
    const admit = admitOnce(admission);
    return this.builder.repairBlob(digest, (fn) => {
      admit();
      return this.limited(fn);
    });
  }

  /**
   * Checks, off the request path, that a remembered image is still whole in storage (gc may
   * have expired its record or removed its blobs); if not, the next request builds it again.
   */
  private revalidate(key: string, memo: MemoEntry): void {
    memo.checkedAt = Date.now();
    void this.revalidations
      .run(key, async () => {
        const { images } = memo.tagged;
        const whole = await Promise.all(images.map((built) => this.builder.stillWhole(built)));
        const index = this.indexes.get(images);
        const indexWhole = index ? await index.then((i) => this.builder.stillWholeIndex(images, i), () => false) : true;
        if (whole.every(Boolean) && indexWhole) return;
        this.indexes.delete(images);
        if (this.byTag.get(key) === memo) this.byTag.delete(key);
      })
      // Storage failing: keep serving what we know; the next check is due in REVALIDATE_MS.
      .promise.catch(() => {});
  }

  /**
   * Builds or finds the images of one request, one per platform, concurrently. A request that
   * starts builds goes through admission once, however many platforms it builds.
   */
  async imagesFor(requests: ImageRequest[], admission?: Admission, onProgress?: (p: BuildProgress) => void): Promise<TaggedImage> {
    if (requests.length === 1) {
      const built = await this.image(requests[0]!, admission, onProgress);
      return { images: [built], fromCache: built.fromCache };
    }
    const admit = admitOnce(admission);
    const first = requests[0]!;
    const images = await this.recordingFailures(`${pullName(first)}:${first.tag}`, () =>
      this.builder.buildAll(requests, onProgress, (fn, progress) => {
        admit();
        return this.slot(fn, progress);
      }),
    );
    const fromCache = images.every((b) => b.fromCache);
    if (fromCache) this.stats.cacheHits++;
    this.remember(images);
    this.recent.add(images[0]!);
    return { images, fromCache };
  }

  /**
   * Builds or finds an image; Nix builds wait for a slot, and a full queue answers 429.
   * `onProgress` hears the build's progress (also when this call joins a build already running).
   */
  async image(image: ImageRequest, admission?: Admission, onProgress?: (p: BuildProgress) => void): Promise<BuiltImage> {
    // Only a build that really starts goes through admission: cached images never do.
    const built = await this.recordingFailures(`${pullName(image)}:${image.tag}`, () =>
      this.builder.build(image, onProgress, (fn, progress) => {
        admission?.beforeBuild();
        return this.slot(fn, progress);
      }),
    );
    if (built.fromCache) this.stats.cacheHits++;
    this.remember([built]);
    this.recent.add(built);
    return built;
  }

  /** A build slot, saying so to the build's listeners while it waits for one. */
  private slot<T>(fn: () => Promise<T>, progress: (p: BuildProgress) => void): Promise<T> {
    if (this.slots.active >= this.slots.limit && this.slots.queued < this.slots.queueLimit) {
      progress({ phase: 'queued', message: `waiting for a build slot (${this.slots.active} building, ${this.slots.queued} waiting)` });
    }
    return this.limited(fn);
  }

  /** Runs a build, counting and keeping (for the index page) the failures that are not the client's. */
  private async recordingFailures<T>(image: string, build: () => Promise<T>): Promise<T> {
    try {
      return await build();
    } catch (err) {
      if (err instanceof NixeryError && err.kind === 'IMAGE_TOO_LARGE') this.stats.tooLarge++;
      if (!isClientError(err)) {
        this.stats.buildFailures++;
        const stderr = (err as { stderr?: string }).stderr;
        this.errors.add(image, stderr?.trim() || (err instanceof Error ? err.message : String(err)));
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

/** Admission's `beforeBuild` run at most once (a refusal is thrown again on every later call). */
function admitOnce(admission: Pick<Admission, 'beforeBuild'> | undefined): () => void {
  let admitted: { error?: unknown } | undefined;
  return () => {
    if (!admitted) {
      try {
        admission?.beforeBuild();
        admitted = {};
      } catch (err) {
        admitted = { error: err };
      }
    }
    if (admitted.error !== undefined) throw admitted.error;
  };
}
