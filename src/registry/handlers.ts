// Registry handlers: ping, manifests (by tag: build or cache; by digest: storage), blobs
// (storage, with Range and optional redirect), tags, referrers.

import { pipeline } from 'node:stream/promises';
import { validateName } from '../image/name.js';
import { BlobNotFoundError, InvalidDigestError, ManifestNotFoundError } from '../errors.js';
import { MEDIA_TYPES, MANIFEST_MEDIA_TYPES, sha256Digest, type Blob } from '../manifest/manifest.js';
import type { LruCache } from '../util/lru.js';
import { blobKey, DIGEST_REGEXP } from '../builder/layout.js';
import type { Storage } from '../storage/storage.js';
import type { RegistryService } from './service.js';
import { API_VERSION_HEADER, notModified, parseRange, sendCatalogueError, writeHead, type RequestContext } from './http.js';

export interface HandlerDeps {
  storage: Storage;
  service: RegistryService;
  /** Answer blob GETs with a redirect when the storage backend offers one. */
  blobRedirect: boolean;
  /** Hot blobs kept in memory (bounded by total bytes), or none. */
  blobCache?: LruCache<string, { bytes: Buffer; contentType?: string }>;
  /** Largest blob the hot-blob cache takes. */
  blobCacheMaxObject: number;
  /** Signed redirect URLs by method and key, and the lifetime they were signed for. */
  signedUrls?: LruCache<string, { url: string; reuseUntil: number }>;
  /** Recently seen blobs' size and type. */
  blobInfos?: LruCache<string, { info: { size: number; contentType?: string }; until: number }>;
  redirectTtlMs: number;
}

const IMMUTABLE = 'public, max-age=31536000, immutable';

export function ping(ctx: RequestContext): void {
  writeHead(ctx, 200, { 'Content-Type': 'application/json', 'Content-Length': 2 });
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : '{}');
}

/**
 * Which manifest form a client gets: OCI unless the Accept header names Docker schema 2 and not
 * the OCI manifest (clients that send no Accept, or `*\/*`, get OCI).
 */
export function negotiateManifest(accept: string | string[] | undefined): 'oci' | 'docker' {
  const types = new Set(
    (Array.isArray(accept) ? accept.join(',') : (accept ?? ''))
      .split(',')
      .map((t) => t.split(';')[0]!.trim().toLowerCase())
      .filter(Boolean),
  );
  if (types.has(MEDIA_TYPES.dockerManifest) && !types.has(MEDIA_TYPES.ociManifest)) return 'docker';
  return 'oci';
}

export async function manifest(ctx: RequestContext, deps: HandlerDeps, params: Record<string, string>): Promise<void> {
  const name = params.name!;
  const reference = params.reference!;
  if (reference.includes(':')) {
    validateName(name);
    await manifestByDigest(ctx, deps, reference);
    return;
  }
  // Validates the name and tag unless this exact name:tag was served before.
  const built = await deps.service.imageByTag(name, reference);
  ctx.log.cache = built.fromCache ? 'hit' : 'build';
  const form = negotiateManifest(ctx.req.headers.accept);
  sendManifest(ctx, built.manifests[form]);
}

async function manifestByDigest(ctx: RequestContext, deps: HandlerDeps, digest: string): Promise<void> {
  if (!DIGEST_REGEXP.test(digest)) throw new InvalidDigestError(`invalid digest ${JSON.stringify(digest.slice(0, 100))}: expected sha256:<64 hex>`);
  const key = blobKey(digest);
  const info = await deps.storage.stat(key);
  if (!info || !info.contentType || !MANIFEST_MEDIA_TYPES.has(info.contentType)) throw new ManifestNotFoundError(digest);
  const bytes = await deps.storage.read(key);
  if (!bytes) throw new ManifestNotFoundError(digest);
  ctx.log.cache = 'storage';
  sendManifest(ctx, { mediaType: info.contentType, digest, size: bytes.length, bytes });
}

function sendManifest(ctx: RequestContext, m: Blob): void {
  const etag = `"${m.digest}"`;
  const headers = { 'Docker-Content-Digest': m.digest, ETag: etag, 'Content-Type': m.mediaType };
  if (notModified(ctx.req, etag)) {
    writeHead(ctx, 304, headers);
    ctx.res.end();
    return;
  }
  writeHead(ctx, 200, { ...headers, 'Content-Length': m.size });
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : m.bytes);
}

