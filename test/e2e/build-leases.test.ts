// One build per image across replicas (build leases, src/builder/build-lease.ts), with real Nix
// and three real `nixery serve` processes on one storage: a filesystem directory, the GCS test
// server, Ceph RGW 16 (which honours conditional writes on PUT but not on DELETE: leases are
// released by a conditional replace) and s3rver (which ignores them all). 30 concurrent cold pulls of one image
// (a package whose builder sleeps, so that the pulls overlap the build) are spread over the
// replicas. Builds are counted by each replica's nixery_image_builds_total (builds that ran Nix).
// Leases last 2 s here (NIXERY_BUILD_LEASE_SECONDS), to keep the expiry case short.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServe, type ServeProcess } from '../helpers/serve.js';
import { killIfRunning, makeTestPackageSet, processesMentioning, waitFor, type TestPackageSet } from '../helpers/slow-pkgs.js';
import { metric } from '../helpers/registry.js';
import { parsePrometheusText, sampleSum } from '../helpers/prometheus.js';
import { startFakeGcs, type FakeGcs } from '../storage/gcs-server.js';
import { startS3Server, S3RVER_CREDENTIALS, type S3TestServer } from '../storage/s3-server.js';
import { rgwUnavailable, startRgw, type RgwServer } from '../helpers/rgw.js';
import { FilesystemStorage } from '../../src/storage/filesystem.js';
import { GcsStorage } from '../../src/storage/gcs.js';
import { S3Storage } from '../../src/storage/s3.js';
import type { Storage } from '../../src/storage/storage.js';

const PULLS = 30;
const SLEEP_SECONDS = 4;
const IMAGE = `slow${SLEEP_SECONDS}`;
const LEASE_SECONDS = 2;
const rgwMissing = await rgwUnavailable();

interface Backend {
  name: string;
  env: Record<string, string>;
  /** The same storage as the replicas see, for reading leases (none for s3rver, which has none). */
  storage?: Storage;
  /** Released leases stay as released markers (no conditional deletes: RGW 16). */
  releasedMarkers?: boolean;
}

function s3Env(endpoint: string, bucket: string, credentials: { accessKeyId: string; secretAccessKey: string }): Record<string, string> {
  return {
    NIXERY_STORAGE_BACKEND: 's3',
    S3_BUCKET: bucket,
    S3_ENDPOINT: endpoint,
    S3_FORCE_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
  };
}

interface Pulled {
  status: number;
  digest: string | null;
  /** Replicas tried: more than one when a replica died under the pull (the client retried at the next). */
  tries: number;
}

/** A cold pull of the image's manifest at replica `first`; a connection that breaks is retried at the next replica, as a load balancer would. */
async function pull(replicas: readonly ServeProcess[], first: number): Promise<Pulled> {
  for (let tries = 1; ; tries++) {
    const r = replicas[(first + tries - 1) % replicas.length]!;
    try {
      const res = await fetch(`${r.url}/v2/${IMAGE}/manifests/latest`);
      await res.arrayBuffer();
      return { status: res.status, digest: res.headers.get('docker-content-digest'), tries };
    } catch (err) {
      if (tries >= replicas.length) throw err;
    }
  }
}

/** Seconds the builds that ran Nix took on these replicas, in all. */
async function buildSeconds(replicas: readonly ServeProcess[]): Promise<number> {
  let total = 0;
  for (const r of replicas) total += sampleSum(parsePrometheusText(await (await fetch(`${r.url}/metrics`)).text()), 'nixery_build_duration_seconds_sum');
  return total;
}

async function sum(replicas: readonly ServeProcess[], name: string): Promise<number> {
  let total = 0;
  for (const r of replicas) total += await metric(r.url, name);
  return total;
}

function assertAllSucceeded(pulls: readonly Pulled[]): void {
  assert.deepEqual(
    pulls.filter((p) => p.status !== 200),
    [],
    'every pull succeeds',
  );
  const digests = new Set(pulls.map((p) => p.digest));
  assert.equal(digests.size, 1, `one manifest for every pull: ${[...digests].join(', ')}`);
  assert.match([...digests][0] ?? '', /^sha256:[0-9a-f]{64}$/);
}

