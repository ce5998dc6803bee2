// Built images by cache key: a bounded in-memory tier over `manifests/<key>.json` in storage,
// so a restarted registry (or another replica) serves what was built without running Nix.
// Multi-platform indexes have records there too (`setIndex`): they are computed again from the
// platforms' images, so the record is what keeps the index's blobs (and its platforms') in
// storage for `nixery gc`, and what `nixery scrub` checks them against.
// A record read from storage is trusted only when it is intact (its checksum), its manifest and
// config blobs hash to their digests, and its layer blobs still exist: otherwise the image is
// rebuilt (a damaged record or blob is removed on the way).

import type { Storage } from '../storage/storage.js';
import type { ImageRequest } from '../image/name.js';
import type { Blob, ImageManifests, LayerDescriptor } from '../manifest/manifest.js';
import type { ImageIndex } from '../manifest/image-index.js';
import { sha256Digest } from '../manifest/manifest.js';
import { manifestKey, blobKey } from './layout.js';
import { LruCache } from '../util/lru.js';
import { encodeRecord } from './records.js';
import type { Quarantine } from './integrity.js';
import { artifactDigests, type ArtifactRecord } from './attest.js';
import { EMPTY_CONFIG } from '../manifest/referrers.js';

/**
 * One layer of a built image as its record keeps it. The optional fields were added for the
 * explorer; records written before them lack them, and are served as they are.
 */
export interface ImageLayer extends LayerDescriptor {
  /** How many store paths the layer holds (the customisation layer: how many outputs it links). */
  paths: number;
  /** Bytes of the uncompressed tar. */
  uncompressedSize?: number;
  /** The store paths the layer holds, each with its NAR size (empty for the customisation layer). */
  storePaths?: Array<{ path: string; narSize: number }>;
  /** The customisation layer: the outputs it links into /bin, /lib..., plus /usr/bin/env and /tmp. */
  links?: string[];
  /** How shared the layer is in the package set (see layers/sharing.ts). */
  popularity?: number;
  runtime?: string | null;
}

export interface ManifestRecord {
  revision: string | null;
  manifests: ImageManifests;
  layers: ImageLayer[];
  /** The image's SBOMs and provenance (attest.ts); absent in records written before them. */
  artifacts?: ArtifactRecord[];
}

export interface StoredRecord {
  revision: string | null;
  /** The image the record is of: what rebuilds its blobs when they are lost (absent in older records). */
  image?: ImageRequest;
  config: Omit<Blob, 'bytes'>;
  oci: Omit<Blob, 'bytes'>;
  docker: Omit<Blob, 'bytes'>;
  layers: ImageLayer[];
  artifacts?: ArtifactRecord[];
}

/** A multi-platform index and the image of each of its platforms, in index order. */
export interface IndexRecord {
  revision: string | null;
  index: ImageIndex;
  platforms: Array<{ platform: string; record: ManifestRecord }>;
}

type Descriptor = Omit<Blob, 'bytes'>;

/**
 * An index record as stored: the index blobs, and every blob of every platform, so that what
 * keeps the index keeps all it points at (gc reads `index` and `platforms` for that).
 */
export interface StoredIndexRecord {
  revision: string | null;
  /** The platforms' images, in index order: what rebuilds the index blobs (absent in older records). */
  images?: ImageRequest[];
  index: { oci: Descriptor; docker: Descriptor };
  platforms: Array<{ platform: string } & Omit<StoredRecord, 'revision'>>;
}

/** Every blob digest an image's record references. */
export function recordDigests(record: ManifestRecord): string[] {
  const { config, oci, docker } = record.manifests;
  return [config.digest, oci.digest, docker.digest, ...record.layers.map((l) => l.digest), ...artifactDigests(record.artifacts)];
}

const strip = ({ mediaType, digest, size }: Blob): Descriptor => ({ mediaType, digest, size });

/** Where a lookup was answered: memory, a checked record in storage, or not at all. */
export type ManifestLookup = 'memory' | 'storage' | 'miss';

/** What the manifest cache reports (part of the builder's observer). */
export interface ManifestCacheObserver {
  manifestLookup(answer: ManifestLookup): void;
}

export class ManifestCache {
  private readonly memory: LruCache<string, ManifestRecord>;
  /** Lookups answered from memory, from a checked storage record, or not at all. */
  readonly stats = { memoryHits: 0, storageHits: 0, misses: 0 };

  constructor(
    private readonly storage: Storage,
    capacity: number,
    private readonly quarantine: Quarantine,
    private readonly observer?: ManifestCacheObserver,
  ) {
    this.memory = new LruCache(capacity);
  }

  async get(cacheKey: string): Promise<ManifestRecord | null> {
    const hit = this.memory.get(cacheKey);
    if (hit) {
      this.stats.memoryHits++;
      this.observer?.manifestLookup('memory');
      return hit;
    }
    const record = await this.fromStorage(cacheKey);
    if (record) this.stats.storageHits++;
    else this.stats.misses++;
    this.observer?.manifestLookup(record ? 'storage' : 'miss');
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
    // An artifact lost or damaged: the image is built again, which writes it again.
    if (stored.artifacts && !(await this.artifactsWhole(stored.artifacts))) return null;
    const record: ManifestRecord = { revision: stored.revision, manifests: { config, oci, docker }, layers: stored.layers, ...(stored.artifacts ? { artifacts: stored.artifacts } : {}) };
    this.memory.set(cacheKey, record);
    return record;
  }

  async set(cacheKey: string, record: ManifestRecord, image?: ImageRequest): Promise<void> {
    const stored: StoredRecord = { revision: record.revision, ...(image ? { image } : {}), ...storedImage(record) };
    await this.storage.put(manifestKey(cacheKey), encodeRecord(stored), { contentType: 'application/json' });
    this.memory.set(cacheKey, record);
  }

  /** Writes the record of a multi-platform index (its blobs are stored already). */
  async setIndex(indexKey: string, record: IndexRecord, images?: ImageRequest[]): Promise<void> {
    const stored: StoredIndexRecord = {
      revision: record.revision,
      ...(images ? { images } : {}),
      index: { oci: strip(record.index.oci), docker: strip(record.index.docker) },
      platforms: record.platforms.map((p) => ({ platform: p.platform, ...storedImage(p.record) })),
    };
    await this.storage.put(manifestKey(indexKey), encodeRecord(stored), { contentType: 'application/json' });
  }

  /** Drops the in-memory copy (the next get reads and checks storage again). */
  forget(cacheKey: string): void {
    this.memory.delete(cacheKey);
  }

  /** Whether every artifact's manifest (checked against its digest) and document is in storage. */
  private async artifactsWhole(artifacts: readonly ArtifactRecord[]): Promise<boolean> {
    const manifests = await Promise.all(artifacts.map((a) => this.load(a.manifest)));
    if (manifests.some((m) => !m)) return false;
    const documents = await Promise.all([...artifacts.map((a) => a.document), EMPTY_CONFIG].map((d) => this.storage.stat(blobKey(d.digest))));
    return documents.every((info, i) => info !== null && info.size === (artifacts[i]?.document.size ?? EMPTY_CONFIG.size));
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

function storedImage(record: ManifestRecord): Omit<StoredRecord, 'revision'> {
  return {
    config: strip(record.manifests.config),
    oci: strip(record.manifests.oci),
    docker: strip(record.manifests.docker),
    layers: record.layers,
    ...(record.artifacts ? { artifacts: record.artifacts } : {}),
  };
}
