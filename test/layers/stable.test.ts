import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stableLayers } from '../../src/layers/stable.js';
import { nixeryLayers } from '../../src/layers/nixery.js';
import { getStrategy, STRATEGY_NAMES, DEFAULT_STRATEGY } from '../../src/layers/strategies.js';
import { ConfigError } from '../../src/errors.js';
import type { LayerGroup } from '../../src/layers/types.js';
import { makeGraph, names, randomGraph, shuffledGraph, storePath, violation, type NodeSpec } from './graphs.js';

const MB = 1_000_000;

// Two images that share a Python runtime (with its private libpython, referred to by nothing
// else in the package set) and differ in everything else; both are over the budget.
function twoImages(): { a: ReturnType<typeof makeGraph>; b: ReturnType<typeof makeGraph> } {
  const nodes: Record<string, NodeSpec> = {
    python: { nar: 40 * MB, refs: ['libpython', 'libc'] }, // closure 90 MB: below Nixery's 100 MB
    libpython: { nar: 20 * MB, refs: ['libc'] },
    libc: { nar: 30 * MB },
    app1: { nar: 1 * MB, refs: ['python', ...Array.from({ length: 10 }, (_, i) => `a${i}`)] },
    app2: { nar: 2 * MB, refs: ['python', 'libc', ...Array.from({ length: 8 }, (_, i) => `b${i}`)] },
  };
  for (let i = 0; i < 10; i++) nodes[`a${i}`] = { nar: 10_000 + i, refs: ['libc'] };
  for (let i = 0; i < 8; i++) nodes[`b${i}`] = { nar: 20_000 + i };
  return { a: makeGraph(nodes, ['app1']), b: makeGraph(nodes, ['app2']) };
}
const popularity = new Map([
  ['libpython', 1], // only python refers to it, anywhere
  ['python', 40],
  ['libc', 9000],
]);

function layerOf(groups: LayerGroup[], path: string): string[] {
  return groups.find((g) => g.paths.includes(path))!.paths;
}

test('a shared runtime gets the identical layer in two images that differ elsewhere', () => {
  const { a, b } = twoImages();
  for (const budget of [4, 5, 8]) {
    const la = stableLayers(a, { budget, popularity });
    const lb = stableLayers(b, { budget, popularity });
    assert.equal(violation(a, la, budget), null);
    assert.equal(violation(b, lb, budget), null);
    // python and its private libpython travel together; libc is its own layer.
    assert.deepEqual(layerOf(la, storePath('python')), [storePath('libpython'), storePath('python')].sort());
    assert.deepEqual(layerOf(la, storePath('python')), layerOf(lb, storePath('python')));
    assert.deepEqual(layerOf(la, storePath('libc')), [storePath('libc')]);
    assert.deepEqual(layerOf(lb, storePath('libc')), [storePath('libc')]);
  }
  // Nixery's dominator layers differ between the two images for the same runtime: the reason
  // for the new default.
  const na = nixeryLayers(a, { budget: 5, popularity });
  const nb = nixeryLayers(b, { budget: 5, popularity });
  assert.notDeepEqual(layerOf(na, storePath('python')), layerOf(nb, storePath('python')));
});

test('without popularity data a big runtime is a layer of its own in every image', () => {
  const { a, b } = twoImages();
  const la = stableLayers(a, { budget: 5, popularity: new Map() });
  const lb = stableLayers(b, { budget: 5, popularity: new Map() });
  for (const runtime of ['python', 'libpython', 'libc']) {
    assert.deepEqual(layerOf(la, storePath(runtime)), [storePath(runtime)]);
    assert.deepEqual(layerOf(lb, storePath(runtime)), [storePath(runtime)]);
  }
});

test('an image within the budget gets one layer per unit; the remainder shares the last layer', () => {
  const { a } = twoImages(); // 15 paths
  const within = stableLayers(a, { budget: 94, popularity });
  assert.equal(within.length, 13); // 14 paths, libpython joined python
  assert.ok(within.every((g) => g.paths.length === 1 || g.paths.includes(storePath('python'))));
  const tight = stableLayers(a, { budget: 4, popularity });
  assert.deepEqual(names(tight), [
    ['libpython', 'python'], // 60 MB
    ['libc'], // 30 MB
    ['app1'], // 1 MB
    ['a0', 'a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7', 'a8', 'a9'], // the remainder, rating 0, last
  ]);
  assert.deepEqual(tight.map((g) => g.rating), [60_000_000n, 30_000_000n, 1_000_000n, 0n]);
});

