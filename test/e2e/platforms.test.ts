// Multi-platform images with real clients, on a registry serving linux/amd64 and linux/arm64:
// skopeo sees the index and copies the arm64 image (whose programs are aarch64 executables),
// containerd pulls the arm64 image and runs it under QEMU user emulation, docker pulls the index
// and gets this machine's platform, and `nixery build` writes the same index to an OCI layout.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { lstat, mkdtemp, open, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { startDockerd, type DockerEngine } from '../helpers/docker.js';
import { ensureAarch64Emulation } from '../helpers/binfmt.js';
import { EXAMPLE_PKGS, REPO_ROOT, nixEnv } from '../helpers/nix.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';
import { hostPlatform } from '../../src/image/platform.js';

const execFileP = promisify(execFile);
const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli.js');
const PLATFORMS = 'linux/amd64,linux/arm64';
/** e_machine of an ELF file for AArch64. */
const EM_AARCH64 = 0xb7;

interface IndexJson {
  mediaType: string;
  manifests: Array<{ mediaType: string; digest: string; size: number; platform: { architecture: string; os: string } }>;
}

/**
 * Follows symlinks the way the container would, inside `rootfs` (absolute targets are relative
 * to it), and returns the file they end at.
 */
async function resolveInRootfs(rootfs: string, file: string): Promise<string> {
  let current = file;
  for (let hops = 0; hops < 40; hops++) {
    const host = path.join(rootfs, current);
    if (!(await lstat(host)).isSymbolicLink()) return host;
    const target = await readlink(host);
    current = target.startsWith('/') ? target : path.join(path.dirname(current), target);
  }
  throw new Error(`too many symlinks from ${file}`);
}

/** The ELF class and machine of a file (class 2: 64-bit), or null when it is no ELF file. */
async function elfMachine(file: string): Promise<{ elfClass: number; machine: number } | null> {
  const handle = await open(file, 'r');
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(20), 0, 20, 0);
    if (bytesRead < 20 || buffer.subarray(0, 4).toString('latin1') !== '\x7fELF') return null;
    return { elfClass: buffer[4]!, machine: buffer.readUInt16LE(18) };
  } finally {
    await handle.close();
  }
}

