// Registry handlers: ping, the catalogue, manifests (by tag: build or cache, negotiated between
// the platforms' index and the default platform's manifest; by digest: storage), blobs (through
// the blob server), tags, referrers, and the probes. Handlers write as for GET: a HEAD request's
// response carries no body (routes.ts). For a client restricted to some repositories (a bearer
// token's grants), something asked for by digest is served under a name only when the image that
// name resolves to holds it, as distribution does: a token for one repository reads nothing of
// another. Clients that may pull every repository could read it under its own name anyway.

import { compareStrings, validateName } from '../image/name.js';
import { BlobNotFoundError, InvalidDigestError, ManifestNotFoundError, PaginationInvalidError } from '../errors.js';
import { MEDIA_TYPES, type Blob } from '../manifest/manifest.js';
import { DIGEST_REGEXP } from '../image/digest.js';
import { referrersTagDigest } from '../manifest/referrers.js';
import type { BlobServer } from './blob-server.js';
import type { Signatures } from '../service/signatures.js';
import { SIGNATURE_TAG } from '../signing/cosign.js';
import type { RegistryService } from '../service/registry-service.js';
import type { Readiness } from '../service/readiness.js';
import type { RegistryMetrics } from './observer.js';
import type { Admission } from '../service/admission.js';
import { API_VERSION_HEADER, notModified, writeHead, type RequestContext } from './http.js';

export interface HandlerDeps {
  service: RegistryService;
  blobs: BlobServer;
  /** Signatures (cosign format) of what is served; with signing off it knows none. */
  signatures?: Signatures;
}

export function ping(ctx: RequestContext): void {
  writeHead(ctx, 200, { 'Content-Type': 'application/json', 'Content-Length': 2 });
  ctx.res.end('{}');
}

export function healthz(ctx: RequestContext): void {
  text(ctx, 200, 'text/plain; charset=utf-8', 'ok\n');
}

export async function readyz(ctx: RequestContext, readiness: Readiness, draining: boolean): Promise<void> {
  const report = draining ? { ready: false, draining: true, checks: {} } : await readiness.report();
  text(ctx, report.ready ? 200 : 503, 'application/json', `${JSON.stringify(report)}\n`);
}

export async function metricsText(ctx: RequestContext, metrics: RegistryMetrics): Promise<void> {
  const { contentType, body } = await metrics.expose();
  text(ctx, 200, contentType, body);
}

function text(ctx: RequestContext, status: number, contentType: string, body: string): void {
  const bytes = Buffer.from(body);
  writeHead(ctx, status, { 'Content-Type': contentType, 'Content-Length': bytes.length, 'Cache-Control': 'no-store' });
  ctx.res.end(bytes);
}

/**
 * `/v2/_catalog`: the repositories whose images are built (sorted), those the client may pull,
 * paged with `n` and `last` as tags are.
 */
export async function catalog(ctx: RequestContext, deps: HandlerDeps, admission: Admission): Promise<void> {
  const query = new URL(ctx.req.url ?? '/', 'http://x').searchParams;
  const names = (await deps.service.repositories()).filter((name) => admission.mayPull(name));
  const page = paginate(names, query.get('n'), query.get('last'));
  const headers: Record<string, string> = {};
  if (page.next) headers.Link = `</v2/_catalog?n=${page.next.n}&last=${encodeURIComponent(page.next.last)}>; rel="next"`;
  sendJson(ctx, 200, { repositories: page.tags }, 'application/json', headers);
}

/** What a manifest request by tag is answered with. */
export interface ManifestChoice {
  /** True: the index over the image's platforms; false: the first (default) platform's manifest. */
  index: boolean;
  /** Which family: OCI, or Docker schema 2 (an index in the Docker family is a manifest list). */
  form: 'oci' | 'docker';
}

/**
 * Content negotiation for a manifest by tag. Only the media types a client names count (q=0
 * refuses one); `*\/*`, no Accept, or naming none of ours gets the first platform's OCI
 * manifest, as distribution downgrades an index for clients that do not ask for one.
 * - Several platforms: an OCI index if accepted, else a Docker manifest list if accepted (a
 *   Docker-only client), else the first platform's manifest.
 * - One platform: its manifest, OCI unless only the Docker form is accepted; a client that
 *   accepts index forms only gets an index of the one platform.
 * So a client that names only index types, or only manifest types, never gets another type.
 */
