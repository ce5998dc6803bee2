import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AddressInfo } from 'node:net';
import { parsePopularity, InvalidPopularityError } from '../../src/layers/popularity.js';
import { loadPopularity, PopularitySource } from '../../src/builder/popularity.js';

let dir: string;
let server: http.Server;
let base: string;
// What the loopback server answers per path; mutable so reload tests can change it.
const routes = new Map<string, { status: number; body: string; delayMs?: number }>();

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'nixery-popularity-'));
  server = http.createServer((req, res) => {
    const r = routes.get(req.url ?? '');
    if (!r) {
      res.writeHead(404).end('not found');
      return;
    }
    setTimeout(() => res.writeHead(r.status, { 'content-type': 'application/json' }).end(r.body), r.delayMs ?? 0);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

function collector(): { log: (m: string) => void; messages: string[] } {
  const messages: string[] = [];
  return { log: (m) => messages.push(m), messages };
}

test('loads a URL over HTTP', async () => {
  routes.set('/pop.json', { status: 200, body: JSON.stringify({ 'glibc-2.40-66': 301234, 'zlib-1.3': 9000 }) });
  const { log, messages } = collector();
  const pop = await loadPopularity(`${base}/pop.json`, log);
  assert.deepEqual([...pop], [['glibc-2.40-66', 301234], ['zlib-1.3', 9000]]);
  assert.deepEqual(messages, []);
});

test('loads a file path and a file URL', async () => {
  const file = path.join(dir, 'pop.json');
  await writeFile(file, '{"a-1": 3, "b-2": 0}');
  for (const source of [file, pathToFileURL(file).href]) {
    const { log, messages } = collector();
    assert.deepEqual([...(await loadPopularity(source, log))], [['a-1', 3], ['b-2', 0]]);
    assert.deepEqual(messages, []);
  }
});

test('no source: empty map, no warning', async () => {
  const { log, messages } = collector();
  assert.equal((await loadPopularity(undefined, log)).size, 0);
  assert.equal((await loadPopularity('', log)).size, 0);
  assert.deepEqual(messages, []);
});

test('every failure is one warning and an empty map, never an exception', async () => {
  routes.set('/500', { status: 500, body: 'boom' });
  routes.set('/garbage', { status: 200, body: '<html>' });
  routes.set('/array', { status: 200, body: '[1,2]' });
  routes.set('/negative', { status: 200, body: '{"a": -1}' });
  routes.set('/fraction', { status: 200, body: '{"a": 1.5}' });
  routes.set('/string', { status: 200, body: '{"a": "7"}' });
  routes.set('/slow', { status: 200, body: '{}', delayMs: 2000 });
  const cases: Array<[string, RegExp]> = [
    [`${base}/500`, /HTTP 500/],
    [`${base}/missing`, /HTTP 404/],
    [`${base}/garbage`, /not JSON/],
    [`${base}/array`, /JSON object/],
    [`${base}/negative`, /"a" must be a non-negative integer, got -1/],
    [`${base}/fraction`, /got 1\.5/],
    [`${base}/string`, /got "7"/],
    [`${base}/slow`, /timed out/],
    [path.join(dir, 'does-not-exist.json'), /ENOENT/],
  ];
  for (const [source, why] of cases) {
    const { log, messages } = collector();
    const pop = await loadPopularity(source, log, { timeoutMs: 300 });
    assert.equal(pop.size, 0, source);
    assert.equal(messages.length, 1, source);
    assert.match(messages[0]!, why, source);
    assert.ok(messages[0]!.includes(source), 'the warning names the source');
  }
});

test('documents over the size limit are refused', async () => {
  routes.set('/big', { status: 200, body: JSON.stringify({ ['x'.repeat(2000)]: 1 }) });
  const { log, messages } = collector();
  assert.equal((await loadPopularity(`${base}/big`, log, { maxBytes: 1000 })).size, 0);
  assert.match(messages[0]!, /over the limit of 1000/);
});

test('reload picks up new data and keeps the last good data when the source breaks', async () => {
  routes.set('/live', { status: 200, body: '{"a-1": 1}' });
  const { log, messages } = collector();
  const source = new PopularitySource(`${base}/live`, log);
  assert.equal(source.current.size, 0);
  await source.reload();
  assert.deepEqual([...source.current], [['a-1', 1]]);
  routes.set('/live', { status: 200, body: '{"a-1": 5, "b-1": 2}' });
  await source.reload();
  assert.deepEqual([...source.current], [['a-1', 5], ['b-1', 2]]);
  routes.set('/live', { status: 503, body: '' });
  const kept = await source.reload();
  assert.deepEqual([...kept], [['a-1', 5], ['b-1', 2]]);
  assert.equal(messages.length, 1);
  assert.match(messages[0]!, /keeping the previous data \(2 entries\).*HTTP 503/);
});

test('concurrent reloads share one fetch', async () => {
  let hits = 0;
  const counting = http.createServer((_req, res) => {
    hits++;
    setTimeout(() => res.end('{"x-1": 4}'), 50);
  });
  await new Promise<void>((resolve) => counting.listen(0, '127.0.0.1', resolve));
  try {
    const source = new PopularitySource(`http://127.0.0.1:${(counting.address() as AddressInfo).port}/`, () => undefined);
    const [a, b] = await Promise.all([source.reload(), source.reload()]);
    assert.equal(a, b);
    assert.equal(hits, 1);
    assert.equal(source.current.get('x-1'), 4);
  } finally {
    counting.closeAllConnections();
    await new Promise<void>((resolve) => counting.close(() => resolve()));
  }
});

test('parsePopularity validates strictly', () => {
  assert.deepEqual([...parsePopularity({ a: 0, b: 12 })], [['a', 0], ['b', 12]]);
  assert.throws(() => parsePopularity(null), InvalidPopularityError);
  assert.throws(() => parsePopularity({ a: Number.MAX_SAFE_INTEGER + 2 }), InvalidPopularityError);
});
