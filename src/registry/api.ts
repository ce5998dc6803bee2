// The /api/v1 endpoints: builds with live progress (also the pre-warm feature) and package
// search. Builds go through the registry service like pulls (one build per image, the same
// slots, queue and admission); errors are the registry's OCI JSON errors. A build makes what a
// pull of the tag gets (every configured platform, and their index), or the platforms asked for.
//
//   POST /api/v1/builds              {"image": "shell/git:latest"} → 202, Location, the status
//                                    (optional `config`: an image pulled by digest, image/config.ts)
//   GET  /api/v1/builds/<id>         the status (builds.ts)
//   GET  /api/v1/builds/<id>/events  the status as server-sent events until the build ends
//   GET  /api/v1/packages?q=&limit=  search the pinned package set (package-index.ts)

import type { ServerResponse } from 'node:http';
import { ARM64, parseReference, type Architecture, type ImageRequest } from '../image/name.js';
import { isEmptyConfig, validateImageConfig } from '../image/config.js';
import { canonicalPlatform, forPlatforms } from '../image/platform.js';
import { InvalidTagError, NixeryError, PaginationInvalidError, TooManyConnectionsError } from '../errors.js';
import type { PackageIndex } from '../builder/package-index.js';
import type { Admission } from '../service/admission.js';
import { BuildTracker, isFinal, type BuildStatus } from '../service/build-tracker.js';
import { writeHead, type RequestContext } from './http.js';

export interface ApiDeps {
  builds: BuildTracker;
  /** Package search; without it /api/v1/packages is 404. */
  packages?: PackageIndex;
}

/** Largest request body accepted (a build request is a few dozen bytes). */
const MAX_BODY_BYTES = 16 * 1024;
/** Longest image reference accepted in a body (names are at most 255 characters, tags 128). */
const MAX_REFERENCE = 400;
/** A comment line this often keeps proxies from closing a quiet event stream. */
const HEARTBEAT_MS = 15_000;
/** An event stream whose client has this much unread is closed. */
const MAX_UNSENT_BYTES = 1 << 20;
/** Longest `platforms` list accepted (there are few platforms; a longer list is a mistake). */
const MAX_PLATFORMS = 16;
const SEARCH_LIMIT_DEFAULT = 50;
const SEARCH_LIMIT_MAX = 1000;
const QUERY_MAX = 200;

/** The open event streams, so a shutdown can end them (their builds end with the process). */
export class EventStreams {
  private readonly open = new Set<ServerResponse>();
  /** Set by endAll: streams opened from then on send the status once and end. */
  closing = false;
  /** At most `max` open at once (each holds a connection while its build runs). */
  constructor(readonly max = Infinity) {}
  /** Throws (503) when `max` streams are open. */
  admit(): void {
    if (this.open.size >= this.max) throw new TooManyConnectionsError('TOO_MANY_CONNECTIONS', `too many build event streams are open (NIXERY_MAX_EVENT_STREAMS=${this.max}); poll /api/v1/builds/<id> or retry shortly`);
  }
  add(res: ServerResponse): () => void {
    this.open.add(res);
    return () => this.open.delete(res);
  }
  endAll(): void {
    this.closing = true;
    for (const res of this.open) res.end();
    this.open.clear();
  }
  get size(): number {
    return this.open.size;
  }
}

/** POST /api/v1/builds: validates the body and the client's right to build, then starts (or joins) the build. */
export async function createBuild(ctx: RequestContext, deps: ApiDeps, admission: Admission): Promise<void> {
  const body = await readJsonBody(ctx);
  const { images, requested } = buildRequest(body, deps.builds.platforms);
  const allowed = admission.mayBuild(requested.name);
  const status = await deps.builds.start(images, requested, allowed);
  ctx.log.build = status.id;
  sendJson(ctx, 202, status, { Location: `/api/v1/builds/${status.id}` });
}

/** GET /api/v1/builds/<id>: a build of an image the client may not pull is unknown to it. */
export function getBuild(ctx: RequestContext, deps: ApiDeps, params: Record<string, string>, admission: Admission): void {
  sendJson(ctx, 200, visibleBuild(deps, params.id!, admission));
}

