import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runLayersCommand, InvalidLayersRequestError } from '../../src/layers/command.js';
import { InvalidClosureError, InvalidLayerBudgetError } from '../../src/layers/closure.js';
import { ConfigError } from '../../src/errors.js';
import { makeGraph, storePath } from './graphs.js';

// The benchmark's request shape, built from a hand-made graph.
function request(budget?: number): string {
  const g = makeGraph(
    {
      app: { nar: 500, refs: ['lib', 'nss-cacert-3.9'] },
      lib: { nar: 300, refs: ['libc'] },
      libc: { nar: 1000 },
      'nss-cacert-3.9': { nar: 200 },
    },
    ['app', 'nss-cacert-3.9'],
  );
  // Nix lists self-references; the contract says to treat them as such.
  const entries = g.paths.map((p) => ({ ...p, references: p.path.endsWith('libc') ? [p.path] : p.references }));
  return JSON.stringify({
    graph: { graph: entries, exportReferencesGraph: { graph: [storePath('app'), storePath('nss-cacert-3.9'), storePath('app')] } },
    popularity: { 'libc': 500, 'lib': 1 },
    ...(budget === undefined ? {} : { budget }),
  });
}

test('runs a strategy on a request and prints the layers as JSON', () => {
  assert.deepEqual(JSON.parse(runLayersCommand(request(94), 'stable')), [
    [storePath('libc')],
    [storePath('app'), storePath('lib')], // lib has popularity 1: it travels with app
    [storePath('nss-cacert-3.9')],
  ]);
  assert.deepEqual(JSON.parse(runLayersCommand(request(2), 'stable')), [[storePath('libc')], [storePath('app'), storePath('lib'), storePath('nss-cacert-3.9')]]);
  // nixery: cacert forced popular, libc popular (≥ 100) → root edges.
  assert.deepEqual(JSON.parse(runLayersCommand(request(94), 'nixery')), [[storePath('nss-cacert-3.9')], [storePath('libc')], [storePath('app'), storePath('lib')]]);
});

test('budget: the override wins over the request, the default is 94', () => {
  assert.equal(JSON.parse(runLayersCommand(request(94), 'largest-first', 1)).length, 1);
  assert.equal(JSON.parse(runLayersCommand(request(), 'largest-first')).length, 4);
  assert.throws(() => runLayersCommand(request(200), 'stable'), InvalidLayerBudgetError);
  assert.throws(() => runLayersCommand(request(), 'stable', 0), InvalidLayerBudgetError);
});

test('bad requests are typed errors that say what is wrong', () => {
  const bad: Array<[string, RegExp]> = [
    ['{', /not JSON/],
    ['[]', /expected \{"graph"/],
    ['{"graph": {"graph": {}, "exportReferencesGraph": {"graph": []}}}', /graph\.graph must be an array/],
    ['{"graph": {"graph": [], "exportReferencesGraph": {"graph": [1]}}}', /exportReferencesGraph\.graph must be an array of strings/],
    ['{"graph": {"graph": [{"path": "/nix/store/x-a"}], "exportReferencesGraph": {"graph": []}}}', /narSize and closureSize must be numbers/],
    ['{"graph": {"graph": [], "exportReferencesGraph": {"graph": []}}, "popularity": {"a": -2}}', /non-negative integer/],
    ['{"graph": {"graph": [], "exportReferencesGraph": {"graph": []}}, "budget": "9"}', /budget must be a number/],
  ];
  for (const [json, why] of bad) assert.throws(() => runLayersCommand(json, 'stable'), (e: unknown) => e instanceof InvalidLayersRequestError && why.test(e.message), json);
  const dangling = JSON.stringify({ graph: { graph: [{ path: '/nix/store/x-a', narSize: 1, closureSize: 1, references: ['/nix/store/y-b'] }], exportReferencesGraph: { graph: ['/nix/store/x-a'] } } });
  assert.throws(() => runLayersCommand(dangling, 'stable'), InvalidClosureError);
  assert.throws(() => runLayersCommand(request(), 'no-such'), ConfigError);
});

test('`nixery layers`: stdin to stdout, one-line error and exit 1 on bad input', () => {
  const cli = fileURLToPath(new URL('../../src/cli.js', import.meta.url));
  const ok = spawnSync(process.execPath, [cli, 'layers', '--strategy', 'nixery'], { input: request(94), encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stdout, runLayersCommand(request(94), 'nixery') + '\n');
  const budget = spawnSync(process.execPath, [cli, 'layers', '--strategy', 'largest-first', '--budget', '1'], { input: request(94), encoding: 'utf8' });
  assert.equal(budget.status, 0, budget.stderr);
  assert.equal(JSON.parse(budget.stdout).length, 1);
  const bad = spawnSync(process.execPath, [cli, 'layers', '--strategy', 'stable'], { input: '{"graph": 1}', encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /invalid layers request: expected .*\n$/);
  assert.equal(bad.stderr.trimEnd().split('\n').length, 1, 'one line, no stack trace');
});
