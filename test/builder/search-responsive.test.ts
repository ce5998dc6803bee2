// Search cannot stall serving (issue 21, point 7): queries have a bounded size, and a search of
// the largest size over a 100,000-package index gives the event loop back while it runs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { MAX_QUERY_WORDS, SearchIndex } from '../../src/builder/package-index.js';
import { NixeryError } from '../../src/errors.js';
import { generatedPackages, longQuery } from '../helpers/generated-packages.js';

test('a query of more than MAX_QUERY_WORDS words is QUERY_INVALID (400)', async () => {
  const index = new SearchIndex('r', generatedPackages(100));
  await assert.rejects(index.search(longQuery(MAX_QUERY_WORDS + 1), 10), (err: unknown) => {
    assert.ok(err instanceof NixeryError);
    assert.equal(err.kind, 'QUERY_INVALID');
    assert.equal(err.status, 400);
    assert.equal(err.message, `q has ${MAX_QUERY_WORDS + 1} words (at most ${MAX_QUERY_WORDS})`);
    return true;
  });
  // Repeated words count once; the answers are the same as for the words once.
  const once = await index.search('library number', 100);
  assert.deepEqual(await index.search('library number library number library number library number library number library number', 100), once);
  assert.equal(once.total, (await index.search('number library', 100)).total);
});

test('max-size queries from 8 clients on a 100k index: a server on the same loop keeps answering', async () => {
  const index = new SearchIndex('r', generatedPackages(100_000));
  // A health check served by this very event loop, polled while the searches run.
  const server = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const agent = new http.Agent({ keepAlive: true });
  const probe = () =>
    new Promise<number>((resolve, reject) => {
      const t = performance.now();
      http.get({ host: '127.0.0.1', port, path: '/healthz', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(performance.now() - t));
      }).on('error', reject);
    });
  try {
    const base = longQuery(MAX_QUERY_WORDS - 1);
    const alone = performance.now();
    const expected = await index.search(`${base} 0`, 50);
    const aloneMs = performance.now() - alone;
    assert.ok(expected.total > 0);

    let searching = true;
    const probes: number[] = [];
    const prober = (async () => {
      while (searching) probes.push(await probe());
    })();
    const started = performance.now();
    const answers = await Promise.all(
      Array.from({ length: 8 }, async (_, c) => {
        const out = [];
        for (let k = 0; k < 3; k++) out.push(await index.search(`${base} ${c}${k}`, 50));
        return out;
      }),
    );
    const searchMs = performance.now() - started;
    searching = false;
    await prober;
    assert.equal(answers.flat().length, 24);
    probes.sort((a, b) => a - b);
    const worst = probes[probes.length - 1]!;
    // Before, each search held the loop for its whole length, and 8 of them for all of theirs.
    // A probe about every 25 ms of searching (a loop held by the searches answers one at the end).
    const wanted = Math.max(2, Math.min(10, Math.floor(searchMs / 25)));
    assert.ok(probes.length >= wanted, `the health check was answered ${probes.length} times in ${Math.round(searchMs)} ms of searching`);
    assert.ok(worst < Math.max(aloneMs, 250), `worst health check ${Math.round(worst)} ms (one search alone takes ${Math.round(aloneMs)} ms, all took ${Math.round(searchMs)} ms)`);
  } finally {
    agent.destroy();
    server.close();
  }
});
