// Package sources (NIXERY_CHANNEL, NIXERY_PKGS_REPO, NIXERY_PKGS_PATH) and what a source pinned
// to an immutable revision looks like to Nix: moving targets (branches, channels, `latest`)
// resolve to commits, a local directory to an identity of its contents, so every build can be
// cached under what it really used. Resolving is resolve-tags.ts's; this module spawns nothing.

import { resolve as resolvePath } from 'node:path';
import { ConfigError, SourceUnavailableError } from '../errors.js';
import { displayUrl } from '../secrets.js';
import { gitAuth } from './credentials.js';
import { isCommit, resolveRef, type ResolvedRef } from './git-refs.js';

export { SourceUnavailableError, isCommit, resolveRef, type ResolvedRef };
export { hashTree } from './tree-hash.js';

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
  /**
   * JSON object handed to Nix as data (never code) in the environment, NIXERY_SRC_ARGS (see
   * sourceEnv): a git URL here holds no credentials, those are in `env`.
   */
  srcArgs: string;
  /** Environment that carries the source's credentials to git (credentials.ts); empty without any. */
  env: Record<string, string>;
  /** Immutable identity for cache keys and image labels; null when the source cannot be pinned. */
  revision: string | null;
  /** What the revision was resolved through (Resolution.ref): null for a commit named directly. */
  ref?: string | null;
  /**
   * For logs, the index page and the image label, e.g. `git https://***@host/pkgs.git at 1a2b…
   * (refs/tags/v1)`: URLs in their display form, without credentials; a local directory by its
   * identity, never its location.
   */
  description: string;
}

/**
 * What a tag resolved to at one look at the source: all a pin needs to be rebuilt later (pins
 * are persisted as this, so they never hold a URL's credentials).
 */
export interface Resolution {
  /** The immutable revision: a commit (git, channel) or a content identity (path). */
  revision: string;
  /**
   * What it was resolved through: `refs/heads/x`, `refs/tags/x` or `HEAD` (git), the channel
   * name (channel); null for a commit named directly, and for paths.
   */
  ref: string | null;
  /** git `HEAD`: the branch it points to; fetchGit needs it as `ref` (Nix 2.8 assumes master). */
  headBranch?: string;
  /** path: how the revision was found, for people (`git checkout at …`, `content hash`). */
  how?: string;
}

/** The source settings (config.ts): NIXERY_CHANNEL, NIXERY_PKGS_REPO, NIXERY_PKGS_PATH, NIXERY_NIXPKGS_REPO/TARBALL. */
export interface SourceSettings {
  channel?: string;
  pkgsRepo?: string;
  pkgsPath?: string;
  nixpkgsRepo?: string;
  nixpkgsTarball?: string;
}

/**
 * The package source from Nixery's settings, with Nixery's precedence: NIXERY_CHANNEL, then
 * NIXERY_PKGS_REPO, then NIXERY_PKGS_PATH. `NIXERY_NIXPKGS_REPO` / `NIXERY_NIXPKGS_TARBALL`
 * override where channel names are resolved and downloaded from.
 */
export function sourceFromSettings(settings: SourceSettings): PackageSource {
  const channel = settings.channel?.trim();
  const repo = settings.pkgsRepo?.trim();
  const path = settings.pkgsPath?.trim();
  if (channel) {
    if (!/^[A-Za-z0-9._-]+$/.test(channel)) {
      throw new ConfigError(`NIXERY_CHANNEL ${JSON.stringify(channel)} is not a channel name or commit (letters, digits, . _ - only)`);
    }
    return {
      kind: 'channel',
      channel,
      repoUrl: settings.nixpkgsRepo?.trim() || DEFAULT_NIXPKGS_REPO,
      tarballUrl: settings.nixpkgsTarball?.trim() || DEFAULT_NIXPKGS_TARBALL,
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

/** The source at `res`, as Nix loads it. */
export function pinnedSource(source: PackageSource, res: Resolution): PinnedSource {
  switch (source.kind) {
    case 'git': {
      const ref: ResolvedRef = { commit: res.revision, ref: res.ref };
      const via = res.ref === 'HEAD' && res.headBranch ? `HEAD, ${res.headBranch}` : res.ref;
      const auth = gitAuth(source.url);
      return {
        source,
        srcType: 'git',
        ref: res.ref,
        srcArgs: JSON.stringify(fetchGitArgs(auth.url, ref, res.headBranch)),
        env: auth.env,
        revision: res.revision,
        description: `git ${displayUrl(source.url)} at ${res.revision}${via ? ` (${via})` : ''}`,
      };
    }
    case 'channel':
      return {
        source,
        srcType: 'channel',
        ref: res.ref,
        srcArgs: JSON.stringify(channelArgs(source, res.revision)),
        env: {},
        revision: res.revision,
        description: `nixpkgs ${res.revision}${res.ref ? ` (${res.ref})` : ''}`,
      };
    case 'path':
      return {
        source,
        srcType: 'path',
        ref: res.ref,
        srcArgs: JSON.stringify({ path: source.path }),
        env: {},
        revision: res.revision,
        // Its identity only: where the directory sits is no part of the image (its label), so
        // copies of one package set at different paths give the same bytes.
        description: `local directory (${res.how ? `${res.how}: ` : ''}${res.revision})`,
      };
  }
}

/** The environment a Nix process that loads `pinned` needs: its arguments and credentials. */
export function sourceEnv(pinned: PinnedSource): Record<string, string> {
  return { ...pinned.env, NIXERY_SRC_ARGS: pinned.srcArgs };
}

/**
 * Arguments for `builtins.fetchGit`. A full ref (refs/…) is taken as is by Nix, so tags work; a
 * bare commit may be on any branch, hence `allRefs`. For HEAD, Nix 2.8 fetches `master` unless
 * told the branch, so HEAD's branch goes in `ref` when the remote said which it is, and every
 * ref is fetched when it did not.
 */
export function fetchGitArgs(url: string, resolved: ResolvedRef, headBranch?: string): Record<string, string | boolean> {
  // Not told HEAD's branch, Nix would look for the commit on `master`: look on every ref instead.
  if (resolved.ref === 'HEAD') return headBranch ? { url, rev: resolved.commit, ref: headBranch } : { url, rev: resolved.commit, allRefs: true };
  if (resolved.ref === null) return { url, rev: resolved.commit, allRefs: true };
  return { url, rev: resolved.commit, ref: resolved.ref };
}

/** Arguments for `builtins.fetchTarball` of a pinned nixpkgs commit. */
export function channelArgs(source: { tarballUrl: string }, commit: string): { url: string } {
  return { url: source.tarballUrl.replaceAll('{rev}', commit) };
}
