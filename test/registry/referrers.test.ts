// The SBOMs and provenance of every image manifest, served as OCI 1.1 referrers (issue 20, part
// 3), on the stand-in Nix stage: the referrers API with and without `artifactType`, the referrers
// tag schema, the artifacts' content, gc keeping and scrub checking them, a damaged or lost one
// rebuilt, multi-platform images, and repository scoping for token clients.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startStandInRegistry, type StandInRegistry } from '../helpers/registry.js';
import { StandInNix } from '../helpers/stand-in-nix.js';
import { startTokenService, type TestTokenService } from '../helpers/token-service.js';
import { FilesystemStorage } from '../../src/storage/filesystem.js';
import { collectGarbage } from '../../src/builder/gc.js';
import { scrubStorage } from '../../src/builder/scrub.js';
import { blobKey } from '../../src/builder/layout.js';
import { spdxProblems } from '../../src/sbom/spdx.js';
import { sha256Digest } from '../../src/manifest/manifest.js';
import { parseImageName } from '../../src/image/name.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const TYPES = ['application/spdx+json', 'application/vnd.cyclonedx+json', 'application/vnd.in-toto+json'];

interface Index {
  mediaType: string;
  manifests: Array<{ mediaType: string; digest: string; size: number; artifactType: string; annotations?: Record<string, string> }>;
}
interface ArtifactManifest {
  artifactType: string;
  config: { mediaType: string; digest: string };
  layers: Array<{ mediaType: string; digest: string; size: number }>;
  subject: { mediaType: string; digest: string; size: number };
}

async function manifestDigest(url: string, name: string, tag = 'latest', accept = OCI_MANIFEST, headers: Record<string, string> = {}): Promise<string> {
  const res = await fetch(`${url}/v2/${name}/manifests/${tag}`, { headers: { Accept: accept, ...headers } });
  assert.equal(res.status, 200, await res.clone().text());
  return res.headers.get('docker-content-digest')!;
}

async function referrers(url: string, name: string, digest: string, query = '', headers: Record<string, string> = {}): Promise<{ res: Response; index: Index; bytes: Buffer }> {
  const res = await fetch(`${url}/v2/${name}/referrers/${digest}${query}`, { headers });
  assert.equal(res.status, 200);
  const bytes = Buffer.from(await res.arrayBuffer());
  return { res, index: JSON.parse(bytes.toString()) as Index, bytes };
}

/** An artifact's manifest and document, by digest, as a client reads them. */
async function artifact(url: string, name: string, digest: string): Promise<{ manifest: ArtifactManifest; document: Buffer }> {
  const m = await fetch(`${url}/v2/${name}/manifests/${digest}`, { headers: { Accept: OCI_MANIFEST } });
  assert.equal(m.status, 200);
  const manifest = (await m.json()) as ArtifactManifest;
  const d = await fetch(`${url}/v2/${name}/blobs/${manifest.layers[0]!.digest}`);
  assert.equal(d.status, 200);
  const document = Buffer.from(await d.arrayBuffer());
  assert.equal(sha256Digest(document), manifest.layers[0]!.digest);
  return { manifest, document };
}

