// The index of a multi-platform image: both families, each pointing only into its own, platforms
// in the given order, bytes a pure function of the platforms' manifests.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildIndex } from '../../src/manifest/image-index.js';
import { buildManifests, sha256Digest, MEDIA_TYPES, type ImageManifests } from '../../src/manifest/manifest.js';

function manifests(architecture: string, seed: string): ImageManifests {
  const layer = { digest: sha256Digest(`layer ${seed}`), size: 100 + seed.length, diffId: sha256Digest(`tar ${seed}`) };
  return buildManifests({ architecture, layers: [layer], packages: ['hello'], source: 'test', revision: 'rev' });
}

const amd64 = { architecture: 'amd64', manifests: manifests('amd64', 'a') };
const arm64 = { architecture: 'arm64', manifests: manifests('arm64', 'b') };

test('the OCI index lists the OCI manifests, the Docker list the Docker manifests, with platforms', () => {
  const index = buildIndex([amd64, arm64]);
  const oci = JSON.parse(index.oci.bytes.toString('utf8'));
  const docker = JSON.parse(index.docker.bytes.toString('utf8'));
  assert.equal(index.oci.mediaType, MEDIA_TYPES.ociIndex);
  assert.equal(index.docker.mediaType, MEDIA_TYPES.dockerManifestList);
  assert.deepEqual(oci, {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociIndex,
    manifests: [
      { mediaType: MEDIA_TYPES.ociManifest, digest: amd64.manifests.oci.digest, size: amd64.manifests.oci.size, platform: { architecture: 'amd64', os: 'linux' } },
      { mediaType: MEDIA_TYPES.ociManifest, digest: arm64.manifests.oci.digest, size: arm64.manifests.oci.size, platform: { architecture: 'arm64', os: 'linux' } },
    ],
  });
  assert.deepEqual(docker, {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.dockerManifestList,
    manifests: [
      { mediaType: MEDIA_TYPES.dockerManifest, digest: amd64.manifests.docker.digest, size: amd64.manifests.docker.size, platform: { architecture: 'amd64', os: 'linux' } },
      { mediaType: MEDIA_TYPES.dockerManifest, digest: arm64.manifests.docker.digest, size: arm64.manifests.docker.size, platform: { architecture: 'arm64', os: 'linux' } },
    ],
  });
  for (const b of [index.oci, index.docker]) {
    assert.equal(b.digest, sha256Digest(b.bytes));
    assert.equal(b.size, b.bytes.length);
  }
});

test('the same manifests give the same bytes; another order is another index', () => {
  const once = buildIndex([amd64, arm64]);
  const again = buildIndex([{ architecture: 'amd64', manifests: manifests('amd64', 'a') }, { architecture: 'arm64', manifests: manifests('arm64', 'b') }]);
  assert.ok(once.oci.bytes.equals(again.oci.bytes));
  assert.ok(once.docker.bytes.equals(again.docker.bytes));
  const reversed = buildIndex([arm64, amd64]);
  assert.notEqual(reversed.oci.digest, once.oci.digest);
  assert.equal(JSON.parse(reversed.oci.bytes.toString()).manifests[0].platform.architecture, 'arm64');
  // Another platform manifest changes the index.
  assert.notEqual(buildIndex([amd64, { architecture: 'arm64', manifests: manifests('arm64', 'c') }]).oci.digest, once.oci.digest);
});

test('an index of one platform is an index; of none, an error', () => {
  const one = JSON.parse(buildIndex([arm64]).oci.bytes.toString());
  assert.equal(one.manifests.length, 1);
  assert.throws(() => buildIndex([]), /at least one platform/);
});
