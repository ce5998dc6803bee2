// The route table: every path the registry answers, with the methods it allows. Matching is on
// the path only (query strings are ignored); a known path with another method is 405.

export type RouteName =
  | 'upload'
  | 'ping'
  | 'manifest'
  | 'blob'
  | 'tags'
  | 'referrers'
  | 'index'
  | 'healthz'
  | 'readyz'
  | 'metrics'
  | 'api-builds'
  | 'api-build'
  | 'api-build-events'
  | 'api-packages';

export interface Route {
  name: RouteName;
  /** The shape of the path, for people (and the 405 message). */
  path: string;
  methods: ReadonlySet<string>;
  /** The path's parameters when it is this route, else null. */
  match(path: string): Record<string, string> | null;
}

const READ = new Set(['GET', 'HEAD']);

/**
 * `/v2/<name>/<suffix>/<param>`: the name is everything between `/v2/` and the last
 * occurrence of the suffix, so an invalid name still reaches its route and gets a precise
 * NAME_INVALID from the parser instead of a generic 404. Matched by string search: this runs
 * on every request.
 */
function underName(suffix: string, param: string | null) {
  const marker = `/${suffix}`;
  return (path: string): Record<string, string> | null => {
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
  return (path: string): Record<string, string> | null => {
    if (!path.startsWith(prefix) || !path.endsWith(suffix)) return null;
    const id = path.slice(prefix.length, path.length - suffix.length);
    return id === '' || id.includes('/') ? null : { id };
  };
}

const exact =
  (...paths: string[]) =>
  (path: string): Record<string, string> | null =>
    paths.includes(path) ? {} : null;

export const ROUTES: readonly Route[] = [
  { name: 'ping', path: '/v2/', methods: READ, match: exact('/v2/', '/v2') },
  { name: 'manifest', path: '/v2/<name>/manifests/<tag-or-digest>', methods: READ, match: underName('manifests', 'reference') },
  // Push endpoints exist in the protocol; this registry is pull-only, so every method is 405.
  { name: 'upload', path: '/v2/<name>/blobs/uploads/…', methods: new Set(), match: (p) => (/^\/v2\/.+\/blobs\/uploads(?:\/.*)?$/.test(p) ? {} : null) },
  { name: 'blob', path: '/v2/<name>/blobs/<digest>', methods: READ, match: underName('blobs', 'digest') },
  { name: 'tags', path: '/v2/<name>/tags/list', methods: READ, match: underName('tags/list', null) },
  { name: 'referrers', path: '/v2/<name>/referrers/<digest>', methods: READ, match: underName('referrers', 'digest') },
  { name: 'index', path: '/', methods: READ, match: exact('/') },
  { name: 'healthz', path: '/healthz', methods: READ, match: exact('/healthz') },
  { name: 'readyz', path: '/readyz', methods: READ, match: exact('/readyz') },
  { name: 'metrics', path: '/metrics', methods: READ, match: exact('/metrics') },
  // The build and search API (api.ts); the same Gate as pulls, POST needs the right to build.
  { name: 'api-builds', path: '/api/v1/builds', methods: new Set(['POST']), match: exact('/api/v1/builds') },
  { name: 'api-build-events', path: '/api/v1/builds/<id>/events', methods: new Set(['GET']), match: buildPath('/events') },
  { name: 'api-build', path: '/api/v1/builds/<id>', methods: READ, match: buildPath('') },
  { name: 'api-packages', path: '/api/v1/packages', methods: READ, match: exact('/api/v1/packages') },
];

export type RouteMatch =
  | { kind: 'route'; route: Route; params: Record<string, string> }
  | { kind: 'method-not-allowed'; route: Route }
  | { kind: 'not-found' };

export function matchRoute(method: string, path: string): RouteMatch {
  for (const route of ROUTES) {
    const params = route.match(path);
    if (!params) continue;
    if (!route.methods.has(method)) return { kind: 'method-not-allowed', route };
    return { kind: 'route', route, params };
  }
  return { kind: 'not-found' };
}
