// The filesystem backend: the shared contract, plus what only a directory tree can show
// (temporary files, sidecars, leftovers of a crash).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, logDetail } from '../../src/errors.js';
import { FilesystemStorage } from '../../src/storage/filesystem.js';
import { createStorage } from '../../src/storage/index.js';
import { measuredStorage } from '../../src/storage/measured.js';
import { storageSettings } from '../../src/config.js';
import { UNJUDGED_MAX_AGE_MS, currentOwner, ownedName } from '../../src/util/owner.js';
import { readProcStat } from '../../src/util/proc.js';
import { runStorageContract } from './contract.js';

async function tempRoot(): Promise<{ root: string; cleanup: () => Promise<void> }> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'nixery-fs-storage-'));
  return { root, cleanup: () => fs.rm(root, { recursive: true, force: true }) };
}

/** Runs `fn` with a fresh directory, removed afterwards whatever happens. */
async function inTempRoot(fn: (root: string) => Promise<void>): Promise<void> {
  const { root, cleanup } = await tempRoot();
  try {
    await fn(root);
  } finally {
    await cleanup();
  }
}

runStorageContract('filesystem', async () => {
  const { root, cleanup } = await tempRoot();
  return { storage: new FilesystemStorage(root), cleanup };
});

/** Every file under `dir`, relative, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(path.relative(dir, path.join(e.parentPath ?? e.path, e.name)));
  }
  return out.sort();
}

describe('filesystem storage', () => {
  it('stores objects as plain files under their keys, and leaves no temporary files behind', async () => {
    await inTempRoot(async (root) => {
      const s = new FilesystemStorage(root);
      await s.put('blobs/sha256/ab', 'data', { contentType: 'application/x-test' });
      const w = await s.writer('blobs/sha256/cd');
      w.stream.write('partial');
      await w.abort();
      const failed = await s.writer('blobs/sha256/ef');
      failed.stream.destroy(new Error('boom'));
      await assert.rejects(failed.commit(), (err: Error) => /boom/.test(logDetail(err)));
      assert.equal(await fs.readFile(path.join(root, 'blobs/sha256/ab'), 'utf8'), 'data');
      assert.deepEqual(await fs.readdir(path.join(root, '.tmp')), []);
      assert.deepEqual(await filesUnder(root), ['.meta/blobs/sha256/ab', 'blobs/sha256/ab']);
    });
  });

  it('a writer destroyed by its producer removes its temporary file without abort being called', async () => {
    await inTempRoot(async (root) => {
      const s = new FilesystemStorage(root);
      const w = await s.writer('blobs/x');
      await new Promise<void>((resolve) => w.stream.write('bytes', () => resolve()));
      w.stream.destroy(new Error('producer failed'));
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(await fs.readdir(path.join(root, '.tmp')), []);
    });
  });

  it('reports the content type as unknown, never wrong, when the data no longer matches its sidecar', async () => {
    await inTempRoot(async (root) => {
      const s = new FilesystemStorage(root);
      await s.put('blobs/typed', 'original', { contentType: 'application/x-original' });
      assert.equal((await s.stat('blobs/typed'))?.contentType, 'application/x-original');
      // As if a crash happened between the sidecar and the data renames of a newer write.
      await fs.writeFile(path.join(root, 'blobs/typed'), 'replaced by something else');
      const info = await s.stat('blobs/typed');
      assert.equal(info?.size, 26);
      assert.equal(info?.contentType, undefined);
    });
  });

  it('at start removes the temporary files of a gone writer at once, unjudgeable ones once old, never a live one', async () => {
    await inTempRoot(async (root) => {
      await fs.mkdir(path.join(root, '.tmp'), { recursive: true });
      const exited = spawn('true');
      const gone = { ...currentOwner(), pid: exited.pid!, startTime: readProcStat(exited.pid!)?.startTime ?? 1 };
      await new Promise((r) => exited.once('exit', r));
      const old = new Date(Date.now() - UNJUDGED_MAX_AGE_MS - 3600_000);
      const files: Array<[string, Date | null, boolean]> = [
        [ownedName('of-a-crashed-writer', gone), null, false],
        [ownedName('mine, very old'), old, true],
        ['unparsable-fresh', null, true],
        ['unparsable-old', old, false],
        [ownedName('other-host-fresh', { ...gone, host: 'elsewhere' }), null, true],
        [ownedName('other-host-old', { ...gone, host: 'elsewhere' }), old, false],
      ];
      for (const [name, mtime] of files) {
        await fs.writeFile(path.join(root, '.tmp', name), 'x');
        if (mtime) await fs.utimes(path.join(root, '.tmp', name), mtime, mtime);
      }
      const s = new FilesystemStorage(root);
      await s.put('k', 'v');
      const kept = files.filter(([, , keep]) => keep).map(([name]) => name);
      assert.deepEqual((await fs.readdir(path.join(root, '.tmp'))).sort(), kept.sort());
    });
  });

  it('createIfAbsent: of writers racing on one key (two instances on one directory) exactly one wins, and the object is whole', async () => {
    await inTempRoot(async (root) => {
      const a = new FilesystemStorage(root);
      const b = measuredStorage(new FilesystemStorage(root), { operation: () => {} });
      const bodies = Array.from({ length: 8 }, (_, i) => `writer ${i} `.repeat(10_000));
      const won = await Promise.all(bodies.map((body, i) => (i % 2 ? b : a).createIfAbsent('signatures/k.json', body)));
      assert.equal(won.filter(Boolean).length, 1);
      assert.equal((await a.read('signatures/k.json'))!.toString(), bodies[won.findIndex(Boolean)]);
      assert.equal(await a.createIfAbsent('signatures/k.json', 'later'), null);
      assert.equal((await b.read('signatures/k.json'))!.toString(), bodies[won.findIndex(Boolean)]);
      assert.deepEqual(await fs.readdir(path.join(root, '.tmp')), []);
    });
  });

  it('a key that collides with a directory fails with a storage error naming the key', async () => {
    await inTempRoot(async (root) => {
      const s = new FilesystemStorage(root);
      await s.put('a/b', 'x');
      await assert.rejects(s.put('a', 'y'), (err: Error) => /filesystem .*put a failed/.test(logDetail(err)));
      await assert.rejects(s.put('a/b/c', 'y'), (err: Error) => /put a\/b\/c failed/.test(logDetail(err)));
      assert.deepEqual(await fs.readdir(path.join(root, '.tmp')), []);
    });
  });
});

describe('createStorage', () => {
  it('builds the filesystem backend by default from STORAGE_PATH', async () => {
    await inTempRoot(async (root) => {
      const s = await createStorage(storageSettings({}, { STORAGE_PATH: root }));
      assert.ok(s instanceof FilesystemStorage);
      assert.equal(s.name, `filesystem (${root})`);
      const fromConfig = await createStorage(storageSettings({ storageBackend: 'filesystem', storagePath: root }, {}));
      assert.ok(fromConfig instanceof FilesystemStorage);
    });
  });

  it('creates STORAGE_PATH, and refuses one that cannot be a writable directory', async () => {
    await inTempRoot(async (root) => {
      const nested = path.join(root, 'new', 'store');
      await createStorage(storageSettings({ storagePath: nested }, {}));
      assert.ok((await fs.stat(nested)).isDirectory());
      const file = path.join(root, 'a-file');
      await fs.writeFile(file, '');
      await assert.rejects(
        createStorage(storageSettings({ storagePath: path.join(file, 'below') }, {})),
        (err: Error) => err instanceof ConfigError && err.message === `invalid STORAGE_PATH: ${path.join(file, 'below')} is not a writable directory (ENOTDIR)`,
      );
    });
  });

  it('stops with one clear ConfigError line for a missing path or an unknown backend', async () => {
    await assert.rejects(async () => createStorage(storageSettings({ storageBackend: 'filesystem' }, {})), (err: Error) => err instanceof ConfigError && /STORAGE_PATH/.test(err.message));
    await assert.rejects(
      async () => createStorage(storageSettings({}, { NIXERY_STORAGE_BACKEND: 'ftp' })),
      (err: Error) => err instanceof ConfigError && err.message === 'invalid NIXERY_STORAGE_BACKEND: must be one of filesystem, s3, gcs, got "ftp"',
    );
  });
});
