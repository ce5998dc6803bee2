import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matchRoute } from '../../src/registry/routes.js';

const D = `sha256:${'a'.repeat(64)}`;

test('the route table: paths, parameters and methods', () => {
  const cases: Array<[string, string, string, Record<string, string> | null]> = [
    ['GET', '/v2/', 'ping', {}],
    ['HEAD', '/v2', 'ping', {}],
    ['GET', '/v2/shell/git/htop/manifests/latest', 'manifest', { name: 'shell/git/htop', reference: 'latest' }],
    ['HEAD', `/v2/hello/manifests/${D}`, 'manifest', { name: 'hello', reference: D }],
    ['GET', '/v2/a/manifests/b/manifests/c', 'manifest', { name: 'a/manifests/b', reference: 'c' }],
    ['GET', `/v2/hello/blobs/${D}`, 'blob', { name: 'hello', digest: D }],
    ['GET', '/v2/Invalid_Name/blobs/x', 'blob', { name: 'Invalid_Name', digest: 'x' }],
    ['GET', '/v2/hello/tags/list', 'tags', { name: 'hello' }],
    ['GET', `/v2/hello/referrers/${D}`, 'referrers', { name: 'hello', digest: D }],
    ['GET', '/', 'index', {}],
    ['GET', '/healthz', 'healthz', {}],
    ['GET', '/metrics', 'metrics', {}],
    ['POST', '/api/v1/builds', 'api-builds', {}],
    ['GET', '/api/v1/builds/Ab3_x-9', 'api-build', { id: 'Ab3_x-9' }],
    ['HEAD', '/api/v1/builds/Ab3_x-9', 'api-build', { id: 'Ab3_x-9' }],
    ['GET', '/api/v1/builds/Ab3_x-9/events', 'api-build-events', { id: 'Ab3_x-9' }],
    ['GET', '/api/v1/packages', 'api-packages', {}],
    ['GET', '/explore/shell/git:latest', 'explore', { name: 'shell/git', tag: 'latest' }],
    ['GET', '/explore/hello', 'explore', { name: 'hello', tag: 'latest' }],
    ['GET', '/assets/explorer.0123456789abcdef.js', 'asset', { file: 'explorer.0123456789abcdef.js' }],
    ['GET', '/api/v1/images', 'api-images', {}],
    ['GET', '/api/v1/images/shell/git:v1.0', 'api-image', { name: 'shell/git', tag: 'v1.0' }],
    ['HEAD', '/api/v1/images/shell/git:latest/manifest', 'api-image', { name: 'shell/git', tag: 'latest', part: 'manifest' }],
    ['GET', '/api/v1/images/hello:latest/docker-manifest', 'api-image', { name: 'hello', tag: 'latest', part: 'docker-manifest' }],
    ['GET', '/api/v1/images/hello/config', 'api-image', { name: 'hello', tag: 'latest', part: 'config' }],
  ];
  for (const [method, path, name, params] of cases) {
    const m = matchRoute(method, path);
    assert.equal(m.kind, 'route', `${method} ${path}`);
    if (m.kind === 'route') {
      assert.equal(m.route.name, name, path);
      assert.deepEqual(m.params, params, path);
    }
  }
});

test('unknown paths and other methods', () => {
  for (const path of ['/api/v1/builds/', '/api/v1/builds/a/b', '/api/v1/builds//events', '/api/v1', '/v2/_catalogue', '/v2/hello/manifests/', '/v2/hello/manifests/a/', '/v2//manifests/x', '/v2/manifests/x', '/favicon.ico', '/v3/', '/explore/', '/assets/', '/assets/a/b.js']) {
    assert.equal(matchRoute('GET', path).kind, 'not-found', path);
  }
  for (const [method, path] of [
    ['PUT', '/v2/hello/manifests/latest'],
    ['DELETE', `/v2/hello/blobs/${D}`],
    ['POST', '/v2/hello/blobs/uploads/'],
    ['GET', '/v2/hello/blobs/uploads/some-session'],
    ['POST', '/'],
    ['GET', '/api/v1/builds'],
    ['POST', '/api/v1/builds/x'],
    ['POST', '/api/v1/builds/x/events'],
    ['POST', '/api/v1/packages'],
    ['POST', '/api/v1/images/hello:latest'],
    ['DELETE', '/explore/hello:latest'],
  ] as const) {
    assert.equal(matchRoute(method, path).kind, 'method-not-allowed', `${method} ${path}`);
  }
});
