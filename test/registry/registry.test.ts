// The whole HTTP stack in-process (the production builder on the stand-in Nix stage, real
// filesystem storage, loopback socket): every route, method, header, status code and error the
// registry promises. What needs real Nix (its timeouts) is in test/registry-nix/.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { startStandInRegistry as startRegistry, type StandInRegistry } from '../helpers/registry.js';
import { StandInNix } from '../helpers/stand-in-nix.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';

const OCI = MEDIA_TYPES.ociManifest;
const DOCKER = MEDIA_TYPES.dockerManifest;
const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface OciError {
  errors: Array<{ code: string; message: string; detail?: unknown }>;
}

async function errorOf(res: Response): Promise<OciError['errors'][number]> {
  assert.equal(res.headers.get('content-type'), 'application/json');
  const body = (await res.json()) as OciError;
  assert.equal(body.errors.length, 1);
  return body.errors[0]!;
}

describe('registry HTTP API', () => {
  let r: StandInRegistry;
  let manifestBytes: Buffer;
  let manifestDigest: string;
  let manifest: { config: { digest: string; mediaType: string; size: number }; layers: Array<{ digest: string; mediaType: string; size: number }> };

  before(async () => {
    r = await startRegistry();
    const res = await fetch(`${r.url}/v2/hello/manifests/latest`);
    assert.equal(res.status, 200, await res.clone().text());
    manifestBytes = Buffer.from(await res.arrayBuffer());
    manifestDigest = res.headers.get('docker-content-digest')!;
    manifest = JSON.parse(manifestBytes.toString('utf8'));
  });
  after(() => r.close());

  test('GET and HEAD /v2/ answer 200 with the API version header', async () => {
    for (const method of ['GET', 'HEAD']) {
      for (const p of ['/v2/', '/v2', '/v2/?x=1']) {
        const res = await fetch(`${r.url}${p}`, { method });
        assert.equal(res.status, 200, `${method} ${p}`);
        assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
      }
    }
  });

  test('other methods on registry routes are 405 UNSUPPORTED', async () => {
    const cases: Array<[string, string]> = [
      ['POST', '/v2/'],
      ['PUT', '/v2/hello/manifests/latest'],
      ['DELETE', '/v2/hello/manifests/latest'],
      ['POST', '/v2/hello/blobs/uploads/'],
      ['PATCH', `/v2/hello/blobs/${'sha256:' + '0'.repeat(64)}`],
      ['DELETE', `/v2/hello/blobs/${'sha256:' + '0'.repeat(64)}`],
    ];
    for (const [method, p] of cases) {
      const res = await fetch(`${r.url}${p}`, { method });
      assert.equal(res.status, 405, `${method} ${p}`);
      const err = await errorOf(res);
      assert.equal(err.code, 'UNSUPPORTED');
      assert.match(err.message, /pull-only/);
    }
  });

  test('unknown paths under /v2/ are 404 with a JSON error', async () => {
    for (const p of ['/v2/_catalogue', '/v2/hello/something/else', '/v3/']) {
      const res = await fetch(`${r.url}${p}`);
      assert.equal(res.status, 404, p);
      assert.equal((await errorOf(res)).code, 'NOT_FOUND');
    }
  });

  test('manifest by tag: OCI by default, with digest, length and ETag', async () => {
    const res = await fetch(`${r.url}/v2/hello/manifests/latest`);
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(res.headers.get('content-type'), OCI);
    assert.equal(Number(res.headers.get('content-length')), body.length);
    assert.equal(res.headers.get('docker-content-digest'), sha256(body));
    assert.equal(res.headers.get('etag'), `"${sha256(body)}"`);
    const m = JSON.parse(body.toString());
    assert.equal(m.mediaType, OCI);
    assert.equal(m.config.mediaType, MEDIA_TYPES.ociConfig);
    for (const l of m.layers) assert.equal(l.mediaType, MEDIA_TYPES.ociLayerGzip);
    assert.deepEqual(body, manifestBytes, 'the same bytes every time');
  });

  test('manifest by tag: query strings are ignored', async () => {
    const res = await fetch(`${r.url}/v2/hello/manifests/latest?ns=example.org&x=1`);
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), manifestBytes);
  });

  test('Accept negotiation: Docker schema 2 only when the client accepts only Docker types', async () => {
    const docker = await fetch(`${r.url}/v2/hello/manifests/latest`, { headers: { Accept: `${DOCKER}, ${MEDIA_TYPES.dockerManifestList}` } });
    assert.equal(docker.headers.get('content-type'), DOCKER);
    const dm = JSON.parse(await docker.text());
    assert.equal(dm.mediaType, DOCKER);
    assert.equal(dm.config.mediaType, MEDIA_TYPES.dockerConfig);
    for (const l of dm.layers) assert.equal(l.mediaType, MEDIA_TYPES.dockerLayerGzip);
    assert.deepEqual(
      dm.layers.map((l: { digest: string }) => l.digest),
      manifest.layers.map((l) => l.digest),
      'both forms reference the same blobs',
    );
    for (const accept of [`${OCI}, ${DOCKER}`, `${DOCKER};q=0.5, ${OCI}`, '*/*', `${MEDIA_TYPES.ociIndex}, ${OCI}`]) {
      const res = await fetch(`${r.url}/v2/hello/manifests/latest`, { headers: { Accept: accept } });
      assert.equal(res.headers.get('content-type'), OCI, accept);
      await res.arrayBuffer();
    }
  });

  test('HEAD on a manifest gives the GET headers without a body', async () => {
    for (const ref of ['latest', manifestDigest]) {
      const res = await fetch(`${r.url}/v2/hello/manifests/${ref}`, { method: 'HEAD' });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('docker-content-digest'), manifestDigest);
      assert.equal(Number(res.headers.get('content-length')), manifestBytes.length);
      assert.equal(res.headers.get('content-type'), OCI);
      assert.equal((await res.arrayBuffer()).byteLength, 0);
    }
  });

  test('If-None-Match with the digest answers 304', async () => {
    const res = await fetch(`${r.url}/v2/hello/manifests/latest`, { headers: { 'If-None-Match': `"${manifestDigest}"` } });
    assert.equal(res.status, 304);
    const byDigest = await fetch(`${r.url}/v2/hello/manifests/${manifestDigest}`, { headers: { 'If-None-Match': `"${manifestDigest}"` } });
    assert.equal(byDigest.status, 304);
  });

  test('manifest by digest is byte-for-byte what the tag served, in both forms', async () => {
    const res = await fetch(`${r.url}/v2/hello/manifests/${manifestDigest}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), OCI);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), manifestBytes);
    const docker = await fetch(`${r.url}/v2/hello/manifests/latest`, { headers: { Accept: DOCKER } });
    const dockerBytes = Buffer.from(await docker.arrayBuffer());
    const dockerDigest = docker.headers.get('docker-content-digest')!;
    const again = await fetch(`${r.url}/v2/hello/manifests/${dockerDigest}`);
    assert.equal(again.headers.get('content-type'), DOCKER);
    assert.deepEqual(Buffer.from(await again.arrayBuffer()), dockerBytes);
  });

  test('blobs: config with the config media type, layers streamed with digest and caching headers', async () => {
    const config = await fetch(`${r.url}/v2/hello/blobs/${manifest.config.digest}`);
    assert.equal(config.status, 200);
    assert.equal(config.headers.get('content-type'), MEDIA_TYPES.ociConfig);
    const configBytes = Buffer.from(await config.arrayBuffer());
    assert.equal(sha256(configBytes), manifest.config.digest);
    const parsed = JSON.parse(configBytes.toString());
    assert.equal(parsed.architecture, 'amd64');
    assert.equal(parsed.os, 'linux');
    for (const layer of manifest.layers) {
      const res = await fetch(`${r.url}/v2/hello/blobs/${layer.digest}`);
      assert.equal(res.status, 200);
      const bytes = Buffer.from(await res.arrayBuffer());
      assert.equal(bytes.length, layer.size);
      assert.equal(sha256(bytes), layer.digest);
      assert.equal(res.headers.get('docker-content-digest'), layer.digest);
      assert.equal(res.headers.get('etag'), `"${layer.digest}"`);
      assert.match(res.headers.get('cache-control')!, /max-age=31536000/);
      assert.equal(Number(res.headers.get('content-length')), layer.size);
    }
  });

  test('blobs: HEAD, Range 206 and 416', async () => {
    const layer = manifest.layers[0]!;
    const head = await fetch(`${r.url}/v2/hello/blobs/${layer.digest}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(Number(head.headers.get('content-length')), layer.size);
    assert.equal(head.headers.get('docker-content-digest'), layer.digest);

    const full = Buffer.from(await (await fetch(`${r.url}/v2/hello/blobs/${layer.digest}`)).arrayBuffer());
    const part = await fetch(`${r.url}/v2/hello/blobs/${layer.digest}`, { headers: { Range: 'bytes=10-19' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 10-19/${layer.size}`);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), full.subarray(10, 20));
    const suffix = await fetch(`${r.url}/v2/hello/blobs/${layer.digest}`, { headers: { Range: 'bytes=-5' } });
    assert.equal(suffix.status, 206);
    assert.deepEqual(Buffer.from(await suffix.arrayBuffer()), full.subarray(full.length - 5));
    const open = await fetch(`${r.url}/v2/hello/blobs/${layer.digest}`, { headers: { Range: `bytes=${layer.size - 3}-` } });
    assert.equal(open.status, 206);
    assert.deepEqual(Buffer.from(await open.arrayBuffer()), full.subarray(layer.size - 3));

    const bad = await fetch(`${r.url}/v2/hello/blobs/${layer.digest}`, { headers: { Range: `bytes=${layer.size}-` } });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers.get('content-range'), `bytes */${layer.size}`);
    assert.equal((await errorOf(bad)).code, 'RANGE_INVALID');
  });

  test('missing blobs and manifests are 404 with the right code, never an empty 200', async () => {
    const missing = `sha256:${'ab'.repeat(32)}`;
    const blob = await fetch(`${r.url}/v2/hello/blobs/${missing}`);
    assert.equal(blob.status, 404);
    assert.equal((await errorOf(blob)).code, 'BLOB_UNKNOWN');
    const head = await fetch(`${r.url}/v2/hello/blobs/${missing}`, { method: 'HEAD' });
    assert.equal(head.status, 404);
    const m = await fetch(`${r.url}/v2/hello/manifests/${missing}`);
    assert.equal(m.status, 404);
    assert.equal((await errorOf(m)).code, 'MANIFEST_UNKNOWN');
    // A layer digest is a blob, not a manifest.
    const notManifest = await fetch(`${r.url}/v2/hello/manifests/${manifest.layers[0]!.digest}`);
    assert.equal(notManifest.status, 404);
    assert.equal((await errorOf(notManifest)).code, 'MANIFEST_UNKNOWN');
  });

  test('invalid names, tags and digests', async () => {
    const badName = await fetch(`${r.url}/v2/Hello/manifests/latest`);
    assert.equal(badName.status, 400);
    const nameErr = await errorOf(badName);
    assert.equal(nameErr.code, 'NAME_INVALID');
    assert.match(nameErr.message, /upper-case/);

    const badTag = await fetch(`${r.url}/v2/hello/manifests/.INVALID_MANIFEST_NAME`, { method: 'GET' });
    assert.equal(badTag.status, 404);
    assert.equal((await errorOf(badTag)).code, 'MANIFEST_UNKNOWN');
    const headBadTag = await fetch(`${r.url}/v2/hello/manifests/.INVALID_MANIFEST_NAME`, { method: 'HEAD' });
    assert.equal(headBadTag.status, 404);

    for (const p of ['/v2/hello/manifests/sha256:totallywrong', '/v2/hello/blobs/sha256:totallywrong', '/v2/hello/blobs/md5:abc']) {
      const res = await fetch(`${r.url}${p}`);
      assert.equal(res.status, 400, p);
      assert.equal((await errorOf(res)).code, 'DIGEST_INVALID');
    }
    const long = await fetch(`${r.url}/v2/${'a'.repeat(256)}/manifests/latest`);
    assert.equal(long.status, 400);
    assert.match((await errorOf(long)).message, /at most 255/);
  });

  test('unknown packages: 404 NAME_UNKNOWN naming every missing package', async () => {
    const res = await fetch(`${r.url}/v2/hello/nosuchthing/notapackage/manifests/latest`);
    assert.equal(res.status, 404);
    const err = await errorOf(res);
    assert.equal(err.code, 'NAME_UNKNOWN');
    assert.match(err.message, /nosuchthing/);
    assert.match(err.message, /notapackage/);
    assert.doesNotMatch(err.message, /hello/);
  });

  test('a failed Nix build is a 500 carrying the first lines of the error, and shows on the index page escaped', async () => {
    const res = await fetch(`${r.url}/v2/broken/manifests/latest`);
    assert.equal(res.status, 500);
    const err = await errorOf(res);
    assert.equal(err.code, 'UNKNOWN');
    assert.match(err.message, /broken/);
    // fetch() may not set Host; node:http may.
    const page = await rawGet(`${r.url}/`, { Host: '<script>alert(1)</script>' });
    assert.equal(page.status, 200);
    assert.match(page.headers['content-type']!, /^text\/html/);
    const html = page.body;
    assert.doesNotMatch(html, /<script>alert/);
    assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;\/shell\/hello/);
    assert.match(html, /Recent build errors/);
    assert.match(html, /broken:latest/);
  });

  test('tags list and referrers answer for pull-only clients', async () => {
    const tags = await fetch(`${r.url}/v2/hello/tags/list`);
    assert.equal(tags.status, 200);
    assert.deepEqual(await tags.json(), { name: 'hello', tags: ['latest'] });
    const refs = await fetch(`${r.url}/v2/hello/referrers/${manifestDigest}`);
    assert.equal(refs.status, 200);
    assert.equal(refs.headers.get('content-type'), MEDIA_TYPES.ociIndex);
    // Its SBOMs and provenance (test/registry/referrers.test.ts looks at them).
    assert.equal((await refs.json()).manifests.length, 3);
  });

  test('healthz and metrics', async () => {
    const h = await fetch(`${r.url}/healthz`);
    assert.equal(h.status, 200);
    assert.equal(await h.text(), 'ok\n');
    const m = await (await fetch(`${r.url}/metrics`)).text();
    assert.match(m, /^nixery_nix_invocations_total\{command="resolve"\} \d+$/m);
    assert.match(m, /^nixery_image_builds_total \d+$/m);
  });

  test('a cached image is served without running Nix', async () => {
    const before = r.nix.stats.invocations;
    const res = await fetch(`${r.url}/v2/hello/manifests/latest`);
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(r.nix.stats.invocations, before);
  });
});

describe('registry build concurrency', () => {
  test('50 concurrent first requests (GET and HEAD) for one image make exactly one build', async () => {
    const r = await startRegistry();
    try {
      const before = r.app.builder.buildsRun;
      const responses = await Promise.all(
        Array.from({ length: 50 }, (_, i) => fetch(`${r.url}/v2/shell/hello/manifests/latest`, { method: i % 2 ? 'HEAD' : 'GET' })),
      );
      const digests = new Set(responses.map((res) => res.headers.get('docker-content-digest')));
      for (const res of responses) {
        assert.equal(res.status, 200);
        await res.arrayBuffer();
      }
      assert.equal(digests.size, 1);
      assert.equal(r.app.builder.buildsRun - before, 1);
    } finally {
      await r.close();
    }
  });

  test('beyond the queue, 429 TOOMANYREQUESTS with Retry-After', async () => {
    const r = await startRegistry({ NIXERY_BUILD_CONCURRENCY: '1', NIXERY_BUILD_QUEUE: '0' });
    try {
      const release = r.nix.hold();
      const held = fetch(`${r.url}/v2/hello/manifests/latest`);
      await waitFor(() => r.app.service.building === 1);
      const rejected = await fetch(`${r.url}/v2/git/manifests/latest`);
      assert.equal(rejected.status, 429);
      assert.ok(Number(rejected.headers.get('retry-after')) > 0);
      assert.equal((await errorOf(rejected)).code, 'TOOMANYREQUESTS');
      // The build holding the slot ends and the slot is free again.
      release();
      const done = await held;
      assert.equal(done.status, 200);
      await done.arrayBuffer();
      assert.equal(r.app.service.building, 0);
      const again = await fetch(`${r.url}/v2/git/manifests/latest`);
      assert.equal(again.status, 200);
      await again.arrayBuffer();
    } finally {
      await r.close();
    }
  });

  test('a client that disconnects does not cancel a build others wait for', async () => {
    const r = await startRegistry();
    try {
      const controller = new AbortController();
      // The build waits in Nix's realise until both clients are there and the first has gone.
      const release = r.nix.hold();
      const first = fetch(`${r.url}/v2/git/manifests/latest`, { signal: controller.signal }).catch((e: unknown) => e);
      await waitFor(() => r.app.builder.buildsRun === 1);
      const second = fetch(`${r.url}/v2/git/manifests/latest`);
      controller.abort();
      await first;
      await new Promise((resolve) => setTimeout(resolve, 100));
      release();
      const res = await second;
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      assert.equal(r.app.builder.buildsRun, 1);
    } finally {
      await r.close();
    }
  });
});

describe('registry restart', () => {
  test('a restart with the same storage serves a built image by tag and digest without building', async () => {
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const path = await import('node:path');
    const storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-restart-'));
    try {
      const nix = new StandInNix();
      const first = await startRegistry({}, { storagePath, nix });
      const res = await fetch(`${first.url}/v2/shell/hello/manifests/latest`);
      const bytes = Buffer.from(await res.arrayBuffer());
      const digest = res.headers.get('docker-content-digest')!;
      await first.close();

      const before = nix.stats.invocations;
      const second = await startRegistry({}, { storagePath, nix });
      try {
        const byTag = await fetch(`${second.url}/v2/shell/hello/manifests/latest`);
        assert.deepEqual(Buffer.from(await byTag.arrayBuffer()), bytes);
        const byDigest = await fetch(`${second.url}/v2/shell/hello/manifests/${digest}`);
        assert.deepEqual(Buffer.from(await byDigest.arrayBuffer()), bytes);
        assert.equal(second.app.builder.buildsRun, 0);
        assert.equal(nix.stats.invocations, before, 'no Nix process ran');
      } finally {
        await second.close();
        await nix.remove();
      }
    } finally {
      await rm(storagePath, { recursive: true, force: true });
    }
  });
});

function rawGet(url: string, headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      })
      .on('error', reject);
  });
}

async function waitFor(cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('blob serving paths', () => {
  for (const [label, env] of [
    ['streamed from storage (hot-blob cache off)', { NIXERY_BLOB_CACHE_MB: '0' }],
    ['from the hot-blob cache', { NIXERY_BLOB_CACHE_MB: '64' }],
  ] as const) {
    test(`full, ranged and HEAD requests: ${label}`, async () => {
      const r = await startRegistry(env);
      try {
        const m = JSON.parse(await (await fetch(`${r.url}/v2/big-data/manifests/latest`)).text()) as { layers: Array<{ digest: string; size: number }> };
        const layer = m.layers.reduce((a, b) => (a.size >= b.size ? a : b));
        assert.ok(layer.size > 1024 * 1024, 'a layer bigger than one read chunk');
        for (let round = 0; round < 2; round++) {
          const full = Buffer.from(await (await fetch(`${r.url}/v2/big-data/blobs/${layer.digest}`)).arrayBuffer());
          assert.equal(sha256(full), layer.digest);
          const part = await fetch(`${r.url}/v2/big-data/blobs/${layer.digest}`, { headers: { Range: `bytes=1000000-1099999` } });
          assert.equal(part.status, 206);
          assert.deepEqual(Buffer.from(await part.arrayBuffer()), full.subarray(1_000_000, 1_100_000));
          const head = await fetch(`${r.url}/v2/big-data/blobs/${layer.digest}`, { method: 'HEAD' });
          assert.equal(Number(head.headers.get('content-length')), layer.size);
        }
        const cached = Number(/^nixery_blob_cache_bytes (\d+)$/m.exec(await (await fetch(`${r.url}/metrics`)).text())![1]);
        if (env.NIXERY_BLOB_CACHE_MB === '0') assert.equal(cached, 0);
        else assert.ok(cached >= layer.size);
      } finally {
        await r.close();
      }
    });
  }
});
