// The runtime closure of store paths, with references and sizes, from `nix path-info --json`.

import { dirname } from 'node:path';
import { NixFailedError, NixOutputError } from '../errors.js';
import { compareStrings, sortedUnique } from '../image/name.js';
import type { NixCallOptions } from './resolve-packages.js';
import { NIX_COMMAND_FLAGS, runNix } from './run.js';
import type { ClosureGraph, StorePathInfo } from './types.js';

/**
 * How long a closure query may take. It only reads the store's database, normally in well under
 * a second even for thousands of paths: the limit is there to turn a store that hangs (a stuck
 * lock, a dead NFS mount) into an error rather than a pull that never ends.
 */
export const CLOSURE_QUERY_TIMEOUT_MS = 300_000;

/** Reads the closure of `roots` (which must be valid) with one Nix call. */
export async function queryClosure(
  roots: readonly string[],
  opts: Omit<NixCallOptions, 'timeoutMs'> & { timeoutMs?: number } = {},
): Promise<ClosureGraph> {
  const sortedRoots = sortedUnique(roots);
  if (sortedRoots.length === 0) return { roots: [], paths: [] };
  const what = `reading the closure of ${sortedRoots.length} store path${sortedRoots.length === 1 ? '' : 's'}`;
  const { stdout } = await runNix(
    'nix',
    [...NIX_COMMAND_FLAGS, 'path-info', '--json', '--recursive', '--closure-size', ...sortedRoots],
    { timeoutMs: opts.timeoutMs ?? CLOSURE_QUERY_TIMEOUT_MS, timeoutKind: 'STORE_QUERY_TIMEOUT', command: 'closure', what, signal: opts.signal, env: opts.env, observer: opts.observer },
  );
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    throw new NixFailedError(what, `nix path-info printed something that is not JSON: ${stdout.slice(0, 200)}`, 0);
  }
  let paths: StorePathInfo[];
  try {
    paths = parsePathInfo(json, dirname(sortedRoots[0]!));
  } catch (err) {
    throw new NixFailedError(what, (err as Error).message, 0);
  }
  const known = new Set(paths.map((p) => p.path));
  const missing = sortedRoots.filter((r) => !known.has(r));
  if (missing.length > 0) throw new NixFailedError(what, `not valid store paths (not realised?): ${missing.join(', ')}`, null);
  for (const p of paths) {
    for (const ref of p.references) {
      if (!known.has(ref)) throw new NixFailedError(what, `${p.path} refers to ${ref}, which nix path-info did not list`, null);
    }
  }
  return { roots: sortedRoots, paths };
}

/** The NAR hash of one valid store path, as Nix prints it (null when Nix gives none). */
export async function narHashOf(path: string, opts: Omit<NixCallOptions, 'timeoutMs'> & { timeoutMs?: number } = {}): Promise<string | null> {
  const what = `reading the NAR hash of ${path}`;
  const { stdout } = await runNix('nix', [...NIX_COMMAND_FLAGS, 'path-info', '--json', '--closure-size', path], {
    timeoutMs: opts.timeoutMs ?? CLOSURE_QUERY_TIMEOUT_MS, timeoutKind: 'STORE_QUERY_TIMEOUT', command: 'closure', what, signal: opts.signal, env: opts.env, observer: opts.observer,
  });
  try {
    return parsePathInfo(JSON.parse(stdout), dirname(path)).find((p) => p.path === path)?.narHash ?? null;
  } catch (err) {
    throw new NixFailedError(what, (err as Error).message, 0);
  }
}

interface RawPathInfo {
  path?: unknown;
  valid?: unknown;
  narSize?: unknown;
  closureSize?: unknown;
  references?: unknown;
  narHash?: unknown;
  deriver?: unknown;
}

/**
 * Parses `nix path-info --json` in either shape: the array of `{ path, … }` objects (Nix ≤ 2.18)
 * or the object keyed by store path (Nix 2.19+, Lix), where a null value or `valid: false`
 * marks an invalid path (skipped). References and the deriver may be absolute or bare
 * `<hash>-<name>`; they are made absolute with `storeDir`, self-references dropped, everything
 * sorted by path. The NAR hash is kept as Nix prints it (nix32 or SRI; sbom/nix-hash.ts reads both).
 */
export function parsePathInfo(json: unknown, storeDir = '/nix/store'): StorePathInfo[] {
  const entries: [string, RawPathInfo | null][] = [];
  if (Array.isArray(json)) {
    for (const item of json as RawPathInfo[]) {
      if (item === null || typeof item !== 'object' || typeof item.path !== 'string') {
        throw new NixOutputError(`nix path-info entry without a path: ${JSON.stringify(item)}`);
      }
      entries.push([item.path, item]);
    }
  } else if (json !== null && typeof json === 'object') {
    for (const [path, item] of Object.entries(json as Record<string, RawPathInfo | null>)) entries.push([path, item]);
  } else {
    throw new NixOutputError('nix path-info --json printed neither an array nor an object');
  }
  const absolute = (p: string): string => (p.startsWith('/') ? p : `${storeDir}/${p}`);
  const byPath = new Map<string, StorePathInfo>();
  for (const [rawPath, item] of entries) {
    if (item === null || item.valid === false) continue;
    const path = absolute(rawPath);
    const references = Array.isArray(item.references) ? (item.references as unknown[]) : [];
    byPath.set(path, {
      path,
      references: sortedUnique(references.map((r) => absolute(String(r))).filter((r) => r !== path)),
      narSize: toNumber(item.narSize, 'narSize', path),
      closureSize: toNumber(item.closureSize, 'closureSize', path),
      ...(typeof item.narHash === 'string' ? { narHash: item.narHash } : {}),
      // Nix 2.8 says `unknown-deriver` (in the old text format); JSON gives the path or nothing.
      ...(typeof item.deriver === 'string' && item.deriver !== '' && !item.deriver.endsWith('unknown-deriver') ? { deriver: absolute(item.deriver) } : {}),
    });
  }
  return [...byPath.values()].sort((a, b) => compareStrings(a.path, b.path));
}

function toNumber(value: unknown, field: string, path: string): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  throw new NixOutputError(`nix path-info gave no valid ${field} for ${path}`);
}

/** The one store path → package name function (src/util/store-path.ts). */
export { storePathName as packageFromPath } from '../util/store-path.js';
