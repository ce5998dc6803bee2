// tags/list of a name not built here has Nix evaluate the name: work a build would do, so it
// goes through the client's build admission. A client over its build rate gets 429 and starts
// no evaluation; a name already known costs nothing.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startStandInRegistry, type StandInRegistry } from '../helpers/registry.js';

let r: StandInRegistry;
before(async () => {
  r = await startStandInRegistry({ NIXERY_CLIENT_BUILDS_PER_MINUTE: '1' });
});
after(() => r.close());

test('evaluating an unknown name for tags/list counts against the build rate', async () => {
  const first = await fetch(`${r.url}/v2/jq/tags/list`);
  assert.equal(first.status, 200, await first.clone().text());
  await first.arrayBuffer();
  const resolves = r.nix.stats.resolves;
  assert.ok(resolves >= 1, 'the first name was evaluated');

  const over = await fetch(`${r.url}/v2/tree/tags/list`);
  assert.equal(over.status, 429, await over.clone().text());
  assert.ok(Number(over.headers.get('retry-after')) > 0, 'Retry-After says when to come back');
  assert.equal(((await over.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'TOOMANYREQUESTS');
  assert.equal(r.nix.stats.resolves, resolves, 'no evaluation was started over the rate');

  // A name known already is not evaluated again, so it is not limited.
  const again = await fetch(`${r.url}/v2/jq/tags/list`);
  assert.equal(again.status, 200);
  await again.arrayBuffer();
  assert.equal(r.nix.stats.resolves, resolves);
});
