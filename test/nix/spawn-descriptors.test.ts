// A process out of file descriptors (EMFILE) cannot start Nix: the spawn fails, and that must be
// a clear 503 for the build that asked, not an 'error' event nobody listens to (which ends the
// process). The next spawn, once descriptors are free, works. Run in a child process whose
// open-files limit is low (prlimit), so that exhausting it is real and harms nothing else.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

const RUN = path.resolve('dist/src/nix/run.js');
const ERRORS = path.resolve('dist/src/errors.js');

const SCRIPT = `
import { openSync, closeSync } from 'node:fs';
import { runProcess, runNix } from ${JSON.stringify(RUN)};
import { describeError } from ${JSON.stringify(ERRORS)};
const out = {};
// Warm up (the parent-death wrapper is probed once, on first use).
out.before = (await runProcess('true', [], { timeoutMs: 10000, what: 'warming up' })).code;
const held = [];
try { for (;;) held.push(openSync('/dev/null', 'r')); } catch (err) { out.exhausted = err.code; }
for (const [name, run] of [['runProcess', () => runProcess('true', [], { timeoutMs: 10000, what: 'a test' })], ['runNix', () => runNix('nix-instantiate', ['--version'], { timeoutMs: 10000, what: 'evaluating hello', timeoutKind: 'eval' })]]) {
  try {
    await run();
    out[name] = 'started';
  } catch (err) {
    const d = describeError(err);
    out[name] = { status: d.entry.status, code: d.entry.code, retryAfter: d.retryAfterSeconds, message: d.message };
  }
}
// Give an unhandled 'error' event its chance to end the process.
await new Promise((r) => setTimeout(r, 200));
for (const fd of held.splice(0, 16)) closeSync(fd);
out.after = (await runNix('nix-instantiate', ['--version'], { timeoutMs: 30000, what: 'after', timeoutKind: 'eval' })).stdout.trim().length > 0;
for (const fd of held) closeSync(fd);
console.log(JSON.stringify(out));
`;

test('spawning with no descriptor left is a 503 UNAVAILABLE saying so, the process lives on, and the next spawn works', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-emfile-'));
  try {
    const script = path.join(dir, 'emfile.mjs');
    await writeFile(script, SCRIPT);
    const r = spawnSync('prlimit', ['--nofile=128', process.execPath, script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, `the process must not die: ${r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
    assert.equal(out.before, 0);
    assert.equal(out.exhausted, 'EMFILE');
    for (const name of ['runProcess', 'runNix']) {
      const failure = out[name] as { status: number; code: string; retryAfter?: number; message: string };
      assert.equal(failure.status, 503, `${name}: ${JSON.stringify(failure)}`);
      assert.equal(failure.code, 'UNAVAILABLE');
      assert.ok(failure.retryAfter !== undefined && failure.retryAfter > 0);
      assert.match(failure.message, /out of file descriptors/);
    }
    assert.match((out.runNix as { message: string }).message, /nix-instantiate for evaluating hello/);
    assert.equal(out.after, true, 'with descriptors free again, Nix starts');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
