// The example package set has what the rest of the project's tests rely on.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { realise, type Realised } from '../../src/nix/realise.js';
import { resolvePackages } from '../../src/nix/resolve-packages.js';
import type { ResolvedPackage } from '../../src/nix/types.js';
import { EXAMPLE_PKGS, HOST_SYSTEM, nixOptions, pinExamples } from '../helpers/nix.js';

const NAMES = ['busybox', 'bashInteractive', 'coreutils', 'moreutils', 'nano', 'cacert', 'iana-etc', 'edge-cases', 'big-data'];
let realised: Realised;
const out: Record<string, string> = {};

before(async () => {
  const resolved: ResolvedPackage[] = await resolvePackages(await pinExamples(), NAMES, HOST_SYSTEM, nixOptions());
  realised = await realise(resolved, nixOptions());
  for (const r of resolved) out[r.requested] = r.outputs.out!;
});

after(async () => {
  await realised.release();
});

const run = (file: string, args: string[] = []): string => execFileSync(file, args, { encoding: 'utf8', env: {} });

test('examples: the shell packages work', () => {
  assert.equal(run(join(out.bashInteractive!, 'bin', 'bash'), ['-c', 'echo hi; echo $((6 * 7))']), 'hi\n42\n');
  assert.equal(run(join(out.bashInteractive!, 'bin', 'sh'), ['-c', 'echo sh']), 'sh\n');
  assert.equal(run(join(out.coreutils!, 'bin', 'env'), ['-i', 'A=1', join(out.coreutils!, 'bin', 'env')]), 'A=1\n');
  for (const tool of ['ls', 'cat', 'echo', 'env']) assert.ok(lstatSync(join(out.coreutils!, 'bin', tool)).isSymbolicLink(), tool);
  assert.equal(run(join(out.coreutils!, 'bin', 'echo'), ['x']), 'x\n');
  assert.ok(statSync(join(out.moreutils!, 'bin', 'sponge')).mode & 0o111);
  assert.ok(statSync(join(out.nano!, 'bin', 'nano')).mode & 0o111);
  assert.ok(readdirSync(join(out.busybox!, 'bin')).length > 100, 'one link per applet');
});

test('examples: cacert and iana-etc carry the real files', () => {
  assert.match(out.cacert!, /-nss-cacert-3\.\d+$/);
  assert.deepEqual(readFileSync(join(out.cacert!, 'etc/ssl/certs/ca-bundle.crt')), readFileSync(join(EXAMPLE_PKGS, 'ca-bundle.crt')));
  assert.match(readFileSync(join(out.cacert!, 'etc/ssl/certs/ca-bundle.crt'), 'utf8'), /-----BEGIN CERTIFICATE-----/);
  assert.match(out['iana-etc']!, /-iana-etc-\d+$/);
  assert.match(readFileSync(join(out['iana-etc']!, 'etc/protocols'), 'utf8'), /^tcp\s+6\s+TCP/m);
  assert.match(readFileSync(join(out['iana-etc']!, 'etc/services'), 'utf8'), /^https\s+443\/tcp/m);
});

test('examples: edge-cases has every file-system case, as Nix stored it', () => {
  const e = join(out['edge-cases']!, 'share', 'edge');
  assert.deepEqual(readdirSync(join(e, 'empty-dir')), []);
  assert.equal(readlinkSync(join(e, 'relative-link')), 'regular.txt');
  assert.equal(readlinkSync(join(e, 'absolute-link')), join(out.busybox!, 'bin', 'busybox'));
  assert.equal(readlinkSync(join(e, 'dangling-link')), 'does-not-exist');
  const a = statSync(join(e, 'regular.txt'));
  const b = statSync(join(e, 'hard-link.txt'));
  assert.equal(a.ino, b.ino, 'a real hard link');
  assert.equal(a.nlink, 2);
  assert.ok(readdirSync(e).some((n) => Buffer.byteLength(n) === 120));
  assert.ok(readdirSync(e).includes('grüße-ünïcødé-日本語.txt'));
  const deep = (dir: string, rel: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
      d.isDirectory() ? deep(join(dir, d.name), `${rel}/${d.name}`) : [`${rel}/${d.name}`],
    );
  assert.ok(deep(out['edge-cases']!, out['edge-cases']!.slice(1)).some((p) => Buffer.byteLength(p) > 255));
  // Nix canonicalises modes: no setuid, no sticky bit survive in the store.
  assert.equal(statSync(join(e, 'setuid')).mode & 0o7777, 0o444);
  assert.equal(statSync(join(e, 'sticky-dir')).mode & 0o7777, 0o555);
  assert.equal(statSync(join(out['edge-cases']!, 'bin', 'edge-exec')).mode & 0o7777, 0o555);
});

test('examples: big-data is a few MB', () => {
  const dir = join(out['big-data']!, 'share', 'big-data');
  const total = readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
  assert.ok(total > 3_000_000, `${total} bytes`);
});
