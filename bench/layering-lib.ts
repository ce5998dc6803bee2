// In-process evaluation of layering strategies, the same metric as the shared benchmark
// (../shared/layering-bench/layering.py): images pulled in order by one client with an empty
// cache; a layer (its set of paths) already pulled is not pulled again; bytes = Σ narSize.
// Used by bench/layering.ts for the workloads the Python harness does not have.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { ClosureGraph, StorePathInfo } from '../src/nix/types.js';
import type { LayeringStrategy, Popularity } from '../src/layers/types.js';
import { rng } from '../test/layers/graphs.js';

/** Seeded generator shared with the layering tests. */
export { rng };

export interface Workload {
  name: string;
  nodes: ReadonlyMap<string, StorePathInfo>;
  popularity: Popularity;
  /** Top-level paths of each image, in pull order. */
  images: Array<{ name: string; roots: string[] }>;
}

export function loadBenchWorkload(dir: string, name = path.basename(dir)): Workload {
  const graph = JSON.parse(readFileSync(path.join(dir, 'graph.json'), 'utf8')) as { graph: StorePathInfo[] };
  const popularity = JSON.parse(readFileSync(path.join(dir, 'popularity.json'), 'utf8')) as Record<string, number>;
  const workload = JSON.parse(readFileSync(path.join(dir, 'workload.json'), 'utf8')) as { images: Array<{ name: string; paths: string[] }> };
  return {
    name,
    nodes: new Map(graph.graph.map((e) => [e.path, e])),
    popularity: new Map(Object.entries(popularity)),
    images: workload.images.map((i) => ({ name: i.name, roots: i.paths })),
  };
}

export function closureGraph(w: Workload, roots: string[]): ClosureGraph {
  const seen = new Set<string>();
  const todo = [...roots];
  while (todo.length > 0) {
    const p = todo.pop()!;
    if (seen.has(p)) continue;
    seen.add(p);
    todo.push(...w.nodes.get(p)!.references);
  }
  const paths = [...seen].sort().map((p) => w.nodes.get(p)!);
  return { roots: [...new Set(roots)].sort(), paths };
}

export interface Evaluation {
  strategy: string;
  budget: number;
  downloadBytes: number;
  /** downloadBytes ÷ the per-path ideal's. */
  ratio: number;
  distinctLayers: number;
  maxLayers: number;
  overBudget: number;
  /** Layouts that break the invariants (path missing, duplicated, foreign, empty layer). */
  invalid: number;
  msPerImage: number;
  /** Largest time for one image, ms. */
  msMax: number;
}

export function idealBytes(w: Workload): number {
  const seen = new Set<string>();
  let bytes = 0;
  for (const img of w.images) {
    for (const p of closureGraph(w, img.roots).paths) {
      if (!seen.has(p.path)) {
        seen.add(p.path);
        bytes += p.narSize;
      }
    }
  }
  return bytes;
}

export function evaluate(w: Workload, strategy: LayeringStrategy, budget: number, ideal = idealBytes(w)): Evaluation {
  const pulled = new Set<string>();
  let downloadBytes = 0;
  let maxLayers = 0;
  let overBudget = 0;
  let invalid = 0;
  let ms = 0;
  let msMax = 0;
  for (const img of w.images) {
    const graph = closureGraph(w, img.roots);
    const t0 = performance.now();
    const groups = strategy.group(graph, { budget, popularity: w.popularity });
    const dt = performance.now() - t0;
    ms += dt;
    msMax = Math.max(msMax, dt);
    const seen = new Set<string>();
    let ok = groups.every((g) => g.paths.length > 0);
    for (const g of groups) for (const p of g.paths) {
      if (seen.has(p) || !w.nodes.has(p)) ok = false;
      seen.add(p);
    }
    if (seen.size !== graph.paths.length || graph.paths.some((p) => !seen.has(p.path))) ok = false;
    if (!ok) invalid++;
    if (groups.length > budget) overBudget++;
    maxLayers = Math.max(maxLayers, groups.length);
    for (const g of groups) {
      const key = [...g.paths].sort().join('\n');
      if (pulled.has(key)) continue;
      pulled.add(key);
      for (const p of g.paths) downloadBytes += w.nodes.get(p)!.narSize;
    }
  }
  return {
    strategy: strategy.name,
    budget,
    downloadBytes,
    ratio: downloadBytes / ideal,
    distinctLayers: pulled.size,
    maxLayers,
    overBudget,
    invalid,
    msPerImage: ms / w.images.length,
    msMax,
  };
}


