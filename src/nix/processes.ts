// The Nix (and git) processes this process runs, so that none outlives it:
//
// 1. Each child is started through util-linux `setpriv --pdeathsig SIGKILL` where that works
//    (detected once), so the kernel kills it when we die, even by SIGKILL.
// 2. Builders are not covered by that: Nix starts them in sessions of their own, and switching
//    to a build user clears the death signal. So the process groups of our children and of
//    what they started are recorded (pgid and start time) in a file in this process's runtime
//    directory, `<tmp>/nixery-run-<owner>/process-groups`. `reapAbandonedRuntime` (run at start
//    and periodically by the server) kills the recorded groups of owners that are gone and
//    removes their runtime directories, GC roots included.
// 3. `stopAllNixProcesses` stops every running child on shutdown; on exit whatever is left is
//    killed and the runtime directory removed.

import { accessSync, constants, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { lstat, readFile, readdir, rm } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UNJUDGED_MAX_AGE_MS, currentOwner, formatOwner, ownerLiveness, parseOwner } from '../util/owner.js';
import { descendantsIn, listProcesses, listProcessesAsync, readProcStat, type ProcStat } from '../util/proc.js';

const RUNTIME_PREFIX = 'nixery-run-';
/** Per-build GC root directories of versions before owner-named runtime directories. */
const LEGACY_GCROOTS = /^nixery-gcroots-[A-Za-z0-9]{6}$/;
const GROUPS_FILE = 'process-groups';
/**
 * How often the descendants of running children are looked at for new process groups (a scan of
 * /proc: about 10 ms of CPU for 100 processes). A registry killed within this long of a builder's
 * start leaves that builder to Nix, which kills a build user's processes before reusing it.
 */
const GROUP_POLL_MS = 500;

interface Tracked {
  pid: number;
  startTime: number;
  /** Process groups its descendants run in, other than its own: pgid → start time. */
  groups: Map<number, number>;
  stop(graceMs: number): void;
  closed: Promise<void>;
}

const live = new Map<number, Tracked>();
let shuttingDown = false;
let pollTimer: NodeJS.Timeout | undefined;
let exitHookInstalled = false;

/** True once stopAllNixProcesses was called: no new process may start. */
export function isShuttingDown(): boolean {
  return shuttingDown;
}

/** This process's runtime directory (GC roots, the process-group record), created if missing. */
export function runtimeDir(): string {
  const dir = path.join(tmpdir(), RUNTIME_PREFIX + formatOwner(currentOwner()));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  installExitHook();
  return dir;
}

/**
 * The temporary directory Nix and git run with: inside the runtime directory, so the build
 * directories a killed Nix leaves behind (`nix-build-*`) go with it when it is reaped.
 */
export function childTmpDir(): string {
  const dir = path.join(runtimeDir(), 'tmp');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

let wrapper: string | null | undefined;
let parentDeathSignal = true;

/**
 * Whether children are started with a parent-death signal at all (NIXERY_PDEATHSIG, read in
 * config.ts; off exercises the fallback in tests). Set before the first child starts.
 */
export function setParentDeathSignal(enabled: boolean): void {
  if (enabled !== parentDeathSignal) wrapper = undefined;
  parentDeathSignal = enabled;
}

/**
 * The `setpriv` that can give a child a parent-death signal, or null (not Linux, not installed,
 * too old, or turned off with setParentDeathSignal(false)).
 */
export function parentDeathWrapper(): string | null {
  if (wrapper !== undefined) return wrapper;
  wrapper = null;
  if (process.platform !== 'linux' || !parentDeathSignal) return wrapper;
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter((d) => d !== ''), '/usr/bin', '/bin'];
  for (const dir of dirs) {
    const candidate = path.join(dir, 'setpriv');
    try {
      accessSync(candidate, constants.X_OK);
    } catch {
      continue;
    }
    // setpriv running itself: it starts in ~3 ms, half of `node --version` (this blocks, once).
    const probe = spawnSync(candidate, ['--pdeathsig', 'SIGKILL', '--', candidate, '--version'], { stdio: 'ignore', timeout: 10_000 });
    if (probe.status === 0) wrapper = candidate;
    break;
  }
  return wrapper;
}