describe('referrers of a built image', () => {
  let r: StandInRegistry;
  let digest: string;
  let closureSize: number;

  before(async () => {
    r = await startStandInRegistry();
    digest = await manifestDigest(r.url, 'hello');
    closureSize = (await r.nix.closure((await r.nix.resolve({ revision: 'x' } as never, parseImageName('hello').packages, 'x86_64-linux')).map((p) => p.outputs.out!))).paths.length;
  });
  after(() => r?.close());

  test('the API lists a CycloneDX SBOM, an SPDX SBOM and the provenance, each an artifact whose subject is the manifest', async () => {
    const { res, index } = await referrers(r.url, 'hello', digest);
    assert.equal(res.headers.get('content-type'), OCI_INDEX);
    assert.equal(res.headers.get('oci-filters-applied'), null);
    assert.equal(index.mediaType, OCI_INDEX);
    assert.deepEqual(index.manifests.map((m) => m.artifactType), TYPES);
    for (const d of index.manifests) {
      assert.equal(d.mediaType, OCI_MANIFEST);
      const { manifest } = await artifact(r.url, 'hello', d.digest);
      assert.equal(manifest.artifactType, d.artifactType);
      assert.equal(manifest.subject.digest, digest);
      assert.equal(manifest.config.mediaType, 'application/vnd.oci.empty.v1+json');
      assert.equal(manifest.layers[0]!.mediaType, d.artifactType);
    }
  });

  test('the documents describe the closure: one component per store path, the license, the subject', async () => {
    const { index } = await referrers(r.url, 'hello', digest);
    const doc = async (type: string) => JSON.parse((await artifact(r.url, 'hello', index.manifests.find((m) => m.artifactType === type)!.digest)).document.toString());
    const cdx = await doc('application/vnd.cyclonedx+json');
    assert.equal(cdx.specVersion, '1.6');
    assert.equal(cdx.metadata.component.version, digest);
    assert.equal(cdx.components.length, closureSize);
    const hello = cdx.components.find((c: { name: string }) => c.name === 'hello');
    assert.equal(hello.version, '2.12.1');
    assert.deepEqual(hello.licenses, [{ license: { id: 'GPL-3.0-or-later' } }]);
    assert.match(hello.purl, /^pkg:nix\/hello@2\.12\.1\?drv_path=.*&store_path=%2Fnix%2Fstore%2F/);
    assert.match(hello.hashes[0].content, /^[0-9a-f]{64}$/);
    const spdx = await doc('application/spdx+json');
    assert.deepEqual(spdxProblems(spdx), []);
    assert.equal(spdx.packages.length, closureSize + 1);
    const provenance = await doc('application/vnd.in-toto+json');
    assert.equal(provenance._type, 'https://in-toto.io/Statement/v1');
    assert.deepEqual(provenance.subject[0].digest, { sha256: digest.slice(7) });
    assert.deepEqual(provenance.predicate.buildDefinition.externalParameters, { image: 'hello', tag: 'latest', platform: 'linux/amd64' });
  });

  test("under another repository's name, the manifest has no referrers", async () => {
    await manifestDigest(r.url, 'jq');
    assert.deepEqual((await referrers(r.url, 'jq', digest)).index.manifests, []);
  });

  test('?artifactType= keeps one type and says so in OCI-Filters-Applied', async () => {
    const spdx = await referrers(r.url, 'hello', digest, `?artifactType=${encodeURIComponent('application/spdx+json')}`);
    assert.equal(spdx.res.headers.get('oci-filters-applied'), 'artifactType');
    assert.deepEqual(spdx.index.manifests.map((m) => m.artifactType), ['application/spdx+json']);
    const none = await referrers(r.url, 'hello', digest, '?artifactType=application%2Fexample');
    assert.equal(none.res.headers.get('oci-filters-applied'), 'artifactType');
    assert.deepEqual(none.index.manifests, []);
  });

  test('the referrers tag schema (sha256-<hex>) answers the same index', async () => {
    const api = await referrers(r.url, 'hello', digest);
    const res = await fetch(`${r.url}/v2/hello/manifests/${digest.replace(':', '-')}`, { headers: { Accept: OCI_INDEX } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), OCI_INDEX);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), api.bytes);
  });

  test('the explorer API links the documents and sums up the licenses', async () => {
    const res = await fetch(`${r.url}/api/v1/images/hello:latest`);
    assert.equal(res.status, 200);
    const { attestations } = (await res.json()) as { attestations: { referrers: string; documents: Array<{ artifactType: string; link: string; document: string }>; licenses: unknown; withoutLicense: number } };
    assert.equal(attestations.referrers, `/v2/hello/referrers/${digest}`);
    assert.deepEqual(attestations.documents.map((d) => d.artifactType).sort(), TYPES);
    for (const d of attestations.documents) {
      const doc = await fetch(`${r.url}${d.link}`);
      assert.equal(doc.status, 200);
      assert.equal(sha256Digest(Buffer.from(await doc.arrayBuffer())), d.document);
    }
    assert.deepEqual(attestations.licenses, [{ license: 'GPL-3.0-or-later', storePaths: 1 }]);
    assert.equal(attestations.withoutLicense, closureSize - 1);
  });

  test('after a restart on the same storage, the same referrers, byte for byte, without Nix', async () => {
    const before = await referrers(r.url, 'hello', digest);
    const again = await startStandInRegistry({}, { storagePath: r.storagePath, nix: new StandInNix({ storeRoot: r.nix.storeRoot }) });
    try {
      const after = await referrers(again.url, 'hello', digest);
      assert.deepEqual(after.bytes, before.bytes);
      assert.equal(again.nix.stats.invocations, 0);
    } finally {
      await again.close();
    }
  });
});

