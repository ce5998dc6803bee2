// The registry's HTTP server: route table dispatch, one JSON log line per request, errors
// mapped through the catalogue. Plain node:http: the hot path (cached manifests, blobs) is
// short and allocation-light.

import http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { Storage } from '../storage/storage.js';
import type { RegistryService } from './service.js';
import { matchRoute } from './routes.js';
import { sendCatalogueError, sendError, writeHead, type RequestContext } from './http.js';
import { blob, manifest, ping, referrers, tags, type HandlerDeps } from './handlers.js';
import { renderIndexPage } from './index-page.js';
import { nixStats } from '../nix/run.js';
import { LruCache } from '../util/lru.js';
import { trackConnections, type DrainResult } from './shutdown.js';

export interface RegistryLogger {
  info(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface RegistryOptions {
  storage: Storage;
  service: RegistryService;
  blobRedirect: boolean;
  /** Memory for hot blobs, bytes (0: none). */
  blobCacheBytes: number;
  /** Lifetime of the storage backend's signed URLs. */
  redirectTtlSeconds: number;
  log: RegistryLogger;
  /** Describes the package source on the index page. */
  sourceDescription: string;
  version: string;
}

export interface Registry {
  server: http.Server;
  handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void>;
  /** Counters, as served at /metrics. */
  metrics(): Record<string, number>;
  /** True once a shutdown drain has started (see shutdown.ts). */
  isDraining(): boolean;
  /** Stops accepting connections and finishes what is in flight, for at most `timeoutMs`. */
  drain(timeoutMs: number): Promise<DrainResult>;
}

export function createRegistry(options: RegistryOptions): Registry {
  const blobCache =
    options.blobCacheBytes > 0 ? new LruCache<string, { bytes: Buffer; contentType?: string }>(options.blobCacheBytes, (b) => b.bytes.length) : undefined;
  const deps: HandlerDeps = {
    storage: options.storage,
    service: options.service,
    blobRedirect: options.blobRedirect,
    blobCache,
    blobCacheMaxObject: Math.min(16 * 1024 * 1024, options.blobCacheBytes / 8),
    signedUrls: new LruCache(10_000),
    blobInfos: new LruCache(100_000),
    redirectTtlMs: options.redirectTtlSeconds * 1000,
  };
  const requests = { total: 0, errors: 0 };
  const idPrefix = randomBytes(3).toString('hex');
  let nextId = 0;

  const metrics = () => ({
    nixery_http_requests_total: requests.total,
    nixery_http_errors_total: requests.errors,
    nixery_nix_invocations_total: nixStats.invocations,
    nixery_image_builds_total: options.service.builder.buildsRun,
    nixery_image_cache_hits_total: options.service.stats.cacheHits,
    nixery_image_build_failures_total: options.service.stats.buildFailures,
    nixery_builds_rejected_total: options.service.stats.rejected,
    nixery_layers_packed_total: options.service.builder.layers.packed,
    nixery_builds_running: options.service.building,
    nixery_builds_queued: options.service.queued,
    nixery_blob_cache_bytes: blobCache?.weight ?? 0,
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const ctx: RequestContext = { req, res, path: q >= 0 ? url.slice(0, q) : url, id: `${idPrefix}-${(nextId++).toString(36)}`, log: {} };
    requests.total++;
    try {
      await dispatch(ctx);
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        ctx.log.err = String(err);
      } else {
        sendError(ctx, err);
      }
    }
    if (res.statusCode >= 400) requests.errors++;
    options.log.info(
      {
        req: ctx.id,
        method: req.method,
        path: ctx.path,
        status: res.statusCode,
        ms: Number(process.hrtime.bigint() - started) / 1e6,
        ...ctx.log,
      },
      'request',
    );
  }

  async function dispatch(ctx: RequestContext): Promise<void> {
    const method = ctx.req.method ?? 'GET';
    const match = matchRoute(method, ctx.path);
    if (match.kind === 'not-found') {
      sendCatalogueError(ctx, 'NOT_FOUND', `no such endpoint: ${method} ${ctx.path.slice(0, 200)}`);
      return;
    }
    if (match.kind === 'method-not-allowed') {
      ctx.res.setHeader('Allow', [...match.route.methods].join(', '));
      sendCatalogueError(ctx, 'UNSUPPORTED', `${method} is not supported on ${ctx.path.slice(0, 200)}: this registry is pull-only`);
      return;
    }
    const { route, params } = match;
    switch (route.name) {
      case 'upload':
        // Every method is refused above (pull-only); kept here so the switch covers all routes.
        return sendCatalogueError(ctx, 'UNSUPPORTED');
      case 'ping':
        return ping(ctx);
      case 'manifest':
        return manifest(ctx, deps, params);
      case 'blob':
        return blob(ctx, deps, params);
      case 'tags':
        return tags(ctx, params);
      case 'referrers':
        return referrers(ctx, params);
      case 'healthz':
        return text(ctx, 'text/plain; charset=utf-8', 'ok\n');
      case 'metrics':
        return text(
          ctx,
          'text/plain; version=0.0.4',
          Object.entries(metrics())
            .map(([k, v]) => `${k} ${v}`)
            .join('\n') + '\n',
        );
      case 'index': {
        // The pin is cached for the TTL; a source that cannot be reached just shows no revision.
        const pinned = await options.service.pins.pin('latest').catch(() => undefined);
        return text(
          ctx,
          'text/html; charset=utf-8',
          renderIndexPage({
            host: ctx.req.headers.host ?? '',
            source: options.sourceDescription,
            revision: pinned?.revision ?? null,
            errors: options.service.errors.list(),
            version: options.version,
          }),
        );
      }
    }
  }

  const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    void handle(req, res);
  });
  const drainer = trackConnections(server);
  return { server, handle, metrics, isDraining: () => drainer.draining, drain: (timeoutMs) => drainer.drain(timeoutMs) };
}

function text(ctx: RequestContext, contentType: string, body: string): void {
  const bytes = Buffer.from(body);
  writeHead(ctx, 200, { 'Content-Type': contentType, 'Content-Length': bytes.length, 'Cache-Control': 'no-store' });
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : bytes);
}
