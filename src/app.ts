// Wires the configuration into the running parts: logger, storage, package source, layering,
// popularity, builder and (for `serve`) the registry.

import { pino, type Logger as PinoLogger } from 'pino';
import type { Config } from './config.js';
import { describeConfig, layerCompressionSetting, signingSettings, storageSettings } from './config.js';
import { learnSettingSecrets, redact } from './secrets.js';
import { createStorage } from './storage/index.js';
import type { Storage } from './storage/storage.js';
import { sourceFromSettings, describeSource, type PackageSource } from './nix/source.js';
import { setParentDeathSignal } from './nix/processes.js';
import { getStrategy } from './layers/strategies.js';
import { PopularitySource } from './builder/popularity.js';
import { ImageBuilder } from './builder/builder.js';
import type { NixStage } from './builder/nix-stage.js';
import { PackagePolicy } from './auth/policy.js';
import { Pinner } from './builder/pins.js';
import { Quarantine } from './builder/integrity.js';
import { RegistryService } from './service/registry-service.js';
import { startRegistry } from './registry/start.js';
import type { Registry } from './registry/server.js';
import { startCleanup } from './cleanup.js';
import { platformArch } from './image/platform.js';
import { PackageIndex } from './builder/package-index.js';
import { Metrics } from './metrics/metrics.js';
import { BatchedLogDestination } from './log-destination.js';
import { measuredStorage } from './storage/measured.js';
import { stopAllNixProcesses } from './nix/processes.js';
import { SignatureStore } from './signing/store.js';
import { blobKey } from './builder/layout.js';

export interface App {
  config: Config;
  log: PinoLogger;
  /** The storage everything uses: the backend, timed for the metrics. */
  storage: Storage;
  /** The backend itself (an S3Storage, a FilesystemStorage…). */
  backend: Storage;
  quarantine: Quarantine;
  source: PackageSource;
  pins: Pinner;
  builder: ImageBuilder;
  service: RegistryService;
  popularity: PopularitySource;
  /** Package search over the `latest` pin (indexed in the background when first asked). */
  packages: PackageIndex;
  /** What /metrics serves (builds and storage report here from the start). */
  metrics: Metrics;
  /** Starts the registry; resolves once it listens. */
  serve(version: string): Promise<Registry>;
  /** Stops every Nix process this process runs (shutdown), with `graceMs` between SIGTERM and SIGKILL. */
  stopProcesses(graceMs: number): Promise<void>;
}

export interface AppOptions {
  logDestination: 'stdout' | 'stderr';
  defaultLogLevel: string;
  /**
   * The builder's Nix stage (default: the real Nix). Tests of the registry and its API give a
   * stand-in that makes real store files without Nix (test/helpers/stand-in-nix.ts).
   */
  nix?: NixStage;
  /** Make SBOMs and provenance with every image (default true; off only for the bench's baseline). */
  attestations?: boolean;
}

/** The package source from the settings (flags or Nixery's variables, same precedence). */
export function sourceFromConfig(config: Pick<Config, 'channel' | 'pkgsRepo' | 'pkgsPath' | 'nixpkgsRepo' | 'nixpkgsTarball'>): PackageSource {
  return sourceFromSettings(config);
}

/** The popularity data is refetched this often while the server runs. */
const POPULARITY_REFRESH_MS = 6 * 3600_000;

