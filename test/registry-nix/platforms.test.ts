// Multi-platform images over HTTP, in-process (real Nix, real storage): the negotiation matrix,
// every platform's manifest by digest, the index by digest, deterministic digests across fresh
// storage, the arm64 meta-package, single-platform registries, concurrent and de-duplicated
// platform builds, a platform that fails, and the index in storage (repair, gc, scrub).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { EXAMPLE_PKGS } from '../helpers/nix.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';
import { collectGarbage } from '../../src/builder/gc.js';
import { scrubStorage } from '../../src/builder/scrub.js';
import { blobKey } from '../../src/builder/layout.js';

const { ociIndex, dockerManifestList: dockerList, ociManifest, dockerManifest, ociConfig, dockerConfig, ociLayerGzip, dockerLayerGzip } = MEDIA_TYPES;
const BOTH = 'linux/amd64,linux/arm64';
const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}
interface Index {
  schemaVersion: number;
  mediaType: string;
  manifests: Array<Descriptor & { platform: { architecture: string; os: string } }>;
}
interface Manifest {
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

interface Fetched {
  status: number;
  type: string | null;
  digest: string | null;
  bytes: Buffer;
  json: Record<string, unknown> & { mediaType?: string };
}

/** GETs a manifest; checks what every 200 must be (digest of the body, Content-Type = mediaType, HEAD alike). */
async function get(r: TestRegistry, name: string, reference: string, accept?: string): Promise<Fetched> {
  const headers: Record<string, string> = accept === undefined ? {} : { Accept: accept };
  const res = await fetch(`${r.url}/v2/${name}/manifests/${reference}`, { headers });
  const bytes = Buffer.from(await res.arrayBuffer());
  const fetched: Fetched = { status: res.status, type: res.headers.get('content-type'), digest: res.headers.get('docker-content-digest'), bytes, json: JSON.parse(bytes.toString('utf8')) };
  if (res.status === 200) {
    assert.equal(fetched.digest, sha256(bytes), 'Docker-Content-Digest is the digest of the body');
    assert.equal(fetched.json.mediaType, fetched.type, 'the body says the type Content-Type says');
    const head = await fetch(`${r.url}/v2/${name}/manifests/${reference}`, { method: 'HEAD', headers });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('docker-content-digest'), fetched.digest, 'HEAD negotiates as GET');
    assert.equal(head.headers.get('content-type'), fetched.type);
    assert.equal(Number(head.headers.get('content-length')), bytes.length);
  }
  return fetched;
}

/**
 * A package set for these tests: the example set plus packages built for each target by the
 * host's busybox, marked for this run so that Nix builds them anew.
 */
async function testPackageSet(): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-platform-pkgs-'));
  const marker = `nixery-test-${randomBytes(6).toString('hex')}`;
  await writeFile(
    path.join(dir, 'default.nix'),
    `{ system ? builtins.currentSystem, ... }:
let
  examples = import ${EXAMPLE_PKGS} { inherit system; };
  host = import ${EXAMPLE_PKGS} { system = builtins.currentSystem; };
  mk = pname: script: derivation {
    name = "\${pname}-1.0";
    system = builtins.currentSystem;
    builder = "\${host.busybox}/bin/sh";
    args = [ "-e" "-c" script ];
    PATH = "\${host.busybox}/bin";
    MARKER = "${marker}";
    targetSystem = system;
  } // { inherit pname; version = "1.0"; meta = { }; };
in
examples // {
  # Takes a while on every platform: builds of the platforms overlap when they run concurrently.
  sleepy = mk "sleepy" "sleep 2; mkdir -p $out; echo \${system} > $out/system";
  # Builds for x86_64, fails for aarch64 with a known line.
  amd64-only = mk "amd64-only" (if system == "aarch64-linux"
    then "echo 'nixery-test: amd64-only fails for aarch64 on purpose' >&2; exit 1"
    else "mkdir -p $out/bin; echo ok > $out/bin/amd64-only");
}
`,
  );
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

