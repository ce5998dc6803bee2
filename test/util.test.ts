import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LruCache } from '../src/util/lru.js';
import { Semaphore, QueueFullError } from '../src/util/semaphore.js';
import { SingleFlight } from '../src/util/singleflight.js';

test('LruCache evicts the least recently used, by count or by weight', () => {
  const c = new LruCache<string, number>(2);
  c.set('a', 1);
  c.set('b', 2);
  assert.equal(c.get('a'), 1);
  c.set('c', 3);
  assert.equal(c.get('b'), undefined);
  assert.deepEqual([c.get('a'), c.get('c')], [1, 3]);
  const bytes = new LruCache<string, Buffer>(10, (b) => b.length);
  bytes.set('x', Buffer.alloc(6));
  bytes.set('y', Buffer.alloc(4));
  assert.equal(bytes.weight, 10);
  bytes.set('z', Buffer.alloc(5));
  assert.equal(bytes.get('x'), undefined);
  assert.equal(bytes.weight, 9);
  bytes.set('huge', Buffer.alloc(11));
  assert.equal(bytes.get('huge'), undefined, 'larger than the whole cache: not kept');
  bytes.set('y', Buffer.alloc(1));
  assert.equal(bytes.weight, 6, 'replacing an entry updates the weight');
  assert.equal(new LruCache<string, number>(0).size, 0);
});

test('LruCache: getting the most recent entry again keeps the order right', () => {
  const c = new LruCache<string, number>(2);
  c.set('a', 1);
  c.set('b', 2);
  assert.equal(c.get('b'), 2);
  assert.equal(c.get('b'), 2);
  assert.equal(c.get('a'), 1);
  c.set('c', 3);
  assert.equal(c.get('b'), undefined, 'b was the least recently used');
  c.delete('c');
  assert.equal(c.get('a'), 1);
  c.set('c', 3);
  c.set('d', 4);
  assert.deepEqual([c.get('a'), c.get('c'), c.get('d')], [undefined, 3, 4]);
});

test('Semaphore bounds concurrency and the queue', async () => {
  const s = new Semaphore(1, 1);
  let release!: () => void;
  const first = s.use(() => new Promise<void>((r) => (release = r)));
  const second = s.use(async () => 'second');
  await assert.rejects(s.use(async () => 'third'), QueueFullError);
  assert.equal(s.active, 1);
  assert.equal(s.queued, 1);
  release();
  await first;
  assert.equal(await second, 'second');
  assert.equal(s.active, 0);
});

test('SingleFlight shares one execution per key and forgets it when done', async () => {
  const f = new SingleFlight<string, number>();
  let runs = 0;
  const job = () => new Promise<number>((r) => setTimeout(() => r(++runs), 10));
  const a = f.run('k', job);
  const b = f.run('k', job);
  assert.equal(a.shared, false);
  assert.equal(b.shared, true);
  assert.deepEqual(await Promise.all([a.promise, b.promise]), [1, 1]);
  assert.equal(f.size, 0);
  assert.equal(await f.run('k', job).promise, 2);
  // A function that throws at once fails its callers, and is forgotten like any other.
  const throwsAtOnce = (): Promise<number> => {
    throw new Error('refused');
  };
  await assert.rejects(f.run('k', throwsAtOnce).promise, /refused/);
  assert.equal(f.size, 0);
  assert.equal(await f.run('k', job).promise, 3);
});
