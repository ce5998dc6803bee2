// The build-lease state machine (src/builder/build-lease.ts) on real storage: BuildLeases of
// separate "replicas" (each its own holder) on one filesystem storage, builds that are functions
// writing the image's record, s3rver for a server that ignores conditional writes, and Ceph RGW 16
// for one that honours them on PUT but not on DELETE. The e2e
// test (test/e2e/build-leases.test.ts) runs the same with real processes and Nix.

import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BuildLeases, leaseKey, type BuildLeaseSettings } from '../src/builder/build-lease.js';
import { manifestKey } from '../src/builder/layout.js';
import type { LeaseEvent } from '../src/builder/observer.js';
import { FilesystemStorage } from '../src/storage/filesystem.js';
import { S3Storage } from '../src/storage/s3.js';
import type { Storage } from '../src/storage/storage.js';
import { startS3Server, S3RVER_CREDENTIALS, type S3TestServer } from './storage/s3-server.js';
import { rgwUnavailable, startRgw, type RgwServer } from './helpers/rgw.js';

const rgwMissing = await rgwUnavailable();

// Renewals twenty times a period, and no fsync: a loaded machine (disk, CPU: the fast suite runs
// files side by side) does not make a live holder look dead.
const SETTINGS: BuildLeaseSettings = { periodMs: 2000, renewMs: 100, firstPollMs: 10, maxPollMs: 40 };

interface Replica {
  leases: BuildLeases;
  events: LeaseEvent[];
  warnings: string[];
}

