// The metrics of Nix's own runs (counted where Nix is started): a build through the registry on
// real Nix moves nixery_nix_invocations_total for each step, and a failed build
// nixery_nix_failures_total. (The registry's other metrics are in test/registry/metrics.test.ts.)

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { parsePrometheusText, sampleSum, type Family } from '../helpers/prometheus.js';

async function scrape(r: TestRegistry): Promise<Map<string, Family>> {
  const res = await fetch(`${r.url}/metrics`);
  assert.equal(res.status, 200);
  return parsePrometheusText(await res.text());
}

describe('metrics of Nix runs', () => {
  let r: TestRegistry;
  before(async () => {
    r = await startRegistry();
  });
  after(() => r.close());

  test('a build runs Nix to resolve, realise and read the closure', async () => {
    const before = await scrape(r);
    const res = await fetch(`${r.url}/v2/hello/manifests/latest`);
    assert.equal(res.status, 200, await res.clone().text());
    await res.arrayBuffer();
    const after = await scrape(r);
    for (const command of ['resolve', 'realise', 'closure']) {
      assert.ok(sampleSum(after, 'nixery_nix_invocations_total', { command }) - sampleSum(before, 'nixery_nix_invocations_total', { command }) >= 1, command);
    }
  });

  test('a failed build is counted as a Nix failure of its step', async () => {
    const before = await scrape(r);
    const res = await fetch(`${r.url}/v2/broken/manifests/latest`);
    assert.ok(res.status >= 500, `status ${res.status}`);
    await res.arrayBuffer();
    const after = await scrape(r);
    const labels = { command: 'realise', reason: 'exit' };
    assert.equal(sampleSum(after, 'nixery_nix_failures_total', labels) - sampleSum(before, 'nixery_nix_failures_total', labels), 1);
  });
});
