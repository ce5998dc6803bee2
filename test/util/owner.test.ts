// Owner identity of temporary files: names, parsing, and whether the owner still runs, judged
// on real processes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import {
  UNJUDGED_MAX_AGE_MS,
  currentOwner,
  formatOwner,
  hostLabel,
  isAbandoned,
  ownedName,
  ownerLiveness,
  ownerOfName,
  parseOwner,
  type Owner,
} from '../../src/util/owner.js';
import { parseProcStat, readProcStat } from '../../src/util/proc.js';

/** A process that ran and has exited (and been reaped): its pid and start time. */
async function exitedProcess(): Promise<Owner> {
  const child = spawn('sleep', ['0.2'], { stdio: 'ignore' });
  const stat = readProcStat(child.pid!);
  assert.ok(stat, 'the child is visible in /proc');
  await new Promise((r) => child.once('exit', r));
  return { ...currentOwner(), pid: child.pid!, startTime: stat.startTime };
}

test('/proc/<pid>/stat is parsed after the last parenthesis (command names may hold spaces and parentheses)', () => {
  const text = '4242 (a (b) c) S 17 4242 4242 0 -1 4194304 103 0 0 0 0 0 0 0 20 0 1 0 987654 3133440 413 18446744073709551615';
  assert.deepEqual(parseProcStat(4242, text), { pid: 4242, ppid: 17, pgrp: 4242, session: 4242, startTime: 987654, zombie: false });
  assert.equal(parseProcStat(1, 'garbage'), null);
  assert.equal(parseProcStat(1, '1 (x) S 0'), null);
});

test('this process as owner: the hostname, and the start time of /proc/self/stat field 22', () => {
  const me = currentOwner();
  assert.equal(me.pid, process.pid);
  const stat = readFileSync(`/proc/${process.pid}/stat`, 'utf8');
  assert.equal(me.startTime, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]));
  assert.ok(me.startTime > 0);
  assert.equal(me.host, hostLabel(os.hostname()));
  assert.match(me.scope, /^[0-9a-f]{8}$/);
});

test('owner tags and owned names round-trip; anything else is not an owner', () => {
  const owner: Owner = { host: 'node-1.example.org', scope: '0123abcd', pid: 31337, startTime: 123456789 };
  assert.equal(formatOwner(owner), 'node-1.example.org+0123abcd+31337+123456789');
  assert.deepEqual(parseOwner(formatOwner(owner)), owner);
  const name = ownedName('5f1c-uuid.meta', owner);
  assert.equal(name, 'node-1.example.org+0123abcd+31337+123456789~5f1c-uuid.meta');
  assert.deepEqual(ownerOfName(name), owner);
  assert.deepEqual(ownerOfName(ownedName('x')), currentOwner());
  for (const bad of ['3b0c9e4e-7a55-4b43-9d51-0c6d4f2a9a11', 'host+0123abcd+12+34', 'host+0123abcd+x+34~u', 'host+0123ABCD+12+34~u', '+0123abcd+12+34~u', 'h/x+0123abcd+12+34~u', 'host+0123abcd+0+34~u']) {
    assert.equal(ownerOfName(bad), null, bad);
  }
  // Hostnames are made safe for file names (and for the tag's separators).
  assert.equal(hostLabel('pod_name+x~y/z'), 'pod_name_x_y_z');
  assert.equal(hostLabel(''), '_');
  assert.equal(hostLabel('a'.repeat(100)).length, 64);
});

test('liveness: this process is alive; an exited process, or its pid with another start time, is gone', async () => {
  const me = currentOwner();
  assert.equal(ownerLiveness(me), 'alive');
  // Our own pid with another start time: a reused pid is not the owner.
  assert.equal(ownerLiveness({ ...me, startTime: me.startTime - 1 }), 'gone');
  assert.equal(ownerLiveness(await exitedProcess()), 'gone');
  // A live process that is not us is alive.
  const child = spawn('sleep', ['5'], { stdio: 'ignore' });
  try {
    const stat = readProcStat(child.pid!)!;
    assert.equal(ownerLiveness({ ...me, pid: child.pid!, startTime: stat.startTime }), 'alive');
  } finally {
    child.kill('SIGKILL');
  }
});

test('liveness: another host or another PID namespace / boot cannot be judged', async () => {
  const gone = await exitedProcess();
  assert.equal(ownerLiveness({ ...gone, host: `${gone.host}-other` }), 'unknown');
  assert.equal(ownerLiveness({ ...gone, scope: gone.scope === '00000000' ? '00000001' : '00000000' }), 'unknown');
});

test('abandoned: a gone owner at once, an unjudged one only past the bound, a live one never', async () => {
  const now = Date.now();
  const gone = ownedName('tmp', await exitedProcess());
  const mine = ownedName('tmp');
  const foreign = ownedName('tmp', { ...currentOwner(), host: 'elsewhere' });
  const legacy = '3b0c9e4e-7a55-4b43-9d51-0c6d4f2a9a11';
  assert.equal(isAbandoned(gone, now, now), true);
  assert.equal(isAbandoned(mine, now - 10 * UNJUDGED_MAX_AGE_MS, now), false);
  for (const name of [foreign, legacy]) {
    assert.equal(isAbandoned(name, now - UNJUDGED_MAX_AGE_MS + 60_000, now), false, name);
    assert.equal(isAbandoned(name, now - UNJUDGED_MAX_AGE_MS - 60_000, now), true, name);
  }
});
