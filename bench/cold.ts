// `npm run bench:cold`: where the time of a cold build goes. For images of 1, 10 and 125 store
// paths, and of 4 MB, 100 MB and 300 MB closures, made with real Nix from packages new to this
// run (a random marker in each: nothing is in the store or in our storage yet), the builder runs
// in process from the first progress report to the returned manifest, split by phase:
//   pin (the package source's revision), evaluate (Nix resolves the packages), realise (Nix
//   builds them), closure (the runtime closure is read), layering, pack (tar + gzip of each
//   layer, written to storage as it is made), store (the config, manifests and image record).
// Next to each: `tar -c <closure> | gzip -6` of the same store paths, timed the same way.
//
//   npm run bench:cold       BENCH_COLD_ROUNDS=3 (default 1) repeats each image with new packages;
//                            BENCH_COLD_ONLY=paths or =sizes runs half of them.

import { execFileSync, spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { createApp } from '../src/app.js';
import { packStorePaths, zlibGzip } from '../src/archive/index.js';
import { loadConfig } from '../src/config.js';
import { parseImageName } from '../src/image/name.js';
import type { ImageBuilder } from '../src/builder/builder.js';
import type { BuildPhase, BuiltImage } from '../src/builder/types.js';
import { makeUniquePackageSet, type UniquePackage } from '../test/helpers/unique-pkgs.js';
import { nixEnv } from '../test/helpers/nix.js';

process.env.NIX_CONFIG ??= 'substituters =';
const ROUNDS = Number(process.env.BENCH_COLD_ROUNDS ?? 1);
const ONLY = process.env.BENCH_COLD_ONLY;
const MB = 1024 * 1024;

/** The builder's phases under the names of the report. */
const PHASES: Array<[BuildPhase, string]> = [
  ['source', 'pin'],
  ['resolve', 'evaluate'],
  ['realise', 'realise'],
  ['closure', 'closure'],
  ['layers', 'layering'],
  ['pack', 'pack'],
  ['manifest', 'store'],
];

interface Case {
  name: string;
  /** The packages: `img` is the image's only package; the rest are its runtime closure. */
  packages(): UniquePackage[];
  /**
   * Also build `img2` (a new root over the same leaves) in the same process afterwards: a cold
   * image in a running server, whose pin is known and whose leaves are built and packed.
   */
  second?: boolean;
}

/** An image of `n` store paths: `img` refers to n-1 small leaves. */
function pathsCase(n: number): Case {
  return {
    name: `${n} store path${n === 1 ? '' : 's'}`,
    packages() {
      const leaves = Array.from({ length: n - 1 }, (_, i) => ({ name: `leaf${i}`, script: `mkdir -p $out/share/doc; echo "leaf ${i} of ${n}" > $out/share/doc/README` }));
      const refs = leaves.map((l) => `echo \${pkgs.${l.name}} >> $out/refs`).join('\n');
      const root = (name: string) => ({ name, script: `mkdir -p $out/bin; echo 'echo ${name}' > $out/bin/${name}\n${refs}` });
      return [...leaves, root('img'), root('img2')];
    },
    second: true,
  };
}

/**
 * An image whose closure holds about `mb` MB in 10 data paths: two thirds machine code (copies
 * of the static busybox: executables compress about 2× with gzip, and copies lie further apart
 * than deflate's window), one third text (hex dumps of random bytes).
 */
function sizeCase(mb: number): Case {
  return {
    name: `${mb} MB closure`,
    packages() {
      const per = (mb * MB) / 10;
      const binBytes = Math.round((per * 2) / 3);
      const textBytes = Math.round(per / 3);
      const leaves = Array.from({ length: 10 }, (_, i) => ({
        name: `data${i}`,
        script: `mkdir -p $out/lib $out/share
for k in $(seq ${Math.ceil(binBytes / 1_900_000)}); do cat \${busybox}/bin/busybox; echo "$k ${i}"; done | head -c ${binBytes} > $out/lib/libdata.so
head -c ${Math.ceil(textBytes / 3)} /dev/urandom | od -An -tx1 | head -c ${textBytes} > $out/share/data.txt`,
      }));
      const refs = leaves.map((l) => `echo \${pkgs.${l.name}} >> $out/refs`).join('\n');
      return [...leaves, { name: 'img', script: `mkdir -p $out/bin; echo 'echo hi' > $out/bin/img\n${refs}` }];
    },
  };
}

interface Run {
  phases: Map<string, number>;
  totalMs: number;
  /** `img2` built next in the same process (cases with `second`). */
  second?: { phases: Map<string, number>; totalMs: number };
  storePaths: number;
  closureBytes: number;
  layers: number;
  /** `tar -c | gzip -6` of the closure, ms, and its output bytes. */
  gzipMs: number;
  gzipBytes: number;
  packedBytes: number;
  /** The store-path layers as built, and packed again by our packer with Node's zlib at level 6 (NIXERY_GZIP=zlib), bytes. */
  storeLayers: { ours: number; zlib: number };
}

/** The image's store-path layers: their size as built, and packed again with Node's zlib at level 6. */
async function zlibSizes(built: BuiltImage): Promise<{ ours: number; zlib: number }> {
  const sizes = { ours: 0, zlib: 0 };
  for (const layer of built.layers) {
    const paths = (layer.storePaths ?? []).map((p) => p.path);
    if (paths.length === 0) continue;
    const sink = new Writable({ write: (_chunk, _enc, done) => done() });
    sizes.zlib += (await packStorePaths(paths, sink, { compression: zlibGzip() })).size;
    sizes.ours += layer.size;
  }
  return sizes;
}

/** Builds an image from the first progress report to the manifest; its phases by report label, ms. */
async function timedBuild(builder: ImageBuilder, name: string): Promise<{ built: BuiltImage; phases: Map<string, number>; totalMs: number }> {
  const phases = new Map<BuildPhase, number>();
  let current: { phase: BuildPhase; since: number } | undefined;
  const close = (now: number) => {
    if (current) phases.set(current.phase, (phases.get(current.phase) ?? 0) + now - current.since);
  };
  const started = performance.now();
  const built = await builder.build(parseImageName(name), (p) => {
    if (current?.phase === p.phase) return;
    const now = performance.now();
    close(now);
    current = { phase: p.phase, since: now };
  });
  const ended = performance.now();
  close(ended);
  if (built.fromCache) throw new Error(`${name}: the image came from the cache (not cold)`);
  return { built, phases: new Map(PHASES.map(([phase, label]) => [label, phases.get(phase) ?? 0])), totalMs: ended - started };
}

async function runCase(c: Case, dir: string): Promise<Run> {
  const set = await makeUniquePackageSet(c.packages());
  const storagePath = await mkdtemp(path.join(dir, 'storage-'));
  try {
    const config = loadConfig({ ...process.env, NIXERY_PKGS_PATH: set.dir, STORAGE_PATH: storagePath, NIXERY_LOG_LEVEL: 'silent' });
    const app = await createApp(config, { logDestination: 'stderr', defaultLogLevel: 'silent' });
    const { built, phases, totalMs } = await timedBuild(app.builder, 'img');
    const second = c.second ? await timedBuild(app.builder, 'img2') : undefined;
    const closure = built.layers.flatMap((l) => (l.storePaths ?? []).map((p) => p.path));
    const closureBytes = built.layers.reduce((n, l) => n + (l.storePaths ?? []).reduce((m, p) => m + p.narSize, 0), 0);
    // The same store paths through tar and gzip -6 (what `docker save`-style tools would do).
    const gzipStarted = performance.now();
    const gz = spawnSync('bash', ['-c', 'tar -cf - --absolute-names "$@" | gzip -6 | wc -c', 'tar', ...closure], { env: nixEnv(), maxBuffer: 1024 * 1024 });
    const gzipMs = performance.now() - gzipStarted;
    if (gz.status !== 0) throw new Error(`tar | gzip: ${gz.stderr}`);
    return {
      phases,
      totalMs,
      second: second && { phases: second.phases, totalMs: second.totalMs },
      storePaths: closure.length,
      closureBytes,
      layers: built.layers.length,
      gzipMs,
      gzipBytes: Number(gz.stdout.toString().trim()),
      packedBytes: built.layers.reduce((n, l) => n + l.size, 0),
      storeLayers: await zlibSizes(built),
    };
  } finally {
    await set.remove();
    await rm(storagePath, { recursive: true, force: true });
  }
}

/** The element with the median key. */
const middle = <T>(xs: T[], key: (x: T) => number): T => [...xs].sort((a, b) => key(a) - key(b))[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const cases = [
    ...(ONLY === 'sizes' ? [] : [pathsCase(1), pathsCase(10), pathsCase(125)]),
    ...(ONLY === 'paths' ? [] : [sizeCase(4), sizeCase(100), sizeCase(300)]),
  ];
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-bench-cold-'));
  const rows: string[] = [];
  const secondRows: string[] = [];
  try {
    for (const c of cases) {
      const runs: Run[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        runs.push(await runCase(c, dir));
        process.stderr.write(`${c.name}: round ${i + 1} of ${ROUNDS} in ${(runs.at(-1)!.totalMs / 1000).toFixed(1)} s\n`);
      }
      // The round with the median total, whole: its phases add up to its total.
      const mid = middle(runs, (r) => r.totalMs);
      const ms = (f: (r: Run) => number) => f(mid);
      const phase = (label: string) => ms((r) => r.phases.get(label)!);
      const notPackRealise = ms((r) => r.totalMs - r.phases.get('pack')! - r.phases.get('realise')!);
      const first = runs[0]!;
      const packRatio = ms((r) => r.gzipMs / r.phases.get('pack')!);
      const f0 = (n: number) => n.toFixed(0);
      if (first.second) {
        const midSecond = middle(runs, (r) => r.second!.totalMs).second!;
        const w = (f: (r: NonNullable<Run['second']>) => number) => f0(f(midSecond));
        secondRows.push(
          `| ${c.name}, another root over the same leaves | ${w((r) => r.totalMs)} | ${PHASES.map(([, label]) => w((r) => r.phases.get(label)!)).join(' | ')} | ${w((r) => r.totalMs - r.phases.get('pack')! - r.phases.get('realise')!)} |`,
        );
      }
      rows.push(
        `| ${c.name} (${first.storePaths} paths, ${(first.closureBytes / 1e6).toFixed(1)} MB, ${first.layers} layers) | ${f0(ms((r) => r.totalMs))} | ${PHASES.map(([, label]) => f0(phase(label))).join(' | ')} | ${f0(notPackRealise)} | ${f0(ms((r) => r.gzipMs))} | ${packRatio.toFixed(2)}× | ${(first.packedBytes / first.gzipBytes).toFixed(3)} | ${(first.storeLayers.ours / first.storeLayers.zlib).toFixed(4)} |`,
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const nix = execFileSync('nix-build', ['--version']).toString().trim();
  console.log(`\ncold builds, time to manifest in ms (the round with the median total of ${ROUNDS}, new packages in each; ${nix}; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')})\n`);
  console.log(`| image | total | ${PHASES.map(([, label]) => label).join(' | ')} | all but pack and realise | tar \\| gzip -6 of the closure | pack speed vs gzip -6 | packed size / gzip -6 size | packed size / zlib level 6 size |`);
  console.log(`|---|---|${PHASES.map(() => '---').join('|')}|---|---|---|---|---|`);
  for (const row of rows) console.log(row);
  if (secondRows.length) {
    console.log('\nthe next image in the same process (its pin known, its leaves built and packed already), ms\n');
    console.log(`| image | total | ${PHASES.map(([, label]) => label).join(' | ')} | all but pack and realise |`);
    console.log(`|---|---|${PHASES.map(() => '---').join('|')}|---|`);
    for (const row of secondRows) console.log(row);
  }
  // createApp starts background work (pins, search index) that is not stopped here.
  process.exit(0);
}

main().catch((err: unknown) => {
  console.error(`bench:cold: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
