// The pull checks of the OCI distribution conformance suite (v1.1 pull workflow and the
// current suite's read-only data group), as our own tests, in read-only mode: the namespace is an
// image we can build, with its tag, manifest digest and a blob digest.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { startStandInRegistry as startRegistry, type StandInRegistry as TestRegistry } from '../helpers/registry.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';

const SPEC_CODES = new Set([
  'BLOB_UNKNOWN', 'BLOB_UPLOAD_INVALID', 'BLOB_UPLOAD_UNKNOWN', 'DIGEST_INVALID', 'MANIFEST_BLOB_UNKNOWN',
  'MANIFEST_INVALID', 'MANIFEST_UNKNOWN', 'NAME_INVALID', 'NAME_UNKNOWN', 'SIZE_INVALID', 'UNAUTHORIZED',
  'DENIED', 'UNSUPPORTED', 'TOOMANYREQUESTS',
]);
// What the suite sends on manifest requests.
const ACCEPT = `${MEDIA_TYPES.ociIndex}, ${MEDIA_TYPES.ociManifest}`;

describe('OCI conformance: pull', () => {
  let r: TestRegistry;
  const namespace = 'shell';
  const tag = 'latest';
  let manifestDigest: string;
  let blobDigest: string;
  const url = (p: string) => `${r.url}/v2/${namespace}${p}`;

  before(async () => {
    r = await startRegistry();
    const res = await fetch(url(`/manifests/${tag}`), { headers: { Accept: ACCEPT } });
    const body = Buffer.from(await res.arrayBuffer());
    manifestDigest = res.headers.get('docker-content-digest')!;
    blobDigest = JSON.parse(body.toString()).config.digest;
  });
  after(() => r.close());

  test('GET /v2/ is 200', async () => {
    assert.equal((await fetch(`${r.url}/v2/`)).status, 200);
  });

  test('HEAD request to nonexistent blob should result in 404 response', async () => {
    const dummy = `sha256:${createHash('sha256').update('hello world').digest('hex')}`;
    assert.equal((await fetch(url(`/blobs/${dummy}`), { method: 'HEAD' })).status, 404);
  });

  test('HEAD request to existing blob should yield 200 (and a matching digest header)', async () => {
    const res = await fetch(url(`/blobs/${blobDigest}`), { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-content-digest'), blobDigest);
  });

  test('GET nonexistent blob should result in 404 response', async () => {
    const res = await fetch(url(`/blobs/sha256:${randomBytes(32).toString('hex')}`));
    assert.equal(res.status, 404);
  });

  test('GET request to existing blob URL should yield 200', async () => {
    const res = await fetch(url(`/blobs/${blobDigest}`));
    assert.equal(res.status, 200);
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.equal(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, blobDigest);
  });

  test('HEAD request to nonexistent manifest should return 404', async () => {
    const res = await fetch(url('/manifests/.INVALID_MANIFEST_NAME'), { method: 'HEAD', headers: { Accept: ACCEPT } });
    assert.equal(res.status, 404);
  });

  test('HEAD request to manifest[0], manifest[1] (by digest) and by tag should yield 200 with a matching digest', async () => {
    for (const ref of [manifestDigest, manifestDigest, tag]) {
      const res = await fetch(url(`/manifests/${ref}`), { method: 'HEAD', headers: { Accept: ACCEPT } });
      assert.equal(res.status, 200, ref);
      assert.equal(res.headers.get('docker-content-digest'), manifestDigest);
    }
  });

  test('GET nonexistent manifest should return 404', async () => {
    const res = await fetch(url(`/manifests/sha256:${randomBytes(32).toString('hex')}`), { headers: { Accept: ACCEPT } });
    assert.equal(res.status, 404);
    const missingTag = await fetch(url(`/manifests/missing-${randomBytes(4).toString('hex')}`), { headers: { Accept: ACCEPT } });
    // A path source ignores the tag: any valid tag builds the same image. Only invalid tags are unknown.
    assert.ok([200, 404].includes(missingTag.status));
    await missingTag.arrayBuffer();
  });

  test('GET request to manifest by digest (twice) and by tag should yield 200, content type and length matching', async () => {
    for (const ref of [manifestDigest, manifestDigest, tag]) {
      const res = await fetch(url(`/manifests/${ref}`), { headers: { Accept: ACCEPT } });
      assert.equal(res.status, 200);
      const body = Buffer.from(await res.arrayBuffer());
      assert.equal(res.headers.get('content-type'), MEDIA_TYPES.ociManifest);
      assert.equal(Number(res.headers.get('content-length')), body.length);
      assert.equal(JSON.parse(body.toString()).mediaType, res.headers.get('content-type'));
      assert.equal(`sha256:${createHash('sha256').update(body).digest('hex')}`, manifestDigest);
    }
  });

  test('error codes: GET /manifests/sha256:totallywrong is 400 or 404, with a spec code when 400', async () => {
    const res = await fetch(url('/manifests/sha256:totallywrong'), { headers: { Accept: ACCEPT } });
    assert.ok([400, 404].includes(res.status));
    if (res.status === 400) {
      const body = (await res.json()) as { errors: Array<{ code: string }> };
      assert.ok(SPEC_CODES.has(body.errors[0]!.code), body.errors[0]!.code);
    }
  });

  test('empty: tags list answers, referrers of a random digest is an empty index', async () => {
    const tags = await fetch(url('/tags/list'));
    assert.equal(tags.status, 200);
    const refs = await fetch(url(`/referrers/sha256:${randomBytes(32).toString('hex')}`));
    assert.equal(refs.status, 200);
    assert.deepEqual((await refs.json()).manifests, []);
  });
});
