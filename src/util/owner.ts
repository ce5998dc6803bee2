// Naming temporary files and directories after the process that owns them, so that a crashed
// process's leftovers can be recognised and removed at once, while a live process's files are
// never touched.
//
// An owner is host + scope + pid + start time. The scope (a hash of the kernel's boot id and our
// PID namespace) says where the pid means something: two containers may both be pid 1 with the
// same hostname on one shared volume. The start time (/proc/<pid>/stat field 22) tells a reused
// pid from the owner. A name is `<host>+<scope>+<pid>+<start>~<anything>`.

import { createHash } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import os from 'node:os';
import { procShowsAllProcesses, readProcStat } from './proc.js';

export interface Owner {
  /** The hostname, with anything but letters, digits, `.` and `-` replaced by `_`. */
  host: string;
  /** 8 hex digits naming the kernel boot and PID namespace the pid belongs to. */
  scope: string;
  pid: number;
  /** Clock ticks since boot when the process started. */
  startTime: number;
}

export type Liveness = 'alive' | 'gone' | 'unknown';

/**
 * Files whose owner cannot be judged (another host or PID namespace on shared storage, names we
 * cannot parse) are removed once not modified for this long, which must exceed the longest
 * possible build: a build runs a few Nix steps (an evaluation and a realisation, each killed at
 * NIXERY_EVAL_TIMEOUT / NIXERY_BUILD_TIMEOUT whose largest allowed values are 24 h, and a closure
 * query killed at 5 minutes), then packs its layers — so 5 days. It can be
 * this generous because every host removes its own dead processes' files at once: this bound
 * only reaches the files of a host (or container) that never comes back.
 */
export const UNJUDGED_MAX_AGE_MS = 5 * 24 * 3600 * 1000;

const TAG = /^([A-Za-z0-9.-]{1,64})\+([0-9a-f]{8})\+(\d{1,10})\+(\d{1,20})$/;
const SEPARATOR = '~';

export function formatOwner(owner: Owner): string {
  return `${owner.host}+${owner.scope}+${owner.pid}+${owner.startTime}`;
}

/** The owner a tag names, or null when it is not a tag. */
export function parseOwner(tag: string): Owner | null {
  const m = TAG.exec(tag);
  if (!m) return null;
  const pid = Number(m[3]);
  const startTime = Number(m[4]);
  if (!Number.isSafeInteger(startTime) || pid < 1) return null;
  return { host: m[1]!, scope: m[2]!, pid, startTime };
}

/** A file name owned by `owner` (default: this process); `rest` makes it unique. */
export function ownedName(rest: string, owner: Owner = currentOwner()): string {
  return `${formatOwner(owner)}${SEPARATOR}${rest}`;
}

/** The owner in a file name made by `ownedName`, or null for any other name. */
export function ownerOfName(name: string): Owner | null {
  const at = name.indexOf(SEPARATOR);
  return at < 0 ? null : parseOwner(name.slice(0, at));
}

export function hostLabel(hostname: string): string {
  return (hostname.replace(/[^A-Za-z0-9.-]/g, '_') || '_').slice(0, 64);
}

function readOr(read: () => string, fallback: string): string {
  try {
    return read();
  } catch {
    return fallback;
  }
}

/** The kernel boot and PID namespace this process sees pids in. */
export function currentScope(): string {
  const boot = readOr(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(), 'no-boot-id');
  const pidNamespace = readOr(() => readlinkSync('/proc/self/ns/pid'), 'no-pid-namespace');
  return createHash('sha256').update(`${boot}\n${pidNamespace}`).digest('hex').slice(0, 8);
}

let self: Owner | undefined;

/** This process as an owner (computed once: the hostname may change later, we may not). */
export function currentOwner(): Owner {
  self ??= {
    host: hostLabel(os.hostname()),
    scope: currentScope(),
    pid: process.pid,
    // Without /proc the start time is unknown: 0 never matches, and others cannot judge us anyway.
    startTime: readProcStat(process.pid)?.startTime ?? 0,
  };
  return self;
}

/**
 * Whether `owner` still runs: `alive`, `gone` (no such pid, or the pid now belongs to a process
 * started at another time), or `unknown` when we cannot see its processes (another host or
 * namespace, or a /proc that does not show every process).
 */
export function ownerLiveness(owner: Owner): Liveness {
  const me = currentOwner();
  if (owner.pid === me.pid && owner.startTime === me.startTime && owner.host === me.host && owner.scope === me.scope) return 'alive';
  if (owner.host !== me.host || owner.scope !== me.scope) return 'unknown';
  if (!procShowsAllProcesses()) return 'unknown';
  const stat = readProcStat(owner.pid);
  if (stat === null || stat.zombie) return 'gone';
  return stat.startTime === owner.startTime ? 'alive' : 'gone';
}

/**
 * Whether a temporary file or directory called `name`, last modified at `mtimeMs`, is abandoned:
 * its owner is gone, or cannot be judged and it has not been modified for UNJUDGED_MAX_AGE_MS.
 * A live owner's files are never abandoned.
 */
export function isAbandoned(name: string, mtimeMs: number, now: number = Date.now()): boolean {
  const owner = ownerOfName(name);
  const liveness = owner ? ownerLiveness(owner) : 'unknown';
  if (liveness === 'alive') return false;
  if (liveness === 'gone') return true;
  return now - mtimeMs > UNJUDGED_MAX_AGE_MS;
}
