// Registry handlers: ping, manifests (by tag: build or cache; by digest: storage), blobs
// (through the blob server), tags, referrers.

import { validateName } from '../image/name.js';
import { InvalidDigestError } from '../errors.js';
import { MEDIA_TYPES, type Blob } from '../manifest/manifest.js';
import { DIGEST_REGEXP } from '../builder/layout.js';
import type { BlobServer } from './blob-server.js';
import type { RegistryService } from './service.js';
import type { Admission } from './access.js';
import { API_VERSION_HEADER, notModified, writeHead, type RequestContext } from './http.js';

export interface HandlerDeps {
  service: RegistryService;
  blobs: BlobServer;
}

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

export async function manifest(ctx: RequestContext, deps: HandlerDeps, params: Record<string, string>, admission?: Admission): Promise<void> {
  const name = params.name!;
  const reference = params.reference!;
  if (reference.includes(':')) {
    validateName(name);
    await manifestByDigest(ctx, deps, reference);
    return;
  }
  // Validates the name and tag unless this exact name:tag was served before.
  const built = await deps.service.imageByTag(name, reference, admission);
  ctx.log.cache = built.fromCache ? 'hit' : 'build';
  const form = negotiateManifest(ctx.req.headers.accept);
  sendManifest(ctx, built.manifests[form]);
}

async function manifestByDigest(ctx: RequestContext, deps: HandlerDeps, digest: string): Promise<void> {
  if (!DIGEST_REGEXP.test(digest)) throw new InvalidDigestError(`invalid digest ${JSON.stringify(digest.slice(0, 100))}: expected sha256:<64 hex>`);
  const { bytes, mediaType } = await deps.blobs.manifest(digest);
  ctx.log.cache = 'storage';
  sendManifest(ctx, { mediaType, digest, size: bytes.length, bytes });
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
  await deps.blobs.serve(ctx, digest);
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
