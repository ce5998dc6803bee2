// The S3 backend against a real S3-compatible server (s3rver) started on loopback. Ceph RGW, which
// honours conditional writes on PUT, runs the same contract in s3-rgw.test.ts.

import assert from 'node:assert/strict';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import { ConfigError, logDetail } from '../../src/errors.js';
import { createStorage } from '../../src/storage/index.js';
import { S3Storage, type S3StorageOptions } from '../../src/storage/s3.js';
import { s3Settings as s3OptionsFromEnv, storageSettings } from '../../src/config.js';
import { runStorageContract, collect } from './contract.js';
import { S3RVER_CREDENTIALS, startS3Server, type S3TestServer } from './s3-server.js';
import { conditionalWritesContract } from './conditional-contract.js';
import { startConditionalS3Proxy, type ConditionalS3Proxy } from './s3-conditional-proxy.js';

// Never let the SDK's credential chain look for an instance metadata service.
process.env.AWS_EC2_METADATA_DISABLED = 'true';

let server: S3TestServer | undefined;
async function s3(): Promise<S3TestServer> {
  server ??= await startS3Server();
  return server;
}
after(async () => {
  await server?.stop();
});

async function makeStorage(extra: Partial<S3StorageOptions> = {}): Promise<S3Storage> {
  const srv = await s3();
  return new S3Storage({
    bucket: extra.bucket ?? (await srv.createBucket()),
    endpoint: srv.endpoint,
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    partSize: 5 * 1024 * 1024,
    ...extra,
  });
}

runStorageContract(
  's3 (s3rver, key prefix nixery/)',
  async () => {
    const storage = await makeStorage({ prefix: 'nixery/' });
    return { storage, cleanup: async () => storage.client.destroy() };
  },
  {
    serverDefects: {
      unsortedList: 's3rver lists in directory-walk order; the S3 API (AWS, MinIO, R2, GCS XML) lists in UTF-8 binary order',
      nonAtomicPut: 's3rver writes a PUT straight into the object file; S3 PUT and CompleteMultipartUpload are atomic',
      noConditionalWrites: 's3rver ignores If-None-Match and If-Match on PUT and DELETE; AWS S3 honours them',
    },
  },
);

// Ceph RGW (s3-rgw.test.ts) runs the conditional writes on PUT for real; DELETE with If-Match,
// which it ignores, runs only here.
describe('s3 conditional writes, against s3rver behind a proxy that enforces them as AWS S3 does', () => {
  let proxy: ConditionalS3Proxy | undefined;
  let storage: S3Storage | undefined;
  beforeEach(async () => {
    proxy ??= await startConditionalS3Proxy((await s3()).endpoint);
    storage = await makeStorage({ endpoint: proxy.endpoint, prefix: 'nixery/' });
  });
  afterEach(() => storage?.client.destroy());
  after(async () => {
    assert.ok((proxy?.refused ?? 0) > 0, 'the proxy refused unmet conditions');
    await proxy?.stop();
  });
  conditionalWritesContract(() => storage!);
});

