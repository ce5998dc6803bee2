// Runs `nixery serve` as a real process on loopback (node dist/src/cli.js serve), for tests that
// kill it, signal it or run several on one storage directory.

import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { freePort } from './net.js';

const CLI = path.resolve('dist/src/cli.js');

export interface ServeProcess {
  child: ChildProcess;
  pid: number;
  port: number;
  url: string;
  /** The last lines of its output (stdout and stderr). */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends `signal` (default SIGTERM) unless it has exited, and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `wrapper`: a command that execs the server (keeping its pid), e.g. `['prlimit', '--nofile=512']`. */
export async function startServe(options: { pkgsPath: string; storagePath: string; env?: Record<string, string>; port?: number; scheme?: 'http' | 'https'; wrapper?: string[] }): Promise<ServeProcess> {
  const port = options.port ?? (await freePort());
  let output = '';
  const [command, ...args] = [...(options.wrapper ?? []), process.execPath, CLI, 'serve'];
  const child = spawn(command!, args, {
    env: {
      ...process.env,
      NIX_CONFIG: 'substituters =',
      NIXERY_PKGS_PATH: options.pkgsPath,
      STORAGE_PATH: options.storagePath,
      PORT: String(port),
      NIXERY_HOST: '127.0.0.1',
      NIXERY_LOG_LEVEL: 'info',
      NIX_TIMEOUT: '600',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = (d: Buffer) => (output = (output + d.toString()).slice(-20_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const url = `${options.scheme ?? 'http'}://127.0.0.1:${port}`;
  // Up once the port accepts connections, whatever its scheme, authentication or log level.
  const until = Date.now() + 30_000;
  while (!(await accepts(port))) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`nixery serve exited: ${output}`);
    if (Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`nixery serve did not come up: ${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    child,
    pid: child.pid!,
    port,
    url,
    output: () => output,
    exited,
    stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
