import assert from 'node:assert/strict';
import { test } from 'node:test';
import { storePathName } from '../../src/util/store-path.js';
import { packageFromPath } from '../../src/nix/closure.js';
import { layerSharing } from '../../src/layers/sharing.js';
import { toLayerGraph } from '../../src/builder/popularity.js';
import { stableLayers } from '../../src/layers/stable.js';

const HASH = '0123456789abcdfghijklmnpqrsvwxyz';

test('store path → package name, under the default and another store directory', () => {
  assert.equal(storePathName(`/nix/store/${HASH}-glibc-2.40-66`), 'glibc-2.40-66');
  assert.equal(storePathName(`/nix/store/${HASH}-glibc-2.40-66/lib/libc.so.6`), 'glibc-2.40-66');
  assert.equal(storePathName(`/opt/nix-store/${HASH}-glibc-2.40-66`, '/opt/nix-store'), 'glibc-2.40-66');
  assert.equal(storePathName(`/opt/nix-store/${HASH}-perl-5.38/lib/perl5`, '/opt/nix-store/'), 'perl-5.38');
  assert.equal(storePathName(`${HASH}-hello-2.12.drv`), 'hello-2.12.drv');
  // Nix's own module and layering agree: it is the same function.
  assert.equal(packageFromPath, storePathName);
});

test('off the default store directory, popularity still reaches layering and the layer sharing', () => {
  const dir = '/opt/nix-store';
  const libc = `${dir}/${HASH}-glibc-2.40-66`;
  const app = `${dir}/${HASH.replace('0', '1')}-hello-2.12`;
  const popularity = new Map([['glibc-2.40-66', 100], ['hello-2.12', 1]]);
  assert.deepEqual(layerSharing([libc], popularity, dir), { popularity: 100, runtime: 'glibc-2.40-66' });
  const graph = toLayerGraph({ roots: [app], paths: [
    { path: libc, references: [], narSize: 1000, closureSize: 1000 },
    { path: app, references: [libc], narSize: 10, closureSize: 1010 },
  ] }, dir);
  assert.deepEqual(graph.paths.map((p) => p.name), ['glibc-2.40-66', 'hello-2.12']);
  // hello's popularity of 1 contracts nothing here (it is a root), and glibc is a runtime: two layers.
  const layers = stableLayers(graph, { budget: 10, popularity });
  assert.deepEqual(layers.map((l) => l.paths).sort(), [[app], [libc]].sort());
});
