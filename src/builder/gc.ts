// Storage garbage collection. Roots are the cached manifests (`manifests/*.json`); everything
// they reference (manifest, config and layer blobs, the image's SBOM and provenance artifacts; a
// multi-platform index record: its index blobs and every platform's) stays, and so do the stored
// signatures of those manifests (`signatures/…`, with their payload, config and manifest blobs).
// Blobs, build-cache entries and staging
// objects that no root references are removed once they were last modified before the run
// started minus a grace period.
//
// Safe while registries and replicas build, without locks:
// - The run's start is read from the storage's own clock (the time of a marker object it writes
//   under staging/), so ages are compared on one clock whatever this host's clock says.
// - Nothing modified at or after (start − grace) is removed, and that is checked again right
//   before each removal: an object written or rewritten during the run is never removed by it.
// - A build writes its layers, then their build-cache entries, then the manifest record last; a
//   build reusing a cached layer rewrites its entry first (LayerStore does), and a blob with a
//   young entry is kept. Still, a record can appear after gc listed its roots and use a blob gc
//   then removes (a build that straddles the run start, with a short grace). So after removing
//   blobs, gc lists the records again and removes every record that uses a blob it removed: the
//   image is rebuilt on its next pull. A record written after that second listing is the
//   builder's to catch: it checks the blobs of a manifest record it wrote still exist.

import { randomUUID } from 'node:crypto';
import type { ObjectInfo, Storage } from '../storage/storage.js';
import { decodeRecord } from './records.js';
import { EMPTY_CONFIG } from '../manifest/referrers.js';
import { readRecord, SIGNATURES_PREFIX, subjectOfRecordKey, artifactBlobs } from '../signing/store.js';

/** Points between phases, for tests that interleave writes with a run. */
export type GcPhase = 'start' | 'manifests' | 'signatures' | 'builds' | 'blobs' | 'staging';

export interface GcHooks {
  /** Runs after each phase, before the next one starts. */
  afterPhase?(phase: GcPhase): Promise<void> | void;
  /** Runs when an object was found removable, before gc checks it again and removes it. */
  beforeRemove?(key: string): Promise<void> | void;
}

export interface GcOptions {
  /** Objects modified less than this long before the run started are never removed. */
  graceSeconds: number;
  dryRun: boolean;
  /** Also expire manifest records last written this long before the run started (0: all). */
  manifestMaxAgeSeconds?: number;
  /** The run's start (ms since the epoch) instead of the storage's clock; tests use it. */
  now?: number;
  log?: (line: string) => void;
  hooks?: GcHooks;
}

export interface GcReport {
  /** The run's start on the storage's clock (ms since the epoch). */
  startedAt: number;
  manifestsKept: number;
  manifestsRemoved: number;
  blobsKept: number;
  /** Stored signatures kept (their signed manifest lives); those of gone manifests are in `removed`. */
  signaturesKept: number;
  removed: Array<{ key: string; size: number }>;
  bytesFreed: number;
  /** Records (written during the run) removed because they used a blob this run removed. */
  danglingRecordsRemoved: string[];
  /** Objects found removable but written again before their removal, so kept. */
  changedDuringRun: string[];
  dryRun: boolean;
}

interface ImageRecordRefs {
  config?: { digest?: string };
  oci?: { digest?: string };
  docker?: { digest?: string };
  layers?: Array<{ digest?: string }>;
  /** SBOMs and provenance: their artifact manifests and documents (and the empty config). */
  artifacts?: Array<{ manifest?: { digest?: string }; document?: { digest?: string } }>;
}

/** An image's record, or a multi-platform index's (its index blobs and each platform's image). */
interface ManifestRecordRefs extends ImageRecordRefs {
  index?: { oci?: { digest?: string }; docker?: { digest?: string } };
  platforms?: ImageRecordRefs[];
}

const BLOB_PREFIX = 'blobs/sha256/';
const MARKER_PREFIX = 'staging/gc-';

