// Repository scoping with real bearer tokens from a token service: a token for shell/hello reads
// nothing of shell/git, not even by digest under its own name (404 MANIFEST_UNKNOWN /
// BLOB_UNKNOWN, as distribution answers), and the lists (/v2/_catalog, /api/v1/images, build
// statuses, the index page's recent errors) show only what the token may pull. Also after a
// restart, when the registry has to find the name's images in storage again.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startTokenService, type TestTokenService } from '../helpers/token-service.js';

const SERVICE = 'scoping-test-registry';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

interface Manifest {
  config: { digest: string };
  layers: Array<{ digest: string }>;
}

let dir: string;
let tokens: TestTokenService;
let env: Record<string, string>;
let r: TestRegistry;
const storagePath = () => path.join(dir, 'storage');

/** A token for `repos` (pull), as a client gets it: Basic credentials to the realm. */
async function token(...repos: string[]): Promise<string> {
  const scopes = repos.map((n) => `&scope=${encodeURIComponent(`repository:${n}:pull`)}`).join('');
  const res = await fetch(`${tokens.realm}?service=${SERVICE}${scopes}`, { headers: { Authorization: `Basic ${Buffer.from('carol:secret').toString('base64')}` } });
  assert.equal(res.status, 200);
  return ((await res.json()) as { token: string }).token;
}

