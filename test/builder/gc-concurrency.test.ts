// Garbage collection while builds write, on every backend. Writes are placed between gc's
// phases (or just before a removal) through its hooks, so each interleaving runs the same way
// every time: objects written during a run are never removed by it, a record written during the
// run that uses a blob the run removed is removed too (no record is left pointing at a missing
// blob), and a record rewritten just before its removal is kept. Runs use --grace 0 and the
// storage's own clock, so "old" objects are made by waiting for the storage clock's next second.

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { collectGarbage, type GcHooks, type GcPhase, type GcReport } from '../../src/builder/gc.js';
import { scrubStorage } from '../../src/builder/scrub.js';
import { blobKey } from '../../src/builder/layout.js';
import { decodeRecord, encodeRecord } from '../../src/builder/records.js';
import { MEDIA_TYPES, sha256Digest } from '../../src/manifest/manifest.js';
import type { Storage } from '../../src/storage/storage.js';
import { BACKENDS, openBackend, stopBackendServers, type TestBackend } from './backends.js';
import type { TestRegistry } from '../helpers/registry.js';

after(stopBackendServers);

/** Lets the storage clock pass its next whole second (S3 keeps times in whole seconds). */
const nextSecond = () => new Promise((resolve) => setTimeout(resolve, 1100));

async function keys(storage: Storage, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const p of prefix ? [prefix] : ['blobs', 'builds', 'manifests', 'staging']) {
    for await (const o of storage.list(p)) out.push(o.key);
  }
  return out.sort();
}

let counter = 0;
/** A unique blob, stored under its digest. */
async function putBlob(storage: Storage, what: string): Promise<string> {
  const bytes = Buffer.from(`${what} ${++counter} ${Math.random()}`);
  const digest = sha256Digest(bytes);
  await storage.put(blobKey(digest), bytes, { contentType: MEDIA_TYPES.ociLayerGzip });
  return digest;
}

const buildKey = (name: string) => `builds/${sha256Digest(name).slice(7)}.json`;
const manifestKey = (name: string) => `manifests/${sha256Digest(name).slice(7)}.json`;

async function putBuildRecord(storage: Storage, name: string, layer: string): Promise<string> {
  await storage.put(buildKey(name), encodeRecord({ digest: layer, size: 10, diffId: layer }), { contentType: 'application/json' });
  return buildKey(name);
}

/** An image as a build leaves it: config and manifest blobs, and a manifest record over them and `layers`. */
async function putImage(storage: Storage, name: string, layers: string[]): Promise<{ key: string; blobs: string[] }> {
  const [config, oci, docker] = [await putBlob(storage, 'config'), await putBlob(storage, 'oci'), await putBlob(storage, 'docker')];
  const d = (mediaType: string, digest: string) => ({ mediaType, digest, size: 10 });
  const record = {
    revision: null,
    config: d(MEDIA_TYPES.ociConfig, config),
    oci: d(MEDIA_TYPES.ociManifest, oci),
    docker: d(MEDIA_TYPES.dockerManifest, docker),
    layers: layers.map((l) => ({ digest: l, size: 10, diffId: l, paths: 1 })),
  };
  await storage.put(manifestKey(name), encodeRecord(record), { contentType: 'application/json' });
  return { key: manifestKey(name), blobs: [config, oci, docker, ...layers].map(blobKey) };
}

/** Records that use a blob that is not in storage. */
async function danglingRecords(storage: Storage): Promise<string[]> {
  const out: string[] = [];
  for (const prefix of ['manifests', 'builds']) {
    for await (const o of storage.list(prefix)) {
      const decoded = decodeRecord<{ digest?: string; config?: { digest: string }; oci?: { digest: string }; docker?: { digest: string }; layers?: Array<{ digest: string }> }>((await storage.read(o.key))!);
      if (!decoded.ok) continue;
      const r = decoded.record;
      const uses = [r.digest, r.config?.digest, r.oci?.digest, r.docker?.digest, ...(r.layers ?? []).map((l) => l.digest)].filter((x): x is string => !!x);
      for (const d of uses) if (!(await storage.stat(blobKey(d)))) out.push(o.key);
    }
  }
  return [...new Set(out)];
}

/** Hooks that run `writes[phase]` after that phase. */
function between(writes: Partial<Record<GcPhase, () => Promise<void>>>): GcHooks {
  return { afterPhase: async (phase) => writes[phase]?.() };
}

async function present(storage: Storage, list: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const k of list) if (await storage.stat(k)) out.push(k);
  return out;
}

