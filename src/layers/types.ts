// Layering: how a graph of store paths is cut into layers. A pure function of the graph and
// popularity data: layering knows no Nix, does no I/O (the builder turns a Nix closure into a
// LayerGraph, src/builder/popularity.ts).

/** One node of the graph: a store path and what layering needs to know of it. */
export interface LayerNode {
  path: string;
  /** Its package name, the popularity key (default: storePathName of the path under /nix/store). */
  name?: string;
  /** Paths it refers to (self-references are ignored). */
  references: string[];
  narSize: number;
  /** Size of its whole closure, itself included. */
  closureSize: number;
}

/** The closure to cut: the top-level paths and every node reachable from them. */
export interface LayerGraph {
  roots: string[];
  paths: LayerNode[];
}

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
  group(graph: LayerGraph, options: LayeringOptions): LayerGroup[];
}
