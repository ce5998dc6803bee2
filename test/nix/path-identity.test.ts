// The identity of a local package set: a git checkout's commit and uncommitted changes where it
// is one (a `git status`, no reading of the tree), else a content hash that rereads only the
// files whose stat changed.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdir, mkdtemp, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { INLINE_MAX_READ_BYTES, TreeHasher, hashTree } from '../../src/nix/tree-hash.js';
import { checkoutIdentity } from '../../src/nix/checkout.js';
import { pinSource } from '../../src/nix/resolve-tags.js';
import { git, initRepo } from '../helpers/git.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const opts = { timeoutMs: 20_000 };

describe('content hash with a stat cache', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-tree-hash-'));
    for (let i = 0; i < 50; i++) {
      await mkdir(path.join(dir, `d${i % 5}`), { recursive: true });
      await writeFile(path.join(dir, `d${i % 5}`, `f${i}`), `file ${i}\n`.repeat(100));
    }
    // Files changed within the last two seconds are always reread (they may change again
    // within one timestamp tick): let them age.
    await sleep(2100);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('a second pass over an unchanged tree reads nothing and gives the same hash', async () => {
    const hasher = new TreeHasher();
    const first = await hasher.hash(dir);
    assert.equal(first.files, 50);
    assert.ok(first.bytesRead > 0);
    const second = await hasher.hash(dir);
    assert.equal(second.digest, first.digest);
    assert.equal(second.bytesRead, 0, 'only stat calls');
    assert.equal(first.digest, await hashTree(dir), 'the same hash as a fresh hasher');
  });

  test('touched files are reread (same hash); changed contents are found even with the old size and mtime', async () => {
    const hasher = new TreeHasher();
    const base = await hasher.hash(dir);
    const file = path.join(dir, 'd1', 'f1');
    const now = new Date();
    await utimes(file, now, now);
    const touched = await hasher.hash(dir);
    assert.equal(touched.digest, base.digest);
    assert.equal(touched.bytesRead, (await stat(file)).size, 'just the touched file');

    // Same size, modification time put back: the change time still tells.
    const before = await stat(file);
    await writeFile(file, `FILE 1\n`.repeat(100));
    await utimes(file, before.atime, before.mtime);
    const changed = await hasher.hash(dir);
    assert.notEqual(changed.digest, base.digest);
    assert.equal(changed.digest, await hashTree(dir));
  });
});

describe('inline for a small tree, the worker thread for a big one', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-tree-hash-sizes-'));
    await mkdir(path.join(dir, 'small'));
    for (let i = 0; i < 30; i++) await writeFile(path.join(dir, 'small', `f${i}`), `file ${i}\n`.repeat(50));
    await mkdir(path.join(dir, 'big'));
    // More bytes than an inline pass may read, in a few files.
    for (let i = 0; i < 8; i++) await writeFile(path.join(dir, 'big', `blob${i}`), Buffer.alloc(INLINE_MAX_READ_BYTES / 2, i + 1));
    await sleep(2100); // let the files age, so their digests are remembered
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('a small tree is hashed inline; a big one in the worker while the event loop runs; the same digests either way', async () => {
    const small = path.join(dir, 'small');
    const big = path.join(dir, 'big');
    const inline = await new TreeHasher().hash(small);
    assert.equal(inline.inWorker, false);
    const forced = new TreeHasher({ maxEntries: 5 });
    const inWorker = await forced.hash(small);
    assert.equal(inWorker.inWorker, true, 'past the entry bound: the worker');
    assert.equal(inWorker.digest, inline.digest);
    await forced.close();

    const hasher = new TreeHasher();
    let ticks = 0;
    let ticking = true;
    const tick = (): void => {
      ticks++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const bigPass = await hasher.hash(big);
    ticking = false;
    assert.equal(bigPass.inWorker, true, 'past the byte bound: the worker');
    assert.equal(bigPass.bytesRead, 8 * (INLINE_MAX_READ_BYTES / 2));
    assert.ok(ticks > 1, `the event loop ran while the big tree was hashed (${ticks} turns)`);
    const again = await hasher.hash(big);
    assert.equal(again.inWorker, true, 'a hasher that met a big tree keeps the worker');
    assert.equal(again.bytesRead, 0);
    assert.equal(again.digest, bigPass.digest);
    await hasher.close();
    const bigInline = await new TreeHasher({ maxReadBytes: Number.POSITIVE_INFINITY }).hash(big);
    assert.equal(bigInline.inWorker, false);
    assert.equal(bigInline.digest, bigPass.digest, 'inline and worker passes hash alike');
  });

  test('when a tree outgrows the inline bounds, the worker starts from the digests remembered inline', async () => {
    const growing = await mkdtemp(path.join(dir, 'growing-'));
    for (let i = 0; i < 10; i++) await writeFile(path.join(growing, `old${i}`), `old ${i}\n`.repeat(100));
    await sleep(2100); // let the files age, so their digests are remembered
    const hasher = new TreeHasher({ maxEntries: 15 });
    const first = await hasher.hash(growing);
    assert.equal(first.inWorker, false);
    assert.equal(first.bytesRead, 10 * 'old 0\n'.length * 100);
    for (let i = 0; i < 10; i++) await writeFile(path.join(growing, `new${i}`), `new ${i}\n`);
    const grown = await hasher.hash(growing);
    assert.equal(grown.inWorker, true);
    assert.equal(grown.bytesRead, 10 * 'new 0\n'.length, 'only the new files are read');
    assert.equal(grown.digest, await hashTree(growing));
    await hasher.close();
  });
});

