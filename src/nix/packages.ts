// Every package of a pinned package set, for search: one Nix evaluation (PACKAGES_EXPRESSION)
// whose output, a line per package, is read as it streams, so a nixpkgs-sized set (about 100k
// packages, tens of MB) never sits in this process as one string.

import { StringDecoder } from 'node:string_decoder';
import { NixOutputError } from '../errors.js';
import { PACKAGES_EXPRESSION } from './expressions.js';
import type { NixCallOptions } from './resolve.js';
import { NIX_COMMAND_FLAGS, runNix } from './run.js';
import type { PinnedSource } from './source.js';

export interface PackageInfo {
  /** Attribute path, e.g. `python3Packages.requests`. */
  attr: string;
  /** The derivation's name, e.g. `python3.12-requests-2.32.3`. */
  name: string;
  pname: string;
  version: string;
  /** `meta.description`, or "". */
  description: string;
}

/** A package set larger than this is refused rather than filling memory (nixpkgs has about 100k). */
export const MAX_PACKAGES = 1_000_000;

/**
 * Lists the packages of `pinned` for `system`, calling `onPackage` for each as Nix's output
 * arrives; resolves with how many there were. Limited by `opts.timeoutMs` (NIXERY_EVAL_TIMEOUT).
 * Attributes that throw are skipped by the expression; an evaluation that fails as a whole
 * (abort, a broken set) is a NixFailedError.
 */
export async function listPackages(pinned: PinnedSource, system: string, opts: NixCallOptions & { onPackage: (p: PackageInfo) => void }): Promise<number> {
  const what = 'listing the packages of the set';
  const decoder = new StringDecoder('utf8');
  let partial = '';
  let count = 0;
  let failure: Error | undefined;
  const line = (text: string): void => {
    if (text === '') return;
    const p = parsePackageLine(text);
    if (!p) throw new NixOutputError(`${what}: unexpected output from nix eval: ${JSON.stringify(text.slice(0, 200))}`);
    if (++count > MAX_PACKAGES) throw new NixOutputError(`${what}: the package set has more than ${MAX_PACKAGES} packages`);
    opts.onPackage(p);
  };
  const abort = new AbortController();
  const onAbort = (): void => abort.abort(opts.signal!.reason);
  if (opts.signal?.aborted) abort.abort(opts.signal.reason);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await runNix('nix', [...NIX_COMMAND_FLAGS, 'eval', '--raw', '--impure', '--expr', PACKAGES_EXPRESSION], {
      timeoutMs: opts.timeoutMs,
      timeoutKind: 'EVAL_TIMEOUT',
      what,
      signal: abort.signal,
      observer: opts.observer,
      // The source as data: the expression reads it with builtins.getEnv.
      env: { ...opts.env, NIXERY_SRC_TYPE: pinned.srcType, NIXERY_SRC_ARGS: pinned.srcArgs, NIXERY_SYSTEM: system },
      onStdout: (chunk) => {
        if (failure) return;
        try {
          const lines = (partial + decoder.write(chunk)).split('\n');
          partial = lines.pop()!;
          for (const l of lines) line(l);
        } catch (err) {
          // Bad output (or a listener that failed): stop Nix, report this.
          failure = err as Error;
          abort.abort(failure);
        }
      },
    });
    if (failure) throw failure;
    line(partial + decoder.end());
    return count;
  } catch (err) {
    throw failure ?? err;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

/** A package from its line (`[attr, name, pname, version, description]`), or null when it is not one. */
export function parsePackageLine(text: string): PackageInfo | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (!Array.isArray(v) || v.length !== 5 || !v.every((f) => typeof f === 'string') || v[0] === '') return null;
  const [attr, name, pname, version, description] = v as string[];
  return { attr: attr!, name: name!, pname: pname!, version: version!, description: description! };
}

/** The line of a package, as the Nix expression writes it (without the newline). */
export function packageLine(p: PackageInfo): string {
  return JSON.stringify([p.attr, p.name, p.pname, p.version, p.description]);
}
