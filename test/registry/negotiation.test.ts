// Content negotiation for manifests by tag, as a table: what each Accept header gets for a
// single-platform and a multi-platform image. The same cases over HTTP: platforms.test.ts.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { negotiateManifest, type ManifestChoice } from '../../src/registry/handlers.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';

const { ociIndex, dockerManifestList: dockerList, ociManifest, dockerManifest } = MEDIA_TYPES;
const OCI_INDEX: ManifestChoice = { index: true, form: 'oci' };
const DOCKER_LIST: ManifestChoice = { index: true, form: 'docker' };
const OCI: ManifestChoice = { index: false, form: 'oci' };
const DOCKER: ManifestChoice = { index: false, form: 'docker' };
/** What containerd sends (resolver.go). */
const CONTAINERD = `${dockerManifest}, ${dockerList}, ${ociManifest}, ${ociIndex}, */*`;

// [Accept, several platforms, one platform]
const cases: Array<[string | string[] | undefined, ManifestChoice, ManifestChoice]> = [
  [ociIndex, OCI_INDEX, OCI_INDEX],
  [dockerList, DOCKER_LIST, DOCKER_LIST],
  [ociManifest, OCI, OCI],
  [dockerManifest, DOCKER, DOCKER],
  ['*/*', OCI, OCI],
  [undefined, OCI, OCI],
  ['', OCI, OCI],
  ['application/json', OCI, OCI],
  [CONTAINERD, OCI_INDEX, OCI],
  [`${dockerManifest}, ${dockerList}`, DOCKER_LIST, DOCKER],
  [`${ociManifest}, ${ociIndex}`, OCI_INDEX, OCI],
  [`${ociIndex}, ${dockerList}`, OCI_INDEX, OCI_INDEX],
  [[ociManifest, dockerList], DOCKER_LIST, OCI],
  [`${ociIndex};q=0, ${ociManifest}`, OCI, OCI],
  [`${ociIndex}; q=0.5, ${ociManifest}`, OCI_INDEX, OCI],
  [`${ociIndex.toUpperCase()}`, OCI_INDEX, OCI_INDEX],
];

for (const [accept, several, one] of cases) {
  test(`Accept ${JSON.stringify(accept)}`, () => {
    assert.deepEqual(negotiateManifest(accept, 2), several, 'two platforms');
    assert.deepEqual(negotiateManifest(accept, 1), one, 'one platform');
  });
}

test('a client that names only index types, or only manifest types, gets only what it named', () => {
  const indexTypes = new Set([ociIndex, dockerList]);
  const manifestTypes = new Set([ociManifest, dockerManifest]);
  const typeOf = (c: ManifestChoice) => (c.index ? (c.form === 'oci' ? ociIndex : dockerList) : c.form === 'oci' ? ociManifest : dockerManifest);
  const subsets = (types: string[]) => types.flatMap((_, i) => types.slice(i).map((__, j) => types.slice(i, i + j + 1)));
  for (const named of [...subsets([...indexTypes]), ...subsets([...manifestTypes])]) {
    for (const platforms of [1, 2, 3]) {
      const got = typeOf(negotiateManifest(named.join(', '), platforms));
      assert.ok(named.includes(got), `${named.join(', ')} with ${platforms} platforms got ${got}`);
    }
  }
});
