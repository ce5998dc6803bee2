// `npm run bench:sources`: pull latency while a local package set (NIXERY_PKGS_PATH) of many
// files is looked at again in the background. A `nixery serve` process on a generated tree (the
// example package set plus BENCH_FILES files of BENCH_FILE_KB each, not a git checkout, so its
// identity is the content hash); clients pull a manifest by tag (and its config blob) for
// BENCH_SECONDS in each phase:
//
//   baseline   NIXERY_RESOLVE_TTL=86400: no look during the phase
//   refresh    NIXERY_RESOLVE_TTL=2: a look every ~1.5 s; nothing changed, so each look stats
//              every file and reads none
//   rehash     the same, after every file is touched: looks read the whole tree again (same
//              content, same revision, same image)
//
// Prints latency percentiles per phase, looks and bytes read, how long a look took, and how
// long a first full hash takes (what a pull waited for once per TTL before pins were refreshed
// in the background). Settings: BENCH_FILES (50000), BENCH_FILE_KB (14: 50,000 files are then
// about the size of a nixpkgs checkout), BENCH_SECONDS (10), BENCH_CLIENTS (4).

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../test/helpers/net.js';
import { TreeHasher } from '../src/nix/tree-hash.js';

const execFileP = promisify(execFile);
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const FILES = Number(process.env.BENCH_FILES ?? 50_000);
const FILE_KB = Number(process.env.BENCH_FILE_KB ?? 14);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 4);

interface Server {
  url: string;
  child: ChildProcess;
}

