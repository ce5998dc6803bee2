// A connection flood against a real `nixery serve` whose open-files limit is 512 (prlimit): far
// more idle, half-open and slow-header connections than it has descriptors, from many client
// addresses (all of 127.0.0.0/8 is loopback). The registry stays up, keeps its descriptors
// under the limit, and serves a cached pull (manifest by tag and a blob) within a second each
// time while the flood is held; once the flood goes, its descriptors are released.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServe, type ServeProcess } from '../helpers/serve.js';
import { closedForGood, freePort } from '../helpers/net.js';
import { EXAMPLE_PKGS } from '../helpers/nix.js';
import { waitFor } from '../helpers/slow-pkgs.js';

const LIMIT = 512;
const MANIFEST_TYPES = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';

interface Got {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One GET on a connection of its own (as a new client would), from 127.0.0.1. */
function get(url: string, headers: Record<string, string> = {}): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers, localAddress: '127.0.0.1' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('no answer in 10 s')));
  });
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}


function openDescriptors(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Flood connections that stay as they are until released (the server may close them). */
class Flood {
  readonly sockets = new Set<net.Socket>();
  opened = 0;
  connected = 0;
  closedByServer = 0;
  private released = false;

  constructor(private readonly port: number) {}

  /** `n` connections from 127.0.0.<first>…: idle, slow headers and half-closed in turn (or all idle). */
  open(n: number, firstAddress: number, addresses: number, idleOnly = false): Promise<void> {
    const settled: Array<Promise<void>> = [];
    for (let i = 0; i < n; i++) {
      const localAddress = `127.0.0.${firstAddress + (i % addresses)}`;
      const socket = net.connect({ port: this.port, host: '127.0.0.1', localAddress, allowHalfOpen: true });
      this.opened++;
      this.sockets.add(socket);
      const kind = idleOnly ? 0 : i % 3;
      settled.push(
        new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 10_000);
          socket.once('connect', () => {
            this.connected++;
            // Slow headers: a request that never finishes; half-closed: a partial request, then FIN.
            if (kind === 1) socket.write('GET /v2/ HTTP/1.1\r\nHost: flood\r\n');
            if (kind === 2) socket.end('GET /v2/ HTT');
            clearTimeout(timer);
            resolve();
          });
          socket.once('error', () => {
            clearTimeout(timer);
            resolve();
          });
        }),
      );
      socket.on('data', () => {});
      // The server's FIN (the flood keeps its own side open) or a reset.
      let counted = false;
      const closed = () => {
        if (!counted && !this.released) this.closedByServer++;
        counted = true;
      };
      socket.once('end', closed);
      socket.once('close', () => {
        this.sockets.delete(socket);
        closed();
      });
    }
    return Promise.all(settled).then(() => undefined);
  }

  release(): void {
    this.released = true;
    for (const s of this.sockets) s.destroy();
  }
}

