// Package sources (NIXERY_CHANNEL, NIXERY_PKGS_REPO, NIXERY_PKGS_PATH) and pinning them to an
// immutable revision: moving targets (branches, channels, `latest`) resolve to commits, a local
// directory to a hash of its contents, so every build can be cached under what it really used.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { isAbsolute, join, resolve as resolvePath } from 'node:path';
import { ConfigError, ManifestNotFoundError, SourceUnavailableError } from '../errors.js';

export { SourceUnavailableError };
import { compareStrings } from '../image/name.js';
import { runProcess } from './run.js';
import { displayUrl } from '../secrets.js';

export const DEFAULT_NIXPKGS_REPO = 'https://github.com/NixOS/nixpkgs';
/** `{rev}` is replaced by the pinned commit. */
export const DEFAULT_NIXPKGS_TARBALL = 'https://github.com/NixOS/nixpkgs/archive/{rev}.tar.gz';

export type PackageSource =
  | {
      kind: 'channel';
      /** A channel (branch) name such as `nixos-24.05`, or a 40-hex nixpkgs commit. */
      channel: string;
      /** Git repository the channel name is resolved against. */
      repoUrl: string;
      /** Tarball URL template Nix downloads, with `{rev}`. */
      tarballUrl: string;
    }
  | { kind: 'git'; url: string }
  | { kind: 'path'; path: string };

/** A source pinned for one build: how Nix loads it and what identifies it. */
export interface PinnedSource {
  source: PackageSource;
  /** Passed to Nix as `--argstr srcType`. */
  srcType: 'channel' | 'git' | 'path';
  /** JSON object passed to Nix as `--argstr srcArgs` (data, never code). */
  srcArgs: string;
  /** Immutable identity for cache keys and image labels; null when the source cannot be pinned. */
  revision: string | null;
  /**
   * For logs, the index page and the image label, e.g. `git https://***@host/pkgs.git at 1a2b…
   * (refs/tags/v1)`: URLs in their display form, without credentials.
   */
  description: string;
}

export interface PinOptions {
  /** Limit for each `git ls-remote`, in milliseconds. */
  timeoutMs: number;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}

const COMMIT = /^[0-9a-f]{40}$/;

export function isCommit(s: string): boolean {
  return COMMIT.test(s);
}

/**
 * The package source from Nixery's variables, with Nixery's precedence: NIXERY_CHANNEL, then
 * NIXERY_PKGS_REPO, then NIXERY_PKGS_PATH. `NIXERY_NIXPKGS_REPO` / `NIXERY_NIXPKGS_TARBALL`
 * override where channel names are resolved and downloaded from.
 */
export function sourceFromEnv(env: NodeJS.ProcessEnv = process.env): PackageSource {
  const channel = env.NIXERY_CHANNEL?.trim();
  const repo = env.NIXERY_PKGS_REPO?.trim();
  const path = env.NIXERY_PKGS_PATH?.trim();
  if (channel) {
    if (!/^[A-Za-z0-9._-]+$/.test(channel)) {
      throw new ConfigError(`NIXERY_CHANNEL ${JSON.stringify(channel)} is not a channel name or commit (letters, digits, . _ - only)`);
    }
    return {
      kind: 'channel',
      channel,
      repoUrl: env.NIXERY_NIXPKGS_REPO?.trim() || DEFAULT_NIXPKGS_REPO,
      tarballUrl: env.NIXERY_NIXPKGS_TARBALL?.trim() || DEFAULT_NIXPKGS_TARBALL,
    };
  }
  if (repo) return { kind: 'git', url: repo };
  if (path) return { kind: 'path', path: resolvePath(path) };
  throw new ConfigError(
    'no package source configured: set NIXERY_CHANNEL (a nixpkgs channel or commit), NIXERY_PKGS_REPO (a git repository URL) or NIXERY_PKGS_PATH (a local directory)',
  );
}

export function describeSource(source: PackageSource): string {
  switch (source.kind) {
    case 'channel':
      return `nixpkgs channel ${source.channel}${source.repoUrl === DEFAULT_NIXPKGS_REPO ? '' : ` from ${displayUrl(source.repoUrl)}`}`;
    case 'git':
      return `git repository ${displayUrl(source.url)}`;
    case 'path':
      return `local directory ${source.path}`;
  }
}

