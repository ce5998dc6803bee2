// The SBOM and provenance documents as pure functions (no Nix): Nix's hash forms read right,
// the same input gives the same bytes, SPDX's required fields are checked, credentials in a
// source URL never reach a document, a channel's tarball is named.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { fromNix32, sha256Hex } from '../../src/sbom/nix-hash.js';
import { nixPurl, splitNameVersion } from '../../src/sbom/model.js';
import { spdxProblems } from '../../src/sbom/spdx.js';
import { attestationInput, attestations, type AttestRequest } from '../../src/builder/attest.js';
import { parseImageName } from '../../src/image/name.js';
import { pinnedSource } from '../../src/nix/source.js';
import { toNix32 } from '../helpers/stand-in-nix.js';
import { licenseSummary } from '../../src/sbom/summary.js';
import { referrersIndex, referrersTagDigest } from '../../src/manifest/referrers.js';

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

test("Nix's hash forms: nix32 (Nix ≤ 2.18), SRI (2.19+), hex", () => {
  assert.equal(sha256Hex('sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73'), EMPTY_SHA256);
  assert.equal(sha256Hex(`sha256-${Buffer.from(EMPTY_SHA256, 'hex').toString('base64')}`), EMPTY_SHA256);
  assert.equal(sha256Hex(`sha256:${EMPTY_SHA256}`), EMPTY_SHA256);
  for (let i = 0; i < 50; i++) {
    const bytes = createHash('sha256').update(String(i)).digest();
    assert.equal(fromNix32(toNix32(bytes), 32)?.toString('hex'), bytes.toString('hex'));
  }
  assert.equal(sha256Hex('sha256:not-nix32'), null);
  assert.equal(sha256Hex('md5:abc'), null);
});

test('names and versions from store path names, and nix purls', () => {
  assert.deepEqual(splitNameVersion('glibc-2.40-66'), { name: 'glibc', version: '2.40-66' });
  assert.deepEqual(splitNameVersion('busybox-static'), { name: 'busybox-static', version: '' });
  assert.deepEqual(splitNameVersion('python3.12-requests-2.32.3'), { name: 'python3.12-requests', version: '2.32.3' });
  assert.equal(nixPurl({ name: 'hello', version: '2.12.1', path: '/nix/store/a-hello-2.12.1', deriver: null }), 'pkg:nix/hello@2.12.1?store_path=%2Fnix%2Fstore%2Fa-hello-2.12.1');
  assert.equal(nixPurl({ name: 'busybox-static', version: '', path: '/nix/store/b-busybox-static', deriver: '/nix/store/c.drv' }), 'pkg:nix/busybox-static?drv_path=%2Fnix%2Fstore%2Fc.drv&store_path=%2Fnix%2Fstore%2Fb-busybox-static');
});

const A = '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello-2.12.1';
const B = '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-glibc-2.40-66';
const blobOf = (s: string) => {
  const bytes = Buffer.from(s);
  return { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length, bytes };
};

function request(source: Parameters<typeof pinnedSource>[0], revision = '0123456789abcdef0123456789abcdef01234567'): AttestRequest {
  return {
    image: parseImageName('hello'),
    pinned: pinnedSource(source, { revision, ref: 'refs/heads/main' }),
    resolved: [
      {
        requested: 'hello',
        attrPath: ['hello'],
        packagePath: ['hello'],
        drvPath: '/nix/store/dddddddddddddddddddddddddddddddd-hello-2.12.1.drv',
        sameAs: [],
        outputs: { out: A },
        meta: { pname: 'hello', version: '2.12.1', licenses: ['GPL-3.0-or-later', 'LicenseRef-example'] },
        sourceInfo: { lastModified: 1714979289, storePath: null },
      },
    ],
    closure: {
      roots: [A],
      paths: [
        { path: A, references: [B], narSize: 100, closureSize: 300, narHash: 'sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73', deriver: '/nix/store/dddddddddddddddddddddddddddddddd-hello-2.12.1.drv' },
        { path: B, references: [], narSize: 200, closureSize: 200, narHash: `sha256-${Buffer.from(EMPTY_SHA256, 'hex').toString('base64')}` },
      ],
    },
    layers: [{ digest: 'sha256:1111111111111111111111111111111111111111111111111111111111111111', storePaths: [{ path: A }, { path: B }] }],
    manifests: { config: blobOf('{}'), oci: blobOf('{"schemaVersion":2}'), docker: blobOf('{"schemaVersion":2,"docker":1}') },
    build: { layering: 'popularity', budget: 94, popularity: 'sha256:x', compression: 'gzip' },
  };
}