for (const name of BACKENDS) {
  describe(`gc during builds on ${name} storage`, () => {
    let backend: TestBackend;
    const fresh = async () => {
      await backend?.close();
      backend = await openBackend(name);
      return backend.storage;
    };
    after(() => backend?.close());

    test('objects written during the run are never removed by it, even with --grace 0', async () => {
      const storage = await fresh();
      const garbage = await putBlob(storage, 'garbage');
      await nextSecond();
      const written: string[] = [];
      const report = await collectGarbage(storage, {
        graceSeconds: 0,
        dryRun: false,
        hooks: between({
          // A whole build finishes after gc listed its roots...
          manifests: async () => {
            const layer = await putBlob(storage, 'layer');
            written.push(blobKey(layer), await putBuildRecord(storage, 'new layer', layer));
            const image = await putImage(storage, 'new image', [layer]);
            written.push(image.key, ...image.blobs);
          },
          // ...and another one is packing a layer while gc deletes blobs.
          builds: async () => {
            written.push(blobKey(await putBlob(storage, 'packing')));
            await storage.put('staging/upload', 'partial layer');
            written.push('staging/upload');
          },
        }),
      });
      assert.deepEqual(report.removed.map((r) => r.key), [blobKey(garbage)]);
      assert.deepEqual(await present(storage, written), written);
      assert.deepEqual(report.danglingRecordsRemoved, []);
      assert.ok(report.startedAt <= Date.now() && report.startedAt > Date.now() - 60_000);
      assert.deepEqual(await keys(storage, 'staging'), ['staging/upload'], 'the run removed its clock marker');
    });

    test('a record written during the run that uses a blob the run removed is removed too', async () => {
      const storage = await fresh();
      // A layer (and its build record) from before the run that no image uses any more.
      const layer = await putBlob(storage, 'old layer');
      const record = await putBuildRecord(storage, 'old layer', layer);
      await nextSecond();
      let image: { key: string; blobs: string[] } | undefined;
      const report = await collectGarbage(storage, {
        graceSeconds: 0,
        dryRun: false,
        hooks: between({
          // A build reuses the layer after gc listed the build records: it rewrites the layer's
          // build record (as LayerStore does) and writes its manifest record.
          builds: async () => {
            await putBuildRecord(storage, 'old layer', layer);
            image = await putImage(storage, 'reusing image', [layer]);
          },
        }),
      });
      assert.ok(report.removed.some((r) => r.key === blobKey(layer)));
      assert.deepEqual(report.danglingRecordsRemoved, [image!.key, record]);
      assert.deepEqual(await present(storage, [image!.key, record]), []);
      assert.deepEqual(await danglingRecords(storage), []);
      // The image's own new blobs were written during the run and stay (a rebuild reuses them).
      assert.deepEqual(await present(storage, image!.blobs.slice(0, 3)), image!.blobs.slice(0, 3));
    });

    test('a dry run changes nothing and reports what it would remove, dangling records included', async () => {
      const storage = await fresh();
      const layer = await putBlob(storage, 'old layer');
      const record = await putBuildRecord(storage, 'old layer', layer);
      await nextSecond();
      let image = '';
      let before: string[] = [];
      const report = await collectGarbage(storage, {
        graceSeconds: 0,
        dryRun: true,
        hooks: between({
          builds: async () => {
            image = (await putImage(storage, 'reusing image', [layer])).key;
          },
          staging: async () => {
            before = (await keys(storage)).filter((k) => !k.startsWith('staging/gc-'));
          },
        }),
      });
      assert.deepEqual(await keys(storage), before);
      assert.deepEqual(report.removed.map((r) => r.key).sort(), [record, blobKey(layer), image].sort());
      assert.deepEqual(report.danglingRecordsRemoved, [image]);
    });

    test('--manifest-max-age 0 expires every manifest record older than the run start, not one written during it', async () => {
      const storage = await fresh();
      const oldImage = await putImage(storage, 'old image', [await putBlob(storage, 'old layer')]);
      await nextSecond();
      let newImage: { key: string; blobs: string[] } | undefined;
      const report: GcReport = await collectGarbage(storage, {
        graceSeconds: 0,
        manifestMaxAgeSeconds: 0,
        dryRun: false,
        hooks: between({
          start: async () => {
            newImage = await putImage(storage, 'new image', [await putBlob(storage, 'new layer')]);
          },
        }),
      });
      assert.equal(report.manifestsRemoved, 1);
      assert.equal(report.manifestsKept, 1);
      assert.deepEqual(await present(storage, [oldImage.key, ...oldImage.blobs]), []);
      assert.deepEqual(await present(storage, [newImage!.key, ...newImage!.blobs]), [newImage!.key, ...newImage!.blobs]);
    });

    test('a manifest record written again just before its removal is kept, and keeps its blobs', async () => {
      const storage = await fresh();
      const image = await putImage(storage, 'image', [await putBlob(storage, 'layer')]);
      const raw = (await storage.read(image.key))!;
      await nextSecond();
      const report = await collectGarbage(storage, {
        graceSeconds: 0,
        manifestMaxAgeSeconds: 0,
        dryRun: false,
        hooks: {
          // A replica rebuilds the image and writes its record while gc is about to expire it.
          beforeRemove: async (key) => {
            if (key === image.key) await storage.put(key, raw, { contentType: 'application/json' });
          },
        },
      });
      assert.deepEqual(report.changedDuringRun, [image.key]);
      assert.deepEqual(report.removed, []);
      assert.equal(report.manifestsKept, 1);
      assert.deepEqual(await present(storage, [image.key, ...image.blobs]), [image.key, ...image.blobs]);
    });
  });
}