describe('multi-platform images over HTTP', () => {
  let r: TestRegistry;
  let ociIdx: Fetched;
  let dockerIdx: Fetched;

  before(async () => {
    r = await startRegistry({ NIXERY_PLATFORMS: BOTH });
    ociIdx = await get(r, 'shell/hello', 'latest', ociIndex);
    assert.equal(ociIdx.status, 200, ociIdx.bytes.toString());
    dockerIdx = await get(r, 'shell/hello', 'latest', dockerList);
  });
  after(() => r?.close());

  test('the negotiation matrix by tag', async () => {
    const oci = ociIdx.json as unknown as Index;
    const docker = dockerIdx.json as unknown as Index;
    const amd64 = { oci: oci.manifests[0]!.digest, docker: docker.manifests[0]!.digest };
    // [Accept, Content-Type, digest]
    const matrix: Array<[string | undefined, string, string]> = [
      [ociIndex, ociIndex, ociIdx.digest!],
      [dockerList, dockerList, dockerIdx.digest!],
      [ociManifest, ociManifest, amd64.oci],
      [dockerManifest, dockerManifest, amd64.docker],
      ['*/*', ociManifest, amd64.oci],
      [undefined, ociManifest, amd64.oci],
      // containerd's Accept; a Docker-only client (docker's types, both); OCI only (the conformance suite).
      [`${dockerManifest}, ${dockerList}, ${ociManifest}, ${ociIndex}, */*`, ociIndex, ociIdx.digest!],
      [`${dockerManifest}, ${dockerList}`, dockerList, dockerIdx.digest!],
      [`${ociIndex}, ${ociManifest}`, ociIndex, ociIdx.digest!],
      [`${ociIndex};q=0, ${ociManifest}`, ociManifest, amd64.oci],
    ];
    for (const [accept, type, digest] of matrix) {
      const got = await get(r, 'shell/hello', 'latest', accept);
      assert.equal(got.status, 200, `Accept ${accept}`);
      assert.equal(got.type, type, `Accept ${accept}`);
      assert.equal(got.digest, digest, `Accept ${accept}`);
    }
  });

  test('the index lists one manifest per platform, in its own family, each served by digest', async () => {
    for (const [idx, manifestType, configType, layerType] of [
      [ociIdx, ociManifest, ociConfig, ociLayerGzip],
      [dockerIdx, dockerManifest, dockerConfig, dockerLayerGzip],
    ] as const) {
      const index = idx.json as unknown as Index;
      assert.equal(index.schemaVersion, 2);
      assert.deepEqual(
        index.manifests.map((m) => [m.mediaType, `${m.platform.os}/${m.platform.architecture}`]),
        [
          [manifestType, 'linux/amd64'],
          [manifestType, 'linux/arm64'],
        ],
      );
      for (const entry of index.manifests) {
        const m = await get(r, 'shell/hello', entry.digest);
        assert.equal(m.status, 200);
        assert.equal(m.type, manifestType);
        assert.equal(m.bytes.length, entry.size);
        const manifest = m.json as unknown as Manifest;
        assert.equal(manifest.config.mediaType, configType);
        assert.ok(manifest.layers.every((l) => l.mediaType === layerType));
        const config = await fetch(`${r.url}/v2/shell/hello/blobs/${manifest.config.digest}`);
        assert.equal(((await config.json()) as { architecture: string }).architecture, entry.platform.architecture);
      }
      // The index by digest: the bytes served by tag.
      const byDigest = await get(r, 'shell/hello', idx.digest!);
      assert.equal(byDigest.type, idx.type);
      assert.ok(byDigest.bytes.equals(idx.bytes));
    }
    // The platforms are different images (store paths differ per Nix system).
    const [amd64, arm64] = (ociIdx.json as unknown as Index).manifests;
    const layersOf = async (d: string) => ((await get(r, 'shell/hello', d)).json as unknown as Manifest).layers.map((l) => l.digest);
    assert.notDeepEqual(await layersOf(amd64!.digest), await layersOf(arm64!.digest));
  });

  test('digests are the same on fresh storage; the platform order decides the default', async () => {
    const again = await startRegistry({ NIXERY_PLATFORMS: BOTH });
    const reversed = await startRegistry({ NIXERY_PLATFORMS: 'linux/arm64,linux/amd64' });
    try {
      for (const [accept, first] of [
        [ociIndex, ociIdx],
        [dockerList, dockerIdx],
      ] as const) {
        const same = await get(again, 'shell/hello', 'latest', accept);
        assert.equal(same.digest, first.digest, `${accept} on fresh storage`);
        assert.ok(same.bytes.equals(first.bytes));
        const other = await get(reversed, 'shell/hello', 'latest', accept);
        const entries = (other.json as unknown as Index).manifests;
        assert.deepEqual(
          entries.map((m) => m.platform.architecture),
          ['arm64', 'amd64'],
        );
        // The same platform manifests, another index.
        assert.deepEqual(
          entries.map((m) => m.digest),
          [...(first.json as unknown as Index).manifests.map((m) => m.digest)].reverse(),
        );
        assert.notEqual(other.digest, first.digest);
      }
      // A client that accepts no index gets the first configured platform's manifest.
      const plain = await get(reversed, 'shell/hello', 'latest', ociManifest);
      assert.equal(plain.digest, (ociIdx.json as unknown as Index).manifests[1]!.digest);
    } finally {
      await again.close();
      await reversed.close();
    }
  });

  test('the arm64 meta-package is one aarch64 image, not an index', async () => {
    const plain = await get(r, 'arm64/shell/hello', 'latest', `${ociManifest}, ${ociIndex}, ${dockerManifest}, ${dockerList}`);
    assert.equal(plain.type, ociManifest);
    // The same image as the arm64 entry of the index.
    assert.equal(plain.digest, (ociIdx.json as unknown as Index).manifests[1]!.digest);
    // A client that accepts only an index gets an index of that one platform.
    const only = await get(r, 'arm64/shell/hello', 'latest', ociIndex);
    assert.equal(only.type, ociIndex);
    assert.deepEqual(
      (only.json as unknown as Index).manifests.map((m) => [m.digest, m.platform.architecture]),
      [[plain.digest, 'arm64']],
    );
  });

  test('a pull that builds several platforms counts as one build against the client build rate', async () => {
    const limited = await startRegistry({ NIXERY_PLATFORMS: BOTH, NIXERY_CLIENT_BUILDS_PER_MINUTE: '1' });
    try {
      // Fresh storage: both platforms of hello are built (from the Nix store), one build taken.
      const first = await get(limited, 'hello', 'latest', ociIndex);
      assert.equal(first.status, 200, first.bytes.toString());
      assert.equal(limited.app.builder.buildsRun, 2);
      assert.equal((await get(limited, 'hello', 'latest', ociIndex)).status, 200, 'a cached image is not limited');
      // A second image is a second build: over the rate, with Retry-After, naming no platform.
      const res = await fetch(`${limited.url}/v2/htop/manifests/latest`, { headers: { Accept: ociIndex } });
      assert.equal(res.status, 429);
      assert.ok(Number(res.headers.get('retry-after')) > 0);
      const { errors } = (await res.json()) as { errors: Array<{ code: string; message: string }> };
      assert.equal(errors[0]!.code, 'TOOMANYREQUESTS');
      assert.match(errors[0]!.message, /^too many image builds from this client/);
    } finally {
      await limited.close();
    }
  });

  test('a single-platform registry serves manifests as before, and an index only to index-only clients', async () => {
    const single = await startRegistry();
    try {
      const oci = await get(single, 'shell/hello', 'latest', `${ociManifest}, ${ociIndex}`);
      assert.equal(oci.type, ociManifest);
      assert.equal(oci.digest, (ociIdx.json as unknown as Index).manifests[0]!.digest, 'the host platform is the default');
      assert.equal((await get(single, 'shell/hello', 'latest')).digest, oci.digest);
      const docker = await get(single, 'shell/hello', 'latest', `${dockerManifest}, ${dockerList}`);
      assert.equal(docker.type, dockerManifest);
      for (const [accept, entryType] of [
        [ociIndex, ociManifest],
        [dockerList, dockerManifest],
      ] as const) {
        const index = await get(single, 'shell/hello', 'latest', accept);
        assert.equal(index.type, accept, `Accept ${accept} only`);
        const entries = (index.json as unknown as Index).manifests;
        assert.deepEqual(
          entries.map((m) => [m.mediaType, m.digest, m.platform.architecture]),
          [[entryType, entryType === ociManifest ? oci.digest : docker.digest, 'amd64']],
        );
        assert.ok((await get(single, 'shell/hello', index.digest!)).bytes.equals(index.bytes), 'served by digest');
      }
    } finally {
      await single.close();
    }
  });

  test('a missing index blob is written again when it is asked for by digest', async () => {
    await r.app.storage.delete(blobKey(ociIdx.digest!));
    r.registry.blobs.forget(ociIdx.digest!);
    const again = await get(r, 'shell/hello', ociIdx.digest!);
    assert.equal(again.status, 200);
    assert.ok(again.bytes.equals(ociIdx.bytes));
  });

  test('gc keeps an index and everything it lists; scrub checks it and finds what is missing', async () => {
    // Everything written so far is older than the run's start (its clock is in whole seconds).
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const report = await collectGarbage(r.app.storage, { graceSeconds: 0, dryRun: false });
    const removed = new Set(report.removed.map((o) => o.key));
    for (const d of [ociIdx.digest!, dockerIdx.digest!, ...[ociIdx, dockerIdx].flatMap((i) => (i.json as unknown as Index).manifests.map((m) => m.digest))]) {
      assert.ok(!removed.has(blobKey(d)), `gc kept ${d}`);
    }
    assert.equal((await get(r, 'shell/hello', ociIdx.digest!)).status, 200);
    const clean = await scrubStorage(r.app.storage, { repair: false });
    assert.deepEqual(clean.bad, []);

    // The arm64 OCI manifest goes missing: the index blob and the index record are bad.
    const arm64 = (ociIdx.json as unknown as Index).manifests[1]!.digest;
    await r.app.storage.delete(blobKey(arm64));
    const damaged = await scrubStorage(r.app.storage, { repair: false });
    const why = new Map(damaged.bad.map((b) => [b.key, b.why]));
    assert.match(why.get(blobKey(ociIdx.digest!)) ?? '', new RegExp(`its manifest 2 ${arm64} is missing`));
    const indexRecord = damaged.bad.find((b) => b.key.startsWith('manifests/') && b.why.startsWith('linux/arm64: '));
    assert.ok(indexRecord, JSON.stringify(damaged.bad));
    assert.match(indexRecord.why, /OCI manifest .* is missing/);
  });
});

