// The pinner on real git repositories (no Nix): first pins shared, background refreshes that
// move branches without anyone waiting, stale-if-error with persisted pins across a restart, a
// slow source, tags a source does not have, and what each source kind lists.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Pinner, sourceId, type PinnerOptions } from '../../src/builder/pins.js';
import { FilesystemStorage } from '../../src/storage/filesystem.js';
import { ManifestNotFoundError, SourceUnavailableError } from '../../src/errors.js';
import type { PackageSource } from '../../src/nix/source.js';
import { git, gitWrapper, initRepo, type GitWrapper } from '../helpers/git.js';
import { flipByteInFile } from '../helpers/damage.js';
import { scrubStorage } from '../../src/builder/scrub.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('pinner', () => {
  let dir: string;
  let repo: string;
  let wrapper: GitWrapper;
  let source: PackageSource;
  const pinners: Pinner[] = [];

  const make = (options: Partial<PinnerOptions> = {}): Pinner => {
    const p = new Pinner({ source, ttlMs: 60_000, resolveTimeoutMs: 20_000, env: { PATH: wrapper.path }, ...options });
    pinners.push(p);
    return p;
  };
  const commitOn = async (branch: string, message: string): Promise<string> => {
    await git(repo, 'checkout', '-q', branch);
    await git(repo, 'commit', '-q', '--allow-empty', '-m', message);
    const commit = await git(repo, 'rev-parse', 'HEAD');
    await git(repo, 'checkout', '-q', 'main');
    return commit;
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-pins-'));
    repo = path.join(dir, 'repo');
    await initRepo(repo);
    await git(repo, 'tag', 'v1');
    await git(repo, 'branch', 'feature');
    wrapper = await gitWrapper(dir);
    source = { kind: 'git', url: `file://${repo}` };
  });
  after(async () => {
    for (const p of pinners) await p.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('concurrent first pins share one look; other tags right after need none; a commit tag is for good', async () => {
    const pins = make();
    const before = (await wrapper.lsRemotes()).length;
    const all = await Promise.all(Array.from({ length: 8 }, () => pins.pin('main')));
    assert.ok(all.every((p) => p === all[0]), 'one pin object');
    assert.equal((await wrapper.lsRemotes()).length - before, 1, 'one git ls-remote');
    assert.match(all[0]!.pinned.description, /\(refs\/heads\/main\)$/);
    // The listing has every branch and tag: v1 comes from it.
    const v1 = await pins.pin('v1');
    assert.equal(v1.resolution.ref, 'refs/tags/v1');
    assert.equal((await wrapper.lsRemotes()).length - before, 1);
    // HEAD needs a look of its own (git cannot narrow it), once.
    const latest = await pins.pin('latest');
    assert.equal(latest.resolution.headBranch, 'refs/heads/main');
    assert.deepEqual(JSON.parse(latest.pinned.srcArgs), { url: `file://${repo}`, rev: latest.pinned.revision, ref: 'refs/heads/main' });
    const calls = (await wrapper.lsRemotes()).slice(before);
    assert.equal(calls.length, 2);
    assert.match(calls[0]!.args, /^ls-remote --heads --tags -- /);
    assert.match(calls[1]!.args, /^ls-remote --symref -- \S+ HEAD$/);
    assert.equal(pins.peek('main'), all[0]);
    assert.equal(pins.peek('never-asked'), undefined);
  });

  test('a moving branch is looked at again in the background: within the TTL, and no pin() waits for git', async () => {
    const ttlMs = 1500;
    const pins = make({ ttlMs });
    const first = await pins.pin('feature');
    pins.start();
    await wrapper.setDelay(0.4);
    try {
      const moved = await commitOn('feature', 'feature moves');
      const movedAt = Date.now();
      let seenAt = 0;
      let slowest = 0;
      while (Date.now() - movedAt < ttlMs + 1500) {
        const t = performance.now();
        const pin = await pins.pin('feature');
        slowest = Math.max(slowest, performance.now() - t);
        if (pin.pinned.revision === moved && !seenAt) seenAt = Date.now();
        if (pin.pinned.revision !== moved) assert.equal(pin, first, 'the same pin object until it moves');
        await sleep(20);
      }
      assert.ok(seenAt > 0, 'the new commit was seen');
      assert.ok(seenAt - movedAt <= ttlMs + 250, `seen ${seenAt - movedAt} ms after the move (TTL ${ttlMs} ms)`);
      assert.ok(slowest < 100, `a pin took ${slowest.toFixed(1)} ms (git ls-remote takes 400 ms)`);
      assert.ok(pins.stats.looks >= 2);
    } finally {
      await pins.stop();
      await wrapper.setDelay(0);
    }
  });

  test('a branch that is deleted is forgotten: 404 from then on', async () => {
    const pins = make({ ttlMs: 600 });
    await git(repo, 'branch', 'short-lived');
    await pins.pin('short-lived');
    await git(repo, 'branch', '-D', 'short-lived');
    pins.start();
    await sleep(1500);
    await pins.stop();
    assert.equal(pins.peek('short-lived'), undefined);
    await assert.rejects(pins.pin('short-lived'), ManifestNotFoundError);
  });

  test('an unknown tag is ManifestNotFoundError naming it; not cached (a branch pushed later is found)', async () => {
    const pins = make();
    await assert.rejects(pins.pin('no-such-branch'), (err: unknown) => err instanceof ManifestNotFoundError && /no branch, tag or commit named no-such-branch/.test(err.message));
    await git(repo, 'branch', 'no-such-branch');
    assert.equal((await pins.pin('no-such-branch')).resolution.ref, 'refs/heads/no-such-branch');
  });

  test('stale-if-error: pins kept while the source is unreachable, persisted across a restart; new builds get 503 naming the source', async () => {
    const storageDir = await mkdtemp(path.join(dir, 'storage-'));
    const storage = new FilesystemStorage(storageDir);
    const pins = make({ storage, ttlMs: 500 });
    const main = await pins.pin('main');
    const v1 = await pins.pin('v1');
    const commit = v1.pinned.revision!;
    await pins.pin(commit);
    assert.equal(await pins.forBuild('main'), main);
    // Persisted: one record per moving tag, with no URL in it; commits need none.
    const stored = (await readdir(path.join(storageDir, 'pins', sourceId(source)))).sort();
    assert.deepEqual(stored, ['main.json', 'v1.json']);
    const record = JSON.parse(await readFile(path.join(storageDir, 'pins', sourceId(source), 'main.json'), 'utf8')) as { record: Record<string, unknown> };
    assert.deepEqual(Object.keys(record.record).sort(), ['key', 'ref', 'resolvedAt', 'revision']);

    const away = `${repo}-away`;
    await rename(repo, away);
    try {
      pins.start();
      await sleep(1200);
      await pins.stop();
      assert.equal(await pins.pin('main'), main, 'the last good pin');
      assert.ok(pins.status().failure, 'the source is failing');
      await assert.rejects(pins.forBuild('main'), (err: unknown) => {
        assert.ok(err instanceof SourceUnavailableError);
        assert.match(err.message, /new images cannot be built/);
        assert.match(err.message, new RegExp(`cannot list the references of file://${repo}`));
        return true;
      });
      await assert.rejects(pins.pin('feature'), SourceUnavailableError, 'never pinned: 503');

      // A restart: nothing in memory, the source still away.
      const restarted = make({ storage, ttlMs: 500 });
      const served = await restarted.pin('main');
      assert.equal(served.pinned.revision, main.pinned.revision);
      assert.equal(served.pinned.srcArgs, main.pinned.srcArgs);
      assert.equal((await restarted.pin('v1')).pinned.revision, commit);
      assert.equal((await restarted.pin(commit)).pinned.revision, commit, 'a commit needs no look');
      await assert.rejects(restarted.forBuild('main'), SourceUnavailableError);
      assert.deepEqual(await restarted.tags(), ['latest', 'main', 'v1'], 'what was pinned');
    } finally {
      await rename(away, repo);
    }
    // Back: the next look confirms, builds may go on.
    const recovered = make({ storage, ttlMs: 500 });
    assert.equal((await recovered.forBuild('main')).pinned.revision, main.pinned.revision);
    assert.equal(recovered.status().failure, undefined);
  });

  test('a slow source: a persisted pin is served after staleWaitMs, a new build waits for the answer', async () => {
    const storage = new FilesystemStorage(await mkdtemp(path.join(dir, 'storage-')));
    const old = (await make({ storage }).pin('feature')).pinned.revision;
    const moved = await commitOn('feature', 'moved while down');
    await wrapper.setDelay(1.5);
    try {
      const pins = make({ storage, staleWaitMs: 300 });
      let t = performance.now();
      assert.equal((await pins.pin('feature')).pinned.revision, old, 'the persisted pin');
      const waited = performance.now() - t;
      assert.ok(waited >= 250 && waited < 1200, `waited ${waited.toFixed(0)} ms`);
      t = performance.now();
      assert.equal((await pins.forBuild('feature')).pinned.revision, moved, 'the source\'s answer');
      assert.ok(performance.now() - t > 500);
      assert.equal(pins.peek('feature')!.pinned.revision, moved);
    } finally {
      await wrapper.setDelay(0);
    }
  });

  test('scrub checks persisted pins; a damaged one is removed and the tag pinned again', async () => {
    const storageDir = await mkdtemp(path.join(dir, 'storage-'));
    const storage = new FilesystemStorage(storageDir);
    const pins = make({ storage });
    const main = await pins.pin('main');
    await pins.pin('v1');
    const clean = await scrubStorage(storage, { repair: false });
    assert.equal(clean.checked.pins, 2);
    assert.deepEqual(clean.bad, []);
    const key = `pins/${sourceId(source)}/main.json`;
    await flipByteInFile(path.join(storageDir, key), 20);
    const found = await scrubStorage(storage, { repair: true });
    assert.deepEqual(found.bad.map((b) => b.key), [key]);
    assert.deepEqual(found.removed, [key]);
    // A registry started now pins the tag from the source.
    assert.equal((await make({ storage }).pin('main')).pinned.revision, main.pinned.revision);
  });

  test('tags: branches and tags of a git source that are valid OCI tags, and latest', async () => {
    await git(repo, 'branch', 'topic/with-slash');
    const tags = await make().tags();
    assert.deepEqual(tags, [...tags].sort());
    for (const t of ['latest', 'main', 'feature', 'v1']) assert.ok(tags.includes(t), t);
    assert.ok(!tags.includes('topic/with-slash'));
  });
});

