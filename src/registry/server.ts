// The registry's HTTP server: route table dispatch, one JSON log line per request, errors
// mapped through the catalogue. Plain node:http: the hot path (cached manifests, blobs) is
// short and allocation-light. Clients are not trusted: headers and requests must arrive in
// time, responses to clients that stop reading are closed (send.ts), and what the HTTP parser
// rejects still gets an OCI error body, a log line and a count.

import type { Logger } from '../util/logger.js';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Storage } from '../storage/storage.js';
import { probeStorage } from '../storage/probe.js';
import { BLOBS_PREFIX } from '../builder/layout.js';
import type { Quarantine } from '../builder/integrity.js';
import { ERROR_CATALOGUE, SourceUnavailableError, type ErrorKind } from '../errors.js';
import type { SourceStatus } from '../builder/pins.js';
import type { RegistryService } from '../service/registry-service.js';
import { accessOf, Router, type RouteEnv, type RouteTable } from './routes.js';
import { sendCatalogueError, sendError, type RequestContext } from './http.js';
import type { HandlerDeps } from './handlers.js';
import { BlobServer } from './blob-server.js';
import { BlobPolicy, type BlobVerification } from '../service/blob-policy.js';
import { Readiness } from '../service/readiness.js';
import { Explorer, loadExplorerAssets } from './explorer.js';
import type { Gate } from './access.js';
import type { TlsPair } from './tls.js';
import { trackConnections, type DrainResult } from './shutdown.js';
import { answerAndClose, ConnectionGuard, defaultEventStreams, defaultLimits, rawErrorResponse, type ConnectionLimits } from './connections.js';
import { BuildTracker } from '../service/build-tracker.js';
import { EventStreams, type ApiDeps } from './api.js';
import type { PackageIndex } from '../builder/package-index.js';
import type { RegistryMetrics } from './observer.js';
import type { BlobObserver } from '../service/blob-observer.js';
import { Signatures } from '../service/signatures.js';
import type { SignatureStore } from '../signing/store.js';

export type RegistryLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

export interface RegistryOptions {
  storage: Storage;
  service: RegistryService;
  quarantine: Quarantine;
  blobRedirect: boolean;
  /** Memory for hot blobs, bytes (0: none). */
  blobCacheBytes: number;
  /** Lifetime of the storage backend's signed URLs. */
  redirectTtlSeconds: number;
  /** Bytes all responses together may buffer while streaming. */
  sendBufferBytes: number;
  /** A response whose client accepts nothing for this long is closed. */
  sendTimeoutSeconds: number;
  /** How blobs read from storage are checked against their digest (default once per version). */
  blobVerify?: BlobVerification;
  log: RegistryLogger;
  /** Authentication and admission (the layer in front of the handlers). */
  gate: Gate;
  /** Serve HTTPS with this certificate and key (PEM). */
  tls?: TlsPair;
  /** Package search (/api/v1/packages); without it that endpoint is 404. */
  packages?: PackageIndex;
  /** Describes the package source on the index page. */
  sourceDescription: string;
  /** Where the explorer's bundle is (default: dist/assets, written by `npm run build`). */
  explorerAssetsDir?: string;
  version: string;
  /** Limits on receiving a request (defaults: 20 s for the headers, 30 s for the whole request). */
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** Where requests are counted and timed, and what /metrics serves. */
  metrics: RegistryMetrics;
  /** Told of the blob policy's hot cache, stalled responses, repairs and memory. */
  blobObserver?: BlobObserver;
  /** Caps on connections (default: from the descriptor limit, see connections.ts). */
  connections?: ConnectionLimits & { maxEventStreams?: number };
  /** NIXERY_TRUSTED_PROXIES: their connections count per forwarded client, by request. */
  trustedProxies?: string;
  /** The routes served (default: routes.ts ROUTES). */
  routes?: RouteTable;
  /** Signs what is served (NIXERY_SIGNING_KEY); without it there are no signatures. */
  signing?: SignatureStore;
  /** NIXERY_PUBLIC_HOST: the host the explorer's pull commands name (default: the request's Host). */
  publicHost?: string;
}

export interface Registry {
  server: http.Server;
  blobs: BlobServer;
  /** Builds started through the API. */
  builds: BuildTracker;
  readiness: Readiness;
  handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void>;
  /** The unlabelled counts served at /metrics, and the HTTP totals, by name. */
  metrics(): Record<string, number>;
  /** True once a shutdown drain has started (see shutdown.ts). */
  isDraining(): boolean;
  /** Stops accepting connections and finishes what is in flight, for at most `timeoutMs`. */
  drain(timeoutMs: number): Promise<DrainResult>;
}

