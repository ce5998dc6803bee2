// Reading processes from /proc (Linux): a process's parent, process group, session and start
// time. Used to judge whether the owner of a file is still running and to find what a Nix
// process started. Reading is fine anywhere; only src/nix starts or signals processes.

import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';

export interface ProcStat {
  pid: number;
  ppid: number;
  /** Process group id. */
  pgrp: number;
  session: number;
  /** Field 22: clock ticks since boot when the process started; with the pid, it names a process. */
  startTime: number;
  /** Zombies have exited (only their exit status is left). */
  zombie: boolean;
}

/** Parses the text of /proc/<pid>/stat; null when it is not one. */
export function parseProcStat(pid: number, text: string): ProcStat | null {
  // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  const fields = text.slice(close + 2).split(' ');
  // fields[0] is field 3 (state), so field N is fields[N - 3].
  const startTime = Number(fields[19]);
  const ppid = Number(fields[1]);
  const pgrp = Number(fields[2]);
  const session = Number(fields[3]);
  if (![startTime, ppid, pgrp, session].every(Number.isSafeInteger)) return null;
  return { pid, ppid, pgrp, session, startTime, zombie: fields[0] === 'Z' };
}

/** The process `pid` as /proc shows it now, or null when there is no such process (or no /proc). */
export function readProcStat(pid: number): ProcStat | null {
  try {
    return parseProcStat(pid, readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

/** Every process /proc shows (empty where /proc is unavailable). */
export function listProcesses(): ProcStat[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const out: ProcStat[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProcStat(Number(entry));
    if (stat) out.push(stat);
  }
  return out;
}

/** Like listProcesses, without blocking the event loop (for polls while the server runs). */
export async function listProcessesAsync(): Promise<ProcStat[]> {
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return [];
  }
  const pids = entries.filter((e) => /^\d+$/.test(e)).map(Number);
  const stats = await Promise.all(
    pids.map((pid) =>
      readFile(`/proc/${pid}/stat`, 'utf8').then(
        (text) => parseProcStat(pid, text),
        () => null,
      ),
    ),
  );
  return stats.filter((s): s is ProcStat => s !== null);
}

/** PIDs of every live descendant of `root`, in `processes` (default: a fresh /proc listing). */
export function descendantsIn(root: number, processes: readonly ProcStat[]): number[] {
  const children = new Map<number, number[]>();
  for (const p of processes) {
    const list = children.get(p.ppid) ?? [];
    list.push(p.pid);
    children.set(p.ppid, list);
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

/**
 * Whether /proc shows every process of our PID namespace, so that a PID missing from it really
 * is gone: /proc must be mounted for our namespace (/proc/self is us) and not hide other users'
 * processes (hidepid), which we check on PID 1.
 */
export function procShowsAllProcesses(): boolean {
  try {
    if (readlinkSync('/proc/self') !== String(process.pid)) return false;
  } catch {
    return false;
  }
  return readProcStat(1) !== null;
}
