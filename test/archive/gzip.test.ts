// The parallel gzip stream: valid for every reader, and byte-identical whatever the concurrency,
// the write pattern or the number of layers packed at once.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { GZIP_CHUNK_SIZE, ParallelGzip, setCompressionConcurrency } from '../../src/archive/gzip.js';
import { packStorePaths } from '../../src/archive/pack.js';
import { availableParallelism } from 'node:os';
import { ociLayout, packToFile, run, sample, sha256, withTempDir } from './helpers.js';

async function gzipAll(data: Buffer, pieces: number[], options: { maxQueued?: number } = {}): Promise<Buffer> {
  const out: Buffer[] = [];
  const gz = new ParallelGzip(async (b) => {
    out.push(Buffer.from(b));
  }, options);
  let offset = 0;
  let i = 0;
  while (offset < data.length) {
    const n = Math.min(pieces[i++ % pieces.length]!, data.length - offset);
    await gz.write(data.subarray(offset, offset + n));
    offset += n;
  }
  const result = await gz.end();
  const bytes = Buffer.concat(out);
  assert.equal(result.inputSize, data.length);
  assert.equal(result.outputSize, bytes.length);
  return bytes;
}

describe('parallel gzip', () => {
  test('round-trips at every size around the chunk boundaries, and gzip -t accepts it', async () => {
    await withTempDir(async (dir) => {
      for (const size of [0, 1, 1000, GZIP_CHUNK_SIZE - 1, GZIP_CHUNK_SIZE, GZIP_CHUNK_SIZE + 1, 2 * GZIP_CHUNK_SIZE, 3.5 * GZIP_CHUNK_SIZE]) {
        const data = sample(size, size + 7);
        const gz = await gzipAll(data, [size || 1]);
        assert.ok(gunzipSync(gz).equals(data), `node gunzip, size ${size}`);
        const file = join(dir, `${size}.gz`);
        await writeFile(file, gz);
        run('gzip', ['-t', file]);
        assert.ok(run('gzip', ['-dc', file]).equals(data), `gzip -dc, size ${size}`);
      }
    });
  });

  test('the bytes depend only on the input: not on concurrency, queue depth or write sizes', async () => {
    const data = sample(5 * GZIP_CHUNK_SIZE + 4321, 42);
    try {
      setCompressionConcurrency(1);
      const serial = await gzipAll(data, [data.length], { maxQueued: 1 });
      setCompressionConcurrency(4);
      const parallel = await gzipAll(data, [data.length], { maxQueued: 8 });
      const dribbled = await gzipAll(data, [1, 511, 4096, 100_000, 3]);
      assert.ok(serial.equals(parallel), 'concurrency 1 vs 4');
      assert.ok(serial.equals(dribbled), 'one write vs many small writes');
      assert.ok(gunzipSync(serial).equals(data));
    } finally {
      setCompressionConcurrency(availableParallelism());
    }
  });

  test('layers packed at once equal layers packed one by one, at any concurrency', async () => {
    await withTempDir(async (dir) => {
      const root = join(dir, 'root');
      const paths = ['a', 'b', 'c'].map((n) => `/nix/store/${n.repeat(32)}-${n}`);
      for (const [i, p] of paths.entries()) {
        await mkdir(join(root, p), { recursive: true });
        await writeFile(join(root, p, 'data'), sample(3 * GZIP_CHUNK_SIZE + i * 1000, i + 1));
        await writeFile(join(root, p, 'small'), `small ${i}\n`);
      }
      const pack = async (label: string, concurrent: boolean): Promise<string[]> => {
        const one = async (p: string, i: number): Promise<string> => {
          const { digests, gz } = await packToFile([], join(dir, `${label}-${i}.gz`), (sink) => packStorePaths([p], sink, { storeRoot: root }));
          assert.equal(digests.digest, sha256(gz));
          return digests.digest;
        };
        if (concurrent) return Promise.all(paths.map(one));
        const out: string[] = [];
        for (const [i, p] of paths.entries()) out.push(await one(p, i));
        return out;
      };
      try {
        setCompressionConcurrency(1);
        const sequential = await pack('seq', false);
        setCompressionConcurrency(4);
        const concurrent = await pack('par', true);
        assert.deepEqual(concurrent, sequential);
      } finally {
        setCompressionConcurrency(availableParallelism());
      }
    });
  });

  test("Go's tar and gzip readers (umoci) unpack the layer", async () => {
    await withTempDir(async (dir) => {
      const root = join(dir, 'root');
      const p = `/nix/store/${'h'.repeat(32)}-hello`;
      await mkdir(join(root, p, 'bin'), { recursive: true });
      await writeFile(join(root, p, 'bin', 'hello'), sample(2 * GZIP_CHUNK_SIZE + 17, 9), { mode: 0o555 });
      const layerFile = join(dir, 'layer.gz');
      const { digests } = await packToFile([], layerFile, (sink) => packStorePaths([p], sink, { storeRoot: root }));
      const image = await ociLayout(join(dir, 'oci'), layerFile, digests);
      const bundle = join(dir, 'bundle');
      run('umoci', ['unpack', '--rootless', '--image', image, bundle]);
      const unpacked = await readFile(join(bundle, 'rootfs', p, 'bin', 'hello'));
      assert.ok(unpacked.equals(await readFile(join(root, p, 'bin', 'hello'))));
    });
  });
});