export async function createApp(config: Config, options: AppOptions): Promise<App> {
  // Before anything can log or fail: from here on every log line is redacted as it is written,
  // whatever object was logged.
  learnSettingSecrets(process.env, [config.pkgsRepo, config.popularityUrl]);
  setParentDeathSignal(config.parentDeathSignal);
  const log = pino(
    {
      level: config.logLevel === 'info' ? options.defaultLogLevel : config.logLevel,
      base: { service: 'nixery' },
      hooks: { streamWrite: redact },
    },
    // The server logs a line per request: batch those writes (flushed on exit); the CLI's
    // few lines on stderr go out at once.
    options.logDestination === 'stdout' ? new BatchedLogDestination(1) : pino.destination({ fd: 2, sync: true }),
  );
  const source = sourceFromConfig(config);
  // Checked before anything starts: a key without the public host it would vouch for is an error.
  const signing = signingSettings(config);
  const strategy = getStrategy(config.layering);
  const compression = layerCompressionSetting(config);
  const metrics = new Metrics();
  const backend = await createStorage(storageSettings(config));
  const storage = measuredStorage(backend, metrics.storage(config.storageBackend));
  const quarantine = new Quarantine(storage, log);
  const popularity = new PopularitySource(config.popularityUrl, (message) => log.warn({ popularity: config.popularityUrl }, message));
  await popularity.reload();
  // Tags pinned to revisions, persisted in storage; `serve` refreshes them in the background.
  // Looking at the source may fetch (git ls-remote): an evaluation-side step, not a builder.
  const pins = new Pinner({ source, storage, ttlMs: config.resolveTtl * 1000, resolveTimeoutMs: config.evalTimeout * 1000, log, observer: metrics.pins });
  const builder = new ImageBuilder({
    storage,
    quarantine,
    pins,
    timeouts: { builderSeconds: config.nixTimeout, evalSeconds: config.evalTimeout, realiseSeconds: config.buildTimeout },
    strategy,
    budget: config.layerBudget,
    popularity: () => popularity.current,
    log,
    manifestCacheSize: config.manifestCacheSize,
    maxImageSize: config.maxImageSize,
    policy: PackagePolicy.fromSettings(config.allowPackages, config.denyPackages, config.denyClosure),
    observer: metrics.builds,
    nixObserver: metrics.nix,
    nix: options.nix,
    buildLease: { periodMs: config.buildLeaseSeconds * 1000 },
    attestations: options.attestations,
    compression,
  });
  const service = new RegistryService(builder, config.buildConcurrency, config.buildQueue, config.manifestCacheSize, config.platforms.map(platformArch));
  // Search lists the packages of the first configured platform's system.
  const packages = new PackageIndex({ storage, quarantine, pins, system: service.platforms[0]!.nixSystem, evalTimeoutMs: config.evalTimeout * 1000, log, nixObserver: metrics.nix });

  return {
    config,
    log,
    storage,
    backend,
    quarantine,
    source,
    pins,
    builder,
    service,
    popularity,
    packages,
    metrics,
    stopProcesses: (graceMs) => stopAllNixProcesses({ graceMs }),
    async serve(version: string) {
      const signer = signing ? new SignatureStore(storage, signing.key, signing.publicHost, blobKey) : undefined;
      const parts = { storage, service, quarantine, log, packages, sourceDescription: describeSource(source), version, metrics, blobObserver: metrics.blobs, signing: signer };
      const registry = await startRegistry(config, parts, (gate) =>
        // The counts the service, the gate and the quarantine keep themselves, read when scraped.
        metrics.watch({
          cacheHits: () => service.stats.cacheHits,
          memoHits: () => service.stats.memoHits,
          buildFailures: () => service.stats.buildFailures,
          tooLarge: () => service.stats.tooLarge,
          rejected: () => service.stats.rejected,
          building: () => service.building,
          queued: () => service.queued,
          integrityFailures: () => quarantine.failures,
          unauthorized: () => gate.stats.unauthorized,
          denied: () => gate.stats.denied,
          packagesDenied: () => gate.stats.packagesDenied,
          buildsRateLimited: () => gate.stats.buildsRateLimited,
        }),
      );
      const refresh = setInterval(() => void popularity.reload(), POPULARITY_REFRESH_MS);
      refresh.unref();
      // Buffered request logs reach stdout within a second even when traffic is low.
      setInterval(() => log.flush(), 1000).unref();
      const address = registry.server.address();
      log.info(
        { version, listen: typeof address === 'object' && address ? `${address.address}:${address.port}` : String(address), storage: storage.name, config: describeConfig(config) },
        'nixery-ts registry started',
      );
      for (const notice of storage.notices ?? []) log.warn({ storage: storage.name }, notice);
      // Leftovers of crashed processes (temporary files, GC roots, Nix processes): now and periodically.
      const cleanup = startCleanup({ storage, log });
      pins.start();
      registry.server.once('close', () => {
        cleanup.stop();
        void pins.stop();
        void packages.stop();
      });
      // Whether the storage honours conditional writes (else one warning line, and no leases).
      await builder.leases.checkAtStartup();
      return registry;
    },
  };
}