export function createRegistry(options: RegistryOptions): Registry {
  const { service, storage } = options;
  const policy = new BlobPolicy({
    storage,
    quarantine: options.quarantine,
    redirects: options.blobRedirect,
    redirectTtlMs: options.redirectTtlSeconds * 1000,
    hotCacheBytes: options.blobCacheBytes,
    sendBufferBytes: options.sendBufferBytes,
    // A repair is a build: the requester's admission applies.
    repair: (digest, requester) => service.repairBlob(digest, requester),
    verify: options.blobVerify,
    observer: options.blobObserver,
  });
  const blobs = new BlobServer(policy, options.sendTimeoutSeconds * 1000, options.blobObserver);
  const signatures = new Signatures(options.signing, { service, manifest: (digest, who) => blobs.manifest(digest, who) });
  // A manifest's signature joins its SBOMs and provenance in its referrers index.
  if (signatures.enabled) service.referrerSources.add((name, subject, who) => signatures.signatureReferrers(name, subject, who));
  const deps: HandlerDeps = { service, blobs, signatures };
  const api: ApiDeps = { builds: new BuildTracker(service, { log: options.log }), packages: options.packages };
  const limits: ConnectionLimits & { maxEventStreams?: number } = options.connections ?? defaultLimits();
  const eventStreams = new EventStreams(limits.maxEventStreams ?? defaultEventStreams(limits.maxConnections));
  const pins = service.builder.pins;
  const readiness = new Readiness(
    [
      { name: 'storage', run: () => probeStorage(storage, BLOBS_PREFIX) },
      { name: 'nix', run: () => service.builder.checkNix() },
      // The last look at the package source, without looking (that happens in the background).
      { name: 'source', run: async () => sourceCheck(pins.status()), advisory: true },
    ],
    3000,
    (check, detail) => options.log.warn({ check, err: detail }, 'readiness check failed'),
  );
  const loaded = loadExplorerAssets(options.explorerAssetsDir);
  if (!loaded.assets) options.log.warn({ missing: loaded.missing }, 'the explorer is not built (npm run build): pages are served without it');
  const explorer = new Explorer({ service, pins, assets: loaded.assets, sourceDescription: options.sourceDescription, version: options.version, publicHost: options.publicHost, signatures });
  const metrics = options.metrics;
  const idPrefix = randomBytes(3).toString('hex');
  let nextId = 0;

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = performance.now();
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q >= 0 ? url.slice(0, q) : url;
    const id = `${idPrefix}-${(nextId++).toString(36)}`;
    // The log line itself: handlers add how the answer was produced, status and ms come last.
    const ctx: RequestContext = { req, res, path, id, log: { req: id, method: req.method, path } };
    // A request that arrives on an open connection while draining is served, and closes it.
    if (drainer.draining) res.shouldKeepAlive = false;
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
    const ms = performance.now() - started;
    metrics.request(ctx.route ?? 'none', req.method ?? 'GET', res.statusCode, ms / 1000);
    ctx.log.status = res.statusCode;
    ctx.log.ms = Math.round(ms * 1000) / 1000;
    options.log.info(ctx.log, 'request');
  }

  const router = new Router(options.routes);
  const env: RouteEnv = { deps, api, streams: eventStreams, explorer, readiness, metrics, isDraining: () => drainer.draining };

  /** Route, admission by the route's rule, then its handler: the one dispatch. */
  async function dispatch(ctx: RequestContext): Promise<void> {
    const method = ctx.req.method ?? 'GET';
    const match = router.match(method, ctx.path);
    if (match.kind === 'not-found') {
      sendCatalogueError(ctx, 'NOT_FOUND', `no such endpoint: ${method} ${ctx.path.slice(0, 200)}`);
      return;
    }
    const route = match.route;
    ctx.route = route.name;
    // Who the client is, and whether it may use this route, before anything else happens.
    const params = match.kind === 'route' ? match.params : {};
    // A method the route does not have is refused after the client is known as a pull's would be.
    const rule = match.kind === 'route' ? accessOf(route, params) : route.access === 'open' ? 'open' : 'pull';
    const admission = await options.gate.admit(ctx.req, rule, params);
    if (admission.user !== null) ctx.log.user = admission.user;
    if (match.kind === 'method-not-allowed') {
      ctx.res.setHeader('Allow', route.allow);
      const why = route.path.startsWith('/api/') ? `use ${route.allow}` : 'this registry is pull-only';
      sendCatalogueError(ctx, 'UNSUPPORTED', `${method} is not supported on ${ctx.path.slice(0, 200)}: ${why}`);
      return;
    }
    await route.handle(ctx, params, env, admission);
  }

  const serverOptions = {
    keepAliveTimeout: 65_000,
    headersTimeout: options.headersTimeoutMs ?? 20_000,
    requestTimeout: options.requestTimeoutMs ?? 30_000,
    // Timeouts are checked this often (Node's default is 30 s).
    connectionsCheckingInterval: Math.min(1000, options.headersTimeoutMs ?? 1000),
  };
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (connections.admitRequest(req, res)) void handle(req, res);
  };
  const server: http.Server = options.tls ? https.createServer({ ...serverOptions, ...options.tls }, onRequest) : http.createServer(serverOptions, onRequest);
  // Connection caps and refusals are logged at most once a second (a flood would flood the log).
  const refusals = new Map<string, number>();
  let refusalLog: NodeJS.Timeout | undefined;
  const noteRefusal = (kind: string) => {
    refusals.set(kind, (refusals.get(kind) ?? 0) + 1);
    refusalLog ??= setTimeout(() => {
      refusalLog = undefined;
      options.log.warn({ connections: connections.size, refused: Object.fromEntries(refusals), limits }, 'connections refused or closed at the caps');
      refusals.clear();
    }, 1000).unref();
  };
  const connections = new ConnectionGuard(
    server,
    limits,
    { trustedProxies: options.trustedProxies, tls: Boolean(options.tls), firstByteTimeoutMs: serverOptions.headersTimeout },
    {
      refused: ({ kind }) => {
        metrics.connectionRefused(kind === 'evicted' ? 'evicted' : kind === 'CLIENT_CONNECTIONS' ? 'client_connections' : 'max_connections');
        noteRefusal(kind);
      },
      acceptFailed: (err) => {
        metrics.connectionRefused('accept_failed');
        noteRefusal(err.code ?? 'accept failed');
      },
      plainHttpOnTls: (client) => {
        metrics.protocolError(400, 'http_on_tls_port');
        options.log.info({ req: `${idPrefix}-${(nextId++).toString(36)}`, status: 400, protocolError: 'plain HTTP on the TLS port', remote: client }, 'request');
      },
    },
  );
  if (options.tls) {
    // A failed TLS handshake (a client that does not trust us) is counted.
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      metrics.protocolError(0, 'tls_handshake');
      options.log.info({ protocolError: err.code ?? 'TLS handshake failed', remote: socket.remoteAddress }, 'request');
    });
  }

  /** Answers a request the HTTP parser (or CONNECT) refused with an OCI error body, then closes. */
  const refuse = (socket: Socket, kind: ErrorKind, message: string, detail: string): void => {
    const entry = ERROR_CATALOGUE[kind];
    metrics.protocolError(entry.status);
    options.log.info({ req: `${idPrefix}-${(nextId++).toString(36)}`, status: entry.status, protocolError: detail, remote: socket.remoteAddress }, 'request');
    // Closed for good once answered: a half-closed connection would keep its descriptor.
    answerAndClose(socket, rawErrorResponse(kind, message));
  };
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    // A client that reset or closed the connection gets nothing; nor does one whose response
    // has begun (a later pipelined request failed to parse).
    const inResponse = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true;
    if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || inResponse) {
      socket.destroy();
      return;
    }
    // A TLS handshake on the plain port: the probe docker, podman and skopeo make before falling
    // back to plain HTTP. Answered (a TLS client then reports an HTTP answer), but no error.
    if (!options.tls && (err as { rawPacket?: Buffer }).rawPacket?.[0] === 0x16) {
      metrics.protocolError(0, 'tls_on_plain_port');
      answerAndClose(socket, rawErrorResponse('REQUEST_INVALID', 'this port speaks plain HTTP, not TLS'));
      return;
    }
    if (err.code === 'HPE_HEADER_OVERFLOW') refuse(socket, 'HEADERS_TOO_LARGE', 'request header fields too large', err.code);
    else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') refuse(socket, 'REQUEST_TIMEOUT', 'the request was not received in time', err.code);
    else refuse(socket, 'REQUEST_INVALID', 'malformed HTTP request', err.code ?? err.message);
  });
  server.on('connect', (req: http.IncomingMessage, socket: Socket) => {
    refuse(socket, 'UNSUPPORTED', `${req.method} is not supported: this is a registry, not a proxy`, `CONNECT ${String(req.url).slice(0, 200)}`);
  });

  const drainer = trackConnections(server);
  const registry: Registry = {
    server,
    blobs,
    builds: api.builds,
    readiness,
    handle,
    metrics: () => metrics.snapshot(),
    isDraining: () => drainer.draining,
    drain: (timeoutMs) => {
      // Event streams last as long as their build: end them, the builds stop with the process.
      eventStreams.endAll();
      return drainer.drain(timeoutMs);
    },
  };
  return registry;
}

/** Throws the package source's last failure, with since when; passes while it answers. */
function sourceCheck(status: SourceStatus): void {
  const failure = status.failure;
  if (failure) throw new SourceUnavailableError(`${failure.error.message} (failing since ${new Date(failure.since).toISOString()})`, failure.error.internal);
}
