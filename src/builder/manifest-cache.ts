// Built images by cache key: a bounded in-memory tier over `manifests/<key>.json` in storage,
// so a restarted registry (or another replica) serves what was built without running Nix.
// A record read from storage is trusted only when it is intact (its checksum), its manifest and
// config blobs hash to their digests, and its layer blobs still exist: otherwise the image is
// rebuilt (a damaged record or blob is removed on the way).

import type { Storage } from '../storage/storage.js';
import type { Blob, ImageManifests, LayerDescriptor } from '../manifest/manifest.js';
import { sha256Digest } from '../manifest/manifest.js';
import { manifestKey, blobKey } from './layout.js';
import { LruCache } from '../util/lru.js';
import { encodeRecord } from './records.js';
import type { Quarantine } from './integrity.js';

export interface ManifestRecord {
  revision: string | null;
  manifests: ImageManifests;
  layers: Array<LayerDescriptor & { paths: number }>;
}

interface StoredRecord {
  revision: string | null;
  config: Omit<Blob, 'bytes'>;
  oci: Omit<Blob, 'bytes'>;
  docker: Omit<Blob, 'bytes'>;
  layers: Array<LayerDescriptor & { paths: number }>;
}

/** Every blob digest an image's record references. */
export function recordDigests(record: ManifestRecord): string[] {
  const { config, oci, docker } = record.manifests;
  return [config.digest, oci.digest, docker.digest, ...record.layers.map((l) => l.digest)];
}

export class ManifestCache {
  private readonly memory: LruCache<string, ManifestRecord>;
  /** Lookups answered from memory, from a checked storage record, or not at all. */
  readonly stats = { memoryHits: 0, storageHits: 0, misses: 0 };

  constructor(
    private readonly storage: Storage,
    capacity: number,
    private readonly quarantine: Quarantine,
  ) {
    this.memory = new LruCache(capacity);
  }

  async get(cacheKey: string): Promise<ManifestRecord | null> {
    const hit = this.memory.get(cacheKey);
    if (hit) {
      this.stats.memoryHits++;
      return hit;
    }
    const record = await this.fromStorage(cacheKey);
    if (record) this.stats.storageHits++;
    else this.stats.misses++;
    return record;
  }

  private async fromStorage(cacheKey: string): Promise<ManifestRecord | null> {
    const stored = await this.quarantine.readRecord<StoredRecord>(manifestKey(cacheKey), 'manifest record');
    if (!stored) return null;
    // The manifest bytes live as blobs; the record only points at them.
    const [config, oci, docker] = await Promise.all([stored.config, stored.oci, stored.docker].map((d) => this.load(d)));
    if (!config || !oci || !docker) return null;
    const layers = await Promise.all(stored.layers.map((l) => this.storage.stat(blobKey(l.digest))));
    if (layers.some((info, i) => !info || info.size !== stored.layers[i]!.size)) return null;
    const record: ManifestRecord = { revision: stored.revision, manifests: { config, oci, docker }, layers: stored.layers };
    this.memory.set(cacheKey, record);
    return record;
  }

  async set(cacheKey: string, record: ManifestRecord): Promise<void> {
    const strip = ({ mediaType, digest, size }: Blob) => ({ mediaType, digest, size });
    const stored: StoredRecord = {
      revision: record.revision,
      config: strip(record.manifests.config),
      oci: strip(record.manifests.oci),
      docker: strip(record.manifests.docker),
      layers: record.layers,
    };
    await this.storage.put(manifestKey(cacheKey), encodeRecord(stored), { contentType: 'application/json' });
    this.memory.set(cacheKey, record);
  }

  /** Drops the in-memory copy (the next get reads and checks storage again). */
  forget(cacheKey: string): void {
    this.memory.delete(cacheKey);
  }

  /** A manifest or config blob, checked against its digest; a damaged one is removed. */
  private async load(d: Omit<Blob, 'bytes'>): Promise<Blob | null> {
    const key = blobKey(d.digest);
    const bytes = await this.storage.read(key);
    if (!bytes) return null;
    if (sha256Digest(bytes) !== d.digest) {
      await this.quarantine.remove(key, `blob ${d.digest} (${d.mediaType}): its content does not match its digest`);
      return null;
    }
    return { ...d, bytes };
  }
}
