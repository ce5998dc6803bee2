// Blob reads against a real `nixery serve` process over real sockets, with blobs in a real
// filesystem store:
// - a blob that rots in place after it was read twice (size, mtime restored) is never a complete
//   200 with the wrong bytes, whether it is read whole (hot cache off) or streamed (> 16 MB),
//   wherever the damage is: later reads are checked against the tag of the first read's bytes;
// - a range on a filesystem blob too large to read whole is answered whole (its bytes checked);
// - clients that never read do not make anyone else wait for the send buffer.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { open, rm, stat } from 'node:fs/promises';
import { mkdtemp } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FilesystemStorage } from '../../src/storage/filesystem.js';
import { blobKey } from '../../src/builder/layout.js';
import { EXAMPLE_PKGS } from '../helpers/nix.js';
import { noise } from '../helpers/pkgsets.js';
import { metric } from '../helpers/registry.js';
import { startServe, type ServeProcess } from '../helpers/serve.js';

const MB = 1024 * 1024;
const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Puts `size` bytes of noise in the store as a layer blob; its digest. */
async function putBlob(storagePath: string, size: number, seed: string): Promise<string> {
  const bytes = noise(size, seed);
  const digest = sha256(bytes);
  await new FilesystemStorage(storagePath).put(blobKey(digest), bytes, { contentType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
  return digest;
}

/** Flips bytes in the middle of a blob's file in place, then gives it back its mtime: same inode, size and times. */
async function rotInPlace(storagePath: string, digest: string, where?: number): Promise<void> {
  const file = path.join(storagePath, blobKey(digest));
  const before = await stat(file, { bigint: true });
  const fh = await open(file, 'r+');
  try {
    const at = where ?? Math.floor(Number(before.size) / 2);
    const buf = Buffer.alloc(4096);
    await fh.read(buf, 0, buf.length, at);
    for (let i = 0; i < buf.length; i++) buf[i] = buf[i]! ^ 0xff;
    await fh.write(buf, 0, buf.length, at);
  } finally {
    await fh.close();
  }
  // utimes(2) to the nanosecond (Node's utimes takes a double of seconds, which rounds).
  const ns = (t: bigint) => `@${t / 1_000_000_000n}.${(t % 1_000_000_000n).toString().padStart(9, '0')}`;
  execFileSync('touch', ['-m', '-d', ns(before.mtimeNs), file]);
  const after = await stat(file, { bigint: true });
  assert.equal(after.size, before.size);
  assert.equal(after.mtimeNs, before.mtimeNs);
  assert.equal(after.ino, before.ino);
}

/** A GET as a client sees it: the status, and the body's bytes and whether it arrived complete. */
async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; complete: boolean; body: Buffer; length: number }> {
  const res = await fetch(url, { headers });
  const length = Number(res.headers.get('content-length') ?? -1);
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) chunks.push(Buffer.from(chunk));
  } catch {
    // A transfer cut short: what a client sees as a failed download.
    return { status: res.status, complete: false, body: Buffer.concat(chunks), length };
  }
  const body = Buffer.concat(chunks);
  return { status: res.status, complete: length < 0 || body.length === length, body, length };
}

/** CPU time a process has used, ms (utime + stime from /proc; clock ticks are 10 ms here). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Waits (at most 30 s) until a process uses under 5 % of a core over half a second. */
async function settled(pid: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (let last = cpuMs(pid); Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, 500));
    const now = cpuMs(pid);
    if (now - last < 25) return;
    last = now;
  }
}

