// Slow and hostile clients against a real `nixery serve` process, with its memory measured from
// /proc: clients that stop reading are cut off after the send timeout and hold little meanwhile;
// 200 concurrent first reads of one blob share one read.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FilesystemStorage } from '../../src/storage/filesystem.js';
import { blobKey } from '../../src/builder/layout.js';
import { EXAMPLE_PKGS } from '../helpers/nix.js';
import { freePort } from '../helpers/net.js';
import { noise } from '../helpers/pkgsets.js';
import { metric } from '../helpers/registry.js';

const CLI = path.resolve('dist/src/cli.js');
const MB = 1024 * 1024;
/** Clients that stop reading, each asking for a 64 MB blob. */
const STALLED = 100;
const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Resident memory of a process, bytes. */
function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

interface Served {
  url: string;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

async function serve(storagePath: string, env: Record<string, string>): Promise<Served> {
  const port = await freePort();
  const child = spawn('node', [CLI, 'serve'], {
    env: { ...process.env, NIX_CONFIG: 'substituters =', NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: storagePath, PORT: String(port), NIXERY_HOST: '127.0.0.1', NIXERY_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      await (await fetch(`${url}/v2/`)).arrayBuffer();
      break;
    } catch {
      if (i > 300) throw new Error('nixery serve did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    url,
    port,
    child,
    async stop() {
      child.kill('SIGKILL');
      await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
    },
  };
}

/** Waits (at most 30 s) until a process uses under 5 % of a core over half a second. */
async function settled(pid: number): Promise<void> {
  const cpuMs = () => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  };
  const deadline = Date.now() + 30_000;
  for (let last = cpuMs(); Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, 500));
    const now = cpuMs();
    if (now - last < 25) return;
    last = now;
  }
}

/** Open file descriptors (sockets, files) of a process. */
function openFiles(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Polls a process's RSS while `during` runs; the largest value seen. */
async function peakRss(pid: number, during: () => Promise<void>): Promise<number> {
  let peak = rss(pid);
  const timer = setInterval(() => (peak = Math.max(peak, rss(pid))), 20);
  try {
    await during();
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, rss(pid));
}

describe('slow and hostile clients', () => {
  let storagePath: string;
  let big: { digest: string; size: number };
  let small: { digest: string; size: number };

  before(async () => {
    storagePath = await mkdtemp(path.join(tmpdir(), 'nixery-slow-'));
    const storage = new FilesystemStorage(storagePath);
    for (const [name, size] of [['big', 64 * MB], ['small', 2 * MB]] as const) {
      const bytes = noise(size, name);
      const digest = sha256(bytes);
      await storage.put(blobKey(digest), bytes, { contentType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
      if (name === 'big') big = { digest, size };
      else small = { digest, size };
    }
  });
  after(() => rm(storagePath, { recursive: true, force: true }));

  test('clients that stop reading hold a bounded amount and are closed after the send timeout', async () => {
    const s = await serve(storagePath, { NIXERY_SEND_TIMEOUT: '1', NIXERY_SEND_BUFFER_MB: '32' });
    const sockets: net.Socket[] = [];
    try {
      const before = rss(s.child.pid!);
      const fdsBefore = openFiles(s.child.pid!);
      const peak = await peakRss(s.child.pid!, async () => {
        for (let i = 0; i < STALLED; i++) {
          const socket = net.connect(s.port, '127.0.0.1');
          socket.setNoDelay(true);
          sockets.push(socket);
          socket.on('error', () => {});
          socket.write(`GET /v2/stalled/blobs/${big.digest} HTTP/1.1\r\nHost: x\r\n\r\n`);
          // Read the first bytes, then never again: the server's writes back up.
          socket.once('data', () => socket.pause());
        }
        await new Promise((r) => setTimeout(r, 1500));
        // Every stalled response streams at once (none waits for buffer), filling the kernel's
        // socket buffers: measured once that burst is over, so the bound below is about waiting,
        // not about this shared machine's CPU.
        await settled(s.child.pid!);
        // Meanwhile a well-behaved client is served in full, at once (from memory: it waits for
        // no share of the send buffer).
        const started = Date.now();
        const res = await fetch(`${s.url}/v2/fine/blobs/${small.digest}`);
        assert.equal(sha256(new Uint8Array(await res.arrayBuffer())), small.digest);
        assert.ok(Date.now() - started < 1000, `served in ${Date.now() - started} ms`);
        await new Promise((r) => setTimeout(r, 3000));
      });
      // 100 stalled 64 MB responses: together they hold at most the 32 MB send buffer (one client
      // at most a share of it; the rest stream with 64 KB reads and a 64 KB window); the rest of
      // the growth is garbage not yet collected and connection state.
      assert.ok(peak - before < 128 * MB, `RSS grew by ${((peak - before) / MB).toFixed(0)} MB (from ${(before / MB).toFixed(0)} MB)`);
      // The server closes every stalled response: its sockets and files are released even though
      // the clients never read.
      const deadline = Date.now() + 60_000;
      while ((await metric(s.url, 'nixery_send_stalled_total')) < STALLED && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      assert.equal(await metric(s.url, 'nixery_send_stalled_total'), STALLED);
      assert.equal(await metric(s.url, 'nixery_send_buffered_bytes'), 0, 'their buffers were released');
      assert.ok(openFiles(s.child.pid!) <= fdsBefore + 2, `open files: ${fdsBefore} before, ${openFiles(s.child.pid!)} after`);
    } finally {
      for (const socket of sockets) socket.destroy();
      await s.stop();
    }
  });

  for (const cache of ['256', '0']) {
    test(`200 concurrent first GETs of one 2 MB blob share one read (hot cache ${cache} MB)`, async () => {
      const s = await serve(storagePath, { NIXERY_BLOB_CACHE_MB: cache, NIXERY_SEND_BUFFER_MB: '32' });
      try {
        const before = rss(s.child.pid!);
        const digests: string[] = [];
        const peak = await peakRss(s.child.pid!, async () => {
          await Promise.all(
            Array.from({ length: 200 }, async () => {
              const res = await fetch(`${s.url}/v2/many/blobs/${small.digest}`);
              assert.equal(res.status, 200);
              const hash = createHash('sha256');
              for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) hash.update(chunk);
              digests.push(`sha256:${hash.digest('hex')}`);
            }),
          );
        });
        assert.equal(digests.length, 200);
        assert.ok(digests.every((d) => d === small.digest));
        // Each reading its own copy took 200 × 2 MB; here the first reads share one, and later
        // ones (streamed when the cache is off) share the 32 MB send buffer.
        assert.ok(peak - before < 80 * MB, `RSS grew by ${((peak - before) / MB).toFixed(0)} MB (from ${(before / MB).toFixed(0)} MB)`);
      } finally {
        await s.stop();
      }
    });
  }
});
