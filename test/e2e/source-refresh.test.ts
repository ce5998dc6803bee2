// Pins are looked at again off the request path, measured on a `nixery serve` process:
// - a git source whose `git ls-remote` takes 1.5 s: a branch that moves shows up within
//   NIXERY_RESOLVE_TTL, and no pull waits for git;
// - a path source of 50,000 files re-hashed in full (every file touched) while pulls go on: no
//   pull waits for the hash.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startServe, type ServeProcess } from '../helpers/serve.js';
import { EXAMPLE_PKGS } from '../helpers/nix.js';
import { metric } from '../helpers/registry.js';
import { commitGreeting, git, gitWrapper, initRepo, type GitWrapper } from '../helpers/git.js';

const execFileP = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A manifest GET by tag: how long it took and the digest served. */
async function timedPull(url: string, tag: string): Promise<{ ms: number; digest: string }> {
  const t = performance.now();
  const res = await fetch(`${url}/v2/hello/manifests/${tag}`);
  await res.arrayBuffer();
  const ms = performance.now() - t;
  assert.equal(res.status, 200);
  return { ms, digest: res.headers.get('docker-content-digest')! };
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

describe('a moving branch behind a slow git remote', () => {
  let dir: string;
  let wrapper: GitWrapper;
  let serve: ServeProcess;
  let repo: string;
  let next: string;
  const ttlSeconds = 6;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-refresh-git-'));
    repo = path.join(dir, 'pkgs');
    await initRepo(repo, EXAMPLE_PKGS);
    await git(repo, 'checkout', '-q', '-b', 'next');
    next = await commitGreeting(repo, 'Hello from the next commit!');
    await git(repo, 'checkout', '-q', 'main');
    wrapper = await gitWrapper(dir);
    const storagePath = path.join(dir, 'storage');
    await mkdir(storagePath);
    serve = await startServe({
      pkgsPath: EXAMPLE_PKGS,
      storagePath,
      env: { NIXERY_PKGS_REPO: `file://${repo}`, NIXERY_RESOLVE_TTL: String(ttlSeconds), PATH: wrapper.path, NIXERY_LOG_LEVEL: 'warn' },
    });
  });
  after(async () => {
    await serve?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('after the TTL pulls get the new commit, and none waited for git ls-remote', async (t) => {
    const before = await timedPull(serve.url, 'main');
    // The image of the commit main will move to is built (under its own branch) beforehand, so
    // pulls after the move find it built: all that is left to wait for would be git.
    const target = await timedPull(serve.url, 'next');
    assert.notEqual(target.digest, before.digest);

    await wrapper.setDelay(1.5);
    // A few slow looks first: refreshes start early enough for looks this slow.
    await sleep(5000);
    const callsBefore = (await wrapper.lsRemotes()).length;
    await git(repo, 'update-ref', 'refs/heads/main', next);
    const movedAt = Date.now();
    const pulls: Array<{ at: number; ms: number; digest: string }> = [];
    while (Date.now() - movedAt < (ttlSeconds + 2) * 1000) {
      const p = await timedPull(serve.url, 'main');
      pulls.push({ at: Date.now() - movedAt, ...p });
      await sleep(50);
    }
    const calls = (await wrapper.lsRemotes()).length - callsBefore;
    const switched = pulls.find((p) => p.digest === target.digest);
    const slowest = Math.max(...pulls.map((p) => p.ms));
    t.diagnostic(`${pulls.length} pulls; new commit served ${switched?.at} ms after the move (TTL ${ttlSeconds} s); slowest pull ${slowest.toFixed(1)} ms, p50 ${percentile(pulls.map((p) => p.ms), 50).toFixed(1)} ms; ${calls} git ls-remote of 1.5 s each meanwhile`);

    assert.ok(switched, 'the new commit was served');
    assert.ok(switched.at <= ttlSeconds * 1000 + 1000, `served ${switched.at} ms after the move`);
    assert.ok(pulls.filter((p) => p.at >= switched.at).every((p) => p.digest === target.digest), 'and from then on');
    assert.ok(pulls.filter((p) => p.at < switched.at).every((p) => p.digest === before.digest));
    assert.ok(slowest < 750, `a pull took ${slowest.toFixed(0)} ms: it waited for git ls-remote (1.5 s)`);
    assert.ok(calls >= 1 && calls <= 6, `${calls} ls-remote in the background for ${pulls.length} pulls`);
  });
});

describe('a path source of 50,000 files', () => {
  let dir: string;
  let tree: string;
  let serve: ServeProcess;
  const FILES = 50_000;
  const FILE_BYTES = 1024;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-refresh-path-'));
    tree = path.join(dir, 'pkgs');
    await cp(EXAMPLE_PKGS, tree, { recursive: true });
    await writeManyFiles(path.join(tree, 'data'), FILES, FILE_BYTES);
    const storagePath = path.join(dir, 'storage');
    await mkdir(storagePath);
    serve = await startServe({ pkgsPath: tree, storagePath, env: { NIXERY_RESOLVE_TTL: '2', NIXERY_LOG_LEVEL: 'warn' } });
  });
  after(async () => {
    await serve?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('pulls stay fast while the tree is re-hashed in full in the background', async (t) => {
    const first = await timedPull(serve.url, 'latest');
    const looks0 = await metric(serve.url, 'nixery_source_looks_total');
    const bytes0 = await metric(serve.url, 'nixery_source_bytes_hashed_total');
    const pulls: number[] = [];
    const started = Date.now();
    let touched: Promise<unknown> | undefined;
    let longestLook = 0;
    while (Date.now() - started < 12_000) {
      // Every file gets a new modification time: the next looks read all 50,000 again.
      if (!touched && Date.now() - started > 2000) touched = execFileP('find', [path.join(tree, 'data'), '-type', 'f', '-exec', 'touch', '{}', '+']);
      const p = await timedPull(serve.url, 'latest');
      assert.equal(p.digest, first.digest, 'the same content, the same image');
      pulls.push(p.ms);
      longestLook = Math.max(longestLook, 1000 * (await metric(serve.url, 'nixery_source_look_last_seconds')));
      await sleep(10);
    }
    await touched;
    const looks = (await metric(serve.url, 'nixery_source_looks_total')) - looks0;
    const bytes = (await metric(serve.url, 'nixery_source_bytes_hashed_total')) - bytes0;
    const slowest = Math.max(...pulls);
    t.diagnostic(
      `${pulls.length} pulls in 12 s: p50 ${percentile(pulls, 50).toFixed(1)} ms, p99 ${percentile(pulls, 99).toFixed(1)} ms, max ${slowest.toFixed(1)} ms; ` +
        `${looks} looks at the tree meanwhile, ${(bytes / 1e6).toFixed(1)} MB re-read, longest look ${longestLook.toFixed(0)} ms`,
    );
    assert.ok(bytes >= FILES * FILE_BYTES, `the whole tree was re-read (${bytes} bytes)`);
    assert.ok(looks >= 3, `${looks} looks`);
    // A pull that waited for a re-hash would take about as long as one (1.5–5 s here); the
    // bound leaves room for a machine busy with other tests.
    assert.ok(slowest < Math.max(250, longestLook / 3), `a pull took ${slowest.toFixed(0)} ms while a re-hash takes ${longestLook.toFixed(0)} ms`);
  });
});

/** `count` files of `bytes` each under `root`, 100 per directory, with distinct contents. */
async function writeManyFiles(root: string, count: number, bytes: number): Promise<void> {
  const perDir = 100;
  for (let d = 0; d * perDir < count; d++) {
    const sub = path.join(root, `d${String(d).padStart(4, '0')}`);
    await mkdir(sub, { recursive: true });
    await Promise.all(
      Array.from({ length: Math.min(perDir, count - d * perDir) }, (_, i) => {
        const line = `file ${d * perDir + i}\n`;
        return writeFile(path.join(sub, `f${i}`), line.repeat(Math.ceil(bytes / line.length)).slice(0, bytes));
      }),
    );
  }
}
