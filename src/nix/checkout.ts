// The cheap identity of a local package set that is a git checkout: the commit checked out plus
// a hash of what is uncommitted in the directory (modified, staged, deleted and untracked files,
// with their current contents). Git's index already knows which files changed since they were
// last looked at, so this costs a `git status`, not a read of the whole tree.
//
// Ignored files are not part of it (as they are not part of a commit): a package set that
// reads ignored files should not rely on a checkout's identity. Directories that are not in
// HEAD's tree (untracked or ignored as a whole) are not treated as checkouts.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { runProcess } from './run.js';

export interface CheckoutIdentity {
  commit: string;
  /** Hex hash of the uncommitted changes in the directory, or null when there are none. */
  dirty: string | null;
  /** How many paths are uncommitted. */
  changes: number;
}

export interface CheckoutOptions {
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
}

/** git's output, or null when it failed or could not run (then the tree is hashed instead). */
async function git(dir: string, args: string[], opts: CheckoutOptions): Promise<string | null> {
  let result;
  try {
    result = await runProcess('git', args, {
      cwd: dir,
      timeoutMs: opts.timeoutMs,
      what: `git ${args[0]} in the package set`,
      // A refresh in the background must never take the index lock a user's git needs.
      env: { GIT_TERMINAL_PROMPT: '0', GIT_OPTIONAL_LOCKS: '0', ...opts.env },
      killGraceMs: 500,
    });
  } catch {
    return null;
  }
  return result.code === 0 && !result.timedOut ? result.stdout : null;
}

/**
 * The checkout identity of `dir`, or null when it is not (part of) a git checkout with a commit
 * whose tree holds `dir`, or git cannot tell (not installed, a repository it refuses to use).
 */
export async function checkoutIdentity(dir: string, opts: CheckoutOptions): Promise<CheckoutIdentity | null> {
  if (!(await mayBeInCheckout(dir, opts))) return null;
  // `HEAD:./` is the directory's tree in HEAD: it fails for a directory HEAD does not have.
  const revs = await git(dir, ['rev-parse', '--show-toplevel', 'HEAD', 'HEAD:./'], opts);
  const lines = revs?.split('\n') ?? [];
  const top = lines[0];
  const commit = lines[1];
  if (!top || !commit || !/^[0-9a-f]{40,64}$/.test(commit) || !/^[0-9a-f]{40,64}$/.test(lines[2] ?? '')) return null;
  const status = await git(dir, ['status', '--porcelain=v1', '-z', '--untracked-files=all', '--no-renames', '--', '.'], opts);
  if (status === null) return null;
  // Entries are `XY path`, NUL-terminated; paths are relative to the top of the checkout.
  const entries = status
    .split('\0')
    .filter((e) => e.length > 3)
    .map((e) => ({ code: e.slice(0, 2), path: e.slice(3) }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (entries.length === 0) return { commit, dirty: null, changes: 0 };
  const hash = createHash('sha256');
  for (const { code, path } of entries) {
    hash.update(`${code}\0${path}\0`);
    hash.update(await currentContent(join(top, path)));
    hash.update('\0');
  }
  return { commit, dirty: hash.digest('hex'), changes: entries.length };
}

/**
 * Whether git could find a repository for `dir`: GIT_DIR names one, or `dir` or a directory above
 * it has a `.git` (a directory, or a worktree's file). Git finds none otherwise (a bare repository
 * above has no work tree, which checkoutIdentity refuses anyway), so starting it (~10 ms) is
 * skipped. Anything but "not there" counts as maybe.
 */
async function mayBeInCheckout(dir: string, opts: CheckoutOptions): Promise<boolean> {
  if ({ ...process.env, ...opts.env }['GIT_DIR']) return true;
  for (let d = resolve(dir); ; d = dirname(d)) {
    try {
      await lstat(join(d, '.git'));
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') return true;
    }
    if (dirname(d) === d) return false;
  }
}

/** What a changed path holds now: its type, executable bit and contents (or link target). */
async function currentContent(file: string): Promise<string> {
  let st;
  try {
    st = await lstat(file);
  } catch {
    return 'missing';
  }
  if (st.isSymbolicLink()) return `symlink:${await readlink(file)}`;
  if (!st.isFile()) return 'other';
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return `${(st.mode & 0o100) !== 0 ? 'executable' : 'regular'}:${h.digest('hex')}`;
}