export function negotiateManifest(accept: string | string[] | undefined, platforms: number): ManifestChoice {
  // Clients send the same few Accept headers again and again: remember the answers.
  if (typeof accept !== 'string') return negotiate(accept, platforms);
  const remembered = platforms > 1 ? negotiatedSeveral : negotiatedOne;
  let choice = remembered.get(accept);
  if (choice === undefined) {
    choice = negotiate(accept, platforms);
    if (remembered.size >= 256) remembered.clear();
    remembered.set(accept, choice);
  }
  return choice;
}

const negotiatedOne = new Map<string, ManifestChoice>();
const negotiatedSeveral = new Map<string, ManifestChoice>();

function negotiate(accept: string | string[] | undefined, platforms: number): ManifestChoice {
  const types = acceptedTypes(accept);
  const manifestForm = types.has(MEDIA_TYPES.ociManifest) ? 'oci' : types.has(MEDIA_TYPES.dockerManifest) ? 'docker' : undefined;
  const indexForm = types.has(MEDIA_TYPES.ociIndex) ? 'oci' : types.has(MEDIA_TYPES.dockerManifestList) ? 'docker' : undefined;
  if (indexForm && (platforms > 1 || !manifestForm)) return { index: true, form: indexForm };
  return { index: false, form: manifestForm ?? 'oci' };
}
/** The media types an Accept header names, without parameters, leaving out those with q=0. */
function acceptedTypes(accept: string | string[] | undefined): Set<string> {
  const types = new Set<string>();
  for (const entry of (Array.isArray(accept) ? accept.join(',') : (accept ?? '')).split(',')) {
    const [type, ...params] = entry.split(';').map((p) => p.trim().toLowerCase());
    if (!type) continue;
    const q = params.find((p) => /^q\s*=/.test(p));
    if (q !== undefined && Number(q.slice(q.indexOf('=') + 1).trim()) === 0) continue;
    types.add(type);
  }
  return types;
}

export async function manifest(ctx: RequestContext, deps: HandlerDeps, params: Record<string, string>, admission?: Admission): Promise<void> {
  const name = params.name!;
  const reference = params.reference!;
  if (reference.includes(':')) {
    validateName(name);
    await manifestByDigest(ctx, deps, name, reference, admission);
    return;
  }
  // The cosign tag scheme: `sha256-<hex>.sig` is the signature of that manifest, never a source tag.
  const sig = SIGNATURE_TAG.exec(reference);
  if (sig) {
    validateName(name);
    if (!deps.signatures) throw new ManifestNotFoundError(`no signature of sha256:${sig[1]} in ${name}`);
    ctx.log.cache = 'signature';
    sendManifest(ctx, await deps.signatures.signatureManifest(name, `sha256:${sig[1]}`, admission));
    return;
  }
  // The referrers tag schema, for clients without the referrers API: the same index.
  const subject = referrersTagDigest(reference);
  if (subject) {
    validateName(name);
    sendManifest(ctx, await deps.service.referrers(name, subject, admission));
    return;
  }
  // Validates the name and tag unless this exact name:tag was served before.
  const tagged = await deps.service.imageByTag(name, reference, admission);
  ctx.log.cache = tagged.fromCache ? 'hit' : 'build';
  const choice = negotiateManifest(ctx.req.headers.accept, tagged.images.length);
  sendManifest(ctx, choice.index ? (await deps.service.index(tagged))[choice.form] : tagged.images[0]!.manifests[choice.form]);
}

async function manifestByDigest(ctx: RequestContext, deps: HandlerDeps, name: string, digest: string, admission: Admission | undefined): Promise<void> {
  if (!DIGEST_REGEXP.test(digest)) throw new InvalidDigestError(`invalid digest ${JSON.stringify(digest.slice(0, 100))}: expected sha256:<64 hex>`);
  if (admission?.restricted && !deps.signatures?.contains(name, digest) && !(await deps.service.contains(name, digest))) throw new ManifestNotFoundError(`${digest} is not a manifest of ${name}`);
  const { bytes, mediaType } = await deps.blobs.manifest(digest, admission);
  ctx.log.cache = 'storage';
  sendManifest(ctx, { mediaType, digest, size: bytes.length, bytes });
}

