// Looking at a package source to learn what its tags name now. Which tags a source has:
//
// - git (NIXERY_PKGS_REPO): `latest` (the remote's HEAD), its branches and git tags, commits.
// - channel (NIXERY_CHANNEL): `latest` (the configured channel), a nixpkgs channel by name
//   (`nixos-24.05`, `nixpkgs-unstable`: branches of NIXERY_NIXPKGS_REPO), a 40-hex commit.
// - path (NIXERY_PKGS_PATH): `latest` only.
//
// Anything else is not a tag of the source (404). One look at a git remote is one `git
// ls-remote --heads [--tags]`, which the server answers with its branches (and tags) only, never
// its other references (pull requests); the resolver keeps the last one, so tags first asked for
// shortly after a look need none, and concurrent looks are one. HEAD's branch needs a look of its
// own that git cannot narrow, so it is looked up once and then at most every `headCheckMs`.
// A local directory's identity is its git checkout's (commit and uncommitted changes) where it
// is one, else a content hash that rereads only changed files (tree-hash.ts).
//
// Caching policy (when to look again, what to serve meanwhile) is the caller's: src/builder/pins.ts.

import { lstat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { ConfigError, ManifestNotFoundError, NixeryError, SourceUnavailableError } from '../errors.js';
import { compareStrings } from '../image/name.js';
import { displayUrl } from '../secrets.js';
import { isCommit, listBranches, listBranchesAndTags, remoteHead, resolveRef, type RefListing } from './git-refs.js';
import { checkoutIdentity } from './checkout.js';
import { TreeHasher } from './tree-hash.js';
import { pinnedSource, type PackageSource, type PinnedSource, type Resolution } from './source.js';

/** The names of nixpkgs channels (branches of the nixpkgs repository). */
const CHANNEL_NAME = /^(?:nixos|nixpkgs)-[0-9A-Za-z._-]+$/;
/** What an OCI tag may be; branches and tags that are not one cannot be asked for. */
const OCI_TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const HEADS = 'refs/heads/';
const TAGS = 'refs/tags/';

export interface ResolverOptions {
  /** Limit for each `git` invocation, in milliseconds. */
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
  now?: () => number;
  /** How long the branch a git remote's HEAD points to is trusted before it is asked again (default 1 h). */
  headCheckMs?: number;
  observer?: ResolverObserver;
}

/** What resolving reports (the registry's metrics). */
export interface ResolverObserver {
  /** Bytes of a local package set were read to hash it. */
  hashed(bytes: number): void;
}

/** A look's answer: a resolution per key (null: the source has no such tag), and when the source was seen so. */
export interface Look {
  resolutions: Map<string, Resolution | null>;
  /** When the oldest information used was observed (a reused listing's time). */
  observedAt: number;
}

interface Listing {
  refs: RefListing;
  /** When the look started. */
  at: number;
}

export class SourceResolver {
  private readonly now: () => number;
  private listing: Listing | undefined;
  private listingFlight: Promise<Listing> | undefined;
  private head: { branch: string | null; commit: string | null; at: number } | undefined;
  private headFlight: Promise<{ branch: string | null; commit: string | null; at: number }> | undefined;
  private pathFlight: Promise<Resolution> | undefined;
  private readonly hasher = new TreeHasher();
  /** For /metrics: bytes of the local package set read to hash it. */
  readonly stats = { bytesHashed: 0 };

  constructor(
    readonly source: PackageSource,
    private readonly options: ResolverOptions,
  ) {
    this.now = options.now ?? Date.now;
    if (source.kind === 'path' && !isAbsolute(source.path)) throw new ConfigError(`NIXERY_PKGS_PATH must be absolute: ${source.path}`);
  }

  /**
   * What `tag` names on this source (tags naming the same thing get the same key, e.g. `latest`
   * and the configured channel), or null when the source has no such tag whatever it holds.
   */
  target(tag: string): string | null {
    const s = this.source;
    switch (s.kind) {
      case 'git':
        return tag;
      case 'channel':
        if (tag === 'latest') return s.channel;
        return tag === s.channel || isCommit(tag) || CHANNEL_NAME.test(tag) ? tag : null;
      case 'path':
        return tag === 'latest' ? 'latest' : null;
    }
  }

  /** Whether a resolution can change (a branch, a channel, HEAD, a directory) or names a commit for good. */
  moving(res: Resolution): boolean {
    return this.source.kind === 'path' || res.ref !== null;
  }

  /** The 404 for a tag this source does not have. */
  notFound(tag: string): ManifestNotFoundError {
    const s = this.source;
    switch (s.kind) {
      case 'git':
        return new ManifestNotFoundError(`no branch, tag or commit named ${tag} in ${displayUrl(s.url)}`);
      case 'channel':
        return this.target(tag) === null
          ? new ManifestNotFoundError(`${tag} is not a tag of this registry: tags are latest (${s.channel}), a nixpkgs channel such as nixos-24.05, or a 40-hex nixpkgs commit`)
          : new ManifestNotFoundError(`no channel named ${tag} in ${displayUrl(s.repoUrl)}`);
      case 'path':
        return new ManifestNotFoundError(`${tag} is not a tag of this registry: it builds from a local directory and serves only latest`);
    }
  }

  /**
   * Resolves target keys with one look at the source; null for a key the source does not have.
   * A listing at most `maxAgeMs` old is reused when it has every key asked for. Throws
   * SourceUnavailableError when the source cannot be reached or read.
   */
  async resolve(keys: readonly string[], options: { maxAgeMs: number }): Promise<Look> {
    const out = new Map<string, Resolution | null>();
    const s = this.source;
    const started = this.now();
    if (s.kind === 'path') {
      if (keys.length > 0) {
        const res = await this.identifyPath(s.path);
        for (const key of keys) out.set(key, key === 'latest' ? res : null);
      }
      return { resolutions: out, observedAt: started };
    }
    if (s.kind === 'channel') {
      const names = keys.filter((k) => !isCommit(k));
      for (const key of keys) if (isCommit(key)) out.set(key, { revision: key, ref: null });
      if (names.length === 0) return { resolutions: out, observedAt: started };
      const listing = await this.currentListing(names, options.maxAgeMs);
      for (const name of names) {
        const commit = listing.refs.refs.get(`${HEADS}${name}`);
        out.set(name, commit ? { revision: commit, ref: name } : null);
      }
      return { resolutions: out, observedAt: listing.at };
    }
    const wantsHead = keys.includes('latest');
    const [listing, head] = await Promise.all([this.currentListing(keys.filter((k) => k !== 'latest'), options.maxAgeMs), wantsHead ? this.headNow() : undefined]);
    for (const key of keys) {
      if (key === 'latest') {
        const h = head!;
        const commit = (h.branch && listing.refs.refs.get(h.branch)) ?? h.commit;
        out.set(key, commit ? { revision: commit, ref: 'HEAD', ...(h.branch ? { headBranch: h.branch } : {}) } : null);
        continue;
      }
      const r = resolveRef(listing.refs, key, { latestIsHead: false });
      out.set(key, r ? { revision: r.commit, ref: r.ref } : null);
    }
    return { resolutions: out, observedAt: Math.min(listing.at, head && !(head.branch && listing.refs.refs.has(head.branch)) ? head.at : listing.at) };
  }

  /** A resolution that needs no look at the source (a commit), or null. */
  offline(key: string): Resolution | null {
    return this.source.kind !== 'path' && isCommit(key) ? { revision: key, ref: null } : null;
  }

  /** The tags this source can serve, from a look at most `maxAgeMs` old; sorted. */
  async tags(maxAgeMs: number): Promise<string[]> {
    const s = this.source;
    const tags = new Set(['latest']);
    if (s.kind === 'git') {
      const listing = await this.currentListing([], maxAgeMs);
      for (const ref of listing.refs.refs.keys()) {
        const name = ref.startsWith(HEADS) ? ref.slice(HEADS.length) : ref.startsWith(TAGS) ? ref.slice(TAGS.length) : null;
        if (name !== null && OCI_TAG.test(name)) tags.add(name);
      }
    } else if (s.kind === 'channel') {
      if (OCI_TAG.test(s.channel)) tags.add(s.channel);
      const listing = await this.currentListing([], maxAgeMs);
      for (const ref of listing.refs.refs.keys()) {
        const name = ref.startsWith(HEADS) ? ref.slice(HEADS.length) : null;
        if (name !== null && CHANNEL_NAME.test(name) && OCI_TAG.test(name)) tags.add(name);
      }
    }
    return [...tags].sort(compareStrings);
  }

  /** The source at a resolution, as Nix loads it. */
  pinned(res: Resolution): PinnedSource {
    return pinnedSource(this.source, res);
  }

  /** The last listing if young enough and holding every name asked for, else a new one. */
  private async currentListing(names: readonly string[], maxAgeMs: number): Promise<Listing> {
    const l = this.listing;
    if (l && this.now() - l.at <= maxAgeMs && names.every((n) => isCommit(n) || this.listed(l, n))) return l;
    return this.list();
  }

  private listed(l: Listing, name: string): boolean {
    const s = this.source;
    if (s.kind === 'channel') return l.refs.refs.has(`${HEADS}${name}`);
    return l.refs.refs.has(`${TAGS}${name}`) || l.refs.refs.has(`${HEADS}${name}`);
  }

  /** One look at the remote's branches (and tags); concurrent callers share it. */
  private list(): Promise<Listing> {
    this.listingFlight ??= (async () => {
      const at = this.now();
      try {
        const opts = { timeoutMs: this.options.timeoutMs, env: this.options.env };
        const s = this.source;
        const refs = s.kind === 'git' ? await listBranchesAndTags(s.url, opts) : s.kind === 'channel' ? await listBranches(s.repoUrl, opts) : { refs: new Map(), symrefs: new Map() };
        const listing = { refs, at };
        this.listing = listing;
        return listing;
      } finally {
        this.listingFlight = undefined;
      }
    })();
    return this.listingFlight;
  }

  /** The branch HEAD points to (and its commit), looked up again when old or when the branch went away. */
  private async headNow(): Promise<{ branch: string | null; commit: string | null; at: number }> {
    const s = this.source;
    if (s.kind !== 'git') throw new Error('HEAD is only looked up for git sources');
    const h = this.head;
    const fresh = h && this.now() - h.at <= (this.options.headCheckMs ?? 3_600_000);
    // A detached HEAD has no branch to follow in the listings: it is asked for every time.
    if (fresh && h.branch && (!this.listing || this.listing.refs.refs.has(h.branch))) return h;
    this.headFlight ??= (async () => {
      const at = this.now();
      try {
        const head = await remoteHead(s.url, { timeoutMs: this.options.timeoutMs, env: this.options.env });
        this.head = { ...head, at };
        return this.head;
      } finally {
        this.headFlight = undefined;
      }
    })();
    return this.headFlight;
  }

  /** A local directory's identity; concurrent callers share one look. */
  private identifyPath(path: string): Promise<Resolution> {
    this.pathFlight ??= (async () => {
      try {
        return await this.identifyPathOnce(path);
      } finally {
        this.pathFlight = undefined;
      }
    })();
    return this.pathFlight;
  }

  private async identifyPathOnce(path: string): Promise<Resolution> {
    let info;
    try {
      info = await lstat(path);
    } catch (err) {
      throw new SourceUnavailableError(`the package set directory cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, `${path}: ${(err as Error).message}`);
    }
    if (!info.isDirectory() && !info.isFile()) throw new SourceUnavailableError('the package set is neither a directory nor a file', path);
    if (info.isDirectory()) {
      const checkout = await checkoutIdentity(path, { timeoutMs: this.options.timeoutMs, env: this.options.env });
      if (checkout) {
        const revision = `git:${checkout.commit}${checkout.dirty ? `+dirty.${checkout.dirty.slice(0, 32)}` : ''}`;
        const how = checkout.dirty ? `git checkout at ${checkout.commit} with ${checkout.changes} uncommitted ${checkout.changes === 1 ? 'change' : 'changes'}` : `git checkout at ${checkout.commit}`;
        return { revision, ref: null, how };
      }
    }
    // Files may be replaced while they are read (an editor saving): look once more before failing.
    for (let attempt = 1; ; attempt++) {
      try {
        const { digest, bytesRead } = await this.hasher.hash(path);
        this.stats.bytesHashed += bytesRead;
        this.options.observer?.hashed(bytesRead);
        return { revision: `sha256:${digest}`, ref: null, how: 'content hash' };
      } catch (err) {
        if (err instanceof NixeryError) throw err;
        if (attempt < 2 && (err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw new SourceUnavailableError(`the package set cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, `${path}: ${(err as Error).message}`);
      }
    }
  }
}

/**
 * Pins `source` for an image tag with one look at it, without any caching: for tests and
 * one-off commands (the builder pins through src/builder/pins.ts). Throws ManifestNotFoundError
 * for a tag the source does not have, SourceUnavailableError when it cannot be reached.
 */
export async function pinSource(source: PackageSource, tag: string, opts: { timeoutMs: number; env?: NodeJS.ProcessEnv }): Promise<PinnedSource> {
  const resolver = new SourceResolver(source, opts);
  const key = resolver.target(tag);
  if (key === null) throw resolver.notFound(tag);
  const res = (await resolver.resolve([key], { maxAgeMs: 0 })).resolutions.get(key);
  if (!res) throw resolver.notFound(tag);
  return resolver.pinned(res);
}
