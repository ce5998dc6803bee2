// The build API on a multi-platform registry (NIXERY_PLATFORMS=linux/amd64,linux/arm64),
// in-process on the stand-in Nix stage: a build makes what a pull of the tag gets (every platform and their
// index) so that pre-warming covers every platform; `platforms` picks some of the configured
// ones; build records per platform set; progress of several platforms; a failing platform.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startStandInRegistry, type StandInRegistry as TestRegistry } from '../helpers/registry.js';
import { EXAMPLE_CATALOGUE } from '../helpers/stand-in-nix.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';
import { parseImageName } from '../../src/image/name.js';
import { forPlatforms } from '../../src/image/platform.js';
import { BuildTracker, isFinal, type BuildStatus } from '../../src/service/build-tracker.js';
import type { Admission } from '../../src/registry/access.js';

const { ociIndex, dockerManifestList, ociManifest } = MEDIA_TYPES;
const BOTH = ['linux/amd64', 'linux/arm64'];

async function postBuild(r: TestRegistry, body: unknown): Promise<Response> {
  return fetch(`${r.url}/api/v1/builds`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
}

async function accepted(res: Response): Promise<BuildStatus> {
  const text = await res.text();
  assert.equal(res.status, 202, text);
  return JSON.parse(text) as BuildStatus;
}

async function badRequest(res: Response, message: RegExp): Promise<void> {
  const text = await res.text();
  assert.equal(res.status, 400, text);
  const { errors } = JSON.parse(text) as { errors: Array<{ code: string; message: string }> };
  assert.equal(errors[0]!.code, 'BODY_INVALID');
  assert.match(errors[0]!.message, message);
}

/** Every status event of a build's stream, to its end. */
async function events(r: TestRegistry, id: string): Promise<BuildStatus[]> {
  const text = await (await fetch(`${r.url}/api/v1/builds/${id}/events`)).text();
  return text
    .split('\n\n')
    .filter((block) => block.startsWith('event: status\n'))
    .map((block) => JSON.parse(block.split('\n')[1]!.slice('data: '.length)) as BuildStatus);
}

async function finalStatus(r: TestRegistry, id: string): Promise<BuildStatus> {
  const last = (await events(r, id)).at(-1)!;
  assert.ok(isFinal(last));
  return last;
}

async function manifest(r: TestRegistry, name: string, reference: string, accept: string): Promise<{ digest: string | null; json: any }> {
  const res = await fetch(`${r.url}/v2/${name}/manifests/${reference}`, { headers: { Accept: accept } });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return { digest: res.headers.get('docker-content-digest'), json: JSON.parse(text) };
}

async function architectureOf(r: TestRegistry, name: string, configDigest: string): Promise<string> {
  const res = await fetch(`${r.url}/v2/${name}/blobs/${configDigest}`);
  assert.equal(res.status, 200);
  return ((await res.json()) as { architecture: string }).architecture;
}

describe('build API with several platforms', () => {
  let r: TestRegistry;

  before(async () => {
    // Packages that take a while to build (each platform has its own store paths, so each
    // platform really builds), one that fails for aarch64 only.
    const slow = (pname: string) => ({ name: `${pname}-1.0`, files: { system: `${pname}\n` }, buildMs: 2000 });
    const catalogue = {
      ...EXAMPLE_CATALOGUE,
      sleepy: slow('sleepy'),
      sleepier: slow('sleepier'),
      'amd64-only': {
        name: 'amd64-only-1.0',
        files: { 'bin/amd64-only': { executable: '#!/bin/sh\necho ok\n' } },
        fails: 'nixery-test: amd64-only fails for aarch64 on purpose',
        failsOn: ['aarch64-linux'],
      },
    };
    r = await startStandInRegistry({ NIXERY_PLATFORMS: BOTH.join(','), NIXERY_BUILD_CONCURRENCY: '4' }, { catalogue });
  });
  after(async () => {
    await r?.close();
  });

  test('without platforms, a build makes every platform and the index a pull gets; pulls then run no Nix', async () => {
    const started = await accepted(await postBuild(r, { image: 'shell/hello:latest' }));
    assert.deepEqual(started.platforms, BOTH);
    const done = await finalStatus(r, started.id);
    assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
    const result = done.result!;
    assert.deepEqual(result.platforms.map((p) => p.platform), BOTH);
    // The fields of a single-platform result are the first (default) platform's.
    const [amd64, arm64] = result.platforms;
    assert.equal(result.manifestDigest, amd64!.manifestDigest);
    assert.equal(result.configDigest, amd64!.configDigest);
    assert.deepEqual(result.layers, amd64!.layers);
    assert.notEqual(amd64!.manifestDigest, arm64!.manifestDigest);
    assert.equal(result.index!.mediaType, ociIndex);
    assert.match(result.index!.digest, /^sha256:[0-9a-f]{64}$/);
    assert.equal(result.fromCache, false);

    const nix = r.nix.stats.invocations;
    const runs = r.app.builder.buildsRun;
    // By tag: the index is the one the build reported, over the platforms' manifests it reported.
    const index = await manifest(r, 'shell/hello', 'latest', ociIndex);
    assert.equal(index.digest, result.index!.digest);
    assert.deepEqual(
      index.json.manifests.map((m: { digest: string; platform: { os: string; architecture: string } }) => [`${m.platform.os}/${m.platform.architecture}`, m.digest]),
      result.platforms.map((p) => [p.platform, p.manifestDigest]),
    );
    assert.equal((await manifest(r, 'shell/hello', 'latest', ociManifest)).digest, result.manifestDigest);
    assert.equal((await manifest(r, 'shell/hello', 'latest', dockerManifestList)).json.manifests.length, 2);
    // Each platform's manifest by digest, its config and layers.
    for (const p of result.platforms) {
      const m = await manifest(r, 'shell/hello', p.manifestDigest, ociManifest);
      assert.equal(m.digest, p.manifestDigest);
      assert.equal(m.json.config.digest, p.configDigest);
      assert.deepEqual(
        m.json.layers.map((l: { digest: string; size: number }) => [l.digest, l.size]),
        p.layers.map((l) => [l.digest, l.size]),
      );
      assert.equal(`linux/${await architectureOf(r, 'shell/hello', p.configDigest)}`, p.platform);
    }
    assert.equal(r.nix.stats.invocations, nix, 'no Nix ran for the pulls');
    assert.equal(r.app.builder.buildsRun, runs);

    // The platforms listed (any order, any spelling): built in the configured order, the same index.
    const again = await accepted(await postBuild(r, { image: 'shell/hello', platforms: ['linux/arm64/v8', 'linux/amd64', 'linux/arm64'] }));
    assert.notEqual(again.id, started.id);
    assert.deepEqual(again.platforms, BOTH);
    assert.equal(again.state, 'succeeded');
    assert.equal(again.result!.fromCache, true);
    assert.equal(again.result!.index!.digest, result.index!.digest);
    assert.equal(r.nix.stats.invocations, nix);
  });

  test('platforms: ["linux/arm64"] builds that platform alone', async () => {
    const started = await accepted(await postBuild(r, { image: 'tree:latest', platforms: ['linux/arm64'] }));
    assert.deepEqual(started.platforms, ['linux/arm64']);
    const done = await finalStatus(r, started.id);
    assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
    const result = done.result!;
    assert.equal(result.index, null);
    assert.deepEqual(result.platforms.map((p) => p.platform), ['linux/arm64']);
    assert.equal(result.manifestDigest, result.platforms[0]!.manifestDigest);
    assert.equal(await architectureOf(r, 'tree', result.configDigest), 'arm64');

    // A pull of the tag now builds linux/amd64 only: the arm64 image is the one built before.
    const runs = r.app.builder.buildsRun;
    const index = await manifest(r, 'tree', 'latest', ociIndex);
    assert.equal(r.app.builder.buildsRun - runs, 1);
    assert.equal(index.json.manifests[1].digest, result.manifestDigest);

    // An arm64/… name is the one linux/arm64 image, with or without platforms.
    const named = await finalStatus(r, (await accepted(await postBuild(r, { image: 'arm64/tree', platforms: ['linux/arm64'] }))).id);
    assert.deepEqual(named.platforms, ['linux/arm64']);
    assert.equal(named.result!.index, null);
    assert.equal(named.result!.manifestDigest, result.manifestDigest, 'the same image, byte for byte');
    assert.deepEqual((await accepted(await postBuild(r, { image: 'arm64/tree' }))).platforms, ['linux/arm64']);
  });

  test('platforms must be configured ones; an arm64/… name builds linux/arm64 only', async () => {
    await badRequest(await postBuild(r, { image: 'hello', platforms: ['windows/amd64'] }), /^platform "windows\/amd64" is not supported: this registry builds linux\/amd64, linux\/arm64 \(NIXERY_PLATFORMS\)$/);
    await badRequest(await postBuild(r, { image: 'hello', platforms: ['linux/amd64', 'linux/riscv64'] }), /"linux\/riscv64" is not supported: this registry builds linux\/amd64, linux\/arm64/);
    await badRequest(await postBuild(r, { image: 'arm64/hello', platforms: ['linux/amd64'] }), /^platform "linux\/amd64" is not one this name builds: arm64\/hello builds linux\/arm64 only$/);
    await badRequest(await postBuild(r, { image: 'hello', platforms: [] }), /platforms must be a non-empty list/);
    await badRequest(await postBuild(r, { image: 'hello', platforms: [42] }), /platforms must be a non-empty list/);
    assert.equal(r.registry.builds.size.active, 0);
  });

  test('a build record per platform set; every platform built once; progress per platform, summed', async () => {
    const runs = r.app.builder.buildsRun;
    const both = await accepted(await postBuild(r, { image: 'sleepy:latest' }));
    const sameSet = await accepted(await postBuild(r, { image: 'sleepy', platforms: ['linux/arm64', 'linux/amd64'] }));
    const armOnly = await accepted(await postBuild(r, { image: 'sleepy', platforms: ['linux/arm64'] }));
    assert.equal(sameSet.id, both.id, 'the same platforms: the same build');
    assert.notEqual(armOnly.id, both.id, 'other platforms: another build');
    const [bothDone, armDone] = await Promise.all([finalStatus(r, both.id), finalStatus(r, armOnly.id)]);
    assert.equal(bothDone.state, 'succeeded', JSON.stringify(bothDone.error));
    assert.equal(armDone.state, 'succeeded', JSON.stringify(armDone.error));
    // The arm64-only build joined the arm64 build of the other one.
    assert.equal(r.app.builder.buildsRun - runs, 2);
    assert.equal(armDone.result!.manifestDigest, bothDone.result!.platforms[1]!.manifestDigest);
    // Packing progress summed over both platforms.
    const layers = bothDone.result!.platforms.reduce((n, p) => n + p.layers.length, 0);
    assert.deepEqual(
      { layers: bothDone.progress!.layers, layersDone: bothDone.progress!.layersDone, layer: bothDone.progress!.layer },
      { layers, layersDone: layers, layer: layers },
    );
    assert.equal(bothDone.progress!.bytesDone, bothDone.progress!.bytesTotal);

    // Every change, unthrottled: each platform's reports, named by it; the sums never go back.
    const tracker = new BuildTracker(r.app.service, { watchIntervalMs: 0 });
    const open: Admission = { user: null, client: 'test', beforeBuild: () => {}, mayBuild: () => open, mayPull: () => true, restricted: false };
    const started = await tracker.start(forPlatforms(parseImageName('sleepier'), tracker.platforms), { name: 'sleepier', tag: 'latest' }, open);
    const seen: BuildStatus[] = [];
    await new Promise<void>((resolve) => {
      const stop = tracker.watch(started.id, (s) => {
        seen.push(s);
        if (isFinal(s)) {
          stop?.();
          resolve();
        }
      });
    });
    const last = seen.at(-1)!;
    assert.equal(last.state, 'succeeded', JSON.stringify(last.error));
    const reports = seen.filter((s) => !isFinal(s) && s.phase !== null);
    for (const s of reports) assert.match(s.message, /^linux\/(amd64|arm64): /);
    for (const platform of BOTH) {
      const own = reports.filter((s) => s.message.startsWith(`${platform}: `));
      assert.ok(own.some((s) => s.phase === 'realise'), `${platform} reported building`);
      assert.ok(own.some((s) => s.phase === 'pack'), `${platform} reported packing`);
    }
    const packing = seen.filter((s) => s.progress);
    for (let i = 1; i < packing.length; i++) {
      assert.ok(packing[i]!.progress!.bytesDone >= packing[i - 1]!.progress!.bytesDone, 'bytes done never go back');
      assert.ok(packing[i]!.progress!.layersDone >= packing[i - 1]!.progress!.layersDone);
    }
    const sleepierLayers = last.result!.platforms.reduce((n, p) => n + p.layers.length, 0);
    assert.equal(last.progress!.layers, sleepierLayers);
    assert.equal(last.progress!.bytesDone, last.progress!.bytesTotal);
  });

  test('a platform that fails fails the build, naming the platform; the other can be built alone', async () => {
    const failed = await finalStatus(r, (await accepted(await postBuild(r, { image: 'amd64-only:latest' }))).id);
    assert.equal(failed.state, 'failed');
    assert.equal(failed.result, null);
    assert.equal(failed.error!.code, 'UNKNOWN');
    assert.match(failed.error!.message, /^building for linux\/arm64 failed: .*nixery-test: amd64-only fails for aarch64 on purpose/s);
    assert.doesNotMatch(failed.error!.message, /linux\/amd64/);

    const amd64 = await finalStatus(r, (await accepted(await postBuild(r, { image: 'amd64-only:latest', platforms: ['linux/amd64'] }))).id);
    assert.equal(amd64.state, 'succeeded', JSON.stringify(amd64.error));
    assert.deepEqual(amd64.result!.platforms.map((p) => p.platform), ['linux/amd64']);
  });
});
