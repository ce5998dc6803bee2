// `nixery verify` (issue 20, part 5) against a registry on the example set: rebuilt here from the
// provenance the registry serves, in a fresh storage, the image matches (exit 0); rebuilt from a
// package set whose `hello` prints something else, it does not (exit 1), and the report names the
// source revision and the layers that differ. The layering parameters are the provenance's: an
// image built with another layer budget matches too.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EXAMPLE_PKGS } from '../helpers/nix.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';

const CLI = path.resolve('dist/src/cli.js');

function verify(ref: string, env: Record<string, string>, extra: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'node',
      [CLI, 'verify', ref, '--plain-http', ...extra],
      { env: { ...process.env, NIX_CONFIG: 'substituters =', ...env }, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('nixery verify', () => {
  let dir: string;
  let r: TestRegistry;
  let digest: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-e2e-verify-'));
    r = await startRegistry({}, { storagePath: path.join(dir, 'registry') });
    const res = await fetch(`${r.url}/v2/shell/hello/manifests/latest`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(res.status, 200);
    digest = res.headers.get('docker-content-digest')!;
  });
  after(async () => {
    await r?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('the same package set, a fresh storage: a match (exit 0), by digest and by tag', async () => {
    const env = { NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: path.join(dir, 'local') };
    const byDigest = await verify(`${r.host}/shell/hello@${digest}`, env, ['--json']);
    assert.equal(byDigest.code, 0, byDigest.stderr);
    const comparison = JSON.parse(byDigest.stdout);
    assert.deepEqual(comparison, { match: true, registry: digest, local: digest, differences: [] });
    const byTag = await verify(`${r.host}/shell/hello:latest`, env);
    assert.equal(byTag.code, 0, byTag.stderr);
    assert.match(byTag.stdout, new RegExp(`^match: .* is ${digest}`));
  });

  test('another package set: a mismatch (exit 1) that names the revision and the differing layer', async () => {
    const pkgs = path.join(dir, 'pkgs');
    await cp(EXAMPLE_PKGS, pkgs, { recursive: true });
    const file = path.join(pkgs, 'default.nix');
    const nix = await readFile(file, 'utf8');
    assert.ok(nix.includes(`echo 'Hello, world!'`));
    await writeFile(file, nix.replace(`echo 'Hello, world!'`, `echo 'Hello, verify!'`));
    const out = await verify(`${r.host}/shell/hello@${digest}`, { NIXERY_PKGS_PATH: pkgs, STORAGE_PATH: path.join(dir, 'other') });
    assert.equal(out.code, 1, out.stderr);
    assert.match(out.stdout, new RegExp(`^mismatch: .* is ${digest}, the image built here is sha256:[0-9a-f]{64}\\n`));
    assert.match(out.stdout, /^ {2}source revision: the image was built from .+, latest is .+ here$/m);
    assert.match(out.stdout, /^ {2}layer \d+: the registry's sha256:[0-9a-f]{64}, here sha256:[0-9a-f]{64} \(hello-2\.12\.1\)$/m);
  });

  test('the parameters come from the provenance: an image built with another layer budget matches too', async () => {
    const other = await startRegistry({ NIXERY_LAYER_BUDGET: '3' }, { storagePath: path.join(dir, 'registry-3') });
    try {
      const res = await fetch(`${other.url}/v2/shell/hello/manifests/latest`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
      const budget3 = res.headers.get('docker-content-digest')!;
      assert.notEqual(budget3, digest, 'another budget, another image');
      const out = await verify(`${other.host}/shell/hello@${budget3}`, { NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: path.join(dir, 'local-3') }, ['--json']);
      assert.equal(out.code, 0, out.stderr);
      assert.equal(JSON.parse(out.stdout).local, budget3);
    } finally {
      await other.close();
    }
  });

  test('no registry there: it cannot tell (exit 2)', async () => {
    const out = await verify('127.0.0.1:9/shell/hello', { NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: path.join(dir, 'none') });
    assert.equal(out.code, 2);
    assert.match(out.stderr, /^nixery verify: cannot reach http:\/\/127\.0\.0\.1:9/);
  });
});
