// The registry of layering strategies, selected by name (NIXERY_LAYERING, `--layering`).

import { ConfigError } from '../errors.js';
import { largestFirstStrategy } from './largest-first.js';
import { nixeryStrategy } from './nixery.js';
import { stableStrategy } from './stable.js';
import type { LayeringStrategy } from './types.js';

const STRATEGIES: ReadonlyMap<string, LayeringStrategy> = new Map(
  [stableStrategy, nixeryStrategy, largestFirstStrategy].map((s) => [s.name, s]),
);

export const STRATEGY_NAMES: readonly string[] = [...STRATEGIES.keys()];
export const DEFAULT_STRATEGY = 'stable';

/** The strategy called `name`; ConfigError listing the choices otherwise. */
export function getStrategy(name: string): LayeringStrategy {
  const s = STRATEGIES.get(name);
  if (!s) throw new ConfigError(`unknown layering strategy ${JSON.stringify(name)}: choose one of ${STRATEGY_NAMES.join(', ')}`);
  return s;
}
