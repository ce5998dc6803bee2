import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mapLimit, QueueFullError, Semaphore } from '../../src/util/semaphore.js';

const tick = () => new Promise((r) => setImmediate(r));

test('Semaphore: FIFO, bounded, and a raised limit lets waiters in at once', async () => {
  const s = new Semaphore(1);
  const order: number[] = [];
  const gates: Array<() => void> = [];
  const runs = [0, 1, 2].map((i) =>
    s.use(async () => {
      order.push(i);
      await new Promise<void>((r) => gates.push(r));
    }),
  );
  await tick();
  assert.deepEqual(order, [0]);
  assert.equal(s.active, 1);
  assert.equal(s.queued, 2);
  s.setLimit(3);
  await tick();
  assert.deepEqual(order, [0, 1, 2]);
  assert.equal(s.active, 3);
  gates.forEach((g) => g());
  await Promise.all(runs);
  assert.equal(s.active, 0);
});

test('Semaphore: a full queue refuses at once; a failing task frees its slot', async () => {
  const s = new Semaphore(1, 0);
  let release!: () => void;
  const first = s.use(() => new Promise<void>((r) => (release = r)));
  await assert.rejects(s.use(async () => 1), QueueFullError);
  release();
  await first;
  await assert.rejects(s.use(() => Promise.reject(new Error('boom'))), /boom/);
  assert.equal(await s.use(async () => 7), 7);
  assert.equal(s.active, 0);
});

test('mapLimit keeps input order and never runs more than the limit', async () => {
  let running = 0;
  let most = 0;
  const out = await mapLimit([5, 1, 4, 2, 3], 2, async (n, i) => {
    running++;
    most = Math.max(most, running);
    await new Promise((r) => setTimeout(r, n));
    running--;
    return `${i}:${n}`;
  });
  assert.deepEqual(out, ['0:5', '1:1', '2:4', '3:2', '4:3']);
  assert.equal(most, 2);
});
