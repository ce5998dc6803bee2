// Building (or substituting) resolved packages, with temporary GC roots so a concurrent garbage
// collection cannot delete the outputs while an image is being packed from them. The roots live
// in this process's runtime directory (processes.ts), which is removed when the process is gone,
// even after a crash: no root outlives its owner.

import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { sortedUnique } from '../image/name.js';
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
}

/**
 * Realises every resolved package with one `nix-store --realise`. Each build gets its own GC
 * root directory; Nix registers the links as indirect roots, which die with the directory.
 * A failed build throws NixFailedError whose message starts with Nix's error and the failing
 * builder's log lines.
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
  try {
    await runNix('nix-store', [...args, ...drvs], {
      timeoutMs: opts.timeoutMs,
      what,
      signal: opts.signal,
      env: opts.env,
      failureText: buildFailureText,
    });
  } catch (err) {
    await release();
    throw err;
  }
  return { outputs, gcRootDir, release };
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
