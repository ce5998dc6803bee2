// SIGTERM to a real `nixery serve` while pulls are in flight: blobs read slowly, manifests whose
// images are being built. It stops accepting connections at once, closes idle keep-alive
// connections, finishes what it can within NIXERY_SHUTDOWN_TIMEOUT (with `Connection: close`),
// closes the rest, stops its Nix processes and exits 0 in time. Every pull either completed with
// the right bytes or failed in a way the client retried successfully against a second replica on
// the same storage directory.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { descendantsOf } from '../../src/nix/run.js';
import { startServe, type ServeProcess } from '../helpers/serve.js';
import { identify, killIfRunning, makeTestPackageSet, processesMentioning, stillRunning, waitFor, type ProcessId } from '../helpers/slow-pkgs.js';

const SHUTDOWN_TIMEOUT_S = 6;

interface Pulled {
  ok: boolean;
  status?: number;
  bytes: number;
  sha256?: string;
  headers?: http.IncomingHttpHeaders;
  error?: string;
}

/**
 * GETs `url`, reading the body at most `bytesPerSecond` (pausing between chunks); never rejects.
 * `ok` when the whole body (Content-Length) arrived with a 200.
 */
function pull(url: string, options: { bytesPerSecond?: number; agent?: http.Agent; onSocket?: (s: Socket) => void; onBytes?: (n: number) => void } = {}): Promise<Pulled> {
  return new Promise((resolve) => {
    const hash = createHash('sha256');
    let bytes = 0;
    let settled = false;
    const done = (r: Pulled) => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const req = http.get(url, { agent: options.agent }, (res) => {
      res.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        bytes += chunk.length;
        options.onBytes?.(bytes);
        if (options.bytesPerSecond) {
          res.pause();
          setTimeout(() => res.resume(), (chunk.length / options.bytesPerSecond) * 1000);
        }
      });
      res.on('end', () => {
        const complete = res.complete && res.statusCode === 200 && bytes === Number(res.headers['content-length']);
        done({ ok: complete, status: res.statusCode, bytes, sha256: `sha256:${hash.digest('hex')}`, headers: res.headers, error: complete ? undefined : 'incomplete' });
      });
      res.on('error', (err) => done({ ok: false, status: res.statusCode, bytes, error: err.message }));
      res.on('close', () => done({ ok: false, status: res.statusCode, bytes, error: 'closed early' }));
    });
    req.on('socket', (s: Socket) => options.onSocket?.(s));
    req.on('error', (err: NodeJS.ErrnoException) => done({ ok: false, bytes, error: err.code ?? err.message }));
  });
}