describe('build leases: one build per image across replicas', () => {
  let gcs: FakeGcs;
  let s3: S3TestServer;
  let rgw: RgwServer | undefined;
  let scratch: string;
  const started: ServeProcess[] = [];
  const sets: TestPackageSet[] = [];

  before(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'nixery-leases-'));
    gcs = await startFakeGcs();
    s3 = await startS3Server();
  });

  after(async () => {
    await Promise.all(started.map((r) => r.stop('SIGKILL')));
    for (const set of sets) {
      killIfRunning(processesMentioning(set.marker));
      await set.remove();
    }
    await gcs.stop();
    await s3.stop();
    await rgw?.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  /** A new package set (so the image is cold), its storage, and three replicas on it. */
  async function replicas(backend: Backend): Promise<{ set: TestPackageSet; replicas: ServeProcess[] }> {
    const set = await makeTestPackageSet({ sleeps: [SLEEP_SECONDS] });
    sets.push(set);
    const storagePath = backend.env.STORAGE_PATH ?? path.join(scratch, `unused-${sets.length}`);
    // A runtime directory of their own: a replica's clean-up reaps what a killed one left (GC
    // roots, Nix processes), and no other test's registry does first.
    const runtime = await mkdtemp(path.join(scratch, 'tmp-'));
    const env = { TMPDIR: runtime, NIXERY_CLEANUP_INTERVAL_MS: '500', NIXERY_BUILD_LEASE_SECONDS: String(LEASE_SECONDS), NIXERY_BLOB_REDIRECT: 'false', ...backend.env };
    const out = await Promise.all([0, 1, 2].map(() => startServe({ pkgsPath: set.dir, storagePath, env })));
    started.push(...out);
    return { set, replicas: out };
  }

  function filesystem(): Backend {
    const storagePath = path.join(scratch, `filesystem-${sets.length + 1}`, 'storage');
    return { name: 'filesystem', env: { STORAGE_PATH: storagePath }, storage: new FilesystemStorage(storagePath) };
  }

  function gcsBackend(): Backend {
    const bucket = gcs.createBucket();
    return { name: 'gcs', env: { NIXERY_STORAGE_BACKEND: 'gcs', GCS_BUCKET: bucket, GCS_ENDPOINT: gcs.endpoint }, storage: new GcsStorage({ bucket, endpoint: gcs.endpoint }) };
  }

  async function rgwBackend(): Promise<Backend> {
    rgw ??= await startRgw();
    const bucket = await rgw.createBucket();
    const storage = new S3Storage({ bucket, endpoint: rgw.endpoint, forcePathStyle: true, credentials: rgw.credentials });
    return { name: 'rgw', env: s3Env(rgw.endpoint, bucket, rgw.credentials), storage, releasedMarkers: true };
  }

  const backends: Array<{ name: string; make: () => Backend | Promise<Backend>; missing?: string }> = [
    { name: 'one filesystem storage', make: filesystem },
    { name: 'the GCS test server', make: gcsBackend },
    { name: 'Ceph RGW 16 (no conditional deletes: leases released by a conditional replace)', make: rgwBackend, missing: rgwMissing },
  ];
  for (const { name, make, missing } of backends) {
    test(`three replicas on ${name}, ${PULLS} concurrent cold pulls spread over them: exactly one Nix build`, async (t) => {
      if (missing) return t.skip(missing);
      const backend = await make();
      const { replicas: rs } = await replicas(backend);
      const pulls = await Promise.all(Array.from({ length: PULLS }, (_, i) => pull(rs, i % rs.length)));
      assertAllSucceeded(pulls);
      assert.equal(await sum(rs, 'nixery_image_builds_total'), 1, 'one replica ran the build');
      assert.equal(await sum(rs, 'nixery_build_leases_taken_total'), 1);
      assert.equal(await sum(rs, 'nixery_build_leases_waited_total'), 2, 'the two others waited for its record');
      assert.equal(await sum(rs, 'nixery_build_leases_expired_total'), 0);
      const leftovers = [];
      for await (const o of backend.storage!.list('leases/')) {
        const lease = await backend.storage!.readVersioned(o.key);
        if (!backend.releasedMarkers || (JSON.parse(lease!.data.toString()) as { released?: boolean }).released !== true) leftovers.push(o.key);
      }
      assert.deepEqual(leftovers, [], 'the holder released the lease');
      for (const r of rs) assert.doesNotMatch(r.output(), /does not honour conditional writes/);
      t.diagnostic(`pulls answered; builds per replica: ${await Promise.all(rs.map((r) => metric(r.url, 'nixery_image_builds_total')))}`);
      await Promise.all(rs.map((r) => r.stop()));
    });

    test(`on ${name}, the lease holder killed with SIGKILL mid-build: another replica builds after expiry, and every pull succeeds`, async (t) => {
      if (missing) return t.skip(missing);
      const backend = await make();
      const { set, replicas: rs } = await replicas(backend);
      const pulling = Promise.all(Array.from({ length: PULLS }, (_, i) => pull(rs, i % rs.length)));
      await waitFor('the slow builder', () => processesMentioning(`${set.marker}: sleeping ${SLEEP_SECONDS}`)[0], 120_000);
      const lease = await waitFor('the build lease', async () => {
        for await (const o of backend.storage!.list('leases/')) return backend.storage!.readVersioned(o.key);
        return undefined;
      });
      const holderPid = Number((JSON.parse(lease!.data.toString()) as { holder: string }).holder.split('/')[1]);
      const holder = rs.find((r) => r.pid === holderPid);
      assert.ok(holder, `the lease names one of the replicas: ${lease!.data.toString()}`);
      const killedAt = performance.now();
      await holder.stop('SIGKILL');
      const pulls = await pulling;
      const waitedSeconds = (performance.now() - killedAt) / 1000;
      assertAllSucceeded(pulls);
      const survivors = rs.filter((r) => r !== holder);
      assert.equal(await sum(survivors, 'nixery_image_builds_total'), 1, 'one survivor built, after the expiry');
      assert.equal(await sum(survivors, 'nixery_build_leases_expired_total'), 1, 'it took the expired lease over');
      assert.equal(await sum(survivors, 'nixery_build_leases_taken_total'), 1);
      assert.ok(survivors.some((r) => /a build lease expired/.test(r.output())), 'the take-over is logged');
      // A figure, not a timed assertion: the bound is the build plus one lease period (and one look).
      const built = await buildSeconds(survivors);
      t.diagnostic(`pulls retried at another replica (theirs was killed): ${pulls.filter((p) => p.tries > 1).length}; all answered ${waitedSeconds.toFixed(1)} s after the kill; the survivor's build took ${built.toFixed(1)} s, the lease lasts ${LEASE_SECONDS} s`);
      await Promise.all(survivors.map((r) => r.stop()));
    });
  }

  test('a server without conditional writes (s3rver): one warning line, and every replica builds for itself', async (t) => {
    const env = s3Env(s3.endpoint, await s3.createBucket(), S3RVER_CREDENTIALS);
    const { replicas: rs } = await replicas({ name: 's3', env });
    const pulls = await Promise.all(Array.from({ length: PULLS }, (_, i) => pull(rs, i % rs.length)));
    assertAllSucceeded(pulls);
    for (const r of rs) {
      const warnings = r.output().split('\n').filter((line) => /does not honour conditional writes/.test(line));
      assert.equal(warnings.length, 1, `one warning line: ${r.output().slice(-2000)}`);
      assert.match(warnings[0]!, /"level":\s*"?(warn|40)/);
    }
    assert.equal(await sum(rs, 'nixery_image_builds_total'), 3, 'each replica built the image');
    assert.equal(await sum(rs, 'nixery_build_leases_taken_total') + (await sum(rs, 'nixery_build_leases_waited_total')), 0, 'no leases');
    t.diagnostic('builds per replica: 1, 1, 1');
    await Promise.all(rs.map((r) => r.stop()));
  });
});