describe('git checkout identity', () => {
  let dir: string;
  let repo: string;
  let first: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-checkout-'));
    repo = path.join(dir, 'repo');
    await mkdir(path.join(repo, 'pkgs'), { recursive: true });
    await mkdir(path.join(repo, 'other'), { recursive: true });
    await writeFile(path.join(repo, 'pkgs', 'default.nix'), '{ ... }: { }\n');
    await writeFile(path.join(repo, 'other', 'notes'), 'x\n');
    await writeFile(path.join(repo, '.gitignore'), 'generated/\n');
    first = await initRepo(repo);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const revision = async (p: string) => (await pinSource({ kind: 'path', path: p }, 'latest', opts)).revision!;

  test('a clean checkout is its commit; every uncommitted change (even a second edit of one file) is another identity', async () => {
    const pkgs = path.join(repo, 'pkgs');
    assert.equal(await revision(pkgs), `git:${first}`);
    assert.deepEqual(await checkoutIdentity(pkgs, opts), { commit: first, dirty: null, changes: 0 });

    await appendFile(path.join(pkgs, 'default.nix'), '# one\n');
    const edited = await revision(pkgs);
    assert.match(edited, new RegExp(`^git:${first}\\+dirty\\.[0-9a-f]{32}$`));
    await appendFile(path.join(pkgs, 'default.nix'), '# two\n');
    const editedAgain = await revision(pkgs);
    assert.notEqual(editedAgain, edited, 'git status says the same; the contents differ');

    await writeFile(path.join(pkgs, 'new.nix'), '{ }\n');
    const untracked = await revision(pkgs);
    assert.notEqual(untracked, editedAgain, 'untracked files count');

    // Changes outside the package set's directory do not.
    await appendFile(path.join(repo, 'other', 'notes'), 'y\n');
    assert.equal(await revision(pkgs), untracked);

    await git(repo, 'add', '-A');
    await git(repo, 'commit', '-qm', 'second');
    const second = await git(repo, 'rev-parse', 'HEAD');
    assert.equal(await revision(pkgs), `git:${second}`);
    const pinned = await pinSource({ kind: 'path', path: pkgs }, 'latest', opts);
    assert.match(pinned.description, new RegExp(`git checkout at ${second}`));
  });

  test('git is asked only where it could find a repository: a .git above (a worktree\'s file too), or GIT_DIR', async () => {
    const worktree = path.join(dir, 'worktree');
    await git(repo, 'worktree', 'add', '-q', '--detach', worktree, 'HEAD');
    const head = await git(repo, 'rev-parse', 'HEAD');
    assert.deepEqual(await checkoutIdentity(path.join(worktree, 'pkgs'), opts), { commit: head, dirty: null, changes: 0 });
    const outside = await mkdtemp(path.join(tmpdir(), 'nixery-not-a-checkout-'));
    try {
      await writeFile(path.join(outside, 'default.nix'), '{ ... }: { }\n');
      assert.equal(await checkoutIdentity(outside, opts), null, 'no repository anywhere above');
      // GIT_DIR names a repository whatever the directory: git takes the directory as its work tree.
      const named = await checkoutIdentity(outside, { ...opts, env: { GIT_DIR: path.join(repo, '.git') } });
      assert.equal(named?.commit, head);
    } finally {
      await rm(outside, { recursive: true, force: true });
      await git(repo, 'worktree', 'remove', '--force', worktree);
    }
  });

  test('a directory HEAD does not have (untracked or ignored) is hashed instead', async () => {
    const generated = path.join(repo, 'generated');
    await mkdir(generated);
    await writeFile(path.join(generated, 'default.nix'), '{ ... }: { }\n');
    assert.equal(await checkoutIdentity(generated, opts), null);
    assert.equal(await revision(generated), `sha256:${await hashTree(generated)}`);
    const untracked = path.join(repo, 'fresh');
    await mkdir(untracked);
    await writeFile(path.join(untracked, 'default.nix'), '{ }\n');
    assert.match(await revision(untracked), /^sha256:[0-9a-f]{64}$/);
  });
});
