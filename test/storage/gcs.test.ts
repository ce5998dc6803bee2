// The GCS backend against a GCS test server on loopback (see gcs-server.ts for what it is and
// why), authenticating with Google's published dummy service account.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError, logDetail } from '../../src/errors.js';
import { GcsStorage, gcsOptionsFromEnv, type GcsCredentials, type GcsStorageOptions } from '../../src/storage/gcs.js';
import { createStorage } from '../../src/storage/index.js';
import { collect, runStorageContract } from './contract.js';
import { startFakeGcs, type FakeGcs, type FakeGcsOptions } from './gcs-server.js';

const fixtures = new URL('../../../test/storage/fixtures/', import.meta.url);
const account = JSON.parse(readFileSync(new URL('gcs-conformance-service-account.json', fixtures), 'utf8')) as { client_email: string; private_key: string; private_key_id: string };

let server: FakeGcs | undefined;
async function gcs(): Promise<FakeGcs> {
  server ??= await startFakeGcs({ serviceAccount: account });
  return server;
}
after(async () => {
  await server?.stop();
});

/** Runs `fn` against a server of its own (for options the shared one lacks), stopped afterwards. */
async function withFakeGcs(options: FakeGcsOptions, fn: (srv: FakeGcs) => Promise<void>): Promise<void> {
  const srv = await startFakeGcs(options);
  try {
    await fn(srv);
  } finally {
    await srv.stop();
  }
}

function credentialsFor(srv: FakeGcs): Extract<GcsCredentials, { type: 'service_account' }> {
  return { type: 'service_account', clientEmail: account.client_email, privateKey: account.private_key, privateKeyId: account.private_key_id, tokenUri: srv.tokenUri };
}

async function makeStorage(extra: Partial<GcsStorageOptions> = {}, srv?: FakeGcs): Promise<GcsStorage> {
  const s = srv ?? (await gcs());
  return new GcsStorage({ bucket: s.createBucket(), endpoint: s.endpoint, credentials: credentialsFor(s), chunkSize: 256 * 1024, ...extra });
}

runStorageContract('gcs (GCS test server, service-account auth, key prefix nixery/)', async () => {
  const storage = await makeStorage({ prefix: 'nixery/' });
  return { storage, cleanup: async () => {} };
});