function replica(storage: Storage, settings: BuildLeaseSettings = SETTINGS): Replica {
  const events: LeaseEvent[] = [];
  const warnings: string[] = [];
  const log = { info: () => {}, debug: () => {}, warn: (_: unknown, message?: string) => void warnings.push(String(message)) };
  return { leases: new BuildLeases(storage, settings, log, { buildLease: (e) => events.push(e) }), events, warnings };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** An image build: takes `ms`, then writes the record (as the builder does) and answers who built it. */
function builder(storage: Storage, key: string, name: string, ms: number, log: string[]): () => Promise<string> {
  return async () => {
    log.push(name);
    await sleep(ms);
    await storage.put(manifestKey(key), name);
    return `built by ${name}`;
  };
}

/** What a waiter serves: the record as it landed. */
function landed(storage: Storage, key: string): () => Promise<string | null> {
  return async () => {
    const record = await storage.read(manifestKey(key));
    return record ? `served ${record.toString()}` : null;
  };
}

describe('build leases', () => {
  let root: string;
  let storage: FilesystemStorage;
  let s3: S3TestServer;
  let rgw: RgwServer | undefined;
  let n = 0;
  const key = () => `image${++n}`;

  before(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'nixery-leases-'));
    storage = new FilesystemStorage(root, { fsync: false });
    s3 = await startS3Server();
  });
  after(async () => {
    await fs.rm(root, { recursive: true, force: true });
    await s3.stop();
    await rgw?.stop();
  });

  it('one replica builds; the others wait for the record and serve it; the lease is released', async () => {
    const k = key();
    const builds: string[] = [];
    const replicas = [replica(storage), replica(storage), replica(storage)];
    const answers = await Promise.all(replicas.map((r, i) => r.leases.once(k, builder(storage, k, `r${i}`, 200, builds), landed(storage, k))));
    assert.equal(builds.length, 1, `one build: ${builds}`);
    assert.deepEqual(answers.filter((a) => a.startsWith('built')), [`built by ${builds[0]}`]);
    assert.deepEqual(answers.filter((a) => a.startsWith('served')), [`served ${builds[0]}`, `served ${builds[0]}`]);
    assert.deepEqual(replicas.map((r) => r.events.join()).sort(), ['taken', 'waited', 'waited']);
    assert.equal(await storage.stat(leaseKey(k)), null);
  });

  it('the holder renews while it builds: a build longer than the lease period is not taken over', async () => {
    const k = key();
    const builds: string[] = [];
    const a = replica(storage);
    const b = replica(storage);
    const first = a.leases.once(k, builder(storage, k, 'a', 2 * SETTINGS.periodMs, builds), landed(storage, k));
    await sleep(50);
    const second = b.leases.once(k, builder(storage, k, 'b', 10, builds), landed(storage, k));
    assert.deepEqual(await Promise.all([first, second]), ['built by a', 'served a']);
    assert.deepEqual(builds, ['a']);
    assert.deepEqual(b.events, ['waited']);
  });

  it('a lease whose holder stopped renewing expires: one waiter takes it over and builds', async () => {
    const k = key();
    // A holder that died (SIGKILL) right after taking the lease.
    assert.ok(await storage.createIfAbsent(leaseKey(k), JSON.stringify({ holder: 'gone/1/x', write: 1 })));
    const builds: string[] = [];
    const replicas = [replica(storage), replica(storage), replica(storage)];
    const started = performance.now();
    const answers = await Promise.all(replicas.map((r, i) => r.leases.once(k, builder(storage, k, `r${i}`, 100, builds), landed(storage, k))));
    assert.ok(performance.now() - started >= SETTINGS.periodMs, 'not before the lease period passed');
    assert.equal(builds.length, 1, `one take-over: ${builds}`);
    assert.equal(answers.filter((a) => a.startsWith('served')).length, 2);
    const taker = replicas.find((r) => r.events.includes('expired'))!;
    assert.deepEqual(taker.events, ['waited', 'expired', 'taken']);
    assert.deepEqual(replicas.flatMap((r) => r.events).filter((e) => e === 'expired'), ['expired']);
    assert.match(taker.warnings.join('\n'), /a build lease expired/);
  });

  it('a build that fails releases the lease: a waiter then builds itself', async () => {
    const k = key();
    const a = replica(storage);
    const b = replica(storage);
    const failing = a.leases.once(
      k,
      async () => {
        await sleep(100);
        throw new Error('the build failed');
      },
      landed(storage, k),
    );
    await sleep(20);
    const builds: string[] = [];
    const waiting = b.leases.once(k, builder(storage, k, 'b', 10, builds), landed(storage, k));
    await assert.rejects(failing, /the build failed/);
    assert.equal(await waiting, 'built by b');
    assert.deepEqual(b.events, ['waited', 'taken']);
    // Released at once, not left to expire.
    assert.ok(!b.events.includes('expired'));
    assert.equal(await storage.stat(leaseKey(k)), null);
  });

  it('a record that landed before the lease was taken is served without building', async () => {
    const k = key();
    await storage.put(manifestKey(k), 'earlier');
    const builds: string[] = [];
    assert.equal(await replica(storage).leases.once(k, builder(storage, k, 'late', 10, builds), landed(storage, k)), 'served earlier');
    assert.deepEqual(builds, []);
  });

  it('a record that cannot be used (a blob lost) is rebuilt once: the others wait for the new record', async () => {
    const k = key();
    await storage.put(manifestKey(k), 'damaged');
    const usable = async () => {
      const record = (await storage.read(manifestKey(k)))?.toString();
      return record && record !== 'damaged' ? `served ${record}` : null;
    };
    const builds: string[] = [];
    const replicas = [replica(storage), replica(storage), replica(storage)];
    const answers = await Promise.all(replicas.map((r, i) => r.leases.once(k, builder(storage, k, `r${i}`, 200, builds), usable)));
    assert.equal(builds.length, 1, `one rebuild: ${builds}`);
    assert.equal(answers.filter((a) => a === `served ${builds[0]}`).length, 2);
  });

  it('leases off (period 0): every replica builds, and storage is not asked', async () => {
    const k = key();
    const builds: string[] = [];
    const off = { ...SETTINGS, periodMs: 0 };
    await Promise.all([replica(storage, off), replica(storage, off)].map((r, i) => r.leases.once(k, builder(storage, k, `r${i}`, 50, builds), landed(storage, k))));
    assert.equal(builds.length, 2);
    assert.equal(await storage.stat(leaseKey(k)), null);
  });

  it('a server that ignores conditional writes (s3rver): one warning, and every replica builds', async () => {
    const s = new S3Storage({ bucket: await s3.createBucket(), endpoint: s3.endpoint, forcePathStyle: true, credentials: S3RVER_CREDENTIALS });
    try {
      const k = key();
      const builds: string[] = [];
      const replicas = [replica(s), replica(s)];
      await Promise.all(replicas.map((r, i) => r.leases.once(k, builder(s, k, `r${i}`, 100, builds), landed(s, k))));
      await replicas[0]!.leases.once(key(), async () => 'again', async () => null);
      assert.equal(builds.length, 2);
      for (const r of replicas) {
        assert.deepEqual(r.events, []);
        assert.equal(r.warnings.filter((w) => /does not honour conditional writes/.test(w)).length, 1, r.warnings.join('\n'));
      }
    } finally {
      s.client.destroy();
    }
  });

  it('a server that honours conditions on PUT but not on DELETE (Ceph RGW 16): one build, the lease released by a conditional replace and taken over by the next build', async (t) => {
    if (rgwMissing) return t.skip(rgwMissing);
    rgw ??= await startRgw();
    const s = new S3Storage({ bucket: await rgw.createBucket(), endpoint: rgw.endpoint, forcePathStyle: true, credentials: rgw.credentials });
    try {
      const k = key();
      const builds: string[] = [];
      const replicas = [replica(s), replica(s), replica(s)];
      const answers = await Promise.all(replicas.map((r, i) => r.leases.once(k, builder(s, k, `r${i}`, 300, builds), landed(s, k))));
      assert.equal(builds.length, 1, `one build: ${builds.join(', ')}`);
      assert.deepEqual(answers.filter((a) => a.startsWith('served')).length, 2, answers.join(', '));
      const released = await s.readVersioned(leaseKey(k));
      assert.ok(released, 'the lease stays, as a released marker (no conditional delete to remove it safely)');
      assert.equal((JSON.parse(released.data.toString()) as { released?: boolean }).released, true);
      for (const r of replicas) assert.deepEqual(r.warnings, [], 'no warning: leases are on');
      // The next build of the image (its record gone, e.g. collected) takes the released lease over.
      await s.delete(manifestKey(k));
      const again: string[] = [];
      assert.equal(await replicas[1]!.leases.once(k, builder(s, k, 'again', 10, again), landed(s, k)), 'built by again');
      assert.deepEqual(again, ['again']);
      assert.equal((JSON.parse((await s.readVersioned(leaseKey(k)))!.data.toString()) as { released?: boolean }).released, true, 'released again');
    } finally {
      s.client.destroy();
    }
  });
});
