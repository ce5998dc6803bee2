// The image config's runtime fields (User, Env, Entrypoint, …) and the cache key's optional
// fields are written only when set: the config and manifests of images without them are byte for
// byte what they were before these fields existed (digests computed at main, d819214), and their
// cache keys hash only the fields keys always had.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildManifests, imageConfig, type ImageSpec } from '../../src/manifest/manifest.js';
import { createHash } from 'node:crypto';
import { FORMAT_VERSION, imageCacheKey, type ImageKeyInput } from '../../src/builder/cache-key.js';
import { defaultCommand, runtimeSpec } from '../../src/builder/runtime-config.js';
import { parseImageName, pullName } from '../../src/image/name.js';
import type { ResolvedPackage } from '../../src/nix/types.js';

const layer = (n: string) => ({ digest: `sha256:${n.repeat(64)}`, size: 1234, diffId: `sha256:${n.repeat(63)}0` });
const SPEC: ImageSpec = {
  architecture: 'amd64',
  layers: [layer('a'), layer('b')],
  packages: ['cacert', 'hello', 'iana-etc'],
  source: 'git https://example.org/pkgs (branch main)',
  revision: `git:${'c'.repeat(40)}`,
};
const KEY: ImageKeyInput = { system: 'x86_64-linux', revision: `git:${'c'.repeat(40)}`, packages: ['cacert', 'hello', 'iana-etc'], layering: 'popularity', budget: 94, popularity: `sha256:${'d'.repeat(64)}`, compression: 'gzip/libdeflate-1.14/level6/chunk4M/members' };

test('images without runtime fields keep their digests and cache keys (as computed at main)', () => {
  const plain = buildManifests(SPEC);
  assert.equal(plain.config.digest, 'sha256:6b609f2c2278d6723b65e0c32141d2f81208e15686b147fe474e407ca0c5621b');
  assert.equal(plain.oci.digest, 'sha256:f0806e990db1832580aeba182bae31f5a8ed916cab87b6525162d8a6208327f8');
  assert.equal(plain.docker.digest, 'sha256:c28d446aa834935fdcde35f0b56486a51300c35252d286674a6a4619f8b014ec');
  const shell = buildManifests({ ...SPEC, cmd: ['bash'] });
  assert.equal(shell.config.digest, 'sha256:04d2232ab18ca63ea657009e2d9b1637720293035cccf8b59e4311e52cf03322');
  assert.equal(shell.oci.digest, 'sha256:391c0fed6cd8fc35aacac866f493ba4dc8e8099eba05c22626a7a794a6cd15fa');
  // The key of an image without them hashes exactly the fields it always had (and the compression).
  const { system, revision, packages, layering, budget, popularity, compression } = KEY;
  const base = JSON.stringify({ format: FORMAT_VERSION, system, revision, packages, layering, budget, popularity, compression });
  assert.equal(imageCacheKey(KEY), createHash('sha256').update(base).digest('hex'));
  assert.equal(imageCacheKey({ ...KEY, nonroot: false, config: {} }), imageCacheKey(KEY));
  // An image without a config, nonroot or mainProgram gets no runtime fields at all.
  assert.deepEqual(runtimeSpec(parseImageName('curl'), [resolved('curl')]), {});
});

test('nonroot and a config are in the cache key; each config field changes the config blob', () => {
  assert.notEqual(imageCacheKey({ ...KEY, nonroot: true }), imageCacheKey(KEY));
  assert.notEqual(imageCacheKey({ ...KEY, config: { cmd: ['x'] } }), imageCacheKey(KEY));
  assert.notEqual(imageCacheKey({ ...KEY, config: { cmd: ['x'] } }), imageCacheKey({ ...KEY, config: { entrypoint: ['x'] } }));
  const base = imageConfig(SPEC);
  const fields: Array<Partial<ImageSpec>> = [{ user: '1' }, { env: ['A=1'] }, { entrypoint: ['x'] }, { workingDir: '/w' }, { exposedPorts: ['80/tcp'] }, { labels: { a: 'b' } }, { stopSignal: 'SIGINT' }];
  for (const f of fields) assert.notDeepEqual(imageConfig({ ...SPEC, ...f }), base, JSON.stringify(f));
  // Docker's field order, whatever order they are given in.
  const all = JSON.parse(imageConfig({ ...SPEC, stopSignal: 'SIGINT', labels: { a: 'b' }, workingDir: '/w', cmd: ['c'], entrypoint: ['e'], env: ['A=1'], exposedPorts: ['80/tcp'], user: 'u' }).toString());
  assert.deepEqual(Object.keys(all.config), ['User', 'ExposedPorts', 'Env', 'Entrypoint', 'Cmd', 'WorkingDir', 'Labels', 'StopSignal']);
  // A request's labels follow the registry's own and cannot replace them.
  assert.deepEqual(Object.keys(all.config.Labels), ['dev.nixery.packages', 'org.opencontainers.image.revision', 'dev.nixery.source', 'a']);
  assert.equal(JSON.parse(imageConfig({ ...SPEC, labels: { 'dev.nixery.source': 'forged', constructor: 'c' } }).toString()).config.Labels['dev.nixery.source'], SPEC.source);
});

test('the default command: bash with the shell, else /bin/<mainProgram> of a single package', () => {
  assert.deepEqual(defaultCommand([resolved('hello', 'hello')]), ['/bin/hello']);
  assert.deepEqual(defaultCommand([resolved('cacert'), resolved('hello', 'hello'), resolved('iana-etc')]), ['/bin/hello']);
  assert.equal(defaultCommand([resolved('hello', 'hello'), resolved('curl')]), undefined);
  assert.equal(defaultCommand([resolved('curl')]), undefined);
  assert.deepEqual(defaultCommand([resolved('bashInteractive'), resolved('hello', 'hello')]), ['bash']);
});

test('the nonroot meta-package: parsed anywhere in the leading meta-packages, in the pull name', () => {
  const image = parseImageName('nonroot/shell/coreutils');
  assert.equal(image.nonroot, true);
  assert.equal(image.name, 'coreutils/nonroot/shell');
  assert.deepEqual(parseImageName('shell/nonroot/coreutils').packages, image.packages);
  assert.equal(pullName(image), 'nonroot/shell');
  assert.equal(pullName(parseImageName('arm64/nonroot/hello')), 'arm64/nonroot/hello');
  assert.equal(parseImageName('hello').nonroot, undefined);
  // Later on, it is a package name, as `shell` is.
  const pkg = parseImageName('hello/nonroot');
  assert.equal(pkg.nonroot, undefined);
  assert.ok(pkg.packages.includes('nonroot'));
  assert.equal(parseImageName(pullName(pkg)).packages.join(), pkg.packages.join());
});

function resolved(name: string, mainProgram?: string): ResolvedPackage {
  return { requested: name, attrPath: [name], packagePath: [name], drvPath: `/nix/store/x-${name}.drv`, sameAs: [], outputs: { out: `/nix/store/x-${name}` }, ...(mainProgram ? { mainProgram } : {}) };
}
