// `npm run bench:layering`: the shared layering benchmark (../shared/layering-bench) with each
// of our strategies plugged in through the layers command, beside the built-in algorithms; then
// the same metric, in process, on workloads the benchmark does not have (other image mixes on
// the same graph, and synthetic package sets with and without popularity data), so a strategy
// tuned to one workload shows it.
//   node dist/bench/layering.js [--budgets 20,60,94] [--strategies stable,nixery,largest-first] [--quick] [--clairvoyant]
// --clairvoyant adds, per budget, what a layout knowing all the workload's images in advance
// would download on the Debian workload (a bound for any strategy; a few seconds).

import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { STRATEGY_NAMES, getStrategy } from '../src/layers/strategies.js';
import { clairvoyantBytes, evaluate, idealBytes, loadBenchWorkload, remixWorkload, syntheticWorkload, type Workload } from './layering-lib.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const benchDir = path.resolve(root, '../shared/layering-bench');
// The CLI runs from a snapshot of dist/: other builds of the checkout may rewrite dist/ during
// the ~3 minutes of external runs, and a half-written module would mark a row INVALID.
const snapshot = mkdtempSync(path.join(os.tmpdir(), 'bench-layering-'));
process.on('exit', () => rmSync(snapshot, { recursive: true, force: true }));
cpSync(path.join(root, 'dist'), path.join(snapshot, 'dist'), { recursive: true });
cpSync(path.join(root, 'package.json'), path.join(snapshot, 'package.json')); // "type": "module"
symlinkSync(path.join(root, 'node_modules'), path.join(snapshot, 'node_modules'));
const cliJs = path.join(snapshot, 'dist/src/cli.js');

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}
const budgets = option('--budgets', '20,60,94');
const strategies = option('--strategies', STRATEGY_NAMES.join(',')).split(',');
const quick = process.argv.includes('--quick'); // skip the external runs (the slow part)

if (!existsSync(path.join(benchDir, 'layering.py'))) {
  console.error(`layering benchmark not found at ${benchDir}`);
  process.exit(1);
}

let failed = false;
if (!quick) {
  const header: string[] = [];
  const rows: Array<{ budget: number; order: number; line: string }> = [];
  strategies.forEach((name, k) => {
    const args = [path.join(benchDir, 'layering.py'), '--data', benchDir, '--budgets', budgets,
      '--algo', k === 0 ? 'all,external' : 'external', '--name', `ours: ${name}`,
      '--cmd', `${JSON.stringify(process.execPath)} ${JSON.stringify(cliJs)} layers --strategy ${name}`];
    console.error(`running: python3 ${args.map((a) => (/[\s"]/.test(a) ? `'${a}'` : a)).join(' ')}`);
    const run = spawnSync('python3', args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    if (run.status !== 0) {
      failed = true;
      console.error(run.stderr.trim());
    }
    for (const line of run.stdout.split('\n')) {
      if (/^\| budget|^\|---/.test(line)) {
        if (header.length < 2) header.push(line);
      } else if (/^\| \d+ \|/.test(line)) {
        rows.push({ budget: Number(line.split('|')[1]), order: rows.length, line });
      }
    }
  });
  rows.sort((a, b) => a.budget - b.budget || a.order - b.order);
  console.log(`Shared benchmark (${benchDir}):\n`);
  console.log([...header, ...rows.map((r) => r.line)].join('\n'));
  console.log();
}

// In-process: the same metric on other workloads.
const debian = loadBenchWorkload(benchDir, 'debian (benchmark)');
const workloads: Workload[] = [
  debian,
  remixWorkload(debian, 60, 1),
  remixWorkload(debian, 60, 2),
  syntheticWorkload(1),
  syntheticWorkload(2, { popularity: false }),
];
const names = [...new Set([...strategies, 'nixery', 'largest-first'])];
console.log('Other workloads, in process (ratio to one layer per path; ! = over budget or invalid):\n');
console.log(`| workload | budget | ${names.join(' | ')} | ms/image (${names[0]}) |`);
console.log(`|---|---:|${names.map(() => '---:|').join('')}---:|`);
for (const w of workloads) {
  const ideal = idealBytes(w);
  for (const b of budgets.split(',').map(Number)) {
    const results = names.map((n) => evaluate(w, getStrategy(n), b, ideal));
    for (const r of results) if (r.overBudget || r.invalid) failed = true;
    const cells = results.map((r) => `${r.ratio.toFixed(3)}×${r.overBudget || r.invalid ? '!' : ''}`);
    console.log(`| ${w.name} | ${b} | ${cells.join(' | ')} | ${results[0]!.msPerImage.toFixed(2)} |`);
  }
}
// Robustness: ten more image mixes on the same graph, at more budgets, the first strategy
// against largest-first (a strategy tuned to the benchmark's mix would lose some of these).
{
  const first = getStrategy(names[0]!);
  const baseline = getStrategy('largest-first');
  const tally = { better: 0, equal: 0, worse: 0, worstDelta: 0 };
  const moreBudgets = [10, 20, 30, 60, 94];
  for (let seed = 3; seed <= 12; seed++) {
    const w = remixWorkload(debian, 60, seed);
    const ideal = idealBytes(w);
    for (const b of moreBudgets) {
      const ours = evaluate(w, first, b, ideal);
      const base = evaluate(w, baseline, b, ideal);
      if (ours.overBudget || ours.invalid) failed = true;
      const delta = ours.ratio - base.ratio;
      if (delta < -1e-9) tally.better++;
      else if (delta > 1e-9) tally.worse++;
      else tally.equal++;
      tally.worstDelta = Math.max(tally.worstDelta, delta);
    }
  }
  console.log(`\n${names[0]} against largest-first on remixes 3–12 at budgets ${moreBudgets.join(', ')}: ` +
    `better in ${tally.better}, equal in ${tally.equal}, worse in ${tally.worse} of ${10 * moreBudgets.length}` +
    (tally.worse > 0 ? ` (at most +${tally.worstDelta.toFixed(4)})` : ''));
}
if (process.argv.includes('--clairvoyant')) {
  console.log('\nClairvoyant bound on the Debian workload (knows every image in advance; not a strategy):\n');
  const ideal = idealBytes(debian);
  for (const b of budgets.split(',').map(Number)) console.log(`budget ${b}: ${(clairvoyantBytes(debian, b) / ideal).toFixed(3)}×`);
}
process.exitCode = failed ? 1 : 0;
