// Loaded into every process of `npm run test:unit` (NODE_OPTIONS=--import): any attempt to start
// Nix (nix, nix-store, nix-instantiate, nix-build, …) throws, and is written to the file named by
// NIXERY_NO_NIX_LOG, which scripts/test-unit.sh checks. So a test that starts Nix fails the fast
// run even where the error it got was swallowed (a readiness probe, a background clean-up).

import childProcess from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';

const NIX_PROGRAM = /^nix(-[a-z-]+)?$/;

function refuse(command: string): void {
  const line = `${process.argv[1] ?? process.argv0}: tried to run ${command}`;
  if (process.env.NIXERY_NO_NIX_LOG) appendFileSync(process.env.NIXERY_NO_NIX_LOG, `${line}\n`);
  throw new Error(`test:unit runs without Nix, but ${line}`);
}

/** Programs that run another one named in their arguments (src/nix/run.ts goes through setpriv). */
const WRAPPERS = new Set(['setpriv', 'env', 'nice', 'ionice', 'timeout', 'prlimit', 'unshare', 'setsid', 'sudo', 'chroot', 'nsenter']);
const SHELLS = new Set(['sh', 'bash', 'dash']);

function checkProgram(file: unknown, args?: unknown): void {
  if (typeof file !== 'string') return;
  const argv = Array.isArray(args) ? args.filter((a): a is string => typeof a === 'string') : [];
  const name = path.basename(file);
  const nix = NIX_PROGRAM.test(name) || (WRAPPERS.has(name) && argv.some((a) => NIX_PROGRAM.test(path.basename(a))));
  if (nix) refuse([file, ...argv].join(' ').slice(0, 200));
  const c = argv.indexOf('-c');
  if (SHELLS.has(name) && c >= 0) checkShell(argv[c + 1]);
}

/** A shell command line: every command word of it (after `;`, `&&`, `|`, `exec`…). */
function checkShell(command: unknown): void {
  if (typeof command !== 'string') return;
  for (const part of command.split(/[;&|()\n]+/)) {
    const words = part.trim().split(/\s+/).filter((w) => !/^\w+=/.test(w) && w !== 'exec' && w !== 'env');
    if (words[0]) checkProgram(words[0]);
  }
}

type Fn = ((...args: unknown[]) => unknown) & { [promisify.custom]?: Fn };
const cp = childProcess as unknown as Record<string, Fn>;

/** `original` checked first; its promisified form (exec and execFile have their own) too. */
function guarded(original: Fn, check: (args: unknown[]) => void): Fn {
  const wrapper: Fn = function (this: unknown, ...args: unknown[]) {
    check(args);
    return original.apply(this, args);
  };
  const custom = original[promisify.custom];
  if (custom) Object.defineProperty(wrapper, promisify.custom, { value: guarded(custom, check) });
  return wrapper;
}

for (const name of ['spawn', 'spawnSync', 'execFile', 'execFileSync'] as const) cp[name] = guarded(cp[name]!, (args) => checkProgram(args[0], args[1]));
for (const name of ['exec', 'execSync'] as const) cp[name] = guarded(cp[name]!, (args) => checkShell(args[0]));
syncBuiltinESMExports();
