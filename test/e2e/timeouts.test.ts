// Nix's time limits through the registry, as Nixery has them: NIX_TIMEOUT limits each builder
// (Nix's --timeout), so a chain of builders may take longer in all; NIXERY_BUILD_TIMEOUT limits a
// whole realisation and NIXERY_EVAL_TIMEOUT an evaluation (fetching included), each with its own
// error. A build outlives a client that goes away, and later pulls join it.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { NixTimeoutError } from '../../src/errors.js';
import { parseImageName } from '../../src/image/name.js';
import { startRegistry } from '../helpers/registry.js';
import { makeUniquePackageSet, type UniquePackageSet } from '../helpers/unique-pkgs.js';
import { processesMentioning, waitFor } from '../helpers/slow-pkgs.js';

async function errorOf(res: Response): Promise<{ code: string; message: string; detail?: unknown }> {
  const body = (await res.json()) as { errors: { code: string; message: string; detail?: unknown }[] };
  return body.errors[0]!;
}

/** An HTTP server that accepts connections and never answers: a download that stalls. */
async function stallingServer(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = http.createServer(() => {});
  server.on('connection', (s) => sockets.add(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('Nix time limits', () => {
  let pkgs: UniquePackageSet;
  let stall: Awaited<ReturnType<typeof stallingServer>>;
  before(async () => {
    stall = await stallingServer();
    pkgs = await makeUniquePackageSet(
      [
        // Three builders of 2 s, one after the other: each needs the one before.
        { name: 'step1', script: 'sleep 2' },
        { name: 'step2', script: 'sleep 2\necho ${pkgs.step1} > $out/before' },
        { name: 'step3', script: 'sleep 2\necho ${pkgs.step2} > $out/before' },
        // The marker in the script puts it in the builder's command line (found in /proc).
        { name: 'sleep6', script: 'echo "${marker}: sleeping 6 s" >&2\nsleep 6' },
        { name: 'sleep4', script: 'echo "${marker}: sleeping 4 s" >&2\nsleep 4' },
      ],
      // Evaluating this fetches from a server that never answers.
      { fetched: `mk "fetched" "cp \${builtins.fetchurl "${stall.url}/\${marker}.txt"} $out/data"` },
    );
  });
  after(async () => {
    await stall.close();
    await pkgs.remove();
  });

  test('NIX_TIMEOUT=3: three builders of 2 s one after the other succeed; one of 6 s is a 504 naming NIX_TIMEOUT and the derivation', async () => {
    const r = await startRegistry({ NIXERY_PKGS_PATH: pkgs.dir, NIX_TIMEOUT: '3' });
    try {
      const started = Date.now();
      const chain = await fetch(`${r.url}/v2/step3/manifests/latest`);
      assert.equal(chain.status, 200, await chain.clone().text());
      await chain.arrayBuffer();
      assert.ok(Date.now() - started >= 6000, 'the three builders ran one after the other');

      const res = await fetch(`${r.url}/v2/sleep6/manifests/latest`);
      assert.equal(res.status, 504);
      const err = await errorOf(res);
      assert.equal(err.code, 'UNAVAILABLE');
      assert.equal(err.message, 'building sleep6-1.0: the builder took longer than NIX_TIMEOUT (3 s) and was stopped');
      assert.deepEqual(err.detail, { timeoutSeconds: 3, setting: 'NIX_TIMEOUT' });
      assert.doesNotMatch(err.message, /\/nix\/store/, 'no server path in the message');

      // The builder itself reports the kind.
      await assert.rejects(r.app.builder.build(parseImageName('sleep6')), (e: unknown) => {
        assert.ok(e instanceof NixTimeoutError, String(e));
        assert.equal(e.kind, 'BUILD_TIMEOUT');
        assert.equal(e.seconds, 3);
        return true;
      });
    } finally {
      await r.close();
    }
  });

  test('NIXERY_BUILD_TIMEOUT limits the whole realisation, with its own error', async () => {
    const r = await startRegistry({ NIXERY_PKGS_PATH: pkgs.dir, NIX_TIMEOUT: '60', NIXERY_BUILD_TIMEOUT: '2' });
    try {
      const started = Date.now();
      const res = await fetch(`${r.url}/v2/sleep6/manifests/latest`);
      assert.equal(res.status, 504);
      const err = await errorOf(res);
      assert.equal(err.message, 'realising cacert, iana-etc, sleep6: the realisation (builds and downloads) took longer than NIXERY_BUILD_TIMEOUT (2 s) and was stopped');
      assert.deepEqual(err.detail, { timeoutSeconds: 2, setting: 'NIXERY_BUILD_TIMEOUT' });
      assert.ok(Date.now() - started < 5500, 'stopped at 2 s, long before the builder would end');
      await waitFor('the builder to be gone', () => processesMentioning(`${pkgs.marker}: sleeping 6 s`).length === 0, 10_000);
    } finally {
      await r.close();
    }
  });

  test('NIXERY_EVAL_TIMEOUT limits evaluation, fetching included, with its own error', async () => {
    const r = await startRegistry({ NIXERY_PKGS_PATH: pkgs.dir, NIXERY_EVAL_TIMEOUT: '2' });
    try {
      const started = Date.now();
      const res = await fetch(`${r.url}/v2/fetched/manifests/latest`);
      assert.equal(res.status, 504);
      const err = await errorOf(res);
      assert.equal(err.message, 'resolving cacert, fetched, iana-etc: evaluation took longer than NIXERY_EVAL_TIMEOUT (2 s) and was stopped');
      assert.deepEqual(err.detail, { timeoutSeconds: 2, setting: 'NIXERY_EVAL_TIMEOUT' });
      assert.ok(Date.now() - started < 8000);
      // Other images evaluate within the limit.
      const ok = await fetch(`${r.url}/v2/hello/manifests/latest`);
      assert.equal(ok.status, 200);
      await ok.arrayBuffer();
    } finally {
      await r.close();
    }
  });

  test('a build outlives a client that goes away, and a later pull joins it', async () => {
    const r = await startRegistry({ NIXERY_PKGS_PATH: pkgs.dir });
    try {
      const controller = new AbortController();
      const first = fetch(`${r.url}/v2/sleep4/manifests/latest`, { signal: controller.signal }).catch((e: unknown) => e);
      const builder = await waitFor('the builder to start', () => {
        const found = processesMentioning(`${pkgs.marker}: sleeping 4 s`);
        return found.length > 0 && found;
      });
      controller.abort();
      assert.equal(((await first) as Error).name, 'AbortError');
      // The client is gone; the build goes on.
      await new Promise((res) => setTimeout(res, 500));
      assert.ok(processesMentioning(`${pkgs.marker}: sleeping 4 s`).some((p) => builder.some((b) => b.pid === p.pid)), 'the builder still runs');
      const later = await fetch(`${r.url}/v2/sleep4/manifests/latest`);
      assert.equal(later.status, 200);
      await later.arrayBuffer();
      assert.equal(r.app.builder.buildsRun, 1, 'the later pull joined the running build');
    } finally {
      await r.close();
    }
  });
});