describe('pinner on a channel source and a path source', () => {
  let dir: string;
  let repo: string;
  let wrapper: GitWrapper;
  let commits: Record<string, string>;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-pins-channel-'));
    repo = path.join(dir, 'nixpkgs');
    const first = await initRepo(repo);
    await git(repo, 'branch', 'nixos-test');
    await git(repo, 'commit', '-q', '--allow-empty', '-m', 'next');
    await git(repo, 'branch', 'nixos-next');
    await git(repo, 'branch', 'staging');
    commits = { first, next: await git(repo, 'rev-parse', 'HEAD') };
    wrapper = await gitWrapper(dir);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const channel = (): Pinner =>
    new Pinner({
      source: { kind: 'channel', channel: 'nixos-test', repoUrl: `file://${repo}`, tarballUrl: 'file:///nowhere/{rev}.tar.gz' },
      ttlMs: 60_000,
      resolveTimeoutMs: 20_000,
      env: { PATH: wrapper.path },
    });

  test('latest is the configured channel; a channel name is that channel; a commit is that commit', async () => {
    const pins = channel();
    const latest = await pins.pin('latest');
    assert.equal(latest.pinned.revision, commits.first);
    assert.equal(await pins.pin('nixos-test'), latest, 'the same target');
    assert.deepEqual(JSON.parse(latest.pinned.srcArgs), { url: `file:///nowhere/${commits.first}.tar.gz` });
    assert.equal((await pins.pin('nixos-next')).pinned.revision, commits.next);
    const calls = (await wrapper.lsRemotes()).length;
    const rev = 'c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00';
    assert.equal((await pins.pin(rev)).pinned.revision, rev);
    assert.equal((await wrapper.lsRemotes()).length, calls, 'a commit needs no look');
  });

  test('anything else is 404; a name that is not a channel needs no look', async () => {
    const pins = channel();
    const calls = (await wrapper.lsRemotes()).length;
    for (const tag of ['missing-abc123', 'staging', 'v1']) await assert.rejects(pins.pin(tag), (err: unknown) => err instanceof ManifestNotFoundError && err.message.includes('not a tag of this registry'));
    assert.equal((await wrapper.lsRemotes()).length, calls);
    await assert.rejects(pins.pin('nixos-nope'), (err: unknown) => err instanceof ManifestNotFoundError && err.message.includes('no channel named nixos-nope'));
    assert.deepEqual(await pins.tags(), ['latest', 'nixos-next', 'nixos-test']);
  });

  test('a path source has only latest', async () => {
    const pins = new Pinner({ source: { kind: 'path', path: dir }, ttlMs: 60_000, resolveTimeoutMs: 20_000 });
    assert.match((await pins.pin('latest')).pinned.revision!, /^sha256:/);
    await assert.rejects(pins.pin('main'), ManifestNotFoundError);
    assert.deepEqual(await pins.tags(), ['latest']);
  });
});
