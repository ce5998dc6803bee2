// The storage contract for conditional writes (build leases): registered inside
// runStorageContract (contract.ts), so every backend runs it. A test server that ignores the
// conditions (s3rver) says so with `noConditionalWrites`, one that honours them on PUT but not on
// DELETE (Ceph RGW 16) with `noConditionalDelete`: the probe must then report which (leases are
// off, or released by a conditional replace), and the assertions that cannot hold are skipped
// with the reason, never passed silently.

import assert from 'node:assert/strict';
import { it } from 'node:test';
import { conditionalWriteSupport } from '../../src/storage/probe.js';
import type { Storage } from '../../src/storage/storage.js';

export interface ConditionalDefects {
  /** Conditions on writes (If-None-Match, If-Match) are ignored altogether. */
  noConditionalWrites?: string;
  /** Conditions on PUT hold, but DELETE ignores If-Match: the probe must say so (`no-delete`). */
  noConditionalDelete?: string;
}

export function conditionalWritesContract(storage: () => Storage, defects: ConditionalDefects = {}): void {
  const { noConditionalWrites, noConditionalDelete } = defects;
  const support = noConditionalWrites !== undefined ? 'none' : noConditionalDelete !== undefined ? 'no-delete' : 'all';
  it(`the conditional-write probe reports which are honoured (${support}), and leaves nothing behind`, async () => {
    const s = storage();
    assert.equal(await conditionalWriteSupport(s), support);
    const left = [];
    for await (const o of s.list('probes/')) left.push(o.key);
    assert.deepEqual(left, []);
  });

  it('createIfAbsent creates once; readVersioned gives the bytes and the version it made', async (t) => {
    if (noConditionalWrites !== undefined) return t.skip(noConditionalWrites);
    const s = storage();
    const first = await s.createIfAbsent('leases/a', 'one');
    assert.ok(first, 'the first create succeeds');
    assert.equal(await s.createIfAbsent('leases/a', 'two'), null, 'the second finds the object there');
    assert.deepEqual(await s.readVersioned('leases/a'), { data: Buffer.from('one'), version: first });
    assert.equal(await s.readVersioned('leases/missing'), null);
    // Any object has a version to compare against, however it was written.
    await s.put('leases/b', 'put');
    assert.equal(await s.createIfAbsent('leases/b', 'x'), null);
    const b = await s.readVersioned('leases/b');
    assert.equal(b?.data.toString(), 'put');
    assert.ok(await s.replaceIfVersion('leases/b', 'replaced', b!.version));
  });

  it('replaceIfVersion acts only on the version named', async (t) => {
    if (noConditionalWrites !== undefined) return t.skip(noConditionalWrites);
    const s = storage();
    const v1 = (await s.createIfAbsent('leases/r', 'v1'))!;
    const v2 = await s.replaceIfVersion('leases/r', 'v2', v1);
    assert.ok(v2 && v2 !== v1, 'a replace gives a new version');
    assert.equal(await s.replaceIfVersion('leases/r', 'stale', v1), null, 'a replace of an old version fails');
    assert.deepEqual(await s.readVersioned('leases/r'), { data: Buffer.from('v2'), version: v2 });
    const v3 = await s.replaceIfVersion('leases/r', 'v3', v2);
    assert.ok(v3 && v3 !== v2, 'the current version can be replaced again');
    assert.equal(await s.replaceIfVersion('leases/missing', 'x', v3), null, 'a replace of a missing object fails');
    assert.equal(await s.stat('leases/missing'), null, 'a failed replace creates nothing');
  });

  it('replaceIfVersion and deleteIfVersion act only on the version named', async (t) => {
    if (noConditionalWrites !== undefined) return t.skip(noConditionalWrites);
    if (noConditionalDelete !== undefined) return t.skip(noConditionalDelete);
    const s = storage();
    const v1 = (await s.createIfAbsent('leases/k', 'v1'))!;
    const v2 = await s.replaceIfVersion('leases/k', 'v2', v1);
    assert.ok(v2 && v2 !== v1, 'a replace gives a new version');
    assert.equal(await s.replaceIfVersion('leases/k', 'stale', v1), null, 'a replace of an old version fails');
    assert.equal(await s.deleteIfVersion('leases/k', v1), false, 'a delete of an old version fails');
    assert.deepEqual(await s.readVersioned('leases/k'), { data: Buffer.from('v2'), version: v2 });
    assert.equal(await s.deleteIfVersion('leases/k', v2), true);
    assert.equal(await s.readVersioned('leases/k'), null);
    assert.equal(await s.replaceIfVersion('leases/k', 'gone', v2), null, 'a replace of a deleted object fails');
    assert.equal(await s.deleteIfVersion('leases/k', v2), false);
    assert.equal(await s.stat('leases/k'), null, 'a failed replace creates nothing');
  });

  it('of concurrent creates, and of concurrent replaces of one version, exactly one wins', async (t) => {
    if (noConditionalWrites !== undefined) return t.skip(noConditionalWrites);
    const s = storage();
    const creates = await Promise.all(Array.from({ length: 16 }, (_, i) => s.createIfAbsent('leases/race', `create ${i}`)));
    const created = creates.flatMap((v, i) => (v ? [i] : []));
    assert.equal(created.length, 1, `one create wins: ${created}`);
    const base = creates[created[0]!]!;
    assert.equal((await s.readVersioned('leases/race'))?.data.toString(), `create ${created[0]}`);
    const replaces = await Promise.all(Array.from({ length: 16 }, (_, i) => s.replaceIfVersion('leases/race', `replace ${i}`, base)));
    const replaced = replaces.flatMap((v, i) => (v ? [i] : []));
    assert.equal(replaced.length, 1, `one replace wins: ${replaced}`);
    assert.deepEqual(await s.readVersioned('leases/race'), { data: Buffer.from(`replace ${replaced[0]}`), version: replaces[replaced[0]!] });
  });
}
