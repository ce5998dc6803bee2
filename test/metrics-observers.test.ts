// The metrics hear only what the parts report through the observers they own (builder, pins,
// blob policy, storage, HTTP) and the readings the composition root hands over: each report
// shows in the exposition under its name, as the strict parser reads it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Metrics, type MetricReadings } from '../src/metrics/metrics.js';
import { StorageObjectNotFoundError } from '../src/storage/errors.js';
import { parsePrometheusText, sampleValue, type Family } from './helpers/prometheus.js';

async function scrape(metrics: Metrics): Promise<Map<string, Family>> {
  return parsePrometheusText((await metrics.expose()).body);
}

test('builder, pins, blob policy, storage and HTTP reports reach the exposition', async () => {
  const metrics = new Metrics();
  const b = metrics.builds;
  b.buildStarted();
  b.manifestLookup('miss');
  b.manifestLookup('memory');
  b.manifestLookup('storage');
  b.manifestLookup('storage');
  b.phase('realise', 2);
  b.build('succeeded', 3);
  b.layerPacked({ compressedBytes: 100, uncompressedBytes: 400, seconds: 0.5 });

  metrics.pins.looked(0.25);
  metrics.pins.hashed(1000);
  metrics.pins.lookFailed(true);

  metrics.blobs.hotLookup(true);
  metrics.blobs.hotLookup(false);
  metrics.blobs.hotLookup(false);
  metrics.blobs.sendStalled();
  metrics.blobs.repairStarted();
  let held = 10;
  metrics.blobs.memory(() => ({ hotCacheBytes: held, bufferedBytes: 7 }));

  const storage = metrics.storage('filesystem');
  storage.operation('stat', 0.001, undefined);
  storage.operation('get', 0.002, new StorageObjectNotFoundError('blobs/x'));

  metrics.request('manifest', 'GET', 200, 0.01);
  metrics.request('blob', 'BREW', 404, 0.02);
  metrics.protocolError(431);

  let f = await scrape(metrics);
  assert.equal(sampleValue(f, 'nixery_image_builds_total'), 1);
  assert.equal(sampleValue(f, 'nixery_manifest_cache_misses_total'), 1);
  assert.equal(sampleValue(f, 'nixery_manifest_cache_hits_total', { tier: 'memory' }), 1);
  assert.equal(sampleValue(f, 'nixery_manifest_cache_hits_total', { tier: 'storage' }), 2);
  assert.equal(sampleValue(f, 'nixery_build_phase_duration_seconds_count', { phase: 'realise' }), 1);
  assert.equal(sampleValue(f, 'nixery_build_duration_seconds_sum', { outcome: 'succeeded' }), 3);
  assert.equal(sampleValue(f, 'nixery_layers_packed_total'), 1);
  assert.equal(sampleValue(f, 'nixery_layer_packed_bytes_total', { form: 'uncompressed' }), 400);
  assert.equal(sampleValue(f, 'nixery_source_looks_total'), 1);
  assert.equal(sampleValue(f, 'nixery_source_look_failures_total'), 1);
  assert.equal(sampleValue(f, 'nixery_source_look_last_seconds'), 0.25);
  assert.equal(sampleValue(f, 'nixery_source_bytes_hashed_total'), 1000);
  assert.equal(sampleValue(f, 'nixery_source_failing'), 1);
  assert.equal(sampleValue(f, 'nixery_blob_cache_hits_total'), 1);
  assert.equal(sampleValue(f, 'nixery_blob_cache_misses_total'), 2);
  assert.equal(sampleValue(f, 'nixery_send_stalled_total'), 1);
  assert.equal(sampleValue(f, 'nixery_blob_repairs_total'), 1);
  assert.equal(sampleValue(f, 'nixery_blob_cache_bytes'), 10);
  assert.equal(sampleValue(f, 'nixery_send_buffered_bytes'), 7);
  assert.equal(sampleValue(f, 'nixery_storage_operation_duration_seconds_count', { backend: 'filesystem', operation: 'stat' }), 1);
  assert.equal(sampleValue(f, 'nixery_storage_errors_total', { backend: 'filesystem', operation: 'get', kind: 'storage_object_not_found' }), 1);
  assert.equal(sampleValue(f, 'nixery_http_requests_total', { route: 'manifest', method: 'GET', status: '200' }), 1);
  assert.equal(sampleValue(f, 'nixery_http_requests_total', { route: 'blob', method: 'OTHER', status: '404' }), 1);
  assert.equal(sampleValue(f, 'nixery_http_requests_total', { route: 'none', method: 'OTHER', status: '431' }), 1);
  assert.equal(sampleValue(f, 'nixery_http_errors_total'), 2);
  assert.equal(sampleValue(f, 'nixery_http_protocol_errors_total'), 1);

  // A gauge is read when scraped; a successful look clears "failing".
  held = 20;
  metrics.pins.looked(0.5);
  f = await scrape(metrics);
  assert.equal(sampleValue(f, 'nixery_blob_cache_bytes'), 20);
  assert.equal(sampleValue(f, 'nixery_source_failing'), 0);
  assert.equal(sampleValue(f, 'nixery_source_look_last_seconds'), 0.5);
});

test('readings handed over by the composition root are read at scrape time, with the process defaults', async () => {
  const metrics = new Metrics();
  assert.equal(sampleValue(await scrape(metrics), 'nixery_builds_running'), 0, 'zero before anything is watched');
  let running = 2;
  const readings: MetricReadings = {
    cacheHits: () => 5,
    memoHits: () => 4,
    buildFailures: () => 1,
    tooLarge: () => 0,
    rejected: () => 3,
    building: () => running,
    queued: () => 6,
    integrityFailures: () => 9,
    unauthorized: () => 11,
    denied: () => 12,
    packagesDenied: () => 13,
    buildsRateLimited: () => 14,
  };
  metrics.watch(readings);
  assert.throws(() => metrics.watch(readings), /already watching/);
  let f = await scrape(metrics);
  assert.equal(sampleValue(f, 'nixery_builds_running'), 2);
  assert.equal(sampleValue(f, 'nixery_image_cache_hits_total'), 5);
  assert.equal(sampleValue(f, 'nixery_manifest_cache_hits_total', { tier: 'memo' }), 4);
  assert.equal(sampleValue(f, 'nixery_builds_rejected_total'), 3);
  assert.equal(sampleValue(f, 'nixery_integrity_failures_total'), 9);
  assert.equal(sampleValue(f, 'nixery_builds_rate_limited_total'), 14);
  assert.ok(f.has('process_cpu_seconds_total'));
  running = 0;
  f = await scrape(metrics);
  assert.equal(sampleValue(f, 'nixery_builds_running'), 0);
  assert.equal(metrics.snapshot().nixery_auth_denied_total, 12);
});