describe('multi-platform builds', () => {
  let set: { dir: string; remove(): Promise<void> };
  let r: TestRegistry;

  before(async () => {
    set = await testPackageSet();
    r = await startRegistry({ NIXERY_PLATFORMS: BOTH, NIXERY_PKGS_PATH: set.dir, NIXERY_BUILD_CONCURRENCY: '4' });
  });
  after(async () => {
    await r?.close();
    await set?.remove();
  });

  test('the platforms are built concurrently, once for concurrent requests, then served from the cache', async () => {
    const before = r.app.builder.buildsRun;
    let most = 0;
    const watch = setInterval(() => (most = Math.max(most, r.app.service.building)), 20);
    try {
      const answers = await Promise.all([get(r, 'sleepy', 'latest', ociIndex), get(r, 'sleepy', 'latest', ociIndex), get(r, 'sleepy', 'latest', dockerList)]);
      for (const a of answers) assert.equal(a.status, 200, a.bytes.toString());
      assert.equal(answers[0]!.digest, answers[1]!.digest);
    } finally {
      clearInterval(watch);
    }
    assert.equal(most, 2, 'both platforms were building at the same time');
    assert.equal(r.app.builder.buildsRun - before, 2, 'one build per platform for three requests');
    const nix = r.app.metrics.nix.invocations;
    assert.equal((await get(r, 'sleepy', 'latest', ociIndex)).status, 200);
    assert.equal(r.app.metrics.nix.invocations, nix, 'no Nix for a cached image');
  });

  test('a platform that fails fails the request, naming the platform and the cause; no partial index', async () => {
    for (const accept of [ociIndex, `${ociManifest}, ${ociIndex}`, ociManifest]) {
      const res = await fetch(`${r.url}/v2/amd64-only/manifests/latest`, { headers: { Accept: accept } });
      assert.equal(res.status, 500, `Accept ${accept}`);
      const { errors } = (await res.json()) as { errors: Array<{ code: string; message: string; detail: { platforms: Array<{ platform: string }> } }> };
      assert.equal(errors[0]!.code, 'UNKNOWN');
      assert.match(errors[0]!.message, /^building for linux\/arm64 failed: .*Nix failed.*nixery-test: amd64-only fails for aarch64 on purpose/s);
      assert.doesNotMatch(errors[0]!.message, /linux\/amd64/);
      assert.deepEqual(
        errors[0]!.detail.platforms.map((p) => p.platform),
        ['linux/arm64'],
      );
    }
    // The index page's recent errors say which platform too.
    assert.match(r.app.service.errors.list()[0]!.message, /^linux\/arm64:\n.*fails for aarch64 on purpose/s);
  });

  test('a failure that is the same on every platform is reported as it is', async () => {
    const res = await fetch(`${r.url}/v2/hello/nosuchpackage/manifests/latest`, { headers: { Accept: ociIndex } });
    assert.equal(res.status, 404);
    const { errors } = (await res.json()) as { errors: Array<{ code: string; message: string }> };
    assert.equal(errors[0]!.code, 'NAME_UNKNOWN');
    assert.equal(errors[0]!.message, 'Could not find Nix packages: nosuchpackage');
  });
});
