// Layers in storage, packed at most once: a layer is keyed by its set of store paths and the
// compression (compressor, version, parameters), and the build cache (`builds/<key>.json`)
// remembers its digests, so later images reuse the blob.

import { createHash } from 'node:crypto';
import type { Storage } from '../storage/storage.js';
import type { ClosureGraph } from '../nix/types.js';
import type { Blob, LayerDescriptor } from '../manifest/manifest.js';
import { layerMediaType } from '../manifest/manifest.js';
import { packEntries, packStorePaths, type LayerDigests } from '../archive/pack.js';
import type { LayerCompression } from '../archive/compression.js';
import { customisationEntries } from '../archive/customisation.js';
import type { ImageUser } from '../image/config.js';
import { blobKey, buildKey, stagingKey } from './layout.js';
import { LruCache } from '../util/lru.js';
import { SingleFlight } from '../util/singleflight.js';
import { encodeRecord } from './records.js';
import { matchesDigest, type Quarantine } from './integrity.js';
import { NixeryError } from '../errors.js';
import { StorageUnavailableError } from '../storage/errors.js';
import type { Logger } from './types.js';
import type { BuildObserver } from './observer.js';

/**
 * Bump when the tar bytes of a layer change for the same store paths (the compression's
 * description changes with its compressor, version and parameters).
 */
const LAYER_FORMAT = 'nixery-ts layer v1';

/**
 * A build record: the layer's digests, and the stored version of its blob known to hold exactly
 * those bytes (the one this process wrote, or checked in full). Another version is checked
 * before it is reused.
 */
type LayerRecord = LayerDescriptor & { version?: string; uncompressedSize?: number };

export interface PackedLayer {
  /** With the uncompressed size, unless the layer's build record was written before it was kept. */
  digests: LayerDescriptor & { uncompressedSize?: number };
  /** True when the build cache already had it. */
  cached: boolean;
}

export interface CustomisationLayer extends PackedLayer {
  collisions: string[];
}

export class LayerStore {
  private readonly known = new LruCache<string, LayerRecord>(65536);
  private readonly packing = new SingleFlight<string, PackedLayer>();
  /** Layers actually packed (not found in the build cache). */
  packed = 0;

  constructor(
    private readonly storage: Storage,
    private readonly log: Logger,
    private readonly quarantine: Quarantine,
    /** What layers are compressed with; its description is part of every layer's key. */
    readonly compression: LayerCompression,
    private readonly observer?: Pick<BuildObserver, 'layerPacked'>,
    /** Directory the store paths are read under (a stand-in store in tests; none: `/`). */
    private readonly storeRoot?: string,
  ) {}

  /** The key of a layer of store paths, compressed as `compression` describes. */
  static storePathKey(paths: string[], compression: string): string {
    return sha256Hex(`${layerFormat(compression)}\nstore-paths\n${paths.join('\n')}`);
  }

  /** A layer of whole store paths (sorted), from the build cache or packed now. */
  storePathLayer(paths: string[], onProgress?: (bytes: number) => void): Promise<PackedLayer> {
    const key = LayerStore.storePathKey(paths, this.compression.description);
    const { compression, storeRoot } = this;
    return this.cachedOrPacked(key, (sink) => packStorePaths(paths, sink, { onProgress, storeRoot, compression }));
  }

  /**
   * The customisation layer (symlink forest, /usr/bin/env, /tmp). Store paths are immutable, so
   * the requested outputs (in priority order) decide its content; the key is derived from them.
   */
  async customisationLayer(roots: string[], closure: ClosureGraph, onProgress?: (bytes: number) => void, user?: ImageUser): Promise<CustomisationLayer> {
    // A user (nonroot) is part of the key only when there is one: other layers keep their keys.
    const key = sha256Hex(`${layerFormat(this.compression.description)}\ncustomisation\n${roots.join('\n')}${user ? `\nuser ${JSON.stringify(user)}` : ''}`);
    let collisions: string[] = [];
    const layer = await this.cachedOrPacked(key, async (sink) => {
      const forest = await customisationEntries(roots, closure.paths.map((p) => p.path), { storeRoot: this.storeRoot, user });
      collisions = forest.collisions;
      return packEntries(forest.entries, sink, { onProgress, compression: this.compression });
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
        return { digests: descriptorOf(found), cached: true };
      }
      const record = await this.packToStorage(pack);
      await this.storage.put(buildKey(key), encodeRecord(record), { contentType: 'application/json' });
      this.known.set(key, record);
      this.packed++;
      return { digests: descriptorOf(record), cached: false };
    }).promise;
  }

  /**
   * A packed layer, from memory or its build record: never trusted without its blob in storage
   * (gc or a lost object may have removed it since), and a blob that is not the version written
   * or checked before is read through SHA-256 first; a bad one is removed and the layer repacked.
   */
  private async lookup(key: string): Promise<LayerRecord | null> {
    let record = this.known.get(key) ?? (await this.quarantine.readRecord<LayerRecord>(buildKey(key), 'layer record'));
    if (!record) return null;
    const blob = blobKey(record.digest);
    const info = await this.storage.stat(blob);
    if (!info || info.size !== record.size) {
      this.known.delete(key);
      return null;
    }
    if (info.version === undefined || info.version !== record.version) {
      const opened = await this.storage.open(blob);
      if (!opened || !(await matchesDigest(opened, record.digest))) {
        this.known.delete(key);
        if (opened) await this.quarantine.remove(blob, `layer ${record.digest}: its content does not match its digest`);
        return null;
      }
      record = { ...descriptorOf(record), version: opened.info.version };
    }
    this.known.set(key, record);
    return record;
  }

  /** Packs into a staging object, then moves it under its digest (never a partial blob). */
  private async packToStorage(pack: (sink: NodeJS.WritableStream) => Promise<LayerDigests>): Promise<LayerRecord> {
    const staging = stagingKey();
    const started = performance.now();
    const writer = await this.storage.writer(staging, { contentType: layerMediaType(this.compression.format) });
    let digests: LayerDigests;
    try {
      digests = await pack(writer.stream);
      await writer.commit();
      this.observer?.layerPacked({ compressedBytes: digests.size, uncompressedBytes: digests.uncompressedSize, seconds: (performance.now() - started) / 1000 });
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
    const descriptor = { digest: digests.digest, size: digests.size, diffId: digests.diffId, uncompressedSize: digests.uncompressedSize };
    // Someone else's copy of the blob is checked on its first reuse; ours is what we hashed.
    if (await this.storage.stat(target)) {
      await this.storage.delete(staging);
      return descriptor;
    }
    await this.storage.move(staging, target);
    const version = (await this.storage.stat(target))?.version;
    return version === undefined ? descriptor : { ...descriptor, version };
  }
}

function descriptorOf(record: LayerRecord): LayerDescriptor & { uncompressedSize?: number } {
  const { digest, size, diffId, uncompressedSize } = record;
  return uncompressedSize === undefined ? { digest, size, diffId } : { digest, size, diffId, uncompressedSize };
}

/** The first lines of a layer key: the tar format and the compression. */
function layerFormat(compression: string): string {
  return `${LAYER_FORMAT}\n${compression}`;
}

function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}
