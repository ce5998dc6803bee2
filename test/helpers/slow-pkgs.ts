// A package set generated for one test run, on top of the example set: `slow<N>` packages whose
// builder sleeps N seconds (in a child of its shell, as real builders run compilers) and a `big`
// package of random bytes whose layer takes a while to pack. A random marker goes into every
// derivation, so Nix really builds them in each run, and into the builders' command lines, so
// a test can find them in /proc.

import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EXAMPLE_PKGS } from './nix.js';
import { readProcStat } from '../../src/util/proc.js';

export interface TestPackageSet {
  dir: string;
  marker: string;
  remove(): Promise<void>;
}

export async function makeTestPackageSet(options: { sleeps?: number[]; bigMegabytes?: number } = {}): Promise<TestPackageSet> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-test-pkgs-'));
  const marker = `nixery-test-${randomBytes(6).toString('hex')}`;
  const slow = (options.sleeps ?? []).map(
    (seconds) => `
  slow${seconds} = mk "slow${seconds}" ''
    echo "${marker}: sleeping ${seconds} s" >&2
    ${'$'}{busybox}/bin/sleep ${seconds}
    mkdir -p $out
    echo "${marker}" > $out/slept
  '';`,
  );
  const big =
    options.bigMegabytes === undefined
      ? ''
      : `
  big = mk "big" ''
    mkdir -p $out/share
    echo "${marker}" > $out/share/marker
    ${'$'}{busybox}/bin/dd if=/dev/urandom of=$out/share/random.bin bs=1048576 count=${options.bigMegabytes} 2>/dev/null
  '';`;
  await writeFile(
    path.join(dir, 'default.nix'),
    `# Generated for one test run (marker ${marker}).
{ system ? builtins.currentSystem, ... }:
let
  examples = import ${EXAMPLE_PKGS} { inherit system; };
  inherit (examples) busybox;
  mk = pname: script: derivation {
    name = "\${pname}-1.0";
    system = builtins.currentSystem;
    builder = "\${busybox}/bin/sh";
    args = [ "-e" "-c" script ];
    PATH = "\${busybox}/bin";
    MARKER = "${marker}";
  } // { inherit pname; version = "1.0"; meta = { }; };
in
examples // {
${slow.join('\n')}
${big}
}
`,
  );
  return { dir, marker, remove: () => rm(dir, { recursive: true, force: true }) };
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