describe('gcs storage', () => {
  let tmp: string;
  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'nixery-gcs-test-'));
  });
  after(async () => {
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('streams a resumable upload that stays invisible until commit, resending what the server did not persist', async () => {
    await withFakeGcs({ serviceAccount: account, resumableShortfall: 256 * 1024 }, async (srv) => {
      const s = await makeStorage({ chunkSize: 1024 * 1024 }, srv);
      const w = await s.writer('blobs/resumable', { contentType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
      const data = Buffer.alloc(3 * 1024 * 1024 + 123);
      for (let i = 0; i + 4 <= data.length; i += 4) data.writeUInt32BE(i >>> 0, i);
      for (let off = 0; off < data.length; off += 100_000) {
        await new Promise<void>((resolve, reject) => w.stream.write(data.subarray(off, off + 100_000), (e) => (e ? reject(e) : resolve())));
      }
      await new Promise<void>((resolve) => w.stream.end(() => resolve()));
      assert.equal(srv.stats.resumableSessions, 1);
      assert.equal(srv.openSessions(), 1);
      assert.equal(await s.stat('blobs/resumable'), null);
      await w.commit();
      assert.equal(srv.openSessions(), 0);
      const info = await s.stat('blobs/resumable');
      assert.equal(info?.size, data.length);
      assert.equal(info?.contentType, 'application/vnd.oci.image.layer.v1.tar+gzip');
      assert.ok((await s.read('blobs/resumable'))!.equals(data));
    });
  });

  it('cancels the resumable session on abort', async () => {
    const srv = await gcs();
    const s = await makeStorage();
    const before = srv.openSessions();
    const w = await s.writer('blobs/cancelled');
    await new Promise<void>((resolve, reject) => w.stream.write(Buffer.alloc(600 * 1024, 1), (e) => (e ? reject(e) : resolve())));
    assert.equal(srv.openSessions(), before + 1);
    await w.abort();
    assert.equal(srv.openSessions(), before);
    assert.equal(await s.stat('blobs/cancelled'), null);
  });

  it('signs V4 URLs that the server verifies; tampered or expired ones are refused', async () => {
    // GET, Range and HEAD through signed URLs: the storage contract.
    const srv = await gcs();
    const s = await makeStorage({ redirectTtlSeconds: 60 });
    assert.equal(s.signsUrls, true);
    await s.put('blobs/sha256/feed', 'layer bytes');
    const url = await s.redirectUrl('blobs/sha256/feed', { method: 'GET' });
    assert.ok(url);
    assert.ok(url.startsWith(`${srv.endpoint}/`));
    assert.match(url, /X-Goog-Algorithm=GOOG4-RSA-SHA256/);
    assert.match(url, /X-Goog-Expires=60&/);
    assert.equal((await fetch(url)).status, 200);
    // A GET URL does not work for HEAD, nor for another object.
    assert.equal((await fetch(url, { method: 'HEAD' })).status, 403);
    const other = url.replace('/blobs/sha256/feed?', '/blobs/sha256/beef?');
    assert.equal((await fetch(other)).status, 403);
    const short = await makeStorage({ redirectTtlSeconds: 1 });
    await short.put('blobs/x', 'x');
    const stale = await short.redirectUrl('blobs/x', { method: 'GET' });
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const expired = await fetch(stale!);
    assert.equal(expired.status, 400);
    assert.match(await expired.text(), /ExpiredToken/);
  });

  it('without a service-account key, redirects to public URLs and says so', async () => {
    await withFakeGcs({}, async (srv) => {
      const bucket = srv.createBucket({ public: true });
      const s = new GcsStorage({ bucket, endpoint: srv.endpoint });
      assert.equal(s.signsUrls, false);
      assert.match(s.notices[0]!, /no service-account key to sign URLs with \(GOOGLE_APPLICATION_CREDENTIALS\).*public URLs.*publicly readable/);
      await s.put('blobs/pub', 'public bytes');
      const url = await s.redirectUrl('blobs/pub', { method: 'GET' });
      assert.ok(url);
      assert.equal(url, `${srv.endpoint}/${bucket}/blobs/pub`);
      const res = await fetch(url);
      assert.equal(await res.text(), 'public bytes');
      // The same URL on a private bucket is refused: public URLs need a public bucket.
      const privateBucket = srv.createBucket();
      const p = new GcsStorage({ bucket: privateBucket, endpoint: srv.endpoint });
      await p.put('blobs/pub', 'private bytes');
      assert.equal((await fetch((await p.redirectUrl('blobs/pub', { method: 'GET' }))!)).status, 403);
      assert.equal(await new GcsStorage({ bucket, endpoint: srv.endpoint, redirects: false }).redirectUrl('blobs/pub', { method: 'GET' }), null);
    });
  });

  it('moves large objects with multi-call rewrites and lists across pages', async () => {
    await withFakeGcs({ serviceAccount: account, rewriteBytesPerCall: 1000, pageSize: 7 }, async (srv) => {
      const s = await makeStorage({}, srv);
      const big = Buffer.alloc(4500, 7);
      await s.put('staging/big', big, { contentType: 'type/big' });
      await s.move('staging/big', 'blobs/big');
      assert.equal(srv.stats.rewriteCalls, 5);
      assert.equal(await s.stat('staging/big'), null);
      assert.equal((await s.stat('blobs/big'))?.contentType, 'type/big');
      assert.ok((await s.read('blobs/big'))!.equals(big));
      const keys = Array.from({ length: 30 }, (_, i) => `builds/${String(i).padStart(3, '0')}.json`);
      await Promise.all(keys.map((k) => s.put(k, '{}')));
      const listed: string[] = [];
      for await (const info of s.list('builds/')) listed.push(info.key);
      assert.deepEqual(listed, keys);
    });
  });

  it('fetches one OAuth token for many requests', async () => {
    await withFakeGcs({ serviceAccount: account }, async (srv) => {
      const s = await makeStorage({}, srv);
      await Promise.all(Array.from({ length: 20 }, (_, i) => s.put(`k/${i}`, String(i))));
      for (let i = 0; i < 20; i++) assert.equal((await s.read(`k/${i}`))?.toString(), String(i));
      assert.equal(srv.stats.tokens, 1);
      // Wrong credentials: a clear authentication failure.
      const other = new GcsStorage({
        bucket: srv.createBucket(),
        endpoint: srv.endpoint,
        credentials: { ...credentialsFor(srv), clientEmail: 'someone-else@example.iam.gserviceaccount.com' },
      });
      await assert.rejects(other.read('x'), (err: Error) => /authenticate .* failed: HTTP 400: Invalid JWT/.test(logDetail(err)));
    });
  });

  it('retries transient failures of repeatable requests; a failed resumable chunk fails the write and shows nothing', async () => {
    await withFakeGcs({ serviceAccount: account }, async (srv) => {
      const s = await makeStorage({}, srv);
      srv.failNext(2, 503);
      await s.put('blobs/retried', 'after two 503s', { contentType: 'text/plain' });
      srv.failNext(2, 429);
      assert.equal((await s.stat('blobs/retried'))?.contentType, 'text/plain');
      srv.failNext(3, 503);
      await assert.rejects(s.read('blobs/retried'), (err: Error) => /gcs .*get blobs\/retried failed: HTTP 503: Backend Error \(injected\)/.test(logDetail(err)));
      const w = await s.writer('blobs/chunked');
      await new Promise<void>((resolve, reject) => w.stream.write(Buffer.alloc(300 * 1024, 2), (e) => (e ? reject(e) : resolve()))); // session open, one chunk sent
      srv.failNext(1, 503);
      await assert.rejects(
        new Promise<void>((resolve, reject) => w.stream.write(Buffer.alloc(300 * 1024, 3), (e) => (e ? reject(e) : resolve()))),
        /HTTP 503/,
      );
      await assert.rejects(w.commit());
      assert.equal(await s.stat('blobs/chunked'), null);
      assert.equal(srv.openSessions(), 0);
    });
  });

  it('reports a missing bucket as a storage failure, not as a missing key', async () => {
    const srv = await gcs();
    const s = new GcsStorage({ bucket: 'no-such-bucket', endpoint: srv.endpoint, credentials: credentialsFor(srv) });
    await assert.rejects(s.stat('x'), (err: Error) => /The specified bucket does not exist/.test(logDetail(err)));
    await assert.rejects(s.get('x'), (err: Error) => /The specified bucket does not exist/.test(logDetail(err)));
    await assert.rejects(s.put('x', 'y'), (err: Error) => /The specified bucket does not exist/.test(logDetail(err)));
  });

  it('is chosen by NIXERY_STORAGE_BACKEND=gcs and configured from GCS_BUCKET and GOOGLE_APPLICATION_CREDENTIALS', async () => {
    const srv = await gcs();
    const bucket = srv.createBucket();
    const keyFile = path.join(tmp, 'key.json');
    await fs.writeFile(keyFile, JSON.stringify({ ...account, type: 'service_account', token_uri: srv.tokenUri }));
    const env = { NIXERY_STORAGE_BACKEND: 'gcs', GCS_BUCKET: bucket, GCS_ENDPOINT: srv.endpoint, GOOGLE_APPLICATION_CREDENTIALS: keyFile };
    const s = await createStorage({ redirectTtl: 90 }, env);
    assert.ok(s instanceof GcsStorage);
    assert.equal(s.name, `gcs (${bucket} at ${srv.endpoint})`);
    assert.deepEqual(s.notices, ['blob GETs redirect to V4-signed URLs valid 90 s']);
    await s.put('manifests/m.json', '{}', { contentType: 'application/json' });
    assert.equal((await collect(await s.get('manifests/m.json'))).toString(), '{}');
    assert.match((await s.redirectUrl!('manifests/m.json', { method: 'GET' }))!, /X-Goog-Expires=90&/);
  });

  it('stops with one clear ConfigError for missing or invalid GCS settings', async () => {
    await assert.rejects(gcsOptionsFromEnv({}), (e: Error) => e instanceof ConfigError && /^the gcs storage backend needs GCS_BUCKET/.test(e.message));
    await assert.rejects(gcsOptionsFromEnv({ GCS_BUCKET: 'Bad Bucket' }), (e: Error) => e instanceof ConfigError && /^invalid GCS_BUCKET/.test(e.message));
    const missing = path.join(tmp, 'missing.json');
    await assert.rejects(gcsOptionsFromEnv({ GCS_BUCKET: 'ok-bucket', GOOGLE_APPLICATION_CREDENTIALS: missing }), (e: Error) => e instanceof ConfigError && e.message.startsWith(`invalid GOOGLE_APPLICATION_CREDENTIALS: cannot read ${missing}`));
    const cases: Array<[string, RegExp]> = [
      ['not json', /is not JSON/],
      [JSON.stringify({ type: 'external_account' }), /has type "external_account"; expected service_account or authorized_user/],
      [JSON.stringify({ type: 'service_account', client_email: 'a@b' }), /lacks client_email or private_key/],
      [JSON.stringify({ type: 'service_account', client_email: 'a@b', private_key: 'nope' }), /not a usable RSA key/],
      [JSON.stringify({ type: 'authorized_user', client_id: 'x' }), /lacks client_id, client_secret or refresh_token/],
    ];
    for (const [content, message] of cases) {
      const file = path.join(tmp, 'bad.json');
      await fs.writeFile(file, content);
      await assert.rejects(gcsOptionsFromEnv({ GCS_BUCKET: 'ok-bucket', GOOGLE_APPLICATION_CREDENTIALS: file }), (e: Error) => e instanceof ConfigError && message.test(e.message), content);
    }
    assert.deepEqual(await gcsOptionsFromEnv({ GCS_BUCKET: 'ok-bucket', STORAGE_EMULATOR_HOST: '127.0.0.1:4443', GCS_PREFIX: 'a/b/' }), {
      bucket: 'ok-bucket',
      endpoint: 'http://127.0.0.1:4443',
      prefix: 'a/b/',
    });
  });
});
