// Blob streams from a real filesystem store through the blob policy, in process: later reads of
// a digest are checked against the tag of the bytes its first read hashed to the digest, and a
// stream whose bytes fail never yields its last chunk (the client is left short); file reads go
// into pooled buffers that are used again only once sent.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { open, mkdtemp, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FilesystemStorage } from '../../src/storage/filesystem.js';
import { blobKey } from '../../src/builder/layout.js';
import { Quarantine } from '../../src/builder/integrity.js';
import { BlobPolicy, DamagedBlob, type BlobBody, type BlobVerification } from '../../src/service/blob-policy.js';
import { storageBody } from '../../src/service/blob-stream.js';
import { PassThrough } from 'node:stream';
import { ReadChecks } from '../../src/service/blob-check.js';
import { BufferPool, positionalReads } from '../../src/service/blob-bytes.js';

const MB = 1024 * 1024;
const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const quiet = { warn: () => {} };

/** Flips one byte of a stored blob in place. */
async function flip(storagePath: string, digest: string, at: number): Promise<void> {
  const fh = await open(path.join(storagePath, blobKey(digest)), 'r+');
  try {
    const one = Buffer.alloc(1);
    await fh.read(one, 0, 1, at);
    one[0] = one[0]! ^ 0x10;
    await fh.write(one, 0, 1, at);
  } finally {
    await fh.close();
  }
}

/** Reads a body as the sender does (giving chunks back once "sent"): the bytes, and whether it completed. */
async function drain(body: BlobBody): Promise<{ bytes: Buffer; complete: boolean; damaged: boolean }> {
  const parts: Buffer[] = [];
  try {
    if (body.bytes) parts.push(Buffer.from(body.bytes));
    else
      for await (const chunk of body.chunks!) {
        // A copy is what reached the client; the buffer goes back to the pool as after a write.
        parts.push(Buffer.from(chunk));
        body.sent?.(chunk);
      }
    return { bytes: Buffer.concat(parts), complete: true, damaged: false };
  } catch (err) {
    if (!(err instanceof DamagedBlob)) throw err;
    return { bytes: Buffer.concat(parts), complete: false, damaged: true };
  } finally {
    body.release();
  }
}

describe('read checks', () => {
  test('the first read is hashed; later reads are checked against its tag, however they are cut', () => {
    const checks = new ReadChecks(true);
    const bytes = randomBytes(3 * MB + 17);
    const digest = sha256(bytes);
    const first = checks.start(digest);
    assert.equal(first.kind, 'sha256');
    first.update(bytes);
    assert.equal(first.passed(), true);
    for (const cuts of [[bytes.length], [1, 15, 16, 65_537, 2 * MB], [MB, MB, MB, 17]]) {
      const check = checks.start(digest);
      assert.equal(check.kind, 'tag');
      let at = 0;
      for (const n of cuts) {
        check.update(bytes.subarray(at, at + n));
        at += n;
      }
      check.update(bytes.subarray(at));
      assert.equal(check.passed(), true, `cut at ${cuts.join(', ')}`);
    }
  });

  test('a flipped bit anywhere, a missing or an extra byte fails the tag', () => {
    const checks = new ReadChecks(true);
    const bytes = randomBytes(MB);
    const digest = sha256(bytes);
    assert.equal(checks.matches(digest, bytes), true);
    for (const at of [0, 1, 4095, MB / 2, MB - 1]) {
      const bad = Buffer.from(bytes);
      bad[at] = bad[at]! ^ 0x01;
      assert.equal(checks.matches(digest, bad), false, `bit flipped at ${at}`);
    }
    assert.equal(checks.matches(digest, bytes.subarray(0, MB - 1)), false, 'one byte short');
    assert.equal(checks.matches(digest, Buffer.concat([bytes, Buffer.alloc(1)])), false, 'one byte more');
    assert.equal(checks.matches(digest, bytes), true);
  });

  test('bad bytes on the first read leave no tag: the next read is hashed again', () => {
    const checks = new ReadChecks(true);
    const bytes = randomBytes(64 * 1024);
    const digest = sha256(bytes);
    const bad = Buffer.from(bytes);
    bad[5] = bad[5]! ^ 0xff;
    assert.equal(checks.matches(digest, bad), false);
    assert.equal(checks.tagged(digest), false);
    assert.equal(checks.matches(digest, bad), false, 'still hashed, still wrong');
    assert.equal(checks.matches(digest, bytes), true);
    assert.equal(checks.tagged(digest), true);
  });

  test('`always` hashes every read and keeps no tags', () => {
    const checks = new ReadChecks(false);
    const bytes = randomBytes(1000);
    const digest = sha256(bytes);
    assert.equal(checks.matches(digest, bytes), true);
    assert.equal(checks.tagged(digest), false);
    assert.equal(checks.start(digest).kind, 'sha256');
  });

  test('tags are made with a key of their own per process: another instance knows none of them', () => {
    const a = new ReadChecks(true);
    const bytes = randomBytes(1000);
    const digest = sha256(bytes);
    a.matches(digest, bytes);
    assert.equal(a.tagged(digest), true);
    assert.equal(new ReadChecks(true).tagged(digest), false);
  });
});

