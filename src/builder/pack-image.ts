// The packing step of a build: the closure of the realised packages → layer groups → archives
// (from the build cache or packed once) → config and manifests → storage, and the record that
// names them. The builder (builder.ts) runs Nix before it and checks the result after it.

import type { ImageRequest } from '../image/name.js';
import type { LayeringStrategy, Popularity } from '../layers/types.js';
import type { ResolvedPackage } from '../nix/types.js';
import type { PinnedSource } from '../nix/source.js';
import type { NixRunObserver } from '../nix/observer.js';
import { rootPaths, type NixStage } from './nix-stage.js';
import { buildManifests, type ImageManifests } from '../manifest/manifest.js';
import type { LayerStore } from './layer-store.js';
import type { ImageLayer, ManifestCache, ManifestRecord } from './manifest-cache.js';
import { layerSharing } from '../layers/sharing.js';
import { ImageTooLargeError } from '../errors.js';
import { PackProgress } from './progress.js';
import { mapLimit } from '../util/semaphore.js';
import { toLayerGraph } from './popularity.js';
import { runtimeSpec } from './runtime-config.js';
import { NONROOT_USER } from '../image/config.js';
import type { BuildPolicy, BuildProgress, BuiltImage, Logger } from './types.js';
import { attestationInput, attestations } from './attest.js';
import { popularityDigest } from '../layers/popularity.js';

export interface PackerOptions {
  nix: NixStage;
  layers: LayerStore;
  manifests: ManifestCache;
  strategy: LayeringStrategy;
  budget: number;
  log: Logger;
  maxImageSize?: number;
  policy?: BuildPolicy;
  packConcurrency?: number;
  nixObserver?: NixRunObserver;
  /** SBOMs and provenance made with each image (attest.ts); absent: none. */
  attestations?: boolean;
}

export interface PackRequest {
  image: ImageRequest;
  pinned: PinnedSource;
  cacheKey: string | null;
  resolved: ResolvedPackage[];
  popularity: Popularity;
  /** When the build started (for the log line). */
  started: number;
  onProgress: (p: BuildProgress) => void;
}

export class ImagePacker {
  constructor(private readonly options: PackerOptions) {}

  async pack({ image, pinned, cacheKey, resolved, popularity, started, onProgress }: PackRequest): Promise<{ image: BuiltImage; record: ManifestRecord }> {
    const { log } = this.options;
    const roots = rootPaths(resolved);
    onProgress({ phase: 'closure', message: 'reading the runtime closure' });
    const closure = await this.options.nix.closure(roots, { observer: this.options.nixObserver });
    this.options.policy?.checkClosure(closure.paths.map((p) => p.path));
    const closureBytes = closure.paths.reduce((sum, p) => sum + p.narSize, 0);
    if (this.options.maxImageSize !== undefined && closureBytes > this.options.maxImageSize) {
      log.info({ image: image.name, tag: image.tag, closureBytes, limit: this.options.maxImageSize }, 'image refused: over NIXERY_MAX_IMAGE_SIZE');
      throw new ImageTooLargeError(closureBytes, this.options.maxImageSize);
    }

    onProgress({ phase: 'layers', message: `grouping ${closure.paths.length} store paths into layers` });
    const groups = this.options.strategy.group(toLayerGraph(closure), { budget: this.options.budget, popularity });

    // Each layer's size as Nix reports it; the customisation layer (symlinks) counts as nothing.
    const narSizes = new Map(closure.paths.map((p) => [p.path, p.narSize]));
    const estimates = [...groups.map((g) => g.paths.reduce((sum, p) => sum + (narSizes.get(p) ?? 0), 0)), 0];
    const progress = new PackProgress(estimates, onProgress);
    progress.start();
    const packed = await mapLimit(groups, this.options.packConcurrency ?? 2, async (group, i) => {
      const layer = await this.options.layers.storePathLayer(group.paths, progress.bytes(i));
      progress.layerDone(i);
      return layer;
    });
    // Collisions in the symlink forest go to the package named first (packages are sorted).
    const forestOrder = [...new Set(resolved.flatMap((p) => Object.values(p.outputs)))];
    const user = image.nonroot ? NONROOT_USER : undefined;
    const custom = await this.options.layers.customisationLayer(forestOrder, closure, progress.bytes(groups.length), user);
    progress.layerDone(groups.length);
    for (const c of custom.collisions) log.warn({ image: image.name, collision: c }, 'customisation layer collision');

    onProgress({ phase: 'manifest', message: 'writing the manifests' });
    const layers: Array<ImageLayer & { cached: boolean }> = [
      ...packed.map((p, i) => {
        const paths = groups[i]!.paths;
        const storePaths = paths.map((path) => ({ path, narSize: narSizes.get(path) ?? 0 }));
        return { ...p.digests, paths: paths.length, storePaths, ...layerSharing(paths, popularity), cached: p.cached };
      }),
      { ...custom.digests, paths: roots.length, storePaths: [], links: roots, popularity: 0, runtime: null, cached: custom.cached },
    ];
    const manifests = buildManifests({
      architecture: image.arch.imageArch,
      layers,
      // Command, user, env…: from the meta-packages, meta.mainProgram and a request's config.
      ...runtimeSpec(image, resolved),
      packages: image.packages,
      source: pinned.description,
      revision: pinned.revision,
      layerFormat: this.options.layers.compression.format,
    });
    await this.storeManifests(manifests);
    const artifacts = await this.attest({ image, pinned, resolved, closure, layers, manifests, popularity });
    const record: ManifestRecord = { revision: pinned.revision, manifests, layers: recordLayers(layers), ...(artifacts ? { artifacts } : {}) };
    if (cacheKey) await this.options.manifests.set(cacheKey, record, image);
    log.info(
      { image: image.name, tag: image.tag, revision: pinned.revision, storePaths: closure.paths.length, layers: layers.length, packed: packed.filter((p) => !p.cached).length, ms: Date.now() - started, digest: manifests.oci.digest },
      'image built',
    );
    return { image: { image, cacheKey, revision: pinned.revision, manifests, layers, fromCache: false, compression: this.options.layers.compression.description, ...(artifacts ? { artifacts } : {}) }, record };
  }

  /** The image's SBOMs and provenance as stored artifacts (see attest.ts), when they are made. */
  private async attest(req: Omit<Parameters<typeof attestationInput>[0], 'build'> & { popularity: Popularity }) {
    if (!this.options.attestations) return undefined;
    const build = { layering: this.options.strategy.name, budget: this.options.budget, popularity: popularityDigest(req.popularity), compression: this.options.layers.compression.description };
    const { blobs, artifacts } = attestations(attestationInput({ ...req, build }));
    await Promise.all(blobs.map((b) => this.options.layers.putBlob(b)));
    return artifacts;
  }

  private async storeManifests(m: ImageManifests): Promise<void> {
    await Promise.all([m.config, m.oci, m.docker].map((b) => this.options.layers.putBlob(b)));
  }
}

/** What a record keeps of an image's layers (whether they were packed now is not kept). */
export function recordLayers(layers: ReadonlyArray<ImageLayer & { cached: boolean }>): ImageLayer[] {
  return layers.map(({ cached: _cached, ...layer }) => layer);
}