test('contraction follows chains and needs the referrer in the image', () => {
  const g = makeGraph({ top: { nar: 5, refs: ['mid'] }, mid: { nar: 3, refs: ['leaf'] }, leaf: { nar: 1 } }, ['top']);
  const pop = new Map([['mid', 1], ['leaf', 1]]);
  assert.deepEqual(names(stableLayers(g, { budget: 3, popularity: pop })), [['leaf', 'mid', 'top']]);
  // `mid` requested on its own: its referrer is absent, so it heads its own unit.
  const alone = makeGraph({ mid: { nar: 3, refs: ['leaf'] }, leaf: { nar: 1 } }, ['mid']);
  assert.deepEqual(names(stableLayers(alone, { budget: 3, popularity: pop })), [['leaf', 'mid']]);
  // Popularity 1 but two referrers in this image (stale data): not contracted.
  const two = makeGraph({ x: { nar: 5, refs: ['leaf'] }, y: { nar: 4, refs: ['leaf'] }, leaf: { nar: 1 } }, ['x', 'y']);
  assert.deepEqual(names(stableLayers(two, { budget: 3, popularity: pop })), [['x'], ['y'], ['leaf']]);
});

// Two images on the same Perl base (libc and perl are popular: the core), each with its own
// application and small private files; both are over the budget.
function perlImages(): { a: ReturnType<typeof makeGraph>; b: ReturnType<typeof makeGraph> } {
  const nodes: Record<string, NodeSpec> = {
    libc: { nar: 10 * MB },
    perl: { nar: 8 * MB, refs: ['libdb', 'libgdbm', 'zlib', 'libc'] },
    libdb: { nar: 300_000, refs: ['libc'] },
    libgdbm: { nar: 200_000, refs: ['libc'] },
    zlib: { nar: 100_000, refs: ['libc'] },
    app1: { nar: 5 * MB, refs: ['perl', ...Array.from({ length: 6 }, (_, i) => `a${i}`)] },
    app2: { nar: 6 * MB, refs: ['perl', 'zlib', ...Array.from({ length: 8 }, (_, i) => `b${i}`)] },
  };
  for (let i = 0; i < 6; i++) nodes[`a${i}`] = { nar: 100_000 + i };
  for (let i = 0; i < 8; i++) nodes[`b${i}`] = { nar: 100_000 + i, refs: ['libc'] };
  return { a: makeGraph(nodes, ['app1']), b: makeGraph(nodes, ['app2']) };
}
const perlPopularity = new Map([['libc', 1000], ['perl', 500], ['zlib', 90], ['libdb', 50], ['libgdbm', 20]]);

test('at a tight budget the small core libraries share one layer that recurs across images', () => {
  const { a, b } = perlImages();
  const la = stableLayers(a, { budget: 5, popularity: perlPopularity });
  const lb = stableLayers(b, { budget: 5, popularity: perlPopularity });
  assert.equal(violation(a, la, 5), null);
  assert.equal(violation(b, lb, 5), null);
  const core = ['libdb', 'libgdbm', 'zlib'].map(storePath).sort();
  assert.deepEqual(layerOf(la, storePath('libdb')), core);
  assert.deepEqual(layerOf(lb, storePath('libdb')), core);
  // The big paths keep layers of their own; the image-specific small files share the last one.
  assert.deepEqual(names(la), [['libc'], ['perl'], ['app1'], ['libdb', 'libgdbm', 'zlib'], ['a0', 'a1', 'a2', 'a3', 'a4', 'a5']]);
  assert.deepEqual(layerOf(lb, storePath('b0')), Array.from({ length: 8 }, (_, i) => storePath(`b${i}`)));
  // largest-first mixes the core libraries into each image's own remainder: no layer recurs.
  const fa = getStrategy('largest-first').group(a, { budget: 5, popularity: perlPopularity });
  const fb = getStrategy('largest-first').group(b, { budget: 5, popularity: perlPopularity });
  assert.notDeepEqual(layerOf(fa, storePath('libgdbm')), layerOf(fb, storePath('libgdbm')));
});

