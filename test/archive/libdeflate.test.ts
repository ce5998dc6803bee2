// gzip through libdeflate and zstd through node:zlib, both a chunk at a time: the layer is a
// sequence of complete gzip members / zstd frames, one per 4 MiB of tar, that gzip, zstd, Node and
// Go's readers (umoci) read as one stream; the bytes do not depend on concurrency or write sizes.
// And without the addon the registry does not start: one line says how to install it or how to
// choose zlib (a copy of the built program without dist/native, run as a user runs it).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cp, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path, { join } from 'node:path';
import zlib, { gunzipSync } from 'node:zlib';
import { ChunkedEncoder, setCompressionConcurrency } from '../../src/archive/chunked.js';
import { libdeflateGzip, zstd, type LayerCompression } from '../../src/archive/compression.js';
import { LIBDEFLATE_CHUNK_SIZE, libdeflate } from '../../src/archive/libdeflate.js';
import { packStorePaths } from '../../src/archive/pack.js';
import { ociLayout, packToFile, run, sample, sha256, withTempDir } from './helpers.js';
import { freePort } from '../helpers/net.js';

// @types/node 20 does not know node:zlib's zstd (Node ≥ 22.15).
const { zstdDecompressSync } = zlib as unknown as { zstdDecompressSync(input: Buffer): Buffer };

async function encode(compression: LayerCompression, data: Buffer, pieces: number[], maxQueued?: number): Promise<Buffer> {
  const out: Buffer[] = [];
  const encoder = new ChunkedEncoder(compression.codec(), async (b) => void out.push(Buffer.from(b)), { maxQueued });
  for (let offset = 0, i = 0; offset < data.length; i++) {
    const n = Math.min(pieces[i % pieces.length]!, data.length - offset);
    await encoder.write(data.subarray(offset, offset + n));
    offset += n;
  }
  const result = await encoder.end();
  const bytes = Buffer.concat(out);
  assert.equal(result.outputSize, bytes.length);
  return bytes;
}

const DATA = sample(2 * LIBDEFLATE_CHUNK_SIZE + 4321, 42);

describe('gzip through libdeflate', () => {
  test('a layer is one gzip member per 4 MiB chunk, which gzip, zcat and Node read as one stream', async () => {
    const gz = await encode(libdeflateGzip(), DATA, [DATA.length]);
    const members = [];
    for (let o = 0; o < DATA.length; o += LIBDEFLATE_CHUNK_SIZE) members.push(await libdeflate().compressGzipMember(DATA.subarray(o, o + LIBDEFLATE_CHUNK_SIZE), 6));
    assert.equal(members.length, 3);
    assert.ok(gz.equals(Buffer.concat(members)), 'the members of the chunks, in order');
    assert.ok(gunzipSync(gz).equals(DATA), 'Node');
    assert.ok(run('gzip', ['-dc'], gz).equals(DATA), 'gzip -dc');
    run('gzip', ['-t'], gz);
    const empty = await encode(libdeflateGzip(), Buffer.alloc(0), [1]);
    assert.equal(gunzipSync(empty).length, 0, 'an empty input is one empty member');
  });

  test("Go's gzip reader (umoci) unpacks a multi-member layer", async () => {
    await withTempDir(async (dir) => {
      const root = join(dir, 'root');
      const p = `/nix/store/${'h'.repeat(32)}-hello`;
      await mkdir(join(root, p, 'bin'), { recursive: true });
      await writeFile(join(root, p, 'bin', 'hello'), sample(2 * LIBDEFLATE_CHUNK_SIZE + 17, 9), { mode: 0o555 });
      const layerFile = join(dir, 'layer.gz');
      const { digests, gz, tar } = await packToFile([], layerFile, (sink) => packStorePaths([p], sink, { storeRoot: root, compression: libdeflateGzip() }));
      assert.equal(digests.digest, sha256(gz));
      assert.equal(digests.diffId, sha256(tar));
      const image = await ociLayout(join(dir, 'oci'), layerFile, digests);
      const bundle = join(dir, 'bundle');
      run('umoci', ['unpack', '--rootless', '--image', image, bundle]);
      assert.ok((await readFile(join(bundle, 'rootfs', p, 'bin', 'hello'))).equals(await readFile(join(root, p, 'bin', 'hello'))));
    });
  });
});

