// `nixery serve` as a process: configuration errors stop startup with one line; startup logs
// the effective configuration; every request is one JSON log line with an id, status,
// duration and whether it was a cache hit or a build.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { EXAMPLE_PKGS } from '../helpers/nix.js';

const execFileP = promisify(execFile);
const CLI = path.resolve('dist/src/cli.js');

test('invalid configuration stops startup with one line naming the setting', async () => {
  const base = { ...process.env, NIX_CONFIG: 'substituters =', NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: path.join(tmpdir(), 'nixery-never-used') };
  const cases: Array<[Record<string, string | undefined>, string[], RegExp]> = [
    [{ PORT: 'eighty' }, [], /^nixery: invalid PORT: must be a whole number, got "eighty"\n$/],
    [{ PORT: '70000' }, [], /^nixery: invalid PORT: must be between 0 and 65535, got 70000\n$/],
    [{}, ['--port', 'x'], /^nixery: invalid --port: must be a whole number/],
    [{ NIXERY_STORAGE_BACKEND: 'ftp' }, [], /^nixery: invalid NIXERY_STORAGE_BACKEND: must be one of filesystem, s3, gcs, got "ftp"\n$/],
    [{ NIXERY_STORAGE_BACKEND: 's3' }, [], /^nixery: the s3 storage backend needs S3_BUCKET/],
    [{ NIXERY_LAYERING: 'random' }, [], /^nixery: invalid NIXERY_LAYERING: must be one of/],
    [{ NIXERY_LAYER_BUDGET: '200' }, [], /^nixery: invalid NIXERY_LAYER_BUDGET: must be between 1 and 124/],
    [{ NIXERY_PKGS_PATH: undefined }, [], /^nixery: no package source configured: set NIXERY_CHANNEL/],
  ];
  for (const [env, args, expected] of cases) {
    const merged = Object.fromEntries(Object.entries({ ...base, ...env }).filter(([, v]) => v !== undefined));
    const err = await execFileP('node', [CLI, 'serve', ...args], { env: merged, timeout: 30_000 }).then(
      () => assert.fail(`started with ${JSON.stringify(env)}`),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(err.code, 2, JSON.stringify(env));
    assert.match(err.stderr, expected);
  }
});

test('startup and request logs are JSON lines', async () => {
  const storage = await mkdtemp(path.join(tmpdir(), 'nixery-serve-log-'));
  const child = spawn('node', [CLI, 'serve', '--port', '0', '--host', '127.0.0.1'], {
    env: { ...process.env, NIX_CONFIG: 'substituters =', NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: storage },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const next = async () => JSON.parse(((await lines.next()).value as string) ?? 'null') as Record<string, unknown>;
    const started = await next();
    assert.equal(started.msg, 'nixery-ts registry started');
    const config = started.config as Record<string, unknown>;
    assert.equal(config.NIXERY_PKGS_PATH, EXAMPLE_PKGS);
    assert.equal(config.STORAGE_PATH, storage);
    assert.equal(config.NIX_TIMEOUT, 60);
    const url = `http://${started.listen as string}`;

    for (const expectedCache of ['build', 'hit']) {
      const res = await fetch(`${url}/v2/hello/manifests/latest`);
      assert.equal(res.status, 200);
      const reqId = res.headers.get('x-request-id');
      await res.arrayBuffer();
      let line = await next();
      while (line.msg !== 'request') line = await next();
      assert.equal(line.req, reqId);
      assert.equal(line.status, 200);
      assert.equal(line.method, 'GET');
      assert.equal(line.path, '/v2/hello/manifests/latest');
      assert.equal(typeof line.ms, 'number');
      assert.equal(line.cache, expectedCache);
    }
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await rm(storage, { recursive: true, force: true });
  }
});