/** A GET from a given loopback address (another client, as far as the registry can tell). */
function getFrom(url: string, localAddress: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { localAddress }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

describe('blobs that rot in place after a read', () => {
  let storagePath: string;
  let s: ServeProcess;
  before(async () => {
    storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-rot-'));
    s = await startServe({ pkgsPath: EXAMPLE_PKGS, storagePath, env: { NIXERY_BLOB_CACHE_MB: '0', NIXERY_LOG_LEVEL: 'warn' } });
  });
  after(async () => {
    await s.stop('SIGKILL');
    await rm(storagePath, { recursive: true, force: true });
  });

  for (const [what, size, at] of [
    ['a 2 MB blob read whole (hot cache off)', 2 * MB, undefined],
    ['a 20 MB blob streamed', 20 * MB, undefined],
    ['a 20 MB blob streamed, rotten in its last 4 KB', 20 * MB, 20 * MB - 4096],
  ] as const) {
    test(`${what}: never a complete 200 with the wrong bytes`, async () => {
      const digest = await putBlob(storagePath, size, what);
      const url = `${s.url}/v2/rot/blobs/${digest}`;
      // The first read is hashed; the second is checked against the tag of the first one's bytes.
      for (const read of ['first', 'second']) {
        const good = await get(url);
        assert.equal(good.status, 200, `${read} read`);
        assert.ok(good.complete, `${read} read`);
        assert.equal(sha256(good.body), digest, `${read} read`);
      }
      await rotInPlace(storagePath, digest, at);
      const outcomes: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await get(url);
        const ok = r.status === 200 && r.complete;
        assert.ok(!ok || sha256(r.body) === digest, `attempt ${i + 1}: a complete 200 with ${r.body.length} bytes that do not hash to ${digest}`);
        outcomes.push(r.status === 200 ? (r.complete ? 'complete' : `cut at ${r.body.length}`) : String(r.status));
      }
      // The rotten copy was removed: later requests learn the blob is gone (nothing here names it).
      assert.equal(outcomes.at(-1), '404', outcomes.join(', '));
      assert.ok((await metric(s.url, 'nixery_integrity_failures_total')) >= 1);
    });
  }

  test('a range of a filesystem blob too large to read whole is answered whole, its bytes checked', async () => {
    const digest = await putBlob(storagePath, 20 * MB, 'range');
    const r = await get(`${s.url}/v2/rot/blobs/${digest}`, { Range: 'bytes=100-199' });
    assert.equal(r.status, 200);
    assert.equal(r.body.length, 20 * MB);
    assert.equal(sha256(r.body), digest);
    await rotInPlace(storagePath, digest);
    const rotten = await get(`${s.url}/v2/rot/blobs/${digest}`, { Range: 'bytes=100-199' });
    assert.ok(!(rotten.status === 200 && rotten.complete), 'a rotten blob completed a response');
  });
});

describe('clients that never read', () => {
  let storagePath: string;
  let big: string;
  let other: string;
  before(async () => {
    storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-fair-'));
    big = await putBlob(storagePath, 64 * MB, 'big');
    other = await putBlob(storagePath, 20 * MB, 'other');
  });
  after(() => rm(storagePath, { recursive: true, force: true }));

  test('150 non-readers of a 64 MB blob do not make another client wait for its 20 MB blob', async () => {
    const s = await startServe({
      pkgsPath: EXAMPLE_PKGS,
      storagePath,
      env: { NIXERY_SEND_BUFFER_MB: '64', NIXERY_SEND_TIMEOUT: '120', NIXERY_LOG_LEVEL: 'warn' },
    });
    const sockets: net.Socket[] = [];
    try {
      await Promise.all(
        Array.from({ length: 150 }, async () => {
          const socket = net.connect(s.port, '127.0.0.1');
          socket.on('error', () => {});
          sockets.push(socket);
          await new Promise((resolve) => socket.once('connect', resolve));
          // Sends the request and never reads a byte of the answer.
          socket.pause();
          socket.write(`GET /v2/stalled/blobs/${big} HTTP/1.1\r\nHost: x\r\n\r\n`);
        }),
      );
      // Until their responses have backed up (the kernel's socket buffers are full) and the
      // server is idle: what is measured next is waiting, not this shared machine's CPU.
      await settled(s.pid);
      assert.ok((await metric(s.url, 'nixery_send_buffered_bytes')) > 0, 'the non-readers hold buffer');
      // Someone else (another address), and the same address as the non-readers: both are
      // served at once, the second with a small window since its share of the buffer is taken.
      for (const localAddress of ['127.0.0.2', '127.0.0.1']) {
        const started = performance.now();
        const r = await getFrom(`${s.url}/v2/fine/blobs/${other}`, localAddress);
        const seconds = (performance.now() - started) / 1000;
        assert.equal(r.status, 200);
        assert.equal(sha256(r.body), other);
        assert.ok(seconds < 2, `the 20 MB pull from ${localAddress} took ${seconds.toFixed(2)} s`);
      }
      assert.ok((await metric(s.url, 'nixery_send_buffered_bytes')) <= 64 * MB);
    } finally {
      for (const socket of sockets) socket.destroy();
      await s.stop('SIGKILL');
    }
  });
});