describe('artifacts in storage', () => {
  let dir: string;
  let r: StandInRegistry;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-referrers-'));
    r = await startStandInRegistry({}, { storagePath: dir });
  });
  after(async () => {
    await r?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('gc keeps them while their image lives; scrub checks them; a damaged one is found and rebuilt', async () => {
    const digest = await manifestDigest(r.url, 'hello');
    const { index } = await referrers(r.url, 'hello', digest);
    const storage = new FilesystemStorage(dir);
    const gc = await collectGarbage(storage, { graceSeconds: 0, dryRun: false, now: Date.now() + 60_000 });
    assert.deepEqual(gc.removed.filter((o) => o.key.startsWith('blobs/')), []);
    const docs = await Promise.all(index.manifests.map(async (m) => (await artifact(r.url, 'hello', m.digest)).manifest.layers[0]!.digest));
    for (const d of [...index.manifests.map((m) => m.digest), ...docs]) assert.ok(await storage.stat(blobKey(d)), `${d} kept`);
    assert.deepEqual((await scrubStorage(storage, { repair: false })).bad, []);

    // One byte of the CycloneDX document flipped: scrub finds the blob and the record that uses it.
    const cdx = docs[index.manifests.findIndex((m) => m.artifactType === 'application/vnd.cyclonedx+json')]!;
    const file = path.join(dir, blobKey(cdx));
    const bytes = await readFile(file);
    bytes[10] = bytes[10]! ^ 1;
    await writeFile(file, bytes);
    const report = await scrubStorage(storage, { repair: true });
    assert.ok(report.bad.some((b) => b.key === blobKey(cdx)), JSON.stringify(report.bad));
    assert.ok(report.bad.some((b) => b.key.startsWith('manifests/') && b.why.includes('application/vnd.cyclonedx+json artifact')), JSON.stringify(report.bad));

    // A new registry on that storage (nothing in memory) rebuilds the image and its artifacts.
    const again = await startStandInRegistry({}, { storagePath: dir, nix: new StandInNix({ storeRoot: r.nix.storeRoot }) });
    try {
      assert.equal(await manifestDigest(again.url, 'hello'), digest);
      const rebuilt = await referrers(again.url, 'hello', digest);
      assert.deepEqual(rebuilt.index, index);
      assert.equal(sha256Digest(await readFile(file)), cdx);
      assert.deepEqual((await scrubStorage(storage, { repair: false })).bad, []);
    } finally {
      await again.close();
    }
  });

  test('a lost SBOM blob asked for by digest is rebuilt through the blob repair path', async () => {
    const digest = await manifestDigest(r.url, 'shell/hello');
    const { index } = await referrers(r.url, 'shell/hello', digest);
    const spdx = index.manifests.find((m) => m.artifactType === 'application/spdx+json')!;
    const doc = (await artifact(r.url, 'shell/hello', spdx.digest)).manifest.layers[0]!.digest;
    await rm(path.join(dir, blobKey(doc)));
    const res = await fetch(`${r.url}/v2/shell/hello/blobs/${doc}`);
    assert.equal(res.status, 200);
    assert.equal(sha256Digest(Buffer.from(await res.arrayBuffer())), doc);
  });

  test('gc removes them with their image', async () => {
    const storage = new FilesystemStorage(dir);
    const digest = await manifestDigest(r.url, 'hello');
    const { index } = await referrers(r.url, 'hello', digest);
    await collectGarbage(storage, { graceSeconds: 0, dryRun: false, manifestMaxAgeSeconds: 0, now: Date.now() + 60_000 });
    for (const m of index.manifests) assert.equal(await storage.stat(blobKey(m.digest)), null);
  });
});

