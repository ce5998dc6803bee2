// The build API (/api/v1/builds) over HTTP, in-process, on the stand-in Nix stage: the state machine with
// live progress (JSON and server-sent events), builds shared with pulls, pre-warming, failures
// reported in the status, request validation. (Admission: test/registry/api-builds-admission.test.ts.)

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startStandInRegistry, type StandInRegistry as TestRegistry } from '../helpers/registry.js';
import { EXAMPLE_CATALOGUE, incompressible, type Catalogue } from '../helpers/stand-in-nix.js';
import { accepted, finalStatus, ociError, postBuild, readEvents, statusOf } from '../helpers/build-api.js';
import { parseImageName } from '../../src/image/name.js';
import { forPlatforms } from '../../src/image/platform.js';
import type { BuildProgress } from '../../src/builder/builder.js';
import { BuildTracker, type BuildStatus } from '../../src/service/build-tracker.js';
import type { Admission } from '../../src/registry/access.js';
import { NixeryError } from '../../src/errors.js';

const ORDER = ['queued', 'running', 'succeeded'];

/**
 * The `big` package: a layer whose packing takes longer than the event stream's interval (250 ms),
 * so the stream shows it: 64 MiB that does not compress, four copies of 16 MiB (made once; each
 * compression chunk is compressed alone, so the copies cost as much as different bytes).
 */
const BIG_PART = 16 * 1024 * 1024;
const BIG_BYTES = 4 * BIG_PART;

const bigPart = incompressible(BIG_PART, 'big');

/** The example packages, `slow<N>` packages whose build takes N half-seconds, and `big`. */
function catalogue(sleeps: number[]): Catalogue {
  const slow = Object.fromEntries(sleeps.map((n) => [`slow${n}`, { name: `slow${n}-1.0`, files: { slept: `${n}\n` }, buildMs: n * 500 }]));
  return { ...EXAMPLE_CATALOGUE, ...slow, big: { name: 'big-1.0', files: Object.fromEntries([0, 1, 2, 3].map((i) => [`share/random-${i}.bin`, bigPart])) } };
}