test(`a flood of idle and half-open connections (open files limit ${LIMIT}): the registry stays up and serves a cached pull within 1 s`, async (t) => {
  const storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-flood-storage-'));
  const port = await freePort();
  let serve: ServeProcess | undefined;
  let flood: Flood | undefined;
  try {
    serve = await startServe({ pkgsPath: EXAMPLE_PKGS, storagePath, port, wrapper: ['prlimit', `--nofile=${LIMIT}`] });
    assert.match(readFileSync(`/proc/${serve.pid}/limits`, 'utf8'), new RegExp(`^Max open files\\s+${LIMIT}\\s`, 'm'));

    // The image is built and cached before the flood.
    const first = await get(`${serve.url}/v2/hello/manifests/latest`, { Accept: MANIFEST_TYPES });
    assert.equal(first.status, 200, first.body.toString());
    const manifest = JSON.parse(first.body.toString()) as { layers: Array<{ digest: string; size: number }> };
    const layer = manifest.layers.reduce((a, b) => (b.size > a.size ? b : a));
    const blob = await get(`${serve.url}/v2/hello/blobs/${layer.digest}`);
    assert.equal(sha256(blob.body), layer.digest);
    const baseline = openDescriptors(serve.pid);

    // More connections than descriptors: one client with many, and 60 clients with a few each.
    flood = new Flood(port);
    await flood.open(600, 2, 1);
    await flood.open(1200, 10, 60);
    // Held: the server has worked through its accept queue (no more closes for half a second).
    let closes = -1;
    await waitFor('the flood to settle', () => {
      const settled = closes === flood!.closedByServer;
      closes = flood!.closedByServer;
      return settled;
    }, 30_000, 500);
    t.diagnostic(`flood: ${flood.opened} opened, ${flood.connected} connected, ${flood.closedByServer} closed by the server so far`);
    assert.ok(flood.connected > LIMIT, `more connections than the limit connected: ${flood.connected}`);

    for (let round = 0; round < 5; round++) {
      // The flood keeps coming while the pull happens.
      const wave = flood.open(100, 10 + round * 10, 10);
      const started = performance.now();
      const m = await get(`${serve.url}/v2/hello/manifests/latest`, { Accept: MANIFEST_TYPES });
      const manifestMs = performance.now() - started;
      const b = await get(`${serve.url}/v2/hello/blobs/${layer.digest}`);
      const ms = performance.now() - started;
      t.diagnostic(`round ${round}: manifest ${manifestMs.toFixed(1)} ms`);
      assert.equal(m.status, 200, m.body.toString());
      assert.equal(sha256(m.body), m.headers['docker-content-digest']);
      assert.equal(b.status, 200, b.body.toString());
      assert.equal(sha256(b.body), layer.digest);
      assert.ok(ms < 1000, `round ${round}: the cached pull took ${ms.toFixed(0)} ms`);
      t.diagnostic(`round ${round}: manifest + blob in ${ms.toFixed(1)} ms, ${flood.sockets.size} flood sockets held client-side, server descriptors ${openDescriptors(serve.pid)}`);
      await wave;
      assert.ok(openDescriptors(serve.pid) < LIMIT, 'the server keeps descriptors free');
    }
    assert.equal(serve.child.exitCode, null, 'the registry is up');
    assert.ok(flood.closedByServer > 0, 'idle flood connections were closed to make room');

    const metrics = (await get(`${serve.url}/metrics`)).body.toString();
    const refused = [...metrics.matchAll(/^nixery_http_connections_refused_total\{reason="(\w+)"\} (\d+)/gm)].map((m) => `${m[1]}=${m[2]}`);
    t.diagnostic(`refused or closed: ${refused.join(', ')}`);
    assert.match(metrics, /^nixery_http_connections_refused_total\{reason="evicted"\} [1-9]/m);

    // Released: the server's descriptors go back to about where they were.
    flood.release();
    await waitFor('the flood descriptors to be released', () => openDescriptors(serve!.pid) <= baseline + 8, 10_000, 100);
    const after = await get(`${serve.url}/v2/hello/manifests/latest`, { Accept: MANIFEST_TYPES });
    assert.equal(after.status, 200);
  } finally {
    flood?.release();
    await serve?.stop('SIGKILL');
    await rm(storagePath, { recursive: true, force: true });
  }
});

