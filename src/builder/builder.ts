// The build pipeline: image request → pinned source → Nix (resolve, realise, closure) →
// layer grouping → archives (from the build cache or packed once) → config and manifests →
// storage. The registry and the `build` command both call `ImageBuilder.build`, or `buildAll`
// for the platforms of a multi-platform image (built concurrently, then `index`).

import type { ImageRequest } from '../image/name.js';
import type { Storage } from '../storage/storage.js';
import type { LayeringStrategy, Popularity } from '../layers/types.js';
import type { PinnedSource } from '../nix/source.js';
import type { LayerCompression } from '../archive/compression.js';
import type { RealiseOptions } from '../nix/realise.js';
import type { NixRunObserver } from '../nix/observer.js';
import { NIX, type NixStage } from './nix-stage.js';
import { ImagePacker, recordLayers } from './pack-image.js';
import { imageCacheKey, indexCacheKey } from './cache-key.js';
import { buildIndex, type ImageIndex } from '../manifest/image-index.js';
import { LayerStore } from './layer-store.js';
import { ManifestCache, recordDigests, type ManifestRecord } from './manifest-cache.js';
import { SingleFlight } from '../util/singleflight.js';
import { LruCache } from '../util/lru.js';
import { blobKey, manifestKey } from './layout.js';
import type { Quarantine } from './integrity.js';
import { popularityDigest } from '../layers/popularity.js';
import { StorageObjectNotFoundError } from '../storage/errors.js';
import { NixeryError, PlatformBuildError } from '../errors.js';
import type { Pin, Pinner } from './pins.js';
import { ProgressChannel } from './progress.js';
import { timePhases, type BuildObserver } from './observer.js';
import { RecordOwners } from './record-owners.js';
import { sha256Digest } from '../manifest/manifest.js';
import type { ArtifactRecord } from './attest.js';
import { BuildLeases, type BuildLeaseSettings } from './build-lease.js';

import type { BuildLimit, BuildPolicy, BuildProgress, BuiltImage, Logger, NixTimeouts } from './types.js';

// Declared in a leaf (types.ts); named here too for the modules that build with the builder.
export type { BuildLimit, BuildPhase, BuildProgress, BuiltImage, Logger, NixTimeouts } from './types.js';

export interface BuilderOptions {
  storage: Storage;
  /** Where damaged records and blobs go (removed, logged, counted). */
  quarantine: Quarantine;
  /** Which revision of the package source each tag names (pins.ts). */
  pins: Pinner;
  timeouts: NixTimeouts;
  strategy: LayeringStrategy;
  budget: number;
  popularity: () => Popularity;
  log: Logger;
  /** Manifests kept in memory (the storage tier holds all of them). */
  manifestCacheSize?: number;
  /** Largest closure (total NAR size, bytes) an image may have; checked before anything is packed. */
  maxImageSize?: number;
  /** Package and closure policy, decided on what names resolved to and on the closure, before packing. */
  policy?: BuildPolicy;
  /** Layers packed at once within one build. */
  packConcurrency?: number;
  /** Told how long builds, their phases and packing take (the registry's metrics). */
  observer?: BuildObserver;
  /** Told of every Nix process the builds run (the registry's metrics). */
  nixObserver?: NixRunObserver;
  /** Where Nix's steps run (default: the real Nix; tests of the registry give a stand-in). */
  nix?: NixStage;
  /** One build per image across replicas (build-lease.ts); default a 30 s lease. */
  buildLease?: BuildLeaseSettings;
  /** Make SBOMs and provenance with every image (default true; attest.ts). */
  attestations?: boolean;
  /** What layers are compressed with (NIXERY_LAYER_COMPRESSION, NIXERY_GZIP; config.ts). */
  compression: LayerCompression;
}

/** A build whose record references blobs that vanished while it was written (gc) is redone this often. */
const BUILD_ATTEMPTS = 3;

/** How often the platforms of one image are built again when they came out of different revisions. */
const SAME_REVISION_ATTEMPTS = 3;

/** The platforms an index was made for: rebuilt when one of its blobs is lost. */
interface IndexOwner {
  images: ImageRequest[];
  /** The OCI index's digest (which `storedIndexes` is keyed by). */
  ociDigest: string;
}

