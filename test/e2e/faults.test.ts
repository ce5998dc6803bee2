// Fault injection on real storage: damaged bytes (blobs under and over 16 MB, from disk and from
// the hot cache, manifests, records), a full disk, a read-only store, the store replaced by a
// file, and an S3 server that dies in the middle of a pull. Each case asserts what a client sees
// (a failed transfer or a 503 JSON error, never a wrong byte) and that the registry recovers
// without a restart.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { metric, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { flipByteInFile } from '../helpers/damage.js';
import { noise, packageSetWithBigFile, type TestPackageSet } from '../helpers/pkgsets.js';
import { S3RVER_CREDENTIALS, startS3Server } from '../storage/s3-server.js';
import { startFakeGcs } from '../storage/gcs-server.js';
import { blobKey } from '../../src/builder/layout.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';

const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Manifest {
  config: { digest: string; size: number };
  layers: Array<{ digest: string; size: number }>;
}

async function getManifest(r: TestRegistry, name: string): Promise<{ digest: string; manifest: Manifest; bytes: Buffer }> {
  const res = await fetch(`${r.url}/v2/${name}/manifests/latest`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
  const bytes = Buffer.from(await res.arrayBuffer());
  assert.equal(res.status, 200, bytes.toString());
  const digest = res.headers.get('docker-content-digest')!;
  assert.equal(sha256(bytes), digest);
  return { digest, manifest: JSON.parse(bytes.toString()) as Manifest, bytes };
}

/** A whole pull as a client does it: every blob's bytes must hash to its digest. */
async function pull(r: TestRegistry, name: string): Promise<Manifest> {
  const { manifest } = await getManifest(r, name);
  for (const { digest, size } of [manifest.config, ...manifest.layers]) {
    const bytes = await blobBytes(r, name, digest);
    assert.equal(bytes.length, size);
  }
  return manifest;
}

/** GET of a blob that must succeed with exactly its bytes. */
async function blobBytes(r: TestRegistry, name: string, digest: string): Promise<Buffer> {
  const res = await fetch(`${r.url}/v2/${name}/blobs/${digest}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  assert.equal(res.status, 200, bytes.subarray(0, 500).toString());
  assert.equal(sha256(bytes), digest, 'the bytes served are the bytes of the digest');
  return bytes;
}

/**
 * What a client gets for a blob that is damaged in storage: either a transfer that fails before
 * it completes, or an error status; never a complete 200 with other bytes.
 */
async function damagedBlobAnswer(r: TestRegistry, name: string, digest: string): Promise<'failed transfer' | number> {
  const res = await fetch(`${r.url}/v2/${name}/blobs/${digest}`);
  try {
    const bytes = Buffer.from(await res.arrayBuffer());
    if (res.status === 200) assert.equal(sha256(bytes), digest, 'a complete 200 carries the right bytes');
    return res.status;
  } catch {
    assert.equal(res.status, 200);
    return 'failed transfer';
  }
}

const flipByte = flipByteInFile;

const blobFile = (storagePath: string, digest: string) => path.join(storagePath, 'blobs', 'sha256', digest.slice('sha256:'.length));

async function expectUnavailable(res: Response, why: RegExp, storagePath?: string): Promise<string> {
  const text = await res.text();
  assert.equal(res.status, 503, text);
  assert.match(res.headers.get('retry-after') ?? '', /^\d+$/, 'a 503 says when to retry');
  assert.equal(res.headers.get('content-type'), 'application/json');
  const { errors } = JSON.parse(text) as { errors: Array<{ code: string; message: string }> };
  assert.equal(errors[0]!.code, 'UNAVAILABLE');
  assert.match(errors[0]!.message, why);
  if (storagePath) assert.ok(!text.includes(storagePath) && !text.includes(tmpdir()), `no server path in ${text}`);
  return errors[0]!.message;
}

async function status(url: string): Promise<number> {
  const res = await fetch(url);
  await res.arrayBuffer();
  return res.status;
}

describe('faults: damaged bytes are never served', () => {
  let pkgs: TestPackageSet;
  let storagePath: string;
  before(async () => {
    pkgs = await packageSetWithBigFile(20 * 1024 * 1024);
  });
  after(() => pkgs.cleanup());

  const registry = async (env: Record<string, string> = {}): Promise<TestRegistry> => startRegistry({ NIXERY_PKGS_PATH: pkgs.dir, ...env }, { storagePath });
  const fresh = async () => {
    storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-faults-'));
  };
  const cleanup = () => rm(storagePath, { recursive: true, force: true });

  test('a flipped byte in a small layer: the registry that built it rebuilds it and serves the right bytes', async () => {
    await fresh();
    const r = await registry();
    try {
      const { manifest } = await getManifest(r, 'hello');
      const layer = manifest.layers[0]!;
      await flipByte(blobFile(storagePath, layer.digest));
      await blobBytes(r, 'hello', layer.digest);
      assert.equal(await metric(r.url, 'nixery_integrity_failures_total'), 1);
      assert.equal(await metric(r.url, 'nixery_blob_repairs_total'), 1);
      // Storage holds the good bytes again.
      assert.equal(sha256(await readFile(blobFile(storagePath, layer.digest))), layer.digest);
    } finally {
      await r.close();
      await cleanup();
    }
  });

  test('a flipped byte seen by a registry that does not know the image: 503, then the pull rebuilds it', async () => {
    await fresh();
    const builder = await registry();
    const { manifest } = await getManifest(builder, 'hello');
    await builder.close();
    const layer = manifest.layers[manifest.layers.length - 1]!;
    await flipByte(blobFile(storagePath, layer.digest));
    const r = await registry();
    try {
      const res = await fetch(`${r.url}/v2/hello/blobs/${layer.digest}`);
      await expectUnavailable(res, /failed its integrity check and was removed; retry/, storagePath);
      assert.equal(await metric(r.url, 'nixery_integrity_failures_total'), 1);
      // The client retries the pull: the manifest by tag finds the layer gone and rebuilds it.
      const again = await pull(r, 'hello');
      assert.deepEqual(again, manifest, 'the rebuilt image is the same image');
    } finally {
      await r.close();
      await cleanup();
    }
  });

  test('the hot-blob cache serves only what it checked; a blob streamed from disk is checked per stored version', async () => {
    await fresh();
    const cached = await registry();
    try {
      const { manifest } = await getManifest(cached, 'hello');
      const layer = manifest.layers[0]!;
      await blobBytes(cached, 'hello', layer.digest); // now in memory, checked
      await flipByte(blobFile(storagePath, layer.digest));
      await blobBytes(cached, 'hello', layer.digest); // still the checked bytes from memory
      assert.equal(await metric(cached.url, 'nixery_integrity_failures_total'), 0);
    } finally {
      await cached.close();
    }
    // Without the cache, small blobs are read from disk: a checked version streams as is, a
    // changed file is a new version and is checked again.
    const streamed = await registry({ NIXERY_BLOB_CACHE_MB: '0' });
    try {
      const { manifest } = await getManifest(streamed, 'hello');
      const layer = manifest.layers[0]!;
      // The damage from above: found, removed and rebuilt.
      await blobBytes(streamed, 'hello', layer.digest);
      await blobBytes(streamed, 'hello', layer.digest);
      await flipByte(blobFile(storagePath, layer.digest));
      await blobBytes(streamed, 'hello', layer.digest);
      assert.equal(await metric(streamed.url, 'nixery_integrity_failures_total'), 2);
    } finally {
      await streamed.close();
      await cleanup();
    }
  });

  test('a flipped byte in a layer over 16 MB: the transfer fails (never a complete 200), then it is rebuilt', async () => {
    await fresh();
    const r = await registry();
    try {
      const { manifest } = await getManifest(r, 'big');
      const big = manifest.layers.find((l) => l.size > 16 * 1024 * 1024);
      assert.ok(big, `a layer over 16 MB: ${JSON.stringify(manifest.layers.map((l) => l.size))}`);
      await flipByte(blobFile(storagePath, big.digest), 1000);
      assert.equal(await damagedBlobAnswer(r, 'big', big.digest), 'failed transfer');
      assert.equal(await metric(r.url, 'nixery_integrity_failures_total'), 1);
      await blobBytes(r, 'big', big.digest);
      // A range of a damaged large blob: the whole blob is checked before any range is served.
      await flipByte(blobFile(storagePath, big.digest), big.size - 10);
      const ranged = await fetch(`${r.url}/v2/big/blobs/${big.digest}`, { headers: { Range: 'bytes=0-99' } });
      const part = Buffer.from(await ranged.arrayBuffer());
      assert.equal(ranged.status, 206);
      const whole = await blobBytes(r, 'big', big.digest);
      assert.deepEqual(part, whole.subarray(0, 100));
      assert.equal(await metric(r.url, 'nixery_integrity_failures_total'), 2);
    } finally {
      await r.close();
      await cleanup();
    }
  });

  test('the layer build cache never hands out a damaged layer: a later image repacks it', async () => {
    await fresh();
    const r = await registry();
    try {
      const first = await getManifest(r, 'hello');
      const shared = first.manifest.layers[0]!;
      await flipByte(blobFile(storagePath, shared.digest));
      const packed = await metric(r.url, 'nixery_layers_packed_total');
      // shell/hello shares that layer: the builder checks the changed file before reusing it.
      const later = await pull(r, 'shell/hello');
      assert.ok(later.layers.some((l) => l.digest === shared.digest), 'the layer is part of the later image');
      assert.equal(await metric(r.url, 'nixery_integrity_failures_total'), 1, 'found by the builder');
      assert.equal(await metric(r.url, 'nixery_blob_repairs_total'), 0, 'nothing was served damaged, so nothing needed repair');
      assert.ok((await metric(r.url, 'nixery_layers_packed_total')) > packed);
      assert.equal(sha256(await readFile(blobFile(storagePath, shared.digest))), shared.digest);
    } finally {
      await r.close();
      await cleanup();
    }
  });

  test('a flipped byte in a stored manifest: by digest it is checked before a byte is sent', async () => {
    await fresh();
    const builder = await registry();
    const { digest, bytes } = await getManifest(builder, 'hello');
    await flipByte(blobFile(storagePath, digest));
    // The registry that built it rebuilds it.
    let res = await fetch(`${builder.url}/v2/hello/manifests/${digest}`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    await builder.close();
    // Another one cannot: 503, and the pull by tag puts it right.
    await flipByte(blobFile(storagePath, digest));
    const r = await registry();
    try {
      res = await fetch(`${r.url}/v2/hello/manifests/${digest}`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
      await expectUnavailable(res, /integrity check/, storagePath);
      const again = await getManifest(r, 'hello');
      assert.equal(again.digest, digest);
      res = await fetch(`${r.url}/v2/hello/manifests/${digest}`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    } finally {
      await r.close();
      await cleanup();
    }
  });

  test('a flipped byte in the manifest and layer records: not trusted, the image is rebuilt to the same bytes', async () => {
    await fresh();
    const builder = await registry();
    const { digest } = await getManifest(builder, 'shell/hello');
    await builder.close();
    const records = [
      ...(await readdir(path.join(storagePath, 'manifests'))).map((f) => path.join(storagePath, 'manifests', f)),
      ...(await readdir(path.join(storagePath, 'builds'))).map((f) => path.join(storagePath, 'builds', f)),
    ];
    for (const file of records) await flipByte(file);
    const r = await registry();
    try {
      assert.equal((await getManifest(r, 'shell/hello')).digest, digest);
      await pull(r, 'shell/hello');
      assert.equal(await metric(r.url, 'nixery_integrity_failures_total'), records.length);
      assert.ok((await metric(r.url, 'nixery_layers_packed_total')) > 0, 'layers were packed again');
    } finally {
      await r.close();
      await cleanup();
    }
  });
});

describe('faults: failing storage answers 503 and recovers without a restart', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'nixery-faults-fs-'));
  });
  after(() => rm(root, { recursive: true, force: true }));

  const mountTmpfs = async (dir: string, size: string) => {
    await mkdir(dir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  };
  /** A full or read-only disk is a tmpfs of our own: that takes root (CAP_SYS_ADMIN). */
  const cannotMount = (() => {
    try {
      execFileSync('mount', ['--fake', '-t', 'tmpfs', 'tmpfs', tmpdir()], { stdio: 'ignore' });
      return process.getuid?.() === 0 ? false : 'mounting a tmpfs needs root';
    } catch {
      return 'mount is not available';
    }
  })();
  const unmount = (dir: string) => execFileSync('umount', ['-l', dir]);

  test('a full disk: 503 naming the cause, /readyz fails and /healthz stays ok; freeing space heals it', { skip: cannotMount }, async () => {
    const storagePath = path.join(root, 'full');
    await mountTmpfs(storagePath, '16m');
    const r = await startRegistry({}, { storagePath });
    try {
      await pull(r, 'hello');
      // Fill the disk, leaving less than any layer needs.
      const filler = path.join(storagePath, 'filler');
      const fh = await open(filler, 'w');
      const block = Buffer.alloc(64 * 1024, 1);
      try {
        for (;;) await fh.write(block);
      } catch (err) {
        assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
      } finally {
        await fh.close();
      }
      const message = await expectUnavailable(await fetch(`${r.url}/v2/shell/curl/manifests/latest`), /storage device is full/, storagePath);
      assert.doesNotMatch(message, /\/tmp|\.tmp/);
      assert.equal(await status(`${r.url}/readyz`), 503);
      assert.equal(await status(`${r.url}/healthz`), 200);
      // What is built is still served.
      await pull(r, 'hello');
      await rm(filler);
      assert.equal(await status(`${r.url}/readyz`), 503, 'readiness is cached for a few seconds');
      await new Promise((res) => setTimeout(res, 3100));
      assert.equal(await status(`${r.url}/readyz`), 200);
      await pull(r, 'shell/curl');
      // Nothing half-written is left behind.
      assert.deepEqual(await readdir(path.join(storagePath, '.tmp')), []);
    } finally {
      await r.close();
      unmount(storagePath);
    }
  });

  test('a read-only store: reads go on, builds answer 503 until it is writable again', { skip: cannotMount }, async () => {
    const storagePath = path.join(root, 'ro');
    await mountTmpfs(storagePath, '64m');
    const r = await startRegistry({}, { storagePath });
    try {
      await pull(r, 'hello');
      execFileSync('mount', ['-o', 'remount,ro', storagePath]);
      await expectUnavailable(await fetch(`${r.url}/v2/shell/curl/manifests/latest`), /read-only/, storagePath);
      assert.equal(await status(`${r.url}/readyz`), 503);
      await pull(r, 'hello');
      execFileSync('mount', ['-o', 'remount,rw', storagePath]);
      await pull(r, 'shell/curl');
      await new Promise((res) => setTimeout(res, 3100));
      assert.equal(await status(`${r.url}/readyz`), 200);
    } finally {
      await r.close();
      unmount(storagePath);
    }
  });

  test('the store replaced by a file: 503 (not 404) for blobs and builds, until it is back', async () => {
    const storagePath = path.join(root, 'replaced');
    const r = await startRegistry({ NIXERY_BLOB_CACHE_MB: '0' }, { storagePath });
    try {
      const manifest = await pull(r, 'hello');
      await rename(storagePath, `${storagePath}.aside`);
      await writeFile(storagePath, 'not a directory');
      const layer = manifest.layers[0]!.digest;
      await expectUnavailable(await fetch(`${r.url}/v2/hello/blobs/${layer}`), /not a directory/, storagePath);
      await expectUnavailable(await fetch(`${r.url}/v2/hello/blobs/sha256:${'0'.repeat(64)}`), /not a directory/, storagePath);
      await expectUnavailable(await fetch(`${r.url}/v2/shell/curl/manifests/latest`), /not a directory/, storagePath);
      assert.equal(await status(`${r.url}/readyz`), 503);
      await rm(storagePath);
      await rename(`${storagePath}.aside`, storagePath);
      await pull(r, 'hello');
      await pull(r, 'shell/curl');
    } finally {
      await r.close();
    }
  });

  test('a storage directory copied without its file times still serves everything', async () => {
    const storagePath = path.join(root, 'original');
    const builder = await startRegistry({}, { storagePath });
    const { digest } = await getManifest(builder, 'shell/hello');
    await builder.close();
    const copy = path.join(root, 'copy');
    execFileSync('cp', ['-r', storagePath, copy]); // no -p: every mtime changes
    const before = (await stat(path.join(storagePath, 'blobs'))).mtimeMs;
    assert.notEqual((await stat(path.join(copy, 'blobs'))).mtimeMs, before);
    const r = await startRegistry({}, { storagePath: copy });
    const nixRuns = r.app.metrics.nix.invocations;
    try {
      const res = await fetch(`${r.url}/v2/shell/hello/manifests/${digest}`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), MEDIA_TYPES.ociManifest);
      await res.arrayBuffer();
      await pull(r, 'shell/hello');
      assert.equal(r.app.metrics.nix.invocations, nixRuns, 'served from the copied storage, no rebuild');
    } finally {
      await r.close();
    }
  });
});

describe('faults: object stores that fail answer 503 and recover without a restart', () => {
  /** Object-store settings are read from the process environment (the AWS SDK's credentials too). */
  const withEnv = async <T>(env: Record<string, string>, fn: () => Promise<T>): Promise<T> => {
    const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
    Object.assign(process.env, env);
    try {
      return await fn();
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  };

  test('s3rver killed in the middle of a pull: the transfer fails, 503 while it is down, then it serves again', async () => {
    const s3 = await startS3Server();
    try {
      const env = {
        NIXERY_STORAGE_BACKEND: 's3',
        S3_BUCKET: await s3.createBucket(),
        S3_ENDPOINT: s3.endpoint,
        AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
        AWS_EC2_METADATA_DISABLED: 'true',
        NIXERY_BLOB_REDIRECT: 'false',
        NIXERY_BLOB_CACHE_MB: '0',
      };
      await withEnv(env, async () => {
        const r = await startRegistry(env);
        try {
          // A 64 MB blob: more than the socket buffers between the three processes hold.
          const bytes = noise(64 * 1024 * 1024, 's3-crash');
          const digest = sha256(bytes);
          await r.app.storage.put(blobKey(digest), bytes, { contentType: 'application/octet-stream' });
          await pull(r, 'hello');

          const res = await fetch(`${r.url}/v2/hello/blobs/${digest}`);
          assert.equal(res.status, 200);
          const reader = res.body!.getReader();
          await reader.read(); // the transfer has begun
          await s3.crash();
          let received = 0;
          const outcome = await (async () => {
            try {
              for (;;) {
                const { done, value } = await reader.read();
                if (done) return 'complete';
                received += value.length;
              }
            } catch {
              return 'failed';
            }
          })();
          assert.equal(outcome, 'failed', `a transfer cut by the storage must fail, got ${received} bytes and ${outcome}`);

          await expectUnavailable(await fetch(`${r.url}/v2/hello/blobs/${digest}`), /connection was refused|timed out/);
          await expectUnavailable(await fetch(`${r.url}/v2/shell/curl/manifests/latest`), /connection was refused|timed out/);
          assert.equal(await status(`${r.url}/readyz`), 503);

          await s3.restart();
          assert.deepEqual(await blobBytes(r, 'hello', digest), bytes);
          await pull(r, 'shell/curl');
          await new Promise((res) => setTimeout(res, 3100));
          assert.equal(await status(`${r.url}/readyz`), 200);
        } finally {
          await r.close();
          (r.app.backend as unknown as { client: { destroy(): void } }).client.destroy();
        }
      });
    } finally {
      await s3.stop();
    }
  });

  test('the GCS server answering 503: 503 to clients naming the cause, then it serves again', async () => {
    const account = JSON.parse(await readFile(new URL('../../../test/storage/fixtures/gcs-conformance-service-account.json', import.meta.url), 'utf8')) as Record<string, string>;
    const gcs = await startFakeGcs({ serviceAccount: { client_email: account.client_email!, private_key: account.private_key! } });
    const dir = await mkdtemp(path.join(tmpdir(), 'nixery-faults-gcs-'));
    try {
      const keyFile = path.join(dir, 'key.json');
      await writeFile(keyFile, JSON.stringify({ ...account, token_uri: gcs.tokenUri }));
      const env = {
        NIXERY_STORAGE_BACKEND: 'gcs',
        GCS_BUCKET: gcs.createBucket(),
        GCS_ENDPOINT: gcs.endpoint,
        GOOGLE_APPLICATION_CREDENTIALS: keyFile,
        NIXERY_BLOB_REDIRECT: 'false',
        NIXERY_BLOB_CACHE_MB: '0',
      };
      await withEnv(env, async () => {
        const r = await startRegistry(env);
        try {
          const manifest = await pull(r, 'hello');
          gcs.failNext(Infinity, 503);
          await expectUnavailable(await fetch(`${r.url}/v2/shell/curl/manifests/latest`), /HTTP 503/);
          await expectUnavailable(await fetch(`${r.url}/v2/other/blobs/${manifest.layers[0]!.digest}`), /HTTP 503/);
          assert.equal(await status(`${r.url}/readyz`), 503);
          gcs.failNext(0);
          await pull(r, 'shell/curl');
          await pull(r, 'hello');
          await new Promise((res) => setTimeout(res, 3100));
          assert.equal(await status(`${r.url}/readyz`), 200);
        } finally {
          await r.close();
        }
      });
    } finally {
      await gcs.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
