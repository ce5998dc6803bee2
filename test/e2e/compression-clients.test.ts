// Layers of several compression chunks, as real clients unpack them: an 8.5 MiB layer is a
// multi-member gzip stream (libdeflate, the default) or a multi-frame zstd stream, and containerd,
// podman and Docker pull it (each checks the diff_ids while it unpacks). Debian's Docker 20.10
// cannot read zstd: the pull fails, as the README says. The images come from the stand-in Nix stage
// (test/helpers/stand-in-nix.ts) with a package big enough for several chunks.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startStandInRegistry, type StandInRegistry } from '../helpers/registry.js';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { startDockerd, type DockerEngine } from '../helpers/docker.js';
import { COMPRESSION_CATALOGUE, pullImage } from '../helpers/compression.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';

const execFileP = promisify(execFile);

const KINDS: Array<{ label: string; env: Record<string, string>; mediaType: string; docker: boolean }> = [
  { label: 'gzip through libdeflate (multi-member)', env: {}, mediaType: MEDIA_TYPES.ociLayerGzip, docker: true },
  { label: 'zstd (multi-frame)', env: { NIXERY_LAYER_COMPRESSION: 'zstd' }, mediaType: MEDIA_TYPES.ociLayerZstd, docker: false },
];

for (const kind of KINDS) {
  describe(`${kind.label} layers of several chunks with real clients`, () => {
    let r: StandInRegistry;
    let c: Containerd;
    let d: DockerEngine;
    let dir: string;
    let ref: string;

    before(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'nixery-e2e-chunks-'));
      r = await startStandInRegistry(kind.env, { catalogue: COMPRESSION_CATALOGUE });
      [c, d] = await Promise.all([startContainerd(), startDockerd()]);
      ref = `${r.host}/bigmix/hello:latest`;
      const image = await pullImage(r.url, 'bigmix/hello');
      assert.ok(image.manifest.layers.every((l) => l.mediaType === kind.mediaType));
      assert.ok(Math.max(...image.manifest.layers.map((l) => l.size)) > 4 * 1024 * 1024, 'a layer of several chunks');
    });
    after(async () => {
      await c?.stop();
      await d?.stop();
      await r?.close();
      await rm(dir, { recursive: true, force: true });
    });

    test('containerd pulls and unpacks it', async () => {
      await c.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', ref], { timeoutMs: 300_000 });
      const listed = await c.ctr(['images', 'check']);
      assert.match(listed, /bigmix\/hello:latest.*complete/);
    });

    test('podman pulls it', async () => {
      const conf = path.join(dir, 'containers.conf');
      await writeFile(conf, '[containers]\ndefault_ulimits = ["nofile=16384:16384", "nproc=8192:8192"]\n[engine]\nruntime = "runc"\n');
      const env = { ...process.env, CONTAINERS_CONF: conf };
      const args = ['--root', path.join(dir, 'podman', 'root'), '--runroot', path.join(dir, 'podman', 'run'), '--storage-driver', 'vfs'];
      try {
        await execFileP('podman', [...args, 'pull', '--tls-verify=false', ref], { timeout: 300_000, env });
        const { stdout } = await execFileP('podman', [...args, 'image', 'inspect', '--format', '{{len .RootFS.Layers}}', ref], { env });
        assert.ok(Number(stdout.trim()) >= 2);
      } finally {
        await execFileP('podman', [...args, 'system', 'reset', '--force'], { env }).catch(() => {});
      }
    });

    test(kind.docker ? 'Docker 20.10 pulls it' : 'Docker 20.10 cannot pull it (no zstd before Docker 23)', async () => {
      if (kind.docker) {
        await d.docker(['pull', ref]);
        assert.match(await d.docker(['image', 'inspect', '--format', '{{len .RootFS.Layers}}', ref]), /^\d+\n$/);
      } else {
        // It takes the zstd stream for a tar: "failed to register layer: … archive/tar: invalid tar header".
        await assert.rejects(d.docker(['pull', ref]), /failed to register layer.*invalid tar header/s);
      }
    });
  });
}
