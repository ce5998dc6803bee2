import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { NixFailedError, NixTimeoutError } from '../../src/errors.js';
import { descendantsOf, runNix, runProcess } from '../../src/nix/run.js';
import { NixRunCounts } from '../../src/nix/observer.js';
import { nixEnv } from '../helpers/nix.js';

/** True while `pid` exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Runs `fn` while recording every descendant of the spawned process, polled every 50 ms. */
async function watchTree<T>(fn: (onSpawn: (pid: number) => void) => Promise<T>): Promise<{ result: PromiseSettledResult<T>; seen: Set<number> }> {
  const seen = new Set<number>();
  let timer: NodeJS.Timeout | undefined;
  const onSpawn = (pid: number): void => {
    seen.add(pid);
    timer = setInterval(() => descendantsOf(pid).forEach((p) => seen.add(p)), 50);
  };
  const [result] = await Promise.allSettled([fn(onSpawn)]);
  clearInterval(timer);
  return { result: result!, seen };
}

test('stdout and stderr are read concurrently: 1 MB on stderr does not block', async () => {
  const script = 'i=0; while [ $i -lt 1024 ]; do head -c 1024 /dev/zero | tr "\\0" e >&2; i=$((i+1)); done; echo done';
  const r = await runProcess('/bin/sh', ['-c', script], { timeoutMs: 20_000, what: 'noisy' });
  assert.equal(r.code, 0);
  assert.equal(r.stdout, 'done\n');
  assert.equal(r.stderr.length, 1024 * 1024);
});

test('the timeout kills the whole process tree, including processes in other sessions', async () => {
  const started = Date.now();
  const { result, seen } = await watchTree((onSpawn) =>
    runNix('/bin/sh', ['-c', 'sleep 30 & setsid sleep 31 & sleep 32; wait'], {
      timeoutMs: 500,
      timeoutKind: 'EVAL_TIMEOUT',
      what: 'sleepy',
      killGraceMs: 300,
      onSpawn,
    }),
  );
  assert.equal(result.status, 'rejected');
  const err = (result as PromiseRejectedResult).reason;
  assert.ok(err instanceof NixTimeoutError, String(err));
  assert.equal(err.seconds, 0.5);
  assert.equal(err.kind, 'EVAL_TIMEOUT');
  assert.equal(err.message, 'sleepy: evaluation took longer than NIXERY_EVAL_TIMEOUT (0.5 s) and was stopped');
  assert.ok(Date.now() - started < 5000);
  assert.ok(seen.size >= 4, `saw ${[...seen]}`);
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual([...seen].filter(alive), []);
});

test('non-zero exit gives NixFailedError with stderr; the run is reported to its observer', async () => {
  const nixRuns = new NixRunCounts();
  await assert.rejects(
    runNix('/bin/sh', ['-c', 'echo "error: something broke" >&2; exit 3'], { timeoutMs: 5000, timeoutKind: 'EVAL_TIMEOUT', what: 'failing', observer: nixRuns }),
    (err: unknown) => {
      assert.ok(err instanceof NixFailedError);
      assert.match(err.message, /^failing: Nix failed \(exit 3\): error: something broke/);
      assert.equal(err.stderr, 'error: something broke\n');
      return true;
    },
  );
  assert.equal(nixRuns.invocations, 1);
  assert.equal(nixRuns.commands.other.failures.exit, 1);
});

test('an AbortSignal kills the process and rejects with its reason', async () => {
  const controller = new AbortController();
  const started = Date.now();
  setTimeout(() => controller.abort(new Error('client went away')), 200);
  await assert.rejects(
    runNix('/bin/sh', ['-c', 'sleep 30'], { timeoutMs: 20_000, timeoutKind: 'EVAL_TIMEOUT', what: 'aborted', signal: controller.signal, killGraceMs: 200 }),
    /client went away/,
  );
  assert.ok(Date.now() - started < 5000);
});

test('a missing program is a NixFailedError, not a crash', async () => {
  await assert.rejects(runNix('/nonexistent/nix-store', [], { timeoutMs: 5000, timeoutKind: 'EVAL_TIMEOUT', what: 'missing' }), NixFailedError);
});

test('the environment is passed through, with overrides', async () => {
  const r = await runProcess('/bin/sh', ['-c', 'printf "%s|%s" "$NIX_CONFIG" "$HOME"'], {
    timeoutMs: 5000,
    what: 'env',
    env: nixEnv(),
  });
  assert.equal(r.stdout, `${nixEnv().NIX_CONFIG}|${process.env.HOME ?? ''}`);
  assert.match(r.stdout, /substituters =/);
});
