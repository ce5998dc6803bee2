// Baseline: the budget−1 largest paths (by narSize) get a layer each, the rest share one.
// Kept selectable as the yardstick the default strategy must beat.

import { compareStrings } from '../image/name.js';
import { checkBudget, indexClosure } from './closure.js';
import { orderMostSharedFirst } from './order.js';
import type { LayerGraph, LayerGroup, LayeringOptions, LayeringStrategy } from './types.js';

export function largestFirstLayers(graph: LayerGraph, options: LayeringOptions): LayerGroup[] {
  const budget = checkBudget(options.budget);
  const c = indexClosure(graph);
  const ids = c.paths.map((_, i) => i).sort((a, b) => c.narSize[b]! - c.narSize[a]! || compareStrings(c.paths[a]!, c.paths[b]!));
  const own = ids.length <= budget ? ids.length : budget - 1;
  // Rating = bytes: the big layers are the ones most worth sharing.
  const groups: LayerGroup[] = ids.slice(0, own).map((i) => ({ paths: [c.paths[i]!], rating: BigInt(c.narSize[i]!) }));
  const rest = ids.slice(own);
  if (rest.length > 0) {
    groups.push({ paths: rest.map((i) => c.paths[i]!), rating: rest.reduce((s, i) => s + BigInt(c.narSize[i]!), 0n) });
  }
  return orderMostSharedFirst(groups);
}

export const largestFirstStrategy: LayeringStrategy = { name: 'largest-first', group: largestFirstLayers };