describe('build API', () => {
  let r: TestRegistry;

  before(async () => {
    // One build slot: a slow build holds it while the next one waits (queued).
    r = await startStandInRegistry({ NIXERY_BUILD_CONCURRENCY: '1' }, { catalogue: catalogue([3, 2, 4]) });
  });
  after(async () => {
    await r.close();
  });

  test('queued → running → succeeded, with phases and packing progress; a pull joins the build', async () => {
    const runsBefore = r.app.builder.buildsRun;
    const slow = await accepted(await postBuild(r, { image: 'slow3:latest' }));
    assert.equal(slow.name, 'slow3');
    assert.equal(slow.tag, 'latest');
    assert.equal(slow.image, 'slow3:latest');
    // Asking again for an image whose build is under way gives the same build.
    const again = await accepted(await postBuild(r, { image: 'slow3' }));
    assert.equal(again.id, slow.id);

    const big = await accepted(await postBuild(r, { image: 'big:latest', platforms: ['linux/amd64'] }));
    assert.equal(big.state, 'queued');
    assert.equal(big.phase, 'queued');
    assert.match(big.message, /waiting for a build slot/);
    assert.equal(big.startedAt, null);
    assert.equal((await statusOf(r, big.id)).state, 'queued');

    // Everyone waiting for the build hears its progress, from where it is: here the service,
    // as a pull would wait; and a real pull joins the same build.
    const heard: BuildProgress[] = [];
    const joined = r.app.service.image(parseImageName('big'), undefined, (p) => heard.push(p));
    const pull = fetch(`${r.url}/v2/big/manifests/latest`);
    const [{ events }, pulled] = await Promise.all([readEvents(r, big.id), pull]);

    // The stream: the state now at once, states only move forward, ends with the final one.
    assert.equal(events[0]!.state, 'queued');
    for (let i = 1; i < events.length; i++) {
      assert.ok(ORDER.indexOf(events[i]!.state) >= ORDER.indexOf(events[i - 1]!.state), events.map((e) => e.state).join(' '));
    }
    assert.ok(events.some((e) => e.state === 'running'));
    const packing = events.filter((e) => e.phase === 'pack');
    assert.ok(packing.length > 0, 'packing is reported');
    for (const e of packing) {
      assert.match(e.message, /^(packing layer \d+ of \d+|packed \d+ layers)$/);
      assert.ok(e.progress && e.progress.layer >= 1 && e.progress.layer <= e.progress.layers && e.progress.bytesDone <= e.progress.bytesTotal);
    }
    const last = events.at(-1)!;
    assert.equal(last.state, 'succeeded');
    assert.equal(last.phase, 'done');
    assert.ok(last.startedAt && last.finishedAt && last.createdAt <= last.startedAt && last.startedAt <= last.finishedAt);
    assert.equal(last.error, null);
    assert.deepEqual(await statusOf(r, big.id), last);

    // The whole sequence of phases, as the joined caller heard it.
    const phases = heard.map((p) => p.phase).filter((p, i, all) => p !== all[i - 1]);
    assert.deepEqual(phases, ['source', 'queued', 'resolve', 'realise', 'closure', 'layers', 'pack', 'manifest']);
    const packed = heard.filter((p) => p.pack).map((p) => p.pack!);
    assert.ok(packed.length >= 3);
    for (let i = 1; i < packed.length; i++) assert.ok(packed[i]!.bytesDone >= packed[i - 1]!.bytesDone, 'bytes done never go back');
    const end = packed.at(-1)!;
    assert.equal(end.layersDone, end.layers);
    assert.equal(end.bytesDone, end.bytesTotal);
    assert.ok(end.bytesTotal >= BIG_BYTES, `the ${BIG_BYTES >> 20} MiB layer is counted (${end.bytesTotal})`);
    assert.equal(end.layers, last.result!.layers.length);

    // One build for the API, the service call and the pull (slow3 was the other).
    const built = await joined;
    assert.equal(r.app.builder.buildsRun, runsBefore + 2);
    assert.equal(pulled.status, 200);
    assert.equal(pulled.headers.get('docker-content-digest'), last.result!.manifestDigest);
    assert.equal(built.manifests.oci.digest, last.result!.manifestDigest);
    const manifest = JSON.parse(Buffer.from(await pulled.arrayBuffer()).toString('utf8')) as { config: { digest: string }; layers: Array<{ digest: string; size: number }> };
    assert.equal(manifest.config.digest, last.result!.configDigest);
    assert.deepEqual(
      manifest.layers.map((l) => [l.digest, l.size]),
      last.result!.layers.map((l) => [l.digest, l.size]),
    );
    assert.ok(last.result!.layers.every((l) => /^sha256:[0-9a-f]{64}$/.test(l.diffId) && l.paths >= 1));
    assert.equal(last.result!.fromCache, false);

    const slowDone = await finalStatus(r, slow.id);
    assert.equal(slowDone.state, 'succeeded');
  });

  test('pre-warm: after an API build, pulls and repeated requests run no Nix', async () => {
    const built = await finalStatus(r, (await accepted(await postBuild(r, { image: 'shell/hello:latest' }))).id);
    assert.equal(built.state, 'succeeded', JSON.stringify(built.error));
    const nixBefore = r.nix.stats.invocations;
    const runsBefore = r.app.builder.buildsRun;
    const res = await fetch(`${r.url}/v2/shell/hello/manifests/latest`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-content-digest'), built.result!.manifestDigest);
    for (const layer of built.result!.layers) {
      const blob = await fetch(`${r.url}/v2/shell/hello/blobs/${layer.digest}`);
      assert.equal(blob.status, 200);
      assert.equal(Number(blob.headers.get('content-length')), layer.size);
      await blob.arrayBuffer();
    }
    // Asking again: a new build record, already succeeded, from the cache.
    const again = await accepted(await postBuild(r, { image: 'shell/hello:latest' }));
    assert.notEqual(again.id, built.id);
    assert.equal(again.state, 'succeeded');
    assert.equal(again.result!.fromCache, true);
    assert.ok(again.result!.layers.every((l) => l.cached));
    assert.equal(again.result!.manifestDigest, built.result!.manifestDigest);
    const { events } = await readEvents(r, again.id);
    assert.equal(events.length, 1, 'a finished build streams its state once and ends');
    assert.equal(r.nix.stats.invocations, nixBefore, 'no Nix ran');
    assert.equal(r.app.builder.buildsRun, runsBefore);
  });

  test('a failed build reports its error: a package that fails to build, an unknown package', async () => {
    const broken = await accepted(await postBuild(r, { image: 'broken:latest' }));
    const brokenDone = await finalStatus(r, broken.id);
    assert.equal(brokenDone.state, 'failed');
    assert.equal(brokenDone.result, null);
    assert.equal(brokenDone.error!.code, 'UNKNOWN');
    assert.match(brokenDone.error!.message, /broken on purpose/);
    assert.ok(brokenDone.finishedAt);

    const unknown = await accepted(await postBuild(r, { image: 'hello/no-such-package:latest' }));
    const unknownDone = await finalStatus(r, unknown.id);
    assert.equal(unknownDone.state, 'failed');
    assert.equal(unknownDone.phase, 'resolve');
    assert.equal(unknownDone.error!.code, 'NAME_UNKNOWN');
    assert.match(unknownDone.error!.message, /no-such-package/);
    assert.deepEqual(await statusOf(r, unknown.id), unknownDone);
  });

  test('the table of builds is bounded: the oldest finished builds go first, finished builds expire', async () => {
    const open: Admission = { user: null, client: 'test', beforeBuild: () => {}, mayBuild: () => open, mayPull: () => true, restricted: false };
    const start = (tracker: BuildTracker, name: string) => tracker.start(forPlatforms(parseImageName(name), tracker.platforms), { name, tag: 'latest' }, open);
    // Images built by the tests before: they finish at once.
    const tracker = new BuildTracker(r.app.service, { capacity: 2, retainMs: 500 });
    const a = await start(tracker, 'shell/hello');
    const b = await start(tracker, 'big');
    assert.equal(a.state, 'succeeded');
    const c = await start(tracker, 'slow3');
    assert.equal(tracker.get(a.id), undefined, 'the oldest finished build made room');
    assert.equal(tracker.get(b.id)!.state, 'succeeded');
    assert.equal(tracker.get(c.id)!.state, 'succeeded');
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.equal(tracker.get(b.id), undefined, 'expired');
    assert.deepEqual(tracker.size, { kept: 0, active: 0 });

    // Builds under way are never dropped: a full table of them refuses more.
    const busy = new BuildTracker(r.app.service, { capacity: 1 });
    const slow = await start(busy, 'slow2');
    assert.notEqual(slow.state, 'succeeded');
    await assert.rejects(start(busy, 'shell/hello'), (err: unknown) => err instanceof NixeryError && err.kind === 'TOOMANYREQUESTS');
    await new Promise<void>((resolve) => {
      const stop = busy.watch(slow.id, (s) => {
        if (s.state === 'succeeded') {
          stop?.();
          resolve();
        }
      });
    });
    const next = await start(busy, 'shell/hello');
    assert.equal(next.state, 'succeeded');
    assert.equal(busy.get(slow.id), undefined);
  });

  test('requests are validated: unknown builds, bad bodies, names, tags and platforms', async () => {
    await ociError(await fetch(`${r.url}/api/v1/builds/no-such-build`), 404, 'BUILD_UNKNOWN');
    await ociError(await fetch(`${r.url}/api/v1/builds/no-such-build/events`), 404, 'BUILD_UNKNOWN');
    await ociError(await fetch(`${r.url}/api/v1/builds`), 405, 'UNSUPPORTED', /use POST/);
    await ociError(await fetch(`${r.url}/api/v1/builds/x`, { method: 'DELETE' }), 405, 'UNSUPPORTED');

    const bad: Array<[unknown, RegExp]> = [
      ['{"image": ', /not valid JSON/],
      [['hello'], /JSON object/],
      [{}, /image must be/],
      [{ image: 42 }, /image must be/],
      [{ image: 'hello', extra: true }, /unknown field "extra"/],
      [{ image: 'hello:-bad' }, /invalid tag/],
      [{ image: `hello:${'t'.repeat(129)}` }, /at most 128/],
      [{ image: 'hello', platforms: 'linux/amd64' }, /platforms must be/],
      [{ image: 'hello', platforms: [] }, /platforms must be/],
      [{ image: 'hello', platforms: ['windows/amd64'] }, /^platform "windows\/amd64" is not supported: this registry builds linux\/amd64 \(NIXERY_PLATFORMS\)$/],
      [{ image: 'hello', platforms: ['linux/arm64'] }, /^platform "linux\/arm64" is not configured here: this registry builds linux\/amd64 \(NIXERY_PLATFORMS\) \(the name arm64\/hello builds linux\/arm64 alone\)$/],
      [{ image: 'hello', platforms: ['linux/amd64', 'linux/arm64/v8'] }, /"linux\/arm64\/v8" is not configured here/],
      [{ image: 'arm64/hello', platforms: ['linux/amd64'] }, /^platform "linux\/amd64" is not one this name builds: arm64\/hello builds linux\/arm64 only$/],
    ];
    for (const [body, message] of bad) await ociError(await postBuild(r, body), 400, 'BODY_INVALID', message);
    await ociError(await postBuild(r, { image: 'Hello:latest' }), 400, 'NAME_INVALID', /upper-case/);
    await ociError(await postBuild(r, { image: '127.0.0.1:5000/hello:latest' }), 400, 'NAME_INVALID');
    await ociError(await postBuild(r, { image: 'hello' }, { 'Content-Type': 'text/plain' }), 415, 'UNSUPPORTED', /application\/json/);
    await ociError(await postBuild(r, JSON.stringify({ image: 'hello', pad: 'x'.repeat(20_000) })), 413, 'SIZE_INVALID');
    // A tag the package source does not have: refused before anything starts.
    await ociError(await postBuild(r, { image: 'hello:no-such-tag' }), 404, 'MANIFEST_UNKNOWN', /only latest/);
    assert.equal(r.registry.builds.size.active, 0);
  });

  // Last: it drains this registry.
  test('a shutdown ends the event streams; the build goes on', async () => {
    const build = await accepted(await postBuild(r, { image: 'slow4:latest' }));
    const response = await fetch(`${r.url}/api/v1/builds/${build.id}/events`);
    const reader = response.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    assert.match(first, /^event: status\ndata: .*"state":"running"/);
    const started = Date.now();
    const drained = r.registry.drain(10_000);
    while (!(await reader.read()).done);
    assert.ok(Date.now() - started < 2000, 'the stream ended at once');
    assert.equal((await drained).forced, 0);
    const done = await new Promise<BuildStatus>((resolve) => {
      const stop = r.registry.builds.watch(build.id, (s) => {
        if (s.state === 'succeeded' || s.state === 'failed') {
          stop?.();
          resolve(s);
        }
      });
    });
    assert.equal(done.state, 'succeeded');
  });
});
