// Packing benchmark: generates a synthetic Nix store (fixed seed, ~330 MB of binary-like, text
// and random data) in a temp dir, packs it with each layer compression (gzip through libdeflate,
// gzip through zlib, zstd) as one big layer and as several layers at once, and compares time and
// size with `tar -c | gzip -6` and `tar -c | pigz -p 2 -6` on the same data.
//
//   npm run bench            (BENCH_SCALE=0.2 for a quick run, BENCH_ROUNDS=n, default 3)
//   BENCH_DATA=debian        real files instead: this machine's Debian binaries, libraries and
//                            shared data (/usr/bin, /usr/lib, /usr/share), ~300 MB × BENCH_SCALE

import { spawnSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, lstat, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { libdeflateGzip, packStorePaths, setCompressionConcurrency, zlibGzip, zstd, type LayerCompression, type LayerDigests } from '../src/archive/index.js';

const SCALE = Number(process.env.BENCH_SCALE ?? '1');
const MB = 1e6;

/** Deterministic pseudo-random bytes: AES-128-CTR of zeros under a fixed key. */
class Stream {
  private readonly cipher;
  constructor(seed: string) {
    const key = createHash('sha256').update(seed).digest();
    this.cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  }
  bytes(n: number): Buffer {
    return this.cipher.update(Buffer.alloc(n));
  }
  /** Uniform integer in [0, n). */
  int(n: number): number {
    return this.bytes(4).readUInt32LE(0) % n;
  }
}

const WORDS = ['the', 'store', 'path', 'derivation', 'closure', 'layer', 'package', 'output', 'build', 'nix', 'lib',
  'share', 'man', 'doc', 'function', 'return', 'value', 'error', 'config', 'install', 'option', 'default', 'system',
  'linux', 'x86_64', 'version', 'license', 'copyright', 'include', 'static', 'const', 'struct', 'int', 'char', 'void'];

/** A pool of generated lines, made once: text files draw lines from it. */
function linePool(rng: Stream): Buffer[] {
  const lines: Buffer[] = [];
  const r = rng.bytes(2048 * 16);
  for (let i = 0; i < 2048; i++) {
    const n = 3 + (r[i * 16]! % 12);
    const words = Array.from({ length: n }, (_, j) => WORDS[r[i * 16 + 1 + j]! % WORDS.length]);
    lines.push(Buffer.from(`${' '.repeat((r[i * 16 + 15]! % 3) * 2)}${words.join(' ')}${r[i * 16 + 14]! % 4 === 0 ? ` ${r.readUInt16LE(i * 16 + 12)}` : ''}\n`));
  }
  return lines;
}

/** Text: lines drawn from the pool (compresses ~4×, like docs and scripts). */
function textData(rng: Stream, lines: Buffer[], size: number): Buffer {
  const parts: Buffer[] = [];
  let total = 0;
  const picks = rng.bytes(2 * Math.ceil(size / 8) + 64);
  for (let k = 0; total < size; k++) {
    const line = lines[picks.readUInt16LE((k * 2) % (picks.length - 2)) % lines.length]!;
    parts.push(line);
    total += line.length;
  }
  return Buffer.concat(parts).subarray(0, size);
}

/**
 * Binary-like: short runs of low-entropy "opcode" bytes mixed with copies of earlier stretches
 * (within deflate's window), which compresses about 2.5-3× like real executables.
 */
function binaryData(rng: Stream, size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  const r = rng.bytes(size + 64);
  let off = 0;
  let i = 0;
  while (off < size) {
    const op = r[i++ % r.length]!;
    if (op < 110 && off > 4096) {
      // copy 8..71 bytes from up to 16 KiB back
      const len = Math.min(8 + (r[i++ % r.length]! & 63), size - off);
      const back = 64 + (r.readUInt16LE(i % (r.length - 2)) & 0x3fff);
      i += 2;
      const from = Math.max(0, off - back);
      for (let j = 0; j < len; j++) out[off + j] = out[from + j]!;
      off += len;
    } else {
      const len = Math.min(2 + (op & 7), size - off);
      for (let j = 0; j < len; j++) {
        const b = r[i++ % r.length]!;
        out[off + j] = b < 96 ? 0 : b < 160 ? b & 0x0f : b; // zeros and small values are common
      }
      off += len;
    }
  }
  return out;
}

interface Generated {
  root: string;
  paths: string[];
  bytes: number;
}

async function generateStore(dir: string): Promise<Generated> {
  const root = join(dir, 'root');
  const rng = new Stream('nixery-ts bench v1');
  const lines = linePool(rng);
  const paths: string[] = [];
  let bytes = 0;
  const put = async (file: string, data: Buffer, mode = 0o444): Promise<void> => {
    await writeFile(file, data, { mode });
    bytes += data.length;
  };
  const scaled = (n: number): number => Math.max(1024, Math.round(n * SCALE));
  for (let p = 0; p < 12; p++) {
    const hash = createHash('sha256').update(`path ${p}`).digest('hex').slice(0, 32);
    const storePath = `/nix/store/${hash}-pkg${p}-1.${p}`;
    const base = join(root, storePath);
    paths.push(storePath);
    await mkdir(join(base, 'bin'), { recursive: true });
    await mkdir(join(base, 'lib'), { recursive: true });
    await mkdir(join(base, 'share', 'doc'), { recursive: true });
    await mkdir(join(base, 'share', 'data'), { recursive: true });
    for (let b = 0; b < 2; b++) await put(join(base, 'bin', `tool${b}`), binaryData(rng, scaled(2e6 + rng.int(6e6))), 0o555);
    for (let l = 0; l < 3; l++) await put(join(base, 'lib', `libpkg${p}-${l}.so`), binaryData(rng, scaled(1e6 + rng.int(5e6))));
    for (let d = 0; d < 120; d++) await put(join(base, 'share', 'doc', `page${d}.txt`), textData(rng, lines, Math.max(200, Math.round((500 + rng.int(40000)) * SCALE))));
    await put(join(base, 'share', 'data', 'blob.bin'), rng.bytes(scaled(4e6 + rng.int(4e6))));
  }
  return { root, paths, bytes };
}

/** 12 store paths of real files from /usr, in a fixed order, until ~300 MB × BENCH_SCALE. */
async function debianStore(dir: string): Promise<Generated> {
  const root = join(dir, 'root');
  const limit = 300e6 * SCALE;
  const paths = Array.from({ length: 12 }, (_, p) => `/nix/store/${createHash('sha256').update(`debian ${p}`).digest('hex').slice(0, 32)}-debian${p}`);
  for (const p of paths) await mkdir(join(root, p), { recursive: true });
  let bytes = 0;
  let n = 0;
  async function walk(from: string): Promise<void> {
    for (const name of (await readdir(from)).sort()) {
      if (bytes >= limit) return;
      const file = join(from, name);
      const st = await lstat(file).catch(() => undefined);
      if (!st) continue;
      if (st.isDirectory()) await walk(file);
      else if (st.isFile() && st.size > 0 && st.size < 64e6) {
        const to = join(root, paths[n++ % paths.length]!, file.replaceAll('/', '_'));
        if (await copyFile(file, to).then(() => true, () => false)) bytes += st.size;
      }
    }
  }
  for (const from of ['/usr/bin', '/usr/lib/x86_64-linux-gnu', '/usr/share']) await walk(from);
  return { root, paths, bytes };
}

interface Timing {
  seconds: number;
  /** CPU seconds (user + system), all threads. */
  cpu: number;
  size: number;
  layers: LayerDigests[];
}

let peakRss = 0;

async function timeOurs(compression: LayerCompression, groups: string[][], root: string, out: string): Promise<Timing> {
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
  const layers = await Promise.all(
    groups.map(async (paths, i) => {
      const file = createWriteStream(`${out}.${i}`);
      const digests = await packStorePaths(paths, file, { storeRoot: root, compression });
      await new Promise<void>((resolve, reject) => file.end((err?: Error | null) => (err ? reject(err) : resolve())));
      return digests;
    }),
  );
  clearInterval(sampler);
  const seconds = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu0);
  // Every layer is read back by the reference tool before it counts.
  const check = compression.format === 'zstd' ? ['zstd', '-q', '-t'] : ['gzip', '-t'];
  for (let i = 0; i < groups.length; i++) {
    const r = spawnSync(check[0]!, [...check.slice(1), `${out}.${i}`]);
    if (r.status !== 0) throw new Error(`${compression.description}: ${check.join(' ')} rejected layer ${i}: ${r.stderr}`);
  }
  return { seconds, cpu: (used.user + used.system) / 1e6, size: layers.reduce((a, l) => a + l.size, 0), layers };
}

