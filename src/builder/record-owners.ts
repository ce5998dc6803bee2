// Which image a blob belongs to, read from the records in storage (`manifests/<key>.json`): how a
// registry that did not build an image itself (another replica, or this one after a restart)
// rebuilds a blob it finds missing or damaged, whether it was asked for by tag or by digest.
// Records written before they named their image cannot say (their blobs heal on a pull by tag).

import type { ImageRequest } from '../image/name.js';
import type { Storage } from '../storage/storage.js';
import { SingleFlight } from '../util/singleflight.js';
import type { Quarantine } from './integrity.js';
import type { StoredIndexRecord, StoredRecord } from './manifest-cache.js';
import { artifactDigests, type ArtifactRecord } from './attest.js';

interface Scan {
  at?: number;
  owners: Map<string, RecordOwner>;
  images: ImageRequest[];
  /** Image manifest digest → the artifacts its record lists. */
  artifacts: Map<string, ArtifactRecord[]>;
}

export interface RecordOwner {
  /** The image (or, for an index's blob, the platforms' images) that makes the blob. */
  images: ImageRequest[];
  /** For a blob of a multi-platform index: the OCI index's digest. */
  index?: string;
}

/**
 * One listing of the records answers every lookup for a while: repairs are rare, and a record
 * written since is this process's own (whose owners the builder remembers) or the next scan's.
 */
const SCAN_TTL_MS = 10_000;

export class RecordOwners {
  private scanned: Scan | undefined;
  private readonly scans = new SingleFlight<string, Scan>();

  constructor(
    private readonly storage: Storage,
    private readonly quarantine: Quarantine,
  ) {}

  /** The owner of `digest` according to the stored records; null when no record names it. */
  async find(digest: string): Promise<RecordOwner | null> {
    return (await this.current()).owners.get(digest) ?? null;
  }

  /** Every image a stored record names (the catalog of a registry that did not build them all). */
  async images(): Promise<ImageRequest[]> {
    return (await this.current()).images;
  }

  /** The artifacts a stored record lists for the image manifest `subject` (empty: none). */
  async artifactsOf(subject: string): Promise<ArtifactRecord[]> {
    return (await this.current()).artifacts.get(subject) ?? [];
  }

  private async current(): Promise<Scan> {
    const fresh = this.scanned && Date.now() - this.scanned.at! < SCAN_TTL_MS ? this.scanned : undefined;
    return fresh ?? (await this.scans.run('scan', () => this.scan()).promise);
  }

  private async scan(): Promise<Scan> {
    const owners = new Map<string, RecordOwner>();
    const artifacts = new Map<string, ArtifactRecord[]>();
    const images: ImageRequest[] = [];
    const at = Date.now();
    for await (const o of this.storage.list('manifests')) {
      if (!o.key.endsWith('.json')) continue;
      // A damaged record is removed on the way (it would not be trusted for a build either).
      const record = await this.quarantine.readRecord<StoredRecord | StoredIndexRecord>(o.key, 'manifest record');
      if (!record) continue;
      if ('platforms' in record) {
        if (!record.images?.length) continue;
        const owner: RecordOwner = { images: record.images, index: record.index.oci.digest };
        owners.set(record.index.oci.digest, owner);
        owners.set(record.index.docker.digest, owner);
        for (const p of record.platforms) if (p.artifacts?.length) artifacts.set(p.oci.digest, p.artifacts);
      } else if (record.image) {
        images.push(record.image);
        const owner: RecordOwner = { images: [record.image] };
        for (const d of [record.config, record.oci, record.docker, ...record.layers]) if (!owners.has(d.digest)) owners.set(d.digest, owner);
        for (const d of artifactDigests(record.artifacts)) if (!owners.has(d)) owners.set(d, owner);
        if (record.artifacts?.length) artifacts.set(record.oci.digest, record.artifacts);
      }
    }
    this.scanned = { at, owners, images, artifacts };
    return this.scanned;
  }
}
