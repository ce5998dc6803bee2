// `nixery layers`: the layering benchmark's plug-in contract. Input (stdin):
//   {"graph": {"graph": [{path, narSize, closureSize, references}],
//              "exportReferencesGraph": {"graph": [top-level paths]}},
//    "popularity": {"name": count}, "budget": N}
// Output (stdout): a JSON array of layers, each an array of store paths, most shared first.

import { InvalidLayersRequestError, InvalidPopularityError } from '../errors.js';

export { InvalidLayersRequestError } from '../errors.js';
import type { LayerGraph, LayerNode } from './types.js';
import { checkBudget, DEFAULT_BUDGET } from './closure.js';
import { parsePopularity } from './popularity.js';
import { getStrategy } from './strategies.js';

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringArray(v: unknown, what: string): string[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new InvalidLayersRequestError(`${what} must be an array of strings`);
  return v as string[];
}

/** Reads the contract's request into a closure graph, popularity and budget. */
export function parseLayersRequest(requestJson: string): { graph: LayerGraph; popularity: Map<string, number>; budget: number | undefined } {
  let req: unknown;
  try {
    req = JSON.parse(requestJson);
  } catch (err) {
    throw new InvalidLayersRequestError(`not JSON (${(err as Error).message})`);
  }
  if (!isObject(req) || !isObject(req.graph)) throw new InvalidLayersRequestError('expected {"graph": {"graph": [...], "exportReferencesGraph": {"graph": [...]}}, ...}');
  const entries = req.graph.graph;
  const erg = req.graph.exportReferencesGraph;
  if (!Array.isArray(entries)) throw new InvalidLayersRequestError('graph.graph must be an array');
  if (!isObject(erg)) throw new InvalidLayersRequestError('graph.exportReferencesGraph must be an object');
  const roots = stringArray(erg.graph, 'graph.exportReferencesGraph.graph');
  const paths: LayerNode[] = entries.map((e, i) => {
    if (!isObject(e) || typeof e.path !== 'string') throw new InvalidLayersRequestError(`graph.graph[${i}] must have a string "path"`);
    const sizes = [e.narSize, e.closureSize];
    if (!sizes.every((s) => typeof s === 'number')) throw new InvalidLayersRequestError(`${e.path}: narSize and closureSize must be numbers`);
    return {
      path: e.path,
      references: stringArray(e.references ?? [], `${e.path}: references`),
      narSize: e.narSize as number,
      closureSize: e.closureSize as number,
    };
  });
  let popularity = new Map<string, number>();
  if (req.popularity !== undefined && req.popularity !== null) {
    try {
      popularity = parsePopularity(req.popularity);
    } catch (err) {
      if (err instanceof InvalidPopularityError) throw new InvalidLayersRequestError(err.message);
      throw err;
    }
  }
  let budget: number | undefined;
  if (req.budget !== undefined) {
    if (typeof req.budget !== 'number') throw new InvalidLayersRequestError('budget must be a number');
    budget = req.budget;
  }
  return { graph: { roots, paths }, popularity, budget };
}

/**
 * Runs strategy `strategyName` on one request and returns the layers as JSON (one line).
 * The budget is `budgetOverride`, else the request's, else the default (94).
 */
export function runLayersCommand(requestJson: string, strategyName: string, budgetOverride?: number): string {
  const strategy = getStrategy(strategyName);
  const { graph, popularity, budget } = parseLayersRequest(requestJson);
  const groups = strategy.group(graph, { budget: checkBudget(budgetOverride ?? budget ?? DEFAULT_BUDGET), popularity });
  return JSON.stringify(groups.map((g) => g.paths));
}
