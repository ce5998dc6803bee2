// The build pipeline: image request → pinned source → Nix (resolve, realise, closure) →
// layer grouping → archives (from the build cache or packed once) → config and manifests →
// storage. The registry and the `build` command both call `ImageBuilder.build`.

import { createHash } from 'node:crypto';
import { sortedUnique, type ImageRequest } from '../image/name.js';
import type { Storage } from '../storage/storage.js';
import type { LayeringStrategy, Popularity } from '../layers/types.js';
import type { ResolvedPackage } from '../nix/types.js';
import { pinSource, type PackageSource, type PinnedSource } from '../nix/source.js';
import { resolvePackages } from '../nix/resolve.js';
import { realise } from '../nix/realise.js';
import { queryClosure } from '../nix/closure.js';
import { buildManifests, type ImageManifests, type LayerDescriptor } from '../manifest/manifest.js';
import { LayerStore } from './layer-store.js';
import { ManifestCache, type ManifestRecord } from './manifest-cache.js';
import { SingleFlight } from '../util/singleflight.js';

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export type BuildPhase = 'source' | 'resolve' | 'realise' | 'closure' | 'layers' | 'pack' | 'manifest';

export interface BuildProgress {
  phase: BuildPhase;
  message: string;
  /** During `pack`: which layer, of how many, and uncompressed bytes packed so far. */
  layer?: { index: number; count: number; bytes: number };
}

export interface BuilderOptions {
  storage: Storage;
  source: PackageSource;
  nixTimeoutSeconds: number;
  strategy: LayeringStrategy;
  budget: number;
  popularity: () => Popularity;
  log: Logger;
  /** Manifests kept in memory (the storage tier holds all of them). */
  manifestCacheSize?: number;
  /** Layers packed at once within one build. */
  packConcurrency?: number;
  /** Resolves the source for a tag; the registry passes a TTL-cached version. */
  pin?: (source: PackageSource, tag: string) => Promise<PinnedSource>;
}

export interface BuiltImage {
  image: ImageRequest;
  /** Cache key of the manifest (null when the source could not be pinned). */
  cacheKey: string | null;
  revision: string | null;
  manifests: ImageManifests;
  layers: Array<LayerDescriptor & { paths: number; cached: boolean }>;
  /** True when served from the manifest cache without running Nix. */
  fromCache: boolean;
}

/** Bump when the bytes of layers or manifests change for the same input. */
const FORMAT_VERSION = 'nixery-ts/1';

export class ImageBuilder {
  readonly layers: LayerStore;
  readonly manifests: ManifestCache;
  private readonly builds = new SingleFlight<string, BuiltImage>();
  /** Builds that ran Nix (not served from the manifest cache). */
  buildsRun = 0;

  constructor(private readonly options: BuilderOptions) {
    this.layers = new LayerStore(options.storage, options.log);
    this.manifests = new ManifestCache(options.storage, options.manifestCacheSize ?? 1024);
  }

  /** Builds (or finds) an image. Concurrent calls for the same image share one build. */
  async build(
    image: ImageRequest,
    onProgress: (p: BuildProgress) => void = () => {},
    limit: <T>(fn: () => Promise<T>) => Promise<T> = (fn) => fn(),
  ): Promise<BuiltImage> {
    onProgress({ phase: 'source', message: 'resolving the package source' });
    const pin = this.options.pin ?? ((s, t) => pinSource(s, t, { timeoutMs: this.options.nixTimeoutSeconds * 1000 }));
    const pinned = await pin(this.options.source, image.tag);
    const cacheKey = pinned.revision ? this.cacheKey(image, pinned.revision) : null;
    if (cacheKey) {
      const record = await this.manifests.get(cacheKey);
      if (record) return this.fromRecord(image, cacheKey, record);
    }
    // Without a cache key, identical concurrent requests still share one build.
    const flightKey = cacheKey ?? `uncached:${image.arch.nixSystem}:${image.tag}:${image.packages.join(' ')}`;
    const { promise } = this.builds.run(flightKey, () => limit(() => this.buildUncached(image, pinned, cacheKey, onProgress)));
    return promise;
  }

  /** Cache key: everything that decides the image's bytes. */
  cacheKey(image: ImageRequest, revision: string): string {
    const input = JSON.stringify({
      format: FORMAT_VERSION,
      system: image.arch.nixSystem,
      revision,
      packages: image.packages,
      layering: this.options.strategy.name,
      budget: this.options.budget,
    });
    return createHash('sha256').update(input).digest('hex');
  }

