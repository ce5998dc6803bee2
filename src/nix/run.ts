// Running Nix (and git) as child processes: both pipes drained concurrently, a wall-clock limit
// over the whole invocation that kills the whole process tree, and cancellation by AbortSignal.
// Which limit applies is the caller's: NIXERY_EVAL_TIMEOUT for evaluations, NIXERY_BUILD_TIMEOUT
// for a realisation, a fixed one for store queries. NIX_TIMEOUT is not one of them: it limits
// each builder and is Nix's own (`--timeout`, see realise.ts).
// Every child is registered in processes.ts, which makes sure none outlives this process.

import { spawn, type ChildProcess } from 'node:child_process';
import { NixFailedError, NixTimeoutError, OutOfDescriptorsError, ShuttingDownError, type NixTimeoutKind } from '../errors.js';
import { cleanStderr } from './stderr.js';
import { childEnvironment } from '../secrets.js';
import { descendantsIn, listProcesses } from '../util/proc.js';
import { childTmpDir, isShuttingDown, trackProcess, withParentDeathSignal } from './processes.js';
import type { NixCommand, NixFailure, NixRunObserver } from './observer.js';

export { NIX_COMMANDS, NIX_FAILURES, type NixCommand, type NixFailure, type NixRunObserver } from './observer.js';

export interface RunOptions {
  /** Wall-clock limit for the whole invocation (its process tree is killed past it), in milliseconds. */
  timeoutMs: number;
  /** What the invocation is for, used in error messages (e.g. `realising hello`). */
  what: string;
  /** Added to (and overriding) this process's environment, which is always passed through (less secrets.ts's WITHHELD_FROM_CHILDREN). */
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  /** Time between SIGTERM (lets Nix stop its builders) and SIGKILL. Default 2000 ms. */
  killGraceMs?: number;
  cwd?: string;
  /** Called with the child's PID once it is started (tests use it to watch the process tree). */
  onSpawn?: (pid: number) => void;
  /** Takes stdout as it comes (then it is not kept: the result's stdout is empty), for large outputs. */
  onStdout?: (chunk: Buffer) => void;
}

export interface ProcessResult {
  /** Empty when `onStdout` took it. */
  stdout: string;
  stderr: string;
  /** Exit code, or null when the process died from a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  aborted: boolean;
  /** Stopped by stopAllNixProcesses (shutdown). */
  stopped: boolean;
}

/** Past this much stderr the middle is dropped (the head and tail carry the messages). */
const STDERR_KEEP_BYTES = 4 << 20;

/**
 * Runs a program to completion and reports how it ended; never throws for a non-zero exit.
 * The child leads its own process group so a timeout or abort can kill everything it started.
 */
export function runProcess(program: string, args: readonly string[], opts: RunOptions): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(abortReason(opts.signal));
      return;
    }
    if (isShuttingDown()) {
      reject(new ShuttingDownError());
      return;
    }
    // Through setpriv where available: the child gets SIGKILL when this process dies.
    const command = withParentDeathSignal(program, args);
    let child: ChildProcess;
    try {
      child = spawn(command.command, command.args, {
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...childEnvironment(process.env), TMPDIR: childTmpDir(), ...opts.env },
        cwd: opts.cwd,
      });
    } catch (err) {
      reject(startError(program, opts.what, err));
      return;
    }
    // Before anything else: a failed spawn (EMFILE, ENOENT) is an 'error' event, and one with
    // no listener would end this process. Out of descriptors, the child has no pipes either.
    const cleanups: Array<() => void> = [];
    child.on('error', (err) => {
      for (const cleanup of cleanups) cleanup();
      reject(startError(program, opts.what, err));
    });
    if (child.pid === undefined || !child.stdout || !child.stderr) return;
    opts.onSpawn?.(child.pid);
    const stdout: Buffer[] = [];
    const stderr = new BoundedBuffer(STDERR_KEEP_BYTES);
    const onStdout = opts.onStdout;
    child.stdout.on('data', onStdout ? (chunk: Buffer) => onStdout(chunk) : (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));

    let timedOut = false;
    let aborted = false;
    let stopped = false;
    let killTimer: NodeJS.Timeout | undefined;
    // Builders may run in sessions of their own (Nix uses setsid): note them when stopping,
    // while they are still our descendants, so the SIGKILL pass reaches them even if Nix is gone.
    let descendants: number[] = [];
    const killAll = (pid: number): void => {
      signalGroup(pid, 'SIGKILL');
      for (const p of [...descendants, ...descendantsOf(pid)]) signalPid(p, 'SIGKILL');
    };
    const stop = (graceMs = opts.killGraceMs ?? 2000): void => {
      if (killTimer !== undefined || child.pid === undefined) return;
      const pid = child.pid;
      descendants = descendantsOf(pid);
      signalGroup(pid, graceMs > 0 ? 'SIGTERM' : 'SIGKILL');
      killTimer = setTimeout(() => killAll(pid), graceMs);
    };
    const untrack = trackProcess(child.pid, (graceMs) => {
      stopped = true;
      stop(graceMs);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      stop();
    }, opts.timeoutMs);
    const onAbort = (): void => {
      aborted = true;
      stop();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    cleanups.push(() => {
      untrack();
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      opts.signal?.removeEventListener('abort', onAbort);
    });
    // 'close' fires once the process has exited and both pipes are drained.
    child.on('close', (code, signal) => {
      untrack();
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (killTimer !== undefined) {
        // The leader is gone; make sure nothing it started outlives it.
        clearTimeout(killTimer);
        killAll(child.pid!);
      }
      // setpriv could not start the program: the same failure as a spawn error without it.
      const startFailure = command.wrapped && code === 127 ? /^setpriv: failed to execute [^\n]*?: (.*)$/m.exec(stderr.toString()) : null;
      if (startFailure) {
        reject(new NixFailedError(opts.what, `cannot run ${program}: ${startFailure[1]}`, null));
        return;
      }
      resolve({
        stdout: Buffer.concat(stdout).toString('utf8'),
        // No control bytes, protocol frames or secrets past this point (src/nix/stderr.ts).
        stderr: cleanStderr(stderr.toString()),
        code,
        signal,
        timedOut,
        aborted,
        stopped,
      });
    });
  });
}