export class ImageBuilder {
  readonly layers: LayerStore;
  readonly manifests: ManifestCache;
  readonly pins: Pinner;
  private readonly builds = new SingleFlight<string, BuiltImage>();
  /** The progress of each build in flight (same keys as `builds`), for everyone who joined it. */
  private readonly progress = new Map<string, ProgressChannel>();
  private readonly repairs = new SingleFlight<string, boolean>();
  /** Which image each blob of an image built or loaded here belongs to: a lost blob is rebuilt from it. */
  private readonly owners = new LruCache<string, ImageRequest>(100_000);
  /** The artifacts of each image manifest built or loaded here (by its OCI digest). */
  private readonly artifacts = new LruCache<string, ArtifactRecord[]>(10_000);
  /** Which platforms each index blob made here is over. */
  private readonly indexOwners = new LruCache<string, IndexOwner>(10_000);
  /** Indexes (by OCI index digest) whose blobs and record this process has written. */
  private readonly storedIndexes = new LruCache<string, true>(10_000);
  private readonly indexWrites = new SingleFlight<string, void>();
  /** Which image a blob belongs to, from the records in storage (when this process does not know). */
  private readonly recordOwners: RecordOwners;
  /** Builds that ran Nix (not served from the manifest cache). */
  buildsRun = 0;
  /** The build leases shared with other replicas on the storage. */
  readonly leases: BuildLeases;

  private readonly nix: NixStage;
  private readonly packer: ImagePacker;

  constructor(private readonly options: BuilderOptions) {
    this.pins = options.pins;
    this.nix = options.nix ?? NIX;
    this.recordOwners = new RecordOwners(options.storage, options.quarantine);
    this.layers = new LayerStore(options.storage, options.log, options.quarantine, options.compression, options.observer, this.nix.storeRoot);
    this.manifests = new ManifestCache(options.storage, options.manifestCacheSize ?? 1024, options.quarantine, options.observer);
    const { strategy, budget, log, maxImageSize, policy, packConcurrency, nixObserver } = options;
    const attestations = options.attestations !== false;
    this.packer = new ImagePacker({ nix: this.nix, layers: this.layers, manifests: this.manifests, strategy, budget, log, maxImageSize, policy, packConcurrency, nixObserver, attestations });
    this.leases = new BuildLeases(options.storage, options.buildLease ?? { periodMs: 30_000 }, log, options.observer);
  }

  /** The popularity data builds use now (its identity changes when it is reloaded). */
  popularity(): Popularity {
    return this.options.popularity();
  }

  /** The images the stored records name (built here, by another replica, or before a restart). */
  storedImages = (): Promise<ImageRequest[]> => this.recordOwners.images();

  /** Throws NixUnavailableError when Nix cannot run (the registry's readiness check). */
  checkNix = async (): Promise<void> => void (await this.nix.check());

  /**
   * Builds (or finds) an image. Concurrent calls for the same image share one build, and each
   * gets its progress (from the last report on, for a call that joins).
   */
  async build(image: ImageRequest, onProgress: (p: BuildProgress) => void = () => {}, limit: BuildLimit = (fn) => fn()): Promise<BuiltImage> {
    onProgress({ phase: 'source', message: 'resolving the package source' });
    // One popularity data set for the key and the layering, even if it is reloaded meanwhile.
    const popularity = this.options.popularity();
    // An image built before is served under the tag's current pin, even while the source
    // cannot be reached (the last good pin); a new build needs a pin the source confirmed.
    // A first build in this process probes the storage for leases while the tag is pinned; an
    // image found built waits for that probe, so none is left half done in storage at exit.
    const probing = this.pins.peek(image.tag) ? undefined : this.leases.startCheck();
    let pin = await this.pins.pin(image.tag);
    let cacheKey = this.pinnedKey(image, pin.pinned, popularity);
    const cached = cacheKey ? await this.manifests.get(cacheKey) : null;
    if (cached && cacheKey) {
      await probing;
      return this.fromRecord(image, cacheKey, cached, pin);
    }
    const confirmed = await this.pins.forBuild(image.tag);
    if (confirmed !== pin) {
      pin = confirmed;
      cacheKey = this.pinnedKey(image, pin.pinned, popularity);
      const record = cacheKey ? await this.manifests.get(cacheKey) : null;
      if (record && cacheKey) {
        await probing;
        return this.fromRecord(image, cacheKey, record, pin);
      }
    }
    const pinned = pin.pinned;
    const key = cacheKey;
    // Without a cache key, identical concurrent requests still share one build.
    const flightKey = key ?? `uncached:${image.arch.nixSystem}:${image.tag}:${image.packages.join(' ')}:${JSON.stringify([image.nonroot ?? false, image.config ?? null])}`;
    let channel = this.progress.get(flightKey);
    const flight = this.builds.run(flightKey, () => {
      const report = (p: BuildProgress) => channel!.emit(p);
      const run = () => limit(() => this.buildUncached(image, pinned, key, popularity, report), report);
      // Another replica may be building it: its record is served when it lands (build-lease.ts).
      return key ? this.leases.once(key, run, () => this.landed(image, key, pin), report) : run();
    });
    if (!flight.shared || !channel) {
      const own = new ProgressChannel();
      channel = own;
      this.progress.set(flightKey, own);
      void flight.promise
        .finally(() => {
          if (this.progress.get(flightKey) === own) this.progress.delete(flightKey);
        })
        .catch(() => {});
    }
    const unsubscribe = channel.subscribe(onProgress);
    try {
      return { ...(await flight.promise), pin };
    } finally {
      unsubscribe();
    }
  }

