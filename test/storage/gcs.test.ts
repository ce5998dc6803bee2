// The GCS backend against a GCS test server on loopback (see gcs-server.ts for what it is and
// why), authenticating through google-auth-library with Google's published dummy service
// account, an authorized user, workload identity federation or a GCE metadata server, all
// served by the test server. Every credential is explicit or points at loopback: the library
// never looks for the real metadata server nor reaches Google.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, logDetail } from '../../src/errors.js';
import { StorageUnavailableError } from '../../src/storage/errors.js';
import { GcsStorage, gcsOptions, loadGcsCredentials, type GcsCredentials, type GcsStorageOptions } from '../../src/storage/gcs.js';
import { createStorage } from '../../src/storage/index.js';
import { gcsSettings, storageSettings } from '../../src/config.js';

/** The environment's settings, as src/config.ts reads them, with the credentials loaded. */
const gcsOptionsFromEnv = async (env: NodeJS.ProcessEnv) => gcsOptions(gcsSettings(env));
import { collect, runStorageContract } from './contract.js';
import { startFakeGcs, type FakeGcs, type FakeGcsOptions } from './gcs-server.js';

const fixtures = new URL('../../../test/storage/fixtures/', import.meta.url);
const account = JSON.parse(readFileSync(new URL('gcs-conformance-service-account.json', fixtures), 'utf8')) as { client_email: string; private_key: string; private_key_id: string };
const user = { client_id: 'nixery-test.apps.googleusercontent.com', client_secret: 'test-secret', refresh_token: '1//test-refresh-token' };
const pool = {
  audience: '//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/ci-pool/providers/ci-provider',
  subjectToken: 'eyJhbGciOiJSUzI1NiJ9.a-ci-job-oidc-token.signature',
};

const tmp = mkdtempSync(path.join(os.tmpdir(), 'nixery-gcs-test-'));
let server: FakeGcs | undefined;
async function gcs(): Promise<FakeGcs> {
  server ??= await startFakeGcs({ serviceAccount: account });
  return server;
}
after(async () => {
  await server?.stop();
  await fs.rm(tmp, { recursive: true, force: true });
});

