// No Nix process outlives its registry: the parent-death signal, the record of process groups,
// and the reaping of what a dead registry left (real processes, killed for real).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { killRecordedGroup, parentDeathWrapper, parseGroupRecord, reapAbandonedRuntime, runtimeDir } from '../../src/nix/processes.js';
import { NixFailedError } from '../../src/errors.js';
import { runProcess } from '../../src/nix/run.js';
import { UNJUDGED_MAX_AGE_MS, currentOwner, formatOwner, type Owner } from '../../src/util/owner.js';
import { listProcesses, readProcStat } from '../../src/util/proc.js';
import { identify, killIfRunning, stillRunning, waitFor, type ProcessId } from '../helpers/slow-pkgs.js';

const RUN_JS = path.resolve('dist/src/nix/run.js');

function running(pid: number): boolean {
  const stat = readProcStat(pid);
  return stat !== null && !stat.zombie;
}

function detachedSleep(seconds: number): ChildProcess {
  const child = spawn('sleep', [String(seconds)], { detached: true, stdio: 'ignore' });
  child.unref();
  return child;
}

test('the process-group record: "<pgid> <start time>" lines, anything else skipped', () => {
  assert.deepEqual(parseGroupRecord('123 456\n\ngarbage\n1 5\n789 1011 extra\n42 7\n'), [
    { pgid: 123, startTime: 456 },
    { pgid: 42, startTime: 7 },
  ]);
});

test('a recorded group is killed only while it is the same group (start time checked)', async () => {
  const child = detachedSleep(30);
  const stat = readProcStat(child.pid!)!;
  try {
    assert.equal(killRecordedGroup({ pgid: child.pid!, startTime: stat.startTime + 1 }, listProcesses()), 0);
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(running(child.pid!), 'a group whose leader started at another time is not ours');
    assert.ok(killRecordedGroup({ pgid: child.pid!, startTime: stat.startTime }, listProcesses()) >= 1);
    await waitFor('the leader to die', () => !running(child.pid!), 5000);
  } finally {
    killIfRunning(identify([child.pid!]));
  }
});

