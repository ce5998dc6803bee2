// Shutdown: stopAllNixProcesses stops every running Nix process (and what it started), the
// callers get ShuttingDownError (503, retry), and no new Nix process starts afterwards.
// (Its own test file: it shuts the module down for the rest of the process.)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShuttingDownError } from '../../src/errors.js';
import { runningNixProcesses, stopAllNixProcesses } from '../../src/nix/processes.js';
import { descendantsOf, runNix } from '../../src/nix/run.js';
import { identify, stillRunning, waitFor, killIfRunning, type ProcessId } from '../helpers/slow-pkgs.js';

test('stopAllNixProcesses stops the running processes and their descendants; later calls are refused', async () => {
  const leaders: number[] = [];
  const calls = [1, 2].map(() =>
    runNix('/bin/sh', ['-c', 'sleep 30 & setsid sleep 31 & wait'], { timeoutMs: 60_000, timeoutKind: 'EVAL_TIMEOUT', what: 'long', onSpawn: (pid) => leaders.push(pid) }).then(
      () => assert.fail('should have been stopped'),
      (err: unknown) => err,
    ),
  );
  let tree: ProcessId[] = [];
  try {
    tree = await waitFor('both trees', () => {
      const t = identify(leaders.flatMap((l) => [l, ...descendantsOf(l)]));
      return t.length === 6 ? t : undefined;
    }, 10_000, 50);
    assert.equal(runningNixProcesses(), 2);
    const started = Date.now();
    await stopAllNixProcesses({ graceMs: 200 });
    assert.ok(Date.now() - started < 3000);
    for (const err of await Promise.all(calls)) assert.ok(err instanceof ShuttingDownError, String(err));
    assert.equal(runningNixProcesses(), 0);
    await waitFor('every process to be gone', () => stillRunning(tree).length === 0, 3000);
    await assert.rejects(runNix('/bin/true', [], { timeoutMs: 5000, timeoutKind: 'EVAL_TIMEOUT', what: 'after' }), ShuttingDownError);
  } finally {
    killIfRunning(tree);
  }
});