  /**
   * Builds (or finds) the images of several platforms, concurrently, each through `build` (the
   * same de-duplication, build slots and caches). All come from one source revision. If any
   * fails, this fails, naming each failing platform and its cause (a failure that is the same
   * on every platform, such as an unknown package, is thrown as it is).
   */
  async buildAll(
    images: readonly ImageRequest[],
    onProgress: (p: BuildProgress) => void = () => {},
    limit: BuildLimit = (fn) => fn(),
  ): Promise<BuiltImage[]> {
    if (images.length === 1) return [await this.build(images[0]!, onProgress, limit)];
    for (let attempt = 1; ; attempt++) {
      const settled = await Promise.allSettled(
        images.map((image) => this.build(image, (p) => onProgress({ ...p, platform: image.arch.platform, message: `${image.arch.platform}: ${p.message}` }), limit)),
      );
      const failures = settled.flatMap((s, i) => (s.status === 'rejected' ? [{ platform: images[i]!.arch.platform, cause: s.reason as unknown }] : []));
      if (failures.length > 0) {
        const first = failures[0]!.cause;
        if (failures.length === images.length && failures.every((f) => sameFailure(f.cause, first))) throw first;
        throw new PlatformBuildError(failures);
      }
      const built = settled.map((s) => (s as PromiseFulfilledResult<BuiltImage>).value);
      // The tag's pin moved while the platforms were looked up: build them all again, at the new one.
      if (new Set(built.map((b) => b.revision)).size === 1 || attempt >= SAME_REVISION_ATTEMPTS) return built;
      this.options.log.info({ image: images[0]!.name, tag: images[0]!.tag, revisions: built.map((b) => b.revision) }, 'the platforms came from different revisions: building again');
    }
  }

  /**
   * The index over the platforms' images (in their order), in both forms. Its blobs are stored,
   * and, when every platform has a cache key, its record too, the first time this process makes
   * it; after that it is only computed (it is a pure function of the manifests).
   */
  async index(built: readonly BuiltImage[]): Promise<ImageIndex> {
    const index = buildIndex(built.map((b) => ({ architecture: b.image.arch.imageArch, manifests: b.manifests })));
    const owner: IndexOwner = { images: built.map((b) => b.image), ociDigest: index.oci.digest };
    this.indexOwners.set(index.oci.digest, owner);
    this.indexOwners.set(index.docker.digest, owner);
    if (this.storedIndexes.get(index.oci.digest)) return index;
    await this.indexWrites.run(index.oci.digest, async () => {
      await Promise.all([index.oci, index.docker].map((b) => this.layers.putBlob(b)));
      const key = this.indexKey(built);
      if (key) await this.manifests.setIndex(key, this.indexRecord(built, index), owner.images);
      this.storedIndexes.set(index.oci.digest, true);
    }).promise;
    return index;
  }

  /**
   * Whether an index is still whole in storage: its blobs (its platforms' images are checked with
   * `stillWhole`). A record that gc expired while the blobs remain is written again.
   */
  async stillWholeIndex(built: readonly BuiltImage[], index: ImageIndex): Promise<boolean> {
    const infos = await Promise.all([index.oci, index.docker].map((b) => this.options.storage.stat(blobKey(b.digest))));
    if (infos.some((info) => info === null)) {
      this.storedIndexes.delete(index.oci.digest);
      return false;
    }
    const key = this.indexKey(built);
    if (key && !(await this.options.storage.stat(manifestKey(key)))) await this.manifests.setIndex(key, this.indexRecord(built, index), built.map((b) => b.image));
    return true;
  }

  /** Key of an index record: the platforms' cache keys, in order (null when one has none). */
  private indexKey(built: readonly BuiltImage[]): string | null {
    if (built.some((b) => b.cacheKey === null)) return null;
    return indexCacheKey(built.map((b) => b.cacheKey!));
  }

