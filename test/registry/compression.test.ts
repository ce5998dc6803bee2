// Layer compression on the stand-in Nix stage: gzip through libdeflate (the default), gzip
// through zlib (NIXERY_GZIP=zlib) and zstd (NIXERY_LAYER_COMPRESSION=zstd). Each gives the same
// bytes from two fresh stores and storages and from another process; each layer is what its
// media type says, read back by the reference tool (gzip, zstd) into the tar its diff_id names;
// and the compression is part of the cache keys, so one storage keeps one set of layers per
// compression and never serves a record of another.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { startStandInRegistry } from '../helpers/registry.js';
import { COMPRESSION_CATALOGUE, pullImage, type PulledImage } from '../helpers/compression.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';
import { withStorageDir } from '../helpers/registry.js';

const sha256 = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const CHILD = path.resolve('dist/test/helpers/compression-child.js');
const IMAGE = 'bigmix/hello';

const KINDS: Array<{ label: string; env: Record<string, string>; mediaType: string; tool: string[] }> = [
  { label: 'gzip through libdeflate (the default)', env: {}, mediaType: MEDIA_TYPES.ociLayerGzip, tool: ['gzip', '-dc'] },
  { label: 'gzip through zlib', env: { NIXERY_GZIP: 'zlib' }, mediaType: MEDIA_TYPES.ociLayerGzip, tool: ['gzip', '-dc'] },
  { label: 'zstd', env: { NIXERY_LAYER_COMPRESSION: 'zstd' }, mediaType: MEDIA_TYPES.ociLayerZstd, tool: ['zstd', '-dcq'] },
];

async function pullFresh(env: Record<string, string>, storagePath?: string): Promise<PulledImage> {
  const r = await startStandInRegistry(env, { catalogue: COMPRESSION_CATALOGUE, storagePath });
  try {
    return await pullImage(r.url, IMAGE);
  } finally {
    await r.close();
  }
}

/** The compressed layers and their gzip members / zstd frames: the magic numbers at their starts. */
function magic(layer: Buffer): string {
  return layer.subarray(0, 4).toString('hex');
}

describe('layer compression', () => {
  for (const kind of KINDS) {
    test(`${kind.label}: the same digests from two fresh storages and from another process, and layers the reference tool reads`, async () => {
      const a = await pullFresh(kind.env);
      const b = await pullFresh(kind.env);
      assert.equal(a.digest, b.digest, 'the same manifest');
      assert.deepEqual(a.layers, b.layers, 'the same layer bytes');

      const child = spawnSync(process.execPath, [CHILD, JSON.stringify(kind.env)], { encoding: 'utf8', timeout: 120_000 });
      assert.equal(child.status, 0, child.stderr);
      const other = JSON.parse(child.stdout.trim().split('\n').at(-1)!) as { digest: string; layers: string[] };
      assert.equal(other.digest, a.digest, 'another process builds the same manifest');
      assert.deepEqual(other.layers, a.manifest.layers.map((l) => l.digest));

      let biggest = 0;
      for (const [i, layer] of a.layers.entries()) {
        assert.equal(a.manifest.layers[i]!.mediaType, kind.mediaType);
        assert.equal(magic(layer), kind.mediaType === MEDIA_TYPES.ociLayerZstd ? '28b52ffd' : '1f8b0800');
        const tar = execFileSync(kind.tool[0]!, kind.tool.slice(1), { input: layer, maxBuffer: 256 * 1024 * 1024 });
        assert.equal(sha256(tar), a.config.rootfs.diff_ids[i], `layer ${i}: the diff_id is the uncompressed tar`);
        biggest = Math.max(biggest, tar.length);
      }
      assert.ok(biggest > 8 * 1024 * 1024, 'a layer spans several compression chunks');
    });
  }

  test('the compression is part of the keys: one storage, three compressions, three images; each served again as built', async () => {
    await withStorageDir(async (storagePath) => {
      const built = [];
      for (const kind of KINDS) built.push(await pullFresh(kind.env, storagePath));
      assert.equal(new Set(built.map((b) => b.digest)).size, 3, 'three manifests');
      const layerSets = built.map((b) => b.manifest.layers.map((l) => l.digest));
      assert.equal(new Set(layerSets.flat()).size, layerSets.flat().length, 'no layer reused across compressions');
      for (const [i, kind] of KINDS.entries()) {
        const again = await pullFresh(kind.env, storagePath);
        assert.equal(again.digest, built[i]!.digest, `${kind.label}: the stored image again`);
      }
    });
  });
});