let files = 0;
/** Writes a credentials file (GOOGLE_APPLICATION_CREDENTIALS) and returns its path. */
async function credentialFile(content: unknown): Promise<string> {
  const file = path.join(tmp, `credentials-${++files}.json`);
  await fs.writeFile(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

/** A service-account key file whose token_uri is the test server's. */
function keyFileFor(srv: FakeGcs, extra: Record<string, unknown> = {}): Promise<string> {
  return credentialFile({ type: 'service_account', ...account, token_uri: srv.tokenUri, ...extra });
}

/** A workload identity federation configuration: a file-sourced OIDC token exchanged at the server's STS. */
async function federationFileFor(srv: FakeGcs, options: { impersonate: boolean }): Promise<string> {
  const subjectTokenFile = path.join(tmp, `subject-token-${++files}`);
  await fs.writeFile(subjectTokenFile, pool.subjectToken);
  return credentialFile({
    type: 'external_account',
    audience: pool.audience,
    subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    token_url: srv.stsUri,
    credential_source: { file: subjectTokenFile },
    ...(options.impersonate ? { service_account_impersonation_url: srv.impersonationUrl(account.client_email) } : {}),
  });
}

async function credentialsFor(srv: FakeGcs, extra: Record<string, unknown> = {}): Promise<GcsCredentials> {
  return (await loadGcsCredentials({ keyFile: await keyFileFor(srv, extra) }))!;
}

/** Runs `fn` against a server of its own (for options the shared one lacks), stopped afterwards. */
async function withFakeGcs(options: FakeGcsOptions, fn: (srv: FakeGcs) => Promise<void>): Promise<void> {
  const srv = await startFakeGcs(options);
  try {
    await fn(srv);
  } finally {
    await srv.stop();
  }
}

async function makeStorage(extra: Partial<GcsStorageOptions> = {}, srv?: FakeGcs): Promise<GcsStorage> {
  const s = srv ?? (await gcs());
  return new GcsStorage({ bucket: s.createBucket(), endpoint: s.endpoint, credentials: await credentialsFor(s), chunkSize: 256 * 1024, ...extra });
}

runStorageContract('gcs (GCS test server, service-account auth, key prefix nixery/)', async () => {
  const storage = await makeStorage({ prefix: 'nixery/' });
  return { storage, cleanup: async () => {} };
});

describe('gcs storage', () => {
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
      assert.match(s.notices[0]!, /no service account to sign URLs as \(.*GOOGLE_APPLICATION_CREDENTIALS\): blob GETs redirect to public URLs.*publicly readable/);
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

  it('fetches one OAuth token for many requests, from the token_uri of the key', async () => {
    await withFakeGcs({ serviceAccount: account }, async (srv) => {
      const s = await makeStorage({}, srv);
      await Promise.all(Array.from({ length: 20 }, (_, i) => s.put(`k/${i}`, String(i))));
      for (let i = 0; i < 20; i++) assert.equal((await s.read(`k/${i}`))?.toString(), String(i));
      assert.equal(srv.stats.tokens, 1);
      // Wrong credentials: a clear authentication failure.
      const other = new GcsStorage({
        bucket: srv.createBucket(),
        endpoint: srv.endpoint,
        credentials: await credentialsFor(srv, { client_email: 'someone-else@example.iam.gserviceaccount.com' }),
      });
      await assert.rejects(other.read('x'), (err: Error) => err instanceof StorageUnavailableError && /get x failed: authentication failed: HTTP 400: invalid_grant: Invalid JWT/.test(logDetail(err)));
    });
  });

  it('fetches a new token when GCS answers 401, and goes on', async () => {
    await withFakeGcs({ serviceAccount: account }, async (srv) => {
      const s = await makeStorage({}, srv);
      await s.put('blobs/a', 'before');
      assert.equal(srv.stats.tokens, 1);
      srv.revokeTokens(); // the token is still within its lifetime: only GCS's 401 tells
      await s.put('blobs/b', 'after');
      assert.equal((await s.read('blobs/a'))?.toString(), 'before');
      assert.equal((await s.read('blobs/b'))?.toString(), 'after');
      assert.equal(srv.stats.tokens, 2);
    });
  });

  it('authenticates as an authorized user (a refresh token), with public redirect URLs', async () => {
    await withFakeGcs({ serviceAccount: account, authorizedUser: user }, async (srv) => {
      const credentials = (await loadGcsCredentials({ keyFile: await credentialFile({ type: 'authorized_user', ...user, token_uri: srv.tokenUri }) }))!;
      assert.equal(credentials.signer, null);
      const s = new GcsStorage({ bucket: srv.createBucket(), endpoint: srv.endpoint, credentials });
      assert.equal(s.signsUrls, false);
      await s.put('blobs/u', 'from a user');
      srv.revokeTokens();
      assert.equal((await s.read('blobs/u'))?.toString(), 'from a user');
      assert.equal(srv.stats.tokens, 2);
      const wrong = (await loadGcsCredentials({ keyFile: await credentialFile({ type: 'authorized_user', ...user, refresh_token: 'revoked', token_uri: srv.tokenUri }) }))!;
      const denied = new GcsStorage({ bucket: srv.createBucket(), endpoint: srv.endpoint, credentials: wrong });
      await assert.rejects(denied.stat('x'), (err: Error) => /authentication failed: HTTP 400: invalid_grant/.test(logDetail(err)));
    });
  });

  it('authenticates with workload identity federation (external_account): STS exchange, impersonation, URLs signed by IAM signBlob', async () => {
    await withFakeGcs({ serviceAccount: account, workloadIdentity: pool }, async (srv) => {
      const bucket = srv.createBucket();
      // Through the environment, as a deployment configures it.
      const env = { NIXERY_STORAGE_BACKEND: 'gcs', GCS_BUCKET: bucket, GCS_ENDPOINT: srv.endpoint, GOOGLE_APPLICATION_CREDENTIALS: await federationFileFor(srv, { impersonate: true }) };
      const s = await createStorage(storageSettings({ redirectTtl: 60 }, env));
      assert.ok(s instanceof GcsStorage);
      assert.equal(s.signsUrls, true);
      assert.deepEqual(s.notices, [
        `blob GETs redirect to V4-signed URLs valid 60 s, signed by IAM signBlob as ${account.client_email} (it needs roles/iam.serviceAccountTokenCreator on itself)`,
      ]);
      await s.put('blobs/sha256/fed', 'federated bytes', { contentType: 'application/octet-stream' });
      assert.equal((await s.read('blobs/sha256/fed'))?.toString(), 'federated bytes');
      assert.deepEqual([srv.stats.stsExchanges, srv.stats.impersonations], [1, 1]);
      const url = await s.redirectUrl!('blobs/sha256/fed', { method: 'GET' });
      assert.match(url!, new RegExp(`^${srv.endpoint}/${bucket}/blobs/sha256/fed\\?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=${encodeURIComponent(account.client_email)}`));
      assert.equal(srv.stats.signBlobs, 1);
      assert.equal(await (await fetch(url!)).text(), 'federated bytes'); // the server checked the signature
      // A token GCS no longer accepts: the whole exchange again, from the subject token file.
      srv.revokeTokens();
      assert.equal((await s.stat('blobs/sha256/fed'))?.size, 15);
      assert.deepEqual([srv.stats.stsExchanges, srv.stats.impersonations], [2, 2]);
    });
  });

  it('uses a federated token directly without impersonation; with no service account to sign as, URLs are public', async () => {
    await withFakeGcs({ serviceAccount: account, workloadIdentity: pool }, async (srv) => {
      const credentials = (await loadGcsCredentials({ keyFile: await federationFileFor(srv, { impersonate: false }) }))!;
      assert.equal(credentials.signer, null);
      const s = new GcsStorage({ bucket: srv.createBucket(), endpoint: srv.endpoint, credentials });
      assert.match(s.notices[0]!, /^no service account to sign URLs as/);
      await s.put('blobs/direct', 'direct');
      assert.equal((await s.read('blobs/direct'))?.toString(), 'direct');
      assert.deepEqual([srv.stats.stsExchanges, srv.stats.impersonations], [1, 0]);
      // A subject token the pool does not accept: an authentication failure, not a hang.
      const file = await federationFileFor(srv, { impersonate: false });
      const config = JSON.parse(await fs.readFile(file, 'utf8')) as { credential_source: { file: string } };
      await fs.writeFile(config.credential_source.file, 'someone else');
      const rejected = new GcsStorage({ bucket: srv.createBucket(), endpoint: srv.endpoint, credentials: (await loadGcsCredentials({ keyFile: file }))! });
      await assert.rejects(rejected.stat('x'), (err: Error) => err instanceof StorageUnavailableError && /authentication failed: .*subject token is invalid/.test(logDetail(err)));
    });
  });

  it('finds Application Default Credentials on GCE: tokens from the metadata server', async () => {
    await withFakeGcs({ serviceAccount: account }, async (srv) => {
      const names = ['GOOGLE_APPLICATION_CREDENTIALS', 'GCE_METADATA_HOST', 'METADATA_SERVER_DETECTION', 'CLOUDSDK_CONFIG', 'GOOGLE_CLOUD_PROJECT'] as const;
      const saved = names.map((n) => [n, process.env[n]] as const);
      const gcloudConfig = await fs.mkdtemp(path.join(tmp, 'gcloud-')); // no well-known credentials file in it
      try {
        delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
        Object.assign(process.env, { CLOUDSDK_CONFIG: gcloudConfig, GOOGLE_CLOUD_PROJECT: 'test-project', GCE_METADATA_HOST: srv.metadataHost, METADATA_SERVER_DETECTION: 'assume-present' });
        const credentials = (await loadGcsCredentials({ adc: true }))!;
        assert.deepEqual([credentials.signer?.email, credentials.signer?.via], [account.client_email, 'iam']);
        const s = new GcsStorage({ bucket: srv.createBucket(), endpoint: srv.endpoint, credentials });
        await s.put('blobs/gce', 'from a VM');
        assert.equal((await s.read('blobs/gce'))?.toString(), 'from a VM');
        assert.equal(srv.stats.metadataTokens, 1);
        // Not on GCE and no credentials anywhere: one clear line at startup.
        process.env.METADATA_SERVER_DETECTION = 'none';
        await assert.rejects(loadGcsCredentials({ adc: true }), (e: Error) => e instanceof ConfigError && /^the gcs storage backend found no Google credentials .*: set GOOGLE_APPLICATION_CREDENTIALS/.test(e.message));
      } finally {
        for (const [n, v] of saved) {
          if (v === undefined) delete process.env[n];
          else process.env[n] = v;
        }
      }
    });
  });

  it('gives up on a request GCS never answers after bounded tries, with a timeout as the reason', async () => {
    await withFakeGcs({ serviceAccount: account }, async (srv) => {
      const s = await makeStorage({ requestTimeoutMs: 300 }, srv);
      await s.put('blobs/slow', Buffer.alloc(64 * 1024, 5));
      srv.hangNext(Infinity);
      const started = Date.now();
      await assert.rejects(s.stat('blobs/slow'), (err: Error) => err instanceof StorageUnavailableError && /the request timed out/.test(err.message) && /no answer from GCS within 300 ms/.test(logDetail(err)));
      assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
      assert.equal(srv.stats.hung, 4); // the first try and 3 retries
      // A download whose body stops halfway is read again (a whole read is repeatable) ...
      srv.hangNext(1, 'body');
      assert.equal((await s.read('blobs/slow'))?.length, 64 * 1024);
      // ... and fails the same way when it keeps stopping.
      srv.hangNext(Infinity, 'body');
      const stalled = Date.now();
      await assert.rejects(s.read('blobs/slow'), (err: Error) => err instanceof StorageUnavailableError && /the request timed out/.test(err.message));
      assert.ok(Date.now() - stalled < 5000, `took ${Date.now() - stalled} ms`);
      srv.hangNext(0);
      assert.equal((await s.read('blobs/slow'))?.length, 64 * 1024);
    });
  });

  it('rides out a short 503 outage by retrying, fails a long one after bounded tries, and works again after it', async () => {
    await withFakeGcs({ serviceAccount: account }, async (srv) => {
      const s = await makeStorage({}, srv);
      srv.failNext(3, 503);
      await s.put('blobs/retried', 'after three 503s', { contentType: 'text/plain' });
      srv.failNext(2, 429);
      assert.equal((await s.stat('blobs/retried'))?.contentType, 'text/plain');
      srv.failNext(Infinity, 503);
      const before = srv.stats.failed;
      await assert.rejects(
        s.read('blobs/retried'),
        (err: Error) =>
          err instanceof StorageUnavailableError && /throttling or unavailable \(HTTP 503\)/.test(err.message) && /gcs .*get blobs\/retried failed: HTTP 503: Backend Error \(injected\)/.test(logDetail(err)),
      );
      assert.equal(srv.stats.failed - before, 4);
      srv.failNext(0); // GCS is back: the same storage object works again
      assert.equal((await s.read('blobs/retried'))?.toString(), 'after three 503s');
      await s.put('blobs/after', 'after the outage');
      assert.equal((await s.read('blobs/after'))?.toString(), 'after the outage');
    });
  });

  it('fails a write whose resumable chunk fails (chunks are not retried) and shows nothing', async () => {
    await withFakeGcs({ serviceAccount: account }, async (srv) => {
      const s = await makeStorage({}, srv);
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
    const s = new GcsStorage({ bucket: 'no-such-bucket', endpoint: srv.endpoint, credentials: await credentialsFor(srv) });
    await assert.rejects(s.stat('x'), (err: Error) => /The specified bucket does not exist/.test(logDetail(err)));
    await assert.rejects(s.get('x'), (err: Error) => /The specified bucket does not exist/.test(logDetail(err)));
    await assert.rejects(s.put('x', 'y'), (err: Error) => /The specified bucket does not exist/.test(logDetail(err)));
  });

  it('is chosen by NIXERY_STORAGE_BACKEND=gcs and configured from GCS_BUCKET and GOOGLE_APPLICATION_CREDENTIALS', async () => {
    const srv = await gcs();
    const bucket = srv.createBucket();
    const keyFile = await keyFileFor(srv);
    const env = { NIXERY_STORAGE_BACKEND: 'gcs', GCS_BUCKET: bucket, GCS_ENDPOINT: srv.endpoint, GOOGLE_APPLICATION_CREDENTIALS: keyFile };
    const s = await createStorage(storageSettings({ redirectTtl: 90 }, env));
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
    const cases: Array<[unknown, RegExp]> = [
      ['not json', /is not JSON$/],
      [{ type: 'gdch_service_account' }, /has type "gdch_service_account"; expected one of service_account, authorized_user, external_account, /],
      [{ type: 'service_account', client_email: 'a@b' }, /: .*private_key/],
      [{ type: 'service_account', client_email: 'a@b', private_key: 'nope' }, /the private_key in .* is not a usable RSA key$/],
      [{ type: 'service_account', ...account, token_uri: 'not a url' }, /the token_uri in .* is not a URL$/],
      [{ type: 'authorized_user', client_id: 'x' }, /: .*client_secret/],
      [{ type: 'external_account', audience: pool.audience, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt' }, /: .*credential source/i],
    ];
    for (const [content, message] of cases) {
      const file = await credentialFile(content);
      await assert.rejects(
        gcsOptionsFromEnv({ GCS_BUCKET: 'ok-bucket', GCS_ENDPOINT: 'http://127.0.0.1:9', GOOGLE_APPLICATION_CREDENTIALS: file }),
        (e: Error) => e instanceof ConfigError && e.message.startsWith('invalid GOOGLE_APPLICATION_CREDENTIALS: ') && message.test(e.message) && !e.message.includes('\n'),
        JSON.stringify(content),
      );
    }
    assert.deepEqual(await gcsOptionsFromEnv({ GCS_BUCKET: 'ok-bucket', STORAGE_EMULATOR_HOST: '127.0.0.1:4443', GCS_PREFIX: 'a/b/' }), {
      bucket: 'ok-bucket',
      endpoint: 'http://127.0.0.1:4443',
      prefix: 'a/b/',
    });
  });
});
