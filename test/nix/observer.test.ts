// A Nix run reports to the observer its caller hands it, and to no one else: how many ran by
// command, and how each failed (exit, timeout, stopped). Real processes, no Nix needed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runNix } from '../../src/nix/run.js';
import { NixRunCounts, type NixCommand, type NixFailure } from '../../src/nix/observer.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { parsePrometheusText, sampleValue } from '../helpers/prometheus.js';

/** Every report, in order. */
function recorder(): { events: string[]; observer: { started(c: NixCommand): void; failed(c: NixCommand, r: NixFailure): void } } {
  const events: string[] = [];
  return { events, observer: { started: (c) => events.push(`started ${c}`), failed: (c, r) => events.push(`failed ${c} ${r}`) } };
}

test('a run reports its start, and how it failed, to its own observer', async () => {
  const ok = recorder();
  await runNix('/bin/sh', ['-c', 'echo fine'], { timeoutMs: 5000, timeoutKind: 'EVAL_TIMEOUT', what: 'fine', command: 'resolve', observer: ok.observer });
  assert.deepEqual(ok.events, ['started resolve']);

  const exit = recorder();
  await assert.rejects(runNix('/bin/sh', ['-c', 'exit 2'], { timeoutMs: 5000, timeoutKind: 'EVAL_TIMEOUT', what: 'failing', command: 'realise', observer: exit.observer }));
  assert.deepEqual(exit.events, ['started realise', 'failed realise exit']);

  const timeout = recorder();
  await assert.rejects(
    runNix('/bin/sh', ['-c', 'sleep 30'], { timeoutMs: 200, timeoutKind: 'EVAL_TIMEOUT', what: 'slow', command: 'closure', killGraceMs: 100, observer: timeout.observer }),
  );
  assert.deepEqual(timeout.events, ['started closure', 'failed closure timeout']);

  const aborted = recorder();
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error('client went away')), 100);
  await assert.rejects(
    runNix('/bin/sh', ['-c', 'sleep 30'], { timeoutMs: 20_000, timeoutKind: 'EVAL_TIMEOUT', what: 'aborted', signal: controller.signal, killGraceMs: 100, observer: aborted.observer }),
    /client went away/,
  );
  assert.deepEqual(aborted.events, ['started other', 'failed other stopped']);

  // A program that cannot start still counts as a run that failed.
  const missing = recorder();
  await assert.rejects(runNix('/nonexistent/nix-store', [], { timeoutMs: 5000, timeoutKind: 'EVAL_TIMEOUT', what: 'missing', command: 'popcount', observer: missing.observer }));
  assert.deepEqual(missing.events, ['started popcount', 'failed popcount exit']);
});

test('counts are per observer: no process-wide counter moves', async () => {
  const mine = new NixRunCounts();
  const other = new NixRunCounts();
  await runNix('/bin/true', [], { timeoutMs: 5000, timeoutKind: 'EVAL_TIMEOUT', what: 'true', command: 'resolve', observer: mine });
  await runNix('/bin/true', [], { timeoutMs: 5000, timeoutKind: 'EVAL_TIMEOUT', what: 'unobserved' });
  assert.equal(mine.invocations, 1);
  assert.equal(mine.commands.resolve.invocations, 1);
  assert.equal(other.invocations, 0);
});

test("an app's metrics count the Nix runs handed their observer, served at /metrics by command and reason", async () => {
  const metrics = new Metrics();
  const unrelated = new Metrics();
  await runNix('/bin/true', [], { timeoutMs: 5000, timeoutKind: 'EVAL_TIMEOUT', what: 'ok', command: 'closure', observer: metrics.nix });
  await assert.rejects(runNix('/bin/sh', ['-c', 'exit 1'], { timeoutMs: 5000, timeoutKind: 'EVAL_TIMEOUT', what: 'bad', command: 'closure', observer: metrics.nix }));
  const families = parsePrometheusText((await metrics.expose()).body);
  assert.equal(sampleValue(families, 'nixery_nix_invocations_total', { command: 'closure' }), 2);
  assert.equal(sampleValue(families, 'nixery_nix_invocations_total', { command: 'realise' }), 0);
  assert.equal(sampleValue(families, 'nixery_nix_failures_total', { command: 'closure', reason: 'exit' }), 1);
  assert.equal(sampleValue(families, 'nixery_nix_failures_total', { command: 'closure', reason: 'timeout' }), 0);
  assert.equal(metrics.snapshot().nixery_nix_invocations_total, 2);
  assert.equal(unrelated.snapshot().nixery_nix_invocations_total, 0);
});
