import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { NixFailedError, NixTimeoutError } from '../../src/errors.js';
import { CLOSURE_QUERY_TIMEOUT_MS, packageFromPath, parsePathInfo, queryClosure } from '../../src/nix/closure.js';
import { realise } from '../../src/nix/realise.js';
import { resolvePackages } from '../../src/nix/resolve-packages.js';
import { HOST_SYSTEM, nixEnv, nixOptions, pinExamples } from '../helpers/nix.js';

const A = '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello-2.12.1';
const B = '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-busybox-static';
const C = '/nix/store/cccccccccccccccccccccccccccccccc-glibc-2.40-66';

const expected = [
  { path: A, references: [B, C], narSize: 560, closureSize: 3560 },
  { path: B, references: [C], narSize: 2000, closureSize: 3000 },
  { path: C, references: [], narSize: 1000, closureSize: 1000 },
];

test('parsePathInfo: the array form of Nix 2.8 (self-references dropped, sorted)', () => {
  const nix28 = [
    { path: C, narHash: 'sha256:x', narSize: 1000, closureSize: 1000, references: [C], registrationTime: 1, valid: true },
    { path: A, narHash: 'sha256:y', narSize: 560, closureSize: 3560, references: [C, B], deriver: '/nix/store/x.drv' },
    { path: B, narHash: 'sha256:z', narSize: 2000, closureSize: 3000, references: [B, C] },
  ];
  const hashes: Record<string, string> = { [A]: 'sha256:y', [B]: 'sha256:z', [C]: 'sha256:x' };
  assert.deepEqual(
    parsePathInfo(nix28),
    expected.map((e) => ({ ...e, narHash: hashes[e.path], ...(e.path === A ? { deriver: '/nix/store/x.drv' } : {}) })),
  );
});

test('parsePathInfo: the object form of Nix 2.19+ and Lix, with null and invalid entries', () => {
  const modern = {
    [B]: { narHash: 'sha256-z', narSize: 2000, closureSize: 3000, references: [C, B], ca: null, signatures: [] },
    [A]: { narHash: 'sha256-y', narSize: 560, closureSize: 3560, references: [B, C], deriver: null },
    '/nix/store/dddddddddddddddddddddddddddddddd-gone': null,
    '/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-invalid': { valid: false },
    [C]: { narHash: 'sha256-x', narSize: 1000, closureSize: 1000, references: [] },
  };
  const hashes: Record<string, string> = { [A]: 'sha256-y', [B]: 'sha256-z', [C]: 'sha256-x' };
  assert.deepEqual(parsePathInfo(modern), expected.map((e) => ({ ...e, narHash: hashes[e.path] })));
});

test('parsePathInfo: bare store path names as references are made absolute', () => {
  const bare = {
    [A]: { narSize: 560, closureSize: 3560, references: [B.slice(11), C.slice(11)], deriver: 'dddddddddddddddddddddddddddddddd-hello-2.12.1.drv' },
    [B]: { narSize: 2000, closureSize: 3000, references: [C.slice(11)] },
    [C]: { narSize: 1000, closureSize: 1000, references: [] },
  };
  assert.deepEqual(
    parsePathInfo(bare, '/nix/store'),
    expected.map((e) => (e.path === A ? { ...e, deriver: '/nix/store/dddddddddddddddddddddddddddddddd-hello-2.12.1.drv' } : e)),
  );
});

test('parsePathInfo: malformed input is rejected', () => {
  assert.throws(() => parsePathInfo('nope'));
  assert.throws(() => parsePathInfo([{ narSize: 1 }]));
  assert.throws(() => parsePathInfo({ [A]: { narSize: -1, closureSize: 1, references: [] } }), /narSize/);
  assert.throws(() => parsePathInfo({ [A]: { narSize: 1, references: [] } }), /closureSize/);
});

test('packageFromPath strips the store directory and hash', () => {
  assert.equal(packageFromPath(C), 'glibc-2.40-66');
  assert.equal(packageFromPath('/nix/store/cccccccccccccccccccccccccccccccc-jq-1.7.1-bin'), 'jq-1.7.1-bin');
});

test('queryClosure: the real closure of hello and of manylibs (more than 94 paths)', async () => {
  const pinned = await pinExamples();
  const resolved = await resolvePackages(pinned, ['hello', 'manylibs'], HOST_SYSTEM, nixOptions());
  const realised = await realise(resolved, nixOptions());
  try {
    const hello = resolved[0]!.outputs.out!;
    const graph = await queryClosure([hello], nixOptions());
    assert.deepEqual(graph.roots, [hello]);
    const nixSays = execFileSync('nix-store', ['--query', '--requisites', hello], { encoding: 'utf8', env: nixEnv() })
      .trim()
      .split('\n')
      .sort();
    assert.deepEqual(graph.paths.map((p) => p.path), nixSays);
    assert.equal(graph.paths.length, 2);
    const helloInfo = graph.paths.find((p) => p.path === hello)!;
    const busybox = graph.paths.find((p) => p.path !== hello)!;
    assert.match(busybox.path, /-busybox-static$/);
    assert.deepEqual(helloInfo.references, [busybox.path]);
    assert.deepEqual(busybox.references, [], 'no self-reference');
    const size = (p: string): number => Number(execFileSync('nix-store', ['--query', '--size', p], { encoding: 'utf8', env: nixEnv() }));
    assert.equal(helloInfo.narSize, size(hello));
    assert.equal(helloInfo.closureSize, size(hello) + size(busybox.path));

    const many = await queryClosure([resolved[1]!.outputs.out!, hello], nixOptions());
    assert.equal(many.paths.length, 126, 'manylibs, 120 libraries, 3 shared ones, busybox, hello');
    assert.deepEqual(many.paths.map((p) => p.path), [...many.paths.map((p) => p.path)].sort());
  } finally {
    await realised.release();
  }
});

test('queryClosure: a path that is not valid is a NixFailedError', async () => {
  await assert.rejects(queryClosure(['/nix/store/00000000000000000000000000000000-not-there'], nixOptions()), NixFailedError);
});

test('queryClosure: a store query past its limit is STORE_QUERY_TIMEOUT (default limit: 300 s)', async () => {
  assert.equal(CLOSURE_QUERY_TIMEOUT_MS, 300_000);
  const pinned = await pinExamples();
  const resolved = await resolvePackages(pinned, ['hello'], HOST_SYSTEM, nixOptions());
  const realised = await realise(resolved, nixOptions());
  try {
    // Far less than starting Nix takes.
    await assert.rejects(queryClosure(realised.outputs, { timeoutMs: 1, env: nixEnv() }), (err: unknown) => {
      assert.ok(err instanceof NixTimeoutError, String(err));
      assert.equal(err.kind, 'STORE_QUERY_TIMEOUT');
      assert.equal(err.setting, undefined);
      assert.equal(err.message, 'reading the closure of 1 store path: the Nix store query took longer than 0.001 s and was stopped');
      return true;
    });
  } finally {
    await realised.release();
  }
});
