// The registry over real Nix where the point is Nix itself: its builder timeout (NIX_TIMEOUT) is
// a 504 naming the limit. (The rest of the HTTP API is in test/registry/, on the stand-in.)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startRegistry } from '../helpers/registry.js';

test('a Nix timeout is its own status with a message naming the limit', async () => {
  const r = await startRegistry({ NIX_TIMEOUT: '2' });
  try {
    const started = Date.now();
    const res = await fetch(`${r.url}/v2/slow/manifests/latest`);
    assert.equal(res.status, 504);
    assert.equal(res.headers.get('content-type'), 'application/json');
    const body = (await res.json()) as { errors: Array<{ message: string }> };
    assert.equal(body.errors.length, 1);
    assert.equal(body.errors[0]!.message, 'building slow-1.0: the builder took longer than NIX_TIMEOUT (2 s) and was stopped');
    assert.ok(Date.now() - started < 20_000);
  } finally {
    await r.close();
  }
});
