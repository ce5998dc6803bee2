// Built images by cache key: a bounded in-memory tier over `manifests/<key>.json` in storage,
// so a restarted registry (or another replica) serves what was built without running Nix.

import type { Storage } from '../storage/storage.js';
import type { Blob, ImageManifests, LayerDescriptor } from '../manifest/manifest.js';
import { manifestKey, blobKey } from './layout.js';
import { LruCache } from '../util/lru.js';
import { decodeRecord, encodeRecord } from './records.js';

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

export class ManifestCache {
  private readonly memory: LruCache<string, ManifestRecord>;

  constructor(
    private readonly storage: Storage,
    capacity: number,
  ) {
    this.memory = new LruCache(capacity);
  }

  async get(cacheKey: string): Promise<ManifestRecord | null> {
    const hit = this.memory.get(cacheKey);
    if (hit) return hit;
    const raw = await this.storage.read(manifestKey(cacheKey));
    if (!raw) return null;
    const decoded = decodeRecord<StoredRecord>(raw);
    if (!decoded.ok) return null;
    const stored = decoded.record;
    // The manifest bytes live as blobs; the record only points at them.
    const [config, oci, docker] = await Promise.all([stored.config, stored.oci, stored.docker].map((d) => this.load(d)));
    if (!config || !oci || !docker) return null;
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

  private async load(d: Omit<Blob, 'bytes'>): Promise<Blob | null> {
    const bytes = await this.storage.read(blobKey(d.digest));
    return bytes ? { ...d, bytes } : null;
  }
}
