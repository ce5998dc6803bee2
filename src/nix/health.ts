// Whether Nix can be run at all, for the readiness check: `nix-store --version` (stable in every
// Nix, and it touches no store, so it answers even while builds keep the store busy). Not
// counted as a Nix invocation: those count builds' work.

import { NixUnavailableError } from '../errors.js';
import { runProcess } from './run.js';

/** Resolves with Nix's version line; throws NixUnavailableError when Nix cannot run. */
export async function checkNix(timeoutMs = 10_000): Promise<string> {
  let result;
  try {
    result = await runProcess('nix-store', ['--version'], { timeoutMs, what: 'checking that Nix runs', killGraceMs: 500 });
  } catch (err) {
    throw new NixUnavailableError('Nix cannot be run (nix-store is not installed or not executable)', String(err));
  }
  if (result.timedOut) throw new NixUnavailableError(`nix-store --version did not answer within ${timeoutMs / 1000} s`);
  if (result.code !== 0) throw new NixUnavailableError(`nix-store --version failed (exit ${result.code})`, result.stderr.slice(0, 500));
  return result.stdout.trim();
}