test('SIGTERM while pulls are in flight: each completes with the right bytes or its retry on another replica does; exit 0 within the deadline', async (t) => {
  const pkgs = await makeTestPackageSet({ sleeps: [3, 15], bigMegabytes: 32 });
  const storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-drain-storage-'));
  let a: ServeProcess | undefined;
  let b: ServeProcess | undefined;
  let tree: ProcessId[] = [];
  try {
    a = await startServe({ pkgsPath: pkgs.dir, storagePath, env: { NIXERY_SHUTDOWN_TIMEOUT: String(SHUTDOWN_TIMEOUT_S) } });
    b = await startServe({ pkgsPath: pkgs.dir, storagePath });

    // A cached image with a large layer (32 MB of random bytes).
    const res = await fetch(`${a.url}/v2/big/manifests/latest`);
    assert.equal(res.status, 200, await res.clone().text());
    const manifest = (await res.json()) as { layers: Array<{ digest: string; size: number }> };
    const layer = manifest.layers.reduce((x, y) => (y.size > x.size ? y : x));
    assert.ok(layer.size > 30e6, `large layer: ${layer.size}`);

    // An idle keep-alive connection.
    const idleAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let idleSocket: Socket | undefined;
    assert.ok((await pull(`${a.url}/v2/`, { agent: idleAgent, onSocket: (s) => (idleSocket = s) })).ok);
    const idleClosed = new Promise<number>((resolve) => idleSocket!.once('close', () => resolve(Date.now())));

    const blobPath = `/v2/big/blobs/${layer.digest}`;
    const received = new Map<string, number>();
    const pulls = [
      { name: 'blob at 16 MB/s', path: blobPath, digest: layer.digest, bytesPerSecond: 16e6, finishesInTime: true },
      { name: 'blob at 8 MB/s', path: blobPath, digest: layer.digest, bytesPerSecond: 8e6, finishesInTime: true },
      { name: 'blob at 1 MB/s', path: blobPath, digest: layer.digest, bytesPerSecond: 1e6, finishesInTime: false },
      { name: 'manifest of an image built in 3 s', path: '/v2/slow3/manifests/latest', finishesInTime: true },
      { name: 'manifest of an image built in 15 s', path: '/v2/slow15/manifests/latest', finishesInTime: false },
    ].map((p) => ({ ...p, first: pull(`${a!.url}${p.path}`, { bytesPerSecond: p.bytesPerSecond, onBytes: (n) => received.set(p.name, n) }) }));

    // Everything is under way: the readers are reading, both builders are running.
    await waitFor('the readers and builders', () =>
      ['blob at 16 MB/s', 'blob at 8 MB/s', 'blob at 1 MB/s'].every((n) => (received.get(n) ?? 0) > 1e6) &&
      processesMentioning(`${pkgs.marker}: sleeping 3 s`).length > 0 &&
      processesMentioning(`${pkgs.marker}: sleeping 15 s`).length > 0,
      60_000,
    );
    tree = identify(descendantsOf(a.pid));
    const signalled = Date.now();
    process.kill(a.pid, 'SIGTERM');

    // New connections are refused at once; a client retries against the other replica.
    await new Promise((r) => setTimeout(r, 200));
    const refused = await pull(`${a.url}/v2/hello/manifests/latest`);
    assert.equal(refused.ok, false);
    assert.equal(refused.error, 'ECONNREFUSED');
    const elsewhere = await pull(`${b.url}/v2/hello/manifests/latest`);
    assert.ok(elsewhere.ok);
    assert.equal(elsewhere.sha256, elsewhere.headers!['docker-content-digest']);
    // The idle keep-alive connection was closed at once.
    assert.ok((await idleClosed) - signalled < 1000, 'idle keep-alive connection closed');

    const exit = await a.exited;
    const exitMs = Date.now() - signalled;
    assert.deepEqual(exit, { code: 0, signal: null }, a.output().slice(-3000));
    assert.ok(exitMs <= SHUTDOWN_TIMEOUT_S * 1000 + 1000, `exited ${exitMs} ms after SIGTERM`);
    t.diagnostic(`exited ${exitMs} ms after SIGTERM`);
    await waitFor('its Nix processes to be gone', () => stillRunning(tree).length === 0, 2000).catch(() => undefined);
    assert.deepEqual(stillRunning(tree), [], 'no Nix process of the drained registry runs');

    for (const p of pulls) {
      const first = await p.first;
      const expected = (r: Pulled) => p.digest ?? r.headers?.['docker-content-digest'];
      if (first.ok) {
        assert.equal(first.sha256, expected(first), `${p.name}: right bytes`);
        t.diagnostic(`${p.name}: completed during the drain (Connection: ${first.headers!.connection})`);
      } else {
        assert.equal(p.finishesInTime, false, `${p.name} should have completed within the deadline: ${first.error}`);
        const retry = await pull(`${b.url}${p.path}`);
        assert.ok(retry.ok, `${p.name}: retry on the other replica: ${retry.error} ${retry.status}`);
        assert.equal(retry.sha256, expected(retry), `${p.name}: right bytes on retry`);
        t.diagnostic(`${p.name}: cut after ${first.bytes} bytes (${first.error}), retried on the other replica`);
      }
      // A response that started while draining says the connection closes.
      if (p.path.includes('slow3')) assert.equal(first.headers!.connection, 'close');
    }
    assert.match(a.output(), /"forcedConnections":[1-9]/, 'the slow reader and the long build were cut at the deadline');
  } finally {
    await a?.stop('SIGKILL');
    await b?.stop('SIGTERM');
    killIfRunning(tree);
    await rm(storagePath, { recursive: true, force: true });
    await pkgs.remove();
  }
});

test('a second signal during the drain exits at once and stops the Nix processes', async () => {
  const pkgs = await makeTestPackageSet({ sleeps: [60] });
  const storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-drain-storage-'));
  let a: ServeProcess | undefined;
  let tree: ProcessId[] = [];
  try {
    a = await startServe({ pkgsPath: pkgs.dir, storagePath, env: { NIXERY_SHUTDOWN_TIMEOUT: '30' } });
    const pending = pull(`${a.url}/v2/slow60/manifests/latest`);
    await waitFor('the builder', () => processesMentioning(`${pkgs.marker}: sleeping 60 s`).length > 0, 60_000);
    tree = identify(descendantsOf(a.pid));
    process.kill(a.pid, 'SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(a.child.exitCode, null, 'still draining: the build is in flight');
    const signalled = Date.now();
    process.kill(a.pid, 'SIGINT');
    const exit = await a.exited;
    assert.ok(Date.now() - signalled < 1500, `exited ${Date.now() - signalled} ms after the second signal`);
    assert.deepEqual(exit, { code: 130, signal: null }, '128 + SIGINT');
    assert.equal((await pending).ok, false);
    await waitFor('its Nix processes to be gone', () => stillRunning(tree).length === 0, 2000).catch(() => undefined);
    assert.deepEqual(stillRunning(tree), []);
  } finally {
    await a?.stop('SIGKILL');
    killIfRunning(tree);
    await rm(storagePath, { recursive: true, force: true });
    await pkgs.remove();
  }
});
