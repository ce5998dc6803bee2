// Package names → derivations, in one Nix evaluation (which also writes the .drv files).

import { ManifestNotFoundError, NixFailedError, PackageInvalidError, PackagesNotFoundWithReasons } from '../errors.js';
import { displayUrl } from '../secrets.js';
import { RESOLVE_EXPRESSION } from './expressions.js';
import { runNix } from './run.js';
import type { NixRunObserver } from './observer.js';
import { sourceEnv, type PinnedSource } from './source.js';
import type { PackageMeta, ResolvedPackage, SourceInfo } from './types.js';

export interface NixCallOptions {
  /**
   * Wall-clock limit of the Nix process, in milliseconds: NIXERY_EVAL_TIMEOUT for evaluations,
   * NIXERY_BUILD_TIMEOUT for a realisation.
   */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Added to the environment of Nix processes (e.g. NIX_CONFIG). */
  env?: NodeJS.ProcessEnv;
  /** Told of the Nix process run (the registry's metrics). */
  observer?: NixRunObserver;
}

export interface ResolveOptions extends NixCallOptions {
  /**
   * Attribute paths (dotted, exactly as in the set) whose derivations each resolved package is
   * compared with: `sameAs` lists those it is (an alias, another spelling, an output of it).
   */
  compareWith?: readonly string[];
}

/** Arguments that hand a pinned source to our expressions; its srcArgs go in sourceEnv's environment. */
export function sourceArgs(pinned: PinnedSource, system: string): string[] {
  return ['--argstr', 'srcType', pinned.srcType, '--argstr', 'system', system];
}

/** Why each missing package is missing (defined with every error, in src/errors.ts). */
export { PackagesNotFoundWithReasons } from '../errors.js';

/**
 * Looks every requested name up in the package set (see RESOLVE_EXPRESSION for the rules) and
 * returns them in request order. What the request got wrong is a 4xx: all missing names at once
 * (PackagesNotFoundError), a package that fails to evaluate (PackageInvalidError, or not found
 * when Nix says it was removed), a commit the source does not have (ManifestNotFoundError).
 * Other evaluation errors (a broken set) are NixFailedError with Nix's first lines.
 */
export async function resolvePackages(pinned: PinnedSource, packages: readonly string[], system: string, opts: ResolveOptions): Promise<ResolvedPackage[]> {
  const invalid = packages.filter((name) => name.split('.').some((c) => c === ''));
  if (invalid.length > 0) {
    throw new PackagesNotFoundWithReasons(invalid.map((requested) => ({ requested, reason: 'empty attribute name' })));
  }
  if (packages.length === 0) return [];
  const compareWith = [...new Set(opts.compareWith ?? [])];
  const stdout = await evaluate(pinned, packages, system, opts, { compareWith, catchFailures: true });
  const parsed = parseResolveOutput(stdout, `resolving ${packages.join(', ')}`);
  if ('failed' in parsed) {
    // tryEval says which package failed, not why: evaluate that one alone, uncaught, for Nix's reason.
    const name = parsed.failed[0]!;
    let reason = 'its evaluation failed';
    try {
      await evaluate(pinned, [name], system, opts, { compareWith: [], catchFailures: false });
    } catch (err) {
      if (!(err instanceof NixFailedError)) throw err;
      reason = nixErrorMessage(err.stderr) || reason;
    }
    if (/\bremoved\b/i.test(reason)) throw new PackagesNotFoundWithReasons([{ requested: name, reason }]);
    throw new PackageInvalidError(name, reason);
  }
  return parsed.resolved;
}

async function evaluate(
  pinned: PinnedSource,
  packages: readonly string[],
  system: string,
  opts: NixCallOptions,
  how: { compareWith: readonly string[]; catchFailures: boolean },
): Promise<string> {
  const request = packages.map((name) => ({ name, path: name.split('.') }));
  const what = `resolving ${packages.join(', ')}`;
  try {
    const { stdout } = await runNix(
      'nix-instantiate',
      [
        '--eval',
        '--strict',
        '--json',
        '--read-write-mode',
        ...sourceArgs(pinned, system),
        '--argstr',
        'packages',
        JSON.stringify(request),
        '--argstr',
        'denied',
        JSON.stringify(how.compareWith.map((p) => p.split('.'))),
        '--argstr',
        'catch',
        how.catchFailures ? '1' : '0',
        '--expr',
        RESOLVE_EXPRESSION,
      ],
      { timeoutMs: opts.timeoutMs, timeoutKind: 'EVAL_TIMEOUT', command: 'resolve', what, signal: opts.signal, env: { ...opts.env, ...sourceEnv(pinned) }, observer: opts.observer },
    );
    return stdout;
  } catch (err) {
    throw (err instanceof NixFailedError && missingRevision(pinned, err.stderr)) || err;
  }
}

