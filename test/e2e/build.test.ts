// End to end without a server: `nixery build` on the example package set, then real clients
// read the result (umoci unpacks it, containerd imports and runs it), and the bytes are
// deterministic across fresh storage, concurrency and name order.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { lstat, mkdtemp, readFile, readdir, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { EXAMPLE_PKGS } from '../helpers/nix.js';
import { startContainerd, ctrRun, type Containerd } from '../helpers/containerd.js';
import { startDockerd, type DockerEngine } from '../helpers/docker.js';

const execFileP = promisify(execFile);
const CLI = path.resolve('dist/src/cli.js');

interface BuildSummary {
  digest: string;
  dockerDigest: string;
  config: string;
  layers: Array<{ digest: string; diffId: string; size: number; storePaths: number }>;
}

async function build(image: string, output: string, storage: string, wrap: string[] = []): Promise<BuildSummary> {
  const env = { ...process.env, NIX_CONFIG: 'substituters =', NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: storage };
  const [cmd, ...args] = [...wrap, 'node', CLI, 'build', image, '--output', output, '--json'];
  const { stdout } = await execFileP(cmd!, args, { env, maxBuffer: 16 * 1024 * 1024, timeout: 300_000 });
  return JSON.parse(stdout) as BuildSummary;
}

describe('nixery build, end to end', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-e2e-build-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('oci:DIR unpacks with umoci into a rootfs whose store paths equal the Nix store', async () => {
    const out = path.join(dir, 'oci');
    const summary = await build('shell/hello', `oci:${out}`, path.join(dir, 'storage-a'));
    assert.ok(summary.layers.length >= 2);
    const bundle = path.join(dir, 'bundle');
    await execFileP('umoci', ['unpack', '--rootless', '--image', `${out}:latest`, bundle]);
    const rootfs = path.join(bundle, 'rootfs');

    // The closure, as Nix sees it, of the packages the image asked for.
    const { stdout: outPaths } = await execFileP(
      'nix-build',
      [EXAMPLE_PKGS, '--no-out-link', ...['bashInteractive', 'cacert', 'coreutils', 'hello', 'iana-etc', 'moreutils', 'nano'].flatMap((a) => ['-A', a])],
      { env: { ...process.env, NIX_CONFIG: 'substituters =' } },
    );
    const { stdout: closure } = await execFileP('nix-store', ['--query', '--requisites', ...outPaths.trim().split('\n')]);
    const expected = closure.trim().split('\n').map((p) => path.basename(p)).sort();
    const present = (await readdir(path.join(rootfs, 'nix/store'))).sort();
    assert.deepEqual(present, expected);

    let compared = 0;
    const compare = async (rel: string): Promise<void> => {
      const mine = path.join(rootfs, 'nix/store', rel);
      const real = path.join('/nix/store', rel);
      const [a, b] = await Promise.all([lstat(mine), lstat(real)]);
      assert.equal(a.mode & 0o170000, b.mode & 0o170000, `type of ${rel}`);
      compared++;
      if (b.isSymbolicLink()) {
        assert.equal(await readlink(mine), await readlink(real), `link target of ${rel}`);
        return;
      }
      assert.equal(a.mode & 0o7777, b.mode & 0o7777, `mode of ${rel}`);
      if (b.isDirectory()) {
        const [ca, cb] = await Promise.all([readdir(mine), readdir(real)]);
        assert.deepEqual(ca.sort(), cb.sort(), `entries of ${rel}`);
        for (const c of cb) await compare(path.join(rel, c));
      } else {
        assert.ok((await readFile(mine)).equals(await readFile(real)), `content of ${rel}`);
      }
    };
    for (const p of expected) await compare(p);
    assert.ok(compared > expected.length);

    // The customisation layer: the merged forest, /usr/bin/env, /tmp, the CA bundle.
    assert.match(await readlink(path.join(rootfs, 'bin/hello')), /^\/nix\/store\/[a-z0-9]{32}-hello-[^/]+\/bin\/hello$/);
    const env = await readlink(path.join(rootfs, 'usr/bin/env'));
    assert.ok(env.startsWith('/nix/store/'));
    await lstat(path.join(rootfs, env));
    assert.equal((await lstat(path.join(rootfs, 'tmp'))).mode & 0o7777, 0o1777);
    const bundleLink = path.join(rootfs, 'etc/ssl/certs/ca-bundle.crt');
    const target = await readlink(bundleLink).catch(() => null);
    const ca = await readFile(target ? path.join(rootfs, target) : bundleLink, 'utf8');
    assert.match(ca, /BEGIN CERTIFICATE/);
  });

  test('docker-archive:FILE imports into containerd, and hello and bash run from it', async (t) => {
    const file = path.join(dir, 'hello.tar');
    await build('shell/hello:latest', `docker-archive:${file}`, path.join(dir, 'storage-b'));
    let c: Containerd | undefined;
    try {
      c = await startContainerd();
      await c.ctr(['images', 'import', '--snapshotter', 'native', file]);
      const images = await c.ctr(['images', 'ls', '-q']);
      // Named as asked for (not the sorted hello/shell, which would ask for a package called shell).
      const ref = images.split('\n').find((l) => l.includes('shell/hello:latest'));
      assert.ok(ref, `imported image listed: ${images}`);
      assert.equal((await ctrRun(c, ref, ['hello'])).trim(), 'Hello, world!');
      const out = await ctrRun(c, ref, ['bash', '-c', 'echo "args: $#"; ls /bin | grep -c . ; test -d /tmp && echo tmp-ok; env | grep ^SSL_CERT_FILE']);
      assert.match(out, /^args: 0$/m);
      assert.match(out, /^tmp-ok$/m);
      assert.match(out, /^SSL_CERT_FILE=\/etc\/ssl\/certs\/ca-bundle.crt$/m);
      // The image's default command is bash (the shell meta-package).
      t.diagnostic(`ran ${ref}`);
    } finally {
      await c?.stop();
    }
  });

  test('docker load of the docker-archive: the image is called as asked for, shell/hello, and runs', async (t) => {
    const file = path.join(dir, 'hello-docker.tar');
    const summary = await build('shell/hello:latest', `docker-archive:${file}`, path.join(dir, 'storage-d'));
    assert.equal((summary as unknown as { image: string }).image, 'shell/hello:latest');
    let engine: DockerEngine | undefined;
    try {
      engine = await startDockerd();
    } catch (err) {
      t.skip(`dockerd cannot start here: ${(err as Error).message.split('\n')[0]}`);
      return;
    }
    try {
      const loaded = await engine.docker(['load', '--input', file]);
      assert.match(loaded, /^Loaded image: shell\/hello:latest$/m);
      assert.equal((await engine.docker(['image', 'ls', '--format', '{{.Repository}}:{{.Tag}}'])).trim(), 'shell/hello:latest');
      assert.equal((await engine.docker(['run', '--rm', '--network', 'none', 'shell/hello:latest', 'hello'])).trim(), 'Hello, world!');
    } finally {
      await engine.stop();
    }
  });

  test('the same image twice, fresh storage, different core counts: identical digests', async () => {
    const one = await build('shell/hello', `oci:${path.join(dir, 'det-1')}`, path.join(dir, 'storage-det-1'));
    const two = await build('shell/hello', `oci:${path.join(dir, 'det-2')}`, path.join(dir, 'storage-det-2'), ['taskset', '-c', '0']);
    assert.equal(one.digest, two.digest);
    assert.equal(one.dockerDigest, two.dockerDigest);
    const strip = (s: BuildSummary) => s.layers.map(({ digest, diffId, size, storePaths }) => ({ digest, diffId, size, storePaths }));
    assert.deepEqual(strip(one), strip(two));
  });

  test('hello/busybox and busybox/hello are the same image', async () => {
    const a = await build('hello/busybox', `oci:${path.join(dir, 'order-a')}`, path.join(dir, 'storage-order-1'));
    const b = await build('busybox/hello', `oci:${path.join(dir, 'order-b')}`, path.join(dir, 'storage-order-2'));
    assert.equal(a.digest, b.digest);
  });

  test('on a terminal it shows progress; otherwise it stays quiet', async () => {
    const storage = path.join(dir, 'storage-tty');
    const env = { ...process.env, NIX_CONFIG: 'substituters =', NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: storage, TERM: 'dumb' };
    // `script` runs the command on a pseudo-terminal.
    const cmd = `node ${CLI} build shell/hello/jq --output oci:${path.join(dir, 'tty-out')}`;
    const { stdout } = await execFileP('script', ['-qec', cmd, '/dev/null'], { env });
    for (const phase of [/resolving/, /Nix is realising/, /packing layer \d+ of \d+ \(\d+\.\d of \d+\.\d MB\)/, /writing oci:/]) assert.match(stdout, phase);
    const quiet = await execFileP('node', [CLI, 'build', 'shell/hello/jq', '--output', `oci:${path.join(dir, 'quiet-out')}`], { env });
    assert.equal(quiet.stdout, '');
    assert.equal(quiet.stderr, '');
  });

  test('errors are one line and a non-zero exit', async () => {
    const env = { ...process.env, NIX_CONFIG: 'substituters =', NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: path.join(dir, 'storage-err') };
    const run = (args: string[], extraEnv: Record<string, string | undefined> = {}) =>
      execFileP('node', [CLI, ...args], { env: Object.fromEntries(Object.entries({ ...env, ...extraEnv }).filter(([, v]) => v !== undefined)) }).then(
        () => assert.fail('expected failure'),
        (e: { code: number; stderr: string }) => e,
      );
    const missing = await run(['build', 'hello/nosuchpkg', '--output', `oci:${path.join(dir, 'x')}`]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /^nixery: .*nosuchpkg.*\n$/);
    const badName = await run(['build', 'Hello', '--output', `oci:${path.join(dir, 'x')}`]);
    assert.match(badName.stderr, /^nixery: invalid image name .*\n$/);
    const badOutput = await run(['build', 'hello', '--output', 'tarball:x']);
    assert.match(badOutput.stderr, /^nixery: invalid --output/);
    const noSource = await run(['build', 'hello', '--output', `oci:${path.join(dir, 'x')}`], { NIXERY_PKGS_PATH: undefined });
    assert.match(noSource.stderr, /^nixery: no package source configured: set NIXERY_CHANNEL .*\n$/);
    const badTimeout = await run(['build', 'hello', '--output', `oci:${path.join(dir, 'x')}`], { NIX_TIMEOUT: 'soon' });
    assert.match(badTimeout.stderr, /^nixery: invalid NIX_TIMEOUT: must be a whole number/);
    const badEval = await run(['build', 'hello', '--output', `oci:${path.join(dir, 'x')}`], { NIXERY_EVAL_TIMEOUT: '0' });
    assert.match(badEval.stderr, /^nixery: invalid NIXERY_EVAL_TIMEOUT: must be between 1 and 86400, got 0\n$/);
    const badBuild = await run(['build', 'hello', '--output', `oci:${path.join(dir, 'x')}`, '--build-timeout', '1h']);
    assert.match(badBuild.stderr, /^nixery: invalid --build-timeout: must be a whole number/);
    for (const e of [missing, badName, badOutput, noSource, badTimeout, badEval, badBuild]) assert.doesNotMatch(e.stderr, /\n\s+at /, 'no stack trace');
  });

  test('--nix-timeout limits each builder and --build-timeout the whole realisation, each with its own message', async () => {
    const env = { ...process.env, NIX_CONFIG: 'substituters =', NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: path.join(dir, 'storage-timeouts') };
    const fail = (args: string[]) =>
      execFileP('node', [CLI, 'build', 'slow', '--output', `oci:${path.join(dir, 'slow')}`, ...args], { env }).then(
        () => assert.fail('expected failure'),
        (e: { code: number; stderr: string }) => e,
      );
    // `slow` sleeps 30 s.
    const builder = await fail(['--nix-timeout', '2']);
    assert.equal(builder.code, 1);
    assert.equal(builder.stderr, 'nixery: building slow-1.0: the builder took longer than NIX_TIMEOUT (2 s) and was stopped\n');
    const whole = await fail(['--nix-timeout', '60', '--build-timeout', '2']);
    assert.equal(whole.stderr, 'nixery: realising cacert, iana-etc, slow: the realisation (builds and downloads) took longer than NIXERY_BUILD_TIMEOUT (2 s) and was stopped\n');
  });
});