function visibleBuild(deps: ApiDeps, id: string, admission: Admission): BuildStatus {
  const status = deps.builds.get(id);
  if (!status || !admission.mayPull(status.image.slice(0, status.image.lastIndexOf(':')))) throw unknownBuild(id);
  return status;
}

/**
 * GET /api/v1/builds/<id>/events: `event: status` with the status JSON at once and on every
 * change (throttled by the tracker), ending after the final state. Resolves when the stream ends.
 */
export async function buildEvents(ctx: RequestContext, deps: ApiDeps, params: Record<string, string>, streams: EventStreams, admission: Admission): Promise<void> {
  const { res } = ctx;
  const id = params.id!;
  visibleBuild(deps, id, admission);
  streams.admit();
  writeHead(ctx, 200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-store',
    // nginx and similar proxies would otherwise buffer the stream.
    'X-Accel-Buffering': 'no',
  });
  res.flushHeaders();
  await new Promise<void>((resolve) => {
    let unwatch: (() => void) | undefined;
    let done = false;
    const forget = streams.add(res);
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS);
    const finish = (): void => {
      done = true;
      clearInterval(heartbeat);
      unwatch?.();
      forget();
      if (!res.writableEnded) res.end();
      resolve();
    };
    res.once('close', finish);
    unwatch = deps.builds.watch(id, (status: BuildStatus) => {
      if (res.writableLength > MAX_UNSENT_BYTES) {
        // A client that stopped reading: let it go rather than buffer for it.
        res.destroy();
        return;
      }
      res.write(`event: status\ndata: ${JSON.stringify(status)}\n\n`);
      if (isFinal(status)) finish();
    });
    // Already final (the first event was the last), forgotten meanwhile, or shutting down.
    if (done || !unwatch || streams.closing) finish();
  });
}

/** GET /api/v1/packages?q=TEXT&limit=N: the package index's answer (state, revision, matches). */
export async function searchPackages(ctx: RequestContext, deps: ApiDeps): Promise<void> {
  if (!deps.packages) throw new NixeryError('NOT_FOUND', 'package search is not available here');
  const query = new URL(ctx.req.url ?? '/', 'http://x').searchParams;
  const q = query.get('q') ?? '';
  if (q.length > QUERY_MAX) throw new NixeryError('QUERY_INVALID', `q is ${q.length} characters long (at most ${QUERY_MAX})`);
  const limitParam = query.get('limit');
  let limit = SEARCH_LIMIT_DEFAULT;
  if (limitParam !== null && limitParam !== '') {
    if (!/^\d{1,9}$/.test(limitParam) || Number(limitParam) < 1 || Number(limitParam) > SEARCH_LIMIT_MAX) {
      throw new PaginationInvalidError(`invalid number of results requested: limit=${JSON.stringify(limitParam.slice(0, 20))} (1 to ${SEARCH_LIMIT_MAX})`);
    }
    limit = Number(limitParam);
  }
  const answer = await deps.packages.search(q, limit);
  ctx.log.packages = answer.state;
  sendJson(ctx, 200, answer);
}

/**
 * The images a build body asks for (one per platform), the name and tag validated as a pull's
 * are; `configured`: the registry's platforms.
 */
function buildRequest(body: unknown, configured: readonly Architecture[]): { images: ImageRequest[]; requested: { name: string; tag: string } } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalidBody('the body must be a JSON object such as {"image": "shell/git:latest"}');
  const fields = body as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((k) => k !== 'image' && k !== 'platforms' && k !== 'config');
  if (unknown.length > 0) throw invalidBody(`unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k.slice(0, 50))).join(', ')}: expected image (and platforms, config)`);
  const ref = fields.image;
  if (typeof ref !== 'string' || ref === '') throw invalidBody('image must be an image reference such as "shell/git:latest"');
  if (ref.length > MAX_REFERENCE) throw invalidBody(`image is ${ref.length} characters long (at most ${MAX_REFERENCE})`);
  let image: ImageRequest;
  try {
    image = parseReference(ref);
  } catch (err) {
    // A pull's bad tag is a 404 (the conformance suite wants it); in a body it is a bad request.
    if (err instanceof InvalidTagError) throw invalidBody(err.message);
    throw err;
  }
  // A config makes another image than the tag's (pulled by digest); an empty one changes nothing.
  if (fields.config !== undefined && fields.config !== null) {
    const config = validateImageConfig(fields.config);
    if (!isEmptyConfig(config)) image = { ...image, config };
  }
  const colon = ref.lastIndexOf(':');
  const name = colon > ref.lastIndexOf('/') ? ref.slice(0, colon) : ref;
  return { images: platformImages(fields.platforms, image, name, configured), requested: { name, tag: image.tag } };
}

