import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, cp, mkdtemp, rm, symlink, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, ManifestNotFoundError } from '../../src/errors.js';
import { loadConfig } from '../../src/config.js';
import {
  channelArgs,
  fetchGitArgs,
  hashTree,
  resolveRef,
  SourceUnavailableError,
  sourceFromSettings,
  type PackageSource,
} from '../../src/nix/source.js';
import { pinSource } from '../../src/nix/resolve-tags.js';

let dir: string;
let repo: string;
const commits: Record<string, string> = {};

function git(...args: string[]): string {
  return execFileSync('git', ['-C', repo, ...args], {
    encoding: 'utf8',
    env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.org', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.org' },
  }).trim();
}

async function commitFile(name: string, content: string, message: string): Promise<string> {
  await writeFile(join(repo, name), content);
  git('add', name);
  git('commit', '-q', '-m', message);
  return git('rev-parse', 'HEAD');
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nixery-source-test-'));
  repo = join(dir, 'repo');
  await mkdir(repo);
  git('init', '-q', '-b', 'main');
  commits.first = await commitFile('a.txt', 'one', 'first');
  git('tag', 'light');
  git('tag', '-a', 'annotated', '-m', 'an annotated tag');
  git('checkout', '-q', '-b', 'feature');
  commits.feature = await commitFile('b.txt', 'two', 'feature work');
  git('tag', '-a', 'feature-release', '-m', 'tag off the default branch');
  git('checkout', '-q', 'main');
  commits.second = await commitFile('a.txt', 'three', 'second on main');
  // A branch whose name looks like a commit but points elsewhere: the ref must win.
  git('branch', commits.feature!, commits.first!);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const opts = { timeoutMs: 20_000 };

/** The source from variables, read as the program reads them (config.ts). */
const sourceFromEnv = (env: NodeJS.ProcessEnv) => sourceFromSettings(loadConfig(env));

test('sources: Nixery precedence channel > repo > path; none is a ConfigError', () => {
  const all = { NIXERY_CHANNEL: 'nixos-24.05', NIXERY_PKGS_REPO: 'https://example.org/pkgs.git', NIXERY_PKGS_PATH: '/srv/pkgs' };
  assert.equal(sourceFromEnv(all).kind, 'channel');
  assert.deepEqual(sourceFromEnv({ ...all, NIXERY_CHANNEL: '' }), { kind: 'git', url: 'https://example.org/pkgs.git' });
  assert.deepEqual(sourceFromEnv({ NIXERY_PKGS_PATH: '/srv/pkgs' }), { kind: 'path', path: '/srv/pkgs' });
  assert.deepEqual(sourceFromEnv({ NIXERY_CHANNEL: 'nixos-24.05', NIXERY_NIXPKGS_REPO: 'file:///r', NIXERY_NIXPKGS_TARBALL: 'file:///t/{rev}' }), {
    kind: 'channel',
    channel: 'nixos-24.05',
    repoUrl: 'file:///r',
    tarballUrl: 'file:///t/{rev}',
  });
  assert.throws(() => sourceFromEnv({}), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /NIXERY_CHANNEL.*NIXERY_PKGS_REPO.*NIXERY_PKGS_PATH/);
    return true;
  });
  assert.throws(() => sourceFromEnv({ NIXERY_CHANNEL: 'nixos 24.05; rm' }), ConfigError);
});

test('sources: a relative NIXERY_PKGS_PATH is made absolute', () => {
  const s = sourceFromEnv({ NIXERY_PKGS_PATH: 'examples/pkgs' });
  assert.equal(s.kind, 'path');
  assert.equal((s as { path: string }).path, join(process.cwd(), 'examples/pkgs'));
});

test('git: latest is the default branch, tags are peeled, branches and commits work', async () => {
  const source: PackageSource = { kind: 'git', url: repo };
  const latest = await pinSource(source, 'latest', opts);
  assert.equal(latest.revision, commits.second);
  assert.equal(latest.srcType, 'git');
  // HEAD's branch goes to fetchGit as `ref` (Nix 2.8 assumes master without it).
  assert.deepEqual(JSON.parse(latest.srcArgs), { url: repo, rev: commits.second, ref: 'refs/heads/main' });
  assert.match(latest.description, /\(HEAD, refs\/heads\/main\)$/);

  const light = await pinSource(source, 'light', opts);
  assert.equal(light.revision, commits.first);
  assert.deepEqual(JSON.parse(light.srcArgs), { url: repo, rev: commits.first, ref: 'refs/tags/light' });

  const annotated = await pinSource(source, 'annotated', opts);
  assert.equal(annotated.revision, commits.first, 'the peeled commit, not the tag object');

  const offDefault = await pinSource(source, 'feature-release', opts);
  assert.equal(offDefault.revision, commits.feature);
  assert.deepEqual(JSON.parse(offDefault.srcArgs), { url: repo, rev: commits.feature, ref: 'refs/tags/feature-release' });

  const branch = await pinSource(source, 'feature', opts);
  assert.equal(branch.revision, commits.feature);
  assert.deepEqual(JSON.parse(branch.srcArgs), { url: repo, rev: commits.feature, ref: 'refs/heads/feature' });

  const commit = await pinSource(source, commits.second!, opts);
  assert.equal(commit.revision, commits.second);
  assert.deepEqual(JSON.parse(commit.srcArgs), { url: repo, rev: commits.second, allRefs: true });
});

test('git: an exact ref name wins over the 40-hex commit heuristic', async () => {
  const pinned = await pinSource({ kind: 'git', url: `file://${repo}` }, commits.feature!, opts);
  assert.equal(pinned.revision, commits.first);
});