function pick<T>(items: readonly T[], random: () => number): T {
  return items[Math.floor(random() * items.length)]!;
}

/**
 * Another image mix on the same graph: `count` images of 1–4 top-level packages drawn from
 * the graph's nodes (any node, libraries too), the always-added paths of the original
 * workload's first image kept, half with its shell set. Pull order is the draw order.
 */
export function remixWorkload(w: Workload, count: number, seed: number): Workload {
  const random = rng(seed);
  const all = [...w.nodes.keys()].sort();
  const first = w.images[0]!.roots;
  // Paths every original image has (always-added) and those of the shell images.
  const always = first.filter((p) => w.images.every((i) => i.roots.includes(p)));
  const shell = first.filter((p) => !always.includes(p) && w.images.filter((i) => i.roots.includes(p)).length >= w.images.length / 3);
  const images = Array.from({ length: count }, (_, i) => {
    const k = 1 + Math.floor(random() * 4);
    const roots = new Set<string>(always);
    if (random() < 0.5) shell.forEach((p) => roots.add(p));
    for (let j = 0; j < k; j++) roots.add(pick(all, random));
    return { name: `remix-${i}`, roots: [...roots] };
  });
  return { ...w, name: `${w.name} remix ${seed}`, images };
}

/**
 * A synthetic package universe unlike Debian's: layered "runtimes" (big, widely used),
 * libraries and leaf applications; heavy-tailed sizes; references only downwards (a DAG).
 * Images are 1–3 applications plus a fixed base, pulled in a random order.
 */
export function syntheticWorkload(seed: number, options: { packages?: number; images?: number; popularity?: boolean } = {}): Workload {
  const random = rng(seed);
  const n = options.packages ?? 1500;
  const nodes = new Map<string, StorePathInfo>();
  const names: string[] = [];
  const hash = (i: number) => (i * 2654435761 >>> 0).toString(32).padStart(7, '0').repeat(5).slice(0, 32);
  const base: string[] = [];
  const refsOf: string[][] = [];
  for (let i = 0; i < n; i++) {
    const tier = i < 8 ? 'base' : i < n * 0.05 ? 'runtime' : i < n * 0.6 ? 'lib' : 'app';
    const p = `/nix/store/${hash(i + seed * 7919)}-${tier}${i}-1.${i % 7}`;
    // Lower tiers are referenced more: choose references among earlier paths, biased to the start.
    const refs = new Set<string>();
    const want = i === 0 ? 0 : tier === 'base' ? 1 : Math.floor(random() * (tier === 'app' ? 8 : 5)) + 1;
    for (let j = 0; j < want; j++) {
      const target = Math.floor(Math.pow(random(), tier === 'lib' ? 2.2 : 1.6) * i);
      if (target < i) refs.add(names[target]!);
    }
    const size = Math.floor(2000 * Math.exp(random() * (tier === 'runtime' ? 12 : tier === 'app' ? 10 : 9)));
    names.push(p);
    refsOf.push([...refs]);
    nodes.set(p, { path: p, references: [...refs].sort(), narSize: size, closureSize: 0 });
    if (tier === 'base' && i < 2) base.push(p);
  }
  // Closure sizes, bottom-up (references point to lower indexes).
  const closure: Set<string>[] = [];
  for (let i = 0; i < n; i++) {
    const s = new Set<string>([names[i]!]);
    for (const r of refsOf[i]!) for (const q of closure[names.indexOf(r)]!) s.add(q);
    closure.push(s);
    let total = 0;
    for (const q of s) total += nodes.get(q)!.narSize;
    nodes.get(names[i]!)!.closureSize = total;
  }
  const popularity = new Map<string, number>();
  if (options.popularity ?? true) {
    for (const e of nodes.values()) for (const r of e.references) {
      const key = r.replace(/^\/nix\/store\/[a-z0-9]+-/, '');
      popularity.set(key, (popularity.get(key) ?? 0) + 1);
    }
  }
  const apps = names.filter((p) => /-(app|runtime)\d/.test(p));
  const images = Array.from({ length: options.images ?? 80 }, (_, i) => {
    const roots = new Set(base);
    const k = 1 + Math.floor(random() * 3);
    for (let j = 0; j < k; j++) roots.add(pick(apps, random));
    return { name: `synthetic-${i}`, roots: [...roots] };
  });
  return { name: `synthetic ${seed}`, nodes, popularity, images };
}