/**
 * Pins `source` for an image tag. The tag only matters for git sources: a git tag, a branch or
 * a 40-hex commit, and `latest` = the remote's default branch (HEAD). Unknown names throw
 * ManifestNotFoundError.
 */
export async function pinSource(source: PackageSource, tag: string, opts: PinOptions): Promise<PinnedSource> {
  switch (source.kind) {
    case 'git':
      return pinGit(source, tag, opts);
    case 'channel':
      return pinChannel(source, opts);
    case 'path':
      return pinPath(source);
  }
}

/** A git reference resolved by `git ls-remote`. */
export interface ResolvedRef {
  commit: string;
  /** Full ref name (`refs/tags/v1`, `refs/heads/main`), `HEAD`, or null for a bare commit. */
  ref: string | null;
}

/**
 * Resolves a name against `git ls-remote` output, git's way: `HEAD` for latest, then a tag
 * (peeled to its commit), then a branch, and a 40-hex commit only when no ref has that name.
 */
export function resolveRef(lsRemote: string, name: string, options: { latestIsHead: boolean }): ResolvedRef | null {
  const refs = new Map<string, string>();
  for (const line of lsRemote.split('\n')) {
    const m = /^([0-9a-f]{40,64})\t(.+)$/.exec(line.trim());
    if (m) refs.set(m[2]!, m[1]!);
  }
  if (options.latestIsHead && name === 'latest') {
    const head = refs.get('HEAD');
    return head ? { commit: head, ref: 'HEAD' } : null;
  }
  for (const ref of [`refs/tags/${name}`, `refs/heads/${name}`]) {
    const commit = refs.get(`${ref}^{}`) ?? refs.get(ref);
    if (commit) return { commit, ref };
  }
  if (isCommit(name)) return { commit: name, ref: null };
  return null;
}

async function lsRemote(url: string, opts: PinOptions): Promise<string> {
  const shown = displayUrl(url);
  const result = await runProcess('git', ['ls-remote', '--', url], {
    timeoutMs: opts.timeoutMs,
    what: `git ls-remote ${shown}`,
    signal: opts.signal,
    // Never wait for a password prompt.
    env: { GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: '', SSH_ASKPASS: '', ...opts.env },
    killGraceMs: 500,
  });
  if (result.aborted && opts.signal) throw opts.signal.reason;
  if (result.timedOut) {
    throw new SourceUnavailableError(`git ls-remote ${shown} timed out after ${opts.timeoutMs / 1000} seconds`);
  }
  if (result.code !== 0) {
    // stderr is already cleaned of control bytes and secrets (runProcess).
    const why = result.stderr.trim().split('\n').slice(0, 3).join('; ');
    throw new SourceUnavailableError(`cannot list the references of ${shown}: ${why || `git exited with ${result.code}`}`);
  }
  return result.stdout;
}

async function pinGit(source: { kind: 'git'; url: string }, tag: string, opts: PinOptions): Promise<PinnedSource> {
  const resolved = resolveRef(await lsRemote(source.url, opts), tag, { latestIsHead: true });
  if (!resolved) throw new ManifestNotFoundError(`no branch, tag or commit named ${tag} in ${displayUrl(source.url)}`);
  return {
    source,
    srcType: 'git',
    srcArgs: JSON.stringify(fetchGitArgs(source.url, resolved)),
    revision: resolved.commit,
    description: `git ${displayUrl(source.url)} at ${resolved.commit}${resolved.ref ? ` (${resolved.ref})` : ''}`,
  };
}

/**
 * Arguments for `builtins.fetchGit`. A full ref (refs/…) is taken as is by Nix, so tags work; the
 * default branch needs none; a bare commit may be on any branch, hence `allRefs`.
 */
export function fetchGitArgs(url: string, resolved: ResolvedRef): Record<string, string | boolean> {
  if (resolved.ref === 'HEAD') return { url, rev: resolved.commit };
  if (resolved.ref === null) return { url, rev: resolved.commit, allRefs: true };
  return { url, rev: resolved.commit, ref: resolved.ref };
}

async function pinChannel(
  source: Extract<PackageSource, { kind: 'channel' }>,
  opts: PinOptions,
): Promise<PinnedSource> {
  let commit: string;
  let via = '';
  if (isCommit(source.channel)) {
    commit = source.channel;
  } else {
    const resolved = resolveRef(await lsRemote(source.repoUrl, opts), source.channel, { latestIsHead: false });
    if (!resolved || resolved.ref === null) {
      throw new ManifestNotFoundError(`no branch, tag or commit named ${source.channel} in ${displayUrl(source.repoUrl)}`);
    }
    commit = resolved.commit;
    via = ` (${source.channel})`;
  }
  return {
    source,
    srcType: 'channel',
    srcArgs: JSON.stringify(channelArgs(source, commit)),
    revision: commit,
    description: `nixpkgs ${commit}${via}`,
  };
}