/** The command line that runs `program` so that it dies with us. */
export function withParentDeathSignal(program: string, args: readonly string[]): { command: string; args: string[]; wrapped: boolean } {
  const setpriv = parentDeathWrapper();
  if (setpriv === null) return { command: program, args: [...args], wrapped: false };
  return { command: setpriv, args: ['--pdeathsig', 'SIGKILL', '--', program, ...args], wrapped: true };
}

/**
 * Registers a started child (the leader of its own process group); `stop(graceMs)` must stop
 * it (SIGTERM, SIGKILL after graceMs). Returns the function to call once it has exited.
 */
export function trackProcess(pid: number, stop: (graceMs: number) => void): () => void {
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  const startTime = readProcStat(pid)?.startTime;
  if (startTime === undefined) {
    // Already gone (or no /proc): nothing to record, but shutdown still waits for it.
    live.set(pid, { pid, startTime: 0, groups: new Map(), stop, closed });
  } else {
    live.set(pid, { pid, startTime, groups: new Map(), stop, closed });
    writeRecord();
  }
  pollTimer ??= setInterval(() => void pollGroups(), GROUP_POLL_MS).unref();
  return () => {
    if (!live.delete(pid)) return;
    resolveClosed();
    writeRecord();
    if (live.size === 0 && pollTimer !== undefined) {
      clearInterval(pollTimer);
      pollTimer = undefined;
    }
  };
}

/**
 * Stops every running Nix process group (SIGTERM, then SIGKILL after `graceMs`, default
 * 1000), resolves once all have exited; from then on no new Nix process starts (the calls fail
 * with ShuttingDownError). For shutdown.
 */
export async function stopAllNixProcesses(options: { graceMs?: number } = {}): Promise<void> {
  shuttingDown = true;
  const running = [...live.values()];
  for (const t of running) t.stop(options.graceMs ?? 1000);
  await Promise.all(running.map((t) => t.closed));
}

/** Count of running children (for tests and metrics). */
export function runningNixProcesses(): number {
  return live.size;
}

/** Notes the process groups that the children's descendants run in (builders use setsid). */
async function pollGroups(): Promise<void> {
  if (live.size === 0) return;
  const processes = await listProcessesAsync();
  const byPid = new Map(processes.map((p) => [p.pid, p]));
  let changed = false;
  for (const t of live.values()) {
    for (const pid of descendantsIn(t.pid, processes)) {
      const p = byPid.get(pid)!;
      if (p.pgrp === t.pid || t.groups.has(p.pgrp)) continue;
      // The group's leader if it still runs (its pid is the pgid), else this member.
      t.groups.set(p.pgrp, byPid.get(p.pgrp)?.startTime ?? p.startTime);
      changed = true;
    }
  }
  if (changed && live.size > 0) writeRecord();
}

/** Rewrites the record of our process groups (atomically: a crash leaves the old or the new). */
function writeRecord(): void {
  const lines: string[] = [];
  for (const t of live.values()) {
    if (t.startTime > 0) lines.push(`${t.pid} ${t.startTime}`);
    for (const [pgid, start] of t.groups) lines.push(`${pgid} ${start}`);
  }
  try {
    const dir = runtimeDir();
    const tmp = path.join(dir, `${GROUPS_FILE}.tmp`);
    writeFileSync(tmp, lines.length > 0 ? `${lines.join('\n')}\n` : '');
    renameSync(tmp, path.join(dir, GROUPS_FILE));
  } catch {
    // Best effort: the parent-death signal and shutdown still stop the children.
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    // Whatever still runs dies with us (the parent-death signal does not reach builders).
    const processes = listProcesses();
    for (const t of live.values()) {
      for (const pid of descendantsIn(t.pid, processes)) signal(pid, 'SIGKILL');
      signal(-t.pid, 'SIGKILL');
      for (const pgid of t.groups.keys()) signal(-pgid, 'SIGKILL');
    }
    try {
      rmSync(path.join(tmpdir(), RUNTIME_PREFIX + formatOwner(currentOwner())), { recursive: true, force: true });
    } catch {
      // The next start of any nixery on this host removes it.
    }
  });
}

