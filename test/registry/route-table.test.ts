// The route table is the one place a route is declared: a copy of it with one more entry gets
// that route served by a real registry, behind the access rule the entry names, with HEAD
// derived from GET and a 405 naming the methods for anything else. No Nix runs here.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../../src/config.js';
import { createApp, type App } from '../../src/app.js';
import { createGate } from '../../src/registry/access.js';
import { createRegistry, type Registry } from '../../src/registry/server.js';
import { StandInNix } from '../helpers/stand-in-nix.js';
import { matchRoute, ROUTES, type RouteSpec } from '../../src/registry/routes.js';
import { writeHead } from '../../src/registry/http.js';
import { EXAMPLE_PKGS } from '../helpers/nix.js';

let dir: string;
let app: App;
let registry: Registry;
let url: string;

/** One more route: who the client is, as JSON. One entry, and its handler. */
const whoami: RouteSpec = {
  path: '/api/v1/whoami',
  methods: ['GET'],
  access: 'pull',
  match: (p) => (p === '/api/v1/whoami' ? {} : null),
  handle(ctx, _params, _env, admission) {
    const body = Buffer.from(JSON.stringify({ user: admission.user }));
    writeHead(ctx, 200, { 'Content-Type': 'application/json', 'Content-Length': body.length });
    ctx.res.end(body);
  },
};

const basic = (user: string, password: string) => ({ Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` });

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'nixery-route-table-'));
  const htpasswd = path.join(dir, 'htpasswd');
  execFileSync('htpasswd', ['-B', '-b', '-c', htpasswd, 'alice', 'wonderland']);
  const config = loadConfig({ NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: path.join(dir, 'storage'), PORT: '0', NIXERY_HOST: '127.0.0.1', NIXERY_LOG_LEVEL: 'silent', NIXERY_HTPASSWD: htpasswd });
  app = await createApp(config, { logDestination: 'stderr', defaultLogLevel: 'silent', nix: new StandInNix() });
  registry = createRegistry({
    storage: app.storage,
    service: app.service,
    quarantine: app.quarantine,
    gate: await createGate(config),
    blobRedirect: false,
    blobCacheBytes: 0,
    redirectTtlSeconds: 60,
    sendBufferBytes: 1 << 20,
    sendTimeoutSeconds: 10,
    log: app.log,
    sourceDescription: 'test',
    version: 'test',
    metrics: app.metrics,
    routes: { ...ROUTES, whoami },
  });
  await new Promise<void>((resolve) => registry.server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(registry.server.address() as AddressInfo).port}`;
});

after(async () => {
  registry.server.closeAllConnections();
  await new Promise((resolve) => registry.server.close(resolve));
  await app.pins.stop();
  await app.packages.stop();
  await rm(dir, { recursive: true, force: true });
});

test('a route added to a copy of the table is served, behind its access rule', async () => {
  const anonymous = await fetch(`${url}/api/v1/whoami`);
  assert.equal(anonymous.status, 401);
  assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Basic /);
  assert.equal(((await anonymous.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'UNAUTHORIZED');

  const alice = await fetch(`${url}/api/v1/whoami`, { headers: basic('alice', 'wonderland') });
  assert.equal(alice.status, 200);
  assert.deepEqual(await alice.json(), { user: 'alice' });
  assert.equal(alice.headers.get('x-content-type-options'), 'nosniff');
});

test('HEAD comes with GET, from the table: same headers, no body; other methods are 405 with Allow', async () => {
  const get = await fetch(`${url}/api/v1/whoami`, { headers: basic('alice', 'wonderland') });
  const getBody = await get.arrayBuffer();
  const head = await fetch(`${url}/api/v1/whoami`, { method: 'HEAD', headers: basic('alice', 'wonderland') });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), String(getBody.byteLength));
  assert.equal((await head.arrayBuffer()).byteLength, 0);

  const post = await fetch(`${url}/api/v1/whoami`, { method: 'POST', headers: basic('alice', 'wonderland') });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD');

  // The registry's own routes keep working next to it, and the default table does not have it.
  assert.equal((await fetch(`${url}/healthz`)).status, 200);
  assert.equal(matchRoute('GET', '/api/v1/whoami').kind, 'not-found');
});

test('the built-in GET routes answer HEAD without a body', async () => {
  for (const p of ['/healthz', '/readyz', '/metrics']) {
    const head = await fetch(`${url}${p}`, { method: 'HEAD' });
    assert.ok(head.status === 200 || head.status === 503, p);
    assert.ok(Number(head.headers.get('content-length')) > 0, p);
    assert.equal((await head.arrayBuffer()).byteLength, 0, p);
  }
});