  private indexRecord(built: readonly BuiltImage[], index: ImageIndex) {
    return {
      revision: built[0]!.revision,
      index,
      platforms: built.map((b) => ({
        platform: b.image.arch.platform,
        record: {
          revision: b.revision,
          manifests: b.manifests,
          layers: b.layers.map(({ digest, size, diffId, paths }) => ({ digest, size, diffId, paths })),
          ...(b.artifacts ? { artifacts: b.artifacts } : {}),
        },
      })),
    };
  }

  private pinnedKey(image: ImageRequest, pinned: PinnedSource, popularity: Popularity): string | null {
    return pinned.revision ? this.cacheKey(image, pinned.revision, popularity) : null;
  }

  /**
   * The image as built under its tag's current pin, or null when it is not built (nothing is
   * built here: Nix does not run).
   */
  async find(image: ImageRequest): Promise<BuiltImage | null> {
    const popularity = this.options.popularity();
    const pin = await this.pins.pin(image.tag);
    const cacheKey = this.pinnedKey(image, pin.pinned, popularity);
    const record = cacheKey ? await this.manifests.get(cacheKey) : null;
    return record && cacheKey ? this.fromRecord(image, cacheKey, record, pin) : null;
  }

  /**
   * Throws PackagesNotFoundError when the source (under the tag's pin) lacks one of the image's
   * packages. Nix evaluates; nothing is built.
   */
  async checkPackages(image: ImageRequest): Promise<void> {
    const { pinned } = await this.pins.pin(image.tag);
    await this.nix.resolve(pinned, image.packages, image.arch.nixSystem, { timeoutMs: this.options.timeouts.evalSeconds * 1000, observer: this.options.nixObserver });
  }

  /**
   * Rebuilds the image a missing (or removed) blob belongs to, when this process knows it. True
   * when the blob is in storage afterwards. Concurrent repairs of one blob share one rebuild.
   */
  repairBlob(digest: string, limit: BuildLimit = (fn) => fn()): Promise<boolean> {
    return this.repairs.run(digest, async () => {
      let indexOwner = this.indexOwners.get(digest);
      let image = this.owners.get(digest);
      if (!indexOwner && !image) {
        // Built elsewhere (another replica) or before a restart: the records in storage say.
        const found = await this.recordOwners.find(digest);
        if (found?.index) indexOwner = { images: found.images, ociDigest: found.index };
        else image = found?.images[0];
      }
      if (indexOwner) {
        this.options.log.warn({ digest, image: indexOwner.images[0]!.name, tag: indexOwner.images[0]!.tag }, 'writing again an index whose blob is missing from storage');
        this.storedIndexes.delete(indexOwner.ociDigest);
        await this.index(await this.buildAll(indexOwner.images, undefined, limit));
        return (await this.options.storage.stat(blobKey(digest))) !== null;
      }
      if (!image) return false;
      const { pinned } = await this.pins.pin(image.tag);
      if (pinned.revision) this.manifests.forget(this.cacheKey(image, pinned.revision));
      this.options.log.warn({ digest, image: image.name, tag: image.tag }, 'rebuilding an image whose blob is missing from storage');
      await this.build(image, undefined, limit);
      return (await this.options.storage.stat(blobKey(digest))) !== null;
    }).promise;
  }

  /**
   * Whether a built image is still whole in storage: its record and every blob it references.
   * A record that gc expired while its blobs remain is written again (the image is in use).
   */
  async stillWhole(built: BuiltImage): Promise<boolean> {
    const record: ManifestRecord = { revision: built.revision, manifests: built.manifests, layers: recordLayers(built.layers), ...(built.artifacts ? { artifacts: built.artifacts } : {}) };
    if (!(await this.blobsPresent(record))) {
      if (built.cacheKey) this.manifests.forget(built.cacheKey);
      return false;
    }
    if (built.cacheKey && !(await this.options.storage.stat(manifestKey(built.cacheKey)))) await this.manifests.set(built.cacheKey, record, built.image);
    return true;
  }

  /** Cache key: everything that decides the image's bytes. */
  cacheKey(image: ImageRequest, revision: string, popularity: Popularity = this.options.popularity()): string {
    return imageCacheKey({
      system: image.arch.nixSystem,
      revision,
      packages: image.packages,
      layering: this.options.strategy.name,
      budget: this.options.budget,
      popularity: popularityDigest(popularity),
      nonroot: image.nonroot,
      config: image.config,
      compression: this.layers.compression.description,
    });
  }

  /** The image from its record in storage, written by another replica (null: none usable). */
  private async landed(image: ImageRequest, cacheKey: string, pin: Pin): Promise<BuiltImage | null> {
    const record = await this.manifests.get(cacheKey);
    return record ? this.fromRecord(image, cacheKey, record, pin) : null;
  }