async function get(p: string, bearer: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${r.url}${p}`, { ...init, headers: { ...(init.headers as Record<string, string>), Authorization: `Bearer ${bearer}` } });
}

async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as { errors: Array<{ code: string }> }).errors[0]!.code;
}

/** The manifest (by tag, OCI) and its digest. */
async function manifestOf(name: string, bearer: string): Promise<{ digest: string; manifest: Manifest }> {
  const res = await get(`/v2/${name}/manifests/latest`, bearer, { headers: { Accept: OCI_MANIFEST } });
  assert.equal(res.status, 200, await res.clone().text());
  return { digest: res.headers.get('docker-content-digest')!, manifest: (await res.json()) as Manifest };
}

let hello: { digest: string; manifest: Manifest };
let git: { digest: string; manifest: Manifest };
/** Blobs of shell/git that shell/hello does not have. */
let gitOnly: string[];

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'nixery-scoping-'));
  tokens = await startTokenService({ users: { carol: 'secret' }, issuer: 'test-issuer', service: SERVICE });
  const jwks = path.join(dir, 'jwks.json');
  await tokens.writeJwks(jwks);
  env = { NIXERY_AUTH_TOKEN_REALM: tokens.realm, NIXERY_AUTH_TOKEN_SERVICE: SERVICE, NIXERY_AUTH_TOKEN_ISSUER: 'test-issuer', NIXERY_AUTH_TOKEN_KEYS: jwks };
  r = await startRegistry(env, { storagePath: storagePath() });
  hello = await manifestOf('shell/hello', await token('shell/hello'));
  git = await manifestOf('shell/git', await token('shell/git'));
  const helloBlobs = new Set([hello.manifest.config.digest, ...hello.manifest.layers.map((l) => l.digest)]);
  gitOnly = [git.manifest.config.digest, ...git.manifest.layers.map((l) => l.digest)].filter((d) => !helloBlobs.has(d));
  assert.ok(gitOnly.length >= 2, 'shell/git has blobs of its own');
});

after(async () => {
  await r?.close();
  await tokens?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('a token scoped to shell/hello', () => {
  test('reads shell/hello by digest, and none of shell/git under the shell/hello name', async () => {
    const t = await token('shell/hello');
    assert.equal((await get(`/v2/shell/hello/manifests/${hello.digest}`, t)).status, 200);
    for (const d of [hello.manifest.config.digest, ...hello.manifest.layers.map((l) => l.digest)]) {
      assert.equal((await get(`/v2/shell/hello/blobs/${d}`, t, { method: 'HEAD' })).status, 200, d);
    }

    const manifest = await get(`/v2/shell/hello/manifests/${git.digest}`, t);
    assert.equal(manifest.status, 404);
    assert.equal(await errorCode(manifest), 'MANIFEST_UNKNOWN');
    assert.equal((await get(`/v2/shell/hello/manifests/${git.digest}`, t, { method: 'HEAD' })).status, 404);
    for (const d of gitOnly) {
      const blob = await get(`/v2/shell/hello/blobs/${d}`, t);
      assert.equal(blob.status, 404, d);
      assert.equal(await errorCode(blob), 'BLOB_UNKNOWN');
      assert.equal((await get(`/v2/shell/hello/blobs/${d}`, t, { method: 'HEAD' })).status, 404, d);
    }
    // Under its own name, the token is refused outright.
    assert.equal((await get(`/v2/shell/git/manifests/${git.digest}`, t)).status, 403);
    // The token for shell/git reads it.
    assert.equal((await get(`/v2/shell/git/blobs/${gitOnly[0]!}`, await token('shell/git'), { method: 'HEAD' })).status, 200);
  });

  test('/v2/_catalog and /api/v1/images list only what the token may pull', async () => {
    const t = await token('shell/hello');
    const catalog = await get('/v2/_catalog', t);
    assert.equal(catalog.status, 200);
    assert.deepEqual(await catalog.json(), { repositories: ['shell/hello'] });
    const images = (await (await get('/api/v1/images', t)).json()) as { images: Array<{ name: string }> };
    assert.deepEqual(images.images.map((i) => i.name), ['shell/hello']);

    const both = await token('shell/hello', 'shell/git');
    assert.deepEqual(await (await get('/v2/_catalog', both)).json(), { repositories: ['shell/git', 'shell/hello'] });
    const first = await get('/v2/_catalog?n=1', both);
    assert.deepEqual(await first.json(), { repositories: ['shell/git'] });
    assert.equal(first.headers.get('link'), '</v2/_catalog?n=1&last=shell%2Fgit>; rel="next"');
    assert.deepEqual(await (await get('/v2/_catalog?n=1&last=shell%2Fgit', both)).json(), { repositories: ['shell/hello'] });
    const all = (await (await get('/api/v1/images', both)).json()) as { images: Array<{ name: string }> };
    assert.deepEqual(all.images.map((i) => i.name).sort(), ['shell/git', 'shell/hello']);
  });

  test("another image's build status and recent build errors are not shown", async () => {
    const gitToken = await token('shell/git');
    const post = await get('/api/v1/builds', gitToken, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ image: 'shell/git:latest' }) });
    assert.equal(post.status, 202);
    const { id } = (await post.json()) as { id: string };
    assert.equal((await get(`/api/v1/builds/${id}`, gitToken)).status, 200);
    const hidden = await get(`/api/v1/builds/${id}`, await token('shell/hello'));
    assert.equal(hidden.status, 404);
    assert.equal(await errorCode(hidden), 'BUILD_UNKNOWN');
    assert.equal((await get(`/api/v1/builds/${id}/events`, await token('shell/hello'))).status, 404);

    // A build that fails (the package set breaks it on purpose) is on the index page for those who may pull it.
    const brokenToken = await token('broken');
    assert.equal((await get('/v2/broken/manifests/latest', brokenToken)).status >= 400, true);
    const forBroken = await (await get('/', brokenToken)).text();
    assert.match(forBroken, /broken:latest/);
    const forHello = await (await get('/', await token('shell/hello'))).text();
    assert.doesNotMatch(forHello, /broken:latest/);
  });

  test('a name whose packages the source does not have is NAME_UNKNOWN, on manifests and tags/list', async () => {
    const t = await token('hello/nosuchpackage');
    const res = await get('/v2/hello/nosuchpackage/manifests/latest', t);
    assert.equal(res.status, 404);
    assert.equal(await errorCode(res), 'NAME_UNKNOWN');
    const tags = await get('/v2/hello/nosuchpackage/tags/list', t);
    assert.equal(tags.status, 404);
    assert.equal(await errorCode(tags), 'NAME_UNKNOWN');
    // A name not built yet whose packages exist lists its tags (Nix evaluates, nothing is built).
    const known = await get('/v2/jq/tags/list', await token('jq'));
    assert.equal(known.status, 200);
    assert.deepEqual(await known.json(), { name: 'jq', tags: ['latest'] });
    assert.equal((await get('/v2/_catalog', await token('jq'))).status, 200);
    assert.deepEqual(await (await get('/v2/_catalog', await token('jq'))).json(), { repositories: [] });
  });

  test('after a restart, by-digest reads under a name find its image in storage, and still nothing else', async () => {
    await r.close();
    r = await startRegistry(env, { storagePath: storagePath() });
    const t = await token('shell/hello');
    assert.equal((await get(`/v2/shell/hello/manifests/${hello.digest}`, t)).status, 200);
    assert.equal((await get(`/v2/shell/hello/blobs/${hello.manifest.layers[0]!.digest}`, t, { method: 'HEAD' })).status, 200);
    assert.equal((await get(`/v2/shell/hello/manifests/${git.digest}`, t)).status, 404);
    assert.equal((await get(`/v2/shell/hello/blobs/${gitOnly[0]!}`, t)).status, 404);
  });
});
