// The route table: every path the registry answers, declared once with its methods, its access
// rule and its handler. Dispatch (server.ts) matches, admits by the rule, and calls the handler;
// nothing else knows the routes. Matching is on the path only (query strings are ignored); a
// known path with another method is 405. HEAD is GET, derived here once (`methodsOf`): Node's
// ServerResponse sends no body for a HEAD request, so handlers write as for GET.
//
// Adding a route is one entry in ROUTES plus its handler.

import type { Admission, AccessRule } from './access.js';
import type { RequestContext } from './http.js';
import { blob, catalog, healthz, manifest, metricsText, ping, readyz, referrers, tags, type HandlerDeps } from './handlers.js';
import { buildEvents, createBuild, getBuild, searchPackages, type ApiDeps, type EventStreams } from './api.js';
import type { Explorer } from './explorer.js';
import type { Readiness } from '../service/readiness.js';
import type { RegistryMetrics } from './observer.js';
import { NixeryError } from '../errors.js';
import { referrersTagDigest } from '../manifest/referrers.js';

export type Params = Record<string, string>;

/** What the handlers of one registry work with (made once, when the registry is). */
export interface RouteEnv {
  deps: HandlerDeps;
  api: ApiDeps;
  streams: EventStreams;
  explorer: Explorer;
  readiness: Readiness;
  metrics: RegistryMetrics;
  isDraining(): boolean;
}

export type Handler = (ctx: RequestContext, params: Params, env: RouteEnv, admission: Admission) => void | Promise<void>;

export interface RouteSpec {
  /** The shape of the path, for people (and the 405 message). */
  path: string;
  /** GET (which brings HEAD) and/or POST; none: the path exists, every method is 405. */
  methods: readonly ('GET' | 'POST')[];
  /** Who may use it (see access.ts); a function when it depends on the parameters. */
  access: AccessRule | ((params: Params) => AccessRule);
  /** The path's parameters when it is this route, else null. */
  match(path: string): Params | null;
  handle: Handler;
}

/**
 * `/v2/<name>/<suffix>/<param>`: the name is everything between `/v2/` and the last
 * occurrence of the suffix, so an invalid name still reaches its route and gets a precise
 * NAME_INVALID from the parser instead of a generic 404. Matched by string search: this runs
 * on every request.
 */
function underName(suffix: string, param: string | null) {
  const marker = `/${suffix}`;
  return (path: string): Params | null => {
    if (!path.startsWith('/v2/')) return null;
    if (param === null) {
      if (!path.endsWith(marker) || path.length <= 4 + marker.length) return null;
      return { name: path.slice(4, path.length - marker.length) };
    }
    const at = path.lastIndexOf(`${marker}/`);
    if (at <= 4) return null;
    const value = path.slice(at + marker.length + 1);
    if (value === '' || value.includes('/')) return null;
    return { name: path.slice(4, at), [param]: value };
  };
}

/** `/api/v1/builds/<id>` followed by `suffix` (`''` or `/events`): the id is one path segment. */
function buildPath(suffix: string) {
  const prefix = '/api/v1/builds/';
  return (path: string): Params | null => {
    if (!path.startsWith(prefix) || !path.endsWith(suffix)) return null;
    const id = path.slice(prefix.length, path.length - suffix.length);
    return id === '' || id.includes('/') ? null : { id };
  };
}

const exact =
  (...paths: string[]) =>
  (path: string): Params | null =>
    paths.includes(path) ? {} : null;

/**
 * `<prefix><name>[:<tag>][/<part>]`: an image by name and tag (default `latest`), as the explorer
 * names them. The tag is what follows the last `:` (a tag has no `/`, a name no `:`); names and
 * tags are validated by the handler, so a bad one gets a precise error.
 */
function imageRef(prefix: string, parts: readonly string[]) {
  return (path: string): Params | null => {
    if (!path.startsWith(prefix) || path.length === prefix.length) return null;
    let ref = path.slice(prefix.length);
    let part = '';
    for (const p of parts) {
      if (ref.endsWith(`/${p}`)) {
        part = p;
        ref = ref.slice(0, -p.length - 1);
        break;
      }
    }
    const colon = ref.lastIndexOf(':');
    const params = colon < 0 ? { name: ref, tag: 'latest' } : { name: ref.slice(0, colon), tag: ref.slice(colon + 1) };
    return part ? { ...params, part } : params;
  };
}

/**
 * A manifest by tag may build the image (the package policy applies); by digest, or a referrers
 * tag (`sha256-<hex>`), it is a read.
 */
const manifestAccess = (p: Params): AccessRule => (p.reference!.includes(':') || referrersTagDigest(p.reference!) ? 'pull' : 'pull-build');