test('a recorded group whose leader is gone: the members it left are killed', async () => {
  // The leader exits at once, leaving a member in its group.
  const leader = spawn('/bin/sh', ['-c', 'sleep 30 & echo $!'], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  const leaderStart = readProcStat(leader.pid!)!.startTime;
  const memberPid = Number((await createInterface({ input: leader.stdout! })[Symbol.asyncIterator]().next()).value);
  await new Promise((r) => leader.once('exit', r));
  const member = identify([memberPid]);
  try {
    assert.equal(readProcStat(memberPid)!.pgrp, leader.pid);
    assert.equal(killRecordedGroup({ pgid: leader.pid!, startTime: leaderStart }, listProcesses()), 1);
    await waitFor('the member to die', () => stillRunning(member).length === 0, 5000);
  } finally {
    killIfRunning(member);
  }
});

test('a running child and the groups its descendants start are recorded in the runtime directory', async () => {
  const record = path.join(runtimeDir(), 'process-groups');
  let leader = 0;
  const controller = new AbortController();
  const run = runProcess('/bin/sh', ['-c', 'setsid sleep 30 & sleep 30; wait'], {
    timeoutMs: 20_000,
    what: 'recorded',
    killGraceMs: 100,
    signal: controller.signal,
    onSpawn: (pid) => (leader = pid),
  }).catch(() => undefined);
  try {
    const lines = await waitFor('the setsid group in the record', () => {
      const groups = parseGroupRecord(readFileSync(record, 'utf8'));
      return groups.length >= 2 ? groups : undefined;
    }, 5000, 50);
    assert.deepEqual(lines[0], { pgid: leader, startTime: readProcStat(leader)!.startTime });
    const other = lines.find((g) => g.pgid !== leader)!;
    assert.equal(readProcStat(other.pgid)!.session, other.pgid, 'the builder-like process leads a session of its own');
  } finally {
    // Stopped (with its descendants in other sessions); the record then drops it.
    controller.abort();
    await run;
  }
  assert.deepEqual(parseGroupRecord(readFileSync(record, 'utf8')), []);
});

/**
 * A separate Node process that runs a shell through runProcess; the shell starts a child in its
 * own group and one in its own session, then waits. Returns the Node process and the shell's pid.
 */
async function registryLikeProcess(env: NodeJS.ProcessEnv): Promise<{ node: ChildProcess; shell: number; owner: Owner }> {
  const script = `
    import { runProcess } from ${JSON.stringify(RUN_JS)};
    import { currentOwner } from ${JSON.stringify(path.resolve('dist/src/util/owner.js'))};
    import { setParentDeathSignal } from ${JSON.stringify(path.resolve('dist/src/nix/processes.js'))};
    // What createApp does with NIXERY_PDEATHSIG (config.ts).
    setParentDeathSignal(process.env.NIXERY_PDEATHSIG !== 'off');
    runProcess('/bin/sh', ['-c', 'sleep 300 & setsid sleep 301 & wait'], {
      timeoutMs: 600000, what: 'test',
      onSpawn: (pid) => console.log(JSON.stringify({ shell: pid, owner: currentOwner() })),
    });
  `;
  const node = spawn(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const line = (await createInterface({ input: node.stdout! })[Symbol.asyncIterator]().next()).value as string;
  const { shell, owner } = JSON.parse(line) as { shell: number; owner: Owner };
  return { node, shell, owner };
}

for (const pdeathsig of ['on', 'off'] as const) {
  test(`SIGKILL of the parent (parent-death signal ${pdeathsig}): the reaper kills what it left and removes its runtime directory`, async () => {
    if (pdeathsig === 'on') assert.ok(parentDeathWrapper(), 'setpriv --pdeathsig works on this machine');
    // Its own temp dir: no registry of a test running at the same time reaps it first.
    const base = await mkdtemp(path.join(tmpdir(), 'nixery-pdeathsig-test-'));
    const { node, shell, owner } = await registryLikeProcess({ TMPDIR: base, ...(pdeathsig === 'off' ? { NIXERY_PDEATHSIG: 'off' } : {}) });
    const runDir = path.join(base, `nixery-run-${formatOwner(owner)}`);
    let tree: ProcessId[] = [];
    try {
      // Both sleeps started and the record lists the shell's group and the setsid one.
      tree = await waitFor('the process tree and its record', () => {
        const t = identify([shell, ...listProcesses().filter((p) => p.ppid === shell).map((p) => p.pid)]);
        const groups = existsSync(path.join(runDir, 'process-groups')) ? parseGroupRecord(readFileSync(path.join(runDir, 'process-groups'), 'utf8')) : [];
        return t.length === 3 && groups.length === 2 ? t : undefined;
      }, 10_000, 50);
      node.kill('SIGKILL');
      await new Promise((r) => node.once('exit', r));
      await new Promise((r) => setTimeout(r, 300));
      if (pdeathsig === 'on') assert.ok(!running(shell), 'the direct child died with its parent');
      else assert.ok(running(shell), 'without the parent-death signal the child outlives its parent');
      assert.ok(stillRunning(tree).length >= 2, 'the sleeps outlived the parent: only the reaper stops them');
      assert.ok(existsSync(runDir));

      const report = await reapAbandonedRuntime(base);
      assert.ok(report.processesKilled >= 2, JSON.stringify(report));
      await waitFor('every process of the dead parent to die', () => stillRunning(tree).length === 0, 5000);
      assert.equal(existsSync(runDir), false, 'its runtime directory is removed');
    } finally {
      node.kill('SIGKILL');
      killIfRunning(tree);
      await rm(base, { recursive: true, force: true });
    }
  });
}

test('the reaper keeps live owners, judges others by age, and leaves names that are not its own alone', async () => {
  const base = await mkdtemp(path.join(tmpdir(), 'nixery-reap-test-'));
  try {
    const me = currentOwner();
    const exited = spawn('sleep', ['0.1'], { stdio: 'ignore' });
    const gone: Owner = { ...me, pid: exited.pid!, startTime: readProcStat(exited.pid!)!.startTime };
    await new Promise((r) => exited.once('exit', r));
    const old = (Date.now() - UNJUDGED_MAX_AGE_MS - 3600_000) / 1000;
    const dirs: Record<string, { old: boolean; kept: boolean }> = {
      [`nixery-run-${formatOwner(me)}`]: { old: true, kept: true },
      [`nixery-run-${formatOwner(gone)}`]: { old: false, kept: false },
      [`nixery-run-${formatOwner({ ...gone, host: 'elsewhere' })}`]: { old: false, kept: true },
      [`nixery-run-${formatOwner({ ...me, host: 'elsewhere' })}`]: { old: true, kept: false },
      'nixery-run-unparsable': { old: false, kept: true },
      'nixery-run-unparsable-old': { old: true, kept: false },
      'nixery-gcroots-AbC123': { old: true, kept: false },
      'nixery-gcroots-XyZ789': { old: false, kept: true },
      'nixery-test-storage-Qw12er': { old: true, kept: true },
      'unrelated': { old: true, kept: true },
    };
    for (const [name, { old: isOld }] of Object.entries(dirs)) {
      await mkdir(path.join(base, name, 'gcroots-x'), { recursive: true });
      await writeFile(path.join(base, name, 'gcroots-x', 'root'), '');
      if (isOld) await utimes(path.join(base, name), old, old);
    }
    const report = await reapAbandonedRuntime(base);
    for (const [name, { kept }] of Object.entries(dirs)) assert.equal(existsSync(path.join(base, name)), kept, name);
    assert.equal(report.dirsRemoved, Object.values(dirs).filter((d) => !d.kept).length);
    assert.equal(report.processesKilled, 0);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
});

test('through setpriv, a program that cannot be started fails as it does without it', async () => {
  assert.ok(parentDeathWrapper());
  await assert.rejects(runProcess('/nonexistent/nix-store', ['--version'], { timeoutMs: 5000, what: 'missing' }), (err: Error) => {
    assert.ok(err instanceof NixFailedError);
    assert.match(err.message, /missing.*cannot run \/nonexistent\/nix-store: No such file or directory/s);
    return true;
  });
});
