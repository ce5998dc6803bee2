import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, rm, writeFile, appendFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NixFailedError, PackagesNotFoundError } from '../../src/errors.js';
import { resolvePackages } from '../../src/nix/resolve.js';
import { NixRunCounts } from '../../src/nix/observer.js';
import type { PinnedSource } from '../../src/nix/source.js';
import { pinSource } from '../../src/nix/resolver.js';
import { EXAMPLE_PKGS, HOST_SYSTEM, nixOptions, pinExamples } from '../helpers/nix.js';

let pinned: PinnedSource;
let dir: string;

before(async () => {
  pinned = await pinExamples();
  dir = await mkdtemp(join(tmpdir(), 'nixery-resolve-test-'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Every Nix run of this file's resolutions. */
const nixRuns = new NixRunCounts();
const resolve = (names: string[], system = HOST_SYSTEM) => resolvePackages(pinned, names, system, { ...nixOptions(), observer: nixRuns });

async function missing(names: string[]): Promise<PackagesNotFoundError> {
  try {
    await resolve(names);
  } catch (err) {
    assert.ok(err instanceof PackagesNotFoundError, String(err));
    return err;
  }
  assert.fail('expected PackagesNotFoundError');
}

test('resolve: exact, case-insensitive (top level and nested), dotted and digit-leading names, in one Nix call', async () => {
  const before = nixRuns.invocations;
  const resolved = await resolve(['hello', 'bashinteractive', 'python3packages.requests', 'perlpackages.json', '1password', 'iana-etc', 'xorg.XEYES']);
  assert.equal(nixRuns.invocations, before + 1);
  assert.deepEqual(
    resolved.map((r) => [r.requested, r.attrPath.join('.')]),
    [
      ['hello', 'hello'],
      ['bashinteractive', 'bashInteractive'],
      ['python3packages.requests', 'python3Packages.requests'],
      ['perlpackages.json', 'perlPackages.JSON'],
      ['1password', '_1password'],
      ['iana-etc', 'iana-etc'],
      ['xorg.XEYES', 'xorg.xeyes'],
    ],
  );
  const hello = resolved[0]!;
  assert.match(hello.drvPath, /^\/nix\/store\/[0-9a-z]{32}-hello-2\.12\.1\.drv$/);
  assert.ok(existsSync(hello.drvPath), 'the .drv was written, so it can be realised');
  assert.deepEqual(Object.keys(hello.outputs), ['out']);
  assert.match(hello.outputs.out!, /^\/nix\/store\/[0-9a-z]{32}-hello-2\.12\.1$/);
  assert.match(resolved[4]!.outputs.out!, /-1password-cli-2\.29\.0$/);
});

test('resolve: outputs follow meta.outputsToInstall, else the default output; a selected output is kept', async () => {
  const [jq, tree, jqMan] = await resolve(['jq', 'tree', 'jq.man']);
  assert.deepEqual(Object.keys(jq!.outputs).sort(), ['bin', 'man']);
  assert.match(jq!.outputs.bin!, /-jq-1\.7\.1-bin$/);
  assert.match(jq!.outputs.man!, /-jq-1\.7\.1-man$/);
  assert.deepEqual(Object.keys(tree!.outputs), ['out']);
  assert.match(tree!.outputs.out!, /-tree-2\.1\.3$/);
  assert.deepEqual(jqMan!.attrPath, ['jq', 'man']);
  assert.deepEqual(Object.keys(jqMan!.outputs), ['man']);
  assert.equal(jqMan!.drvPath, jq!.drvPath);
});

test('resolve: every missing name is reported at once, with the reason when useful', async () => {
  const err = await missing(['hello', 'nope', 'python3packages.nope', 'xorg.libx11', 'lib', 'hello.nope', 'nope2']);
  assert.deepEqual(err.packages, ['nope', 'python3packages.nope', 'xorg.libx11', 'lib', 'hello.nope', 'nope2']);
  assert.equal(err.kind, 'PACKAGES_NOT_FOUND');
  assert.match(err.message, /Could not find Nix packages: nope, python3packages\.nope \(no attribute nope in python3Packages\)/);
  assert.match(err.message, /xorg\.libx11 \(libx11 is ambiguous \(LibX11, libX11\) in xorg\)/);
  assert.match(err.message, /lib \(lib is not a derivation\)/);
});

test('resolve: an exact match is never ambiguous', async () => {
  const [r] = await resolve(['xorg.libX11']);
  assert.deepEqual(r!.attrPath, ['xorg', 'libX11']);
});

test('resolve: user input is data, never Nix code', async () => {
  const hostile = [
    '"; throw "injected',
    '${builtins.throw "injected"}',
    "''${builtins.abort \"x\"}''",
    'back\\slash\\"quote',
    'hello.${toString 1}',
    'a\nb',
  ];
  const err = await missing(hostile);
  assert.deepEqual(err.packages, hostile);
});

test('resolve: empty path components are not found without asking Nix', async () => {
  const before = nixRuns.invocations;
  const err = await missing(['hello..x', '.hello']);
  assert.deepEqual(err.packages, ['hello..x', '.hello']);
  assert.equal(nixRuns.invocations, before);
});

test('resolve: an attribute that throws is a NixFailedError carrying Nix\'s message', async () => {
  await assert.rejects(resolve(['hello', 'throws']), (err: unknown) => {
    assert.ok(err instanceof NixFailedError, String(err));
    assert.equal(err.kind, 'BUILD_FAILED');
    assert.match(err.message, /nixery-example: this attribute throws on purpose/);
    return true;
  });
});

test('resolve: another system gives other derivations', async () => {
  const [native] = await resolve(['hello']);
  const [arm] = await resolve(['hello'], 'aarch64-linux');
  assert.notEqual(native!.drvPath, arm!.drvPath);
  assert.notEqual(native!.outputs.out, arm!.outputs.out);
});

test('resolve: a channel source downloads the pinned commit\'s tarball (a file:// URL here)', async () => {
  const rev = 'c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00';
  const tarballs = join(dir, 'tarballs');
  const stage = join(dir, 'stage');
  await cp(EXAMPLE_PKGS, join(stage, `nixpkgs-${rev}`), { recursive: true });
  (await import('node:fs')).mkdirSync(tarballs);
  execFileSync('tar', ['-czf', join(tarballs, `${rev}.tar.gz`), '-C', stage, `nixpkgs-${rev}`]);
  const p = await pinSource(
    { kind: 'channel', channel: rev, repoUrl: join(dir, 'unused'), tarballUrl: `file://${tarballs}/{rev}.tar.gz` },
    'latest',
    { timeoutMs: 30_000 },
  );
  assert.equal(p.revision, rev);
  const [hello] = await resolvePackages(p, ['hello'], HOST_SYSTEM, nixOptions());
  assert.match(hello!.outputs.out!, /-hello-2\.12\.1$/);
});

test('resolve: a git source loads the package set at the pinned tag', async () => {
  const repo = join(dir, 'pkgs-repo');
  await cp(EXAMPLE_PKGS, repo, { recursive: true });
  const git = (...args: string[]): string =>
    execFileSync('git', ['-C', repo, ...args], {
      encoding: 'utf8',
      env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.org', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.org' },
    }).trim();
  git('init', '-q', '-b', 'main');
  git('add', '.');
  git('commit', '-q', '-m', 'example set');
  git('tag', '-a', 'v1', '-m', 'first release');
  // A branch that adds a package, so which commit Nix loaded is visible in the result.
  git('checkout', '-q', '-b', 'extra');
  const text = (await import('node:fs')).readFileSync(join(repo, 'default.nix'), 'utf8');
  await writeFile(join(repo, 'default.nix'), text.replace(/\n}\s*$/, '\n  hello-extra = mkPackage { pname = "hello-extra"; version = "1.0"; script = writeBin "hello-extra" "echo extra"; };\n}\n'));
  await appendFile(join(repo, 'README.md'), '\nextra branch\n');
  git('commit', '-q', '-am', 'extra package');
  const extraCommit = git('rev-parse', 'HEAD');
  git('checkout', '-q', 'main');

  const source = { kind: 'git' as const, url: repo };
  const opts = { timeoutMs: 30_000 };
  for (const tag of ['extra', extraCommit]) {
    const p = await pinSource(source, tag, opts);
    const [r] = await resolvePackages(p, ['hello-extra'], HOST_SYSTEM, nixOptions());
    assert.deepEqual(r!.attrPath, ['hello-extra'], tag);
  }
  for (const tag of ['latest', 'v1']) {
    const p = await pinSource(source, tag, opts);
    await assert.rejects(resolvePackages(p, ['hello-extra'], HOST_SYSTEM, nixOptions()), PackagesNotFoundError, tag);
    const [hello] = await resolvePackages(p, ['hello'], HOST_SYSTEM, nixOptions());
    assert.match(hello!.outputs.out!, /-hello-2\.12\.1$/);
  }
});
