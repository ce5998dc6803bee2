import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nixeryLayers, nixeryPopularity } from '../../src/layers/nixery.js';
import { InvalidClosureError, InvalidLayerBudgetError } from '../../src/layers/closure.js';
import { makeGraph, names, randomGraph, shuffledGraph, storePath, violation } from './graphs.js';

// Nixery's worked example (layers package documentation, nixery.md §6.6): root→A,B,C,D; A→E;
// B→E; C→E; C→D; D→F; G (> 100 MB) hangs below D; E is popular. Sizes and popularities are
// chosen so the ratings come out A < B < C < {D,F} < E < G, as the documentation assumes:
//   A: 1×(1+10)=11e6   B: 1×(2+10)=12e6   C: 1×(3+10+5+1+150)=169e6
//   {D,F}: 2×(156+1)=314e6   E: 100×10=1e9   G: 10×150=1.5e9
const MB = 1_000_000;
const example = makeGraph(
  {
    A: { nar: 1 * MB, refs: ['E'] },
    B: { nar: 2 * MB, refs: ['E'] },
    C: { nar: 3 * MB, refs: ['E', 'D'] },
    D: { nar: 5 * MB, refs: ['F', 'G'] },
    E: { nar: 10 * MB },
    F: { nar: 1 * MB },
    G: { nar: 150 * MB },
  },
  ['A', 'B', 'C', 'D'],
);
const examplePopularity = new Map([
  ['D', 2],
  ['E', 100],
  ['G', 10],
]);

test('worked example: one layer per dominator child of the root, most shared first', () => {
  const layers = nixeryLayers(example, { budget: 10, popularity: examplePopularity });
  // Descending rating: G 1.5e9, E 1e9, {D,F} 314e6, C 169e6, B 12e6, A 11e6.
  assert.deepEqual(names(layers), [['G'], ['E'], ['D', 'F'], ['C'], ['B'], ['A']]);
  assert.deepEqual(
    layers.map((l) => l.rating),
    [1_500_000_000n, 1_000_000_000n, 314_000_000n, 169_000_000n, 12_000_000n, 11_000_000n],
  );
});

test('worked example: budgets 4, 3, 2 and 1 merge the lowest-rated layers', () => {
  const at = (budget: number) => names(nixeryLayers(example, { budget, popularity: examplePopularity }));
  assert.deepEqual(at(4), [['G'], ['E'], ['D', 'F'], ['A', 'B', 'C']]); // ABC = 192e6 < 314e6
  assert.deepEqual(at(3), [['G'], ['E'], ['A', 'B', 'C', 'D', 'F']]); // 506e6
  assert.deepEqual(at(2), [['A', 'B', 'C', 'D', 'E', 'F'], ['G']]); // 1.506e9 > 1.5e9
  assert.deepEqual(at(1), [['A', 'B', 'C', 'D', 'E', 'F', 'G']]);
});

test('merging does not re-sort: ratings 10 20 25 26 100 at budget 3 give {a,b,c} {d} {e}', () => {
  const g = makeGraph({ a: { nar: 10 }, b: { nar: 20 }, c: { nar: 25 }, d: { nar: 26 }, e: { nar: 100 } }, ['a', 'b', 'c', 'd', 'e']);
  const layers = nixeryLayers(g, { budget: 3, popularity: new Map() });
  assert.deepEqual(names(layers), [['e'], ['a', 'b', 'c'], ['d']]); // order: 100, 55, 26
});

test('without popularity data only size and the forced packages give root edges', () => {
  const g = makeGraph(
    {
      app: { nar: 5, refs: ['lib', 'nss-cacert-3.9', 'iana-etc-2024'] },
      lib: { nar: 7 },
      'nss-cacert-3.9': { nar: 3 },
      'iana-etc-2024': { nar: 2 },
    },
    ['app'],
  );
  const layers = nixeryLayers(g, { budget: 94, popularity: new Map() });
  // cacert: 500000×3, iana-etc: 500000×2, app+lib: 1×(17+7)
  assert.deepEqual(names(layers), [['nss-cacert-3.9'], ['iana-etc-2024'], ['app', 'lib']]);
  assert.equal(nixeryPopularity(storePath('nss-cacert-3.9'), new Map([['nss-cacert-3.9', 3]])), 500_000);
  assert.equal(nixeryPopularity(storePath('unknown-1.0'), new Map()), 1);
});

test('ratings are exact beyond 2^53', () => {
  const g = makeGraph({ 'nss-cacert-1': { nar: 100_000_000_007 } }, ['nss-cacert-1']);
  const [layer] = nixeryLayers(g, { budget: 1, popularity: new Map() });
  assert.equal(layer!.rating, 500_000n * 100_000_000_007n); // 50000000003500000, not representable as a double
});

test('equal ratings are broken by first path, whatever the input order', () => {
  const g = makeGraph({ b: { nar: 10 }, a: { nar: 10 }, d: { nar: 10 }, c: { nar: 10 } }, ['d', 'c', 'b', 'a']);
  for (let seed = 1; seed <= 20; seed++) {
    const layers = nixeryLayers(shuffledGraph(g, seed), { budget: 3, popularity: new Map() });
    assert.deepEqual(names(layers), [['a', 'b'], ['c'], ['d']]);
  }
});

test('self-references are not dependencies', () => {
  const g = makeGraph({ app: { nar: 1, refs: ['lib'] }, lib: { nar: 2 } }, ['app']);
  g.paths.forEach((p) => p.references.push(p.path));
  assert.deepEqual(names(nixeryLayers(g, { budget: 94, popularity: new Map() })), [['app', 'lib']]);
});

test('random closures: every path in exactly one layer, budget kept, independent of input order', () => {
  for (const [n, seed] of [[40, 1], [200, 2], [500, 3]] as const) {
    const g = randomGraph(n, seed);
    for (const budget of [1, 2, 20, 94, 125]) {
      const layers = nixeryLayers(g, { budget, popularity: new Map([['p0001', 150]]) });
      assert.equal(violation(g, layers, budget), null, `n=${n} budget=${budget}`);
      const again = nixeryLayers(shuffledGraph(g, seed * 31 + budget), { budget, popularity: new Map([['p0001', 150]]) });
      assert.deepEqual(again, layers);
    }
  }
});

test('bad input is a typed error', () => {
  assert.throws(() => nixeryLayers(example, { budget: 0, popularity: new Map() }), InvalidLayerBudgetError);
  assert.throws(() => nixeryLayers(example, { budget: 126, popularity: new Map() }), InvalidLayerBudgetError);
  const dangling = makeGraph({ a: { nar: 1 } }, ['a']);
  dangling.paths[0]!.references.push(storePath('missing'));
  assert.throws(() => nixeryLayers(dangling, { budget: 5, popularity: new Map() }), InvalidClosureError);
  assert.throws(() => nixeryLayers({ roots: [storePath('x')], paths: [] }, { budget: 5, popularity: new Map() }), InvalidClosureError);
});