export interface RunNixOptions extends RunOptions {
  /** Which limit `timeoutMs` is: the kind of the NixTimeoutError thrown past it. */
  timeoutKind: NixTimeoutKind;
  /** What the invocation is for, as its observer is told (default `other`). */
  command?: NixCommand;
  /** Told that the run starts and how it fails (the registry's metrics); none by default. */
  observer?: NixRunObserver;
  /** The message of a failure, from Nix's stderr (default: the stderr itself). */
  failureText?: (stderr: string) => string;
}

/**
 * Runs a Nix command: reports it to `observer`, throws NixTimeoutError of `timeoutKind` past
 * `timeoutMs`, NixFailedError on a non-zero exit (its stderr, or `failureText(stderr)`), and the
 * signal's reason when aborted.
 */
export async function runNix(program: string, args: readonly string[], opts: RunNixOptions): Promise<{ stdout: string; stderr: string }> {
  const command = opts.command ?? 'other';
  const failed = (reason: NixFailure): void => opts.observer?.failed(command, reason);
  opts.observer?.started(command);
  let result: ProcessResult;
  try {
    result = await runProcess(program, args, opts);
  } catch (err) {
    failed(err instanceof NixFailedError ? 'exit' : 'stopped');
    throw err;
  }
  if (result.aborted && opts.signal) {
    failed('stopped');
    throw abortReason(opts.signal);
  }
  if (result.stopped && result.code !== 0) {
    failed('stopped');
    throw new ShuttingDownError();
  }
  if (result.timedOut) {
    failed('timeout');
    throw new NixTimeoutError(opts.timeoutKind, opts.what, formatSeconds(opts.timeoutMs));
  }
  if (result.code !== 0) {
    failed('exit');
    throw new NixFailedError(opts.what, opts.failureText ? opts.failureText(result.stderr) : result.stderr, result.code);
  }
  return { stdout: result.stdout, stderr: result.stderr };
}

/** Enables the `nix` command where it is still experimental (Nix 2.8); harmless on newer Nix. */
export const NIX_COMMAND_FLAGS = ['--extra-experimental-features', 'nix-command'] as const;

function formatSeconds(ms: number): number {
  return Math.round(ms) / 1000;
}

/** Why a program could not be started: out of descriptors is ours to retry (503), the rest the program's. */
function startError(program: string, what: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EMFILE' || code === 'ENFILE') return new OutOfDescriptorsError(`starting ${program.split('/').pop()} for ${what}`, `spawn ${program}: ${code}`);
  return new NixFailedError(what, `cannot run ${program}: ${(err as Error).message}`, null);
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    // Already gone.
  }
}

function signalPid(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

/** PIDs of every live descendant of `root`, from /proc (empty where /proc is unavailable). */
export function descendantsOf(root: number): number[] {
  return descendantsIn(root, listProcesses());
}

/** Keeps the first and last `limit / 2` bytes of a stream, dropping the middle. */
class BoundedBuffer {
  private head: Buffer[] = [];
  private headBytes = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  private dropped = 0;
  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    const half = this.limit / 2;
    if (this.headBytes < half) {
      const take = chunk.subarray(0, half - this.headBytes);
      this.head.push(take);
      this.headBytes += take.length;
      chunk = chunk.subarray(take.length);
    }
    if (chunk.length === 0) return;
    this.tail.push(chunk);
    this.tailBytes += chunk.length;
    while (this.tailBytes - this.tail[0]!.length >= half) {
      const first = this.tail.shift()!;
      this.tailBytes -= first.length;
      this.dropped += first.length;
    }
  }

  toString(): string {
    const head = Buffer.concat(this.head).toString('utf8');
    const tail = Buffer.concat(this.tail).toString('utf8');
    return this.dropped > 0 ? `${head}\n[... ${this.dropped} bytes of output omitted ...]\n${tail}` : head + tail;
  }
}
