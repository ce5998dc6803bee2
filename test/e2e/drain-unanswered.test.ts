// SIGTERM while a pull waits for its image's build: at the drain deadline the pull is answered
// 503 UNAVAILABLE with Retry-After (an OCI error a client retries on), not cut with an empty
// reply; the process still exits 0 in time.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { descendantsOf } from '../../src/nix/run.js';
import { startServe, type ServeProcess } from '../helpers/serve.js';
import { identify, killIfRunning, makeTestPackageSet, processesMentioning, waitFor, type ProcessId } from '../helpers/slow-pkgs.js';

const SHUTDOWN_TIMEOUT_S = 3;

test('a pull waiting for a build when the drain ends gets 503 with Retry-After, not an empty reply', async () => {
  const pkgs = await makeTestPackageSet({ sleeps: [60] });
  const storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-drain503-storage-'));
  let a: ServeProcess | undefined;
  let tree: ProcessId[] = [];
  try {
    a = await startServe({ pkgsPath: pkgs.dir, storagePath, env: { NIXERY_SHUTDOWN_TIMEOUT: String(SHUTDOWN_TIMEOUT_S) } });
    const answer = new Promise<{ status?: number; headers?: http.IncomingHttpHeaders; body?: string; error?: string }>((resolve) => {
      http
        .get(`${a!.url}/v2/slow60/manifests/latest`, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
          res.on('error', (err) => resolve({ status: res.statusCode, error: err.message }));
        })
        .on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    });
    await waitFor('the builder', () => processesMentioning(`${pkgs.marker}: sleeping 60 s`).length > 0, 120_000);
    tree = identify(descendantsOf(a.pid));
    const signalled = Date.now();
    process.kill(a.pid, 'SIGTERM');
    const got = await answer;
    const answeredMs = Date.now() - signalled;
    assert.equal(got.error, undefined, `an answer, not ${got.error}`);
    assert.equal(got.status, 503);
    assert.equal(got.headers!['retry-after'], '1');
    assert.equal(got.headers!.connection, 'close');
    const body = JSON.parse(got.body!) as { errors: Array<{ code: string; message: string }> };
    assert.equal(body.errors[0]!.code, 'UNAVAILABLE');
    assert.match(body.errors[0]!.message, /shutting down/);
    assert.ok(answeredMs >= SHUTDOWN_TIMEOUT_S * 1000 - 1500, `answered at the deadline, not before (${answeredMs} ms)`);
    const exit = await a.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, a.output().slice(-3000));
    assert.ok(Date.now() - signalled <= SHUTDOWN_TIMEOUT_S * 1000 + 1500, 'exited in time');
    assert.match(a.output(), /"answeredUnavailable":1/);
  } finally {
    await a?.stop('SIGKILL');
    killIfRunning(tree);
    await rm(storagePath, { recursive: true, force: true });
    await pkgs.remove();
  }
});
