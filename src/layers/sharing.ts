// What a layer is, for people looking at an image: how popular its most popular store path is
// in the package set, and whether it holds a shared runtime (libc, a C++ runtime, Python...):
// a path at least 1/RUNTIME_POPULARITY_DIVISOR as popular as the package set's most popular one,
// the same rule the `stable` strategy uses to keep runtimes in identical layers across images.
// Pure: decided by the paths and the popularity data only.

import { storePathName } from '../util/store-path.js';
import { highestPopularity, RUNTIME_POPULARITY_DIVISOR } from './stable.js';
import type { Popularity } from './types.js';

export interface LayerSharing {
  /** How many derivations of the package set refer to the layer's most popular path (0 without data). */
  popularity: number;
  /** The package name (store path without the hash) of the most popular shared runtime in the layer, if any. */
  runtime: string | null;
}

/** The least popularity of a shared runtime in this data set (Infinity without data). */
export function runtimePopularity(popularity: Popularity): number {
  if (popularity.size === 0) return Infinity;
  return Math.max(2, highestPopularity(popularity) / RUNTIME_POPULARITY_DIVISOR);
}

/** `paths` are store paths under `storeDir`. */
export function layerSharing(paths: readonly string[], popularity: Popularity, storeDir?: string): LayerSharing {
  const threshold = runtimePopularity(popularity);
  let most = 0;
  let runtime: string | null = null;
  for (const path of paths) {
    const name = storePathName(path, storeDir);
    const p = popularity.get(name) ?? 0;
    if (p > most) {
      most = p;
      if (p >= threshold) runtime = name;
    }
  }
  return { popularity: most, runtime };
}