  private async fromRecord(image: ImageRequest, cacheKey: string, record: ManifestRecord): Promise<BuiltImage> {
    return {
      image,
      cacheKey,
      revision: record.revision,
      manifests: record.manifests,
      layers: record.layers.map((l) => ({ ...l, cached: true })),
      fromCache: true,
    };
  }

  private async buildUncached(
    image: ImageRequest,
    pinned: PinnedSource,
    cacheKey: string | null,
    onProgress: (p: BuildProgress) => void,
  ): Promise<BuiltImage> {
    const nixOptions = { timeoutMs: this.options.nixTimeoutSeconds * 1000 };
    const started = Date.now();
    this.buildsRun++;

    onProgress({ phase: 'resolve', message: `resolving ${image.packages.length} packages` });
    const resolved = await resolvePackages(pinned, image.packages, image.arch.nixSystem, nixOptions);
    onProgress({ phase: 'realise', message: 'Nix is realising the packages' });
    const realised = await realise(resolved, nixOptions);
    try {
      return await this.packImage(image, pinned, cacheKey, resolved, started, onProgress);
    } finally {
      // The GC roots kept the outputs alive while their files were read into layers.
      await realised.release();
    }
  }

  private async packImage(
    image: ImageRequest,
    pinned: PinnedSource,
    cacheKey: string | null,
    resolved: ResolvedPackage[],
    started: number,
    onProgress: (p: BuildProgress) => void,
  ): Promise<BuiltImage> {
    const { log } = this.options;
    const nixOptions = { timeoutMs: this.options.nixTimeoutSeconds * 1000 };
    const roots = rootPaths(resolved);
    onProgress({ phase: 'closure', message: 'reading the runtime closure' });
    const closure = await queryClosure(roots, nixOptions);

    onProgress({ phase: 'layers', message: `grouping ${closure.paths.length} store paths into layers` });
    const groups = this.options.strategy.group(closure, { budget: this.options.budget, popularity: this.options.popularity() });

    const count = groups.length + 1;
    const progress = (index: number) => (bytes: number) =>
      onProgress({ phase: 'pack', message: `packing layer ${index + 1} of ${count}`, layer: { index, count, bytes } });
    const packed = await mapLimit(groups, this.options.packConcurrency ?? 2, (group, i) =>
      this.layers.storePathLayer(group.paths, progress(i)),
    );
    // Collisions in the symlink forest go to the package named first (packages are sorted).
    const forestOrder = [...new Set(resolved.flatMap((p) => Object.values(p.outputs)))];
    const custom = await this.layers.customisationLayer(forestOrder, closure, progress(groups.length));
    for (const c of custom.collisions) log.warn({ image: image.name, collision: c }, 'customisation layer collision');

    onProgress({ phase: 'manifest', message: 'writing the manifests' });
    const layers = [
      ...packed.map((p, i) => ({ ...p.digests, paths: groups[i]!.paths.length, cached: p.cached })),
      { ...custom.digests, paths: roots.length, cached: custom.cached },
    ];
    const manifests = buildManifests({
      architecture: image.arch.imageArch,
      layers,
      cmd: resolved.some((p) => p.attrPath.length === 1 && p.attrPath[0] === 'bashInteractive') ? ['bash'] : undefined,
      packages: image.packages,
      source: pinned.description,
      revision: pinned.revision,
    });
    await this.storeManifests(manifests);
    const record: ManifestRecord = {
      revision: pinned.revision,
      manifests,
      layers: layers.map(({ digest, size, diffId, paths }) => ({ digest, size, diffId, paths })),
    };
    if (cacheKey) await this.manifests.set(cacheKey, record);
    log.info(
      { image: image.name, tag: image.tag, revision: pinned.revision, storePaths: closure.paths.length, layers: layers.length, packed: packed.filter((p) => !p.cached).length, ms: Date.now() - started, digest: manifests.oci.digest },
      'image built',
    );
    return { image, cacheKey, revision: pinned.revision, manifests, layers, fromCache: false };
  }

  private async storeManifests(m: ImageManifests): Promise<void> {
    await Promise.all([m.config, m.oci, m.docker].map((b) => this.layers.putBlob(b)));
  }
}

/** The store paths that go into the image for the requested packages, sorted and unique. */
export function rootPaths(resolved: ResolvedPackage[]): string[] {
  return sortedUnique(resolved.flatMap((p) => Object.values(p.outputs)));
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i);
    }
  });
  await Promise.all(workers);
  return results;
}
