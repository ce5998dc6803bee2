import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { NixFailedError, NixTimeoutError } from '../../src/errors.js';
import { buildFailureText, builderTimeouts, realise } from '../../src/nix/realise.js';
import { resolvePackages } from '../../src/nix/resolve-packages.js';
import type { PinnedSource } from '../../src/nix/source.js';
import { HOST_SYSTEM, nixOptions, pinExamples } from '../helpers/nix.js';

let pinned: PinnedSource;
before(async () => {
  pinned = await pinExamples();
});

test('realise: builds the outputs, holds GC roots until release', async () => {
  const resolved = await resolvePackages(pinned, ['hello', 'jq', 'bashInteractive'], HOST_SYSTEM, nixOptions());
  const realised = await realise(resolved, nixOptions());
  try {
    assert.deepEqual(realised.outputs, [...realised.outputs].sort());
    assert.equal(realised.outputs.length, 4, 'hello, jq bin + man, bash');
    for (const out of realised.outputs) assert.ok(existsSync(out), out);
    const hello = resolved[0]!.outputs.out!;
    assert.equal(execFileSync(join(hello, 'bin', 'hello'), { encoding: 'utf8' }), 'Hello, world!\n');
    const bash = resolved[2]!.outputs.out!;
    assert.equal(execFileSync(join(bash, 'bin', 'bash'), ['-c', 'echo hi; echo "$((1 + 2))"'], { encoding: 'utf8' }), 'hi\n3\n');
    // Every output is protected by a root in the build's own directory.
    const rooted = new Set(readdirSync(realised.gcRootDir).map((l) => realpathSync(join(realised.gcRootDir, l))));
    for (const out of realised.outputs) assert.ok(rooted.has(out), `${out} has a GC root`);
    assert.match(readlinkSync(join(realised.gcRootDir, readdirSync(realised.gcRootDir)[0]!)), /^\/nix\/store\//);
  } finally {
    await realised.release();
  }
  assert.equal(existsSync(realised.gcRootDir), false);
  await realised.release();
});

test('realise: a failing builder gives NixFailedError with its log line', async () => {
  const resolved = await resolvePackages(pinned, ['broken', 'hello'], HOST_SYSTEM, nixOptions());
  await assert.rejects(realise(resolved, nixOptions()), (err: unknown) => {
    assert.ok(err instanceof NixFailedError, String(err));
    assert.equal(err.kind, 'BUILD_FAILED');
    assert.match(err.message, /^realising broken, hello: Nix failed \(exit \d+\): error: builder for '[^']*broken-1\.0\.drv' failed/);
    assert.match(err.message, /nixery-example: this package is broken on purpose/);
    return true;
  });
});

test('realise: a builder past NIX_TIMEOUT (Nix --timeout) is BUILD_TIMEOUT naming its derivation', async () => {
  const resolved = await resolvePackages(pinned, ['slow'], HOST_SYSTEM, nixOptions());
  const started = Date.now();
  await assert.rejects(realise(resolved, { ...nixOptions(), builderTimeoutSeconds: 2 }), (err: unknown) => {
    assert.ok(err instanceof NixTimeoutError, String(err));
    assert.equal(err.kind, 'BUILD_TIMEOUT');
    assert.equal(err.seconds, 2);
    assert.equal(err.setting, 'NIX_TIMEOUT');
    assert.equal(err.message, 'building slow-1.0: the builder took longer than NIX_TIMEOUT (2 s) and was stopped');
    assert.match(err.internal ?? '', /\/nix\/store\/[a-z0-9]{32}-slow-1\.0\.drv/);
    return true;
  });
  const elapsed = Date.now() - started;
  assert.ok(elapsed < 8000, `took ${elapsed} ms`);
  assert.equal(existsSync(resolved[0]!.outputs.out!), false);
});

test('realise: past its wall-clock limit (NIXERY_BUILD_TIMEOUT) the realisation is killed: REALISE_TIMEOUT', async () => {
  const resolved = await resolvePackages(pinned, ['slow'], HOST_SYSTEM, nixOptions());
  const started = Date.now();
  await assert.rejects(realise(resolved, { ...nixOptions(2000), builderTimeoutSeconds: 60 }), (err: unknown) => {
    assert.ok(err instanceof NixTimeoutError, String(err));
    assert.equal(err.kind, 'REALISE_TIMEOUT');
    assert.equal(err.seconds, 2);
    assert.equal(err.message, 'realising slow: the realisation (builds and downloads) took longer than NIXERY_BUILD_TIMEOUT (2 s) and was stopped');
    return true;
  });
  const elapsed = Date.now() - started;
  assert.ok(elapsed < 8000, `took ${elapsed} ms`);
  assert.equal(existsSync(resolved[0]!.outputs.out!), false);
});

test('builderTimeouts reads the builders Nix stopped at --timeout, in the wordings of Nix versions', () => {
  const drv = '/nix/store/3fp8bpdi8c5fbh6rszd5325cwkqfhwqq-six-1.0.drv';
  // Nix 2.8 (this machine), 2.3, and a later one with ^* and a remote builder's wrapping.
  assert.deepEqual(builderTimeouts(`building '${drv}'...\nerror: building of '${drv}!*' from .drv file timed out after 3 seconds\n`), [{ drvPath: drv, seconds: 3 }]);
  assert.deepEqual(builderTimeouts(`error: building of '${drv}' timed out after 60 seconds`), [{ drvPath: drv, seconds: 60 }]);
  assert.deepEqual(
    builderTimeouts(`error: build of '${drv}^out' on 'ssh-ng://builder' failed: building of '${drv}^*' from .drv file timed out after 5 seconds`),
    [{ drvPath: drv, seconds: 5 }],
  );
  // max-silent-time is not NIX_TIMEOUT; other failures are not timeouts.
  assert.deepEqual(builderTimeouts(`error: building of '${drv}!*' from .drv file timed out after 3 seconds of silence`), []);
  assert.deepEqual(builderTimeouts(`error: builder for '${drv}' failed with exit code 1`), []);
});

test('buildFailureText puts Nix errors first and drops progress lines', () => {
  const nix28 = [
    'these 2 derivations will be built:',
    '  /nix/store/aaaa-broken-1.0.drv',
    '  /nix/store/bbbb-hello-1.0.drv',
    "building '/nix/store/aaaa-broken-1.0.drv'...",
    'some log line',
    'the real problem',
    "error: builder for '/nix/store/aaaa-broken-1.0.drv' failed with exit code 1",
    'error: 1 dependencies of derivation failed to build',
  ].join('\n');
  assert.equal(
    buildFailureText(nix28),
    [
      "error: builder for '/nix/store/aaaa-broken-1.0.drv' failed with exit code 1",
      'error: 1 dependencies of derivation failed to build',
      'some log line',
      'the real problem',
    ].join('\n'),
  );
  const modern = [
    "error: builder for '/nix/store/aaaa-broken-1.0.drv' failed with exit code 1;",
    '       last 1 log lines:',
    '       > the real problem',
    "       For full logs, run 'nix log /nix/store/aaaa-broken-1.0.drv'.",
  ].join('\n');
  assert.equal(buildFailureText(modern).split('\n').length, 4);
  assert.match(buildFailureText(modern), /> the real problem/);
});
