// Images realised purely by substitution, as production deployments run: Nix may not build
// anything (`max-jobs = 0`, no remote builders) and gets the packages from a signed binary cache
// (filled with `nix copy --to file://…`) over HTTP. The digests are those of a local build, and a
// slow cache does not trip NIX_TIMEOUT, which limits builders, not downloads.
//
// There is one Nix store on this machine, and the layers are packed from it: the packages here
// are new in each run (a random marker), built once locally, copied to the cache and deleted
// from the store, so each registry below must substitute them.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServe, type ServeProcess } from '../helpers/serve.js';
import { makeUniquePackageSet, type UniquePackageSet } from '../helpers/unique-pkgs.js';
import { deleteFromStore, makeBinaryCache, serveBinaryCache, substituteOnlyConfig, type BinaryCache, type CacheServer } from '../helpers/binary-cache.js';

const IMAGE = 'cached-app/hello';
const NAR_MEGABYTES = 2;

interface Pulled {
  status: number;
  digest: string | null;
  body: Buffer;
}

async function pullManifest(serve: ServeProcess): Promise<Pulled> {
  const res = await fetch(`${serve.url}/v2/${IMAGE}/manifests/latest`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  return { status: res.status, digest: res.headers.get('docker-content-digest'), body: Buffer.from(await res.arrayBuffer()) };
}

describe('images from a binary cache only (max-jobs = 0)', () => {
  let dir: string;
  let pkgs: UniquePackageSet;
  let cache: BinaryCache;
  let uniquePaths: string[];
  let local: Pulled;
  let servers = 0;

  /** `nixery serve` on the generated set with fresh storage, Nix configured by `nixConfig`. */
  const serveWith = (nixConfig: string, env: Record<string, string> = {}): Promise<ServeProcess> =>
    startServe({ pkgsPath: pkgs.dir, storagePath: path.join(dir, `storage-${++servers}`), env: { NIX_CONFIG: nixConfig, ...env } });

  const inStore = (): string[] => uniquePaths.filter((p) => existsSync(p));
  const dropFromStore = async (): Promise<void> => {
    if (inStore().length > 0) await deleteFromStore(uniquePaths);
    assert.deepEqual(inStore(), [], 'the packages are gone from the store');
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-binary-cache-test-'));
    pkgs = await makeUniquePackageSet([
      {
        name: 'cached-lib',
        script: `mkdir -p $out/lib
dd if=/dev/urandom of=$out/lib/data.bin bs=1048576 count=${NAR_MEGABYTES} 2>/dev/null
echo "\${busybox}" > $out/lib/uses`,
      },
      {
        name: 'cached-app',
        script: `mkdir -p $out/bin $out/share
dd if=/dev/urandom of=$out/share/data.bin bs=1048576 count=${NAR_MEGABYTES} 2>/dev/null
printf '#!\${busybox}/bin/sh\\necho "uses \${pkgs.cached-lib}"\\n' > $out/bin/cached-app
chmod 0755 $out/bin/cached-app`,
      },
    ]);
    // The reference: built locally, no cache.
    const builder = await serveWith('substituters =');
    try {
      local = await pullManifest(builder);
    } finally {
      await builder.stop();
    }
    assert.equal(local.status, 200, local.body.toString());
    uniquePaths = await pkgs.outputs();
    assert.equal(uniquePaths.length, 2);
    cache = await makeBinaryCache(`nixery-test-${pkgs.marker}`);
    await cache.add(uniquePaths);
  });
  after(async () => {
    await cache?.remove();
    await pkgs?.remove();
    await rm(dir, { recursive: true, force: true });
  });

  test('the cache holds the closure, every path signed with the cache key', async () => {
    const narinfos = (await readdir(cache.dir)).filter((f) => f.endsWith('.narinfo'));
    const keyName = cache.publicKey.split(':')[0]!;
    for (const p of uniquePaths) {
      const file = `${path.basename(p).slice(0, 32)}.narinfo`;
      assert.ok(narinfos.includes(file), `${p} is in the cache`);
      const info = await readFile(path.join(cache.dir, file), 'utf8');
      assert.match(info, new RegExp(`^Sig: ${keyName}:`, 'm'));
      assert.match(info, /^Compression: none$/m);
    }
    // The closure came along (busybox, which both refer to).
    assert.ok(narinfos.length > uniquePaths.length);
  });

  test('with max-jobs = 0 and no cache, nothing is built: the image fails', async () => {
    await dropFromStore();
    const serve = await serveWith('substituters =\nmax-jobs = 0\nbuilders =');
    try {
      const res = await fetch(`${serve.url}/v2/${IMAGE}/manifests/latest`);
      assert.equal(res.status, 500);
      const body = (await res.json()) as { errors: { message: string }[] };
      assert.match(body.errors[0]!.message, /max-jobs/);
      assert.deepEqual(inStore(), []);
    } finally {
      await serve.stop();
    }
  });

  test('substituted from a binary cache over HTTP: the same manifest, config and layers as the local build', async () => {
    await dropFromStore();
    const server = await serveBinaryCache(cache.dir);
    const serve = await serveWith(substituteOnlyConfig(server.url, cache.publicKey));
    try {
      const pulled = await pullManifest(serve);
      assert.equal(pulled.status, 200, pulled.body.toString());
      assert.equal(pulled.digest, local.digest);
      assert.ok(pulled.body.equals(local.body), 'byte-identical manifest (so identical config and layer digests)');
      assert.deepEqual(inStore(), uniquePaths, 'substituted into the store');
      assertNarsServed(server, uniquePaths.length);
      // The layers themselves are served under the digests the manifest names.
      const manifest = JSON.parse(pulled.body.toString()) as { config: { digest: string }; layers: { digest: string }[] };
      for (const { digest } of [manifest.config, ...manifest.layers]) {
        const blob = await fetch(`${serve.url}/v2/${IMAGE}/blobs/${digest}`);
        assert.equal(blob.status, 200);
        await blob.arrayBuffer();
      }
    } finally {
      await serve.stop();
      await server.close();
    }
  });

  test('a slow binary cache does not trip NIX_TIMEOUT: downloads are not builds', async () => {
    await dropFromStore();
    // About 2 s for each NAR of 2 MB, and more in all: each download alone outlasts NIX_TIMEOUT.
    const server = await serveBinaryCache(cache.dir, { delayMs: 200, bytesPerSecond: 1024 * 1024 });
    const serve = await serveWith(substituteOnlyConfig(server.url, cache.publicKey), { NIX_TIMEOUT: '1' });
    try {
      const started = Date.now();
      const pulled = await pullManifest(serve);
      assert.equal(pulled.status, 200, pulled.body.toString());
      assert.ok(Date.now() - started > 2000);
      assert.equal(pulled.digest, local.digest);
      assert.ok(pulled.body.equals(local.body));
      assert.deepEqual(inStore(), uniquePaths);
      const nars = assertNarsServed(server, uniquePaths.length);
      for (const nar of nars) assert.ok(nar.ms > 1500, `${nar.path} took ${nar.ms} ms, longer than NIX_TIMEOUT`);
    } finally {
      await serve.stop();
      await server.close();
    }
  });
});

/** The NAR downloads the server answered in full: one per substituted path. */
function assertNarsServed(server: CacheServer, count: number): CacheServer['requests'] {
  const nars = server.requests.filter((r) => r.path.startsWith('/nar/') && r.status === 200);
  assert.equal(nars.length, count, `NARs served: ${server.requests.map((r) => `${r.path} ${r.status}`).join(', ')}`);
  for (const nar of nars) assert.ok(nar.bytes >= NAR_MEGABYTES * 1024 * 1024, `${nar.path}: ${nar.bytes} bytes`);
  return nars;
}