test('git: an unknown tag is ManifestNotFoundError naming the tag and the repository', async () => {
  await assert.rejects(pinSource({ kind: 'git', url: repo }, 'no-such-tag', opts), (err: unknown) => {
    assert.ok(err instanceof ManifestNotFoundError);
    assert.equal(err.kind, 'MANIFEST_UNKNOWN');
    assert.match(err.message, new RegExp(`no branch, tag or commit named no-such-tag in ${repo}`));
    return true;
  });
});

test('git: an unreachable repository is a clear SourceUnavailableError', async () => {
  await assert.rejects(pinSource({ kind: 'git', url: join(dir, 'missing-repo') }, 'latest', opts), (err: unknown) => {
    assert.ok(err instanceof SourceUnavailableError);
    assert.match(err.message, /cannot list the references of .*missing-repo/);
    return true;
  });
});

test('channel: a name resolves to a commit with git ls-remote; a commit is used as is', async () => {
  const base = { kind: 'channel' as const, repoUrl: repo, tarballUrl: 'https://github.com/NixOS/nixpkgs/archive/{rev}.tar.gz' };
  const byName = await pinSource({ ...base, channel: 'feature' }, 'latest', opts);
  assert.equal(byName.revision, commits.feature);
  assert.equal(byName.srcType, 'channel');
  assert.deepEqual(JSON.parse(byName.srcArgs), { url: `https://github.com/NixOS/nixpkgs/archive/${commits.feature}.tar.gz` });

  const rev = 'c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00';
  const byCommit = await pinSource({ ...base, repoUrl: join(dir, 'not-consulted'), channel: rev }, 'latest', opts);
  assert.equal(byCommit.revision, rev);
  assert.deepEqual(channelArgs(base, rev), { url: `https://github.com/NixOS/nixpkgs/archive/${rev}.tar.gz` });

  await assert.rejects(pinSource({ ...base, channel: 'nixos-99.99' }, 'latest', opts), ManifestNotFoundError);
});

test('resolveRef and fetchGitArgs on ls-remote output', () => {
  const tagObject = '1'.repeat(40);
  const listing = [
    `${'a'.repeat(40)}\tHEAD`,
    `${'a'.repeat(40)}\trefs/heads/main`,
    `${'b'.repeat(40)}\trefs/heads/v1`,
    `${tagObject}\trefs/tags/v1`,
    `${'c'.repeat(40)}\trefs/tags/v1^{}`,
  ].join('\n');
  assert.deepEqual(resolveRef(listing, 'latest', { latestIsHead: true }), { commit: 'a'.repeat(40), ref: 'HEAD' });
  // Git's own precedence: a tag before a branch of the same name; tags peeled.
  assert.deepEqual(resolveRef(listing, 'v1', { latestIsHead: true }), { commit: 'c'.repeat(40), ref: 'refs/tags/v1' });
  assert.deepEqual(resolveRef(listing, 'main', { latestIsHead: true }), { commit: 'a'.repeat(40), ref: 'refs/heads/main' });
  assert.deepEqual(resolveRef(listing, 'd'.repeat(40), { latestIsHead: true }), { commit: 'd'.repeat(40), ref: null });
  assert.equal(resolveRef(listing, 'D'.repeat(40), { latestIsHead: true }), null);
  assert.equal(resolveRef(listing, 'nope', { latestIsHead: true }), null);
  // HEAD's branch unknown: every ref, not Nix's guess of `master`.
  assert.deepEqual(fetchGitArgs('u', { commit: 'c', ref: 'HEAD' }), { url: 'u', rev: 'c', allRefs: true });
  assert.deepEqual(fetchGitArgs('u', { commit: 'c', ref: 'HEAD' }, 'refs/heads/trunk'), { url: 'u', rev: 'c', ref: 'refs/heads/trunk' });
  assert.deepEqual(fetchGitArgs('u', { commit: 'c', ref: null }), { url: 'u', rev: 'c', allRefs: true });
});

test('path: the revision is a content hash that follows every change and ignores .git', async () => {
  const set = join(dir, 'set');
  await mkdir(join(set, 'sub'), { recursive: true });
  await writeFile(join(set, 'default.nix'), '{ ... }: { }');
  await writeFile(join(set, 'sub', 'data'), 'x');
  const pin = async (): Promise<string> => (await pinSource({ kind: 'path', path: set }, 'latest', opts)).revision!;
  const first = await pin();
  assert.match(first, /^sha256:[0-9a-f]{64}$/);
  assert.equal(await pin(), first, 'stable');
  await assert.rejects(pinSource({ kind: 'path', path: set }, 'other-tag', opts), ManifestNotFoundError, 'a path source has only latest');

  await mkdir(join(set, '.git'));
  await writeFile(join(set, '.git', 'HEAD'), 'ref: refs/heads/main');
  assert.equal(await pin(), first, '.git is skipped');

  await writeFile(join(set, 'sub', 'data'), 'y');
  const changed = await pin();
  assert.notEqual(changed, first, 'content');
  await chmod(join(set, 'sub', 'data'), 0o755);
  const executable = await pin();
  assert.notEqual(executable, changed, 'executable bit');
  await symlink('default.nix', join(set, 'link'));
  const linked = await pin();
  assert.notEqual(linked, executable, 'new symlink');
  await rm(join(set, 'link'));
  await symlink('sub', join(set, 'link'));
  assert.notEqual(await pin(), linked, 'link target');

  // The same files elsewhere hash the same.
  const copy = join(dir, 'copy');
  await cp(set, copy, { recursive: true, verbatimSymlinks: true });
  assert.equal(await hashTree(copy), await hashTree(set));
});

test('path: a missing directory is SourceUnavailableError', async () => {
  await assert.rejects(pinSource({ kind: 'path', path: join(dir, 'nope') }, 'latest', opts), SourceUnavailableError);
});
