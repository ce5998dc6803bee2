// Platforms (NIXERY_PLATFORMS, --platforms): parsing, the host default, startup errors in one
// line, and which images a name stands for.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { forPlatforms, hostPlatform, parsePlatforms, platformArch } from '../../src/image/platform.js';
import { AMD64, ARM64, parseImageName } from '../../src/image/name.js';
import { loadConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';
import { REPO_ROOT } from '../helpers/nix.js';

const execFileP = promisify(execFile);
const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli.js');

test('platform lists keep their order; spaces, case and linux/arm64/v8 are accepted', () => {
  assert.deepEqual(parsePlatforms('linux/amd64,linux/arm64'), ['linux/amd64', 'linux/arm64']);
  assert.deepEqual(parsePlatforms(' linux/arm64 , Linux/AMD64 '), ['linux/arm64', 'linux/amd64']);
  assert.deepEqual(parsePlatforms('linux/arm64/v8'), ['linux/arm64']);
  assert.deepEqual(platformArch('linux/arm64'), ARM64);
  assert.deepEqual(platformArch('linux/amd64'), AMD64);
});

test('unknown, unsupported, empty and repeated platforms are refused, saying why', () => {
  const refused: Array<[string, RegExp]> = [
    ['linux/s390x', /unsupported platform "linux\/s390x": this registry builds linux\/amd64 and linux\/arm64/],
    ['windows/amd64', /unsupported platform "windows\/amd64"/],
    ['amd64', /unsupported platform "amd64"/],
    ['linux/arm/v7', /unsupported platform "linux\/arm\/v7"/],
    ['', /must list at least one platform/],
    [' , ', /must list at least one platform/],
    ['linux/amd64,,linux/arm64', /has an empty entry/],
    ['linux/arm64,linux/arm64/v8', /lists linux\/arm64 twice/],
  ];
  for (const [raw, why] of refused) assert.throws(() => parsePlatforms(raw), why, JSON.stringify(raw));
});

test("the default is this machine's platform alone; NIXERY_PLATFORMS and --platforms set it", () => {
  assert.deepEqual(loadConfig({}).platforms, [hostPlatform().platform]);
  assert.equal(hostPlatform(), process.arch === 'arm64' ? ARM64 : AMD64);
  assert.deepEqual(loadConfig({ NIXERY_PLATFORMS: 'linux/arm64,linux/amd64' }).platforms, ['linux/arm64', 'linux/amd64']);
  assert.deepEqual(loadConfig({ NIXERY_PLATFORMS: 'linux/arm64' }, { platforms: 'linux/amd64' }).platforms, ['linux/amd64']);
  assert.throws(
    () => loadConfig({ NIXERY_PLATFORMS: 'linux/amd64,linux/ppc64le' }),
    (err: unknown) => err instanceof ConfigError && err.message === 'invalid NIXERY_PLATFORMS: unsupported platform "linux/ppc64le": this registry builds linux/amd64 and linux/arm64 (os/architecture)',
  );
  assert.throws(() => loadConfig({}, { platforms: 'linux/riscv64' }), (err: unknown) => err instanceof ConfigError && err.message.startsWith('invalid --platforms: unsupported platform'));
});

test('a bad platform stops `nixery serve` and `nixery build` at startup with one line', async () => {
  const run = (args: string[], env: Record<string, string>) =>
    execFileP(process.execPath, [CLI, ...args], { env: { ...process.env, ...env, STORAGE_PATH: '/nonexistent/never-used' }, timeout: 30_000 }).then(
      () => assert.fail(`nixery ${args.join(' ')} should fail`),
      (err: unknown) => err as { code: number; stderr: string },
    );
  const serve = await run(['serve'], { NIXERY_PLATFORMS: 'linux/amd64,linux/riscv64', NIXERY_PKGS_PATH: '/nonexistent' });
  assert.equal(serve.code, 2);
  assert.equal(serve.stderr, 'nixery: invalid NIXERY_PLATFORMS: unsupported platform "linux/riscv64": this registry builds linux/amd64 and linux/arm64 (os/architecture)\n');
  const build = await run(['build', 'hello', '--platform', 'linux/amd64', '--platform', 'linux/mips', '-o', 'oci:/nonexistent/out'], {});
  assert.equal(build.code, 2);
  assert.equal(build.stderr, 'nixery: invalid --platform: unsupported platform "linux/mips": this registry builds linux/amd64 and linux/arm64 (os/architecture)\n');
  const twice = await run(['build', 'hello', '--platform', 'linux/amd64', '--platform', 'linux/amd64', '-o', 'oci:/nonexistent/out'], {});
  assert.equal(twice.stderr, 'nixery: invalid --platform: lists linux/amd64 twice\n');
  const meta = await run(['build', 'arm64/hello', '--platform', 'linux/amd64', '-o', 'oci:/nonexistent/out'], {});
  assert.equal(meta.stderr, 'nixery: invalid --platform: arm64/hello names its platform (linux/arm64) with the arm64 meta-package\n');
});

test('a name stands for an image on each platform, in order, unless it picks arm64', () => {
  const both = forPlatforms(parseImageName('shell/hello'), [AMD64, ARM64]);
  assert.deepEqual(
    both.map((i) => i.arch),
    [AMD64, ARM64],
  );
  assert.ok(both.every((i) => i.name === 'hello/shell' && i.packages.join() === parseImageName('shell/hello').packages.join()));
  assert.deepEqual(
    forPlatforms(parseImageName('hello'), [ARM64]).map((i) => i.arch),
    [ARM64],
  );
  // The arm64 meta-package: one aarch64 image, whatever is configured.
  for (const platforms of [[AMD64], [AMD64, ARM64], [ARM64, AMD64]]) {
    const images = forPlatforms(parseImageName('arm64/hello'), platforms);
    assert.equal(images.length, 1);
    assert.deepEqual(images[0]!.arch, ARM64);
    assert.equal(images[0]!.archRequested, true);
  }
  assert.equal(parseImageName('hello/arm64').archRequested, false, 'arm64 later in the name is a package');
});
