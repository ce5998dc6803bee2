// The default strategy, `stable`: a store path's layer should depend as little as possible on
// the rest of the image, so that shared runtimes land in identical layers everywhere.
//
// 1. Units. A path that exactly one derivation of the whole package set refers to (popularity
//    data says 1), whose referrer is in the image and is at least as big as it, always travels
//    with that referrer: it is contracted into the referrer's unit (transitively). The size
//    condition keeps a big private dependency (which may be requested on its own elsewhere) a
//    unit of its own. Nothing is merged on image-local guesswork: an image's "only referrer" is
//    often not the only one elsewhere. Without popularity data every path is its own unit.
// 2. Runtime regions. A runtime is a path whose popularity is at least 1/8 of the package set's
//    highest (libc, the C++ runtime, Python, Perl: data about the package set, not the image).
//    Its region is its closure minus the closures of the runtimes inside it and minus paths
//    nearly as popular as itself (≥ 1/8 of its popularity: those serve far more than this
//    runtime); where two regions overlap, the more popular runtime keeps the path. A region is
//    thus the same in every image that has the runtime. When the image is over budget and a
//    region alone has at least `budget` units, those units could never all get layers of their
//    own, in this image or any other: the region becomes one unit, and so one layer identical
//    in every image built on that runtime, instead of a few singletons plus paths scattered
//    through each image's remainder. The rule depends on the region and the budget only, so
//    every image makes the same choice; smaller regions keep their units.
// 3. Budget. Unit sizes are heavy-tailed, so when the units do not fit, the largest units get a
//    layer each (identical in every image that has them) and the small rest shares the last
//    layer(s); when they fit, each unit gets its own layer.
// 4. Core split. The small rest is the part that depends on the image, and re-downloading it is
//    the loss at tight budgets. With popularity data, it is cut in two: the paths inside the
//    closure of a "core" path of the image (popularity ≥ 1/8 of the image's most popular path:
//    libc, the C++ runtime, a Perl or Python interpreter...) and the others. The core part
//    recurs across images built on the same base far more often than the whole rest does. The
//    split costs the smallest singleton, so it is made only when it is worth it: both parts
//    weigh at least that singleton and the rest holds at least 4 % of the image's bytes.
//
// What was measured and tried, and why this design won: bench/README.md, "The stable layering
// strategy: measurements".

import { compareStrings } from '../image/name.js';
import { checkBudget, indexClosure, reachable, type IndexedClosure } from './closure.js';
import { orderMostSharedFirst } from './order.js';
import type { LayerGraph, LayerGroup, LayeringOptions, LayeringStrategy, Popularity } from './types.js';

/** A core path's popularity is at least the image's highest popularity divided by this. */
export const CORE_POPULARITY_DIVISOR = 8;
/** The rest is split only when it holds at least this share of the image's bytes. */
export const CORE_SPLIT_MIN_SHARE = 0.04;
/**
 * A runtime's popularity is at least the package set's highest divided by this; a path with at
 * least a runtime's popularity divided by it is not part of that runtime's region.
 */
export const RUNTIME_POPULARITY_DIVISOR = 8;

/**
 * unit[i]: the id of the path that heads path i's unit. A path joins its referrer's unit when
 * the popularity data says exactly one derivation refers to it, that referrer is its only
 * referrer in the image, and it is no bigger than the referrer.
 */
export function stableUnits(c: IndexedClosure, popularity: Popularity): Int32Array {
  const n = c.paths.length;
  const parent = new Int32Array(n).fill(-1);
  for (let q = 0; q < n; q++) {
    const referrers = c.referrers[q]!;
    if (referrers.length !== 1 || popularity.get(c.names[q]!) !== 1) continue;
    if (c.narSize[q]! > c.narSize[referrers[0]!]!) continue;
    parent[q] = referrers[0]!;
  }
  const head = new Int32Array(n).fill(-1);
  for (let q = 0; q < n; q++) {
    // Follow the (acyclic: references form a DAG) parent chain, then compress it.
    let h = q;
    const chain: number[] = [];
    while (head[h] === -1 && parent[h] !== -1) {
      chain.push(h);
      h = parent[h]!;
    }
    const top = head[h] !== -1 ? head[h]! : h;
    head[h] = top;
    for (const v of chain) head[v] = top;
  }
  return head;
}

/** inCore[i]: path i is in the closure of a path whose popularity is ≥ max / divisor (and ≥ 2). */
export function coreMembers(c: IndexedClosure, popularity: Popularity): Uint8Array {
  const n = c.paths.length;
  const pop = c.names.map((n) => popularity.get(n) ?? 0);
  const threshold = Math.max(2, Math.max(0, ...pop) / CORE_POPULARITY_DIVISOR);
  const core: number[] = [];
  for (let i = 0; i < n; i++) if (pop[i]! >= threshold) core.push(i);
  const inCore = new Uint8Array(n);
  for (const i of reachable(c, core)) inCore[i] = 1;
  return inCore;
}

interface Unit {
  ids: number[];
  bytes: bigint;
}

function sum(c: IndexedClosure, ids: number[]): bigint {
  let s = 0n;
  for (const i of ids) s += BigInt(c.narSize[i]!);
  return s;
}

const highestCache = new WeakMap<Popularity, number>();

/** The highest popularity in the whole data set (computed once per data set). */
export function highestPopularity(popularity: Popularity): number {
  let highest = highestCache.get(popularity);
  if (highest === undefined) {
    highest = 0;
    for (const v of popularity.values()) if (v > highest) highest = v;
    highestCache.set(popularity, highest);
  }
  return highest;
}