/** Nix's `error:` message, without its hints and traces: what a client is told. */
export function nixErrorMessage(stderr: string): string {
  const lines = stderr.split('\n');
  const start = lines.findIndex((l) => l.startsWith('error:'));
  if (start < 0) return '';
  const out: string[] = [];
  for (const line of lines.slice(start)) {
    if (/^\(use '--show-trace'/.test(line) || /^\s*…|^\s*at /.test(line)) break;
    if (line.trim() === '') continue;
    out.push(line.trim());
  }
  return out.join(' ').replace(/^error:\s*/, '').slice(0, 600);
}

/**
 * The 404 for a revision the source does not have (a commit asked for by name), from Nix's
 * error; naming the ref we asked for, not the one Nix guessed (Nix 2.8 says `master` for a
 * fetch over all refs).
 */
function missingRevision(pinned: PinnedSource, stderr: string): ManifestNotFoundError | undefined {
  const args = JSON.parse(pinned.srcArgs) as { url?: string; rev?: string; ref?: string; allRefs?: boolean };
  if (pinned.srcType === 'git' && /Cannot find Git revision '[0-9a-f]+'/.test(stderr)) {
    const where = args.ref ? `on ${args.ref}` : 'on any branch or tag';
    return new ManifestNotFoundError(`no commit ${args.rev} ${where} of ${displayUrl(pinned.source.kind === 'git' ? pinned.source.url : (args.url ?? ''))}`);
  }
  // A commit asked for by name that has no tarball; a channel's own commit missing is our mirror's failure.
  if (pinned.srcType === 'channel' && pinned.ref === null && /HTTP error 404|Couldn't read a file:\/\/ file/.test(stderr) && pinned.source.kind === 'channel') {
    return new ManifestNotFoundError(`no nixpkgs commit ${pinned.revision} (nothing at ${displayUrl(args.url ?? '')})`);
  }
  return undefined;
}

/** A file name in bin/ (what `meta.mainProgram` must be to become a command); anything else is ignored. */
export function mainProgramOf(value: unknown): { mainProgram?: string } {
  return typeof value === 'string' && /^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,254}$/.test(value) ? { mainProgram: value } : {};
}

export function parseResolveOutput(stdout: string, what: string): { resolved: ResolvedPackage[] } | { failed: string[] } {
  let result: unknown;
  try {
    result = JSON.parse(stdout);
  } catch {
    throw new NixFailedError(what, `unexpected output from nix-instantiate: ${stdout.slice(0, 200)}`, 0);
  }
  const r = result as {
    missing?: { requested: string; reason: string }[];
    failed?: string[];
    resolved?: { requested: string; attrPath: string[]; packagePath: string[]; drvPath: string; outputs: Record<string, string>; mainProgram?: unknown; meta?: PackageMeta }[];
    denied?: { name: string; drvPath: string }[];
    sourceInfo?: SourceInfo;
  };
  if (r.missing) throw new PackagesNotFoundWithReasons(r.missing);
  if (Array.isArray(r.failed) && r.failed.length > 0) return { failed: r.failed };
  if (!Array.isArray(r.resolved)) throw new NixFailedError(what, `unexpected output from nix-instantiate: ${stdout.slice(0, 200)}`, 0);
  const denied = r.denied ?? [];
  return {
    resolved: r.resolved.map((p) => ({
      requested: p.requested,
      attrPath: p.attrPath,
      packagePath: p.packagePath ?? p.attrPath,
      drvPath: p.drvPath,
      outputs: p.outputs,
      sameAs: denied.filter((d) => d.drvPath === p.drvPath).map((d) => d.name),
      ...mainProgramOf(p.mainProgram),
      ...(p.meta ? { meta: p.meta } : {}),
      ...(r.sourceInfo ? { sourceInfo: r.sourceInfo } : {}),
    })),
  };
}