describe('multi-platform images', () => {
  let r: StandInRegistry;
  before(async () => {
    r = await startStandInRegistry({ NIXERY_PLATFORMS: 'linux/amd64,linux/arm64' });
  });
  after(() => r?.close());

  test('each platform manifest of the index has its own SBOMs and provenance', async () => {
    const res = await fetch(`${r.url}/v2/hello/manifests/latest`, { headers: { Accept: OCI_INDEX } });
    assert.equal(res.status, 200);
    const index = (await res.json()) as { manifests: Array<{ digest: string; platform: { architecture: string } }> };
    assert.equal(index.manifests.length, 2);
    const seen = new Set<string>();
    for (const m of index.manifests) {
      const refs = await referrers(r.url, 'hello', m.digest);
      assert.deepEqual(refs.index.manifests.map((d) => d.artifactType), TYPES);
      const prov = refs.index.manifests.find((d) => d.artifactType === 'application/vnd.in-toto+json')!;
      const statement = JSON.parse((await artifact(r.url, 'hello', prov.digest)).document.toString());
      assert.equal(statement.predicate.buildDefinition.externalParameters.platform, `linux/${m.platform.architecture}`);
      for (const d of refs.index.manifests) seen.add(d.digest);
    }
    assert.equal(seen.size, 6);
  });
});

describe('scoping for token clients', () => {
  const SERVICE = 'referrers-test';
  let dir: string;
  let tokens: TestTokenService;
  let r: StandInRegistry;
  const token = async (repo: string) => {
    const res = await fetch(`${tokens.realm}?service=${SERVICE}&scope=${encodeURIComponent(`repository:${repo}:pull`)}`, { headers: { Authorization: `Basic ${Buffer.from('carol:secret').toString('base64')}` } });
    return { Authorization: `Bearer ${((await res.json()) as { token: string }).token}` };
  };
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-referrers-scope-'));
    tokens = await startTokenService({ users: { carol: 'secret' }, issuer: 'test-issuer', service: SERVICE });
    await tokens.writeJwks(path.join(dir, 'jwks.json'));
    r = await startStandInRegistry({ NIXERY_AUTH_TOKEN_REALM: tokens.realm, NIXERY_AUTH_TOKEN_SERVICE: SERVICE, NIXERY_AUTH_TOKEN_ISSUER: 'test-issuer', NIXERY_AUTH_TOKEN_KEYS: path.join(dir, 'jwks.json') });
  });
  after(async () => {
    await r?.close();
    await tokens?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("a token for one repository sees its referrers, and none of another repository's manifests", async () => {
    const hello = await token('hello');
    const jq = await token('jq');
    const helloDigest = await manifestDigest(r.url, 'hello', 'latest', OCI_MANIFEST, hello);
    const jqDigest = await manifestDigest(r.url, 'jq', 'latest', OCI_MANIFEST, jq);
    assert.equal((await referrers(r.url, 'hello', helloDigest, '', hello)).index.manifests.length, 3);
    assert.deepEqual((await referrers(r.url, 'hello', jqDigest, '', hello)).index.manifests, []);
    const tag = await fetch(`${r.url}/v2/hello/manifests/${jqDigest.replace(':', '-')}`, { headers: { Accept: OCI_INDEX, ...hello } });
    assert.deepEqual(((await tag.json()) as Index).manifests, []);
    // jq's SBOM is not readable under the hello name either.
    const jqSbom = (await referrers(r.url, 'jq', jqDigest, '', jq)).index.manifests[0]!.digest;
    assert.equal((await fetch(`${r.url}/v2/hello/manifests/${jqSbom}`, { headers: { Accept: OCI_MANIFEST, ...hello } })).status, 404);
  });
});