export async function blob(ctx: RequestContext, deps: HandlerDeps, params: Record<string, string>): Promise<void> {
  validateName(params.name!);
  const digest = params.digest!;
  if (!DIGEST_REGEXP.test(digest)) throw new InvalidDigestError(`invalid digest ${JSON.stringify(digest.slice(0, 100))}: expected sha256:<64 hex>`);
  const key = blobKey(digest);
  const hot = deps.blobCache?.get(digest);
  const info = hot ? { size: hot.bytes.length, contentType: hot.contentType } : await blobInfo(deps, key, digest);
  if (!info) throw new BlobNotFoundError(digest);
  const etag = `"${digest}"`;
  const common: Record<string, string | number> = {
    'Docker-Content-Digest': digest,
    ETag: etag,
    'Cache-Control': IMMUTABLE,
    'Accept-Ranges': 'bytes',
    'Content-Type': info.contentType || 'application/octet-stream',
  };
  if (notModified(ctx.req, etag)) {
    writeHead(ctx, 304, common);
    ctx.res.end();
    return;
  }
  const rangeHeader = ctx.req.headers.range;
  // Ranged requests are answered here so they get a real 206 (zot does the same).
  if (deps.blobRedirect && deps.storage.redirectUrl && !rangeHeader) {
    const url = await signedUrl(deps, key, ctx.req.method === 'HEAD' ? 'HEAD' : 'GET');
    if (url) {
      ctx.log.redirect = true;
      writeHead(ctx, 307, { Location: url, 'Docker-Content-Digest': digest, 'Content-Length': 0 });
      ctx.res.end();
      return;
    }
  }
  const range = parseRange(rangeHeader, info.size);
  if (range.kind === 'unsatisfiable') {
    ctx.res.setHeader('Content-Range', `bytes */${info.size}`);
    sendCatalogueError(ctx, 'RANGE_INVALID', `range ${rangeHeader} not satisfiable for ${info.size} bytes`);
    return;
  }
  const partial = range.kind === 'partial';
  const start = partial ? range.start : 0;
  const end = partial ? range.end : info.size - 1;
  const headers = { ...common, 'Content-Length': end - start + 1 } as Record<string, string | number>;
  if (partial) headers['Content-Range'] = `bytes ${start}-${end}/${info.size}`;
  if (ctx.req.method === 'HEAD') {
    writeHead(ctx, partial ? 206 : 200, headers);
    ctx.res.end();
    return;
  }
  // Small, hot blobs (configs, most layers) are served from memory: one copy instead of a read
  // and a write per chunk. Larger ones are streamed.
  const bytes = hot?.bytes ?? (deps.blobCache && info.size <= deps.blobCacheMaxObject ? await loadHot(deps, key, digest, info) : null);
  if (bytes) {
    ctx.log.cache = hot ? 'memory' : 'storage';
    writeHead(ctx, partial ? 206 : 200, headers);
    ctx.res.end(partial ? bytes.subarray(start, end + 1) : bytes);
    return;
  }
  const stream = await deps.storage.get(key, partial ? { start, end } : undefined);
  if (!stream) throw new BlobNotFoundError(digest);
  writeHead(ctx, partial ? 206 : 200, headers);
  if (info.size === 0) {
    stream.destroy();
    ctx.res.end();
    return;
  }
  await pipeline(stream, ctx.res).catch((err: unknown) => {
    // The client went away mid-transfer; nothing to answer.
    ctx.log.aborted = String(err);
  });
}

/**
 * Size and type of a stored blob. Blobs are immutable, so a positive answer is remembered for a
 * minute (a round trip saved per request on object storage); only garbage collection removes
 * blobs, and only ones nothing references.
 */
async function blobInfo(deps: HandlerDeps, key: string, digest: string): Promise<{ size: number; contentType?: string } | null> {
  const now = Date.now();
  const known = deps.blobInfos?.get(digest);
  if (known && known.until > now) return known.info;
  const stat = await deps.storage.stat(key);
  if (!stat) return null;
  const info = { size: stat.size, contentType: stat.contentType };
  deps.blobInfos?.set(digest, { info, until: now + BLOB_INFO_TTL_MS });
  return info;
}

const BLOB_INFO_TTL_MS = 60_000;

/**
 * A signed URL for a blob, reused while it has most of its lifetime left: signing costs more
 * than the rest of a redirect, and clients get URLs valid for at least 3/4 of the TTL.
 */
async function signedUrl(deps: HandlerDeps, key: string, method: 'GET' | 'HEAD'): Promise<string | null> {
  const cacheKey = `${method} ${key}`;
  const now = Date.now();
  const hit = deps.signedUrls?.get(cacheKey);
  if (hit && hit.reuseUntil > now) return hit.url;
  const url = await deps.storage.redirectUrl!(key, { method });
  if (url && deps.signedUrls) deps.signedUrls.set(cacheKey, { url, reuseUntil: now + deps.redirectTtlMs / 4 });
  return url;
}

/** Reads a whole blob into the hot-blob cache, checking it is what its digest says. */
async function loadHot(deps: HandlerDeps, key: string, digest: string, info: { contentType?: string }): Promise<Buffer | null> {
  const bytes = await deps.storage.read(key);
  if (!bytes) throw new BlobNotFoundError(digest);
  if (sha256Digest(bytes) !== digest) throw new Error(`stored blob ${digest} does not match its digest`);
  deps.blobCache!.set(digest, { bytes, contentType: info.contentType });
  return bytes;
}

/** Any tag builds on demand, so the honest list is the one tag every source has. */
export function tags(ctx: RequestContext, params: Record<string, string>): void {
  validateName(params.name!);
  const n = new URL(ctx.req.url ?? '/', 'http://x').searchParams.get('n');
  const all = ['latest'];
  const list = n !== null && /^\d+$/.test(n) ? all.slice(0, Number(n)) : all;
  sendJson(ctx, 200, { name: params.name, tags: list });
}

/** We store no referring artifacts: an empty index, as the spec requires (not a 404). */
export function referrers(ctx: RequestContext, params: Record<string, string>): void {
  validateName(params.name!);
  if (!DIGEST_REGEXP.test(params.digest!)) throw new InvalidDigestError(`invalid digest ${JSON.stringify(params.digest!.slice(0, 100))}`);
  sendJson(ctx, 200, { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [] }, MEDIA_TYPES.ociIndex);
}

export function sendJson(ctx: RequestContext, status: number, value: unknown, contentType = 'application/json'): void {
  const body = Buffer.from(JSON.stringify(value));
  writeHead(ctx, status, { 'Content-Type': contentType, 'Content-Length': body.length });
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : body);
}

export { API_VERSION_HEADER };
