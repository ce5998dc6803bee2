// The builder's Nix stage: the three steps of the pipeline that ask Nix (resolve the requested
// names, realise them, read their runtime closure) and where the store's files are read. The
// registry runs the real one; tests of the registry and its API run a stand-in that makes real
// files (test/helpers/stand-in-nix.ts), so everything after Nix (packing, caches, manifests,
// storage, HTTP) is the code that runs in production.

import type { ClosureGraph, ResolvedPackage } from '../nix/types.js';
import { sortedUnique } from '../image/name.js';
import type { PinnedSource } from '../nix/source.js';
import { resolvePackages, type ResolveOptions } from '../nix/resolve-packages.js';
import { realise, type Realised, type RealiseOptions } from '../nix/realise.js';
import { narHashOf, queryClosure } from '../nix/closure.js';
import { checkNix } from '../nix/health.js';
import type { NixRunObserver } from '../nix/observer.js';

export interface NixStage {
  resolve(pinned: PinnedSource, packages: readonly string[], system: string, opts: ResolveOptions): Promise<ResolvedPackage[]>;
  /** Makes the outputs exist (and keeps them alive) until `release`. */
  realise(resolved: readonly ResolvedPackage[], opts: RealiseOptions): Promise<Pick<Realised, 'release'>>;
  closure(roots: readonly string[], opts?: { observer?: NixRunObserver }): Promise<ClosureGraph>;
  /** Readiness: resolves when the stage can build (the version it runs), rejects otherwise. */
  check(): Promise<string>;
  /** Directory the store paths are read under (none: `/`). */
  storeRoot?: string;
}

/** The real Nix. */
export const NIX: NixStage = {
  resolve: async (pinned, packages, system, opts) => withTarballHash(pinned, await resolvePackages(pinned, packages, system, opts), opts),
  realise,
  closure: (roots, opts) => queryClosure(roots, opts),
  check: () => checkNix(),
};

/**
 * For a channel source, the NAR hash of the nixpkgs tarball Nix unpacked (for the provenance):
 * one store query, on the path the evaluation reported.
 */
async function withTarballHash(pinned: PinnedSource, resolved: ResolvedPackage[], opts: ResolveOptions): Promise<ResolvedPackage[]> {
  const info = resolved[0]?.sourceInfo;
  if (pinned.srcType !== 'channel' || !info?.storePath) return resolved;
  const narHash = await narHashOf(info.storePath, { env: opts.env, signal: opts.signal, observer: opts.observer });
  return resolved.map((p) => ({ ...p, sourceInfo: { ...info, narHash } }));
}

/** The store paths that go into the image for the requested packages, sorted and unique. */
export function rootPaths(resolved: readonly ResolvedPackage[]): string[] {
  return sortedUnique(resolved.flatMap((p) => Object.values(p.outputs)));
}
