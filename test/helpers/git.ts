// Git repositories for package-source tests, and a `git` in front of the real one that records
// every `git ls-remote` and can make it slow (a slow remote, as far as the registry can tell).

import { execFile } from 'node:child_process';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** Runs git in `repo` with a fixed identity; resolves with trimmed stdout. */
export async function git(repo: string, ...args: string[]): Promise<string> {
  const { stdout } = await execFileP('git', ['-C', repo, '-c', 'user.email=t@example.org', '-c', 'user.name=test', ...args], { maxBuffer: 64 << 20 });
  return stdout.trim();
}

/** A repository on branch `main` holding a copy of `files` (if given) in one commit; returns its commit. */
export async function initRepo(repo: string, files?: string): Promise<string> {
  await mkdir(repo, { recursive: true });
  if (files) await execFileP('cp', ['-r', `${files}/.`, repo]);
  await execFileP('git', ['init', '-q', '-b', 'main', repo]);
  await git(repo, 'add', '-A');
  await git(repo, 'commit', '-q', '--allow-empty', '-m', 'first');
  return git(repo, 'rev-parse', 'HEAD');
}

/** Changes the example set's hello greeting (so its image differs) and commits; returns the commit. */
export async function commitGreeting(repo: string, greeting: string): Promise<string> {
  const file = path.join(repo, 'default.nix');
  const text = await readFile(file, 'utf8');
  const next = text.replace(/echo '[^']*'/, `echo '${greeting}'`);
  if (next === text) throw new Error('no greeting to change in default.nix');
  await writeFile(file, next);
  await git(repo, 'commit', '-qam', greeting);
  return git(repo, 'rev-parse', 'HEAD');
}

export interface GitWrapper {
  /** Put first in PATH. */
  bin: string;
  /** PATH with the wrapper first. */
  path: string;
  /** Seconds every `git ls-remote` sleeps before running. */
  setDelay(seconds: number): Promise<void>;
  /** The `git ls-remote` command lines so far, with their start time (ms). */
  lsRemotes(): Promise<Array<{ at: number; args: string }>>;
}

export async function gitWrapper(dir: string): Promise<GitWrapper> {
  const bin = path.join(dir, 'git-wrapper-bin');
  await mkdir(bin, { recursive: true });
  const log = path.join(dir, 'ls-remote.log');
  const delay = path.join(dir, 'ls-remote.delay');
  const real = (await execFileP('sh', ['-c', 'command -v git'])).stdout.trim();
  await writeFile(delay, '0');
  await writeFile(log, '');
  await writeFile(
    path.join(bin, 'git'),
    `#!/bin/sh
if [ "$1" = "ls-remote" ]; then
  echo "$(date +%s%3N) $*" >> '${log}'
  sleep "$(cat '${delay}')"
fi
exec '${real}' "$@"
`,
  );
  await chmod(path.join(bin, 'git'), 0o755);
  return {
    bin,
    path: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    setDelay: (seconds) => writeFile(delay, String(seconds)),
    async lsRemotes() {
      return (await readFile(log, 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((l) => ({ at: Number(l.slice(0, l.indexOf(' '))), args: l.slice(l.indexOf(' ') + 1) }));
    },
  };
}
