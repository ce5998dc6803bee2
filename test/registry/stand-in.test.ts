// The stand-in Nix stage (test/helpers/stand-in-nix.ts) under the production builder: what the
// registry serves from it is a real image. Its blobs match their digests, its layers are gzip'd
// tars whose diff_ids are in the config, and GNU tar unpacks them into a root file system with
// the packages' files and the symlink forest. The same catalogue gives the same digests anywhere.
// And the guard of `npm run test:unit` (test/helpers/no-nix.ts) stops a test that starts Nix.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdtemp, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { startStandInRegistry, type StandInRegistry } from '../helpers/registry.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';

const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Manifest {
  config: { digest: string; size: number };
  layers: Array<{ digest: string; size: number; mediaType: string }>;
}

async function pull(r: StandInRegistry, name: string): Promise<{ digest: string; manifest: Manifest; config: { config?: { Cmd?: string[] }; rootfs: { diff_ids: string[] } }; layers: Buffer[] }> {
  const res = await fetch(`${r.url}/v2/${name}/manifests/latest`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
  assert.equal(res.status, 200, await res.clone().text());
  const bytes = Buffer.from(await res.arrayBuffer());
  const manifest = JSON.parse(bytes.toString()) as Manifest;
  const blob = async (digest: string) => {
    const b = await fetch(`${r.url}/v2/${name}/blobs/${digest}`);
    assert.equal(b.status, 200);
    const body = Buffer.from(await b.arrayBuffer());
    assert.equal(sha256(body), digest, 'a blob is the bytes its digest names');
    return body;
  };
  const config = JSON.parse((await blob(manifest.config.digest)).toString());
  const layers = await Promise.all(manifest.layers.map((l) => blob(l.digest)));
  return { digest: sha256(bytes), manifest, config, layers };
}

describe('images built on the stand-in Nix stage', () => {
  let r: StandInRegistry;
  let dir: string;
  before(async () => {
    r = await startStandInRegistry();
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-stand-in-unpack-'));
  });
  after(async () => {
    await r.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('are real images: digests, diff_ids, and a root file system GNU tar unpacks', async () => {
    const { manifest, config, layers } = await pull(r, 'shell/hello');
    assert.ok(manifest.layers.length >= 2, 'store path layers and the customisation layer');
    assert.deepEqual(config.config?.Cmd, ['bash'], 'shell makes bash the command');
    assert.equal(config.rootfs.diff_ids.length, layers.length);
    const root = path.join(dir, 'root');
    execFileSync('mkdir', ['-p', root]);
    for (const [i, layer] of layers.entries()) {
      assert.equal(manifest.layers[i]!.mediaType, MEDIA_TYPES.ociLayerGzip);
      assert.equal(sha256(gunzipSync(layer)), config.rootfs.diff_ids[i], 'the diff_id is the uncompressed tar');
      const file = path.join(dir, `layer-${i}.tar.gz`);
      await writeFile(file, layer);
      execFileSync('tar', ['-xzf', file, '-C', root, '--no-same-owner']);
    }
    const store = await readdir(path.join(root, 'nix/store'));
    const hello = store.find((p) => /^[0-9a-z]{32}-hello-2\.12\.1$/.test(p));
    assert.ok(hello, `hello's store path among ${store.join(', ')}`);
    for (const name of ['bash-interactive-5.2p32', 'coreutils-9.5', 'busybox-static', 'ncurses-6.4', 'nss-cacert-3.101', 'iana-etc-20240318']) {
      assert.ok(store.some((p) => p.endsWith(`-${name}`)), `${name} (a package or a dependency) is in the image`);
    }
    const script = path.join(root, 'nix/store', hello, 'bin/hello');
    assert.equal(await readFile(script, 'utf8'), "#!/bin/sh\necho 'Hello, world!'\n");
    assert.equal((await lstat(script)).mode & 0o777, 0o555);
    assert.equal(await readlink(path.join(root, 'bin/hello')), `/nix/store/${hello}/bin/hello`, 'the symlink forest');
    assert.ok((await lstat(path.join(root, 'etc/ssl/certs/ca-bundle.crt'))).isSymbolicLink());
  });

  test('a package that fails to realise is a build failure naming it', async () => {
    const res = await fetch(`${r.url}/v2/broken/manifests/latest`);
    assert.equal(res.status, 500);
    const body = (await res.json()) as { errors: Array<{ message: string }> };
    assert.match(body.errors[0]!.message, /realising broken, cacert, iana-etc: Nix failed \(exit 1\).*broken on purpose/s);
  });

  test('the same catalogue gives the same bytes, in another store and another storage', async () => {
    const other = await startStandInRegistry();
    try {
      assert.notEqual(other.nix.storeRoot, r.nix.storeRoot);
      const a = await pull(r, 'curl/hello');
      const b = await pull(other, 'curl/hello');
      assert.equal(a.digest, b.digest);
      assert.deepEqual(a.layers, b.layers);
    } finally {
      await other.close();
    }
  });
});

test('the test:unit guard stops a process that starts Nix, and records it', async () => {
  const guard = path.join(path.dirname(fileURLToPath(import.meta.url)), '../helpers/no-nix.js');
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-no-nix-'));
  try {
    const log = path.join(dir, 'log');
    const tries = [
      `spawn('nix-store', ['--version'])`,
      `execFileSync('/usr/bin/nix-instantiate', ['--eval'])`,
      `execSync('FOO=1 exec nix path-info /nix/store/x')`,
      `spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'nix-store', '--realise'])`,
      `execFileSync('sh', ['-c', 'true && nix-collect-garbage'])`,
      `await (await import('node:util')).promisify(execFile)('nix-env', ['-q'])`,
    ];
    for (const call of tries) {
      const run = spawnSync(process.execPath, ['--import', guard, '--input-type=module', '-e', `import { spawn, execFile, execFileSync, execSync } from 'node:child_process'; ${call};`], {
        env: { ...process.env, NIXERY_NO_NIX_LOG: log, NODE_OPTIONS: '' },
        encoding: 'utf8',
      });
      assert.notEqual(run.status, 0, call);
      assert.match(run.stderr, /test:unit runs without Nix, but .* tried to run .*nix/, call);
    }
    const lines = (await readFile(log, 'utf8')).trim().split('\n');
    assert.equal(lines.length, tries.length);
    assert.match(lines[0]!, /tried to run nix-store --version/);
    const allowed = spawnSync(process.execPath, ['--import', guard, '-e', `require('node:child_process').execFileSync('true')`], { env: { ...process.env, NODE_OPTIONS: '' } });
    assert.equal(allowed.status, 0, 'other programs run');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
