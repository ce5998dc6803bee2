// Building (or substituting) resolved packages, with temporary GC roots so a concurrent garbage
// collection cannot delete the outputs while an image is being packed from them. The roots live
// in this process's runtime directory (processes.ts), which is removed when the process is gone,
// even after a crash: no root outlives its owner.
//
// Two time limits, as in Nixery: NIX_TIMEOUT limits each builder and is Nix's own `--timeout`
// (time spent downloading substitutes or waiting for a build slot is not counted); the
// wall-clock limit of the whole `nix-store --realise` (NIXERY_BUILD_TIMEOUT) is the backstop.

import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { NixFailedError, NixTimeoutError } from '../errors.js';
import { sortedUnique } from '../image/name.js';
import { packageFromPath } from './closure.js';
import type { NixCallOptions } from './resolve.js';
import { runtimeDir } from './processes.js';
import { runNix } from './run.js';
import type { ResolvedPackage } from './types.js';

export interface Realised {
  /** The installed outputs' store paths (what the image needs), sorted, de-duplicated. */
  outputs: string[];
  /** Where the GC roots live until `release`. */
  gcRootDir: string;
  /** Drops the GC roots; call when the image's layers are packed. Safe to call twice. */
  release(): Promise<void>;
}

export interface RealiseOptions extends NixCallOptions {
  /** `--max-jobs` for the builds (default: Nix's own setting). */
  maxJobs?: number | 'auto';
  /**
   * NIX_TIMEOUT: seconds each builder may run, passed to Nix as `--timeout` (default: Nix's own
   * setting). `timeoutMs` is the wall-clock limit of the whole realisation (NIXERY_BUILD_TIMEOUT).
   */
  builderTimeoutSeconds?: number;
}

/**
 * Realises every resolved package with one `nix-store --realise`. Each build gets its own GC
 * root directory; Nix registers the links as indirect roots, which die with the directory.
 * A failed build throws NixFailedError whose message starts with Nix's error and the failing
 * builder's log lines; a builder past `builderTimeoutSeconds` throws NixTimeoutError
 * (BUILD_TIMEOUT) naming its derivation; the whole call past `timeoutMs` is killed and throws
 * NixTimeoutError (REALISE_TIMEOUT).
 */
export async function realise(resolved: readonly ResolvedPackage[], opts: RealiseOptions): Promise<Realised> {
  const outputs = sortedUnique(resolved.flatMap((p) => Object.values(p.outputs)));
  const drvs = sortedUnique(resolved.map((p) => p.drvPath));
  const gcRootDir = await mkdtemp(join(runtimeDir(), 'gcroots-'));
  let released = false;
  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    await rm(gcRootDir, { recursive: true, force: true });
  };
  if (drvs.length === 0) return { outputs, gcRootDir, release };
  const what = `realising ${resolved.map((p) => p.attrPath.join('.')).join(', ')}`;
  const args = ['--realise', '--add-root', join(gcRootDir, 'root')];
  if (opts.maxJobs !== undefined) args.push('--max-jobs', String(opts.maxJobs));
  if (opts.builderTimeoutSeconds !== undefined) args.push('--timeout', String(opts.builderTimeoutSeconds));
  try {
    await runNix('nix-store', [...args, ...drvs], {
      timeoutMs: opts.timeoutMs,
      timeoutKind: 'REALISE_TIMEOUT',
      command: 'realise',
      what,
      signal: opts.signal,
      env: opts.env,
      observer: opts.observer,
      failureText: buildFailureText,
    });
  } catch (err) {
    await release();
    const timedOut = err instanceof NixFailedError ? builderTimeouts(err.stderr) : [];
    if (timedOut.length > 0) {
      const names = timedOut.map((t) => packageFromPath(t.drvPath).replace(/\.drv$/, ''));
      throw new NixTimeoutError('BUILD_TIMEOUT', `building ${names.join(', ')}`, timedOut[0]!.seconds, {
        internal: `${what}: ${timedOut.map((t) => t.drvPath).join(', ')}`,
      });
    }
    throw err;
  }
  return { outputs, gcRootDir, release };
}

/**
 * The builders Nix stopped at its `--timeout`, from its error lines: `building of
 * '/nix/store/…-x.drv' timed out after N seconds` (Nix 2.3), with `!*`/`^*` and
 * `from .drv file` in later versions, possibly inside a remote builder's error. Builders stopped
 * by `max-silent-time` ("… of silence") are not NIX_TIMEOUT's and not listed.
 */
export function builderTimeouts(stderr: string): { drvPath: string; seconds: number }[] {
  const found = new Map<string, number>();
  const pattern = /building of '(\/[^'!^]+?\.drv)[^']*'[^\n]*? timed out after (\d+) seconds(?! of silence)/g;
  for (const m of stderr.matchAll(pattern)) if (!found.has(m[1]!)) found.set(m[1]!, Number(m[2]));
  return [...found].map(([drvPath, seconds]) => ({ drvPath, seconds }));
}

/**
 * Nix's stderr for a failed build, reordered for a short message: its `error:` lines first
 * (with modern Nix they carry the last log lines), then the builders' own output; progress
 * chatter ("these N derivations will be built", "building '…'", store path lists) dropped.
 */
export function buildFailureText(stderr: string): string {
  const errors: string[] = [];
  const log: string[] = [];
  let inError = false;
  for (const line of stderr.split('\n')) {
    const trimmed = line.trimEnd();
    if (trimmed === '') continue;
    if (/^these \d+ (derivations|paths) will be (built|fetched)/.test(trimmed) || /^this (derivation|path) will be (built|fetched)/.test(trimmed)) {
      inError = false;
      continue;
    }
    if (/^\s+\/nix\/store\/\S+$/.test(trimmed) && !inError) continue;
    if (/^(building|copying path) '/.test(trimmed)) {
      inError = false;
      continue;
    }
    if (trimmed.startsWith('error:')) {
      inError = true;
      errors.push(trimmed);
    } else if (inError && /^\s/.test(line)) {
      errors.push(trimmed);
    } else {
      inError = false;
      log.push(trimmed);
    }
  }
  // The failing builder's output is most useful nearest its end.
  return [...errors, ...log.slice(-20)].join('\n');
}