// With real builds: a registry building during the run, and a build straddling the run start.

const A = 'shell/hello';
const B = 'jq/tree';

async function pull(r: TestRegistry, image: string): Promise<string> {
  const res = await fetch(`${r.url}/v2/${image}/manifests/latest`);
  assert.equal(res.status, 200, `${image}: ${await res.clone().text()}`);
  await res.arrayBuffer();
  return res.headers.get('docker-content-digest')!;
}

/** A fresh registry serves the image with this digest, and blobs that match their digests. */
async function checkServed(r: TestRegistry, image: string, digest: string): Promise<void> {
  assert.equal(await pull(r, image), digest);
  const manifest = (await (await fetch(`${r.url}/v2/${image}/manifests/${digest}`)).json()) as { config: { digest: string }; layers: Array<{ digest: string }> };
  for (const { digest: d } of [manifest.config, ...manifest.layers]) {
    const res = await fetch(`${r.url}/v2/${image}/blobs/${d}`);
    assert.equal(res.status, 200, d);
    assert.equal(sha256Digest(Buffer.from(await res.arrayBuffer())), d);
  }
}

for (const name of ['filesystem', 's3'] as const) {
  describe(`gc during real builds on ${name} storage`, () => {
    test('an image built while gc runs (after it listed its roots) is kept whole', async () => {
      const backend = await openBackend(name);
      try {
        const r1 = await backend.startRegistry();
        let digests: { a: string; b: string };
        let report: GcReport;
        const garbage = await putBlob(backend.storage, 'garbage');
        try {
          const a = await pull(r1, A);
          await nextSecond();
          let b = '';
          report = await collectGarbage(backend.storage, { graceSeconds: 0, dryRun: false, hooks: between({ manifests: async () => void (b = await pull(r1, B)) }) });
          digests = { a, b };
        } finally {
          await r1.close();
        }
        assert.deepEqual(report.removed.map((x) => x.key), [blobKey(garbage)]);
        assert.deepEqual((await scrubStorage(backend.storage, { repair: false })).bad, []);
        const r2 = await backend.startRegistry();
        try {
          await checkServed(r2, A, digests.a);
          await checkServed(r2, B, digests.b);
          assert.equal(r2.app.builder.buildsRun, 0, 'both served from the cache');
        } finally {
          await r2.close();
        }
      } finally {
        await backend.close();
      }
    });

    test('a build whose layers predate the run and whose record comes after the roots were listed is undone, then rebuilt', async () => {
      const backend = await openBackend(name);
      const { storage } = backend;
      try {
        const r1 = await backend.startRegistry();
        let digest: string;
        try {
          digest = await pull(r1, B);
        } finally {
          await r1.close();
        }
        // Back to the moment the build had packed its layers but not written its record.
        const [recordKey] = await keys(storage, 'manifests');
        const record = (await storage.read(recordKey!))!;
        await storage.delete(recordKey!);
        await nextSecond();
        const report = await collectGarbage(storage, {
          graceSeconds: 0,
          dryRun: false,
          hooks: between({ manifests: () => storage.put(recordKey!, record, { contentType: 'application/json' }) }),
        });
        assert.deepEqual(report.danglingRecordsRemoved, [recordKey]);
        assert.deepEqual(await danglingRecords(storage), []);
        assert.deepEqual((await scrubStorage(storage, { repair: false })).bad, []);
        const r2 = await backend.startRegistry();
        try {
          await checkServed(r2, B, digest);
          assert.equal(r2.app.builder.buildsRun, 1);
        } finally {
          await r2.close();
        }
      } finally {
        await backend.close();
      }
    });
  });
}