/**
 * Step 2: the unit heads after merging every runtime region that has at least `budget` units
 * into one unit headed by its runtime. `head` is stableUnits' result; it is returned as is when
 * no region is that large.
 */
export function runtimeRegions(c: IndexedClosure, head: Int32Array, budget: number, popularity: Popularity): Int32Array {
  const n = c.paths.length;
  const pop = c.names.map((n) => popularity.get(n) ?? 0);
  const threshold = Math.max(2, highestPopularity(popularity) / RUNTIME_POPULARITY_DIVISOR);
  const runtimes: number[] = [];
  for (let i = 0; i < n; i++) if (pop[i]! >= threshold) runtimes.push(i);
  if (runtimes.length === 0) return head;
  // Most popular first: it keeps what its region shares with a less popular runtime's.
  runtimes.sort((a, b) => pop[b]! - pop[a]! || a - b);
  const isRuntime = new Uint8Array(n);
  for (const r of runtimes) isRuntime[r] = 1;
  const closures = new Map(runtimes.map((r) => [r, reachable(c, [r])]));
  const region = new Int32Array(n).fill(-1);
  for (const r of runtimes) {
    const inner = new Uint8Array(n); // the closures of the runtimes inside r's
    for (const q of closures.get(r)!) if (q !== r && isRuntime[q]) for (const x of closures.get(q)!) inner[x] = 1;
    region[r] = r;
    for (const p of closures.get(r)!) {
      if (region[p] !== -1 || isRuntime[p] || inner[p]) continue;
      if (pop[p]! * RUNTIME_POPULARITY_DIVISOR < pop[r]!) region[p] = r;
    }
  }
  // A unit belongs to the region of its head; count the units of each region.
  const unitsIn = new Map<number, number>();
  for (const u of new Set(head)) if (region[u] !== -1) unitsIn.set(region[u]!, (unitsIn.get(region[u]!) ?? 0) + 1);
  const merged = [...unitsIn].filter(([, count]) => count >= Math.max(2, budget));
  if (merged.length === 0) return head;
  const bundled = new Set(merged.map(([r]) => r));
  return head.map((u) => (bundled.has(region[u]!) ? region[u]! : u));
}

export function stableLayers(graph: LayerGraph, options: LayeringOptions): LayerGroup[] {
  const budget = checkBudget(options.budget);
  const c = indexClosure(graph);
  let head = stableUnits(c, options.popularity);
  if (options.popularity.size > 0 && new Set(head).size > budget) head = runtimeRegions(c, head, budget, options.popularity);
  return layoutUnits(c, head, budget, options.popularity);
}

/** The layers, given each path's unit head (steps 3 and 4). */
export function layoutUnits(c: IndexedClosure, head: Int32Array, budget: number, popularity: Popularity): LayerGroup[] {
  const options = { popularity };
  const members = new Map<number, number[]>();
  for (let i = 0; i < c.paths.length; i++) {
    const list = members.get(head[i]!);
    if (list) list.push(i);
    else members.set(head[i]!, [i]);
  }
  const units: Unit[] = [...members.values()].map((ids) => ({ ids, bytes: sum(c, ids) }));
  // Largest first; ties by first path (ids are in path order, so ids[0] is the smallest path).
  units.sort((a, b) => (a.bytes !== b.bytes ? (a.bytes > b.bytes ? -1 : 1) : compareStrings(c.paths[a.ids[0]!]!, c.paths[b.ids[0]!]!)));
  const layer = (ids: number[], rating: bigint): LayerGroup => ({ paths: ids.map((i) => c.paths[i]!), rating });
  // Rating: a unit layer's bytes (the big, stable layers are the ones most worth sharing); the
  // rest is specific to the image and comes last, its core part (more shared) first.
  if (units.length <= budget) return orderMostSharedFirst(units.map((u) => layer(u.ids, u.bytes)));

  const split = budget >= 3 && options.popularity.size > 0 ? coreSplit(c, units, budget, options.popularity) : undefined;
  const own = split ? budget - 2 : budget - 1;
  const groups = units.slice(0, own).map((u) => layer(u.ids, u.bytes));
  if (split) groups.push(layer(split.core, 1n), layer(split.other, 0n));
  else groups.push(layer(units.slice(own).flatMap((u) => u.ids), 0n));
  return orderMostSharedFirst(groups);
}

/** The rest after budget − 2 singletons, cut into its core and other parts, if worth it. */
function coreSplit(c: IndexedClosure, units: Unit[], budget: number, popularity: Popularity): { core: number[]; other: number[] } | undefined {
  const inCore = coreMembers(c, popularity);
  const core: number[] = [];
  const other: number[] = [];
  for (const u of units.slice(budget - 2)) for (const i of u.ids) (inCore[i] ? core : other).push(i);
  const demoted = units[budget - 2]!.bytes; // the singleton the split costs
  const [coreBytes, otherBytes] = [sum(c, core), sum(c, other)];
  const imageBytes = units.reduce((s, u) => s + u.bytes, 0n);
  const worth =
    coreBytes >= demoted && otherBytes >= demoted && core.length > 0 && other.length > 0 &&
    Number(coreBytes + otherBytes) >= CORE_SPLIT_MIN_SHARE * Number(imageBytes);
  return worth ? { core, other } : undefined;
}

export const stableStrategy: LayeringStrategy = { name: 'stable', group: stableLayers };
