// Test helpers for anything that runs Nix on the example package set.

import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';
import type { PinnedSource } from '../../src/nix/source.js';
import { pinSource } from '../../src/nix/resolve-tags.js';

/** Repository root: this file is compiled to dist/test/helpers/nix.js. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Absolute path of the example package set (examples/pkgs). */
export const EXAMPLE_PKGS = resolve(REPO_ROOT, 'examples', 'pkgs');

/** The Nix system of this machine, as the example set builds for it. */
export const HOST_SYSTEM = process.arch === 'arm64' ? 'aarch64-linux' : 'x86_64-linux';

/**
 * Environment for Nix calls in tests: no binary cache (no network, and Nix would otherwise
 * wait on it), keeping anything else the caller set in NIX_CONFIG.
 */
export function nixEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const config = [process.env.NIX_CONFIG, 'substituters ='].filter((s) => s && s.trim() !== '').join('\n');
  return { ...process.env, NIX_CONFIG: config, ...extra };
}

/** Options for src/nix calls in tests. */
export function nixOptions(timeoutMs = 120_000): { timeoutMs: number; env: NodeJS.ProcessEnv } {
  return { timeoutMs, env: nixEnv() };
}

/** The example set as a pinned path source. */
export function pinExamples(): Promise<PinnedSource> {
  return pinSource({ kind: 'path', path: EXAMPLE_PKGS }, 'latest', { timeoutMs: 30_000 });
}