function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** Parses a process-group record: `<pgid> <start time>` lines; anything else is skipped. */
export function parseGroupRecord(text: string): Array<{ pgid: number; startTime: number }> {
  const out: Array<{ pgid: number; startTime: number }> = [];
  for (const line of text.split('\n')) {
    const m = /^(\d{1,10}) (\d{1,20})$/.exec(line.trim());
    if (!m) continue;
    const pgid = Number(m[1]);
    const startTime = Number(m[2]);
    if (pgid > 1 && Number.isSafeInteger(startTime)) out.push({ pgid, startTime });
  }
  return out;
}

/**
 * Kills a recorded process group of a dead owner, if it is still the same group: its leader runs
 * with the recorded start time (then its descendants in other groups die too), or the leader is
 * gone and members that started no earlier than it remain (a pid is not reused while it names a
 * group). Returns how many processes were signalled.
 */
export function killRecordedGroup(group: { pgid: number; startTime: number }, processes: readonly ProcStat[]): number {
  const leader = processes.find((p) => p.pid === group.pgid);
  let victims: number[];
  if (leader) {
    if (leader.startTime !== group.startTime) return 0; // the pid belongs to another process now
    victims = [leader.pid, ...descendantsIn(leader.pid, processes)];
    signal(-group.pgid, 'SIGKILL');
  } else {
    victims = processes.filter((p) => p.pgrp === group.pgid && p.startTime >= group.startTime).map((p) => p.pid);
  }
  let killed = 0;
  for (const pid of victims) if (signal(pid, 'SIGKILL')) killed++;
  return killed;
}

export interface ReapReport {
  /** Runtime directories removed (their owners gone, or unjudged and older than the bound). */
  dirsRemoved: number;
  /** Processes of gone owners that were killed. */
  processesKilled: number;
}

/**
 * Kills the recorded process groups of owners that are gone and removes their runtime
 * directories (and GC roots); runtime directories whose owner cannot be judged are removed once
 * not modified for UNJUDGED_MAX_AGE_MS; a live owner's are never touched. `base` is where the
 * runtime directories live (default: the OS temp dir).
 */
export async function reapAbandonedRuntime(base: string = tmpdir()): Promise<ReapReport> {
  const report: ReapReport = { dirsRemoved: 0, processesKilled: 0 };
  let names: string[];
  try {
    names = await readdir(base);
  } catch {
    return report;
  }
  const now = Date.now();
  let processes: ProcStat[] | undefined;
  for (const name of names) {
    const legacy = LEGACY_GCROOTS.test(name);
    if (!legacy && !name.startsWith(RUNTIME_PREFIX)) continue;
    const dir = path.join(base, name);
    const st = await lstat(dir).catch(() => null);
    if (!st?.isDirectory()) continue;
    const owner = legacy ? null : parseOwner(name.slice(RUNTIME_PREFIX.length));
    const liveness = owner ? ownerLiveness(owner) : 'unknown';
    if (liveness === 'alive') continue;
    if (liveness === 'unknown' && now - st.mtimeMs <= UNJUDGED_MAX_AGE_MS) continue;
    if (liveness === 'gone') {
      const record = await readFile(path.join(dir, GROUPS_FILE), 'utf8').catch(() => '');
      const groups = parseGroupRecord(record);
      if (groups.length > 0) {
        processes ??= await listProcessesAsync();
        for (const g of groups) report.processesKilled += killRecordedGroup(g, processes);
      }
    }
    await rm(dir, { recursive: true, force: true }).catch(() => {});
    report.dirsRemoved++;
  }
  return report;
}
