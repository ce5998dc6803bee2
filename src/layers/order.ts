// The order contract every strategy returns its layers in: most shared first, i.e. by
// descending rating, ties broken by the layer's first (smallest) store path in code-unit
// order. Layers are disjoint, so first paths differ and the order is total: the same grouping
// always comes out in the same order, whatever the input order or the strategy's internals.

import { compareStrings } from '../image/name.js';
import type { LayerGroup } from './types.js';

export function compareMostSharedFirst(a: LayerGroup, b: LayerGroup): number {
  if (a.rating !== b.rating) return a.rating > b.rating ? -1 : 1;
  return compareStrings(a.paths[0] ?? '', b.paths[0] ?? '');
}

/** Sorts each layer's paths and the layers themselves per the contract above (in place). */
export function orderMostSharedFirst(groups: LayerGroup[]): LayerGroup[] {
  for (const g of groups) g.paths.sort(compareStrings);
  return groups.sort(compareMostSharedFirst);
}
