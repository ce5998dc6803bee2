// What the SBOMs and provenance add to a cold build (issue 20): the example set's `manylibs`
// (125 store paths of its own, 127 with cacert and iana-etc) built into a fresh storage, with
// and without them, in alternating rounds. Nix's store is warmed first, so a round is everything
// the registry does for a first pull (evaluation, closure query, packing every layer, manifests,
// and the documents), not Nix building the packages.
//
//   npm run bench:sbom        (BENCH_ROUNDS=5 by default)

import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadConfig } from '../src/config.js';
import { createApp } from '../src/app.js';
import { parseImageName } from '../src/image/name.js';
import { EXAMPLE_PKGS } from '../test/helpers/nix.js';
import { NIX, rootPaths } from '../src/builder/nix-stage.js';
import { attestationInput, attestations } from '../src/builder/attest.js';
import { FilesystemStorage } from '../src/storage/filesystem.js';
import { LayerStore } from '../src/builder/layer-store.js';

process.env.NIX_CONFIG ??= 'substituters =';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? '5');
const IMAGE = parseImageName('manylibs');

async function coldBuild(attestations: boolean): Promise<{ ms: number; paths: number; artifacts: number }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-bench-sbom-'));
  try {
    const config = loadConfig({ NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: dir, NIXERY_LOG_LEVEL: 'silent' });
    const app = await createApp(config, { logDestination: 'stderr', defaultLogLevel: 'silent', attestations });
    const started = performance.now();
    const built = await app.builder.build(IMAGE);
    const ms = performance.now() - started;
    if (built.fromCache) throw new Error('not a cold build');
    await app.pins.stop();
    await app.packages.stop();
    return { ms, paths: built.layers.reduce((n, l) => n + (l.storePaths?.length ?? 0), 0), artifacts: built.artifacts?.length ?? 0 };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

console.log(`load average before: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
const warm = await coldBuild(true);
console.log(`warm-up (Nix realises manylibs if it must): ${warm.ms.toFixed(0)} ms, ${warm.paths} store paths, ${warm.artifacts} artifacts`);
const times = { with: [] as number[], without: [] as number[] };
const ratios: number[] = [];
for (let round = 1; round <= ROUNDS; round++) {
  // Alternate which goes first, so drift on a shared machine hits both alike.
  const order = round % 2 === 1 ? [true, false] : [false, true];
  const got: Record<string, number> = {};
  for (const attest of order) {
    const r = await coldBuild(attest);
    if (attest && r.artifacts !== 3) throw new Error(`expected 3 artifacts, got ${r.artifacts}`);
    got[attest ? 'with' : 'without'] = r.ms;
  }
  times.with.push(got.with!);
  times.without.push(got.without!);
  ratios.push(got.with! / got.without!);
  console.log(`round ${round}: with ${got.with!.toFixed(0)} ms, without ${got.without!.toFixed(0)} ms, ratio ${(got.with! / got.without!).toFixed(3)}`);
}
console.log(
  `median: with ${median(times.with).toFixed(0)} ms, without ${median(times.without).toFixed(0)} ms (ratio of the medians ${(median(times.with) / median(times.without)).toFixed(3)}); median of the rounds' ratios ${median(ratios).toFixed(3)} (target < 1.10)`,
);
// The documents alone, made again and again from the build's own data (steadier than the ratio
// on a busy machine): what the hook after the manifests costs, storing aside.
{
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-bench-sbom-'));
  const config = loadConfig({ NIXERY_PKGS_PATH: EXAMPLE_PKGS, STORAGE_PATH: dir, NIXERY_LOG_LEVEL: 'silent' });
  const app = await createApp(config, { logDestination: 'stderr', defaultLogLevel: 'silent' });
  const built = await app.builder.build(IMAGE);
  const { pinned } = await app.pins.pin(IMAGE.tag);
  const opts = { timeoutMs: 120_000 };
  const resolved = await NIX.resolve(pinned, IMAGE.packages, IMAGE.arch.nixSystem, opts);
  const closure = await NIX.closure(rootPaths(resolved));
  const build = { layering: 'x', budget: 94, popularity: 'x', compression: app.builder.layers.compression.description };
  const n = 20;
  let bytes = 0;
  const made: number[] = [];
  const stored: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const { blobs } = attestations(attestationInput({ image: IMAGE, pinned, resolved, closure, layers: built.layers, manifests: built.manifests, build }));
    const t1 = performance.now();
    // Written as the hook writes them (LayerStore.putBlob), into storage that has none of them yet.
    await mkdir(path.join(dir, `store-${i}`));
    const storage = new FilesystemStorage(path.join(dir, `store-${i}`));
    const layers = new LayerStore(storage, app.log, app.quarantine, app.builder.layers.compression);
    await Promise.all(blobs.map((b) => layers.putBlob(b)));
    made.push(t1 - t0);
    stored.push(performance.now() - t1);
    bytes = blobs.reduce((sum, b) => sum + b.size, 0);
  }
  const each = median(made) + median(stored);
  console.log(
    `the hook: making the documents ${median(made).toFixed(1)} ms + storing their ${bytes} bytes ${median(stored).toFixed(1)} ms (medians of ${n}) = ${each.toFixed(1)} ms per image, ${((100 * each) / median(times.without)).toFixed(1)} % of the median build without them`,
  );
  await app.pins.stop();
  await app.packages.stop();
  await rm(dir, { recursive: true, force: true });
}
console.log(`load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
