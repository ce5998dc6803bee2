// Package search (/api/v1/packages) over HTTP, in-process, with real Nix: the example set
// (names, descriptions, nested sets, attributes that throw), the index kept in storage across
// restarts (and evaluated again when damaged), sets that cannot be listed, the evaluation time
// limit, and the Gate.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { EXAMPLE_PKGS } from '../helpers/nix.js';
import { flipByteInFile } from '../helpers/damage.js';
import type { PackageSearchAnswer } from '../../src/builder/package-index.js';

async function search(r: TestRegistry, q: string, extra = ''): Promise<PackageSearchAnswer> {
  const res = await fetch(`${r.url}/api/v1/packages?q=${encodeURIComponent(q)}${extra}`);
  const text = await res.text();
  assert.equal(res.status, 200, text);
  assert.equal(res.headers.get('content-type'), 'application/json');
  return JSON.parse(text) as PackageSearchAnswer;
}

/** Searches until the current revision's index is no longer being built. */
async function settled(r: TestRegistry, q: string, extra = ''): Promise<PackageSearchAnswer> {
  const until = Date.now() + 120_000;
  for (;;) {
    const answer = await search(r, q, extra);
    if (answer.state !== 'indexing') return answer;
    assert.ok(Date.now() < until, 'the index is built within two minutes');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const attrs = (a: PackageSearchAnswer) => a.packages.map((p) => p.attr);

/** A package set: the example set plus `extra` (Nix attribute bindings, `examples` in scope). */
async function packageSet(extra: string): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-search-pkgs-'));
  await writeFile(
    path.join(dir, 'default.nix'),
    `{ system ? builtins.currentSystem, ... }:
let examples = import ${EXAMPLE_PKGS} { inherit system; };
in examples // {
${extra}
}
`,
  );
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

async function storedIndexes(storagePath: string): Promise<string[]> {
  const files = await readdir(path.join(storagePath, 'packages'), { recursive: true, withFileTypes: true });
  return files.filter((f) => f.isFile()).map((f) => path.join(f.parentPath, f.name));
}

describe('package search over the example set', () => {
  let storagePath: string;
  let r: TestRegistry;

  before(async () => {
    storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-search-storage-'));
    r = await startRegistry({}, { storagePath });
  });
  after(async () => {
    await r.close();
    await rm(storagePath, { recursive: true, force: true });
  });

  test('by attribute and name, by description, by version; nested sets; attributes that throw are left out', async () => {
    const hello = await settled(r, 'hello');
    assert.equal(hello.state, 'ready');
    assert.match(hello.revision!, /\S/);
    assert.equal(hello.error, undefined);
    assert.deepEqual(hello.packages[0], { attr: 'hello', name: 'hello-2.12.1', pname: 'hello', version: '2.12.1', description: 'Prints a known line' });

    const vcs = await search(r, 'Version CONTROL');
    assert.deepEqual(attrs(vcs), ['git'], 'by description, case-insensitively, every word');
    assert.deepEqual(attrs(await search(r, '2.45.2')), ['git'], 'by version');
    assert.deepEqual(attrs(await search(r, 'certificate')), ['cacert'], "busybox's description does not match; the CA bundle's does");

    const requests = await search(r, 'requests');
    assert.deepEqual(requests.packages, [
      { attr: 'python3Packages.requests', name: 'python3.12-requests-2.32.3', pname: 'python3.12-requests', version: '2.32.3', description: 'HTTP library for Python, for humans' },
    ]);
    // A nested set lists what it holds; its attribute that throws is not there.
    assert.deepEqual(attrs(await search(r, 'python3Packages.')), ['python3Packages.certifi', 'python3Packages.requests', 'python3Packages.urllib3']);
    assert.deepEqual(attrs(await search(r, 'xorg')), ['xorg.LibX11', 'xorg.libX11', 'xorg.xeyes']);
    assert.deepEqual(attrs(await search(r, 'perlPackages.json')), ['perlPackages.JSON']);
    // The best match first: the attribute itself, then attributes starting with the word, then the rest.
    assert.deepEqual(attrs(await search(r, 'perl')), ['perl', 'perlPackages.JSON']);
    assert.deepEqual(attrs(await search(r, 'python')).slice(0, 2), ['python3', 'python3Packages.certifi']);

    // Everything: the set's derivations, top level and nested; not `throws`, `lib`, `removed`.
    const all = await search(r, '', '&limit=1000');
    assert.equal(all.total, all.packages.length);
    assert.equal(all.total, 33);
    const every = attrs(all);
    assert.deepEqual(every, [...every].sort());
    for (const absent of ['throws', 'lib', 'python3Packages.removed', 'python3Packages', 'xorg']) assert.ok(!every.includes(absent), absent);
    for (const present of ['broken', 'slow', 'manylibs', 'jq', '_1password']) assert.ok(every.includes(present), present);
    assert.equal(attrs(await search(r, 'no-such-package-anywhere')).length, 0);

    const two = await search(r, '', '&limit=2');
    assert.equal(two.packages.length, 2);
    assert.equal(two.total, 33);
  });

  test('bad parameters are 400 with an OCI error', async () => {
    for (const limit of ['0', '-1', 'x', '1001', '1.5']) {
      const res = await fetch(`${r.url}/api/v1/packages?q=a&limit=${limit}`);
      assert.equal(res.status, 400, limit);
      assert.equal(((await res.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'PAGINATION_NUMBER_INVALID');
    }
    const res = await fetch(`${r.url}/api/v1/packages?q=${'a'.repeat(201)}`);
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'QUERY_INVALID');
    assert.equal((await fetch(`${r.url}/api/v1/packages`, { method: 'POST' })).status, 405);
  });

  test('the index is kept in storage: a restart reads it without Nix; a damaged one is evaluated again', async () => {
    await settled(r, 'hello');
    const files = await storedIndexes(storagePath);
    assert.equal(files.length, 1);
    assert.match(files[0]!, /packages\/path-[0-9a-f]{16}\/x86_64-linux\/[0-9a-f]{32}\.jsonl$/);
    await r.close();

    r = await startRegistry({}, { storagePath });
    const before = r.app.metrics.nix.invocations;
    const again = await search(r, 'requests');
    assert.equal(again.state, 'ready');
    assert.deepEqual(attrs(again), ['python3Packages.requests']);
    assert.deepEqual(r.app.packages.stats, { evaluations: 0, loads: 1, lastEvaluationMs: 0 });
    assert.equal(r.app.metrics.nix.invocations, before, 'no Nix ran');
    await r.close();

    await flipByteInFile(files[0]!);
    r = await startRegistry({}, { storagePath });
    const rebuilt = await settled(r, 'requests');
    assert.deepEqual(attrs(rebuilt), ['python3Packages.requests']);
    assert.equal(r.app.packages.stats.evaluations, 1);
    assert.equal(r.app.packages.stats.loads, 0);
    assert.equal(r.app.quarantine.failures, 1, 'the damaged index was removed');
    // Written again, whole.
    await r.app.packages.stop();
    assert.equal((await storedIndexes(storagePath)).length, 1);
  });
});

describe('package search over sets that are hard to list', () => {
  test('fields and flags that throw, values of the wrong type, sets two levels down', async () => {
    const pkgs = await packageSet(`
  describedBadly = examples.hello // { pname = "described-badly"; meta.description = throw "nixery-test: the description throws"; };
  versionNotString = examples.hello // { pname = "version-not-string"; version = 42; };
  flagThrows = { recurseForDerivations = throw "nixery-test: the flag throws"; inner = examples.hello; };
  notRecursed = { inner = examples.hello; };
  deep = { recurseForDerivations = true; level2 = { recurseForDerivations = true; tool = examples.hello // { pname = "deep-tool"; meta.description = "Found two sets down"; }; }; };
`);
    const r = await startRegistry({ NIXERY_PKGS_PATH: pkgs.dir });
    try {
      const deep = await settled(r, 'two sets down');
      assert.equal(deep.state, 'ready');
      assert.deepEqual(deep.packages, [{ attr: 'deep.level2.tool', name: 'hello-2.12.1', pname: 'deep-tool', version: '2.12.1', description: 'Found two sets down' }]);
      const badly = await search(r, 'described-badly');
      assert.deepEqual(badly.packages, [{ attr: 'describedBadly', name: 'hello-2.12.1', pname: 'described-badly', version: '2.12.1', description: '' }]);
      assert.equal((await search(r, 'version-not-string')).packages[0]!.version, '');
      assert.deepEqual(attrs(await search(r, 'inner')), [], 'sets without recurseForDerivations (or whose flag throws) are not listed');
    } finally {
      await r.close();
      await pkgs.remove();
    }
  });

  test('a set that cannot be listed at all: state failed with the error', async () => {
    const pkgs = await packageSet(`  bad = abort "nixery-test: this set cannot be listed";`);
    const r = await startRegistry({ NIXERY_PKGS_PATH: pkgs.dir });
    try {
      const answer = await settled(r, 'hello');
      assert.equal(answer.state, 'failed');
      assert.deepEqual(answer.packages, []);
      assert.equal(answer.error!.code, 'UNKNOWN');
      assert.match(answer.error!.message, /cannot be listed/);
      // Not evaluated again for every search.
      const evaluations = r.app.packages.stats.evaluations;
      const before = r.app.metrics.nix.invocations;
      assert.equal((await search(r, 'git')).state, 'failed');
      assert.equal(r.app.metrics.nix.invocations, before);
      assert.equal(r.app.packages.stats.evaluations, evaluations);
      // Pulls do not depend on it.
      assert.equal((await fetch(`${r.url}/v2/hello/manifests/latest`)).status, 200);
    } finally {
      await r.close();
      await pkgs.remove();
    }
  });

  test('the listing is bounded by NIXERY_EVAL_TIMEOUT', async () => {
    // A description that takes about 40 s to compute.
    const pkgs = await packageSet(`
  slowMeta = examples.hello // { meta.description = toString (builtins.foldl' (a: i: a + builtins.length (builtins.filter (x: x == 7) (builtins.genList (x: x) 100000))) 0 (builtins.genList (x: x) 3000)); };`);
    const r = await startRegistry({ NIXERY_PKGS_PATH: pkgs.dir, NIXERY_EVAL_TIMEOUT: '2' });
    try {
      const started = Date.now();
      const answer = await settled(r, 'hello');
      assert.ok(Date.now() - started < 20_000, `stopped at the limit (${Date.now() - started} ms)`);
      assert.equal(answer.state, 'failed');
      assert.equal(answer.error!.code, 'UNAVAILABLE');
      assert.match(answer.error!.message, /NIXERY_EVAL_TIMEOUT \(2 s\)/);
    } finally {
      await r.close();
      await pkgs.remove();
    }
  });
});

describe('package search and the Gate', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-search-auth-'));
    execFileSync('htpasswd', ['-B', '-b', '-c', path.join(dir, 'htpasswd'), 'alice', 'wonderland']);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('searching needs what pulling needs', async () => {
    const r = await startRegistry({ NIXERY_HTPASSWD: path.join(dir, 'htpasswd') });
    try {
      const anonymous = await fetch(`${r.url}/api/v1/packages?q=hello`);
      assert.equal(anonymous.status, 401);
      assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Basic /);
      const res = await fetch(`${r.url}/api/v1/packages?q=hello`, { headers: { Authorization: `Basic ${Buffer.from('alice:wonderland').toString('base64')}` } });
      assert.equal(res.status, 200);
    } finally {
      await r.close();
    }
  });
});
