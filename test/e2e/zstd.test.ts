// zstd layers (NIXERY_LAYER_COMPRESSION=zstd) with real Nix and real clients: containerd pulls and
// runs the image, skopeo copies it (checking every blob's digest), podman pulls and runs it. The
// layers are application/vnd.oci.image.layer.v1.tar+zstd and their diff_ids are the tars' digests.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startContainerd, ctrRun, type Containerd } from '../helpers/containerd.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';

const execFileP = promisify(execFile);
// @types/node 20 does not know node:zlib's zstd (Node ≥ 22.15).
const { zstdDecompressSync } = zlib as unknown as { zstdDecompressSync(input: Buffer): Buffer };
const sha256 = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('zstd layers with real clients', () => {
  let r: TestRegistry;
  let c: Containerd;
  let dir: string;
  let ref: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-e2e-zstd-'));
    r = await startRegistry({ NIXERY_LAYER_COMPRESSION: 'zstd' });
    c = await startContainerd();
    ref = `${r.host}/shell/hello:latest`;
  });
  after(async () => {
    await c?.stop();
    await r?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('containerd pulls the zstd image and runs hello and bash from it', async () => {
    await c.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', ref], { timeoutMs: 300_000 });
    assert.equal((await ctrRun(c, ref, ['hello'])).trim(), 'Hello, world!');
    assert.match(await ctrRun(c, ref, ['bash', '-c', 'echo "$((6 * 7))"']), /^42\n$/);
  });

  test('skopeo copies it: zstd layers whose diff_ids are the uncompressed tars', async () => {
    const layout = path.join(dir, 'oci');
    await execFileP('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${layout}:latest`], { timeout: 300_000 });
    const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8'));
    const blob = (digest: string) => readFile(path.join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length)));
    const manifest = JSON.parse((await blob(index.manifests[0].digest)).toString());
    const config = JSON.parse((await blob(manifest.config.digest)).toString());
    assert.ok(manifest.layers.length >= 2);
    for (const [i, layer] of manifest.layers.entries()) {
      assert.equal(layer.mediaType, MEDIA_TYPES.ociLayerZstd);
      const bytes = await blob(layer.digest);
      assert.equal(sha256(bytes), layer.digest);
      assert.equal(sha256(zstdDecompressSync(bytes)), config.rootfs.diff_ids[i], `layer ${i}`);
    }
  });

  test('podman pulls and runs it', async () => {
    const root = path.join(dir, 'podman');
    const conf = path.join(dir, 'containers.conf');
    await writeFile(conf, '[containers]\ndefault_ulimits = ["nofile=16384:16384", "nproc=8192:8192"]\n[engine]\nruntime = "runc"\n');
    const env = { ...process.env, CONTAINERS_CONF: conf };
    const args = ['--root', path.join(root, 'root'), '--runroot', path.join(root, 'run'), '--storage-driver', 'vfs'];
    try {
      await execFileP('podman', [...args, 'pull', '--tls-verify=false', ref], { timeout: 300_000, env });
      const { stdout } = await execFileP('podman', [...args, 'run', '--rm', '--network', 'none', ref, 'hello'], { timeout: 120_000, env });
      assert.equal(stdout.trim(), 'Hello, world!');
    } finally {
      await execFileP('podman', [...args, 'system', 'reset', '--force'], { env }).catch(() => {});
      await rm(root, { recursive: true, force: true }).catch(() => {});
    }
  });

  test('the Docker schema 2 form names the layers with the OCI zstd type (Docker has none)', async () => {
    const res = await fetch(`${r.url}/v2/shell/hello/manifests/latest`, { headers: { Accept: MEDIA_TYPES.dockerManifest } });
    assert.equal(res.status, 200);
    const docker = (await res.json()) as { mediaType: string; layers: Array<{ mediaType: string }> };
    assert.equal(docker.mediaType, MEDIA_TYPES.dockerManifest);
    assert.ok(docker.layers.every((l) => l.mediaType === MEDIA_TYPES.ociLayerZstd));
  });
});