describe('zstd', () => {
  test('a layer is one zstd frame per 4 MiB chunk, which zstd and Node read as one stream', async () => {
    const zst = await encode(zstd(), DATA, [DATA.length]);
    assert.ok(zstdDecompressSync(zst).equals(DATA), 'Node');
    assert.ok(run('zstd', ['-dcq'], zst).equals(DATA), 'zstd -dc');
    const frames = zst.toString('latin1').split('\x28\xb5\x2f\xfd').length - 1;
    assert.ok(frames >= 3, `at least one frame per chunk (magic numbers: ${frames})`);
  });
});

for (const compression of [libdeflateGzip(), zstd()]) {
  test(`${compression.description}: the bytes depend only on the input, not on concurrency, queue depth or write sizes`, async () => {
    try {
      setCompressionConcurrency(1);
      const serial = await encode(compression, DATA, [DATA.length], 1);
      setCompressionConcurrency(4);
      const parallel = await encode(compression, DATA, [DATA.length], 8);
      const dribbled = await encode(compression, DATA, [1, 511, 4096, 100_000, 3]);
      assert.ok(serial.equals(parallel), 'concurrency 1 vs 4');
      assert.ok(serial.equals(dribbled), 'one write vs many small writes');
    } finally {
      setCompressionConcurrency(availableParallelism());
    }
  });
}

describe('without the libdeflate addon', () => {
  test('the registry does not start: one line says how to install it or how to choose zlib; with NIXERY_GZIP=zlib it starts', async () => {
    await withTempDir(async (dir) => {
      // The built program as installed, minus dist/native (what a build without libdeflate-dev leaves).
      const app = join(dir, 'app');
      await cp(path.resolve('dist/src'), join(app, 'dist/src'), { recursive: true });
      await cp(path.resolve('package.json'), join(app, 'package.json'));
      await symlink(path.resolve('node_modules'), join(app, 'node_modules'));
      const port = await freePort();
      const env = { ...process.env, STORAGE_PATH: join(dir, 'storage'), NIXERY_PKGS_PATH: path.resolve('examples/pkgs'), PORT: String(port), NIXERY_HOST: '127.0.0.1', NIXERY_GZIP: '' };
      const cli = join(app, 'dist/src/cli.js');

      const refused = spawnSync(process.execPath, [cli, 'serve'], { env, encoding: 'utf8', timeout: 60_000 });
      assert.equal(refused.status, 2, refused.stderr);
      const lines = refused.stderr.trim().split('\n');
      assert.equal(lines.length, 1, refused.stderr);
      assert.match(lines[0]!, /^nixery: NIXERY_GZIP=libdeflate .*libdeflate addon cannot load \(.*nixery_deflate\.node is missing\).*bash scripts\/install-deps\.sh.*NIXERY_GZIP=zlib/);
      assert.equal(refused.stdout, '', 'nothing served, nothing logged');

      // zstd layers do not need the addon either.
      for (const choice of [{ NIXERY_GZIP: 'zlib' }, { NIXERY_LAYER_COMPRESSION: 'zstd' }]) {
        const served = await serveUntilListening(cli, { ...env, ...choice }, port);
        assert.equal(served.listening, true, served.output);
        assert.doesNotMatch(served.output, /addon cannot load/);
      }
    });
  });
});

/** Starts `cli serve`, waits until it answers /v2/, stops it (SIGTERM, by its PID). */
async function serveUntilListening(cli: string, env: NodeJS.ProcessEnv, port: number): Promise<{ listening: boolean; output: string }> {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [cli, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  let listening = false;
  const until = Date.now() + 30_000;
  while (!listening && Date.now() < until && child.exitCode === null) {
    listening = await fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.status === 200, () => false);
    if (!listening) await new Promise((r) => setTimeout(r, 100));
  }
  if (child.exitCode === null) child.kill('SIGTERM');
  await exited;
  return { listening, output };
}
