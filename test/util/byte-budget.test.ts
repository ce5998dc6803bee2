// The send buffer's budget: shared fairly between clients, and nobody ever waits for it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ByteBudget } from '../../src/util/byte-budget.js';

test('a client gets at most its share; others still get theirs; what is given back is available again', () => {
  const budget = new ByteBudget(100, 30);
  assert.equal(budget.tryAcquire(20, 'ip:a'), 20);
  assert.equal(budget.tryAcquire(20, 'ip:a'), 0, 'over its share of 30');
  assert.equal(budget.tryAcquire(30, 'ip:b'), 30);
  assert.equal(budget.tryAcquire(30, 'ip:c'), 30);
  assert.equal(budget.tryAcquire(30, 'ip:d'), 0, 'over the total of 100');
  assert.equal(budget.tryAcquire(20, 'ip:d'), 20);
  assert.equal(budget.inUse, 100);
  budget.release(30, 'ip:b');
  assert.equal(budget.heldBy('ip:b'), 0);
  assert.equal(budget.tryAcquire(10, 'ip:a'), 10);
  assert.equal(budget.heldBy('ip:a'), 30);
  assert.equal(budget.inUse, 80);
});