/** `tar | <compressor>` of the same tree, timed by bash. */
function timeTarPipe(root: string, out: string, compressor: string): Timing {
  const script = `TIMEFORMAT="%R %U %S"; time (tar -C "$1" --sort=name -cf - nix | ${compressor} > "$2")`;
  const r = spawnSync('bash', ['-o', 'pipefail', '-c', script, 'bench', root, out]);
  if (r.status !== 0) throw new Error(`tar | ${compressor} failed: ${r.stderr}`);
  const [real, user, sys] = r.stderr.toString().trim().split('\n').at(-1)!.split(' ').map(Number) as [number, number, number];
  const size = Number(spawnSync('stat', ['-c', '%s', out]).stdout.toString().trim());
  return { seconds: real, cpu: user + sys, size, layers: [] };
}

const best = (runs: Timing[]): Timing => runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
const has = (tool: string): boolean => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;

async function main(): Promise<void> {
  const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? '3'));
  const dir = await mkdtemp(join(tmpdir(), 'nixery-bench-'));
  try {
    const compressions = [libdeflateGzip(), zlibGzip(), zstd()];
    console.log(`cpu: ${cpus()[0]?.model ?? '?'} × ${availableParallelism()}, node ${process.version}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    const genStart = performance.now();
    const debian = process.env.BENCH_DATA === 'debian';
    const store = debian ? await debianStore(dir) : await generateStore(dir);
    console.log(`${debian ? 'copied' : 'generated'} ${store.paths.length} store paths, ${(store.bytes / MB).toFixed(1)} MB of ${debian ? "this machine's /usr files" : 'file data'} in ${((performance.now() - genStart) / 1000).toFixed(1)} s`);

    const rssBefore = process.memoryUsage().rss; // includes the generator's leftovers
    const out = join(dir, 'out');
    timeTarPipe(store.root, `${out}.warmup.tar.gz`, 'gzip -6'); // warms the page cache for everyone
    const groups = [0, 1, 2, 3].map((g) => store.paths.filter((_, i) => i % 4 === g));
    const baselines: Array<[string, string]> = [['tar -c | gzip -6', 'gzip -6 -n']];
    if (has('pigz')) baselines.push(['tar -c | pigz -p 2 -6', 'pigz -p 2 -6 -n']);
    else console.log('pigz is not installed: no pigz row (apt-get install pigz)');
    const base = new Map(baselines.map(([name]) => [name, [] as Timing[]]));
    const single = new Map(compressions.map((c) => [c.description, [] as Timing[]]));
    const several = new Map(compressions.map((c) => [c.description, [] as Timing[]]));
    // Rounds interleave the methods, and the best of each is kept: the machine may be shared.
    for (let r = 0; r < rounds; r++) {
      for (const [name, command] of baselines) base.get(name)!.push(timeTarPipe(store.root, `${out}.base`, command));
      for (const c of compressions) {
        single.get(c.description)!.push(await timeOurs(c, [store.paths], store.root, `${out}.single`));
        several.get(c.description)!.push(await timeOurs(c, groups, store.root, `${out}.multi`));
      }
    }
    // Output must not depend on the concurrency: one slot gives the same digest.
    setCompressionConcurrency(1);
    const serial = new Map<string, Timing>();
    for (const c of compressions) serial.set(c.description, await timeOurs(c, [store.paths], store.root, `${out}.serial`));
    setCompressionConcurrency(availableParallelism());
    for (const c of compressions) {
      const digests = new Set([...single.get(c.description)!, serial.get(c.description)!].map((t) => t.layers[0]!.digest));
      if (digests.size !== 1) throw new Error(`${c.description}: the digest differs between rounds or concurrency`);
    }

    const gzip6 = best(base.get('tar -c | gzip -6')!);
    const zlibSize = best(single.get(compressions[1]!.description)!).size;
    const tarBytes = best(single.get(compressions[0]!.description)!).layers[0]!.uncompressedSize;
    const rate = (s: number): number => tarBytes / MB / s;
    const row = (name: string, t: Timing): string =>
      `${name.padEnd(48)} ${t.seconds.toFixed(2).padStart(6)} s ${rate(t.seconds).toFixed(1).padStart(6)} MB/s ${t.cpu.toFixed(2).padStart(6)} s ${(t.size / MB).toFixed(1).padStart(7)} MB ${(((t.size / zlibSize) - 1) * 100).toFixed(2).padStart(6)} %   ×${(gzip6.seconds / t.seconds).toFixed(2)}`;
    console.log(`\nuncompressed tar: ${(tarBytes / MB).toFixed(1)} MB; MB/s = uncompressed MB / wall time; best of ${rounds} rounds; size vs gzip through zlib (level 6), speed vs tar | gzip -6`);
    console.log(`${'method'.padEnd(48)} ${'wall'.padStart(8)} ${'rate'.padStart(11)} ${'cpu'.padStart(8)} ${'output'.padStart(10)} ${'size'.padStart(8)}   speed`);
    for (const [name] of baselines) console.log(row(name, best(base.get(name)!)));
    for (const c of compressions) {
      console.log(row(`${c.description}, 1 layer`, best(single.get(c.description)!)));
      console.log(row(`${c.description}, ${groups.length} layers`, best(several.get(c.description)!)));
      console.log(row(`${c.description}, 1 layer, 1 slot`, serial.get(c.description)!));
    }
    console.log(`\nRSS before packing ${(rssBefore / MB).toFixed(0)} MB, peak while packing ${(peakRss / MB).toFixed(0)} MB; load after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    for (const c of compressions) console.log(`${c.description}: one-layer digest ${single.get(c.description)![0]!.layers[0]!.digest} (same in every round and with 1 slot)`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