describe('positional reads into pooled buffers', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-posreads-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('read a range exactly, reusing given-back buffers, and stop short when the file does', async () => {
    const storage = new FilesystemStorage(dir);
    const bytes = randomBytes(5 * MB + 3);
    await storage.put('blobs/x', bytes);
    const pool = new BufferPool(MB, 4);
    const opened = (await storage.open('blobs/x'))!;
    const read = opened.read!;
    const seen = new Set<ArrayBufferLike>();
    const parts: Buffer[] = [];
    for await (const chunk of positionalReads(read, 100, 4 * MB, pool)) {
      parts.push(Buffer.from(chunk));
      seen.add(chunk.buffer);
      pool.give(chunk);
    }
    assert.deepEqual(Buffer.concat(parts), bytes.subarray(100, 100 + 4 * MB));
    // One read ahead: at most three buffers in turn, not one per chunk.
    assert.ok(seen.size <= 3, `${seen.size} buffers for 4 chunks`);
    // The file is cut while it is open: the reads end where it ends.
    await truncate(path.join(dir, 'blobs/x'), 2 * MB + 5);
    const short: Buffer[] = [];
    for await (const chunk of positionalReads(read, 0, bytes.length, pool)) short.push(Buffer.from(chunk));
    assert.deepEqual(Buffer.concat(short), bytes.subarray(0, 2 * MB + 5));
    opened.stream.destroy();
  });
});

