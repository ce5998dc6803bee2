// Blob repair against real `nixery serve` processes (real Nix, a real filesystem store):
// - a repair is a build: an anonymous client (NIXERY_ANONYMOUS_PULL) gets no repair-build, only a
//   404 saying who can rebuild the blob, and repairs count against the per-client build rate;
// - damage found by digest heals by digest: after a restart (so nothing is remembered in memory,
//   as on another replica), a damaged layer blob and a damaged manifest asked for by digest come
//   back with the same bytes, rebuilt from the image records in storage.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { blobKey } from '../../src/builder/layout.js';
import { EXAMPLE_PKGS } from '../helpers/nix.js';
import { metric } from '../helpers/registry.js';
import { startServe, type ServeProcess } from '../helpers/serve.js';

const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const basic = (user: string) => ({ Authorization: `Basic ${Buffer.from(`${user}:secret`).toString('base64')}` });

interface Manifest {
  config: { digest: string };
  layers: Array<{ digest: string; size: number }>;
}

/** Flips bytes in the middle of a stored blob, keeping its size. */
async function rot(storagePath: string, digest: string): Promise<void> {
  const file = path.join(storagePath, blobKey(digest));
  const size = (await stat(file)).size;
  const fh = await open(file, 'r+');
  try {
    const at = Math.floor(size / 2);
    const buf = Buffer.alloc(Math.min(64, size - at));
    await fh.read(buf, 0, buf.length, at);
    for (let i = 0; i < buf.length; i++) buf[i] = buf[i]! ^ 0xff;
    await fh.write(buf, 0, buf.length, at);
  } finally {
    await fh.close();
  }
}

async function errorOf(res: Response): Promise<{ code: string; message: string }> {
  return ((await res.json()) as { errors: Array<{ code: string; message: string }> }).errors[0]!;
}

describe('blob repair', () => {
  let dir: string;
  let storagePath: string;
  let htpasswd: string;
  let s: ServeProcess;
  let manifest: Manifest;
  let manifestDigest: string;
  let manifestBytes: Buffer;

  const env = () => ({ NIXERY_HTPASSWD: htpasswd, NIXERY_ANONYMOUS_PULL: 'true', NIXERY_LOG_LEVEL: 'warn' });
  const layerPath = (digest: string) => path.join(storagePath, blobKey(digest));

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-repair-'));
    storagePath = path.join(dir, 'storage');
    htpasswd = path.join(dir, 'htpasswd');
    execFileSync('htpasswd', ['-B', '-b', '-c', htpasswd, 'alice', 'secret'], { stdio: 'ignore' });
    for (const user of ['bob', 'carol']) execFileSync('htpasswd', ['-B', '-b', htpasswd, user, 'secret'], { stdio: 'ignore' });
    s = await startServe({ pkgsPath: EXAMPLE_PKGS, storagePath, env: { ...env(), NIXERY_CLIENT_BUILDS_PER_MINUTE: '1' } });
    const res = await fetch(`${s.url}/v2/hello/manifests/latest`, { headers: { ...basic('alice'), Accept: OCI_MANIFEST } });
    assert.equal(res.status, 200, await res.clone().text());
    manifestBytes = Buffer.from(await res.arrayBuffer());
    manifestDigest = res.headers.get('docker-content-digest')!;
    manifest = JSON.parse(manifestBytes.toString()) as Manifest;
  });
  after(async () => {
    await s?.stop('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  test('an anonymous client gets no repair-build; repairs count against the build rate', async () => {
    const layer = manifest.layers[0]!.digest;
    await rm(layerPath(layer));
    const builds = await metric(s.url, 'nixery_image_builds_total');

    const anonymous = await fetch(`${s.url}/v2/hello/blobs/${layer}`);
    assert.equal(anonymous.status, 404);
    const error = await errorOf(anonymous);
    assert.equal(error.code, 'BLOB_UNKNOWN');
    assert.match(error.message, /missing from storage; a pull of its image by an authenticated client rebuilds it/);
    assert.equal(await metric(s.url, 'nixery_image_builds_total'), builds, 'no build ran');
    await assert.rejects(stat(layerPath(layer)), 'the blob is still missing');

    // alice built the image this minute: her one build a minute is used, and a repair is a build.
    const limited = await fetch(`${s.url}/v2/hello/blobs/${layer}`, { headers: basic('alice') });
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers.get('retry-after')) > 0);
    assert.match((await errorOf(limited)).message, /too many image builds from this client/);
    assert.equal(await metric(s.url, 'nixery_image_builds_total'), builds, 'no build ran');

    // bob may build: his GET rebuilds the image, and the blob is served with its bytes.
    const repaired = await fetch(`${s.url}/v2/hello/blobs/${layer}`, { headers: basic('bob') });
    assert.equal(repaired.status, 200);
    assert.equal(sha256(new Uint8Array(await repaired.arrayBuffer())), layer);
    assert.equal(await metric(s.url, 'nixery_image_builds_total'), builds + 1);
  });

  test('after a restart, a damaged blob and a damaged manifest asked for by digest come back with the same bytes', async () => {
    await s.stop('SIGKILL');
    s = await startServe({ pkgsPath: EXAMPLE_PKGS, storagePath, env: env() });
    const layer = manifest.layers.at(-1)!.digest;
    await rot(storagePath, layer);
    await rot(storagePath, manifestDigest);

    // Each is asked for by digest, and retried: it must come back whole (the first request may
    // already rebuild it; an error must say what happens).
    const fetchUntilWhole = async (url: string, accept?: string): Promise<{ bytes: Buffer; statuses: number[] }> => {
      const statuses: number[] = [];
      for (let attempt = 0; attempt < 3; attempt++) {
        const res = await fetch(url, { headers: { ...basic('carol'), ...(accept ? { Accept: accept } : {}) } });
        statuses.push(res.status);
        if (res.status === 200) return { bytes: Buffer.from(await res.arrayBuffer()), statuses };
        const error = await errorOf(res);
        assert.equal(res.status, 503, `${res.status} ${error.code}: ${error.message}`);
        assert.match(error.message, /retry/);
        await new Promise((r) => setTimeout(r, Number(res.headers.get('retry-after') ?? 1) * 1000));
      }
      assert.fail(`never whole: ${statuses.join(', ')}`);
    };

    const blob = await fetchUntilWhole(`${s.url}/v2/hello/blobs/${layer}`);
    assert.equal(sha256(blob.bytes), layer);
    const again = await fetchUntilWhole(`${s.url}/v2/hello/manifests/${manifestDigest}`, OCI_MANIFEST);
    assert.equal(sha256(again.bytes), manifestDigest);
    assert.deepEqual(again.bytes, manifestBytes);
    assert.ok((await metric(s.url, 'nixery_integrity_failures_total')) >= 2);
  });
});
