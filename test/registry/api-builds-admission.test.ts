// Admission to the build API (/api/v1/builds) over HTTP, in-process, on the stand-in Nix stage:
// authentication, anonymous watchers, the package policy and the per-client build rate.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startStandInRegistry as startRegistry } from '../helpers/registry.js';
import { accepted, finalStatus, ociError, postBuild, readEvents } from '../helpers/build-api.js';

describe('build API admission', () => {
  let dir: string;
  let htpasswd: string;
  const alice = { Authorization: `Basic ${Buffer.from('alice:wonderland').toString('base64')}` };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-api-auth-'));
    htpasswd = path.join(dir, 'htpasswd');
    execFileSync('htpasswd', ['-B', '-b', '-c', htpasswd, 'alice', 'wonderland']);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('with authentication on, building needs credentials', async () => {
    const r = await startRegistry({ NIXERY_HTPASSWD: htpasswd });
    try {
      const res = await postBuild(r, { image: 'hello:latest' });
      await ociError(res, 401, 'UNAUTHORIZED');
      assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm=/);
      await ociError(await fetch(`${r.url}/api/v1/builds/whatever`), 401, 'UNAUTHORIZED');
      const build = await accepted(await postBuild(r, { image: 'hello:latest' }, alice));
      const { events } = await readEvents(r, build.id, alice);
      assert.equal(events.at(-1)!.state, 'succeeded');
    } finally {
      await r.close();
    }
  });

  test('with anonymous pulls, anonymous clients may watch but not build; policy and rate apply', async () => {
    const r = await startRegistry({ NIXERY_HTPASSWD: htpasswd, NIXERY_ANONYMOUS_PULL: 'true', NIXERY_DENY_PACKAGES: 'htop', NIXERY_CLIENT_BUILDS_PER_MINUTE: '1' });
    try {
      await ociError(await postBuild(r, { image: 'hello:latest' }), 401, 'UNAUTHORIZED', /only authenticated clients may build/);
      await ociError(await postBuild(r, { image: 'shell/htop:latest' }, alice), 403, 'DENIED', /htop/);
      const build = await accepted(await postBuild(r, { image: 'hello:latest' }, alice));
      assert.equal((await finalStatus(r, build.id)).state, 'succeeded', 'anonymous clients may watch');
      // The one build a minute is used: the next new image is refused before it starts.
      const limited = await postBuild(r, { image: 'tree:latest' }, alice);
      await ociError(limited, 429, 'TOOMANYREQUESTS', /NIXERY_CLIENT_BUILDS_PER_MINUTE/);
      assert.ok(Number(limited.headers.get('retry-after')) > 0);
      // An image built before is not a new build: no limit.
      assert.equal((await accepted(await postBuild(r, { image: 'hello:latest' }, alice))).state, 'succeeded');
    } finally {
      await r.close();
    }
  });
});
