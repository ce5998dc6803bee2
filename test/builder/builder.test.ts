// The build pipeline on the example set: cache keys cover everything that decides the bytes,
// a layer is packed once and then comes from the build cache, arm64 images say so.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config.js';
import { createApp, type App } from '../../src/app.js';
import { parseImageName } from '../../src/image/name.js';
import { EXAMPLE_PKGS } from '../helpers/nix.js';

process.env.NIX_CONFIG ??= 'substituters =';

async function makeApp(storagePath: string, env: Record<string, string> = {}): Promise<App> {
  const config = loadConfig({ NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: storagePath, NIXERY_LOG_LEVEL: 'silent', ...env });
  return createApp(config, { logDestination: 'stderr', defaultLogLevel: 'silent' });
}

describe('image builder', () => {
  let dir: string;
  let app: App;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-builder-'));
    app = await makeApp(path.join(dir, 'storage'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('the cache key covers architecture, revision, packages, layering settings and compression', async () => {
    const b = app.builder;
    const hello = parseImageName('hello');
    const key = b.cacheKey(hello, 'rev-1');
    assert.match(key, /^[0-9a-f]{64}$/);
    assert.equal(b.cacheKey(parseImageName('hello/hello'), 'rev-1'), key, 'same package set');
    assert.notEqual(b.cacheKey(parseImageName('arm64/hello'), 'rev-1'), key, 'architecture (Nixery bug: it was missing)');
    assert.notEqual(b.cacheKey(hello, 'rev-2'), key, 'revision');
    assert.notEqual(b.cacheKey(parseImageName('hello/git'), 'rev-1'), key, 'packages');
    const other = await makeApp(path.join(dir, 'storage'), { NIXERY_LAYER_BUDGET: '20' });
    assert.notEqual(other.builder.cacheKey(hello, 'rev-1'), key, 'layer budget');
    const zlibGzip = await makeApp(path.join(dir, 'storage'), { NIXERY_GZIP: 'zlib' });
    assert.notEqual(zlibGzip.builder.cacheKey(hello, 'rev-1'), key, 'gzip compressor');
    const zstd = await makeApp(path.join(dir, 'storage'), { NIXERY_LAYER_COMPRESSION: 'zstd' });
    assert.notEqual(zstd.builder.cacheKey(hello, 'rev-1'), key, 'layer compression');
  });

  test('the cache key covers the popularity data as used: replicas with other data use other keys', async () => {
    const hello = parseImageName('hello');
    const write = async (file: string, data: Record<string, number>) => {
      await writeFile(path.join(dir, file), JSON.stringify(data));
      return path.join(dir, file);
    };
    const a = await write('pop-a.json', { 'hello-2.12.1': 3, 'zlib-1.3.1': 900 });
    // The same data in another order (and spacing) is the same data.
    await writeFile(path.join(dir, 'pop-a2.json'), '{ "zlib-1.3.1": 900,\n "hello-2.12.1": 3 }');
    const b = await write('pop-b.json', { 'hello-2.12.1': 3, 'zlib-1.3.1': 901 });
    const keyOf = async (popularity?: string) => {
      const replica = await makeApp(path.join(dir, 'storage'), popularity ? { NIX_POPULARITY_URL: popularity } : {});
      return replica.builder.cacheKey(hello, 'rev-1');
    };
    const withA = await keyOf(a);
    assert.equal(await keyOf(path.join(dir, 'pop-a2.json')), withA);
    assert.notEqual(await keyOf(b), withA, 'one count differs');
    assert.notEqual(await keyOf(), withA, 'no data at all');
    assert.equal(await keyOf(path.join(dir, 'missing.json')), await keyOf(), 'unreadable data is no data');
  });

  test('a layer is packed once: later images take shared layers from the build cache', async () => {
    const packedBefore = app.builder.layers.packed;
    const first = await app.builder.build(parseImageName('shell/hello'));
    assert.equal(first.fromCache, false);
    const packedFirst = app.builder.layers.packed - packedBefore;
    assert.equal(packedFirst, first.layers.length, 'every layer of a first build is packed');

    // A fresh builder on the same storage (no memory) still finds the layers in storage.
    const again = await makeApp(path.join(dir, 'storage'));
    const second = await again.builder.build(parseImageName('shell/hello/jq'));
    const reused = second.layers.filter((l) => l.cached);
    assert.ok(reused.length > 0, 'shared layers reused');
    assert.equal(again.builder.layers.packed, second.layers.length - reused.length);
    const firstDigests = new Set(first.layers.map((l) => l.digest));
    for (const l of reused) assert.ok(firstDigests.has(l.digest));
  });

  test('arm64 images are built for aarch64-linux and labelled arm64', async () => {
    const amd = await app.builder.build(parseImageName('hello'));
    const arm = await app.builder.build(parseImageName('arm64/hello'));
    assert.notEqual(arm.manifests.oci.digest, amd.manifests.oci.digest);
    assert.equal(JSON.parse(arm.manifests.config.bytes.toString()).architecture, 'arm64');
    assert.equal(JSON.parse(amd.manifests.config.bytes.toString()).architecture, 'amd64');
  });

  test('the config: env, command with the shell, fixed creation time, labels, diff_ids in layer order', async () => {
    const built = await app.builder.build(parseImageName('shell/hello'));
    const config = JSON.parse(built.manifests.config.bytes.toString());
    assert.deepEqual(config.config.Env, ['PATH=/bin:/usr/bin', 'SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt']);
    assert.deepEqual(config.config.Cmd, ['bash']);
    assert.equal(config.created, '1970-01-01T00:00:01Z');
    assert.equal(config.config.Labels['dev.nixery.packages'], 'bashInteractive cacert coreutils hello iana-etc moreutils nano');
    // The example set's identity: its git checkout's, or its content hash outside a checkout.
    assert.match(config.config.Labels['org.opencontainers.image.revision'], /^(?:git:[0-9a-f]{40}(?:\+dirty\.[0-9a-f]{32})?|sha256:[0-9a-f]{64})$/);
    assert.deepEqual(config.rootfs.diff_ids, built.layers.map((l) => l.diffId));
    const plain = await app.builder.build(parseImageName('curl'));
    assert.equal(JSON.parse(plain.manifests.config.bytes.toString()).config.Cmd, undefined);
    // hello declares meta.mainProgram: alone in an image, it is the command.
    const hello = await app.builder.build(parseImageName('hello'));
    assert.deepEqual(JSON.parse(hello.manifests.config.bytes.toString()).config.Cmd, ['/bin/hello']);
    // A user typing the attribute in lower case still gets the shell as command.
    const typed = await app.builder.build(parseImageName('bashinteractive/hello'));
    assert.deepEqual(JSON.parse(typed.manifests.config.bytes.toString()).config.Cmd, ['bash']);
  });

  test('manifests: one family each, layers most shared first with the customisation layer last', async () => {
    const built = await app.builder.build(parseImageName('shell/hello'));
    const oci = JSON.parse(built.manifests.oci.bytes.toString());
    const docker = JSON.parse(built.manifests.docker.bytes.toString());
    assert.ok(oci.layers.every((l: { mediaType: string }) => l.mediaType.startsWith('application/vnd.oci.')));
    assert.ok(docker.layers.every((l: { mediaType: string }) => l.mediaType.startsWith('application/vnd.docker.')));
    assert.ok(oci.config.mediaType.startsWith('application/vnd.oci.'));
    assert.ok(docker.config.mediaType.startsWith('application/vnd.docker.'));
    const last = built.layers[built.layers.length - 1]!;
    assert.equal(last.paths, 7, 'the customisation layer links the 7 requested packages');
  });
});