test('a connection over one client\'s cap and a refused one are closed for good, not left half-closed', async (t) => {
  const storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-flood-storage-'));
  let serve: ServeProcess | undefined;
  const sockets: net.Socket[] = [];
  try {
    // Two connections per client, none for eviction: every connection is busy with a slow request.
    serve = await startServe({ pkgsPath: EXAMPLE_PKGS, storagePath, env: { NIXERY_MAX_CLIENT_CONNECTIONS: '2', NIXERY_MAX_CONNECTIONS: '4' } });
    const port = serve.port;
    const connect = (localAddress: string) =>
      new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect({ port, host: '127.0.0.1', localAddress, allowHalfOpen: true }, () => resolve(s));
        s.once('error', reject);
        sockets.push(s);
      });
    // Busy: requests in flight that wait (event streams of an unknown build answer at once, so
    // use a request body that never arrives).
    const busy = async (address: string) => {
      const s = await connect(address);
      s.write('POST /api/v1/builds HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{');
      return s;
    };
    await busy('127.0.0.2');
    await busy('127.0.0.2');
    // Past the grace a new connection has to send its request.
    await new Promise((r) => setTimeout(r, 1200));
    const over = await connect('127.0.0.2');
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      over.on('data', (d: Buffer) => (text += d.toString()));
      over.once('end', () => resolve(text));
    });
    assert.match(answer, /^HTTP\/1.1 429 /, serve.output().slice(-3000));
    assert.match(answer, /Retry-After: 1/);
    assert.match(answer, /"code":"TOOMANYREQUESTS"/);
    assert.match(answer, /NIXERY_MAX_CLIENT_CONNECTIONS=2/);
    // The client never closes its side: the server closes the connection fully all the same.
    assert.equal(await closedForGood(over), true, 'closed, not half-closed');
    t.diagnostic('the connection over the per-client cap was answered 429 and closed');

    await busy('127.0.0.3');
    await busy('127.0.0.3');
    await new Promise((r) => setTimeout(r, 1200));
    const refused = await connect('127.0.0.4');
    const text = await new Promise<string>((resolve) => {
      let s = '';
      refused.on('data', (d: Buffer) => (s += d.toString()));
      refused.once('end', () => resolve(s));
    });
    assert.match(text, /^HTTP\/1.1 503 /);
    assert.match(text, /"code":"UNAVAILABLE"/);
    assert.match(text, /NIXERY_MAX_CONNECTIONS=4/);
    assert.equal(await closedForGood(refused), true, 'closed, not half-closed');
  } finally {
    for (const s of sockets) s.destroy();
    await serve?.stop('SIGKILL');
    await rm(storagePath, { recursive: true, force: true });
  }
});

test('out of descriptors for real (a cap above the limit): no crash, a build answers 503, and the next one works', async (t) => {
  const storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-flood-storage-'));
  const port = await freePort();
  let serve: ServeProcess | undefined;
  let flood: Flood | undefined;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    serve = await startServe({
      pkgsPath: EXAMPLE_PKGS,
      storagePath,
      port,
      wrapper: ['prlimit', '--nofile=160'],
      env: { NIXERY_MAX_CONNECTIONS: '5000', NIXERY_MAX_CLIENT_CONNECTIONS: '5000' },
    });
    // A connection opened before the flood, kept alive for the requests below.
    const onAgent = (p: string) =>
      new Promise<Got>((resolve, reject) => {
        http
          .get(`${serve!.url}${p}`, { agent, headers: { Accept: MANIFEST_TYPES } }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
          })
          .on('error', reject);
      });
    assert.equal((await onAgent('/v2/')).status, 200);

    flood = new Flood(port);
    await flood.open(400, 2, 20, true);
    await waitFor('the descriptors to run out', () => openDescriptors(serve!.pid) >= 158, 10_000, 100);

    const failed = await onAgent('/v2/hello/manifests/latest');
    t.diagnostic(`while out of descriptors: ${failed.status} ${failed.body.toString()}`);
    assert.equal(failed.status, 503);
    const error = (JSON.parse(failed.body.toString()) as { errors: Array<{ code: string; message: string }> }).errors[0]!;
    assert.equal(error.code, 'UNAVAILABLE');
    assert.ok(failed.headers['retry-after']);
    assert.equal(serve.child.exitCode, null, 'the registry is up');

    flood.release();
    await waitFor('descriptors to be free', () => openDescriptors(serve!.pid) < 100, 10_000, 100);
    const built = await get(`${serve.url}/v2/hello/manifests/latest`, { Accept: MANIFEST_TYPES });
    assert.equal(built.status, 200, built.body.toString());
    assert.equal(sha256(built.body), built.headers['docker-content-digest']);
  } finally {
    agent.destroy();
    flood?.release();
    await serve?.stop('SIGKILL');
    await rm(storagePath, { recursive: true, force: true });
  }
});
