// What the builder reports about its work to whoever watches it (the registry's metrics), so the
// builder itself knows nothing of metrics: `nixery build` runs it without any observer.

import type { BuildPhase, BuildProgress } from './types.js';
import type { ManifestCacheObserver } from './manifest-cache.js';

/** A build lease (build-lease.ts): taken to build, waited on (another replica builds), taken over after it expired. */
export type LeaseEvent = 'taken' | 'waited' | 'expired';

/** `manifestLookup`: the manifest cache was asked for an image's record. */
export interface BuildObserver extends ManifestCacheObserver {
  /** A build starts running Nix (it was not served from the manifest cache). */
  buildStarted(): void;
  /** A phase of a build that ran Nix ended (the next one began, or the build ended), in seconds. */
  phase(phase: BuildPhase, seconds: number): void;
  /** A build that ran Nix ended, in seconds from its first phase. */
  build(outcome: 'succeeded' | 'failed', seconds: number): void;
  /** A layer was packed into storage (not found in the build cache). */
  layerPacked(layer: { compressedBytes: number; uncompressedBytes: number; seconds: number }): void;
  /** Something happened to an image's build lease (one event per build that asked for it). */
  buildLease(event: LeaseEvent): void;
}

/**
 * Times the phases of one build from its progress reports: a phase lasts from its first report
 * to the first report of another phase (`pack` reports every MiB; only changes count).
 */
export function timePhases(
  onProgress: (p: BuildProgress) => void,
  observer: BuildObserver | undefined,
): { onProgress: (p: BuildProgress) => void; end(outcome: 'succeeded' | 'failed'): void } {
  if (!observer) return { onProgress, end: () => {} };
  const started = performance.now();
  let current: { phase: BuildPhase; since: number } | undefined;
  const close = (now: number) => {
    if (current) observer.phase(current.phase, (now - current.since) / 1000);
  };
  return {
    onProgress(p) {
      if (current?.phase !== p.phase) {
        const now = performance.now();
        close(now);
        current = { phase: p.phase, since: now };
      }
      onProgress(p);
    },
    end(outcome) {
      const now = performance.now();
      close(now);
      current = undefined;
      observer.build(outcome, (now - started) / 1000);
    },
  };
}
