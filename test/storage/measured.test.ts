// The measuring storage decorator: the storage contract holds through it unchanged, and every
// operation is reported once, with its duration and what it threw.

import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { FilesystemStorage } from '../../src/storage/filesystem.js';
import { measuredStorage, type StorageOperation } from '../../src/storage/measured.js';
import { StorageObjectNotFoundError } from '../../src/storage/errors.js';
import { runStorageContract } from './contract.js';

async function tempRoot(): Promise<{ root: string; cleanup: () => Promise<void> }> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'nixery-measured-storage-'));
  return { root, cleanup: () => fs.rm(root, { recursive: true, force: true }) };
}

runStorageContract('filesystem, measured', async () => {
  const { root, cleanup } = await tempRoot();
  return { storage: measuredStorage(new FilesystemStorage(root), { operation: () => {} }), cleanup };
});

describe('measured storage', () => {
  it('reports each operation once, with its duration and its error', async () => {
    const { root, cleanup } = await tempRoot();
    try {
      const seen: Array<{ op: StorageOperation; seconds: number; error: unknown }> = [];
      const inner = new FilesystemStorage(root);
      const s = measuredStorage(inner, { operation: (op, seconds, error) => seen.push({ op, seconds, error }) });
      assert.equal(s.name, inner.name);
      // The filesystem backend has no signed URLs and does have temporary files: so does the wrapper.
      assert.equal(s.redirectUrl, undefined);
      assert.equal(typeof s.removeAbandonedTemporaries, 'function');

      await s.put('a/one', 'one');
      await s.put('a/two', 'two');
      assert.equal((await s.read('a/one'))?.toString(), 'one');
      assert.equal(await s.stat('a/missing'), null);
      const w = await s.writer('a/three');
      w.stream.end('three');
      await new Promise((resolve) => w.stream.once('finish', resolve));
      await w.commit();
      const opened = await s.open('a/three');
      opened?.stream.destroy();
      await assert.rejects(s.move('a/missing', 'a/elsewhere'), StorageObjectNotFoundError);
      const listed: string[] = [];
      for await (const info of s.list('a/')) {
        listed.push(info.key);
        break; // a caller that stops early still ends the operation
      }
      assert.deepEqual(listed, ['a/one']);
      await s.delete('a/two');

      assert.deepEqual(
        seen.map((e) => e.op),
        ['put', 'put', 'read', 'stat', 'writer', 'commit', 'open', 'move', 'list', 'delete'],
      );
      for (const e of seen) assert.ok(e.seconds >= 0 && e.seconds < 10, `${e.op}: ${e.seconds} s`);
      assert.deepEqual(
        seen.filter((e) => e.error !== undefined).map((e) => [e.op, (e.error as Error).constructor.name]),
        [['move', 'StorageObjectNotFoundError']],
      );
    } finally {
      await cleanup();
    }
  });
});
