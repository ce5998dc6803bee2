// Hand-made closure graphs for the layering tests: nodes by short name, closure sizes computed
// from the references (as Nix would report them), and deterministic shuffles.

import type { ClosureGraph, StorePathInfo } from '../../src/nix/types.js';
import type { LayerGroup } from '../../src/layers/types.js';

/** `/nix/store/<32 chars>-<name>`: a fixed fake hash so the popularity key is `name`. */
export function storePath(name: string): string {
  return `/nix/store/${'0'.repeat(32)}-${name}`;
}

export interface NodeSpec {
  nar: number;
  refs?: string[];
}

/** The closure of `roots` in `nodes` (names), as a ClosureGraph with computed closure sizes. */
export function makeGraph(nodes: Record<string, NodeSpec>, roots: string[]): ClosureGraph {
  const closureOf = (name: string, seen = new Set<string>()): Set<string> => {
    if (seen.has(name)) return seen;
    if (!nodes[name]) throw new Error(`unknown node ${name}`);
    seen.add(name);
    for (const r of nodes[name]!.refs ?? []) closureOf(r, seen);
    return seen;
  };
  const all = new Set<string>();
  for (const r of roots) closureOf(r, all);
  const paths: StorePathInfo[] = [...all].map((name) => ({
    path: storePath(name),
    references: (nodes[name]!.refs ?? []).map(storePath),
    narSize: nodes[name]!.nar,
    closureSize: [...closureOf(name)].reduce((s, n) => s + nodes[n]!.nar, 0),
  }));
  paths.sort((a, b) => (a.path < b.path ? -1 : 1));
  return { roots: [...new Set(roots.map(storePath))].sort(), paths };
}

/** Mulberry32: a small seeded generator, so "random" tests are reproducible. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function shuffle<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** The same graph listed in another order (paths, references and roots shuffled). */
export function shuffledGraph(graph: ClosureGraph, seed: number): ClosureGraph {
  const random = rng(seed);
  return {
    roots: shuffle(graph.roots, random),
    paths: shuffle(graph.paths, random).map((p) => ({ ...p, references: shuffle(p.references, random) })),
  };
}

/** Layers as sets of short names, for readable assertions. */
export function names(groups: LayerGroup[]): string[][] {
  return groups.map((g) => g.paths.map((p) => p.slice('/nix/store/'.length + 33)));
}

/**
 * A random DAG closure with shared "runtimes": `n` paths, sizes heavy-tailed, references only to
 * lower-numbered paths (so no cycles); every path is reachable from the returned roots.
 */
export function randomGraph(n: number, seed: number): ClosureGraph {
  const random = rng(seed);
  const nodes: Record<string, NodeSpec> = {};
  const referred = new Set<string>();
  for (let i = 0; i < n; i++) {
    const refs = new Set<string>();
    const k = i === 0 ? 0 : Math.floor(random() * Math.min(i, 6));
    for (let j = 0; j < k; j++) refs.add(`p${String(Math.floor(random() * i)).padStart(4, '0')}`);
    const name = `p${String(i).padStart(4, '0')}`;
    nodes[name] = { nar: Math.floor(1000 * Math.exp(random() * 14)), refs: [...refs] };
    refs.forEach((r) => referred.add(r));
  }
  const roots = Object.keys(nodes).filter((k) => !referred.has(k));
  return makeGraph(nodes, roots);
}

/** Checks the layering invariants; returns a description of the first violation or null. */
export function violation(graph: ClosureGraph, groups: LayerGroup[], budget: number): string | null {
  if (groups.length > budget) return `${groups.length} layers > budget ${budget}`;
  const seen = new Map<string, number>();
  for (const [i, g] of groups.entries()) {
    if (g.paths.length === 0) return `layer ${i} is empty`;
    const sorted = [...g.paths].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    if (sorted.some((p, j) => p !== g.paths[j])) return `layer ${i} is not sorted`;
    for (const p of g.paths) seen.set(p, (seen.get(p) ?? 0) + 1);
  }
  for (const p of graph.paths) {
    const n = seen.get(p.path) ?? 0;
    if (n !== 1) return `${p.path} is in ${n} layers`;
  }
  if (seen.size !== graph.paths.length) return 'a layer holds a path outside the closure';
  return null;
}
