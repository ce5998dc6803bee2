// The periodic clean-up: temporary files of writers that are gone and runtime directories of
// registries that are gone are removed at start and then every interval; a live process's
// files (including a write in progress) are kept.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startCleanup } from '../src/cleanup.js';
import { cleanupIntervalMs, DEFAULT_CLEANUP_INTERVAL_MS } from '../src/config.js';
import { FilesystemStorage } from '../src/storage/filesystem.js';
import { currentOwner, formatOwner, ownedName, ownerOfName, type Owner } from '../src/util/owner.js';
import { readProcStat } from '../src/util/proc.js';
import { waitFor } from './helpers/slow-pkgs.js';

async function goneOwner(): Promise<Owner> {
  const child = spawn('sleep', ['0.1'], { stdio: 'ignore' });
  const owner = { ...currentOwner(), pid: child.pid!, startTime: readProcStat(child.pid!)!.startTime };
  await new Promise((r) => child.once('exit', r));
  return owner;
}

const quiet = { info: () => {}, warn: (obj: object, msg?: string) => assert.fail(`${msg} ${JSON.stringify(obj)}`) };

test('the interval: NIXERY_CLEANUP_INTERVAL_MS overrides the default of a few minutes', () => {
  assert.equal(cleanupIntervalMs({}), DEFAULT_CLEANUP_INTERVAL_MS);
  assert.ok(DEFAULT_CLEANUP_INTERVAL_MS >= 60_000 && DEFAULT_CLEANUP_INTERVAL_MS <= 10 * 60_000);
  assert.equal(cleanupIntervalMs({ NIXERY_CLEANUP_INTERVAL_MS: '250' }), 250);
  assert.equal(cleanupIntervalMs({ NIXERY_CLEANUP_INTERVAL_MS: 'soon' }), DEFAULT_CLEANUP_INTERVAL_MS);
});

test('temporary files are named after their writer and gone when the write ends', async () => {
  const root = await mkdtemp(path.join(tmpdir(), 'nixery-cleanup-test-'));
  try {
    const storage = new FilesystemStorage(root);
    const writer = await storage.writer('blobs/a');
    writer.stream.write('partial');
    const [name] = await waitFor('the temporary file', async () => {
      const names = await readdir(path.join(root, '.tmp'));
      return names.length > 0 ? names : undefined;
    });
    assert.deepEqual(ownerOfName(name!), currentOwner());
    await writer.commit();
    assert.deepEqual(await readdir(path.join(root, '.tmp')), []);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('at start and every interval: what gone processes left is removed, a live writer keeps its files', async () => {
  const root = await mkdtemp(path.join(tmpdir(), 'nixery-cleanup-test-'));
  const base = await mkdtemp(path.join(tmpdir(), 'nixery-cleanup-base-'));
  const storage = new FilesystemStorage(root);
  const tmp = path.join(root, '.tmp');
  await mkdir(tmp, { recursive: true });
  const before = ownedName('left-at-start', await goneOwner());
  await writeFile(path.join(tmp, before), 'x');
  const cleanup = startCleanup({ storage, log: quiet, intervalMs: 100, runtimeBase: base });
  try {
    const first = await cleanup.first;
    assert.equal(first.temporaryFiles, 1);
    assert.equal(existsSync(path.join(tmp, before)), false);

    // A write in progress of this (live) process, and leftovers of processes that die later.
    const writer = await storage.writer('blobs/b');
    writer.stream.write('in progress');
    const mine = await waitFor('the temporary file', async () => {
      const names = await readdir(tmp);
      return names.length > 0 ? names : undefined;
    });
    assert.equal(mine.length, 1);
    const gone = await goneOwner();
    const later = [ownedName('left-later', gone), ownedName('left-later.meta', gone)];
    for (const name of later) await writeFile(path.join(tmp, name), 'x');
    const runDir = path.join(base, `nixery-run-${formatOwner(gone)}`);
    await mkdir(path.join(runDir, 'gcroots-abc'), { recursive: true });

    await waitFor('the next runs to remove the leftovers', async () => {
      const names = await readdir(tmp);
      return later.every((n) => !names.includes(n)) && !existsSync(runDir);
    }, 3000, 50);
    // Several more runs go by: the live write is untouched and commits.
    await new Promise((r) => setTimeout(r, 350));
    assert.deepEqual(await readdir(tmp), mine);
    await writer.commit();
    assert.equal((await storage.read('blobs/b'))!.toString(), 'in progress');
  } finally {
    cleanup.stop();
    await rm(root, { recursive: true, force: true });
    await rm(base, { recursive: true, force: true });
  }
});
