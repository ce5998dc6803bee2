// A private containerd for end-to-end tests: its own root, state and socket under a temp dir,
// stopped by PID when the test is done.

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export interface Containerd {
  address: string;
  /** Runs `ctr` against this containerd; resolves with stdout, rejects with stderr. */
  ctr(args: string[], options?: { timeoutMs?: number }): Promise<string>;
  stop(): Promise<void>;
}

export async function startContainerd(): Promise<Containerd> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-containerd-'));
  const address = path.join(dir, 'containerd.sock');
  const config = path.join(dir, 'config.toml');
  // No CRI, no metrics listener: just what `ctr pull/import/run` needs.
  await writeFile(
    config,
    `version = 2
root = "${dir}/root"
state = "${dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "${address}"
[ttrpc]
  address = "${address}.ttrpc"
[debug]
  address = "${dir}/debug.sock"
[metrics]
  address = ""
`,
  );
  const child: ChildProcess = spawn('containerd', ['--config', config], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => {
    log = (log + d.toString()).slice(-20000);
  });
  const until = Date.now() + 30_000;
  for (;;) {
    try {
      await stat(address);
      break;
    } catch {
      if (Date.now() > until || child.exitCode !== null) throw new Error(`containerd did not start: ${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const ctr = async (args: string[], options: { timeoutMs?: number } = {}) => {
    try {
      const { stdout } = await execFileP('ctr', ['--address', address, ...args], { timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; message: string };
      throw new Error(`ctr ${args.join(' ')} failed: ${e.stderr || e.message}\n${e.stdout ?? ''}`);
    }
  };
  return {
    address,
    ctr,
    async stop() {
      try {
        process.kill(-child.pid!, 'SIGTERM');
      } catch {
        /* already gone */
      }
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
      // runc state and snapshot mounts live under dir; containerd has exited, so remove it all.
      await rm(dir, { recursive: true, force: true }).catch(() => {});
    },
  };
}

/** Runs a command of an image with `ctr run` (native snapshotter, no networking) and returns stdout. */
export async function ctrRun(c: Containerd, ref: string, cmd: string[]): Promise<string> {
  // containerd's stdio copy can lose all output of a process that exits at once (a known race:
  // containerd/containerd#770, concourse/concourse#6775); an empty answer is run again (twice at
  // most). A run whose output is really empty still answers '' in the end.
  let out = '';
  for (let attempt = 0; attempt < 3 && out === ''; attempt++) {
    const id = `t${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    out = await c.ctr(['run', '--rm', '--snapshotter', 'native', ref, id, ...cmd]);
  }
  return out;
}