/**
 * The images to build: without `platforms`, what a pull of the tag gets (every configured
 * platform; an `arm64/…` name: linux/arm64 alone). `platforms` picks some of them: each a
 * configured platform (any spelling `NIXERY_PLATFORMS` takes; listed twice is once), built in
 * the configured order whatever the list's, so that all of them make the index a pull gets.
 */
function platformImages(platforms: unknown, image: ImageRequest, name: string, configured: readonly Architecture[]): ImageRequest[] {
  const all = forPlatforms(image, configured);
  if (platforms === undefined) return all;
  if (!Array.isArray(platforms) || platforms.length === 0 || platforms.length > MAX_PLATFORMS || !platforms.every((p) => typeof p === 'string')) {
    throw invalidBody(`platforms must be a non-empty list (at most ${MAX_PLATFORMS}) such as ["linux/amd64"]`);
  }
  const builds = all.map((i) => i.arch.platform).join(', ');
  const wanted = new Set<string>();
  for (const p of platforms) {
    const canonical = canonicalPlatform(p);
    const available = all.some((i) => i.arch.platform === canonical);
    if (!available) {
      const quoted = JSON.stringify(p.slice(0, 50));
      if (image.archRequested) throw invalidBody(`platform ${quoted} is not one this name builds: ${name} builds ${builds} only`);
      // The arm64 meta-package builds linux/arm64 whatever is configured.
      const hint = canonical === ARM64.platform ? ` (the name arm64/${name} builds ${ARM64.platform} alone)` : '';
      throw invalidBody(`platform ${quoted} ${canonical ? 'is not configured here' : 'is not supported'}: this registry builds ${builds} (NIXERY_PLATFORMS)${hint}`);
    }
    wanted.add(canonical!);
  }
  return all.filter((i) => wanted.has(i.arch.platform));
}

/** The request's JSON body: application/json, at most MAX_BODY_BYTES. */
async function readJsonBody(ctx: RequestContext): Promise<unknown> {
  const { req, res } = ctx;
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  // Also what keeps other web sites' forms from starting builds with a browser's credentials:
  // a cross-site application/json request needs a CORS preflight this registry never grants.
  if (type !== 'application/json') throw new NixeryError('MEDIA_TYPE_UNSUPPORTED', `the body must be application/json${type ? `, not ${type.slice(0, 100)}` : ''}`);
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) {
    res.shouldKeepAlive = false;
    throw new NixeryError('BODY_TOO_LARGE', `the body is ${declared} bytes (at most ${MAX_BODY_BYTES})`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      // The rest is not read: this connection ends with the answer.
      res.shouldKeepAlive = false;
      throw new NixeryError('BODY_TOO_LARGE', `the body is larger than ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw invalidBody('the body is not valid JSON');
  }
}

function invalidBody(message: string): NixeryError {
  return new NixeryError('BODY_INVALID', message);
}

function unknownBuild(id: string): NixeryError {
  return new NixeryError('BUILD_UNKNOWN', `no build ${JSON.stringify(id.slice(0, 64))} (finished builds are kept for a while, then forgotten)`);
}

function sendJson(ctx: RequestContext, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = Buffer.from(JSON.stringify(value));
  writeHead(ctx, status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': body.length, 'Cache-Control': 'no-store' });
  ctx.res.end(body);
}