test('the same input gives the same bytes; SPDX passes its required-field check; the license summary reads CycloneDX', () => {
  const one = attestations(attestationInput(request({ kind: 'git', url: 'https://example.org/pkgs.git' })));
  const two = attestations(attestationInput(request({ kind: 'git', url: 'https://example.org/pkgs.git' })));
  assert.deepEqual(one.blobs.map((b) => b.bytes.toString()), two.blobs.map((b) => b.bytes.toString()));
  assert.deepEqual(one.artifacts, two.artifacts);
  const spdx = JSON.parse(one.blobs.find((b) => b.mediaType === 'application/spdx+json')!.bytes.toString());
  assert.deepEqual(spdxProblems(spdx), []);
  assert.equal(spdx.creationInfo.created, '2024-05-06T07:08:09Z');
  assert.equal(spdx.packages.find((p: { packageFileName?: string }) => p.packageFileName === A).licenseDeclared, 'GPL-3.0-or-later AND LicenseRef-example');
  const cdx = one.blobs.find((b) => b.mediaType === 'application/vnd.cyclonedx+json')!.bytes;
  assert.deepEqual(licenseSummary(cdx), { licenses: [{ license: 'GPL-3.0-or-later', storePaths: 1 }, { license: 'LicenseRef-example', storePaths: 1 }], withoutLicense: 1 });
  const parsed = JSON.parse(cdx.toString());
  assert.deepEqual(parsed.components.map((c: { hashes: Array<{ content: string }> }) => c.hashes[0]!.content), [EMPTY_SHA256, EMPTY_SHA256]);
  assert.deepEqual(parsed.components.map((c: { name: string; version: string }) => `${c.name} ${c.version}`), ['hello 2.12.1', 'glibc 2.40-66']);
});

test('spdxProblems names what a document lacks', () => {
  assert.deepEqual(spdxProblems({}).length > 3, true);
  const problems = spdxProblems({
    spdxVersion: 'SPDX-2.3', dataLicense: 'CC0-1.0', SPDXID: 'SPDXRef-DOCUMENT', name: 'x', documentNamespace: 'urn:x', creationInfo: { created: '1970-01-01T00:00:00Z', creators: ['Tool: t'] },
    packages: [{ SPDXID: 'SPDXRef-a', name: 'a' }, { SPDXID: 'SPDXRef-a', name: 'b', downloadLocation: 'NOASSERTION' }],
    relationships: [{ spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: 'SPDXRef-zzz' }],
  });
  assert.deepEqual(problems, ['package 0: downloadLocation is missing', 'package 1: SPDXID SPDXRef-a is used twice', 'relationship 0: names an element the document does not have']);
});

test("credentials in the source's URL never reach a document; a channel's tarball is named", () => {
  const secret = 'tok3n-s3cret-value';
  const git = attestations(attestationInput(request({ kind: 'git', url: `https://builder:${secret}@example.org/pkgs.git` })));
  for (const b of git.blobs) assert.ok(!b.bytes.toString().includes(secret), b.mediaType);
  const statement = JSON.parse(git.blobs.find((b) => b.mediaType === 'application/vnd.in-toto+json')!.bytes.toString());
  assert.equal(statement.predicate.buildDefinition.resolvedDependencies[0].uri, 'git+https://***@example.org/pkgs.git');
  const channel = attestations(
    attestationInput(request({ kind: 'channel', channel: 'nixos-24.05', repoUrl: 'https://github.com/NixOS/nixpkgs', tarballUrl: `https://mirror.example.org/{rev}.tar.gz?token=${secret}` })),
  );
  for (const b of channel.blobs) assert.ok(!b.bytes.toString().includes(secret), b.mediaType);
  const deps = JSON.parse(channel.blobs.find((b) => b.mediaType === 'application/vnd.in-toto+json')!.bytes.toString()).predicate.buildDefinition.resolvedDependencies;
  assert.equal(deps[1].name, 'nixpkgs tarball');
  assert.match(deps[1].uri, /^https:\/\/mirror\.example\.org\/0123456789abcdef0123456789abcdef01234567\.tar\.gz\?token=\*\*\*$/);
});

test('referrers indexes: sorted, filtered, de-duplicated; the tag schema', () => {
  const d = (t: string, n: string) => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${n.repeat(64)}`, size: 1, artifactType: t });
  const all = JSON.parse(referrersIndex([d('b/x', '2'), d('a/x', '3'), d('a/x', '1'), d('a/x', '1')]).bytes.toString());
  assert.deepEqual(all.manifests.map((m: { digest: string }) => m.digest[7]), ['1', '3', '2']);
  assert.equal(JSON.parse(referrersIndex([d('b/x', '2'), d('a/x', '3')], 'b/x').bytes.toString()).manifests.length, 1);
  assert.equal(referrersTagDigest(`sha256-${'a'.repeat(64)}`), `sha256:${'a'.repeat(64)}`);
  assert.equal(referrersTagDigest(`sha256-${'a'.repeat(64)}.sig`), null);
  assert.equal(referrersTagDigest('latest'), null);
});
