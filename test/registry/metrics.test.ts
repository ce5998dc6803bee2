// /metrics as a Prometheus server reads it: the text format parsed strictly, every family with
// HELP and TYPE, the process defaults, and the registry's counters and histograms moving when
// a real image is built and pulled through the in-process registry (real Nix, real storage).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { parsePrometheusText, sampleSum, sampleValue, type Family } from '../helpers/prometheus.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';

async function scrape(r: TestRegistry): Promise<Map<string, Family>> {
  const res = await fetch(`${r.url}/metrics`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  return parsePrometheusText(await res.text());
}

const BUILD_PHASES = ['resolve', 'realise', 'closure', 'layers', 'pack', 'manifest'];

describe('/metrics', () => {
  let r: TestRegistry;
  before(async () => {
    r = await startRegistry();
  });
  after(() => r.close());

  test('the text format, with HELP and TYPE for every family and the process defaults', async () => {
    const families = await scrape(r);
    for (const family of families.values()) {
      assert.ok(family.help && family.help.length > 0, `${family.name} has a HELP line`);
      assert.notEqual(family.type, 'untyped', `${family.name} has a TYPE line`);
    }
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
      assert.ok(families.has(name), `process default ${name}`);
    }
    const types: Record<string, string> = {
      nixery_http_requests_total: 'counter',
      nixery_http_request_duration_seconds: 'histogram',
      nixery_build_duration_seconds: 'histogram',
      nixery_build_phase_duration_seconds: 'histogram',
      nixery_nix_invocations_total: 'counter',
      nixery_nix_failures_total: 'counter',
      nixery_layer_packed_bytes_total: 'counter',
      nixery_layer_pack_duration_seconds: 'histogram',
      nixery_layer_pack_throughput_bytes_per_second: 'histogram',
      nixery_manifest_cache_hits_total: 'counter',
      nixery_manifest_cache_misses_total: 'counter',
      nixery_blob_cache_hits_total: 'counter',
      nixery_blob_cache_misses_total: 'counter',
      nixery_storage_operation_duration_seconds: 'histogram',
      nixery_storage_errors_total: 'counter',
      nixery_builds_queued: 'gauge',
      nixery_builds_running: 'gauge',
      nixery_builds_rejected_total: 'counter',
      nixery_auth_unauthorized_total: 'counter',
      nixery_source_look_last_seconds: 'gauge',
    };
    for (const [name, type] of Object.entries(types)) assert.equal(families.get(name)?.type, type, name);
    // Every phase is there from the start, at zero.
    for (const phase of BUILD_PHASES) assert.equal(sampleValue(families, 'nixery_build_phase_duration_seconds_count', { phase }), 0);
  });

  test('a build through the registry moves the histograms and counters, with no image name or digest in a label', async () => {
    const before = await scrape(r);
    const res = await fetch(`${r.url}/v2/hello/manifests/latest`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
    assert.equal(res.status, 200, await res.clone().text());
    const manifest = (await res.json()) as { config: { digest: string }; layers: Array<{ digest: string }> };
    const again = await fetch(`${r.url}/v2/hello/manifests/latest`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
    assert.equal(again.status, 200);
    await again.arrayBuffer();
    const blob = await fetch(`${r.url}/v2/hello/blobs/${manifest.layers[0]!.digest}`);
    assert.equal(blob.status, 200);
    await blob.arrayBuffer();
    const missing = await fetch(`${r.url}/v2/hello/blobs/sha256:${'0'.repeat(64)}`);
    assert.equal(missing.status, 404);
    await missing.arrayBuffer();
    const nowhere = await fetch(`${r.url}/no/such/endpoint`);
    assert.equal(nowhere.status, 404);
    await nowhere.arrayBuffer();
    const after = await scrape(r);
    const moved = (name: string, labels: Record<string, string> = {}) => sampleSum(after, name, labels) - sampleSum(before, name, labels);

    // Build duration and every phase, observed once more, with time spent.
    assert.equal(moved('nixery_build_duration_seconds_count', { outcome: 'succeeded' }), 1);
    assert.ok(moved('nixery_build_duration_seconds_sum', { outcome: 'succeeded' }) > 0);
    for (const phase of BUILD_PHASES) {
      assert.equal(moved('nixery_build_phase_duration_seconds_count', { phase }), 1, phase);
      assert.ok(moved('nixery_build_phase_duration_seconds_sum', { phase }) > 0, phase);
      assert.equal(moved('nixery_build_phase_duration_seconds_bucket', { phase, le: '+Inf' }), 1, phase);
    }
    const phaseTime = BUILD_PHASES.reduce((sum, phase) => sum + moved('nixery_build_phase_duration_seconds_sum', { phase }), 0);
    const buildTime = moved('nixery_build_duration_seconds_sum', { outcome: 'succeeded' });
    assert.ok(phaseTime <= buildTime + 1e-6 && phaseTime > buildTime * 0.9, `phases ${phaseTime} s of a ${buildTime} s build`);

    // Requests by route, method and status, and their latency by route.
    assert.equal(moved('nixery_http_requests_total', { route: 'manifest', method: 'GET', status: '200' }), 2);
    assert.equal(moved('nixery_http_requests_total', { route: 'blob', method: 'GET', status: '200' }), 1);
    assert.equal(moved('nixery_http_requests_total', { route: 'blob', method: 'GET', status: '404' }), 1);
    assert.equal(moved('nixery_http_requests_total', { route: 'none', method: 'GET', status: '404' }), 1);
    assert.equal(moved('nixery_http_request_duration_seconds_count', { route: 'manifest' }), 2);
    assert.ok(moved('nixery_http_request_duration_seconds_sum', { route: 'manifest' }) >= buildTime, 'the first pull waited for the build');
    assert.equal(moved('nixery_http_request_duration_seconds_count', { route: 'blob' }), 2);
    assert.equal(moved('nixery_http_errors_total'), 2);

    // Nix ran: resolve, realise, closure; the layers were packed into storage.
    for (const command of ['resolve', 'realise', 'closure']) assert.ok(moved('nixery_nix_invocations_total', { command }) >= 1, command);
    const packed = moved('nixery_layers_packed_total');
    assert.ok(packed >= 2, `${packed} layers packed`);
    assert.equal(moved('nixery_layer_pack_duration_seconds_count'), packed);
    assert.equal(moved('nixery_layer_pack_throughput_bytes_per_second_count'), packed);
    assert.ok(moved('nixery_layer_packed_bytes_total', { form: 'compressed' }) > 0);
    assert.ok(moved('nixery_layer_packed_bytes_total', { form: 'uncompressed' }) > moved('nixery_layer_packed_bytes_total', { form: 'compressed' }));

    // The second pull came from the registry's memo; the build's lookup was a miss.
    assert.equal(moved('nixery_manifest_cache_hits_total', { tier: 'memo' }), 1);
    assert.ok(moved('nixery_manifest_cache_misses_total') >= 1);
    assert.equal(moved('nixery_image_builds_total'), 1);
    assert.equal(moved('nixery_blob_cache_misses_total'), 2, 'the layer and the missing blob');

    // Storage was used and timed, by backend and operation.
    for (const operation of ['put', 'stat', 'writer', 'commit', 'move']) {
      assert.ok(moved('nixery_storage_operation_duration_seconds_count', { backend: 'filesystem', operation }) >= 1, operation);
    }

    // Bounded labels: no image name, tag or digest anywhere.
    const digests = [manifest.config.digest, ...manifest.layers.map((l) => l.digest)].map((d) => d.slice(7, 19));
    for (const family of after.values()) {
      for (const s of family.samples) {
        for (const [label, value] of Object.entries(s.labels)) {
          assert.ok(!/hello|latest|sha256/.test(value), `${s.name}{${label}="${value}"}`);
          assert.ok(!digests.some((d) => value.includes(d)), `${s.name}{${label}="${value}"}`);
        }
      }
    }
  });

  test('a failed build is counted by outcome and Nix failure', async () => {
    const before = await scrape(r);
    const res = await fetch(`${r.url}/v2/broken/manifests/latest`);
    assert.ok(res.status >= 500, `status ${res.status}`);
    await res.arrayBuffer();
    const after = await scrape(r);
    const moved = (name: string, labels: Record<string, string> = {}) => sampleSum(after, name, labels) - sampleSum(before, name, labels);
    assert.equal(moved('nixery_build_duration_seconds_count', { outcome: 'failed' }), 1);
    assert.equal(moved('nixery_build_phase_duration_seconds_count', { phase: 'realise' }), 1, 'the phase that failed is timed too');
    assert.equal(moved('nixery_build_phase_duration_seconds_count', { phase: 'pack' }), 0);
    assert.equal(moved('nixery_nix_failures_total', { command: 'realise', reason: 'exit' }), 1);
    assert.equal(moved('nixery_image_build_failures_total'), 1);
    assert.equal(moved('nixery_http_requests_total', { route: 'manifest', method: 'GET', status: String(res.status) }), 1);
  });
});

describe('the strict exposition parser (test helper)', () => {
  const good = [
    '# HELP a_total A counter.',
    '# TYPE a_total counter',
    'a_total{x="1",y="q\\"uote"} 3',
    '# TYPE h histogram',
    'h_bucket{le="0.5"} 1',
    'h_bucket{le="+Inf"} 2',
    'h_sum 0.75',
    'h_count 2',
    '',
  ].join('\n');

  test('reads a valid exposition', () => {
    const families = parsePrometheusText(good);
    assert.equal(sampleValue(families, 'a_total', { y: 'q"uote' }), 3);
    assert.equal(families.get('h')?.samples.length, 4);
  });

  test('rejects what Prometheus would not read', () => {
    const bad: Array<[string, string]> = [
      [good.replace('h_bucket{le="+Inf"} 2', 'h_bucket{le="+Inf"} 0'), 'buckets not cumulative'],
      [good.replace('h_bucket{le="+Inf"} 2\n', ''), 'no +Inf bucket'],
      [good.replace('h_count 2', 'h_count 3'), '+Inf bucket 2 is not _count 3'],
      [good.replace('# TYPE a_total counter\na_total{x="1",y="q\\"uote"} 3', 'a_total 3\n# TYPE a_total counter'), 'TYPE of a_total after its samples'],
      [`${good}a_total 4\n`, 'not contiguous'],
      [good.replace('a_total{x="1"', 'a_total{x=1'), 'invalid label'],
      [good.replace('h_sum 0.75', 'h_sum zero'), 'invalid value'],
      [good.replace('a_total{x="1",y="q\\"uote"} 3', 'a_total{x="1"} 3\na_total{x="1"} 4'), 'twice'],
      [good.slice(0, -1), 'end with a newline'],
    ];
    for (const [text, message] of bad) assert.throws(() => parsePrometheusText(text), new RegExp(message.replace(/[+]/g, '\\+')), message);
  });
});