describe('a blob that rots after it was read and checked', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-blobstream-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const size = 20 * MB + 12_345;
  for (const verify of ['once', 'always'] as BlobVerification[]) {
    for (const [where, at] of [
      ['its first byte', 0],
      ['its middle', size / 2],
      ['its last chunk', size - 10],
    ] as const) {
      test(`verify=${verify}, a byte of ${where} flipped: the stream never yields its last chunk`, async () => {
        const storagePath = path.join(dir, `${verify}-${at}`);
        const storage = new FilesystemStorage(storagePath);
        const bytes = randomBytes(size);
        const digest = sha256(bytes);
        await storage.put(blobKey(digest), bytes);
        const policy = new BlobPolicy({ storage, quarantine: new Quarantine(storage, quiet), redirects: false, redirectTtlMs: 60_000, hotCacheBytes: 0, sendBufferBytes: 64 * MB, verify });
        // Two good reads: the first hashed, the second checked against the tag (with `once`).
        for (let i = 0; i < 2; i++) {
          const good = await drain(await policy.open(digest, undefined));
          assert.equal(good.complete, true);
          assert.equal(sha256(good.bytes), digest);
        }
        await flip(storagePath, digest, Math.floor(at));
        const rotten = await drain(await policy.open(digest, undefined));
        assert.equal(rotten.damaged, true, 'the damage was noticed');
        assert.ok(rotten.bytes.length < size, `${rotten.bytes.length} of ${size} bytes came out`);
        // Quarantined: the next request learns it is gone.
        await assert.rejects(policy.open(digest, undefined), (err: Error) => err.name !== 'DamagedBlob' && /blob unknown|BLOB_UNKNOWN/i.test(`${err.message} ${(err as { kind?: string }).kind}`));
      });
    }
  }

  test('a small blob read whole (no hot cache) is checked by its tag on later reads, too', async () => {
    const storagePath = path.join(dir, 'small');
    const storage = new FilesystemStorage(storagePath);
    const bytes = randomBytes(2 * MB);
    const digest = sha256(bytes);
    await storage.put(blobKey(digest), bytes);
    const policy = new BlobPolicy({ storage, quarantine: new Quarantine(storage, quiet), redirects: false, redirectTtlMs: 60_000, hotCacheBytes: 0, sendBufferBytes: 64 * MB });
    for (let i = 0; i < 2; i++) assert.equal(sha256((await drain(await policy.open(digest, undefined))).bytes), digest);
    await flip(storagePath, digest, MB);
    await assert.rejects(policy.open(digest, undefined));
  });
});

describe('which chunk a stream holds back', () => {
  /** A body over a stream the test feeds by hand, checked against `bytes`' digest. */
  function fedBody(bytes: Buffer): { feed: PassThrough; body: BlobBody; damaged: string[] } {
    const feed = new PassThrough();
    const damaged: string[] = [];
    const body = storageBody({ stream: feed, info: { key: 'blobs/x', size: bytes.length, modified: 0, version: 'v' } }, undefined, {
      check: new ReadChecks(true).start(sha256(bytes)),
      pool: new BufferPool(MB, 1),
      window: MB,
      damaged: async (why) => void damaged.push(why),
      damagedMessage: 'damaged',
      passed: () => {},
      release: () => {},
    });
    return { feed, body, damaged };
  }

  test('each chunk before the last goes out once checked, before the next one is read; the last waits for the check', async () => {
    const bytes = randomBytes(3000);
    const { feed, body, damaged } = fedBody(bytes);
    const chunks = body.chunks![Symbol.asyncIterator]();
    feed.write(bytes.subarray(0, 1000));
    // Nothing more is fed: the first chunk must come out anyway.
    assert.deepEqual((await chunks.next()).value, bytes.subarray(0, 1000));
    feed.write(bytes.subarray(1000, 2000));
    assert.deepEqual((await chunks.next()).value, bytes.subarray(1000, 2000));
    // The chunk that completes the length comes out only after the stream ends and the check passes.
    let last: IteratorResult<Buffer> | undefined;
    const pending = chunks.next().then((r) => (last = r));
    feed.write(bytes.subarray(2000));
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(last, undefined, 'held back while the stream has not ended');
    feed.end();
    await pending;
    assert.deepEqual(last!.value, bytes.subarray(2000));
    assert.equal((await chunks.next()).done, true);
    assert.deepEqual(damaged, []);
  });

  test('a stream longer than its length is damaged, and the chunk that completed the length never comes out', async () => {
    const bytes = randomBytes(2000);
    const { feed, body, damaged } = fedBody(bytes);
    feed.write(bytes.subarray(0, 1000));
    feed.write(bytes.subarray(1000));
    feed.end(Buffer.from('x'));
    const out: Buffer[] = [];
    await assert.rejects(async () => {
      for await (const chunk of body.chunks!) out.push(Buffer.from(chunk));
    }, DamagedBlob);
    assert.ok(Buffer.concat(out).length < bytes.length, `${Buffer.concat(out).length} bytes came out`);
    assert.equal(damaged.length, 1);
  });
});
