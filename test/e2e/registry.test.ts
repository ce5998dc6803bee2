// End to end against a started registry on the example set, with real clients: containerd
// pulls and runs, skopeo inspects and copies both manifest forms, podman pulls; a second pull
// runs no Nix (the server's own counter says so).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { metric, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startContainerd, ctrRun, type Containerd } from '../helpers/containerd.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';

const execFileP = promisify(execFile);

describe('registry end to end with real clients', () => {
  let r: TestRegistry;
  let c: Containerd;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-e2e-registry-'));
    r = await startRegistry();
    c = await startContainerd();
  });
  after(async () => {
    await c?.stop();
    await r?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('containerd pulls shell/hello and runs hello and bash from it', async () => {
    const ref = `${r.host}/shell/hello:latest`;
    await c.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', ref], { timeoutMs: 300_000 });
    assert.equal((await ctrRun(c, ref, ['hello'])).trim(), 'Hello, world!');
    const out = await ctrRun(c, ref, ['bash', '-c', 'for w in one two; do echo "$w"; done; cat /etc/protocols | grep -c tcp']);
    assert.match(out, /^one\ntwo\n\d+\n$/);
  });

  test('a second pull is served without running Nix', async () => {
    const nixBefore = await metric(r.url, 'nixery_nix_invocations_total');
    const buildsBefore = await metric(r.url, 'nixery_image_builds_total');
    const ref = `${r.host}/shell/hello:latest`;
    await c.ctr(['images', 'rm', ref]);
    await c.ctr(['content', 'prune', 'references']).catch(() => '');
    await c.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', ref], { timeoutMs: 120_000 });
    assert.equal(await metric(r.url, 'nixery_nix_invocations_total'), nixBefore);
    assert.equal(await metric(r.url, 'nixery_image_builds_total'), buildsBefore);
    assert.ok((await metric(r.url, 'nixery_image_cache_hits_total')) > 0);
  });

  test('skopeo inspects and copies the image with the OCI and with the Docker manifest', async () => {
    const { stdout: raw } = await execFileP('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${r.host}/shell/hello:latest`]);
    const oci = JSON.parse(raw);
    assert.equal(oci.mediaType, MEDIA_TYPES.ociManifest);
    const { stdout: info } = await execFileP('skopeo', ['inspect', '--tls-verify=false', `docker://${r.host}/shell/hello:latest`]);
    const inspected = JSON.parse(info);
    assert.equal(inspected.Architecture, 'amd64');
    assert.equal(inspected.Os, 'linux');
    assert.equal(inspected.Layers.length, oci.layers.length);

    // By tag: skopeo accepts both families and gets OCI. Copy verifies every blob's digest.
    await execFileP('skopeo', ['copy', '--src-tls-verify=false', `docker://${r.host}/shell/hello:latest`, `oci:${path.join(dir, 'oci')}:latest`]);
    const index = JSON.parse(await readFile(path.join(dir, 'oci', 'index.json'), 'utf8'));
    assert.equal(index.manifests[0].mediaType, MEDIA_TYPES.ociManifest);

    // The Docker form, by its digest, as a Docker-only client would get it.
    const docker = await fetch(`${r.url}/v2/shell/hello/manifests/latest`, { headers: { Accept: MEDIA_TYPES.dockerManifest } });
    const dockerDigest = docker.headers.get('docker-content-digest')!;
    await docker.arrayBuffer();
    await execFileP('skopeo', ['copy', '--src-tls-verify=false', `docker://${r.host}/shell/hello@${dockerDigest}`, `dir:${path.join(dir, 'docker-dir')}`]);
    const copied = JSON.parse(await readFile(path.join(dir, 'docker-dir', 'manifest.json'), 'utf8'));
    assert.equal(copied.mediaType, MEDIA_TYPES.dockerManifest);
    assert.equal(copied.config.mediaType, MEDIA_TYPES.dockerConfig);
  });

  test('podman pulls it', async () => {
    const root = path.join(dir, 'podman');
    const args = ['--root', path.join(root, 'root'), '--runroot', path.join(root, 'run'), '--storage-driver', 'vfs'];
    try {
      await execFileP('podman', [...args, 'pull', '--tls-verify=false', `${r.host}/shell/hello:latest`], { timeout: 300_000 });
      const { stdout } = await execFileP('podman', [...args, 'images', '--format', '{{.Repository}}:{{.Tag}}']);
      assert.match(stdout, new RegExp(`${r.host.replace(/\./g, '\\.')}/shell/hello:latest`));
    } finally {
      await execFileP('podman', [...args, 'system', 'reset', '--force']).catch(() => {});
      await rm(root, { recursive: true, force: true }).catch(() => {});
    }
  });
});
