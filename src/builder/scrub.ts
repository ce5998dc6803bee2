// Storage scrub (compare zot's `scrub`): reads every blob and every cached record back and
// checks it against its digest and its references, so that damage (a flipped byte, a truncated
// upload, a lost blob, a damaged record) is found before a client pulls it.
//
// With `repair`, what is bad is removed: bad blobs, bad records, and records that use a bad or
// missing blob. That is enough to heal, because the registry rebuilds an image whose manifest
// record is missing and repacks a layer whose build record (or its blob) is missing; layers and
// manifests are deterministic, so the rebuilt image has the same digests. Blobs go before the
// records that use them (a pull in between then finds a record whose blob is missing, which
// rebuilds, rather than a bad blob that a rebuild would reuse), and nothing is removed that was
// rewritten after it was checked.
//
// Scrub removes only what it read and found bad; a failing backend (unreachable, erroring
// mid-read) stops the run with an error instead of making anything look bad.

import { mapLimit } from '../util/semaphore.js';
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { ObjectInfo, Storage } from '../storage/storage.js';
import { IMAGE_MANIFEST_MEDIA_TYPES, INDEX_MEDIA_TYPES, MEDIA_TYPES } from '../manifest/manifest.js';
import { DIGEST_REGEXP, blobKey } from './layout.js';
import { decodeRecord } from './records.js';
import { pinProblem } from './pin-record.js';
import { artifactBlobs, readRecord as readSignatureRecord, SIGNATURES_PREFIX, subjectOfRecordKey } from '../signing/store.js';

export interface ScrubOptions {
  /** Remove what is bad (and the records that use it). */
  repair: boolean;
  /** Blobs read at once (default 4). */
  concurrency?: number;
  /** Staging objects older than this are reported as leftovers (default one hour). */
  stagingAgeSeconds?: number;
  /** Now, ms since the epoch (for the staging age); tests use it. */
  now?: number;
  /** One line per finding, as it is found. */
  log?: (line: string) => void;
}

export interface ScrubFinding {
  key: string;
  why: string;
}

export interface ScrubReport {
  checked: { blobs: number; bytes: number; builds: number; manifests: number; pins: number; signatures: number };
  /** Bad objects, one per key. */
  bad: ScrubFinding[];
  /** Worth knowing but not bad: staging leftovers, keys that are not ours. */
  notes: ScrubFinding[];
  /** What `repair` removed. */
  removed: string[];
  /** Bad objects `repair` kept because they were rewritten after being checked (checked again next run). */
  changed: string[];
  repair: boolean;
}

