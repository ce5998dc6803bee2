// A private Docker engine for end-to-end tests (Debian's docker.io): its own data root, exec
// root and socket under a temp dir, no bridge or iptables, the vfs storage driver; stopped by PID.
// `docker login` credentials go to a private DOCKER_CONFIG.

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
/** Debian's client, matching its engine (another docker may be first on PATH). */
const DOCKER = '/usr/bin/docker';

export interface DockerEngine {
  /** Runs the docker CLI against this engine; resolves with stdout, rejects with stderr. */
  docker(args: string[], options?: { input?: string; timeoutMs?: number }): Promise<string>;
  stop(): Promise<void>;
}

export async function startDockerd(): Promise<DockerEngine> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-dockerd-'));
  const socket = path.join(dir, 'docker.sock');
  const child: ChildProcess = spawn(
    'dockerd',
    ['--bridge=none', '--iptables=false', '--ip6tables=false', '--storage-driver=vfs', `--data-root=${dir}/data`, `--exec-root=${dir}/exec`, `--pidfile=${dir}/docker.pid`, `--host=unix://${socket}`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
  const env = { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: path.join(dir, 'config') };
  const docker = async (args: string[], options: { input?: string; timeoutMs?: number } = {}) => {
    const run = execFileP(DOCKER, args, { env, timeout: options.timeoutMs ?? 180_000, maxBuffer: 16 * 1024 * 1024 });
    if (options.input !== undefined) {
      run.child.stdin!.end(options.input);
    }
    try {
      return (await run).stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`docker ${args.join(' ')} failed: ${e.stderr || e.message}`);
    }
  };
  const until = Date.now() + 60_000;
  for (;;) {
    const up = await stat(socket).then(
      () => docker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 5000 }).then(() => true, () => false),
      () => false,
    );
    if (up) break;
    if (Date.now() > until || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error(`dockerd did not start: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    docker,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await new Promise((r) => child.once('exit', r));
        clearTimeout(killer);
      }
      await rm(dir, { recursive: true, force: true }).catch(() => {});
    },
  };
}
