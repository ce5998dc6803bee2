// Removing what processes that are gone (crashed, killed with SIGKILL) left behind, at start and
// then periodically while the registry runs: the storage's temporary files of writers that are
// gone, and the runtime directories (GC roots, recorded process groups) of registries that are
// gone, whose leftover Nix processes are killed. Running it periodically also cleans up after a
// replica on this host (or on the shared storage) that dies while we run.

import type { Logger } from './util/logger.js';
import { cleanupIntervalMs } from './config.js';
import { logDetail } from './errors.js';
import { reapAbandonedRuntime } from './nix/processes.js';
import type { Storage } from './storage/storage.js';

export interface CleanupReport {
  temporaryFiles: number;
  runtimeDirs: number;
  processesKilled: number;
}

export type CleanupLogger = Pick<Logger, 'info' | 'warn'>;

export interface Cleanup {
  /** The first run (started at once); resolves when it is done, never rejects. */
  first: Promise<CleanupReport>;
  /** Runs a clean-up now (or joins the one running). */
  run(): Promise<CleanupReport>;
  stop(): void;
}

export function startCleanup(options: { storage: Storage; log: CleanupLogger; intervalMs?: number; runtimeBase?: string }): Cleanup {
  let running: Promise<CleanupReport> | undefined;
  const once = async (): Promise<CleanupReport> => {
    const report: CleanupReport = { temporaryFiles: 0, runtimeDirs: 0, processesKilled: 0 };
    try {
      const reaped = await reapAbandonedRuntime(options.runtimeBase);
      report.runtimeDirs = reaped.dirsRemoved;
      report.processesKilled = reaped.processesKilled;
    } catch (err) {
      options.log.warn({ err: logDetail(err) }, 'clean-up of runtime directories failed');
    }
    try {
      report.temporaryFiles = (await options.storage.removeAbandonedTemporaries?.()) ?? 0;
    } catch (err) {
      options.log.warn({ err: logDetail(err), storage: options.storage.name }, 'clean-up of temporary files failed');
    }
    if (report.temporaryFiles + report.runtimeDirs + report.processesKilled > 0) {
      options.log.info({ ...report }, 'removed what processes that are gone left behind');
    }
    return report;
  };
  const run = (): Promise<CleanupReport> => {
    running ??= once().finally(() => (running = undefined));
    return running;
  };
  const first = run();
  const timer = setInterval(() => void run(), options.intervalMs ?? cleanupIntervalMs());
  timer.unref();
  return { first, run, stop: () => clearInterval(timer) };
}