/** What a blob turned out to be. */
interface BlobCheck {
  state: 'good' | 'bad' | 'missing';
  why?: string;
  /** Bytes read. */
  size: number;
  contentType?: string;
  version?: string;
  /** The bytes of small manifest and config blobs, kept for the structural checks. */
  bytes?: Buffer;
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

interface LayerRef {
  digest: string;
  size: number;
  diffId: string;
}

const BLOB_PREFIX = 'blobs/sha256/';
/** Manifests and configs are a few KB; anything this large is not one. */
const SMALL_BLOB_LIMIT = 4 * 1024 * 1024;
/** Records are a few KB; a larger one is damage, and is not read whole. */
const RECORD_LIMIT = 1024 * 1024;
const KEEP_BYTES = new Set<string>([...IMAGE_MANIFEST_MEDIA_TYPES, ...INDEX_MEDIA_TYPES, MEDIA_TYPES.ociConfig, MEDIA_TYPES.dockerConfig]);
/** The manifest type each index type lists (a family never points into the other). */
const INDEX_MEMBER_TYPE: Record<string, string> = { [MEDIA_TYPES.ociIndex]: MEDIA_TYPES.ociManifest, [MEDIA_TYPES.dockerManifestList]: MEDIA_TYPES.dockerManifest };

export async function scrubStorage(storage: Storage, options: ScrubOptions): Promise<ScrubReport> {
  const report: ScrubReport = { checked: { blobs: 0, bytes: 0, builds: 0, manifests: 0, pins: 0, signatures: 0 }, bad: [], notes: [], removed: [], changed: [], repair: options.repair };
  /** Bad keys → why, with the version that was checked (what repair may remove). */
  const bad = new Map<string, { why: string; version?: string; size: number }>();
  const markBad = (key: string, why: string, seen: { version?: string; size: number }) => {
    if (bad.has(key)) return;
    bad.set(key, { why, version: seen.version, size: seen.size });
    report.bad.push({ key, why });
    options.log?.(`bad ${key}: ${why}`);
  };
  const note = (key: string, why: string) => {
    report.notes.push({ key, why });
    options.log?.(`note ${key}: ${why}`);
  };

  // 1. Every blob through sha256, streamed.
  const blobs = new Map<string, Promise<BlobCheck>>();
  const verify = (digest: string): Promise<BlobCheck> => {
    let check = blobs.get(digest);
    if (!check) {
      check = verifyBlob(storage, digest);
      blobs.set(digest, check);
    }
    return check;
  };
  const listed: Array<{ digest: string; info: ObjectInfo }> = [];
  for await (const o of storage.list('blobs')) {
    const hex = o.key.startsWith(BLOB_PREFIX) ? o.key.slice(BLOB_PREFIX.length) : '';
    if (!/^[a-f0-9]{64}$/.test(hex)) {
      note(o.key, 'not a blob key (blobs/sha256/<64 hex>); left alone');
      continue;
    }
    listed.push({ digest: `sha256:${hex}`, info: o });
  }
  await mapLimit(listed, options.concurrency ?? 4, async ({ digest, info }) => {
    const check = await verify(digest);
    report.checked.blobs++;
    report.checked.bytes += check.size;
    if (check.state === 'bad') markBad(info.key, check.why!, check);
  });

  // 2. Manifest and index blobs: they parse, and what they reference exists and is good.
  for (const { digest, info } of listed) {
    const check = await verify(digest);
    if (check.state !== 'good' || !check.contentType) continue;
    const problem = IMAGE_MANIFEST_MEDIA_TYPES.has(check.contentType)
      ? await manifestBlobProblem(check, verify)
      : INDEX_MEDIA_TYPES.has(check.contentType)
        ? await indexBlobProblem(check, verify)
        : undefined;
    if (problem) markBad(info.key, problem, check);
  }
  /** Why a blob a record uses cannot be served, or undefined when it is fine. */
  const blobProblem = async (role: string, d: { digest: string; size: number }): Promise<string | undefined> => {
    const check = await verify(d.digest);
    if (check.state === 'missing') return `its ${role} ${d.digest} is missing`;
    if (check.state === 'bad' || bad.has(blobKey(d.digest))) return `its ${role} ${d.digest} is bad`;
    if (check.size !== d.size) return `its ${role} ${d.digest} has ${check.size} bytes, the record says ${d.size}`;
    return undefined;
  };

  /** Every record under `prefix` that decodes, with what `check` finds wrong with it. */
  const checkRecords = async (prefix: 'builds' | 'manifests' | 'pins', check: (record: unknown, key: string) => Promise<string | undefined>): Promise<void> => {
    for await (const o of storage.list(prefix)) {
      report.checked[prefix]++;
      const read = await readRecord(storage, o);
      if (!read) continue;
      const decoded = decodeRead(read);
      const problem = decoded.ok ? await check(decoded.record, o.key) : `unreadable: ${decoded.why}`;
      if (problem) markBad(o.key, problem, read.info);
    }
  };

  // 3. Build records: they decode, and their layer blob is there and good.
  await checkRecords('builds', async (record) => (isLayerRef(record) ? blobProblem('layer', record) : 'it is not a build record (digest, size, diffId)'));

  // 4. Manifest records (an image's, or a multi-platform index's): they decode, their blobs are
  //    there and good, and the manifests agree with them.
  await checkRecords('manifests', (record, key) =>
    isObject(record) && 'index' in record
      ? indexRecordProblem(storage, key, record, verify, blobProblem, markBad)
      : manifestRecordProblem(storage, key, record, verify, blobProblem, markBad),
  );

  // 5. Persisted source pins: they decode (a bad one is removed; the source pins the tag again).
  await checkRecords('pins', async (record) => pinProblem(record));

  // 5b. Stored signatures: each verifies with its public key over the payload it stands for (a
  //     bad one is removed; the registry signs again). Its blobs the registry writes again from
  //     the record when they are missing, so a missing one is only a note, as is a signature of
  //     a manifest that is gone (gc removes it).
  for await (const o of storage.list(SIGNATURES_PREFIX.slice(0, -1))) {
    report.checked.signatures++;
    const read = await readRecord(storage, o);
    if (!read) continue;
    const checked = read.raw ? readSignatureRecord(o.key, read.raw) : { ok: false as const, why: `it has ${read.info.size} bytes, too large for a record` };
    if (!checked.ok) {
      markBad(o.key, `unusable signature: ${checked.why}`, read.info);
      continue;
    }
    const subject = subjectOfRecordKey(o.key)!;
    if ((await verify(subject)).state === 'missing') note(o.key, `signs ${subject}, which is gone (nixery gc removes the signature)`);
    for (const b of artifactBlobs(checked.artifact)) {
      if ((await verify(b.digest)).state === 'missing') note(o.key, `its blob ${b.digest} is missing (the registry writes it again from the record)`);
    }
  }

  // 6. Staging leftovers: uploads of crashed processes (gc removes them).
  const now = options.now ?? Date.now();
  const stagingAgeMs = (options.stagingAgeSeconds ?? 3600) * 1000;
  for await (const o of storage.list('staging')) {
    if (now - o.modified > stagingAgeMs) note(o.key, `leftover upload of ${o.size} bytes, last written ${new Date(o.modified).toISOString()} (nixery gc removes it)`);
  }

  if (options.repair) {
    // Blobs first, then the records that use them (see the top of this file).
    const order = [...bad.keys()].sort((a, b) => Number(!a.startsWith(BLOB_PREFIX)) - Number(!b.startsWith(BLOB_PREFIX)));
    for (const key of order) {
      const seen = bad.get(key)!;
      const current = await storage.stat(key);
      if (current && !sameVersion(seen, current)) {
        report.changed.push(key);
        options.log?.(`kept ${key}: rewritten since it was checked; scrub again`);
        continue;
      }
      if (current) await storage.delete(key);
      report.removed.push(key);
      options.log?.(`removed ${key}`);
    }
  }
  return report;
}

/** Reads a blob through sha256 and compares it with its key. */
async function verifyBlob(storage: Storage, digest: string): Promise<BlobCheck> {
  const opened = await storage.open(blobKey(digest));
  if (!opened) return { state: 'missing', size: 0 };
  const { info } = opened;
  const hash = createHash('sha256');
  const keep = info.contentType !== undefined && KEEP_BYTES.has(info.contentType) && info.size <= SMALL_BLOB_LIMIT;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of opened.stream as Readable & AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
    if (keep && size <= SMALL_BLOB_LIMIT) chunks.push(chunk);
  }
  const result: BlobCheck = { state: 'good', size, contentType: info.contentType, version: info.version };
  const actual = `sha256:${hash.digest('hex')}`;
  if (actual !== digest) return { ...result, state: 'bad', why: `its content hashes to ${actual}${size !== info.size ? ` (${size} of ${info.size} bytes read)` : ''}` };
  if (size !== info.size) return { ...result, state: 'bad', why: `storage says ${info.size} bytes, ${size} were read` };
  if (keep && size <= SMALL_BLOB_LIMIT) result.bytes = Buffer.concat(chunks);
  return result;
}