test('the core split needs popularity data and must be worth the singleton it costs', () => {
  const { a } = perlImages();
  const largestFirst = getStrategy('largest-first');
  // Layouts as sets of layers (the two strategies rate the remainder differently).
  const layout = (groups: LayerGroup[]) => groups.map((g) => g.paths.join(' ')).sort();
  // No popularity data: one remainder, exactly largest-first's layout.
  assert.deepEqual(layout(stableLayers(a, { budget: 5, popularity: new Map() })), layout(largestFirst.group(a, { budget: 5, popularity: new Map() })));
  // Budget 11 of 12 paths: the remainder is two small paths, not worth a split.
  const loose = stableLayers(a, { budget: 11, popularity: perlPopularity });
  assert.equal(violation(a, loose, 11), null);
  assert.deepEqual(layout(loose), layout(largestFirst.group(a, { budget: 11, popularity: perlPopularity })));
  // Budget 2: no room for a singleton and two parts; one remainder.
  assert.equal(stableLayers(a, { budget: 2, popularity: perlPopularity }).length, 2);
});

// A Python runtime (popular: a runtime) with many small libraries of its own, zlib (nearly as
// popular as Python: not part of its region), and libc, the most popular path of the set.
// Perl, a less popular runtime, shares libdb with Python.
function runtimeNodes(): Record<string, NodeSpec> {
  const py = Array.from({ length: 12 }, (_, i) => `py${i}`);
  const pl = Array.from({ length: 6 }, (_, i) => `pl${i}`);
  const nodes: Record<string, NodeSpec> = {
    libc: { nar: 10 * MB },
    zlib: { nar: 150_000, refs: ['libc'] },
    libdb: { nar: 400_000, refs: ['libc'] },
    python: { nar: 5 * MB, refs: ['libc', 'zlib', 'libdb', ...py] },
    perl: { nar: 4 * MB, refs: ['libc', 'libdb', ...pl] },
    app1: { nar: 3 * MB, refs: ['python', ...Array.from({ length: 6 }, (_, i) => `a${i}`)] },
    app2: { nar: 2 * MB, refs: ['python', 'zlib', ...Array.from({ length: 8 }, (_, i) => `b${i}`)] },
    app3: { nar: 1 * MB, refs: ['python', 'perl'] },
  };
  py.forEach((name, i) => (nodes[name] = { nar: 100_000 + 10_000 * i, refs: ['libc'] }));
  pl.forEach((name, i) => (nodes[name] = { nar: 50_000 + i }));
  for (let i = 0; i < 6; i++) nodes[`a${i}`] = { nar: 20_000 + i };
  for (let i = 0; i < 8; i++) nodes[`b${i}`] = { nar: 30_000 + i };
  return nodes;
}
const runtimePopularity = new Map<string, number>([
  ['libc', 1000],
  ['python', 400], // ≥ 1000 / 8: a runtime
  ['perl', 300],
  ['zlib', 200], // ≥ 400 / 8: serves far more than Python, stays out of its region
  ['libdb', 20],
  ...Array.from({ length: 12 }, (_, i) => [`py${i}`, 3] as [string, number]),
  ...Array.from({ length: 6 }, (_, i) => [`pl${i}`, 2] as [string, number]),
]);
const pythonRegion = ['python', 'libdb', ...Array.from({ length: 12 }, (_, i) => `py${i}`)].map(storePath).sort();

test('a runtime region with at least budget units becomes one layer, identical in every image', () => {
  const nodes = runtimeNodes();
  const [a, b] = [makeGraph(nodes, ['app1']), makeGraph(nodes, ['app2'])];
  // Python's region has 14 units (python, libdb, py0..py11); at budget 10 they can never all
  // get layers of their own, so they share one, the same in both images.
  const la = stableLayers(a, { budget: 10, popularity: runtimePopularity });
  const lb = stableLayers(b, { budget: 10, popularity: runtimePopularity });
  assert.equal(violation(a, la, 10), null);
  assert.equal(violation(b, lb, 10), null);
  assert.deepEqual(layerOf(la, storePath('py0')), pythonRegion);
  assert.deepEqual(layerOf(lb, storePath('py0')), pythonRegion);
  for (const own of ['libc', 'zlib']) assert.deepEqual(layerOf(lb, storePath(own)), [storePath(own)]);
  // largest-first scatters Python's small libraries through each image's remainder.
  const fa = getStrategy('largest-first').group(a, { budget: 10, popularity: runtimePopularity });
  const fb = getStrategy('largest-first').group(b, { budget: 10, popularity: runtimePopularity });
  assert.notDeepEqual(layerOf(fa, storePath('py0')), layerOf(fb, storePath('py0')));
  // At budget 20 the region is smaller than the budget: its units keep their own layers.
  const loose = stableLayers(a, { budget: 20, popularity: runtimePopularity });
  assert.equal(violation(a, loose, 20), null);
  assert.deepEqual(layerOf(loose, storePath('python')), [storePath('python')]);
  // Without popularity data there are no runtimes.
  assert.deepEqual(layerOf(stableLayers(a, { budget: 10, popularity: new Map() }), storePath('python')), [storePath('python')]);
});