async function startServer(tree: string, storage: string, ttl: number): Promise<Server> {
  const port = await freePort();
  const child = spawn('node', [path.join(ROOT, 'dist/src/cli.js'), 'serve'], {
    env: { ...process.env, NIX_CONFIG: 'substituters =', NIXERY_PKGS_PATH: tree, STORAGE_PATH: storage, PORT: String(port), NIXERY_HOST: '127.0.0.1', NIXERY_LOG_LEVEL: 'warn', NIXERY_RESOLVE_TTL: String(ttl), NIX_TIMEOUT: '600' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (const until = Date.now() + 60_000; ; ) {
    const up = await fetch(`${url}/v2/`).then(
      (r) => r.arrayBuffer().then(() => r.ok),
      () => false,
    );
    if (up) return { url, child };
    if (Date.now() > until) throw new Error('nixery serve did not come up');
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stopServer(s: Server): Promise<void> {
  const exited = new Promise((r) => s.child.once('exit', r));
  s.child.kill('SIGTERM');
  await exited;
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\d+(?:\\.\\d+)?(?:e[+-]?\\d+)?)$`, 'm').exec(text)?.[1] ?? NaN);
}

interface Phase {
  name: string;
  latencies: number[];
  looks: number;
  bytesRead: number;
  longestLookMs: number;
}

/** CLIENTS clients pulling for SECONDS; `during` runs once, a second into the phase. */
async function measure(name: string, s: Server, during?: () => Promise<unknown>): Promise<Phase> {
  const manifest = (await (await fetch(`${s.url}/v2/hello/manifests/latest`)).json()) as { config: { digest: string } };
  const looks0 = await metric(s.url, 'nixery_source_looks_total');
  const bytes0 = await metric(s.url, 'nixery_source_bytes_hashed_total');
  const latencies: number[] = [];
  let longestLookMs = 0;
  const end = Date.now() + SECONDS * 1000;
  const sampler = (async () => {
    while (Date.now() < end) {
      // The last look's duration: sampled, so a look that ended before the phase may show.
      longestLookMs = Math.max(longestLookMs, 1000 * (await metric(s.url, 'nixery_source_look_last_seconds')));
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  const side = during ? new Promise((r) => setTimeout(r, 1000)).then(during) : Promise.resolve();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (Date.now() < end) {
        const t = performance.now();
        const m = await fetch(`${s.url}/v2/hello/manifests/latest`);
        await m.arrayBuffer();
        const b = await fetch(`${s.url}/v2/hello/blobs/${manifest.config.digest}`);
        await b.arrayBuffer();
        if (m.status !== 200 || b.status !== 200) throw new Error(`pull failed: ${m.status} ${b.status}`);
        latencies.push(performance.now() - t);
      }
    }),
  );
  await Promise.all([sampler, side]);
  return {
    name,
    latencies,
    looks: (await metric(s.url, 'nixery_source_looks_total')) - looks0,
    bytesRead: (await metric(s.url, 'nixery_source_bytes_hashed_total')) - bytes0,
    longestLookMs,
  };
}

function pct(values: number[], p: number): string {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!.toFixed(1);
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-bench-sources-'));
  try {
    const tree = path.join(dir, 'pkgs');
    await cp(path.join(ROOT, 'examples/pkgs'), tree, { recursive: true });
    process.stderr.write(`writing ${FILES} files of ${FILE_KB} KB…\n`);
    const block = Buffer.alloc(FILE_KB * 1024);
    for (let d = 0; d * 100 < FILES; d++) {
      const sub = path.join(tree, 'data', `d${String(d).padStart(4, '0')}`);
      await mkdir(sub, { recursive: true });
      await Promise.all(
        Array.from({ length: Math.min(100, FILES - d * 100) }, (_, i) => {
          block.write(`file ${d * 100 + i}\n`, 0);
          return writeFile(path.join(sub, `f${i}`), block);
        }),
      );
    }
    // Drop nothing from the page cache (root-only and machine-wide): the first hash reads what
    // was just written, as a registry would find a checkout it was started on.
    const hasher = new TreeHasher();
    let t = performance.now();
    const full = await hasher.hash(tree);
    const fullMs = performance.now() - t;
    await new Promise((r) => setTimeout(r, 2100)); // past the racy window: the stat cache holds
    t = performance.now();
    await hasher.hash(tree);
    const statMs = performance.now() - t;
    await hasher.close();

    const storage = path.join(dir, 'storage');
    await mkdir(storage);
    const phases: Phase[] = [];
    const base = await startServer(tree, storage, 86_400);
    try {
      t = performance.now();
      const first = await fetch(`${base.url}/v2/hello/manifests/latest`);
      await first.arrayBuffer();
      process.stderr.write(`first pull (first hash, Nix, packing): ${(performance.now() - t).toFixed(0)} ms\n`);
      phases.push(await measure('baseline (no look)', base));
    } finally {
      await stopServer(base);
    }
    const refreshing = await startServer(tree, storage, 2);
    try {
      const first = await fetch(`${refreshing.url}/v2/hello/manifests/latest`);
      await first.arrayBuffer();
      // A new process hashes the tree in full once (the pull above may have been answered from
      // the persisted pin meanwhile): measure the steady state after that.
      while ((await metric(refreshing.url, 'nixery_source_looks_total')) < 2) await new Promise((r) => setTimeout(r, 200));
      phases.push(await measure('refresh (stat only)', refreshing));
      phases.push(await measure('rehash (all touched)', refreshing, () => execFileP('find', [path.join(tree, 'data'), '-type', 'f', '-exec', 'touch', '{}', '+'])));
    } finally {
      await stopServer(refreshing);
    }

    console.log(`tree: ${full.files} files, ${(full.bytesRead / 1e6).toFixed(0)} MB; a full hash takes ${fullMs.toFixed(0)} ms, a pass over the stat cache ${statMs.toFixed(0)} ms`);
    console.log(`(before background refresh, a pull waited for a full hash once per NIXERY_RESOLVE_TTL)`);
    console.log(`${CLIENTS} clients, ${SECONDS} s per phase, manifest by tag + config blob per pull:`);
    console.log('phase                   pulls   p50 ms   p99 ms   max ms   looks   MB read   longest look ms');
    for (const p of phases) {
      console.log(
        `${p.name.padEnd(22)} ${String(p.latencies.length).padStart(6)} ${pct(p.latencies, 50).padStart(8)} ${pct(p.latencies, 99).padStart(8)} ${pct(p.latencies, 100).padStart(8)} ${String(p.looks).padStart(7)} ${(p.bytesRead / 1e6).toFixed(0).padStart(9)} ${(p.looks > 0 ? p.longestLookMs.toFixed(0) : '-').padStart(17)}`,
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
