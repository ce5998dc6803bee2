// `npm run bench:search`: can a search stall serving? On a generated nixpkgs-shaped index of
// BENCH_PACKAGES packages (default 100000; in memory, no Nix), the latency of one long query
// and the event loop's lag while BENCH_CLIENTS clients (default 8) search in a loop for
// BENCH_SECONDS (default 3): a 5 ms timer stands in for /healthz.
//
//   BENCH_QUERY_WORDS  words in the long query (default: the most a search accepts)

import { performance } from 'node:perf_hooks';
import * as packageIndex from '../src/builder/package-index.js';
import { SearchIndex } from '../src/builder/package-index.js';
import { generatedPackages, longQuery } from '../test/helpers/generated-packages.js';

const N = Number(process.env.BENCH_PACKAGES ?? 100_000);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 8);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
// Before search had a bound, the attack used 100 words.
const WORDS_IN_QUERY = Number(process.env.BENCH_QUERY_WORDS ?? (packageIndex as { MAX_QUERY_WORDS?: number }).MAX_QUERY_WORDS ?? 100);

async function main(): Promise<void> {
  const index = new SearchIndex('bench', generatedPackages(N));
  // The last word makes each query unique.
  const q = longQuery(WORDS_IN_QUERY - 1);
  // Warm up, then one query alone.
  await index.search(q, 50);
  const single: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    await index.search(`${q} ${i}`, 50);
    single.push(performance.now() - t);
  }
  single.sort((a, b) => a - b);

  const lags: number[] = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    lags.push(now - last - 5);
    last = now;
  }, 5);
  const until = performance.now() + SECONDS * 1000;
  let searches = 0;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      let k = 0;
      while (performance.now() < until) {
        // A different query each time: no cache helps.
        await index.search(`${q} ${c}${k++}`.trim(), 50);
        searches++;
        await new Promise((resolve) => setImmediate(resolve));
      }
    }),
  );
  clearInterval(timer);
  lags.sort((a, b) => a - b);
  const p = (xs: number[], f: number) => Math.round(xs[Math.min(xs.length - 1, Math.floor(xs.length * f))]! * 10) / 10;
  console.log(
    JSON.stringify({
      packages: N,
      queryWords: WORDS_IN_QUERY,
      singleQueryMedianMs: p(single, 0.5),
      clients: CLIENTS,
      searchesPerSecond: Math.round(searches / SECONDS),
      timerLagP50Ms: p(lags, 0.5),
      timerLagP99Ms: p(lags, 0.99),
      timerLagMaxMs: p(lags, 1),
    }),
  );
}

if (process.argv[1]?.endsWith('search.js')) await main();
