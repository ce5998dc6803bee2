// The storage contract: what every backend must do, written once and run against each
// backend (filesystem, S3 against a real S3 server, GCS against a fake GCS server).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { NixeryError } from '../../src/errors.js';
import type { ObjectInfo, Storage } from '../../src/storage/storage.js';
import { conditionalWritesContract } from './conditional-contract.js';

export interface StorageFixture {
  storage: Storage;
  cleanup: () => Promise<void>;
}

export interface ContractOptions {
  /** Size of the streamed large object (default 20 MiB). */
  largeObjectBytes?: number;
  /**
   * Known defects of a stand-in test server that the real service does not have, each with
   * the reason. The affected assertions are reported as skipped, never silently passed.
   */
  serverDefects?: {
    /** Lists out of order: list order is not checked (everything else about list is). */
    unsortedList?: string;
    /** A PUT is not atomic: concurrent writers of one key may mix their bytes. */
    nonAtomicPut?: string;
    /** Conditions on writes (If-None-Match, If-Match) are ignored: the probe must say so. */
    noConditionalWrites?: string;
    /** Conditions on PUT hold, DELETE ignores If-Match: the probe must say `no-delete`. */
    noConditionalDelete?: string;
  };
}

/** Registers the contract tests; `makeStorage` gives each test a fresh, empty storage. */
export function runStorageContract(name: string, makeStorage: () => Promise<StorageFixture>, options: ContractOptions = {}): void {
  describe(`storage contract: ${name}`, () => {
    let fixture: StorageFixture | undefined;
    let s: Storage;
    beforeEach(async () => {
      fixture = await makeStorage();
      s = fixture.storage;
    });
    afterEach(async () => {
      await fixture?.cleanup();
      fixture = undefined;
    });

    it('put then read and get return the same bytes; a second put replaces the object', async () => {
      await s.put('blobs/sha256/aa', 'hello, storage');
      assert.equal((await s.read('blobs/sha256/aa'))?.toString(), 'hello, storage');
      assert.equal((await collect(await s.get('blobs/sha256/aa'))).toString(), 'hello, storage');
      const binary = Buffer.from([0, 1, 2, 255, 254, 0, 10, 13]);
      await s.put('blobs/sha256/aa', binary);
      assert.deepEqual(await s.read('blobs/sha256/aa'), binary);
      await s.put('empty', '');
      assert.deepEqual(await s.read('empty'), Buffer.alloc(0));
      assert.equal((await s.stat('empty'))?.size, 0);
    });

    it('stat reports size, content type and modification time', async () => {
      const before = Date.now();
      await s.put('manifests/m.json', '{"a":1}', { contentType: 'application/vnd.oci.image.manifest.v1+json' });
      const after = Date.now();
      const info = await s.stat('manifests/m.json');
      assert.ok(info);
      assert.equal(info.key, 'manifests/m.json');
      assert.equal(info.size, 7);
      assert.equal(info.contentType, 'application/vnd.oci.image.manifest.v1+json');
      // Object stores keep whole seconds; allow for that and for a little clock skew.
      assert.ok(info.modified >= before - 2000 && info.modified <= after + 2000, `modified ${info.modified} not in [${before}, ${after}]`);
      await s.put('untyped', 'x');
      const untyped = await s.stat('untyped');
      assert.ok(untyped);
      assert.ok(
        untyped.contentType === undefined || /^(application|binary)\/octet-stream$/.test(untyped.contentType),
        `an object stored without a type reports none or a generic one, got ${untyped.contentType}`,
      );
      // Replacing an object replaces its type too.
      await s.put('manifests/m.json', 'plain', { contentType: 'text/plain' });
      const replaced = await s.stat('manifests/m.json');
      assert.equal(replaced?.contentType, 'text/plain');
      assert.equal(replaced?.size, 5);
    });

    it('ranged reads return the first byte, the last byte and a middle slice', async () => {
      const data = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      await s.put('blobs/ranged', data);
      assert.deepEqual(await collect(await s.get('blobs/ranged', { start: 0, end: 0 })), data.subarray(0, 1));
      assert.deepEqual(await collect(await s.get('blobs/ranged', { start: 255, end: 255 })), data.subarray(255));
      assert.deepEqual(await collect(await s.get('blobs/ranged', { start: 10, end: 19 })), data.subarray(10, 20));
      assert.deepEqual(await collect(await s.get('blobs/ranged', { start: 0, end: 255 })), data);
      // An end past the object is clamped, as in HTTP.
      assert.deepEqual(await collect(await s.get('blobs/ranged', { start: 250, end: 10_000 })), data.subarray(250));
      await assert.rejects(s.get('blobs/ranged', { start: 256, end: 300 }), isKind('STORAGE_RANGE_INVALID'));
      await assert.rejects(s.get('blobs/ranged', { start: 5, end: 4 }), isKind('STORAGE_RANGE_INVALID'));
      assert.equal(await s.get('blobs/missing', { start: 0, end: 0 }), null);
    });

    it('open gives the bytes with the whole object info in one call; a rewrite is a new version', async () => {
      const data = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      await s.put('blobs/opened', data, { contentType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
      const whole = await s.open('blobs/opened');
      assert.ok(whole);
      assert.deepEqual(await collect(whole.stream), data);
      assert.equal(whole.info.size, 256);
      assert.equal(whole.info.contentType, 'application/vnd.oci.image.layer.v1.tar+gzip');
      assert.ok(whole.info.version, 'a version identifies what was read');
      assert.equal((await s.stat('blobs/opened'))?.version, whole.info.version, 'stat and open agree on the version');
      const part = await s.open('blobs/opened', { start: 10, end: 19 });
      assert.ok(part);
      assert.deepEqual(await collect(part.stream), data.subarray(10, 20));
      assert.equal(part.info.size, 256, 'a ranged open reports the whole size');
      assert.equal(part.info.version, whole.info.version);
      // Object stores keep whole seconds: make sure a rewrite cannot share the old timestamp.
      await new Promise((r) => setTimeout(r, 1100));
      await s.put('blobs/opened', Buffer.concat([data, data]));
      const rewritten = await s.stat('blobs/opened');
      assert.notEqual(rewritten?.version, whole.info.version);
      assert.equal(await s.open('blobs/missing'), null);
    });

    it('move renames an object with its content type, replacing the target', async () => {
      await s.put('staging/one', 'layer bytes', { contentType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
      await s.put('blobs/sha256/bb', 'old target');
      await s.move('staging/one', 'blobs/sha256/bb');
      assert.equal(await s.stat('staging/one'), null);
      assert.equal(await s.read('staging/one'), null);
      assert.equal((await s.read('blobs/sha256/bb'))?.toString(), 'layer bytes');
      const info = await s.stat('blobs/sha256/bb');
      assert.equal(info?.contentType, 'application/vnd.oci.image.layer.v1.tar+gzip');
      assert.equal(info?.size, 11);
      await s.move('blobs/sha256/bb', 'elsewhere/deeper/cc');
      assert.equal((await s.read('elsewhere/deeper/cc'))?.toString(), 'layer bytes');
      assert.deepEqual(await listKeys(s, ''), ['elsewhere/deeper/cc']);
      await assert.rejects(s.move('staging/missing', 'blobs/x'), isKind('STORAGE_OBJECT_NOT_FOUND'));
      assert.equal(await s.stat('blobs/x'), null);
    });

    it('list is recursive, sorted by code unit, filtered by prefix, and shows only committed objects', async (t) => {
      const unsorted = options.serverDefects?.unsortedList;
      if (unsorted !== undefined) t.diagnostic(`list order not checked: ${unsorted}`);
      const ordered = (xs: string[]) => (unsorted === undefined ? xs : [...xs].sort(byCodeUnit));
      const keys = async (st: Storage, prefix: string) => ordered(await listKeys(st, prefix));
      const all = ['A', 'a-c', 'a.x', 'a/b', 'a/b/c', 'a_z', 'blobs/sha256/01', 'blobs/sha256/0a', 'blobs/sha256/ff', 'builds/k.json', 'z'];
      // a/b and a/b/c cannot both exist on a filesystem; keep the set valid for every backend.
      const keysToPut = all.filter((k) => k !== 'a/b');
      for (const k of [...keysToPut].reverse()) await s.put(k, `content of ${k}`);
      const pending = await s.writer('blobs/sha256/pending');
      pending.stream.write('not yet');
      try {
        const listed: ObjectInfo[] = [];
        for await (const info of s.list('')) listed.push(info);
        assert.deepEqual(
          ordered(listed.map((i) => i.key)),
          [...keysToPut].sort(byCodeUnit),
        );
        for (const info of listed) {
          assert.equal(info.size, Buffer.byteLength(`content of ${info.key}`), `size of ${info.key}`);
          assert.ok(info.modified > 0);
        }
        assert.deepEqual(await keys(s, 'blobs/'), ['blobs/sha256/01', 'blobs/sha256/0a', 'blobs/sha256/ff']);
        assert.deepEqual(await keys(s, 'blobs/sha256/0'), ['blobs/sha256/01', 'blobs/sha256/0a']);
        assert.deepEqual(await keys(s, 'a'), ['a-c', 'a.x', 'a/b/c', 'a_z']);
        assert.deepEqual(await keys(s, 'a/'), ['a/b/c']);
        assert.deepEqual(await keys(s, 'nothing/here/'), []);
      } finally {
        await pending.abort();
      }
      assert.deepEqual(await keys(s, 'blobs/'), ['blobs/sha256/01', 'blobs/sha256/0a', 'blobs/sha256/ff']);
    });

    it('delete removes an object; deleting a missing key is not an error', async () => {
      await s.put('builds/x.json', '{}', { contentType: 'application/json' });
      await s.delete('builds/x.json');
      assert.equal(await s.stat('builds/x.json'), null);
      assert.equal(await s.read('builds/x.json'), null);
      assert.deepEqual(await listKeys(s, ''), []);
      await s.delete('builds/x.json');
      await s.delete('never/existed');
      // A new object under the deleted key has no trace of the old one.
      await s.put('builds/x.json', 'new');
      const info = await s.stat('builds/x.json');
      assert.equal(info?.size, 3);
      assert.notEqual(info?.contentType, 'application/json');
    });

    it('missing keys give null from get, read and stat', async () => {
      assert.equal(await s.get('blobs/sha256/nope'), null);
      assert.equal(await s.read('blobs/sha256/nope'), null);
      assert.equal(await s.stat('blobs/sha256/nope'), null);
      await s.put('dir/file', 'x');
      // A "directory" (a prefix of other keys) is not an object.
      assert.equal(await s.get('dir'), null);
      assert.equal(await s.read('dir'), null);
      assert.equal(await s.stat('dir'), null);
    });

    it('invalid keys are rejected with a clear error, and nothing is written', async () => {
      const bad = ['', '/etc/passwd', '../escape', 'a/../../b', 'a//b', 'a/', 'has space', 'a/./b', '.tmp/x', '.meta/x', 'ünïcode', 'a\\b', 'new\nline'];
      for (const key of bad) {
        await assert.rejects(s.put(key, 'x'), isInvalidKey(key), `put ${JSON.stringify(key)}`);
        await assert.rejects(s.writer(key), isInvalidKey(key), `writer ${JSON.stringify(key)}`);
        await assert.rejects(s.get(key), isInvalidKey(key), `get ${JSON.stringify(key)}`);
        await assert.rejects(s.read(key), isInvalidKey(key), `read ${JSON.stringify(key)}`);
        await assert.rejects(s.stat(key), isInvalidKey(key), `stat ${JSON.stringify(key)}`);
        await assert.rejects(s.delete(key), isInvalidKey(key), `delete ${JSON.stringify(key)}`);
        await assert.rejects(s.move(key, 'ok'), isInvalidKey(key), `move from ${JSON.stringify(key)}`);
      }
      await s.put('ok', 'x');
      await assert.rejects(s.move('ok', '../out'), isInvalidKey('../out'));
      await assert.rejects(drain(s.list('../')), isInvalidKey('..'));
      assert.deepEqual(await listKeys(s, ''), ['ok']);
    });

    it('two writers of the same key at once both succeed and leave one complete object', async (t) => {
      const size = 1024 * 1024 + 17;
      const a = Buffer.alloc(size, 'a');
      const b = Buffer.alloc(size + 5, 'b');
      const wa = await s.writer('blobs/race', { contentType: 'type/a' });
      const wb = await s.writer('blobs/race', { contentType: 'type/b' });
      // Interleave the two streams' chunks.
      const chunk = 64 * 1024;
      for (let off = 0; off < size + 5; off += chunk) {
        if (off < size) await write(wa.stream, a.subarray(off, Math.min(size, off + chunk)));
        await write(wb.stream, b.subarray(off, Math.min(size + 5, off + chunk)));
      }
      await Promise.all([wa.commit(), wb.commit()]);
      if (options.serverDefects?.nonAtomicPut !== undefined) {
        t.skip(`both writers committed; the result is not checked: ${options.serverDefects.nonAtomicPut}`);
        return;
      }
      const got = await s.read('blobs/race');
      const info = await s.stat('blobs/race');
      assert.ok(got && info);
      assert.ok(got.equals(a) || got.equals(b), 'the object is one of the two complete writes');
      assert.equal(info.size, got.length);
      assert.equal(info.contentType, got.equals(a) ? 'type/a' : 'type/b', 'the type belongs to the content');
      // Many whole-object puts at once.
      const bodies = Array.from({ length: 16 }, (_, i) => `body ${i} `.repeat(1000 + i));
      await Promise.all(bodies.map((body, i) => s.put('manifests/race.json', body, { contentType: `type/${i}` })));
      const final = (await s.read('manifests/race.json'))?.toString();
      const index = bodies.indexOf(final ?? '');
      assert.ok(index >= 0, 'one of the puts won whole');
      const finalInfo = await s.stat('manifests/race.json');
      assert.equal(finalInfo?.size, Buffer.byteLength(bodies[index]!));
      assert.equal(finalInfo?.contentType, `type/${index}`);
      assert.deepEqual((await listKeys(s, '')).sort(byCodeUnit), ['blobs/race', 'manifests/race.json']);
    });

    it('nothing is visible before commit, even when the stream has ended', async () => {
      const w = await s.writer('blobs/late', { contentType: 'type/late' });
      await pipeline(Readable.from([Buffer.from('all '), Buffer.from('the bytes')]), w.stream);
      assert.equal(await s.stat('blobs/late'), null);
      assert.equal(await s.read('blobs/late'), null);
      assert.deepEqual(await listKeys(s, ''), []);
      await w.commit();
      assert.equal((await s.read('blobs/late'))?.toString(), 'all the bytes');
      assert.equal((await s.stat('blobs/late'))?.contentType, 'type/late');
    });

    it('an aborted write leaves nothing visible and the previous object intact', async () => {
      await s.put('blobs/kept', 'previous');
      const w = await s.writer('blobs/kept');
      await write(w.stream, Buffer.alloc(100_000, 'x'));
      await w.abort();
      await w.abort(); // idempotent
      assert.equal((await s.read('blobs/kept'))?.toString(), 'previous');
      const fresh = await s.writer('blobs/fresh');
      await write(fresh.stream, Buffer.from('half'));
      await fresh.abort();
      assert.equal(await s.stat('blobs/fresh'), null);
      assert.deepEqual(await listKeys(s, ''), ['blobs/kept']);
    });

    it('a write whose source fails mid-way leaves nothing visible', async () => {
      await s.put('blobs/kept', 'previous', { contentType: 'type/prev' });
      for (const target of ['blobs/kept', 'blobs/broken']) {
        const w = await s.writer(target, { contentType: 'type/new' });
        const failing = Readable.from(
          (async function* () {
            yield Buffer.alloc(256 * 1024, 'y');
            yield Buffer.alloc(256 * 1024, 'z');
            throw new Error('source died');
          })(),
        );
        await assert.rejects(pipeline(failing, w.stream), /source died/);
        // commit after a failed stream must refuse; abort must then be harmless.
        await assert.rejects(w.commit());
        await w.abort();
      }
      assert.equal((await s.read('blobs/kept'))?.toString(), 'previous');
      assert.equal((await s.stat('blobs/kept'))?.contentType, 'type/prev');
      assert.equal(await s.stat('blobs/broken'), null);
      assert.deepEqual(await listKeys(s, ''), ['blobs/kept']);
    });

    it('a redirect URL, where the backend gives one, serves the object: GET with its type, Range, HEAD', async (t) => {
      const data = Buffer.from('layer bytes, fetched straight from the bucket');
      await s.put('blobs/sha256/feed', data, { contentType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
      if (!s.redirectUrl) return t.skip(`${name} serves blobs itself (no redirect URLs)`);
      const url = await s.redirectUrl('blobs/sha256/feed', { method: 'GET' });
      assert.ok(url, 'a backend with redirect URLs (and redirects on) gives one');
      const res = await fetch(url);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'application/vnd.oci.image.layer.v1.tar+gzip');
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), data);
      const ranged = await fetch(url, { headers: { Range: 'bytes=0-4' } });
      assert.equal(ranged.status, 206);
      assert.equal(await ranged.text(), 'layer');
      const head = await fetch((await s.redirectUrl('blobs/sha256/feed', { method: 'HEAD' }))!, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), String(data.length));
    });

    it('a large object is streamed in and out intact', async () => {
      const total = options.largeObjectBytes ?? 20 * 1024 * 1024;
      const chunk = 256 * 1024;
      const inHash = createHash('sha256');
      let produced = 0;
      const source = new Readable({
        read() {
          if (produced >= total) return this.push(null);
          const n = Math.min(chunk, total - produced);
          const buf = Buffer.alloc(n);
          // Cheap, position-dependent content so misplaced chunks are caught.
          for (let i = 0; i < n; i += 4096) buf.writeUInt32BE((produced + i) >>> 0, i);
          produced += n;
          inHash.update(buf);
          this.push(buf);
        },
      });
      const w = await s.writer('blobs/large', { contentType: 'application/octet-stream' });
      await pipeline(source, w.stream);
      await w.commit();
      const info = await s.stat('blobs/large');
      assert.equal(info?.size, total);
      const outHash = createHash('sha256');
      let read = 0;
      await pipeline(
        (await s.get('blobs/large'))!,
        new Writable({
          write(c: Buffer, _e, cb) {
            read += c.length;
            outHash.update(c);
            cb();
          },
        }),
      );
      assert.equal(read, total);
      assert.equal(outHash.digest('hex'), inHash.digest('hex'));
      const tail = await collect(await s.get('blobs/large', { start: total - 4096, end: total - 1 }));
      assert.equal(tail.length, 4096);
      assert.equal(tail.readUInt32BE(0), (total - 4096) >>> 0);
    });

    conditionalWritesContract(() => s, options.serverDefects);
  });
}

export async function collect(stream: NodeJS.ReadableStream | null): Promise<Buffer> {
  assert.ok(stream, 'expected a stream, got null');
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
  return Buffer.concat(chunks);
}

const byCodeUnit = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

async function listKeys(s: Storage, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const info of s.list(prefix)) out.push(info.key);
  return out;
}

async function drain(it: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of it) {
    // consume
  }
}

function write(stream: NodeJS.WritableStream, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(data, (err) => (err ? reject(err) : resolve()));
  });
}

function isKind(kind: string) {
  return (err: unknown) => {
    assert.ok(err instanceof NixeryError, `expected a NixeryError, got ${String(err)}`);
    assert.equal(err.kind, kind, `expected kind ${kind}, got ${err.kind}: ${err.message}`);
    return true;
  };
}

function isInvalidKey(key: string) {
  return (err: unknown) => {
    assert.ok(err instanceof Error && err.name === 'InvalidStorageKeyError', `expected InvalidStorageKeyError for ${JSON.stringify(key)}, got ${String(err)}`);
    assert.match(err.message, /invalid storage key/);
    return true;
  };
}
