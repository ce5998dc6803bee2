// Nixery's layering (nixery.md §6), kept so users can compare and migrate: a synthetic root
// points at the top-level paths and at every big-or-popular path; each child of the root in
// the dominator tree starts a layer holding its dominated subtree; while over budget the two
// lowest-rated layers merge into the second's slot, without re-sorting.
// Ties are broken by first path (Nixery's unstable sort left them to chance).

import { storePathName } from '../util/store-path.js';
import { checkBudget, indexClosure } from './closure.js';
import { immediateDominators } from './dominators.js';
import { orderMostSharedFirst } from './order.js';
import type { LayerGraph, LayerGroup, LayeringOptions, LayeringStrategy, Popularity } from './types.js';

/** A path whose closure is strictly bigger than this (decimal 100 MB) gets its own root edge. */
export const NIXERY_SIZE_THRESHOLD = 100_000_000;
/** A path referred to by at least this many derivations gets its own root edge. */
export const NIXERY_POPULARITY_THRESHOLD = 100;
/** Popularity forced on the always-added packages ("glibc has ~300k references, these need more"). */
export const NIXERY_FORCED_POPULARITY = 500_000;
/** Popularity of a package missing from the data (or when there is no data). */
export const NIXERY_DEFAULT_POPULARITY = 1;
/**
 * Package names forced popular. The first two are Nixery's (cacert, iana-etc); the third is
 * their Debian analogue as the shared layering benchmark defines it (ca-certificates, netbase),
 * so `nixery` reproduces the benchmark's reference numbers. No nixpkgs name matches it.
 */
export const NIXERY_FORCED_POPULAR: readonly RegExp[] = [/^nss-cacert/, /^iana-etc/, /^(?:ca-certificates|netbase)-[0-9]/];

/** Nixery's popularity of a store path (the data is keyed by name without the hash). */
export function nixeryPopularity(path: string, popularity: Popularity, name = storePathName(path)): number {
  if (NIXERY_FORCED_POPULAR.some((re) => re.test(name))) return NIXERY_FORCED_POPULARITY;
  return popularity.get(name) ?? NIXERY_DEFAULT_POPULARITY;
}

interface RatedLayer {
  paths: string[];
  rating: bigint;
}

export function nixeryLayers(graph: LayerGraph, options: LayeringOptions): LayerGroup[] {
  const budget = checkBudget(options.budget);
  const c = indexClosure(graph);
  const n = c.paths.length;
  if (n === 0) return [];
  const pop = c.paths.map((p, i) => nixeryPopularity(p, options.popularity, c.names[i]));

  // Node 0 is the root, node i+1 is path i.
  const rootEdges = new Set(c.roots);
  for (let i = 0; i < n; i++) {
    if (c.closureSize[i]! > NIXERY_SIZE_THRESHOLD || pop[i]! >= NIXERY_POPULARITY_THRESHOLD) rootEdges.add(i);
  }
  const succ: number[][] = [[...rootEdges].sort((a, b) => a - b).map((i) => i + 1)];
  for (let i = 0; i < n; i++) succ.push(c.refs[i]!.map((r) => r + 1));
  const idom = immediateDominators(succ, 0);

  const children: number[][] = Array.from({ length: n + 1 }, () => []);
  for (let v = 1; v <= n; v++) children[idom[v]!]!.push(v);

  const layers: RatedLayer[] = children[0]!.map((head) => {
    const members = [head];
    for (let k = 0; k < members.length; k++) members.push(...children[members[k]!]!);
    let size = 0n;
    for (const m of members) size += BigInt(c.closureSize[m - 1]!);
    // Members are ids in path order, so this is already code-unit sorted.
    const paths = members.sort((a, b) => a - b).map((m) => c.paths[m - 1]!);
    return { paths, rating: BigInt(pop[head - 1]!) * size };
  });

  // Ascending rating, ties by first path; then merge the lowest-rated prefix (no re-sort).
  layers.sort((a, b) => (a.rating !== b.rating ? (a.rating < b.rating ? -1 : 1) : a.paths[0]! < b.paths[0]! ? -1 : 1));
  let kept = layers;
  if (layers.length > budget) {
    const cut = layers.length - budget + 1;
    const merged: RatedLayer = { paths: [], rating: 0n };
    for (const l of layers.slice(0, cut)) {
      merged.paths.push(...l.paths);
      merged.rating += l.rating;
    }
    kept = [merged, ...layers.slice(cut)];
  }
  return orderMostSharedFirst(kept.map((l) => ({ paths: l.paths, rating: l.rating })));
}

export const nixeryStrategy: LayeringStrategy = { name: 'nixery', group: nixeryLayers };
