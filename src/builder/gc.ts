// Storage garbage collection. Roots are the cached manifests (`manifests/*.json`); everything
// they reference (manifest, config and layer blobs) stays. Blobs, build-cache entries and staging
// objects that no root references are removed once they are older than a grace period.
//
// Safe while builds run: a build writes its layers, then their build-cache entries, then the
// manifest record last, so until the record exists its objects are young (inside the grace
// period). A build that reuses an old cached layer refreshes that layer's build-cache entry
// first (LayerStore does), and a blob with a young build-cache entry is kept.

import type { ObjectInfo, Storage } from '../storage/storage.js';
import { decodeRecord } from './records.js';

export interface GcOptions {
  /** Objects younger than this are never removed (default: one hour). */
  graceSeconds: number;
  dryRun: boolean;
  /** Also expire manifest records not written for this long (default: keep all). */
  manifestMaxAgeSeconds?: number;
  now?: number;
  log?: (line: string) => void;
}

export interface GcReport {
  manifestsKept: number;
  manifestsRemoved: number;
  blobsKept: number;
  removed: Array<{ key: string; size: number }>;
  bytesFreed: number;
  dryRun: boolean;
}

interface ManifestRecordRefs {
  config?: { digest?: string };
  oci?: { digest?: string };
  docker?: { digest?: string };
  layers?: Array<{ digest?: string }>;
}

const BLOB_PREFIX = 'blobs/sha256/';

export async function collectGarbage(storage: Storage, options: GcOptions): Promise<GcReport> {
  const now = options.now ?? Date.now();
  const graceMs = options.graceSeconds * 1000;
  const old = (o: ObjectInfo) => now - o.modified > graceMs;
  const report: GcReport = { manifestsKept: 0, manifestsRemoved: 0, blobsKept: 0, removed: [], bytesFreed: 0, dryRun: options.dryRun };
  const remove = async (o: ObjectInfo) => {
    report.removed.push({ key: o.key, size: o.size });
    report.bytesFreed += o.size;
    options.log?.(`${options.dryRun ? 'would remove' : 'removing'} ${o.key} (${o.size} bytes)`);
    if (!options.dryRun) await storage.delete(o.key);
  };

  // 1. Roots: manifest records, and what they reference.
  const live = new Set<string>();
  for await (const o of storage.list('manifests')) {
    if (options.manifestMaxAgeSeconds !== undefined && now - o.modified > options.manifestMaxAgeSeconds * 1000) {
      report.manifestsRemoved++;
      await remove(o);
      continue;
    }
    const raw = await storage.read(o.key);
    if (!raw) continue;
    const decoded = decodeRecord<ManifestRecordRefs>(raw);
    if (!decoded.ok) {
      // An unreadable record protects nothing; it goes once it is old.
      if (old(o)) await remove(o);
      continue;
    }
    const record = decoded.record;
    report.manifestsKept++;
    for (const d of [record.config?.digest, record.oci?.digest, record.docker?.digest, ...(record.layers ?? []).map((l) => l.digest)]) {
      if (d) live.add(d);
    }
  }

  // 2. Build-cache entries: kept when their blob is live or when they are young (a build is using them).
  const protectedByBuild = new Set<string>();
  for await (const o of storage.list('builds')) {
    const raw = await storage.read(o.key);
    const decoded = raw ? decodeRecord<{ digest?: string }>(raw) : undefined;
    const digest = decoded?.ok ? decoded.record.digest : undefined;
    if (digest && (live.has(digest) || !old(o))) {
      if (!old(o)) protectedByBuild.add(digest);
      continue;
    }
    if (old(o)) await remove(o);
  }

  // 3. Blobs nobody references, and abandoned staging uploads.
  for await (const o of storage.list('blobs')) {
    if (!o.key.startsWith(BLOB_PREFIX)) continue;
    const digest = `sha256:${o.key.slice(BLOB_PREFIX.length)}`;
    if (live.has(digest) || protectedByBuild.has(digest) || !old(o)) {
      report.blobsKept++;
      continue;
    }
    await remove(o);
  }
  for await (const o of storage.list('staging')) {
    if (old(o)) await remove(o);
  }
  return report;
}
