// Layering: how a closure is cut into layers.

import type { ClosureGraph } from '../nix/types.js';

/** Package name (store path without `/nix/store/<hash>-`) → how many derivations refer to it. */
export type Popularity = ReadonlyMap<string, number>;

export interface LayerGroup {
  /** The store paths of the layer, sorted by code unit. */
  paths: string[];
  /**
   * How shared the layer is expected to be; manifests order layers by it, most shared first.
   * Exact integer (Nixery's popularity × size rating may exceed 2^53).
   */
  rating: bigint;
}

export interface LayeringOptions {
  /** Most layers the store paths may use (the customisation layer comes on top). */
  budget: number;
  popularity: Popularity;
}

export interface LayeringStrategy {
  name: string;
  group(graph: ClosureGraph, options: LayeringOptions): LayerGroup[];
}