  private async fromRecord(image: ImageRequest, cacheKey: string, record: ManifestRecord, pin: Pin): Promise<BuiltImage> {
    this.remember(image, record);
    return {
      image,
      cacheKey,
      revision: record.revision,
      manifests: record.manifests,
      layers: record.layers.map((l) => ({ ...l, cached: true })),
      fromCache: true,
      pin,
      ...(record.artifacts ? { artifacts: record.artifacts } : {}),
      // The record was found under a key that names the compression.
      compression: this.layers.compression.description,
    };
  }

  private async buildUncached(
    image: ImageRequest,
    pinned: PinnedSource,
    cacheKey: string | null,
    popularity: Popularity,
    reportProgress: (p: BuildProgress) => void,
  ): Promise<BuiltImage> {
    const phases = timePhases(reportProgress, this.options.observer);
    try {
      const built = await this.buildTimed(image, pinned, cacheKey, popularity, phases.onProgress);
      phases.end('succeeded');
      return built;
    } catch (err) {
      phases.end('failed');
      throw err;
    }
  }

  private async buildTimed(
    image: ImageRequest,
    pinned: PinnedSource,
    cacheKey: string | null,
    popularity: Popularity,
    onProgress: (p: BuildProgress) => void,
  ): Promise<BuiltImage> {
    const { timeouts } = this.options;
    const started = Date.now();
    this.buildsRun++;
    this.options.observer?.buildStarted();
    const nix = this.options.nixObserver;

    onProgress({ phase: 'resolve', message: `resolving ${image.packages.length} packages` });
    const resolved = await this.nix.resolve(pinned, image.packages, image.arch.nixSystem, { timeoutMs: timeouts.evalSeconds * 1000, observer: nix, compareWith: this.options.policy?.exactDenied });
    this.options.policy?.checkResolved(resolved);
    onProgress({ phase: 'realise', message: 'Nix is realising the packages' });
    const realiseOptions: RealiseOptions = { timeoutMs: timeouts.realiseSeconds * 1000, builderTimeoutSeconds: timeouts.builderSeconds, observer: nix };
    const realised = await this.nix.realise(resolved, realiseOptions);
    try {
      for (let attempt = 1; ; attempt++) {
        const built = await this.packer.pack({ image, pinned, cacheKey, resolved, popularity, started, onProgress });
        // A concurrent `nixery gc` may have removed a blob this image reuses after it was looked
        // up: then the record written last points at nothing. Checked after writing it, so a
        // removal either shows here (and the image is redone) or gc sees the record.
        if (await this.blobsPresent(built.record)) {
          this.remember(image, built.record);
          return built.image;
        }
        if (cacheKey) this.manifests.forget(cacheKey);
        if (attempt >= BUILD_ATTEMPTS) throw new StorageObjectNotFoundError(`a blob of ${image.name}:${image.tag}`);
        this.options.log.warn({ image: image.name, tag: image.tag, attempt }, 'a blob of the image vanished while it was built (garbage collection?): building again');
      }
    } finally {
      // The GC roots kept the outputs alive while their files were read into layers.
      await realised.release();
    }
  }

  private async blobsPresent(record: ManifestRecord): Promise<boolean> {
    const infos = await Promise.all(recordDigests(record).map((d) => this.options.storage.stat(blobKey(d))));
    return infos.every((info) => info !== null);
  }

  private remember(image: ImageRequest, record: ManifestRecord): void {
    for (const digest of recordDigests(record)) this.owners.set(digest, image);
    if (record.artifacts) this.artifacts.set(record.manifests.oci.digest, record.artifacts);
  }

  /** A stored artifact document (an SBOM), checked against its digest; null when missing or damaged. */
  async readDocument(digest: string): Promise<Buffer | null> {
    const bytes = await this.options.storage.read(blobKey(digest));
    return bytes && sha256Digest(bytes) === digest ? bytes : null;
  }

  /**
   * The artifacts (SBOMs, provenance) whose subject is the image manifest `subject`: of an image
   * built or served here, else from the stored records (another replica, before a restart).
   */
  async artifactsOf(subject: string): Promise<ArtifactRecord[]> {
    return this.artifacts.get(subject) ?? (await this.recordOwners.artifactsOf(subject));
  }

}

/** Whether two platforms failed the same way (then it is not the platform's failure). */
function sameFailure(a: unknown, b: unknown): boolean {
  return a instanceof NixeryError && b instanceof NixeryError && a.kind === b.kind && a.message === b.message;
}