export async function collectGarbage(storage: Storage, options: GcOptions): Promise<GcReport> {
  const hooks = options.hooks ?? {};
  const marker = options.now === undefined ? `${MARKER_PREFIX}${randomUUID()}` : undefined;
  try {
    const startedAt = options.now ?? (await storageClock(storage, marker!));
    const cutoff = startedAt - options.graceSeconds * 1000;
    const report: GcReport = {
      startedAt,
      manifestsKept: 0,
      manifestsRemoved: 0,
      blobsKept: 0,
      signaturesKept: 0,
      removed: [],
      bytesFreed: 0,
      danglingRecordsRemoved: [],
      changedDuringRun: [],
      dryRun: options.dryRun,
    };
    const remove = async (key: string, size: number, why = '') => {
      report.removed.push({ key, size });
      report.bytesFreed += size;
      options.log?.(`${options.dryRun ? 'would remove' : 'removing'} ${key} (${size} bytes)${why}`);
      if (!options.dryRun) await storage.delete(key);
    };
    /** Removes `o` if it was (and still is) last modified before `before`; false when kept. */
    const removeIfOlder = async (o: ObjectInfo, before: number): Promise<boolean> => {
      if (o.modified >= before) return false;
      await hooks.beforeRemove?.(o.key);
      // The listing may be minutes old: a replica may have rewritten the object since.
      const fresh = await storage.stat(o.key);
      if (!fresh) return false;
      if (fresh.modified >= before) {
        report.changedDuringRun.push(o.key);
        options.log?.(`keeping ${o.key}: written again during this run`);
        return false;
      }
      await remove(o.key, fresh.size);
      return true;
    };

    await hooks.afterPhase?.('start');

    // 1. Roots: manifest records, and what they reference.
    const live = new Set<string>();
    const manifestCutoff = options.manifestMaxAgeSeconds === undefined ? undefined : startedAt - options.manifestMaxAgeSeconds * 1000;
    for await (const o of storage.list('manifests')) {
      if (manifestCutoff !== undefined && (await removeIfOlder(o, manifestCutoff))) {
        report.manifestsRemoved++;
        continue;
      }
      const raw = await storage.read(o.key);
      if (!raw) continue;
      const decoded = decodeRecord<ManifestRecordRefs>(raw);
      if (!decoded.ok) {
        // An unreadable record protects nothing; it goes once it is old.
        await removeIfOlder(o, cutoff);
        continue;
      }
      report.manifestsKept++;
      for (const d of manifestDigests(decoded.record)) live.add(d);
    }
    await hooks.afterPhase?.('manifests');

    // 1b. Stored signatures: kept, with their blobs, while the manifest they sign lives.
    for await (const o of storage.list(SIGNATURES_PREFIX.slice(0, -1))) {
      const subject = subjectOfRecordKey(o.key);
      const raw = subject && live.has(subject) ? await storage.read(o.key) : null;
      const read = raw ? readRecord(o.key, raw) : undefined;
      if (read?.ok) {
        report.signaturesKept++;
        for (const b of artifactBlobs(read.artifact)) live.add(b.digest);
        continue;
      }
      await removeIfOlder(o, cutoff);
    }
    await hooks.afterPhase?.('signatures');

    // 2. Build-cache entries: kept when their blob is live or when they are young (a build is using them).
    const protectedByBuild = new Set<string>();
    for await (const o of storage.list('builds')) {
      const raw = await storage.read(o.key);
      const decoded = raw ? decodeRecord<{ digest?: string }>(raw) : undefined;
      const digest = decoded?.ok ? decoded.record.digest : undefined;
      const young = o.modified >= cutoff;
      if (digest && (live.has(digest) || young)) {
        if (young) protectedByBuild.add(digest);
        continue;
      }
      if (!(await removeIfOlder(o, cutoff)) && digest) protectedByBuild.add(digest);
    }
    await hooks.afterPhase?.('builds');

    // 3. Blobs nobody references.
    const removedDigests = new Set<string>();
    for await (const o of storage.list('blobs')) {
      if (!o.key.startsWith(BLOB_PREFIX)) continue;
      const digest = `sha256:${o.key.slice(BLOB_PREFIX.length)}`;
      if (live.has(digest) || protectedByBuild.has(digest) || !(await removeIfOlder(o, cutoff))) {
        report.blobsKept++;
        continue;
      }
      removedDigests.add(digest);
    }
    await hooks.afterPhase?.('blobs');

    // 4. Abandoned staging uploads (and markers of crashed runs), and build leases whose holder
    //    died (a live holder rewrites its lease every third of a lease period).
    for await (const o of storage.list('staging')) {
      if (o.key !== marker) await removeIfOlder(o, cutoff);
    }
    for await (const o of storage.list('leases')) await removeIfOlder(o, cutoff);
    await hooks.afterPhase?.('staging');

    // 5. Records written during the run that use a blob it removed: removed too, so that no
    //    stored record points at a missing blob (their images and layers are rebuilt).
    if (removedDigests.size > 0) {
      // A dry run removed nothing: what it would have removed is still listed.
      const wouldBeGone = new Set(options.dryRun ? report.removed.map((r) => r.key) : []);
      for (const prefix of ['manifests', 'builds'] as const) {
        for await (const o of storage.list(prefix)) {
          if (wouldBeGone.has(o.key)) continue;
          const raw = await storage.read(o.key);
          const decoded = raw ? decodeRecord<ManifestRecordRefs & { digest?: string }>(raw) : undefined;
          if (!decoded?.ok) continue;
          const uses = prefix === 'manifests' ? manifestDigests(decoded.record) : [decoded.record.digest];
          const missing = uses.find((d) => d !== undefined && removedDigests.has(d));
          if (!missing) continue;
          report.danglingRecordsRemoved.push(o.key);
          await remove(o.key, o.size, `: it uses ${missing}, removed by this run`);
        }
      }
    }
    return report;
  } finally {
    if (marker) await storage.delete(marker).catch(() => {});
  }
}

function manifestDigests(record: ManifestRecordRefs): string[] {
  const image = (r: ImageRecordRefs) => [
    r.config?.digest,
    r.oci?.digest,
    r.docker?.digest,
    ...(Array.isArray(r.layers) ? r.layers : []).map((l) => l?.digest),
    ...(Array.isArray(r.artifacts) && r.artifacts.length > 0 ? [...r.artifacts.flatMap((a) => [a?.manifest?.digest, a?.document?.digest]), EMPTY_CONFIG.digest] : []),
  ];
  const all = [...image(record), record.index?.oci?.digest, record.index?.docker?.digest, ...(Array.isArray(record.platforms) ? record.platforms : []).flatMap((p) => (p ? image(p) : []))];
  return all.filter((d): d is string => typeof d === 'string');
}

/**
 * Now, on the storage's clock: the modification time of a marker object written for it, down
 * to the whole second (S3 reports times in whole seconds, and the start must not be later than
 * the time the storage gives anything written after it).
 */
async function storageClock(storage: Storage, marker: string): Promise<number> {
  await storage.put(marker, 'nixery gc run\n', { contentType: 'text/plain' });
  const info = await storage.stat(marker);
  const modified = info?.modified || Date.now();
  return Math.floor(modified / 1000) * 1000;
}
