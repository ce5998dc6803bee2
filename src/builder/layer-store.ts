// Layers in storage, packed at most once: a layer is keyed by its set of store paths, and
// the build cache (`builds/<key>.json`) remembers its digests, so later images reuse the blob.

import { createHash } from 'node:crypto';
import type { Storage } from '../storage/storage.js';
import type { ClosureGraph } from '../nix/types.js';
import type { Blob, LayerDescriptor } from '../manifest/manifest.js';
import { MEDIA_TYPES } from '../manifest/manifest.js';
import { packEntries, packStorePaths, type LayerDigests } from '../archive/pack.js';
import { customisationEntries } from '../archive/customisation.js';
import { blobKey, buildKey, stagingKey } from './layout.js';
import { LruCache } from '../util/lru.js';
import { SingleFlight } from '../util/singleflight.js';
import { encodeRecord } from './records.js';
import type { Quarantine } from './integrity.js';
import { NixeryError } from '../errors.js';
import { StorageUnavailableError } from '../storage/errors.js';
import type { Logger } from './builder.js';

/** Bump when the tar or gzip bytes of a layer change for the same store paths. */
const LAYER_FORMAT = 'nixery-ts layer v1';

export interface PackedLayer {
  digests: LayerDescriptor;
  /** True when the build cache already had it. */
  cached: boolean;
}

export interface CustomisationLayer extends PackedLayer {
  collisions: string[];
}

export class LayerStore {
  private readonly known = new LruCache<string, LayerDescriptor>(65536);
  private readonly packing = new SingleFlight<string, PackedLayer>();
  /** Layers actually packed (not found in the build cache). */
  packed = 0;

  constructor(
    private readonly storage: Storage,
    private readonly log: Logger,
    private readonly quarantine: Quarantine,
  ) {}

  static storePathKey(paths: string[]): string {
    return sha256Hex(`${LAYER_FORMAT}\nstore-paths\n${paths.join('\n')}`);
  }

  /** A layer of whole store paths (sorted), from the build cache or packed now. */
  storePathLayer(paths: string[], onProgress?: (bytes: number) => void): Promise<PackedLayer> {
    const key = LayerStore.storePathKey(paths);
    return this.cachedOrPacked(key, (sink) => packStorePaths(paths, sink, { onProgress }));
  }

  /**
   * The customisation layer (symlink forest, /usr/bin/env, /tmp). Store paths are immutable, so
   * the requested outputs (in priority order) decide its content; the key is derived from them.
   */
  async customisationLayer(roots: string[], closure: ClosureGraph, onProgress?: (bytes: number) => void): Promise<CustomisationLayer> {
    const key = sha256Hex(`${LAYER_FORMAT}\ncustomisation\n${roots.join('\n')}`);
    let collisions: string[] = [];
    const layer = await this.cachedOrPacked(key, async (sink) => {
      const forest = await customisationEntries(roots, closure.paths.map((p) => p.path));
      collisions = forest.collisions;
      return packEntries(forest.entries, sink, { onProgress });
    });
    return { ...layer, collisions };
  }

  /** Stores a small blob (config, manifest) under its digest unless it is there already, intact. */
  async putBlob(blob: Blob): Promise<void> {
    const key = blobKey(blob.digest);
    const existing = await this.storage.read(key);
    if (existing && existing.equals(blob.bytes)) return;
    if (existing) this.log.warn({ key }, 'replacing a stored blob that does not match its digest');
    await this.storage.put(key, blob.bytes, { contentType: blob.mediaType });
  }

  private cachedOrPacked(key: string, pack: (sink: NodeJS.WritableStream) => Promise<LayerDigests>): Promise<PackedLayer> {
    return this.packing.run(key, async () => {
      const found = await this.lookup(key);
      if (found) {
        // Rewriting the entry marks the layer as in use, so a concurrent `nixery gc` keeps it.
        await this.storage.put(buildKey(key), encodeRecord(found), { contentType: 'application/json' });
        return { digests: found, cached: true };
      }
      const digests = await this.packToStorage(pack);
      await this.storage.put(buildKey(key), encodeRecord(digests), { contentType: 'application/json' });
      this.known.set(key, digests);
      this.packed++;
      return { digests, cached: false };
    }).promise;
  }

  /**
   * A packed layer's digests, from memory or its build record; trusted only while its blob is
   * in storage with the recorded size (gc or a lost object may have removed it since).
   */
  private async lookup(key: string): Promise<LayerDescriptor | null> {
    let descriptor = this.known.get(key);
    if (!descriptor) {
      const record = await this.quarantine.readRecord<LayerDescriptor>(buildKey(key), 'layer record');
      if (!record) return null;
      const { digest, size, diffId } = record;
      descriptor = { digest, size, diffId };
    }
    const info = await this.storage.stat(blobKey(descriptor.digest));
    if (!info || info.size !== descriptor.size) {
      this.known.delete(key);
      return null;
    }
    this.known.set(key, descriptor);
    return descriptor;
  }

  /** Packs into a staging object, then moves it under its digest (never a partial blob). */
  private async packToStorage(pack: (sink: NodeJS.WritableStream) => Promise<LayerDigests>): Promise<LayerDescriptor> {
    const staging = stagingKey();
    const writer = await this.storage.writer(staging, { contentType: MEDIA_TYPES.ociLayerGzip });
    let digests: LayerDigests;
    try {
      digests = await pack(writer.stream);
      await writer.commit();
    } catch (err) {
      // A failing sink is the storage failing (a full disk, an object store down), not the packing.
      const sinkFailure = writer.stream.errored;
      await writer.abort().catch(() => {});
      if (sinkFailure && !(err instanceof NixeryError && err.kind.startsWith('STORAGE_'))) {
        throw sinkFailure instanceof NixeryError ? sinkFailure : new StorageUnavailableError(this.storage.name, 'write', staging, sinkFailure);
      }
      throw err;
    }
    const target = blobKey(digests.digest);
    if (await this.storage.stat(target)) await this.storage.delete(staging);
    else await this.storage.move(staging, target);
    return { digest: digests.digest, size: digests.size, diffId: digests.diffId };
  }
}

function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}
