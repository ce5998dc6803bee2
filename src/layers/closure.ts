// The closure graph as the layering strategies see it: paths numbered in code-unit order,
// references as sorted index lists, inputs checked once. Numbering by sorted path (never by
// input order) is what makes every strategy independent of how the graph was listed.

import { InvalidClosureError, InvalidLayerBudgetError } from '../errors.js';
import { compareStrings } from '../image/name.js';
import { storePathName } from '../util/store-path.js';
import type { LayerGraph } from './types.js';

export { InvalidClosureError, InvalidLayerBudgetError } from '../errors.js';

/** Docker's (and containerd's default) limit on the layers of one image. */
export const MAX_LAYERS = 125;
/** Nixery's default budget for store-path layers, leaving room for the customisation layer. */
export const DEFAULT_BUDGET = 94;

export interface IndexedClosure {
  /** Store paths in code-unit order; a path's index is its id. */
  paths: string[];
  /** names[i]: the package name of path i, the popularity key. */
  names: string[];
  narSize: number[];
  closureSize: number[];
  /** refs[i]: ids of the paths i refers to, ascending, self-references dropped. */
  refs: number[][];
  /** referrers[i]: ids of the paths of the closure that refer to i, ascending. */
  referrers: number[][];
  /** Ids of the top-level paths, ascending, de-duplicated. */
  roots: number[];
  index: ReadonlyMap<string, number>;
}

export function checkBudget(budget: number): number {
  if (!Number.isInteger(budget) || budget < 1 || budget > MAX_LAYERS) throw new InvalidLayerBudgetError(budget, MAX_LAYERS);
  return budget;
}

function checkSize(path: string, what: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidClosureError(`${path}: ${what} must be a non-negative integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Numbers and checks a closure: unique paths, references and roots inside the closure. */
export function indexClosure(graph: LayerGraph): IndexedClosure {
  const infos = [...graph.paths].sort((a, b) => compareStrings(a.path, b.path));
  const index = new Map<string, number>();
  infos.forEach((info, i) => {
    if (typeof info.path !== 'string' || info.path === '') throw new InvalidClosureError('a store path is empty or not a string');
    if (index.has(info.path)) throw new InvalidClosureError(`${info.path} is listed twice`);
    index.set(info.path, i);
  });
  const lookup = (path: string, from: string): number => {
    const id = index.get(path);
    if (id === undefined) throw new InvalidClosureError(`${from} refers to ${path}, which is not in the closure`);
    return id;
  };
  const refs = infos.map((info, i) => {
    if (!Array.isArray(info.references)) throw new InvalidClosureError(`${info.path}: references must be an array`);
    const ids = new Set<number>();
    for (const r of info.references) {
      const id = lookup(r, info.path);
      if (id !== i) ids.add(id); // Nix lists self-references; they are not dependencies
    }
    return [...ids].sort((a, b) => a - b);
  });
  const referrers: number[][] = infos.map(() => []);
  refs.forEach((rs, i) => rs.forEach((r) => referrers[r]!.push(i)));
  const roots = [...new Set(graph.roots.map((r) => lookup(r, 'the list of top-level paths')))].sort((a, b) => a - b);
  if (infos.length > 0 && roots.length === 0) throw new InvalidClosureError('no top-level paths');
  return {
    paths: infos.map((i) => i.path),
    names: infos.map((i) => i.name ?? storePathName(i.path)),
    narSize: infos.map((i) => checkSize(i.path, 'narSize', i.narSize)),
    closureSize: infos.map((i) => checkSize(i.path, 'closureSize', i.closureSize)),
    refs,
    referrers,
    roots,
    index,
  };
}

/** The ids reachable from `sources` through references, the sources included (each once). */
export function reachable(c: IndexedClosure, sources: readonly number[]): number[] {
  const seen = new Uint8Array(c.paths.length);
  const out: number[] = [];
  for (const s of sources) if (!seen[s]) (seen[s] = 1), out.push(s);
  for (let k = 0; k < out.length; k++) for (const r of c.refs[out[k]!]!) if (!seen[r]) (seen[r] = 1), out.push(r);
  return out;
}