type Verify = (digest: string) => Promise<BlobCheck>;

interface ImageManifest {
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

interface ManifestRecordBody {
  config: Descriptor;
  oci: Descriptor;
  docker: Descriptor;
  layers: LayerRef[];
}

/** A manifest blob that does not parse, or uses a missing or bad blob. */
async function manifestBlobProblem(check: BlobCheck, verify: Verify): Promise<string | undefined> {
  const manifest = asImageManifest(parseJson(check.bytes));
  if (!manifest) return `stored as ${check.contentType} but it is not an image manifest`;
  if (manifest.mediaType !== undefined && manifest.mediaType !== check.contentType) return `it says it is ${manifest.mediaType} but is stored as ${check.contentType}`;
  const refs = [{ role: 'config', d: manifest.config }, ...manifest.layers.map((d, i) => ({ role: `layer ${i + 1}`, d }))];
  for (const { role, d } of refs) {
    const used = await verify(d.digest);
    if (used.state === 'missing') return `its ${role} ${d.digest} is missing`;
    if (used.state === 'bad') return `its ${role} ${d.digest} is bad`;
    if (used.size !== d.size) return `its ${role} ${d.digest} has ${used.size} bytes, the manifest says ${d.size}`;
  }
  return undefined;
}

/** An index blob that does not parse, or lists a manifest that is missing, bad or of the other family. */
async function indexBlobProblem(check: BlobCheck, verify: Verify): Promise<string | undefined> {
  const index = asIndex(parseJson(check.bytes));
  if (!index) return `stored as ${check.contentType} but it is not an image index`;
  if (index.mediaType !== check.contentType) return `it says it is ${index.mediaType ?? '(no media type)'} but is stored as ${check.contentType}`;
  for (const [i, d] of index.manifests.entries()) {
    const role = `manifest ${i + 1}`;
    if (d.mediaType !== INDEX_MEMBER_TYPE[check.contentType!]) return `its ${role} is ${d.mediaType}, not ${INDEX_MEMBER_TYPE[check.contentType!]}`;
    const used = await verify(d.digest);
    if (used.state === 'missing') return `its ${role} ${d.digest} is missing`;
    if (used.state === 'bad') return `its ${role} ${d.digest} is bad`;
    if (used.size !== d.size) return `its ${role} ${d.digest} has ${used.size} bytes, the index says ${d.size}`;
    if (used.contentType !== d.mediaType) return `its ${role} ${d.digest} is stored as ${used.contentType ?? '(none)'}, the index says ${d.mediaType}`;
  }
  return undefined;
}

/**
 * Why a multi-platform index record cannot be trusted, or undefined: each platform's part is an
 * image record (checked as one), and each index blob lists exactly those platforms' manifests.
 */
async function indexRecordProblem(
  storage: Storage,
  key: string,
  body: Record<string, unknown>,
  verify: Verify,
  blobProblem: (role: string, d: { digest: string; size: number }) => Promise<string | undefined>,
  markBad: (key: string, why: string, seen: { version?: string; size: number }) => void,
): Promise<string | undefined> {
  const index = body.index;
  const platforms = body.platforms;
  if (!isObject(index) || !isDescriptor(index.oci) || !isDescriptor(index.docker) || !Array.isArray(platforms) || platforms.length === 0) {
    return 'it is not an index record (index: oci, docker; platforms)';
  }
  for (const [i, part] of platforms.entries()) {
    if (!isObject(part) || typeof part.platform !== 'string') return `its platform ${i + 1} has no platform name`;
    const problem = await manifestRecordProblem(storage, key, part, verify, blobProblem, markBad);
    if (problem) return `${part.platform}: ${problem}`;
  }
  const parts = platforms as Array<ManifestRecordBody & { platform: string }>;
  const expectedTypes = { oci: MEDIA_TYPES.ociIndex, docker: MEDIA_TYPES.dockerManifestList };
  for (const form of ['oci', 'docker'] as const) {
    const d = index[form] as Descriptor;
    if (d.mediaType !== expectedTypes[form]) return `its ${form} index has media type ${d.mediaType}, expected ${expectedTypes[form]}`;
    const problem = await blobProblem(`${form} index`, d);
    if (problem) return problem;
    const check = await verify(d.digest);
    if (check.contentType !== d.mediaType) {
      markBad(blobKey(d.digest), `stored with content type ${check.contentType ?? '(none)'}, but ${key} uses it as ${d.mediaType}`, check);
      return `its ${form} index ${d.digest} is bad`;
    }
    const parsed = asIndex(parseJson(await smallBlobBytes(storage, d.digest, check)));
    if (!parsed) return `its ${form} index ${d.digest} is not an image index`;
    const listed = parsed.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture} ${m.digest}/${m.size}`).join(' ');
    const expected = parts.map((p) => `${p.platform} ${p[form].digest}/${p[form].size}`).join(' ');
    if (listed !== expected) return `its ${form} index lists other manifests or platforms than the record`;
  }
  return undefined;
}

/** Why a manifest record cannot be trusted, or undefined. */
async function manifestRecordProblem(
  storage: Storage,
  key: string,
  body: unknown,
  verify: Verify,
  blobProblem: (role: string, d: { digest: string; size: number }) => Promise<string | undefined>,
  markBad: (key: string, why: string, seen: { version?: string; size: number }) => void,
): Promise<string | undefined> {
  const record = asManifestRecord(body);
  if (!record) return 'it is not a manifest record (config, oci, docker, layers)';
  const uses: Array<[string, { digest: string; size: number }]> = [
    ['config', record.config],
    ['OCI manifest', record.oci],
    ['Docker manifest', record.docker],
    ...record.layers.map((l, i): [string, LayerRef] => [`layer ${i + 1}`, l]),
  ];
  for (const [role, d] of uses) {
    const problem = await blobProblem(role, d);
    if (problem) return problem;
  }
  const artifactProblem = await artifactsProblem(storage, body, record.oci, verify, blobProblem);
  if (artifactProblem) return artifactProblem;
  const layerList = record.layers.map((l) => `${l.digest}/${l.size}`).join(' ');
  const expectedTypes = { oci: MEDIA_TYPES.ociManifest, docker: MEDIA_TYPES.dockerManifest };
  for (const form of ['oci', 'docker'] as const) {
    const d = record[form];
    if (d.mediaType !== expectedTypes[form]) return `its ${form} manifest has media type ${d.mediaType}, expected ${expectedTypes[form]}`;
    const check = await verify(d.digest);
    // The registry serves a manifest by digest only with its media type as content type, and a
    // rebuild does not rewrite a blob that exists: such a blob is bad.
    if (check.contentType !== d.mediaType) {
      markBad(blobKey(d.digest), `stored with content type ${check.contentType ?? '(none)'}, but ${key} uses it as ${d.mediaType}`, check);
      return `its ${form} manifest ${d.digest} is bad`;
    }
    const manifest = asImageManifest(parseJson(await smallBlobBytes(storage, d.digest, check)));
    if (!manifest) return `its ${form} manifest ${d.digest} is not an image manifest`;
    if (manifest.config.digest !== record.config.digest) return `its ${form} manifest names config ${manifest.config.digest}, the record ${record.config.digest}`;
    if (manifest.layers.map((l) => `${l.digest}/${l.size}`).join(' ') !== layerList) return `its ${form} manifest lists other layers than the record`;
  }
  const config = parseJson(await smallBlobBytes(storage, record.config.digest, await verify(record.config.digest)));
  const diffIds = isObject(config) && isObject(config.rootfs) && Array.isArray(config.rootfs.diff_ids) ? config.rootfs.diff_ids : undefined;
  if (diffIds?.join(' ') !== record.layers.map((l) => l.diffId).join(' ')) return `its config ${record.config.digest} lists other layer diffIds than the record`;
  return undefined;
}

/**
 * Why a record's SBOM and provenance artifacts cannot be served, or undefined: each artifact
 * manifest and document is there and good, and the manifest refers to the record's image.
 */
async function artifactsProblem(
  storage: Storage,
  body: unknown,
  subject: Descriptor,
  verify: Verify,
  blobProblem: (role: string, d: { digest: string; size: number }) => Promise<string | undefined>,
): Promise<string | undefined> {
  const artifacts = isObject(body) ? body.artifacts : undefined;
  if (artifacts === undefined) return undefined;
  if (!Array.isArray(artifacts)) return 'its artifacts are not a list';
  for (const a of artifacts) {
    if (!isObject(a) || typeof a.artifactType !== 'string' || !isDescriptor(a.manifest) || !isDescriptor(a.document)) return 'an artifact is not { artifactType, manifest, document }';
    const role = `${a.artifactType} artifact`;
    const problem = (await blobProblem(`${role} manifest`, a.manifest)) ?? (await blobProblem(`${role} document`, a.document));
    if (problem) return problem;
    const manifest = parseJson(await smallBlobBytes(storage, a.manifest.digest, await verify(a.manifest.digest)));
    const refersTo = isObject(manifest) && isObject(manifest.subject) ? manifest.subject.digest : undefined;
    const carries = isObject(manifest) && Array.isArray(manifest.layers) && isObject(manifest.layers[0]) ? manifest.layers[0].digest : undefined;
    if (refersTo !== subject.digest || carries !== a.document.digest) return `its ${role} manifest ${a.manifest.digest} is not about ${subject.digest} and ${a.document.digest}`;
  }
  return undefined;
}

/**
 * The bytes of a small blob that was verified good: kept from the verification when its content
 * type said manifest or config, else read again (and hashed again: it may have changed since).
 */
async function smallBlobBytes(storage: Storage, digest: string, check: BlobCheck): Promise<Buffer | undefined> {
  if (check.bytes) return check.bytes;
  if (check.state !== 'good' || check.size > SMALL_BLOB_LIMIT) return undefined;
  const bytes = await storage.read(blobKey(digest));
  if (!bytes || `sha256:${createHash('sha256').update(bytes).digest('hex')}` !== digest) return undefined;
  return bytes;
}

function asImageManifest(v: unknown): ImageManifest | undefined {
  if (!isObject(v) || v.schemaVersion !== 2 || !isDescriptor(v.config) || !Array.isArray(v.layers) || !v.layers.every(isDescriptor)) return undefined;
  if (v.mediaType !== undefined && typeof v.mediaType !== 'string') return undefined;
  return { mediaType: v.mediaType, config: v.config, layers: v.layers };
}

interface ImageIndexBody {
  mediaType?: string;
  manifests: Array<Descriptor & { platform?: { architecture?: string; os?: string } }>;
}

function asIndex(v: unknown): ImageIndexBody | undefined {
  if (!isObject(v) || v.schemaVersion !== 2 || !Array.isArray(v.manifests) || !v.manifests.every(isDescriptor)) return undefined;
  if (v.mediaType !== undefined && typeof v.mediaType !== 'string') return undefined;
  return { mediaType: v.mediaType, manifests: v.manifests as ImageIndexBody['manifests'] };
}

function asManifestRecord(v: unknown): ManifestRecordBody | undefined {
  if (!isObject(v) || !isDescriptor(v.config) || !isDescriptor(v.oci) || !isDescriptor(v.docker) || !Array.isArray(v.layers) || !v.layers.every(isLayerRef)) return undefined;
  return { config: v.config, oci: v.oci, docker: v.docker, layers: v.layers };
}

/** A record's bytes and info (raw undefined when it is too large to be one); null if it is gone. */
async function readRecord(storage: Storage, listed: ObjectInfo): Promise<{ raw?: Buffer; info: ObjectInfo } | null> {
  const opened = await storage.open(listed.key);
  if (!opened) return null;
  if (opened.info.size > RECORD_LIMIT) {
    opened.stream.destroy();
    return { info: opened.info };
  }
  const chunks: Buffer[] = [];
  for await (const chunk of opened.stream as Readable & AsyncIterable<Buffer>) chunks.push(chunk);
  return { raw: Buffer.concat(chunks), info: opened.info };
}

function decodeRead(read: { raw?: Buffer; info: ObjectInfo }): ReturnType<typeof decodeRecord<unknown>> {
  return read.raw ? decodeRecord<unknown>(read.raw) : { ok: false, why: `it has ${read.info.size} bytes, too large for a record` };
}

/** Whether the object still is the version that was checked. */
function sameVersion(seen: { version?: string; size: number }, now: ObjectInfo): boolean {
  if (seen.version !== undefined && now.version !== undefined) return seen.version === now.version;
  return seen.size === now.size;
}

function parseJson(bytes: Buffer | undefined): unknown {
  if (!bytes) return undefined;
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isDigest(v: unknown): v is string {
  return typeof v === 'string' && DIGEST_REGEXP.test(v);
}

function isSize(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function isDescriptor(v: unknown): v is Descriptor {
  return isObject(v) && typeof v.mediaType === 'string' && isDigest(v.digest) && isSize(v.size);
}

function isLayerRef(v: unknown): v is LayerRef {
  return isObject(v) && isDigest(v.digest) && isSize(v.size) && isDigest(v.diffId);
}
