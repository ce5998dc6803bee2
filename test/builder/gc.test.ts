// Garbage collection over a real build: what no cached manifest references goes (after the
// grace period), what the image needs stays and is still served, dry runs change nothing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startRegistry } from '../helpers/registry.js';
import { collectGarbage } from '../../src/builder/gc.js';
import { blobKey } from '../../src/builder/layout.js';
import { sha256Digest } from '../../src/manifest/manifest.js';
import { encodeRecord } from '../../src/builder/records.js';

async function keys(storage: import('../../src/storage/storage.js').Storage, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of storage.list(prefix)) out.push(o.key);
  return out;
}

test('gc removes unreferenced blobs, build entries and staging objects, and keeps the image', async () => {
  const storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-gc-'));
  const r = await startRegistry({}, { storagePath });
  try {
    const res = await fetch(`${r.url}/v2/shell/hello/manifests/latest`);
    assert.equal(res.status, 200);
    const manifest = JSON.parse(await res.text()) as { config: { digest: string }; layers: Array<{ digest: string }> };
    const { storage } = r.app;

    // Garbage: a stray blob, a build entry pointing at it, an abandoned staging upload, the build
    // lease of a replica that died.
    const stray = Buffer.from('not referenced by anything');
    const strayDigest = sha256Digest(stray);
    await storage.put(blobKey(strayDigest), stray, { contentType: 'application/octet-stream' });
    await storage.put(`builds/${'f'.repeat(64)}.json`, encodeRecord({ digest: strayDigest, size: stray.length, diffId: strayDigest }));
    await storage.put('staging/abandoned', Buffer.alloc(100));
    await storage.createIfAbsent(`leases/${'e'.repeat(64)}`, 'x'.repeat(50));
    const blobsBefore = await keys(storage, 'blobs');

    // Inside the grace period nothing goes.
    const young = await collectGarbage(storage, { graceSeconds: 3600, dryRun: false });
    assert.equal(young.removed.length, 0);

    // A dry run reports without removing.
    const later = Date.now() + 2 * 3600_000;
    const dry = await collectGarbage(storage, { graceSeconds: 3600, dryRun: true, now: later });
    assert.deepEqual(dry.removed.map((x) => x.key).sort(), [blobKey(strayDigest), `builds/${'f'.repeat(64)}.json`, 'staging/abandoned', `leases/${'e'.repeat(64)}`].sort());
    assert.deepEqual(await keys(storage, 'blobs'), blobsBefore);

    const real = await collectGarbage(storage, { graceSeconds: 3600, dryRun: false, now: later });
    assert.equal(real.removed.length, 4);
    const recordSize = encodeRecord({ digest: strayDigest, size: stray.length, diffId: strayDigest }).length;
    assert.equal(real.bytesFreed, stray.length + recordSize + 100 + 50);
    assert.equal(await storage.stat(blobKey(strayDigest)), null);
    for (const d of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
      assert.ok(await storage.stat(blobKey(d)), `kept ${d}`);
    }
    // Still served, by tag and by digest, without a build.
    const again = await fetch(`${r.url}/v2/shell/hello/manifests/latest`);
    assert.equal(again.status, 200);
    const digest = again.headers.get('docker-content-digest')!;
    await again.arrayBuffer();
    assert.equal((await fetch(`${r.url}/v2/shell/hello/manifests/${digest}`, { method: 'HEAD' })).status, 200);

    // Expiring manifest records frees the image's blobs too.
    const all = await collectGarbage(storage, { graceSeconds: 3600, dryRun: false, now: later, manifestMaxAgeSeconds: 60 });
    assert.ok(all.manifestsRemoved >= 1);
    assert.deepEqual(await keys(storage, 'blobs'), []);
  } finally {
    await r.close();
    await rm(storagePath, { recursive: true, force: true });
  }
});

test('nixery gc as a command: dry run, then the real run, and a clear error for a bad --grace', async () => {
  const { execFile } = await import('node:child_process');
  const { FilesystemStorage } = await import('../../src/storage/filesystem.js');
  const { utimes } = await import('node:fs/promises');
  const cli = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [path.resolve('dist/src/cli.js'), 'gc', ...args], (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
      });
    });
  const storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-gc-cli-'));
  try {
    const storage = new FilesystemStorage(storagePath);
    const stray = Buffer.from('stray blob');
    await storage.put(blobKey(sha256Digest(stray)), stray);
    const past = new Date(Date.now() - 2 * 3600_000);
    await utimes(path.join(storagePath, blobKey(sha256Digest(stray))), past, past);
    await storage.put('staging/young', 'still being written');

    const dry = await cli(['--storage-path', storagePath, '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(dry.stdout, `would remove ${blobKey(sha256Digest(stray))} (10 bytes)\nwould free 10 bytes in 1 objects; kept 0 manifests and 0 blobs\n`);
    assert.ok(await storage.stat(blobKey(sha256Digest(stray))));

    const real = await cli(['--storage-path', storagePath]);
    assert.equal(real.code, 0, real.stderr);
    assert.match(real.stdout, /^removing blobs\/sha256\/[0-9a-f]{64} \(10 bytes\)\nfreed 10 bytes in 1 objects; kept 0 manifests and 0 blobs\n$/);
    assert.equal(await storage.stat(blobKey(sha256Digest(stray))), null);
    assert.deepEqual(await keys(storage, 'staging'), ['staging/young'], 'the young upload stays; the run left no marker');

    const bad = await cli(['--storage-path', storagePath, '--grace', 'soon']);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, 'nixery: invalid --grace: must be a whole number of seconds\n');
  } finally {
    await rm(storagePath, { recursive: true, force: true });
  }
});