describe('multi-platform images with real clients', () => {
  let r: TestRegistry;
  let dir: string;
  let index: IndexJson;
  let indexDigest: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-e2e-platforms-'));
    r = await startRegistry({ NIXERY_PLATFORMS: PLATFORMS });
    await ensureAarch64Emulation();
  });
  after(async () => {
    await r?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('skopeo inspect --raw shows the OCI index with both platforms', async () => {
    const { stdout } = await execFileP('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${r.host}/shell/hello:latest`], { timeout: 300_000 });
    index = JSON.parse(stdout) as IndexJson;
    assert.equal(index.mediaType, MEDIA_TYPES.ociIndex);
    assert.deepEqual(
      index.manifests.map((m) => [m.mediaType, `${m.platform.os}/${m.platform.architecture}`]),
      [
        [MEDIA_TYPES.ociManifest, 'linux/amd64'],
        [MEDIA_TYPES.ociManifest, 'linux/arm64'],
      ],
    );
    const res = await fetch(`${r.url}/v2/shell/hello/manifests/latest`, { method: 'HEAD', headers: { Accept: MEDIA_TYPES.ociIndex } });
    indexDigest = res.headers.get('docker-content-digest')!;
    // What skopeo printed is the index, byte for byte.
    assert.equal(indexDigest, `sha256:${(await import('node:crypto')).createHash('sha256').update(stdout).digest('hex')}`);
  });

  test('skopeo copy --override-arch arm64 gets the arm64 image: hello and bash are aarch64 executables', async () => {
    const layout = path.join(dir, 'arm64-oci');
    await execFileP('skopeo', ['--override-arch', 'arm64', 'copy', '--src-tls-verify=false', `docker://${r.host}/shell/hello:latest`, `oci:${layout}:latest`], { timeout: 300_000 });
    const top = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as IndexJson;
    assert.equal(top.manifests.length, 1);
    assert.equal(top.manifests[0]!.digest, index.manifests[1]!.digest, 'the arm64 entry of the index');
    const bundle = path.join(dir, 'arm64-bundle');
    await execFileP('umoci', ['unpack', '--rootless', '--image', `${layout}:latest`, bundle], { timeout: 120_000 });
    const config = JSON.parse(await readFile(path.join(bundle, 'config.json'), 'utf8')) as { process: { args?: string[] } };
    assert.deepEqual(config.process.args, ['bash']);
    const rootfs = path.join(bundle, 'rootfs');
    for (const program of ['/bin/hello', '/bin/bash', '/bin/sh', '/bin/ls']) {
      const file = await resolveInRootfs(rootfs, program);
      assert.deepEqual(await elfMachine(file), { elfClass: 2, machine: EM_AARCH64 }, `${program} (${path.relative(rootfs, file)}) is a 64-bit aarch64 ELF file`);
    }
  });

  test('containerd pulls linux/arm64 and runs its hello and bash under QEMU user emulation', async () => {
    let c: Containerd | undefined;
    try {
      c = await startContainerd();
      const ref = `${r.host}/shell/hello:latest`;
      await c.ctr(['images', 'pull', '--plain-http', '--platform', 'linux/arm64', '--snapshotter', 'native', ref], { timeoutMs: 300_000 });
      const run = (id: string, cmd: string[]) => c!.ctr(['run', '--rm', '--platform', 'linux/arm64', '--snapshotter', 'native', ref, id, ...cmd]);
      assert.equal((await run('arm64-hello', ['hello'])).trim(), 'Hello, world!');
      // uname under qemu-user reports the emulated machine; BASH_VERSION is set by Debian's real bash.
      const out = await run('arm64-bash', ['bash', '-c', 'echo "$BASH_VERSION"; uname -m']);
      assert.match(out, /^5\.\d+\.\d+\(\d+\)-release\naarch64\n$/);
    } finally {
      await c?.stop();
    }
  });

  test("docker pulls the index and gets this machine's platform", async () => {
    let d: DockerEngine | undefined;
    try {
      d = await startDockerd();
      const ref = `${r.host}/shell/hello:latest`;
      await d.docker(['pull', ref], { timeoutMs: 300_000 });
      const inspected = JSON.parse(await d.docker(['image', 'inspect', ref])) as Array<{ Architecture: string; Os: string; RepoDigests: string[] }>;
      assert.equal(inspected[0]!.Os, 'linux');
      assert.equal(inspected[0]!.Architecture, hostPlatform().imageArch);
      // The digest docker records for the tag is the index's.
      assert.ok(inspected[0]!.RepoDigests.includes(`${r.host}/shell/hello@${indexDigest}`), inspected[0]!.RepoDigests.join(' '));
    } finally {
      await d?.stop();
    }
  });

  test('nixery build --platform twice writes the same index to an OCI layout', async () => {
    const layout = path.join(dir, 'built-oci');
    const storage = path.join(dir, 'build-storage');
    const env = nixEnv({ NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: storage, NIXERY_PLATFORMS: '' });
    const { stdout } = await execFileP(
      process.execPath,
      [CLI, 'build', 'shell/hello:latest', '--platform', 'linux/amd64', '--platform', 'linux/arm64', '--output', `oci:${layout}`, '--json'],
      { env, timeout: 300_000 },
    );
    const summary = JSON.parse(stdout) as { digest: string; platforms: Array<{ platform: string; digest: string }> };
    // Fresh storage, same inputs: the registry's index, digest for digest.
    assert.equal(summary.digest, indexDigest);
    assert.deepEqual(
      summary.platforms.map((p) => [p.platform, p.digest]),
      index.manifests.map((m) => [`${m.platform.os}/${m.platform.architecture}`, m.digest]),
    );
    const top = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as IndexJson & { manifests: Array<{ annotations: Record<string, string> }> };
    assert.equal(top.manifests.length, 1);
    assert.equal(top.manifests[0]!.mediaType, MEDIA_TYPES.ociIndex);
    assert.equal(top.manifests[0]!.digest, indexDigest);
    assert.equal(top.manifests[0]!.annotations['org.opencontainers.image.ref.name'], 'latest');
    // A client picks a platform from the layout as from the registry.
    const { stdout: raw } = await execFileP('skopeo', ['--override-arch', 'arm64', 'inspect', '--raw', `oci:${layout}:latest`]);
    assert.equal((JSON.parse(raw) as IndexJson).manifests.length, 2);
    await execFileP('skopeo', ['--override-arch', 'arm64', 'copy', `oci:${layout}:latest`, `dir:${path.join(dir, 'built-arm64')}`], { timeout: 120_000 });
    const copied = JSON.parse(await readFile(path.join(dir, 'built-arm64', 'manifest.json'), 'utf8')) as { config: { digest: string } };
    const arm64 = JSON.parse(await (await fetch(`${r.url}/v2/shell/hello/manifests/${index.manifests[1]!.digest}`)).text()) as { config: { digest: string } };
    assert.equal(copied.config.digest, arm64.config.digest);
  });

  test('nixery build refuses several platforms for a docker-archive, in one line', async () => {
    const env = nixEnv({ NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: path.join(dir, 'refused') });
    const run = execFileP(process.execPath, [CLI, 'build', 'hello', '--platform', 'linux/amd64', '--platform', 'linux/arm64', '--output', `docker-archive:${path.join(dir, 'x.tar')}`], { env });
    const err = (await run.then(() => assert.fail('should exit non-zero'), (e: unknown) => e)) as { code: number; stderr: string };
    assert.equal(err.code, 2);
    assert.equal(err.stderr, 'nixery: invalid --output: docker-archive:FILE holds one platform; write several platforms to oci:DIR\n');
  });
});
