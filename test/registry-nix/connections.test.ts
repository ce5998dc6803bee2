// Connection caps inside the registry: the defaults follow the descriptor limit; a timed-out
// request (408) is closed for good, not left half-closed holding its descriptor; behind a
// trusted proxy the per-client cap counts the forwarded client's requests in flight; build event
// streams (SSE) have a cap of their own.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { closedForGood } from '../helpers/net.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { makeTestPackageSet, type TestPackageSet } from '../helpers/slow-pkgs.js';
import { createRegistry, type Registry } from '../../src/registry/server.js';
import { Gate } from '../../src/registry/access.js';
import { TrustedProxies } from '../../src/registry/client-address.js';
import { connectionLimits, defaultLimits, descriptorLimit } from '../../src/registry/connections.js';
import { loadConfig } from '../../src/config.js';
import { Metrics } from '../../src/metrics/metrics.js';

/** Connects and sends `request`; resolves with what the server answered once it sent its FIN. */
function send(port: number, request: string): Promise<{ socket: net.Socket; answer: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => {
      socket.write(request);
      resolve({
        socket,
        answer: new Promise((done) => {
          let text = '';
          socket.on('data', (d: Buffer) => (text += d.toString()));
          socket.once('end', () => done(text));
        }),
      });
    });
    socket.once('error', reject);
  });
}


test('the caps follow the open-files limit, leaving room for storage and Nix', () => {
  const limits = `Limit                     Soft Limit           Hard Limit           Units\nMax open files            512                  4096                 files\n`;
  assert.equal(descriptorLimit(limits), 512);
  assert.equal(descriptorLimit('Max open files            unlimited            unlimited            files\n'), null);
  assert.deepEqual(defaultLimits(512), { maxConnections: 192, maxClientConnections: 24 });
  assert.deepEqual(defaultLimits(1024), { maxConnections: 384, maxClientConnections: 48 });
  assert.equal(defaultLimits(64).maxConnections, 16, 'never below 16');
  // This process's own limit is read from /proc.
  assert.ok((descriptorLimit() ?? 0) > 0);
  const config = loadConfig({ NIXERY_PKGS_PATH: '/x', NIXERY_MAX_CONNECTIONS: '100' });
  assert.deepEqual(connectionLimits(config), { maxConnections: 100, maxClientConnections: 16, maxEventStreams: 25 });
  assert.throws(() => loadConfig({ NIXERY_MAX_CONNECTIONS: 'lots' }), /invalid NIXERY_MAX_CONNECTIONS: must be a whole number/);
});

describe('a registry with short receive limits behind a trusted proxy', () => {
  let r: TestRegistry;
  let reg: Registry;
  let port: number;
  before(async () => {
    r = await startRegistry();
    const { app } = r;
    reg = createRegistry({
      storage: app.storage,
      service: app.service,
      quarantine: app.quarantine,
      gate: new Gate({ anonymousPull: false, proxies: new TrustedProxies('127.0.0.1') }),
      metrics: new Metrics(),
      blobRedirect: false,
      blobCacheBytes: 0,
      redirectTtlSeconds: 300,
      sendBufferBytes: 64 << 20,
      sendTimeoutSeconds: 60,
      log: { info: () => {}, warn: () => {}, error: () => {} },
      sourceDescription: 'test',
      version: 'test',
      headersTimeoutMs: 500,
      requestTimeoutMs: 3000,
      connections: { maxConnections: 50, maxClientConnections: 2 },
      trustedProxies: '127.0.0.1',
    });
    await new Promise<void>((resolve) => reg.server.listen(0, '127.0.0.1', resolve));
    port = (reg.server.address() as AddressInfo).port;
  });
  after(async () => {
    reg.server.closeAllConnections();
    await new Promise((resolve) => reg.server.close(resolve));
    await r.close();
  });

  test('a request that does not arrive in time gets 408 and its connection is closed for good', async () => {
    const { socket, answer } = await send(port, 'GET /v2/ HTTP/1.1\r\nHost: x\r\n');
    assert.match(await answer, /^HTTP\/1.1 408 /);
    assert.equal(await closedForGood(socket), true, 'not half-closed');
  });

  test('behind the proxy, a forwarded client has at most 2 requests in flight; others are not held back', async () => {
    // Requests whose bodies never come: in flight until the request timeout.
    const slow = (client: string) => send(port, `POST /api/v1/builds HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: ${client}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{`);
    const held = [await slow('203.0.113.7'), await slow('203.0.113.7')];
    await new Promise((r) => setTimeout(r, 200));
    const third = await send(port, 'GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\nConnection: close\r\n\r\n');
    const refused = await third.answer;
    assert.match(refused, /^HTTP\/1.1 429 /);
    assert.match(refused, /Retry-After: 1/);
    assert.match(refused, /too many requests in flight \(NIXERY_MAX_CLIENT_CONNECTIONS=2\)/);
    const other = await send(port, 'GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.1\r\nConnection: close\r\n\r\n');
    assert.match(await other.answer, /^HTTP\/1.1 200 /);
    for (const h of held) h.socket.destroy();
    third.socket.destroy();
    other.socket.destroy();
  });
});

describe('build event streams', () => {
  let pkgs: TestPackageSet;
  let r: TestRegistry;
  before(async () => {
    pkgs = await makeTestPackageSet({ sleeps: [20] });
    r = await startRegistry({ NIXERY_PKGS_PATH: pkgs.dir, NIXERY_MAX_EVENT_STREAMS: '1' });
  });
  after(async () => {
    await r.close();
    await pkgs.remove();
  });

  test('past NIXERY_MAX_EVENT_STREAMS a new stream is 503 with Retry-After; once one ends, it opens', async () => {
    const started = await fetch(`${r.url}/api/v1/builds`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ image: 'slow20' }) });
    assert.equal(started.status, 202, await started.clone().text());
    const { id } = (await started.json()) as { id: string };
    const first = new AbortController();
    const stream = await fetch(`${r.url}/api/v1/builds/${id}/events`, { signal: first.signal });
    assert.equal(stream.status, 200);
    const second = await fetch(`${r.url}/api/v1/builds/${id}/events`);
    assert.equal(second.status, 503);
    assert.equal(second.headers.get('retry-after'), '1');
    const body = (await second.json()) as { errors: Array<{ code: string; message: string }> };
    assert.equal(body.errors[0]!.code, 'UNAVAILABLE');
    assert.match(body.errors[0]!.message, /NIXERY_MAX_EVENT_STREAMS=1/);
    first.abort();
    await stream.body?.cancel().catch(() => {});
    let third: Response | undefined;
    for (let i = 0; i < 50 && third?.status !== 200; i++) {
      await new Promise((res) => setTimeout(res, 100));
      await third?.body?.cancel().catch(() => {});
      third = await fetch(`${r.url}/api/v1/builds/${id}/events`);
    }
    assert.equal(third!.status, 200);
    await third!.body?.cancel().catch(() => {});
  });
});
