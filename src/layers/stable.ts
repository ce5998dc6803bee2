// The default strategy, `stable`: a store path's layer should depend as little as possible on
// the rest of the image, so that shared runtimes land in identical layers everywhere.
//
// 1. Units. A path that exactly one derivation of the whole package set refers to (popularity
//    data says 1), whose referrer is in the image and is at least as big as it, always travels
//    with that referrer: it is contracted into the referrer's unit (transitively). The size
//    condition keeps a big private dependency (which may be requested on its own elsewhere) a
//    unit of its own. Nothing is merged on image-local guesswork: an image's "only referrer" is
//    often not the only one elsewhere. Without popularity data every path is its own unit.
// 2. Budget. Unit sizes are heavy-tailed, so when the units do not fit, the largest units get a
//    layer each (identical in every image that has them) and the small rest shares the last
//    layer(s); when they fit, each unit gets its own layer.
// 3. Core split. The small rest is the part that depends on the image, and re-downloading it is
//    the loss at tight budgets. With popularity data, it is cut in two: the paths inside the
//    closure of a "core" path of the image (popularity ≥ 1/8 of the image's most popular path:
//    libc, the C++ runtime, a Perl or Python interpreter...) and the others. The core part
//    recurs across images built on the same base far more often than the whole rest does. The
//    split costs the smallest singleton, so it is made only when it is worth it: both parts
//    weigh at least that singleton and the rest holds at least 4 % of the image's bytes.
//
// Measured (bench/layering.ts; ratio to one layer per path): Debian's workload at budget 20
// goes from 1.240× (units alone) to 1.228× (largest-first 1.241×), two other image mixes on the
// same graph from 1.478×/1.382× (largest-first) to 1.437×/1.357×; at budgets 60 and 94 the rest
// is small, the split rarely pays, and the layout is close to largest-first's.
// Tried and worse (at some budget or workload): grouping the rest by top-level path or by
// anchors' closures (anchors by popularity, referrer count or closure size), bottom-up merges
// of small paths into referrers, fixed size thresholds or a threshold ladder for the
// singletons, value weights (bytes × popularity, or × a saturating p/(p+K): at most 0.006
// better at 20, worse at 94 on a remix), more popularity tiers, and contracting
// popularity-1 paths bigger than their referrer, and "co-occurrence units" from complete
// referrer sets (popularity = referrers in the image: group paths with the same referrers,
// contract a path whose referrers lie in one unit; bench/layering-cooccurrence.ts). The
// grouping never fires on Debian's workload and, with the size guard, the contraction adds 6
// merges over 60 images (1.2284× → 1.2282× at budget 20); without the guard Debian reaches
// 1.218×/1.037×/1.012× but the synthetic workload loses (1.032× → 1.044× at 94). Also tried:
// "runtime regions", the closure of each path with popularity ≥ ¼ of the set's highest (libc,
// libstdc++, python3), minus inner regions and minus paths with ≥ ⅛ of the head's popularity,
// as one layer each. Debian at budgets 20/60/94 gives 1.197×/1.034×/1.016× (python images share
// the Python closure), but a region's paths also appear in images without its head: at 94 it
// loses to largest-first (1.013×), and a remix loses at 60 and 94 (1.100×/1.052× against
// 1.086×/1.032×). Gated on a large rest (≥ 5 % of the image) or on images far over budget, it
// cannot keep both 1.20× at 20 and ≤ largest-first at 60 and 94. A clairvoyant layout that knows every image
// of the workload in advance reaches 1.025× at budget 20: the remaining loss is the price of
// not knowing which paths will recur together.

import { compareStrings } from '../image/name.js';
import type { ClosureGraph } from '../nix/types.js';
import { checkBudget, indexClosure, packageName, type IndexedClosure } from './closure.js';
import { orderMostSharedFirst } from './order.js';
import type { LayerGroup, LayeringOptions, LayeringStrategy, Popularity } from './types.js';

/** A core path's popularity is at least the image's highest popularity divided by this. */
export const CORE_POPULARITY_DIVISOR = 8;
/** The rest is split only when it holds at least this share of the image's bytes. */
export const CORE_SPLIT_MIN_SHARE = 0.04;

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
    if (referrers.length !== 1 || popularity.get(packageName(c.paths[q]!)) !== 1) continue;
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
  const pop = c.paths.map((p) => popularity.get(packageName(p)) ?? 0);
  const threshold = Math.max(2, Math.max(0, ...pop) / CORE_POPULARITY_DIVISOR);
  const inCore = new Uint8Array(n);
  const stack: number[] = [];
  for (let i = 0; i < n; i++) if (pop[i]! >= threshold && !inCore[i]) (inCore[i] = 1), stack.push(i);
  while (stack.length > 0) {
    for (const r of c.refs[stack.pop()!]!) if (!inCore[r]) (inCore[r] = 1), stack.push(r);
  }
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

export function stableLayers(graph: ClosureGraph, options: LayeringOptions): LayerGroup[] {
  const budget = checkBudget(options.budget);
  const c = indexClosure(graph);
  return layoutUnits(c, stableUnits(c, options.popularity), budget, options.popularity);
}

/** The layers, given each path's unit head (steps 2 and 3). */
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
