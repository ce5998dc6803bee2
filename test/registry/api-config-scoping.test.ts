// An image built with a config, pulled by digest by clients restricted to some repositories
// (bearer tokens), on the stand-in: a token for its name reads it; a token for another name
// does not, not even under that other name; and after a restart (a registry that did not build
// it) the name's config images are found in storage for the token that may read them.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startStandInRegistry, type StandInRegistry } from '../helpers/registry.js';
import { startTokenService, type TestTokenService } from '../helpers/token-service.js';
import { accepted, postBuild } from '../helpers/build-api.js';
import type { BuildStatus } from '../../src/service/build-tracker.js';

const SERVICE = 'config-scoping-test';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

describe('config images and repository scoping', () => {
  let dir: string;
  let tokens: TestTokenService;
  let env: Record<string, string>;
  let r: StandInRegistry;

  const token = async (...repos: string[]): Promise<string> => {
    const scopes = repos.map((n) => `&scope=${encodeURIComponent(`repository:${n}:pull`)}`).join('');
    const res = await fetch(`${tokens.realm}?service=${SERVICE}${scopes}`, { headers: { Authorization: `Basic ${Buffer.from('carol:secret').toString('base64')}` } });
    assert.equal(res.status, 200);
    return ((await res.json()) as { token: string }).token;
  };
  const get = (reg: StandInRegistry, p: string, bearer: string, method = 'GET') => fetch(`${reg.url}${p}`, { method, headers: { Authorization: `Bearer ${bearer}`, Accept: OCI_MANIFEST } });

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-config-scoping-'));
    tokens = await startTokenService({ users: { carol: 'secret' }, issuer: 'test-issuer', service: SERVICE });
    const jwks = path.join(dir, 'jwks.json');
    await tokens.writeJwks(jwks);
    env = { NIXERY_AUTH_TOKEN_REALM: tokens.realm, NIXERY_AUTH_TOKEN_SERVICE: SERVICE, NIXERY_AUTH_TOKEN_ISSUER: 'test-issuer', NIXERY_AUTH_TOKEN_KEYS: jwks };
    r = await startStandInRegistry(env, { storagePath: path.join(dir, 'storage') });
  });
  after(async () => {
    await r?.close();
    await tokens?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('a token for the name reads it by digest, one for another name does not; also after a restart', async () => {
    const t = await token('hello');
    const status = await accepted(await postBuild(r, { image: 'hello', config: { env: ['SCOPED=1'] } }, { Authorization: `Bearer ${t}` }));
    let done = status;
    while (done.state !== 'succeeded' && done.state !== 'failed') {
      await new Promise((resolve) => setTimeout(resolve, 50));
      done = (await (await fetch(`${r.url}/api/v1/builds/${status.id}`, { headers: { Authorization: `Bearer ${t}` } })).json()) as BuildStatus;
    }
    assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
    const digest = done.result!.digest;
    assert.match(digest, /^sha256:[0-9a-f]{64}$/);

    const ok = await get(r, `/v2/hello/manifests/${digest}`, t);
    assert.equal(ok.status, 200, await ok.text());
    // curl is an image this token may read, but the config image is not curl's.
    const other = await token('curl');
    await get(r, '/v2/curl/manifests/latest', other).then((res) => res.arrayBuffer());
    const refused = await get(r, `/v2/curl/manifests/${digest}`, other);
    assert.equal(refused.status, 404);
    assert.equal(((await refused.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'MANIFEST_UNKNOWN');

    // A registry that did not build it finds it in storage for the token of its name.
    const restarted = await startStandInRegistry(env, { storagePath: path.join(dir, 'storage') });
    try {
      const found = await get(restarted, `/v2/hello/manifests/${digest}`, t, 'HEAD');
      assert.equal(found.status, 200);
      assert.equal(found.headers.get('docker-content-digest'), digest);
      assert.equal(restarted.nix.stats.invocations, 0, 'found, not built');
      assert.equal((await get(restarted, `/v2/curl/manifests/${digest}`, other, 'HEAD')).status, 404);
    } finally {
      await restarted.close();
    }
  });
});
