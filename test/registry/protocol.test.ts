// What the HTTP parser refuses still gets an answer a client can read: an OCI JSON error with
// the right status (400, 408, 431, 405 for CONNECT), a log line and a count. Slow senders are
// cut off by the header timeout.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { startStandInRegistry as startRegistry, type StandInRegistry as TestRegistry } from '../helpers/registry.js';
import { createRegistry, type Registry } from '../../src/registry/server.js';
import { Gate } from '../../src/registry/access.js';
import { TrustedProxies } from '../../src/registry/client-address.js';
import { Metrics } from '../../src/metrics/metrics.js';

/** Sends raw bytes and collects everything the server answers until it closes. */
function raw(port: number, request: string | Buffer, options: { keepOpenMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (d) => (answer += d.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => resolve(answer));
    socket.write(request);
    if (options.keepOpenMs === undefined) socket.end();
    else setTimeout(() => socket.end(), options.keepOpenMs);
  });
}

function parse(answer: string): { status: number; headers: Record<string, string>; body: { errors: Array<{ code: string; message: string }> } } {
  const [head, body] = [answer.slice(0, answer.indexOf('\r\n\r\n')), answer.slice(answer.indexOf('\r\n\r\n') + 4)];
  const [statusLine, ...lines] = head.split('\r\n');
  const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  return { status: Number(statusLine!.split(' ')[1]), headers, body: JSON.parse(body) };
}

describe('protocol errors', () => {
  let r: TestRegistry;
  let strict: Registry;
  let port: number;
  const logged: Array<Record<string, unknown>> = [];

  before(async () => {
    r = await startRegistry();
    // A second server over the same app, with short receive limits and a log we can read.
    const { app } = r;
    strict = createRegistry({
      storage: app.storage,
      service: app.service,
      quarantine: app.quarantine,
      gate: new Gate({ anonymousPull: false, proxies: new TrustedProxies(undefined) }),
      blobRedirect: false,
      blobCacheBytes: 0,
      redirectTtlSeconds: 300,
      sendBufferBytes: 64 << 20,
      sendTimeoutSeconds: 60,
      log: { info: (o) => logged.push(o as Record<string, unknown>), warn: () => {}, error: () => {} },
      sourceDescription: 'test',
      version: 'test',
      headersTimeoutMs: 500,
      requestTimeoutMs: 1000,
      metrics: new Metrics(),
    });
    await new Promise<void>((resolve) => strict.server.listen(0, '127.0.0.1', resolve));
    port = (strict.server.address() as AddressInfo).port;
  });
  after(async () => {
    strict.server.closeAllConnections();
    await new Promise((resolve) => strict.server.close(resolve));
    await r.close();
  });

  test('a malformed request line is 400 with an OCI error body', async () => {
    const answer = parse(await raw(port, 'GARBAGE\r\n\r\n'));
    assert.equal(answer.status, 400);
    assert.equal(answer.headers['content-type'], 'application/json');
    assert.equal(answer.headers.connection, 'close');
    assert.match(answer.body.errors[0]!.message, /malformed HTTP request/);
  });

  test('headers over the limit are 431', async () => {
    const answer = parse(await raw(port, `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`));
    assert.equal(answer.status, 431);
    assert.match(answer.body.errors[0]!.message, /header fields too large/);
  });

  test('CONNECT is refused with 405 instead of silence', async () => {
    const answer = parse(await raw(port, 'CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n', { keepOpenMs: 2000 }));
    assert.equal(answer.status, 405);
    assert.equal(answer.body.errors[0]!.code, 'UNSUPPORTED');
    assert.match(answer.body.errors[0]!.message, /not a proxy/);
  });

  test('headers that never finish arriving are cut off with 408', async () => {
    const started = Date.now();
    const answer = parse(await raw(port, 'GET /v2/ HTTP/1.1\r\nHost: x\r\n', { keepOpenMs: 10_000 }));
    assert.equal(answer.status, 408);
    assert.ok(Date.now() - started < 5000, 'within the header timeout and one check interval');
  });

  test('each refusal is counted and logged', async () => {
    const metrics = strict.metrics();
    assert.ok((metrics.nixery_http_protocol_errors_total ?? 0) >= 4, JSON.stringify(metrics));
    const statuses = logged.filter((l) => l.protocolError !== undefined).map((l) => l.status);
    for (const s of [400, 431, 405, 408]) assert.ok(statuses.includes(s), `logged ${s}: ${JSON.stringify(statuses)}`);
  });

  test('the server still answers normally afterwards', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/v2/`);
    assert.equal(res.status, 200);
  });
});
