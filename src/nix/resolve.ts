// Package names → derivations, in one Nix evaluation (which also writes the .drv files).

import { NixFailedError, PackagesNotFoundWithReasons } from '../errors.js';
import { RESOLVE_EXPRESSION } from './expressions.js';
import { runNix, type NixRunObserver } from './run.js';
import type { PinnedSource } from './source.js';
import type { ResolvedPackage } from './types.js';

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

/** Arguments that hand a pinned source to our expressions as data. */
export function sourceArgs(pinned: PinnedSource, system: string): string[] {
  return ['--argstr', 'srcType', pinned.srcType, '--argstr', 'srcArgs', pinned.srcArgs, '--argstr', 'system', system];
}

/** Why each missing package is missing (defined with every error, in src/errors.ts). */
export { PackagesNotFoundWithReasons } from '../errors.js';

/**
 * Looks every requested name up in the package set (see RESOLVE_EXPRESSION for the rules) and
 * returns them in request order. All missing names are reported at once (PackagesNotFoundError);
 * evaluation errors (throw, assert, broken set) become NixFailedError with Nix's first lines.
 */
export async function resolvePackages(
  pinned: PinnedSource,
  packages: readonly string[],
  system: string,
  opts: NixCallOptions,
): Promise<ResolvedPackage[]> {
  const invalid = packages.filter((name) => name.split('.').some((c) => c === ''));
  if (invalid.length > 0) {
    throw new PackagesNotFoundWithReasons(invalid.map((requested) => ({ requested, reason: 'empty attribute name' })));
  }
  if (packages.length === 0) return [];
  const request = packages.map((name) => ({ name, path: name.split('.') }));
  const what = `resolving ${packages.join(', ')}`;
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
      '--expr',
      RESOLVE_EXPRESSION,
    ],
    { timeoutMs: opts.timeoutMs, timeoutKind: 'EVAL_TIMEOUT', command: 'resolve', what, signal: opts.signal, env: opts.env, observer: opts.observer },
  );
  return parseResolveOutput(stdout, what);
}

export function parseResolveOutput(stdout: string, what: string): ResolvedPackage[] {
  let result: unknown;
  try {
    result = JSON.parse(stdout);
  } catch {
    throw new NixFailedError(what, `unexpected output from nix-instantiate: ${stdout.slice(0, 200)}`, 0);
  }
  const r = result as {
    missing?: { requested: string; reason: string }[];
    resolved?: { requested: string; attrPath: string[]; drvPath: string; outputs: Record<string, string> }[];
  };
  if (r.missing) throw new PackagesNotFoundWithReasons(r.missing);
  if (!Array.isArray(r.resolved)) throw new NixFailedError(what, `unexpected output from nix-instantiate: ${stdout.slice(0, 200)}`, 0);
  return r.resolved.map((p) => ({
    requested: p.requested,
    attrPath: p.attrPath,
    drvPath: p.drvPath,
    outputs: p.outputs,
  }));
}
