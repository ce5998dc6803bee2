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
  | 'api-packages'
  // The explorer (explorer.ts): its pages and assets, and the image API it reads.
  | 'explore'
  | 'asset'
  | 'api-images'
  | 'api-image';

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

/**
 * `<prefix><name>[:<tag>][/<part>]`: an image by name and tag (default `latest`), as the explorer
 * names them. The tag is what follows the last `:` (a tag has no `/`, a name no `:`); names and
 * tags are validated by the handler, so a bad one gets a precise error.
 */
function imageRef(prefix: string, parts: readonly string[]) {
  return (path: string): Record<string, string> | null => {
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
  { name: 'explore', path: '/explore/<name>:<tag>', methods: READ, match: imageRef('/explore/', []) },
  { name: 'asset', path: '/assets/<file>', methods: READ, match: (p) => (p.startsWith('/assets/') && p.length > 8 && !p.includes('/', 8) ? { file: p.slice(8) } : null) },
  { name: 'api-images', path: '/api/v1/images', methods: READ, match: exact('/api/v1/images', '/api/v1/images/') },
  { name: 'api-image', path: '/api/v1/images/<name>:<tag>[/manifest|/docker-manifest|/config]', methods: READ, match: imageRef('/api/v1/images/', ['manifest', 'docker-manifest', 'config']) },
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