/** Arguments for `builtins.fetchTarball` of a pinned nixpkgs commit. */
export function channelArgs(source: { tarballUrl: string }, commit: string): { url: string } {
  return { url: source.tarballUrl.replaceAll('{rev}', commit) };
}

async function pinPath(source: { kind: 'path'; path: string }): Promise<PinnedSource> {
  if (!isAbsolute(source.path)) throw new ConfigError(`NIXERY_PKGS_PATH must be absolute: ${source.path}`);
  let info;
  try {
    info = await lstat(source.path);
  } catch (err) {
    throw new SourceUnavailableError(`package set ${source.path} cannot be read: ${(err as Error).message}`);
  }
  if (!info.isDirectory() && !info.isFile()) {
    throw new SourceUnavailableError(`package set ${source.path} is neither a directory nor a file`);
  }
  const revision = `sha256:${await hashTree(source.path)}`;
  return {
    source,
    srcType: 'path',
    srcArgs: JSON.stringify({ path: source.path }),
    revision,
    description: `${source.path} (${revision})`,
  };
}

/**
 * A content hash of a directory tree: relative paths (code-unit order), file types, the
 * executable bit, file contents and link targets. `.git` is skipped. Changes whenever anything
 * Nix could read changes, and is the same on any machine for the same files.
 */
export async function hashTree(root: string): Promise<string> {
  const hash = createHash('sha256');
  const field = (s: string): void => {
    hash.update(s);
    hash.update('\0');
  };
  const visit = async (abs: string, rel: string): Promise<void> => {
    const st = await lstat(abs);
    if (st.isSymbolicLink()) {
      field('symlink');
      field(rel);
      field(await readlink(abs));
    } else if (st.isDirectory()) {
      field('directory');
      field(rel);
      const names = (await readdir(abs)).filter((n) => n !== '.git').sort(compareStrings);
      for (const name of names) await visit(join(abs, name), rel === '' ? name : `${rel}/${name}`);
    } else if (st.isFile()) {
      field((st.mode & 0o100) !== 0 ? 'executable' : 'regular');
      field(rel);
      field(String(st.size));
      for await (const chunk of createReadStream(abs)) hash.update(chunk as Buffer);
    } else {
      field('other');
      field(rel);
    }
  };
  await visit(root, '');
  return hash.digest('hex');
}

/**
 * Pins with a cache: moving targets are re-resolved after `ttlMs` (issue: cached for a
 * configurable time, default 60 s); commits pinned from a 40-hex tag never change. Concurrent
 * requests for the same tag share one resolution; failures are not cached.
 */
export class SourcePinner {
  private readonly cache = new Map<string, { value: Promise<PinnedSource>; expires: number }>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(
    readonly source: PackageSource,
    private readonly options: { ttlMs?: number; timeoutMs: number; maxEntries?: number; now?: () => number; env?: NodeJS.ProcessEnv },
  ) {
    this.ttlMs = options.ttlMs ?? 60_000;
    this.maxEntries = options.maxEntries ?? 1000;
    this.now = options.now ?? Date.now;
  }

  /** The pinned source for `tag` (the tag is ignored except for git sources). */
  pin(tag: string): Promise<PinnedSource> {
    const key = this.source.kind === 'git' ? tag : '';
    const now = this.now();
    const hit = this.cache.get(key);
    if (hit && hit.expires > now) return hit.value;
    const immutable =
      (this.source.kind === 'git' && isCommit(tag)) || (this.source.kind === 'channel' && isCommit(this.source.channel));
    const value = pinSource(this.source, tag, { timeoutMs: this.options.timeoutMs, env: this.options.env });
    this.cache.delete(key);
    this.cache.set(key, { value, expires: immutable ? Number.POSITIVE_INFINITY : now + this.ttlMs });
    value.catch(() => {
      if (this.cache.get(key)?.value === value) this.cache.delete(key);
    });
    while (this.cache.size > this.maxEntries) this.cache.delete(this.cache.keys().next().value!);
    return value;
  }
}
