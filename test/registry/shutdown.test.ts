// The drain, on a real HTTP server on loopback: new connections refused, idle keep-alive
// connections closed, responses in flight finished with `Connection: close`, what remains at the
// deadline closed; and the registry says when it is draining.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { trackConnections } from '../../src/registry/shutdown.js';
import { startStandInRegistry as startRegistry } from '../helpers/registry.js';

function get(port: number, path: string, agent: http.Agent): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body, socket: req.socket! }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

const closed = (s: Socket) => new Promise<void>((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())));

test('drain: idle connections closed at once, a response in flight finishes with Connection: close, the rest is cut at the deadline', async () => {
  const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    if (req.url === '/slow') setTimeout(() => res.end('slow done'), 400);
    else if (req.url === '/never') res.writeHead(200, { 'Content-Length': '10' }).write('12345');
    else res.end('quick');
  });
  const drainer = trackConnections(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  const agents = [0, 1, 2].map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }));
  try {
    const idle = await get(port, '/', agents[0]!);
    assert.equal(idle.headers.connection, 'keep-alive');
    const slow = get(port, '/slow', agents[1]!);
    const never = new Promise<Socket>((resolve) => http.get({ host: '127.0.0.1', port, path: '/never', agent: agents[2]! }, (res) => resolve(res.socket)));
    const neverSocket = await never;
    await new Promise((r) => setTimeout(r, 50));

    assert.equal(drainer.draining, false);
    const started = Date.now();
    const drained = drainer.drain(1500);
    assert.equal(drainer.draining, true);
    await closed(idle.socket);
    assert.ok(Date.now() - started < 200, 'the idle keep-alive connection is closed at once');
    await assert.rejects(get(port, '/', new http.Agent()), /ECONNREFUSED/);

    const s = await slow;
    assert.equal(s.body, 'slow done');
    assert.equal(s.headers.connection, 'close');
    await closed(s.socket);

    const result = await drained;
    assert.equal(result.forced, 1, 'the response that never ends is cut at the deadline');
    assert.ok(result.ms >= 1400 && result.ms < 2500, `${result.ms} ms`);
    await closed(neverSocket);
  } finally {
    for (const a of agents) a.destroy();
    server.closeAllConnections();
  }
});

test('the registry reports draining; a drained registry with nothing in flight finishes at once', async () => {
  const reg = await startRegistry();
  try {
    assert.equal(reg.registry.isDraining(), false);
    const res = await fetch(`${reg.url}/v2/`);
    await res.arrayBuffer();
    const result = await reg.registry.drain(5000);
    assert.equal(reg.registry.isDraining(), true);
    assert.equal(result.forced, 0);
    assert.ok(result.ms < 1000, `${result.ms} ms`);
    await assert.rejects(fetch(`${reg.url}/v2/`));
  } finally {
    await reg.close();
  }
});
