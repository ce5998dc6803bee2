// Experiment (not a strategy): "co-occurrence units" from complete referrer sets, measured
// against `stable`'s units. Popularity(p) counts p's referrers in the whole package set; when
// the image holds that many referrers of p, it holds all of them, so p's global referrer set is
// known. (a) Two such paths (not requested roots) with the same referrer units always
// co-occur: one unit. (b) Such a path whose referrers all lie in one unit U travels with U:
// contracted into U (stable's popularity-1 rule is the one-referrer case). Iterated to a
// fixpoint in path order. Guards on (b): `maxref` = the path is no bigger than its largest
// referrer (stable's rule), `unit` = its unit is no bigger than U, a number k = at most k × U,
// `none`. Everything after the units is stable's own layout (layoutUnits).
//   node dist/bench/layering-cooccurrence.js [--count]
// Result (see stable.ts's top comment): (a) never fires on Debian's workload, (b) with the
// guard adds 6 contractions over 60 images; the only gains come from dropping the guard, which
// costs on the synthetic workload (a big private dependency requested on its own elsewhere).

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkBudget, indexClosure, type IndexedClosure } from '../src/layers/closure.js';
import { layoutUnits, stableUnits } from '../src/layers/stable.js';
import { getStrategy } from '../src/layers/strategies.js';
import type { LayeringStrategy, Popularity } from '../src/layers/types.js';
import { closureGraph, evaluate, idealBytes, loadBenchWorkload, remixWorkload, syntheticWorkload } from './layering-lib.js';

interface Variant {
  /** exclude: a requested root is never contracted into another unit; ignore: roots are like any path. */
  roots: 'exclude' | 'ignore';
  guard: 'none' | 'unit' | 'maxref' | number;
}

export function cooccurrenceUnits(c: IndexedClosure, popularity: Popularity, v: Variant): Int32Array {
  const n = c.paths.length;
  const parent = Int32Array.from({ length: n }, (_, i) => i);
  const find = (x: number): number => {
    while (parent[x] !== x) x = parent[x] = parent[parent[x]!]!;
    return x;
  };
  const bytes = c.narSize.slice(); // unit bytes, kept at the unit's representative (its smallest id)
  const union = (a: number, b: number): boolean => {
    [a, b] = [find(a), find(b)];
    if (a === b) return false;
    const [lo, hi] = a < b ? [a, b] : [b, a];
    parent[hi] = lo;
    bytes[lo]! += bytes[hi]!;
    return true;
  };
  const isRoot = new Uint8Array(n);
  for (const r of c.roots) isRoot[r] = 1;
  const complete = c.paths.map((_, i) => i).filter((i) => {
    const k = c.referrers[i]!.length;
    return k > 0 && !(v.roots === 'exclude' && isRoot[i]) && popularity.get(c.names[i]!) === k;
  });
  for (let changed = true; changed; ) {
    changed = false;
    const byReferrerUnits = new Map<string, number>();
    for (const i of complete) {
      const me = find(i);
      const units = [...new Set(c.referrers[i]!.map(find))].filter((u) => u !== me).sort((a, b) => a - b);
      if (units.length === 1) {
        const u = units[0]!;
        const ok =
          v.guard === 'none' ? true :
          v.guard === 'unit' ? bytes[me]! <= bytes[u]! :
          v.guard === 'maxref' ? c.narSize[i]! <= Math.max(...c.referrers[i]!.map((r) => c.narSize[r]!)) :
          bytes[me]! <= v.guard * bytes[u]!;
        if (ok && union(i, u)) changed = true;
      } else if (units.length > 1) {
        const key = units.join(',');
        const other = byReferrerUnits.get(key);
        if (other === undefined) byReferrerUnits.set(key, i);
        else if (union(other, i)) changed = true;
      }
    }
  }
  return Int32Array.from({ length: n }, (_, i) => find(i));
}

function strategy(name: string, v: Variant | null): LayeringStrategy {
  return {
    name,
    group: (graph, options) => {
      const budget = checkBudget(options.budget);
      const c = indexClosure(graph);
      const head = v ? cooccurrenceUnits(c, options.popularity, v) : stableUnits(c, options.popularity);
      return layoutUnits(c, head, budget, options.popularity);
    },
  };
}

const variants: Array<[string, Variant | null]> = [
  ['stable', null],
  ['co-maxref', { roots: 'exclude', guard: 'maxref' }],
  ['co-maxref roots-ignored', { roots: 'ignore', guard: 'maxref' }],
  ['co-unit', { roots: 'exclude', guard: 'unit' }],
  ['co-x2', { roots: 'exclude', guard: 2 }],
  ['co-none', { roots: 'exclude', guard: 'none' }],
];
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const debian = loadBenchWorkload(path.resolve(root, '../shared/layering-bench'), 'debian (benchmark)');

if (process.argv.includes('--count')) {
  for (const [name, v] of variants) {
    let units = 0;
    let paths = 0;
    for (const img of debian.images) {
      const c = indexClosure(closureGraph(debian, img.roots));
      units += new Set(v ? cooccurrenceUnits(c, debian.popularity, v) : stableUnits(c, debian.popularity)).size;
      paths += c.paths.length;
    }
    console.log(`${name}: ${units} units for ${paths} paths over ${debian.images.length} images`);
  }
} else {
  const strategies = [...variants.map(([n, v]) => strategy(n, v)), getStrategy('largest-first')];
  const workloads = [debian, remixWorkload(debian, 60, 1), remixWorkload(debian, 60, 2), syntheticWorkload(1), syntheticWorkload(2, { popularity: false })];
  console.log(`| workload | budget | ${strategies.map((s) => s.name).join(' | ')} |`);
  console.log(`|---|---:|${strategies.map(() => '---:|').join('')}`);
  for (const w of workloads) {
    const ideal = idealBytes(w);
    for (const b of [20, 60, 94]) {
      const cells = strategies.map((s) => {
        const e = evaluate(w, s, b, ideal);
        return `${e.ratio.toFixed(4)}×${e.overBudget || e.invalid ? '!' : ''}`;
      });
      console.log(`| ${w.name} | ${b} | ${cells.join(' | ')} |`);
    }
  }
}