/** The routes, in matching order (the first whose pattern matches the path is the route). */
export const ROUTES = {
  ping: { path: '/v2/', methods: ['GET'], access: 'login', match: exact('/v2/', '/v2'), handle: ping },
  catalog: { path: '/v2/_catalog', methods: ['GET'], access: 'pull', match: exact('/v2/_catalog'), handle: (ctx, _p, env, a) => catalog(ctx, env.deps, a) },
  manifest: { path: '/v2/<name>/manifests/<tag-or-digest>', methods: ['GET'], access: manifestAccess, match: underName('manifests', 'reference'), handle: (ctx, p, env, a) => manifest(ctx, env.deps, p, a) },
  // Push endpoints exist in the protocol; this registry is pull-only, so every method is 405.
  upload: { path: '/v2/<name>/blobs/uploads/…', methods: [], access: 'open', match: (p) => (/^\/v2\/.+\/blobs\/uploads(?:\/.*)?$/.test(p) ? {} : null), handle: () => { throw new NixeryError('UNSUPPORTED'); } },
  blob: { path: '/v2/<name>/blobs/<digest>', methods: ['GET'], access: 'pull', match: underName('blobs', 'digest'), handle: (ctx, p, env, a) => blob(ctx, env.deps, p, a) },
  tags: { path: '/v2/<name>/tags/list', methods: ['GET'], access: 'pull', match: underName('tags/list', null), handle: (ctx, p, env, admission) => tags(ctx, env.deps, p, admission) },
  referrers: { path: '/v2/<name>/referrers/<digest>', methods: ['GET'], access: 'pull', match: underName('referrers', 'digest'), handle: (ctx, p, env, a) => referrers(ctx, env.deps, p, a) },
  index: { path: '/', methods: ['GET'], access: 'pull', match: exact('/'), handle: (ctx, _p, env, a) => env.explorer.index(ctx, a) },
  // For probes and scrapers: no credentials.
  healthz: { path: '/healthz', methods: ['GET'], access: 'open', match: exact('/healthz'), handle: healthz },
  readyz: { path: '/readyz', methods: ['GET'], access: 'open', match: exact('/readyz'), handle: (ctx, _p, env) => readyz(ctx, env.readiness, env.isDraining()) },
  metrics: { path: '/metrics', methods: ['GET'], access: 'open', match: exact('/metrics'), handle: (ctx, _p, env) => metricsText(ctx, env.metrics) },
  // The build and search API (api.ts).
  'api-builds': { path: '/api/v1/builds', methods: ['POST'], access: 'build', match: exact('/api/v1/builds'), handle: (ctx, _p, env, a) => createBuild(ctx, env.api, a) },
  'api-build-events': { path: '/api/v1/builds/<id>/events', methods: ['GET'], access: 'pull', match: buildPath('/events'), handle: (ctx, p, env, a) => buildEvents(ctx, env.api, p, env.streams, a) },
  'api-build': { path: '/api/v1/builds/<id>', methods: ['GET'], access: 'pull', match: buildPath(''), handle: (ctx, p, env, a) => getBuild(ctx, env.api, p, a) },
  'api-packages': { path: '/api/v1/packages', methods: ['GET'], access: 'pull', match: exact('/api/v1/packages'), handle: (ctx, _p, env) => searchPackages(ctx, env.api) },
  // The explorer (explorer.ts): its pages and assets, and the image API it reads.
  explore: { path: '/explore/<name>:<tag>', methods: ['GET'], access: 'pull', match: imageRef('/explore/', []), handle: (ctx, p, env) => env.explorer.explore(ctx, p) },
  asset: { path: '/assets/<file>', methods: ['GET'], access: 'pull', match: (p) => (p.startsWith('/assets/') && p.length > 8 && !p.includes('/', 8) ? { file: p.slice(8) } : null), handle: (ctx, p, env) => env.explorer.asset(ctx, p) },
  'api-images': { path: '/api/v1/images', methods: ['GET'], access: 'pull', match: exact('/api/v1/images', '/api/v1/images/'), handle: (ctx, _p, env, a) => env.explorer.recent(ctx, a) },
  'api-image': { path: '/api/v1/images/<name>:<tag>[/manifest|/docker-manifest|/config]', methods: ['GET'], access: 'pull', match: imageRef('/api/v1/images/', ['manifest', 'docker-manifest', 'config']), handle: (ctx, p, env, a) => env.explorer.image(ctx, p, a) },
} satisfies Record<string, RouteSpec>;

export type RouteName = keyof typeof ROUTES;
export type RouteTable = Readonly<Record<string, RouteSpec>>;

/** A route as dispatch uses it: its entry, its name, and the methods it answers (HEAD with GET). */
export interface Route extends RouteSpec {
  name: string;
  allowed: ReadonlySet<string>;
  /** The Allow header of a 405. */
  allow: string;
}

export type RouteMatch = { kind: 'route'; route: Route; params: Params } | { kind: 'method-not-allowed'; route: Route } | { kind: 'not-found' };

/** The one place HEAD comes from: every GET route answers HEAD too. */
function methodsOf(spec: RouteSpec): string[] {
  return spec.methods.flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m]));
}

export class Router {
  readonly routes: readonly Route[];

  constructor(table: RouteTable = ROUTES) {
    this.routes = Object.entries(table).map(([name, spec]) => {
      const methods = methodsOf(spec);
      return { ...spec, name, allowed: new Set(methods), allow: methods.join(', ') };
    });
  }

  match(method: string, path: string): RouteMatch {
    for (const route of this.routes) {
      const params = route.match(path);
      if (!params) continue;
      if (!route.allowed.has(method)) return { kind: 'method-not-allowed', route };
      return { kind: 'route', route, params };
    }
    return { kind: 'not-found' };
  }
}

const DEFAULT_ROUTER = new Router();

export function matchRoute(method: string, path: string): RouteMatch {
  return DEFAULT_ROUTER.match(method, path);
}

/** The access rule of a matched route. */
export function accessOf(route: RouteSpec, params: Params): AccessRule {
  return typeof route.access === 'function' ? route.access(params) : route.access;
}