describe('s3 storage', () => {
  it('keeps a multipart upload invisible until commit, then shows it whole', async () => {
    const s = await makeStorage();
    try {
      const w = await s.writer('blobs/multi', { contentType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
      const part = Buffer.alloc(1024 * 1024);
      for (let i = 0; i < 12; i++) {
        part.fill(i);
        await new Promise<void>((resolve, reject) => w.stream.write(Buffer.from(part), (e) => (e ? reject(e) : resolve())));
      }
      await new Promise<void>((resolve) => w.stream.end(() => resolve()));
      // Parts are on the server by now; the object is not.
      assert.equal(await s.stat('blobs/multi'), null);
      await w.commit();
      const info = await s.stat('blobs/multi');
      assert.equal(info?.size, 12 * 1024 * 1024);
      assert.equal(info?.contentType, 'application/vnd.oci.image.layer.v1.tar+gzip');
      const middle = await collect(await s.get('blobs/multi', { start: 5 * 1024 * 1024 - 1, end: 5 * 1024 * 1024 }));
      assert.deepEqual([...middle], [4, 5]);
    } finally {
      s.client.destroy();
    }
  });

  it('signs URLs with the configured lifetime, and they expire', async () => {
    const srv = await s3();
    const bucket = await srv.createBucket();
    const s = await makeStorage({ bucket, redirectTtlSeconds: 60 });
    // X-Amz-Date has whole seconds, so a 1 s URL may already be stale when fetched: only the
    // expiry check uses one. GET, Range and HEAD through signed URLs: the storage contract.
    const shortLived = await makeStorage({ bucket, redirectTtlSeconds: 1 });
    try {
      await s.put('blobs/sha256/0123', 'the bytes of a blob');
      const url = await s.redirectUrl!('blobs/sha256/0123', { method: 'GET' });
      assert.ok(url);
      assert.match(url, /X-Amz-Signature=[0-9a-f]{64}/);
      assert.match(url, /X-Amz-Expires=60(&|$)/);
      assert.equal((await fetch(url)).status, 200);
      const stale = await shortLived.redirectUrl!('blobs/sha256/0123', { method: 'GET' });
      assert.match(stale!, /X-Amz-Expires=1(&|$)/);
      await new Promise((resolve) => setTimeout(resolve, 2100));
      const expired = await fetch(stale!);
      assert.equal(expired.status, 403);
      assert.match(await expired.text(), /AccessDenied|expired/);
    } finally {
      s.client.destroy();
      shortLived.client.destroy();
    }
  });

  it('gives no redirect URL when redirects are off', async () => {
    const s = await makeStorage({ redirects: false });
    try {
      await s.put('blobs/x', 'x');
      assert.equal(await s.redirectUrl!('blobs/x', { method: 'GET' }), null);
    } finally {
      s.client.destroy();
    }
  });

  it('lists past one page of results, in order', async () => {
    const s = await makeStorage();
    try {
      const keys = Array.from({ length: 1105 }, (_, i) => `builds/${String(i).padStart(5, '0')}.json`);
      for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((k) => s.put(k, '{}')));
      const listed: string[] = [];
      for await (const info of s.list('builds/')) listed.push(info.key);
      assert.deepEqual(listed, keys);
    } finally {
      s.client.destroy();
    }
  });

  it('reports a missing bucket as a storage failure, not as a missing key', async () => {
    const srv = await s3();
    const s = new S3Storage({ bucket: 'no-such-bucket-here', endpoint: srv.endpoint, forcePathStyle: true, credentials: S3RVER_CREDENTIALS });
    try {
      await assert.rejects(s.read('blobs/x'), (err: Error) => /s3 \(no-such-bucket-here.*read|get blobs\/x failed: NoSuchBucket/.test(logDetail(err)));
      await assert.rejects(s.put('blobs/x', 'x'), (err: Error) => /NoSuchBucket/.test(logDetail(err)));
    } finally {
      s.client.destroy();
    }
  });

  it('is chosen by NIXERY_STORAGE_BACKEND=s3 and configured from S3_* variables', async () => {
    const srv = await s3();
    const bucket = await srv.createBucket();
    const env = {
      NIXERY_STORAGE_BACKEND: 's3',
      S3_BUCKET: bucket,
      S3_ENDPOINT: srv.endpoint,
      S3_REGION: 'eu-west-3',
      S3_PREFIX: 'team/nixery',
      AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    };
    const s = await createStorage(storageSettings({ redirectTtl: 120 }, env));
    try {
      assert.ok(s instanceof S3Storage);
      assert.equal(s.name, `s3 (${bucket}/team/nixery at ${srv.endpoint})`);
      assert.deepEqual(s.notices, ['blob GETs redirect to signed URLs valid 120 s']);
      await s.put('manifests/a.json', '{"ok":true}');
      assert.equal((await s.read('manifests/a.json'))?.toString(), '{"ok":true}');
      const url = await s.redirectUrl!('manifests/a.json', { method: 'GET' });
      assert.match(url!, new RegExp(`/${bucket}/team/nixery/manifests/a\\.json\\?`));
      assert.match(url!, /X-Amz-Expires=120/);
      assert.match(url!, /eu-west-3/);
      const off = await createStorage(storageSettings({ blobRedirect: false }, env));
      assert.equal(await off.redirectUrl!('manifests/a.json', { method: 'GET' }), null);
      (off as S3Storage).client.destroy();
    } finally {
      (s as S3Storage).client.destroy();
    }
  });

  it('stops with one clear ConfigError for missing or invalid S3 settings', () => {
    const bad: Array<[NodeJS.ProcessEnv, RegExp]> = [
      [{}, /^the s3 storage backend needs S3_BUCKET/],
      [{ S3_BUCKET: 'UPPER_case' }, /^invalid S3_BUCKET: "UPPER_case"/],
      [{ S3_BUCKET: 'ok-bucket', S3_ENDPOINT: 'not a url' }, /^invalid S3_ENDPOINT: "not a url" is not a URL/],
      [{ S3_BUCKET: 'ok-bucket', S3_ENDPOINT: 'ftp://host' }, /^invalid S3_ENDPOINT: must be an http or https URL/],
      [{ S3_BUCKET: 'ok-bucket', S3_FORCE_PATH_STYLE: 'maybe' }, /^invalid S3_FORCE_PATH_STYLE: must be true or false, got "maybe"/],
      [{ S3_BUCKET: 'ok-bucket', S3_PREFIX: '../up' }, /^invalid S3_PREFIX/],
    ];
    for (const [env, message] of bad) {
      assert.throws(() => s3OptionsFromEnv(env), (err: Error) => err instanceof ConfigError && message.test(err.message), JSON.stringify(env));
    }
    assert.deepEqual(s3OptionsFromEnv({ S3_BUCKET: 'ok-bucket' }), { bucket: 'ok-bucket', region: 'us-east-1', forcePathStyle: false });
    assert.deepEqual(s3OptionsFromEnv({ S3_BUCKET: 'ok-bucket', S3_ENDPOINT: 'http://127.0.0.1:9000', S3_FORCE_PATH_STYLE: 'false', AWS_REGION: 'ap-south-1' }), {
      bucket: 'ok-bucket',
      endpoint: 'http://127.0.0.1:9000',
      region: 'ap-south-1',
      forcePathStyle: false,
    });
  });
});