function sendManifest(ctx: RequestContext, m: Blob): void {
  const etag = `"${m.digest}"`;
  if (notModified(ctx.req, etag)) {
    writeHead(ctx, 304, { 'Docker-Content-Digest': m.digest, ETag: etag, 'Content-Type': m.mediaType });
    ctx.res.end();
    return;
  }
  writeHead(ctx, 200, { 'Docker-Content-Digest': m.digest, ETag: etag, 'Content-Type': m.mediaType, 'Content-Length': m.size });
  ctx.res.end(m.bytes);
}

export async function blob(ctx: RequestContext, deps: HandlerDeps, params: Record<string, string>, admission?: Admission): Promise<void> {
  validateName(params.name!);
  const digest = params.digest!;
  if (!DIGEST_REGEXP.test(digest)) throw new InvalidDigestError(`invalid digest ${JSON.stringify(digest.slice(0, 100))}: expected sha256:<64 hex>`);
  if (admission?.restricted && !deps.signatures?.contains(params.name!, digest) && !(await deps.service.contains(params.name!, digest))) throw new BlobNotFoundError(`${digest} is not a blob of ${params.name!}`);
  await deps.blobs.serve(ctx, digest, admission);
}

/**
 * The tags an image can be pulled with: the same for every name whose packages the source has,
 * those the package source can serve (a git source's branches and tags, a channel source's channels, `latest`).
 */
export async function tags(ctx: RequestContext, deps: HandlerDeps, params: Record<string, string>, admission?: Admission): Promise<void> {
  const name = params.name!;
  validateName(name);
  const query = new URL(ctx.req.url ?? '/', 'http://x').searchParams;
  // A name whose packages the source does not have is no repository: 404 NAME_UNKNOWN.
  await deps.service.checkName(name, admission);
  const page = paginate(await deps.service.tags(), query.get('n'), query.get('last'));
  const headers: Record<string, string> = {};
  if (page.next) headers.Link = `</v2/${name}/tags/list?n=${page.next.n}&last=${encodeURIComponent(page.next.last)}>; rel="next"`;
  sendJson(ctx, 200, { name, tags: page.tags }, 'application/json', headers);
}

/**
 * One page of a sorted tag list, as the distribution spec pages: after `last` (exclusive), at
 * most `n` (all without it; none for 0), and where the next page starts when there is one.
 */
export function paginate(all: readonly string[], n: string | null, last: string | null): { tags: string[]; next?: { n: number; last: string } } {
  let limit: number | undefined;
  if (n !== null && n !== '') {
    if (!/^\d{1,9}$/.test(n)) throw new PaginationInvalidError(`invalid number of results requested: n=${JSON.stringify(n.slice(0, 20))}`);
    limit = Number(n);
  }
  const after = last === null || last === '' ? all : all.filter((t) => compareStrings(t, last) > 0);
  if (limit === undefined) return { tags: [...after] };
  const page = after.slice(0, limit);
  return limit > 0 && after.length > limit ? { tags: page, next: { n: limit, last: page.at(-1)! } } : { tags: page };
}

/**
 * The referrers of a manifest (OCI 1.1): its SBOMs and provenance, its signature when signing is
 * on (the service's referrer sources), as an image index; an empty one for a manifest without
 * any (the spec's answer, not a 404). `?artifactType=` keeps those of one type, and says so in
 * `OCI-Filters-Applied`.
 */
export async function referrers(ctx: RequestContext, deps: HandlerDeps, params: Record<string, string>, admission?: Admission): Promise<void> {
  validateName(params.name!);
  if (!DIGEST_REGEXP.test(params.digest!)) throw new InvalidDigestError(`invalid digest ${JSON.stringify(params.digest!.slice(0, 100))}`);
  const artifactType = new URL(ctx.req.url ?? '/', 'http://x').searchParams.get('artifactType') ?? undefined;
  const index = await deps.service.referrers(params.name!, params.digest!, admission, artifactType);
  writeHead(ctx, 200, { ...(artifactType !== undefined ? { 'OCI-Filters-Applied': 'artifactType' } : {}), 'Content-Type': index.mediaType, 'Content-Length': index.size });
  ctx.res.end(index.bytes);
}

export function sendJson(ctx: RequestContext, status: number, value: unknown, contentType = 'application/json', headers: Record<string, string> = {}): void {
  const body = Buffer.from(JSON.stringify(value));
  writeHead(ctx, status, { ...headers, 'Content-Type': contentType, 'Content-Length': body.length });
  ctx.res.end(body);
}

export { API_VERSION_HEADER };