/**
 * A clairvoyant bound, not a strategy: knowing every image of the workload in advance, start
 * from one group per "signature" (the paths present in exactly the same images: a layer that
 * never splits), then, while an image has more groups than the budget, merge the two groups of
 * the most crowded image whose merge adds the fewest downloaded bytes. An image's layers are the
 * groups it intersects; each distinct intersection is downloaded once. Returns the download
 * bytes, comparable to evaluate()'s.
 */
export function clairvoyantBytes(w: Workload, budget: number): number {
  const images = w.images.map((img) => closureGraph(w, img.roots).paths);
  const signature = new Map<string, number[]>();
  images.forEach((paths, k) => paths.forEach((p) => (signature.get(p.path) ?? signature.set(p.path, []).get(p.path)!).push(k)));
  const classes = new Map<string, { bytes: number; images: Set<number> }>();
  for (const [p, ks] of signature) {
    const key = ks.join(',');
    const c = classes.get(key) ?? classes.set(key, { bytes: 0, images: new Set(ks) }).get(key)!;
    c.bytes += w.nodes.get(p)!.narSize;
  }
  type Group = { classes: Array<{ bytes: number; images: Set<number> }>; cost: number };
  const cost = (classes: Group['classes']): number => {
    const seen = new Set<string>();
    let bytes = 0;
    for (let k = 0; k < images.length; k++) {
      const present = classes.filter((c) => c.images.has(k));
      const key = present.map((c) => classes.indexOf(c)).join(',');
      if (present.length === 0 || seen.has(key)) continue;
      seen.add(key);
      bytes += present.reduce((s, c) => s + c.bytes, 0);
    }
    return bytes;
  };
  let groups: Group[] = [...classes.values()].map((c) => ({ classes: [c], cost: c.bytes }));
  const inImage = (g: Group, k: number) => g.classes.some((c) => c.images.has(k));
  for (;;) {
    let worst = -1;
    let most = budget;
    for (let k = 0; k < images.length; k++) {
      const n = groups.filter((g) => inImage(g, k)).length;
      if (n > most) (most = n), (worst = k);
    }
    if (worst < 0) break;
    const here = groups.filter((g) => inImage(g, worst));
    let best: { extra: number; a: Group; b: Group; merged: Group } | undefined;
    for (let i = 0; i < here.length; i++) {
      for (let j = i + 1; j < here.length; j++) {
        const classesAB = [...here[i]!.classes, ...here[j]!.classes];
        const c = cost(classesAB);
        const extra = c - here[i]!.cost - here[j]!.cost;
        if (!best || extra < best.extra) best = { extra, a: here[i]!, b: here[j]!, merged: { classes: classesAB, cost: c } };
      }
    }
    groups = groups.filter((g) => g !== best!.a && g !== best!.b);
    groups.push(best!.merged);
  }
  return groups.reduce((s, g) => s + g.cost, 0);
}