test('where two runtime regions overlap, the more popular runtime keeps the shared path', () => {
  const g = makeGraph(runtimeNodes(), ['app3']);
  const layers = stableLayers(g, { budget: 6, popularity: runtimePopularity });
  assert.equal(violation(g, layers, 6), null);
  // Perl's region (perl, pl0..pl5: 7 units ≥ 6) is a layer too, without libdb.
  assert.deepEqual(layerOf(layers, storePath('libdb')), pythonRegion);
  assert.deepEqual(layerOf(layers, storePath('perl')), ['perl', ...Array.from({ length: 6 }, (_, i) => `pl${i}`)].map(storePath).sort());
});

test('a private dependency bigger than its only referrer keeps its own unit', () => {
  const nodes: Record<string, NodeSpec> = { wrapper: { nar: 1 * MB, refs: ['big', 'small'] }, big: { nar: 50 * MB }, small: { nar: 10_000 } };
  const g = makeGraph(nodes, ['wrapper']);
  const pop = new Map([['big', 1], ['small', 1]]);
  // `big` may be requested on its own elsewhere: contracting it into `wrapper` would duplicate it.
  assert.deepEqual(names(stableLayers(g, { budget: 94, popularity: pop })), [['big'], ['small', 'wrapper']]);
});

for (const name of STRATEGY_NAMES) {
  test(`${name}: budget kept, every path in exactly one layer, deterministic, on closures past 125 paths`, () => {
    for (const [n, seed] of [[30, 11], [130, 12], [500, 13]] as const) {
      const g = randomGraph(n, seed);
      // Popularity: the real fan-in for a third of the paths, so contraction happens too.
      const pop = new Map<string, number>();
      const fanIn = new Map<string, number>();
      g.paths.forEach((p) => p.references.forEach((r) => fanIn.set(r, (fanIn.get(r) ?? 0) + 1)));
      g.paths.forEach((p, i) => {
        if (i % 3 === 0) pop.set(p.path.slice(44), fanIn.get(p.path) ?? 0);
      });
      for (const budget of [1, 2, 20, 94, 125]) {
        const strategy = getStrategy(name);
        const layers = strategy.group(g, { budget, popularity: pop });
        assert.equal(violation(g, layers, budget), null, `n=${n} budget=${budget}`);
        assert.deepEqual(strategy.group(g, { budget, popularity: pop }), layers, 'repeated run');
        assert.deepEqual(strategy.group(shuffledGraph(g, n + budget), { budget, popularity: pop }), layers, 'shuffled input');
        // Order contract: descending rating, ties by first path.
        for (let i = 1; i < layers.length; i++) {
          const [x, y] = [layers[i - 1]!, layers[i]!];
          assert.ok(x.rating > y.rating || (x.rating === y.rating && x.paths[0]! < y.paths[0]!), `order at ${i}`);
        }
      }
    }
  });
}

test('stable lays out a 500-path closure well under 100 ms', () => {
  const g = randomGraph(500, 99);
  const pop = new Map(g.paths.map((p) => [p.path.slice(44), 1 + (p.narSize % 3)]));
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    stableLayers(g, { budget: 94, popularity: pop });
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  assert.ok(times[3]! < 100, `median ${times[3]!.toFixed(1)} ms`);
});

test('registry: stable is the default, nixery and largest-first are selectable, unknown names are a ConfigError', () => {
  assert.equal(DEFAULT_STRATEGY, 'stable');
  assert.deepEqual([...STRATEGY_NAMES].sort(), ['largest-first', 'nixery', 'stable']);
  for (const n of STRATEGY_NAMES) assert.equal(getStrategy(n).name, n);
  assert.throws(() => getStrategy('dominator'), (err: unknown) => err instanceof ConfigError && /choose one of stable, nixery, largest-first/.test(err.message));
});
