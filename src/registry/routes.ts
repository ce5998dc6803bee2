// The route table: every path the registry answers, with the methods it allows. Matching is on
// the path only (query strings are ignored); a known path with another method is 405.

import { NAME_PATTERN } from '../image/name.js';

export type RouteName = 'upload' | 'ping' | 'manifest' | 'blob' | 'tags' | 'referrers' | 'index' | 'healthz' | 'metrics';

export interface Route {
  name: RouteName;
  pattern: RegExp;
  methods: ReadonlySet<string>;
}

const READ = new Set(['GET', 'HEAD']);

/**
 * Names are matched loosely here (anything up to the last `/manifests/` or `/blobs/`) so that an
 * invalid name gets a precise NAME_INVALID from the parser instead of a generic 404.
 */
export const ROUTES: readonly Route[] = [
  { name: 'ping', pattern: /^\/v2\/?$/, methods: READ },
  // Push endpoints exist in the protocol; this registry is pull-only, so every method is 405.
  { name: 'upload', pattern: /^\/v2\/.+\/blobs\/uploads(?:\/.*)?$/, methods: new Set() },
  { name: 'manifest', pattern: /^\/v2\/(?<name>.+)\/manifests\/(?<reference>[^/]+)$/, methods: READ },
  { name: 'blob', pattern: /^\/v2\/(?<name>.+)\/blobs\/(?<digest>[^/]+)$/, methods: READ },
  { name: 'tags', pattern: new RegExp(`^/v2/(?<name>${NAME_PATTERN})/tags/list$`), methods: READ },
  { name: 'referrers', pattern: new RegExp(`^/v2/(?<name>${NAME_PATTERN})/referrers/(?<digest>[^/]+)$`), methods: READ },
  { name: 'index', pattern: /^\/$/, methods: READ },
  { name: 'healthz', pattern: /^\/healthz$/, methods: READ },
  { name: 'metrics', pattern: /^\/metrics$/, methods: READ },
];

export type RouteMatch =
  | { kind: 'route'; route: Route; params: Record<string, string> }
  | { kind: 'method-not-allowed'; route: Route }
  | { kind: 'not-found' };

export function matchRoute(method: string, path: string): RouteMatch {
  for (const route of ROUTES) {
    const m = route.pattern.exec(path);
    if (!m) continue;
    if (!route.methods.has(method)) return { kind: 'method-not-allowed', route };
    return { kind: 'route', route, params: { ...(m.groups ?? {}) } };
  }
  return { kind: 'not-found' };
}
