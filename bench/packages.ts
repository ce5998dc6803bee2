// `npm run bench:packages`: how long indexing a package set for search takes, and what it costs
// this process, on the example set and on generated sets of BENCH_PACKAGES packages (default
// 20000; e.g. BENCH_PACKAGES=20000,100000). A generated set is shaped like nixpkgs: most
// packages at the top level, the rest in nested sets with `recurseForDerivations` (like
// python3Packages), plus attributes that throw (1%), sets that are not listed, and values that
// are not packages; every package has a name, pname, version and a description of about 60
// characters. For each set:
//
//   evaluate   the Nix evaluation, streamed and parsed (listPackages), index built, stored
//   reload     a restart: the stored index read back (no Nix)
//   search     latency of typical queries (limit 50), median and p99 over BENCH_ROUNDS rounds
//
// and this process's memory: heap growth for the index held in memory and the peak RSS.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FilesystemStorage } from '../src/storage/filesystem.js';
import { Pinner } from '../src/builder/pins.js';
import { Quarantine } from '../src/builder/integrity.js';
import { PackageIndex } from '../src/builder/package-index.js';
import { AMD64 } from '../src/image/name.js';
import { EXAMPLE_PKGS } from '../test/helpers/nix.js';

const SIZES = (process.env.BENCH_PACKAGES ?? '20000').split(',').map(Number);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 20);
const quiet = { info: () => {}, warn: (o: object, m?: string) => console.error(m, o) };

/** A package set of about `n` packages (see the header). */
function syntheticSet(n: number): string {
  const nested = Math.floor(n * 0.3);
  const top = n - nested;
  const sets = 4;
  return `{ system ? builtins.currentSystem, ... }:
let
  inherit (builtins) genList listToAttrs;
  words = [ "fast" "small" "library" "tool" "server" "client" "parser" "compiler" "bindings" "utilities" "framework" "daemon" ];
  word = i: builtins.elemAt words (i - (i / 12) * 12);
  pkg = prefix: i: (derivation {
    name = "\${prefix}\${toString i}-\${toString (i / 100)}.\${toString (i - (i / 100) * 100)}";
    inherit system;
    builder = "/bin/sh";
  }) // {
    pname = "\${prefix}\${toString i}";
    version = "\${toString (i / 100)}.\${toString (i - (i / 100) * 100)}";
    meta.description = "A \${word i} \${word (i / 7)} for \${word (i / 13)} number \${toString i}, generated for the benchmark";
  };
  attrs = prefix: count: from: listToAttrs (genList (i: {
    name = "\${prefix}\${toString (from + i)}";
    value = if (from + i) - ((from + i) / 100) * 100 == 99 then throw "removed package \${toString (from + i)}" else pkg prefix (from + i);
  }) count);
  nestedSet = k: { recurseForDerivations = true; } // attrs "py\${toString k}-" ${Math.floor(nested / sets)} 0;
in
attrs "pkg" ${top} 0 // listToAttrs (genList (k: { name = "set\${toString k}Packages"; value = nestedSet k; }) ${sets}) // {
  lib = { version = "not a package"; };
  notListed = attrs "hidden" 100 0;
  aNumber = 42;
}
`;
}

interface Result {
  set: string;
  packages: number;
  evaluateMs: number;
  nixMs: number;
  storedBytes: number;
  reloadMs: number;
  heapMB: number;
  searchMedianMs: number;
  searchP99Ms: number;
}

const QUERIES = ['pkg1234', 'py2-', 'compiler daemon', 'number 19999', 'library', '', 'no-such-thing', 'hello'];

async function benchSet(label: string, dir: string): Promise<Result> {
  const storageDir = await mkdtemp(path.join(tmpdir(), 'nixery-bench-packages-'));
  try {
    const storage = new FilesystemStorage(storageDir);
    const make = () => {
      const pins = new Pinner({ source: { kind: 'path', path: dir }, storage, ttlMs: 3600_000, resolveTimeoutMs: 120_000 });
      const index = new PackageIndex({ storage, quarantine: new Quarantine(storage, quiet), pins, system: AMD64.nixSystem, evalTimeoutMs: 600_000, log: quiet });
      return { pins, index };
    };
    global.gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    const cold = make();
    await cold.pins.pin('latest');
    let started = performance.now();
    const built = await cold.index.current();
    const evaluateMs = performance.now() - started;
    global.gc?.();
    const heapMB = (process.memoryUsage().heapUsed - heapBefore) / 1e6;
    const stored = await storage.stat(cold.index.storedKey(built.revision));

    const latencies: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const q of QUERIES) {
        const t = performance.now();
        await cold.index.search(q, 50);
        latencies.push(performance.now() - t);
      }
    }
    latencies.sort((a, b) => a - b);
    await cold.index.stop();
    await cold.pins.stop();

    const warm = make();
    await warm.pins.pin('latest');
    started = performance.now();
    const reloaded = await warm.index.current();
    const reloadMs = performance.now() - started;
    if (warm.index.stats.evaluations !== 0 || reloaded.packages.length !== built.packages.length) throw new Error('the stored index was not used');
    await warm.pins.stop();
    return {
      set: label,
      packages: built.packages.length,
      evaluateMs: Math.round(evaluateMs),
      nixMs: cold.index.stats.lastEvaluationMs,
      storedBytes: stored?.size ?? 0,
      reloadMs: Math.round(reloadMs),
      heapMB: Math.round(heapMB * 10) / 10,
      searchMedianMs: Math.round(latencies[Math.floor(latencies.length / 2)]! * 100) / 100,
      searchP99Ms: Math.round(latencies[Math.floor(latencies.length * 0.99)]! * 100) / 100,
    };
  } finally {
    await rm(storageDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  process.env.NIX_CONFIG ??= 'substituters =';
  const results: Result[] = [await benchSet('example set', EXAMPLE_PKGS)];
  for (const n of SIZES) {
    const dir = await mkdtemp(path.join(tmpdir(), 'nixery-bench-pkgset-'));
    try {
      await writeFile(path.join(dir, 'default.nix'), syntheticSet(n));
      results.push(await benchSet(`synthetic ${n}`, dir));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  console.log('set                  packages  evaluate(ms)  of which Nix(ms)  stored(MB)  reload(ms)  heap(MB)  search p50/p99 (ms)');
  for (const r of results) {
    console.log(
      `${r.set.padEnd(20)} ${String(r.packages).padStart(8)}  ${String(r.evaluateMs).padStart(12)}  ${String(r.nixMs).padStart(16)}  ${(r.storedBytes / 1e6).toFixed(2).padStart(10)}  ${String(r.reloadMs).padStart(10)}  ${String(r.heapMB).padStart(8)}  ${r.searchMedianMs} / ${r.searchP99Ms}`,
    );
  }
  console.log(`peak RSS of this process: ${Math.round(process.resourceUsage().maxRSS / 1024)} MB`);
  console.log(JSON.stringify(results));
}

await main();
