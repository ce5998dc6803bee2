// A package set generated for one test run, on top of the example set: `slow<N>` packages whose
// builder sleeps N seconds (in a child of its shell, as real builders run compilers) and a `big`
// package of random bytes whose layer takes a while to pack. The run's marker is in the
// builders' command lines, so a test can find them in /proc. Also: finding, identifying and
// killing processes by pid for those tests.

import { readFileSync, readdirSync } from 'node:fs';
import { readProcStat } from '../../src/util/proc.js';
import { makeUniquePackageSet, type UniquePackage } from './unique-pkgs.js';

export interface TestPackageSet {
  dir: string;
  marker: string;
  remove(): Promise<void>;
}

export async function makeTestPackageSet(options: { sleeps?: number[]; bigMegabytes?: number } = {}): Promise<TestPackageSet> {
  // `${marker}` and `${busybox}` are Nix variables of the generated set; the sleep runs as a child
  // process (busybox's own path), not as a shell builtin.
  const packages: UniquePackage[] = (options.sleeps ?? []).map((seconds) => ({
    name: `slow${seconds}`,
    script: `echo "\${marker}: sleeping ${seconds} s" >&2\n\${busybox}/bin/sleep ${seconds}\necho "\${marker}" > $out/slept`,
  }));
  if (options.bigMegabytes !== undefined) {
    packages.push({
      name: 'big',
      script: `mkdir -p $out/share\necho "\${marker}" > $out/share/marker\n\${busybox}/bin/dd if=/dev/urandom of=$out/share/random.bin bs=1048576 count=${options.bigMegabytes} 2>/dev/null`,
    });
  }
  const set = await makeUniquePackageSet(packages);
  return { dir: set.dir, marker: set.marker, remove: set.remove };
}

export interface ProcessId {
  pid: number;
  startTime: number;
  command: string;
}

function commandLine(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
  } catch {
    return null;
  }
}

/** Live processes whose command line contains `text`. */
export function processesMentioning(text: string): ProcessId[] {
  const out: ProcessId[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    const command = commandLine(pid);
    const stat = readProcStat(pid);
    if (command?.includes(text) && stat && !stat.zombie) out.push({ pid, startTime: stat.startTime, command });
  }
  return out;
}

/** The same processes still running (same pid and start time, not a zombie). */
export function stillRunning(processes: readonly ProcessId[]): ProcessId[] {
  return processes.filter((p) => {
    const stat = readProcStat(p.pid);
    return stat !== null && !stat.zombie && stat.startTime === p.startTime;
  });
}

/** Identifies processes by pid for later checks (start time and command line read now). */
export function identify(pids: readonly number[]): ProcessId[] {
  const out: ProcessId[] = [];
  for (const pid of pids) {
    const stat = readProcStat(pid);
    if (stat && !stat.zombie) out.push({ pid, startTime: stat.startTime, command: commandLine(pid) ?? '' });
  }
  return out;
}

/** Kills the given processes if they are still the same ones (test clean-up, by pid). */
export function killIfRunning(processes: readonly ProcessId[]): void {
  for (const p of stillRunning(processes)) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

export async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 20): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
