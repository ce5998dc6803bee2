// Asking a git remote for its references, as narrowly as git allows. `git ls-remote <url>
// <pattern>` filters on the client only: the server still sends every reference it has (for
// nixpkgs on GitHub, every pull request's), so patterns alone save nothing. `--heads` and
// `--tags` are sent to the server as prefixes (protocol v2's ref-prefix), so the answer is the
// branches and tags and nothing else. HEAD cannot be asked for that way; it is looked up on its
// own, rarely (see SourceResolver).

import { SourceUnavailableError } from '../errors.js';
import { displayUrl } from '../secrets.js';
import { gitAuth } from './credentials.js';
import { runProcess } from './run.js';

const COMMIT = /^[0-9a-f]{40}$/;

export function isCommit(s: string): boolean {
  return COMMIT.test(s);
}

export interface LsRemoteOptions {
  /** Limit for the `git ls-remote`, in milliseconds. */
  timeoutMs: number;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}

/** Parsed `git ls-remote` output: ref → commit (annotated tags peeled), and symbolic refs. */
export interface RefListing {
  refs: Map<string, string>;
  /** `HEAD` → `refs/heads/main`, from `--symref`. */
  symrefs: Map<string, string>;
}

export function parseLsRemote(output: string): RefListing {
  const refs = new Map<string, string>();
  const symrefs = new Map<string, string>();
  const peeled = new Map<string, string>();
  for (const line of output.split('\n')) {
    const sym = /^ref: (\S+)\t(\S+)$/.exec(line.trim());
    if (sym) {
      symrefs.set(sym[2]!, sym[1]!);
      continue;
    }
    const m = /^([0-9a-f]{40,64})\t(.+)$/.exec(line.trim());
    if (!m) continue;
    if (m[2]!.endsWith('^{}')) peeled.set(m[2]!.slice(0, -3), m[1]!);
    else refs.set(m[2]!, m[1]!);
  }
  // An annotated tag names a tag object; what is built is the commit it points to.
  for (const [ref, commit] of peeled) refs.set(ref, commit);
  return { refs, symrefs };
}

/** A git reference resolved against a listing. */
export interface ResolvedRef {
  commit: string;
  /** Full ref name (`refs/tags/v1`, `refs/heads/main`), `HEAD`, or null for a bare commit. */
  ref: string | null;
}

/**
 * Resolves a name git's way: `HEAD` for latest (when `latestIsHead`), then a tag, then a
 * branch, and a 40-hex commit only when no ref has that name. Accepts `git ls-remote` output
 * or a parsed listing.
 */
export function resolveRef(listing: string | RefListing, name: string, options: { latestIsHead: boolean }): ResolvedRef | null {
  const { refs } = typeof listing === 'string' ? parseLsRemote(listing) : listing;
  if (options.latestIsHead && name === 'latest') {
    const head = refs.get('HEAD');
    return head ? { commit: head, ref: 'HEAD' } : null;
  }
  for (const ref of [`refs/tags/${name}`, `refs/heads/${name}`]) {
    const commit = refs.get(ref);
    if (commit) return { commit, ref };
  }
  if (isCommit(name)) return { commit: name, ref: null };
  return null;
}

async function lsRemote(url: string, args: string[], patterns: string[], opts: LsRemoteOptions): Promise<RefListing> {
  const shown = displayUrl(url);
  const auth = gitAuth(url);
  const result = await runProcess('git', ['ls-remote', ...args, '--', auth.url, ...patterns], {
    timeoutMs: opts.timeoutMs,
    what: `git ls-remote ${shown}`,
    signal: opts.signal,
    // Never wait for a password prompt.
    env: { GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: '', SSH_ASKPASS: '', ...opts.env, ...auth.env },
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
  return parseLsRemote(result.stdout);
}

/** The remote's branches and tags (`refs/heads/…`, `refs/tags/…`, tags peeled); nothing else is sent. */
export function listBranchesAndTags(url: string, opts: LsRemoteOptions): Promise<RefListing> {
  return lsRemote(url, ['--heads', '--tags'], [], opts);
}

/** The remote's branches only. */
export function listBranches(url: string, opts: LsRemoteOptions): Promise<RefListing> {
  return lsRemote(url, ['--heads'], [], opts);
}

/**
 * The remote's HEAD: its commit and the branch it points to (null when the server does not say,
 * e.g. a detached HEAD). Git cannot ask the server for HEAD alone, so the server sends all its
 * references: callers do this rarely.
 */
export async function remoteHead(url: string, opts: LsRemoteOptions): Promise<{ commit: string | null; branch: string | null }> {
  // The pattern keeps git's output (what this process buffers) to the HEAD lines.
  const listing = await lsRemote(url, ['--symref'], ['HEAD'], opts);
  const branch = listing.symrefs.get('HEAD') ?? null;
  return { commit: listing.refs.get('HEAD') ?? null, branch: branch?.startsWith('refs/heads/') ? branch : null };
}
