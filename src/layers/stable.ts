// The default strategy, `stable`: a store path's layer should depend as little as possible on
// the rest of the image, so that shared runtimes land in identical layers everywhere.
//
// 1. Units. A path that exactly one derivation of the whole package set refers to (popularity
//    data says 1) and whose referrer is in the image always travels with that referrer, so the
//    two can share a layer in every image without ever splitting: such paths are contracted
//    into their referrer's unit (transitively). Nothing else is merged on guesswork: an
//    image-local "only referrer" is often not the only one elsewhere, and merging on it
//    measured far worse. Without popularity data every path is its own unit.
// 2. Budget. Units sizes are heavy-tailed, so the budget−1 largest units (by bytes) get a layer
//    each and the small remainder shares one layer; when the units fit, each gets its own.
//    Big units are then identical in every image that has them; only the small remainder
//    depends on the image.
//
// Measured on the shared benchmark (bench/layering.ts), this beat every alternative tried:
// grouping by top-level root, by popularity tier, content-defined chunking of the remainder,
// fixed size thresholds and dominator-based contraction all lose layer slots that are worth
// more as singletons of big paths.

import { compareStrings } from '../image/name.js';
import type { ClosureGraph } from '../nix/types.js';
import { checkBudget, indexClosure, packageName, type IndexedClosure } from './closure.js';
import { orderMostSharedFirst } from './order.js';
import type { LayerGroup, LayeringOptions, LayeringStrategy, Popularity } from './types.js';

/**
 * unit[i]: the id of the path that heads path i's unit. A path joins its referrer's unit when
 * the popularity data says exactly one derivation refers to it and that referrer is its only
 * referrer in the image.
 */
export function stableUnits(c: IndexedClosure, popularity: Popularity): Int32Array {
  const n = c.paths.length;
  const parent = new Int32Array(n).fill(-1);
  for (let q = 0; q < n; q++) {
    const referrers = c.referrers[q]!;
    if (referrers.length === 1 && popularity.get(packageName(c.paths[q]!)) === 1) parent[q] = referrers[0]!;
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

export function stableLayers(graph: ClosureGraph, options: LayeringOptions): LayerGroup[] {
  const budget = checkBudget(options.budget);
  const c = indexClosure(graph);
  const head = stableUnits(c, options.popularity);
  const members = new Map<number, number[]>();
  for (let i = 0; i < c.paths.length; i++) {
    const list = members.get(head[i]!);
    if (list) list.push(i);
    else members.set(head[i]!, [i]);
  }
  const units = [...members.values()].map((ids) => ({ ids, bytes: ids.reduce((s, i) => s + BigInt(c.narSize[i]!), 0n) }));
  // Largest first; ties by first path (ids are in path order, so ids[0] is the smallest path).
  units.sort((a, b) => (a.bytes !== b.bytes ? (a.bytes > b.bytes ? -1 : 1) : compareStrings(c.paths[a.ids[0]!]!, c.paths[b.ids[0]!]!)));
  const own = units.length <= budget ? units.length : budget - 1;
  // Rating: a unit layer's bytes (the big, stable layers are the ones most worth sharing); the
  // remainder is specific to the image, so it rates 0 and comes last.
  const groups: LayerGroup[] = units.slice(0, own).map((u) => ({ paths: u.ids.map((i) => c.paths[i]!), rating: u.bytes }));
  const rest = units.slice(own).flatMap((u) => u.ids);
  if (rest.length > 0) groups.push({ paths: rest.map((i) => c.paths[i]!), rating: 0n });
  return orderMostSharedFirst(groups);
}

export const stableStrategy: LayeringStrategy = { name: 'stable', group: stableLayers };
